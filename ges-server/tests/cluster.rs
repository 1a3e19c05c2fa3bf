//! Three `ges-server` processes' worth of servers, each a node of one
//! replicated lifecycle (`docs/CLUSTER.md`, "ges-server as a node"): the
//! API on any node, writes through the log, reads behind a barrier, jobs
//! run by the owner's workers, and the cluster surviving its leader.

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use common::sign::{authorization, sign};
use common::{Client, TOKEN, wait_long};
use ges_server::config::AccessKeyEntry;
use ges_server::{Server, ServerHandle};
use serde_json::{Value, json};

const P: &str = "/v2/demo/graphs";
const AK: &str = "CLUSTERTESTAK0EXAMPLE";
const SK: &str = "ClusterTestSecretKey0000000000000EXAMPLE";

struct Cluster {
    _dir: tempfile::TempDir,
    servers: BTreeMap<u64, ServerHandle>,
}

impl Cluster {
    fn start(n: u64) -> Cluster {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let servers = common::cluster::start(n, dir.path(), |_, cfg| {
            // Long enough that the forced restart always finds it.
            cfg.simulation.import = ges_server::config::JobTiming::new(60_000, 60);
            cfg.auth.access_keys.push(AccessKeyEntry {
                ak: AK.to_owned(),
                sk: SK.to_owned(),
                projects: vec!["demo".to_owned()],
            });
        });
        Cluster { _dir: dir, servers }
    }

    /// The leader every running node names, once they agree and each
    /// dispatches.
    fn leader(&self) -> u64 {
        common::cluster::agreed_leader(&self.servers)
    }

    fn client(&self, id: u64) -> Client {
        Client::new(&self.servers[&id], TOKEN)
    }

    fn followers(&self, leader: u64) -> Vec<u64> {
        self.servers
            .keys()
            .copied()
            .filter(|id| *id != leader)
            .collect()
    }
}

/// Polls a job until its status is `status`, for up to a minute (a
/// linearizable read on a busy machine can take a while).
fn wait_job(c: &Client, graph: &str, job: &str, status: &str) -> Value {
    let path = format!("{P}/{graph}/jobs/{job}/status");
    wait_long(60, || {
        let j = c.get(&path).ok();
        (j["status"] == status).then_some(j)
    })
}

/// Polls a graph until its status code is `code`, for up to a minute.
fn wait_graph(c: &Client, graph: &str, code: &str) -> Value {
    let path = format!("{P}/{graph}");
    wait_long(60, || {
        let g = c.get(&path).ok();
        (g["graph"]["status"] == code).then_some(g["graph"].clone())
    })
}

fn job_id(v: &Value) -> String {
    v["job_id"].as_str().expect("job_id").to_owned()
}

/// Now as `X-Sdk-Date` wants it.
fn sdk_date() -> String {
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::OffsetDateTime::now_utc().format(&f).unwrap()
}

