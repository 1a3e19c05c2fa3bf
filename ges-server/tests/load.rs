//! A load test on loopback: several client threads, each on its own
//! keep-alive connection, send a bounded number of requests (some
//! thousands in all) within a bounded time. Every request gets an
//! expected answer, and nothing is lost: every job a 200 handed out can
//! be found afterwards, and the task center counts exactly those jobs.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{Client, TOKEN};
use serde_json::json;

const THREADS: usize = 4;
const GRAPHS_PER_THREAD: usize = 5;
/// Rounds of five requests per thread.
const ROUNDS: usize = 250;
/// The time the whole load may take.
const BUDGET: Duration = Duration::from_secs(40);

#[derive(Default)]
struct Tally {
    requests: usize,
    unexpected: Vec<String>,
    jobs: Vec<(String, String)>,
}

impl Tally {
    fn expect(&mut self, what: &str, r: &common::Reply, allowed: &[(u16, &str)]) {
        self.requests += 1;
        let ok = allowed
            .iter()
            .any(|(s, code)| r.status == *s && (code.is_empty() || r.code() == *code));
        if !ok {
            self.unexpected
                .push(format!("{what}: {} {}", r.status, r.body));
        }
    }
}

fn client_thread(c: Client, t: usize, start: Arc<Barrier>) -> Tally {
    let mut tally = Tally::default();
    let p = "/v2/demo/graphs";
    start.wait();
    let names: Vec<String> = (0..GRAPHS_PER_THREAD)
        .map(|g| format!("t{t}g{g}"))
        .collect();
    for name in &names {
        let r = c.post(p, json!({"graph": {"name": name}}));
        tally.expect("create", &r, &[(200, "")]);
        let r = c.post_empty(&format!("{p}/{name}/start"));
        tally.expect("start", &r, &[(200, "")]);
        if let Some(j) = r.body["job_id"].as_str() {
            tally.jobs.push((name.clone(), j.to_owned()));
        }
    }
    for round in 0..ROUNDS {
        let name = &names[round % names.len()];
        // What a polling client does most: read the graph and a job.
        let r = c.get(&format!("{p}/{name}"));
        tally.expect("show graph", &r, &[(200, "")]);
        let running = r.body["graph"]["status"] == "200";
        if let Some((g, j)) = tally.jobs.last().cloned() {
            let r = c.get(&format!("{p}/{g}/jobs/{j}/status"));
            tally.expect("show job", &r, &[(200, "")]);
        }
        let r = c.get(&format!("{p}/jobs?graph_name={name}&limit=5&offset=1"));
        tally.expect("task center", &r, &[(200, "")]);
        // Lifecycle calls: refused (400 GES.7016) when the state does
        // not allow them, which the state may race with.
        let r = match round % 10 {
            3 if running => c.post(
                &format!("{p}/{name}/import-graph"),
                json!({"edgeset_path": format!("obs://b/{round}.csv")}),
            ),
            5 => c.post_empty(&format!("{p}/{name}/restart")),
            7 if running => c.post_empty(&format!("{p}/{name}/export-graph")),
            _ => c.get(&format!("{p}?limit=3")),
        };
        tally.expect("lifecycle", &r, &[(200, ""), (400, "GES.7016")]);
        if let Some(j) = r.body["job_id"].as_str() {
            tally.jobs.push((name.clone(), j.to_owned()));
        }
        // And some that must fail the same way every time.
        let r = c.get(&format!(
            "{p}/{name}/jobs/00000000-0000-7000-8000-000000000000/status"
        ));
        tally.expect("unknown job", &r, &[(404, "GES.7007")]);
    }
    tally
}

#[test]
fn thousands_of_requests_from_several_threads_all_get_expected_answers() {
    let mut cfg = common::config("");
    // Quick jobs, so that graphs move between states under load.
    for kind in ges_server::config::KINDS {
        cfg.simulation
            .set_timing(kind, ges_server::config::JobTiming::new(20, 2));
    }
    let server = ges_server::Server::new(cfg)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    let barrier = Arc::new(Barrier::new(THREADS));
    let t0 = Instant::now();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let c = Client::new(&server, TOKEN);
            let b = barrier.clone();
            std::thread::spawn(move || client_thread(c, t, b))
        })
        .collect();
    let tallies: Vec<Tally> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let elapsed = t0.elapsed();

    let requests: usize = tallies.iter().map(|t| t.requests).sum();
    let unexpected: Vec<&String> = tallies.iter().flat_map(|t| &t.unexpected).collect();
    eprintln!(
        "{requests} requests from {THREADS} threads in {elapsed:?} ({:.0} requests/s)",
        requests as f64 / elapsed.as_secs_f64()
    );
    assert!(unexpected.is_empty(), "unexpected answers: {unexpected:#?}");
    assert!(requests >= 5_000, "only {requests} requests");
    assert!(elapsed < BUDGET, "took {elapsed:?}");

    // Nothing lost: every job handed out exists, once, and the task
    // center counts exactly those.
    let c = Client::new(&server, TOKEN);
    let jobs: Vec<&(String, String)> = tallies.iter().flat_map(|t| &t.jobs).collect();
    let distinct: HashSet<&String> = jobs.iter().map(|(_, j)| j).collect();
    assert_eq!(distinct.len(), jobs.len(), "a job id was handed out twice");
    for (g, j) in &jobs {
        let r = c.get(&format!("/v2/demo/graphs/{g}/jobs/{j}/status"));
        assert_eq!(r.status, 200, "job {j} of {g} is lost: {}", r.body);
    }
    let center = c.get("/v2/demo/graphs/jobs?limit=0").ok();
    assert_eq!(center["job_count"].as_u64(), Some(jobs.len() as u64));
    let graphs = c.get("/v2/demo/graphs?limit=1").ok();
    assert_eq!(
        graphs["graph_count"].as_u64(),
        Some((THREADS * GRAPHS_PER_THREAD) as u64)
    );
    server.shutdown().unwrap();
}