/// A signed POST with an empty JSON body, as the official SDK signs it.
fn signed_post(server: &ServerHandle, path: &str) -> (u16, Value) {
    let host = server.local_addr().to_string();
    let date = sdk_date();
    let body = b"{}";
    let headers = [
        ("content-type", "application/json"),
        ("host", host.as_str()),
        ("x-project-id", "demo"),
        ("x-sdk-date", date.as_str()),
    ];
    let signature = sign(SK, &date, "POST", path, &[], &headers, body);
    let mut req = ureq::http::Request::builder()
        .method("POST")
        .uri(format!("http://{host}{path}"));
    for (k, v) in headers.iter().filter(|(k, _)| *k != "host") {
        req = req.header(*k, *v);
    }
    let req = req
        .header(
            "authorization",
            authorization(AK, "content-type;host;x-project-id;x-sdk-date", &signature),
        )
        .body(body.to_vec())
        .unwrap();
    let mut res = common::agent().run(req).expect("an answer");
    let status = res.status().as_u16();
    let text = res.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn the_api_runs_on_any_node_and_a_forced_restart_survives_the_leader() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader();
    let followers = cluster.followers(leader);
    let (a, b) = (cluster.client(followers[0]), cluster.client(followers[1]));

    // Writes through a follower, read back on the other follower: a
    // linearizable read sees what was acknowledged anywhere.
    a.post(P, json!({"graph": {"name": "movies"}})).ok();
    assert_eq!(b.get(&format!("{P}/movies")).ok()["graph"]["status"], "700");
    let start = job_id(&a.post_empty(&format!("{P}/movies/start")).ok());
    wait_job(&b, "movies", &start, "success");
    wait_graph(&b, "movies", "200");

    // An import, under way on the owner's workers.
    let import = job_id(
        &a.post(
            &format!("{P}/movies/import-graph"),
            json!({"edgeset_path": "obs://b/e.csv", "vertexset_path": "obs://b/v.csv"}),
        )
        .ok(),
    );
    wait_long(60, || {
        let j = b.get(&format!("{P}/movies/jobs/{import}/status")).ok();
        (j["status"] == "running" && j["job_progress"].as_u64() > Some(0)).then_some(())
    });

    // The forced restart, signed as the SDK signs it, sent to a follower.
    let (status, body) = signed_post(
        &cluster.servers[&followers[1]],
        "/v2/demo/graphs/movies/restart",
    );
    assert_eq!(status, 200, "{body}");
    let restart = job_id(&body);
    let failed = wait_job(&a, "movies", &import, "failed");
    let reason = failed["fail_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&restart),
        "{reason:?} does not name {restart}"
    );
    wait_job(&a, "movies", &restart, "success");
    let graph = wait_graph(&b, "movies", "200");
    assert_eq!(graph["epoch"], 1);

    // Who leads, who is up, who owns the graph: one live owner.
    let view = a.get("/v2/demo/cluster").ok();
    assert_eq!(view["mode"], "cluster");
    assert_eq!(view["node"], followers[0]);
    assert_eq!(view["leader"], leader);
    let nodes = view["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3);
    assert!(nodes.iter().all(|n| n["live"] == true), "{view}");
    let owners: Vec<&Value> = nodes
        .iter()
        .filter(|n| n["graphs"] == json!(["movies"]))
        .collect();
    assert_eq!(owners.len(), 1, "{view}");
    assert!(
        Client::new(&cluster.servers[&leader], common::OTHER_TOKEN)
            .get("/v2/other/cluster")
            .ok()["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .all(|n| n["graphs"] == json!([])),
        "another project sees none of this one's graphs"
    );

    // Every node holds the same: stale reads of each node's own state,
    // once each has applied as far as the leader.
    for id in cluster.servers.keys() {
        let c = cluster
            .client(*id)
            .with_header("X-Read-Consistency", "stale");
        let j = wait_long(60, || {
            let j = c.get(&format!("{P}/movies/jobs/{restart}/status")).ok();
            (j["status"] == "success").then_some(j)
        });
        assert_eq!(j["job_type"], "RestartGraph");
    }
    cluster
        .client(leader)
        .with_header("X-Read-Consistency", "eventually")
        .get(&format!("{P}/movies"))
        .assert_error(400, "GES.0001");

    // The leader goes; the survivors elect another and keep everything.
    let gone = cluster.servers.remove(&leader).expect("the leader");
    gone.shutdown().expect("a clean stop");
    let started = Instant::now();
    let new_leader = cluster.leader();
    assert_ne!(new_leader, leader);
    for id in cluster.servers.keys() {
        let c = cluster.client(*id);
        let j = c.get(&format!("{P}/movies/jobs/{restart}/status")).ok();
        assert_eq!(j["status"], "success");
        assert_eq!(c.get(&format!("{P}/movies")).ok()["graph"]["epoch"], 1);
    }
    // And a survivor takes writes: a forced restart runs to its end on
    // whichever node owns the graph. Until the old leader is declared
    // lost (`fence + drift` after it went silent) it still owns the graph
    // and nobody runs its jobs; its graphs are then recovered (a job left
    // in flight fails as interrupted) and reassigned, and the next
    // forced restart runs on the new owner.
    let c = cluster.client(*cluster.servers.keys().next().unwrap());
    let mut tries = 0;
    let again = wait_long(60, || {
        tries += 1;
        let r = c.post_empty(&format!("{P}/movies/restart"));
        if r.status != 200 {
            return None;
        }
        let job = job_id(&r.ok());
        let j = wait_long(30, || {
            let j = c.get(&format!("{P}/movies/jobs/{job}/status")).ok();
            (j["status"] == "success" || j["status"] == "failed").then_some(j)
        });
        (j["status"] == "success").then_some(job)
    });
    let graph = wait_graph(&c, "movies", "200");
    assert!(graph["epoch"].as_u64() >= Some(2), "{graph}");
    let view = c.get("/v2/demo/cluster").ok();
    let nodes = view["nodes"].as_array().expect("nodes");
    let gone = nodes
        .iter()
        .find(|n| n["id"] == leader)
        .expect("the old leader");
    assert_eq!(gone["live"], false, "{view}");
    assert_eq!(gone["graphs"], json!([]), "{view}");
    for id in cluster.servers.keys() {
        let j = cluster
            .client(*id)
            .get(&format!("{P}/movies/jobs/{again}/status"))
            .ok();
        assert_eq!(j["status"], "success");
    }
    eprintln!(
        "after the leader stopped: a new leader, and a forced restart run to its end on the \
         graph's new owner, in {:?} ({tries} forced restarts sent)",
        started.elapsed()
    );
}

#[test]
fn a_standalone_server_says_so() {
    let server = common::start("");
    let view = Client::new(&server, TOKEN).get("/v2/demo/cluster").ok();
    assert_eq!(view, json!({"mode": "standalone"}));
}

#[test]
fn a_cluster_node_is_refused_without_its_key_file_or_with_in_memory_storage() {
    let mut cfg = common::config("");
    cfg.storage.in_memory = false;
    cfg.cluster.node_id = Some(1);
    cfg.cluster.peers.insert(
        "1".to_owned(),
        format!("127.0.0.1:{}", common::cluster::free_port()),
    );
    let e = Server::new(cfg.clone()).bind().unwrap_err().to_string();
    assert!(e.contains("cluster.key_file"), "{e}");
    cfg.cluster.key_file = Some("/nonexistent/cluster.key".into());
    cfg.storage.in_memory = true;
    let e = Server::new(cfg.clone()).bind().unwrap_err().to_string();
    assert!(e.contains("storage.in_memory"), "{e}");
    cfg.storage.in_memory = false;
    let dir = tempfile::tempdir().unwrap();
    cfg.storage.dir = dir.path().to_owned();
    let e = Server::new(cfg).bind().unwrap_err().to_string();
    assert!(e.contains("cluster.key"), "{e}");
}
