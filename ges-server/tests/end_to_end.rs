//! The lifecycle driven over real HTTP on loopback, as a GES client
//! drives it: create, start, import, a forced restart in the middle of
//! the import, polling, the task center; the other endpoints; project
//! isolation; graceful shutdown.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Client, OTHER_TOKEN, TOKEN, Transport, wait_for};
use serde_json::json;

const P: &str = "/v2/demo/graphs";

/// A TLS listener answers a plain HTTP request with a plain `400` in GES's
/// format and closes; a client that does not trust the certificate, or
/// that sends a broken handshake, gets no service; and HTTPS goes on being
/// served.
#[test]
fn plain_http_or_a_broken_handshake_to_the_tls_listener_is_refused_cleanly() {
    let t = Transport::tls();
    let server = t.start("");
    let addr = server.local_addr();
    let plain = common::raw(
        addr,
        format!("GET {P} HTTP/1.1\r\nHost: ges\r\nX-Auth-Token: {TOKEN}\r\n\r\n").as_bytes(),
    );
    assert!(plain.starts_with("HTTP/1.1 400 "), "{plain:?}");
    let body = plain.split_once("\r\n\r\n").unwrap().1;
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["error_code"], "GES.9014");

    // A handshake record followed by garbage: closed, nothing served.
    let broken = common::raw(addr, b"\x16\x03\x01\x00\x05garbage\r\n\r\n");
    assert!(!broken.contains("HTTP/1.1 200"), "{broken:?}");

    // A client that trusts only the usual roots refuses the certificate.
    let untrusting = common::agent()
        .get(format!("https://{addr}{P}"))
        .header("X-Auth-Token", TOKEN)
        .call();
    assert!(untrusting.is_err(), "{untrusting:?}");

    t.client(&server, TOKEN).get(P).ok();
    server.shutdown().unwrap();
}

/// Each lifecycle test runs twice: over plain HTTP, and over HTTPS with a
/// certificate made for the test.
macro_rules! over_http_and_tls {
    ($($name:ident),* $(,)?) => {
        mod over_http {
            $(#[test]
            fn $name() {
                super::$name(&super::Transport::Http);
            })*
        }
        mod over_tls {
            $(#[test]
            fn $name() {
                super::$name(&super::Transport::tls());
            })*
        }
    };
}

over_http_and_tls!(
    a_forced_restart_in_the_middle_of_an_import_fails_it_and_the_graph_runs_again,
    export_clear_stop_and_delete_follow_the_lifecycle,
    another_projects_graphs_and_jobs_are_not_found_and_its_path_is_forbidden,
    every_mutating_call_retried_with_its_idempotency_key_gets_the_first_answer
);

fn a_forced_restart_in_the_middle_of_an_import_fails_it_and_the_graph_runs_again(t: &Transport) {
    let server = t.start("");
    let c = t.client(&server, TOKEN);

    // Create: the name is the id; the graph starts stopped (700).
    let created = c.post(P, json!({"graph": {"name": "movies"}})).ok();
    assert_eq!(created, json!({"id": "movies", "name": "movies"}));
    let g = c.get(&format!("{P}/movies")).ok();
    assert_eq!(g["graph"]["status"], "700");
    assert_eq!(g["graph"]["status_name"], "stopped");

    // Start, poll the job, the graph runs (200).
    let start_job = c.post_empty(&format!("{P}/movies/start")).ok()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let j = c.wait_job("demo", "movies", &start_job, "success");
    assert_eq!(j["job_type"], "StartGraph");
    assert_eq!(j["job_progress"], 100);
    c.wait_graph("demo", "movies", "200");

    // Import, and wait until it is under way.
    let import = c
        .post(
            &format!("{P}/movies/import-graph"),
            json!({"edgeset_path": "obs://bucket/edges.csv", "vertexset_path": "obs://bucket/vertices.csv", "offline": false}),
        )
        .ok()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let running = wait_for(|| {
        let j = c.get(&format!("{P}/movies/jobs/{import}/status")).ok();
        (j["status"] == "running" && j["job_progress"].as_u64() > Some(0)).then_some(j)
    });
    assert_eq!(running["job_type"], "ImportGraph");
    assert!(running.get("end_time").is_none() && running.get("fail_reason").is_none());
    assert_eq!(c.get(&format!("{P}/movies")).ok()["graph"]["status"], "202");

    // Force-restart in the middle of it.
    let restart = c.post(&format!("{P}/movies/restart"), json!({})).ok()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = c.wait_job("demo", "movies", &import, "failed");
    let reason = failed["fail_reason"].as_str().unwrap();
    assert!(
        reason.contains("force-restarted") && reason.contains(&restart),
        "reason {reason:?} does not name the restart {restart}"
    );
    assert!(failed["end_time"].is_string());
    let restarted = c.wait_job("demo", "movies", &restart, "success");
    assert_eq!(restarted["job_type"], "RestartGraph");
    let graph = c.wait_graph("demo", "movies", "200");
    assert_eq!(graph["epoch"], 1);

    // The task center: filters, offset and limit.
    c.running_graph("demo", "books");
    let all = c.get(&format!("{P}/jobs?limit=100")).ok();
    assert_eq!(all["job_count"], 4, "{all}");
    let by_graph = c.get(&format!("{P}/jobs?graph_name=movies&limit=100")).ok();
    assert_eq!(by_graph["job_count"], 3);
    let ids: Vec<&str> = by_graph["job_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [&restart, &import, &start_job], "newest first");
    let second = c
        .get(&format!("{P}/jobs?graph_name=movies&offset=1&limit=1"))
        .ok();
    assert_eq!(second["job_count"], 3);
    assert_eq!(second["job_list"].as_array().unwrap().len(), 1);
    assert_eq!(second["job_list"][0]["job_id"], import.as_str());
    let failed = c.get(&format!("{P}/jobs?status=failed")).ok();
    assert_eq!(failed["job_count"], 1);
    assert_eq!(failed["job_list"][0]["job_id"], import.as_str());
    let success = c
        .get(&format!("{P}/jobs?status=success&graph_name=movies"))
        .ok();
    assert_eq!(success["job_count"], 2);
    let none_live = c.get(&format!("{P}/jobs?status=running")).ok();
    assert_eq!(none_live["job_count"], 0);
    let days: Vec<String> = all["job_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["begin_time"].as_str().unwrap()[..10].to_owned())
        .collect();
    let (first, last) = (days.iter().min().unwrap(), days.iter().max().unwrap());
    let window = c
        .get(&format!("{P}/jobs?start_time={first}&end_time={last}"))
        .ok();
    assert_eq!(window["job_count"], 4);
    let later = c.get(&format!("{P}/jobs?start_time=2999-01-01")).ok();
    assert_eq!(later["job_count"], 0);
    let earlier = c.get(&format!("{P}/jobs?end_time=2000-01-01")).ok();
    assert_eq!(earlier["job_count"], 0);
    let default_page = c.get(&format!("{P}/jobs")).ok();
    assert_eq!(default_page["job_list"].as_array().unwrap().len(), 4);
    let unknown = c.get(&format!("{P}/jobs?graph_name=nosuch")).ok();
    assert_eq!(unknown, json!({"job_count": 0, "job_list": []}));

    server.shutdown().unwrap();
}

fn export_clear_stop_and_delete_follow_the_lifecycle(t: &Transport) {
    let server = t.start("");
    let c = t.client(&server, TOKEN);
    c.running_graph("demo", "g1");

    let export = c
        .post(
            &format!("{P}/g1/export-graph"),
            json!({"graph_export_path": "obs://bucket/out", "edge_set_name": "e", "vertex_set_name": "v", "schema_name": "s"}),
        )
        .ok();
    let export = export["job_id"].as_str().unwrap().to_owned();
    assert_eq!(
        c.wait_job("demo", "g1", &export, "success")["job_type"],
        "ExportGraph"
    );
    c.wait_graph("demo", "g1", "200");

    let clear = c
        .post_empty(&format!("{P}/g1/clear-graph?clear_metadata=true"))
        .ok();
    let clear = c.wait_job("demo", "g1", clear["job_id"].as_str().unwrap(), "success");
    assert_eq!(clear["job_type"], "ClearGraph");
    assert_eq!(clear["job_name"], "clear(metadata)");
    c.wait_graph("demo", "g1", "200");

    // A running graph is not deleted: stop it first.
    c.delete(&format!("{P}/g1")).assert_error(400, "GES.7016");
    let stop = c.post_empty(&format!("{P}/g1/stop")).ok();
    c.wait_job("demo", "g1", stop["job_id"].as_str().unwrap(), "success");
    c.wait_graph("demo", "g1", "700");
    // A stopped graph refuses an import, naming its state.
    let refused = c.post(
        &format!("{P}/g1/import-graph"),
        json!({"edgeset_path": "x"}),
    );
    refused.assert_error(400, "GES.7016");
    assert!(
        refused.body["error_msg"]
            .as_str()
            .unwrap()
            .contains("stopped")
    );

    let deleted = c
        .delete(&format!("{P}/g1?keep_backup=false&delete_eip=true"))
        .ok();
    assert_eq!(deleted, json!({"job_id": ""}));
    c.get(&format!("{P}/g1")).assert_error(404, "GES.8011");

    // The graph list pages.
    for name in ["a1", "a2", "a3"] {
        c.post(P, json!({"graph": {"name": name}})).ok();
    }
    let page = c.get(&format!("{P}?offset=1&limit=1")).ok();
    assert_eq!(page["graph_count"], 3);
    assert_eq!(page["graphs"].as_array().unwrap().len(), 1);
    assert_eq!(page["graphs"][0]["id"], "a2");
    c.post(P, json!({"graph": {"name": "a1"}}))
        .assert_error(409, "GES.9001");
    c.post(P, json!({"graph": {"name": "jobs"}}))
        .assert_error(400, "GES.0001");

    // A simulated failure fails the import only; the graph keeps running.
    c.running_graph("demo", "g2");
    let import = c
        .post(
            &format!("{P}/g2/import-graph"),
            json!({"edgeset_path": "x", "simulate_failure": "bad row 7"}),
        )
        .ok();
    let j = c.wait_job("demo", "g2", import["job_id"].as_str().unwrap(), "failed");
    assert_eq!(j["fail_reason"], "bad row 7");
    c.wait_graph("demo", "g2", "200");

    server.shutdown().unwrap();
}

fn another_projects_graphs_and_jobs_are_not_found_and_its_path_is_forbidden(t: &Transport) {
    let server = t.start("");
    let demo = t.client(&server, TOKEN);
    let other = t.client(&server, OTHER_TOKEN);
    demo.running_graph("demo", "secret");
    let job = demo.get(&format!("{P}/jobs")).ok()["job_list"][0]["job_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Under its own project path, another project's graph does not exist.
    other
        .get("/v2/other/graphs/secret")
        .assert_error(404, "GES.8011");
    other
        .get(&format!("/v2/other/graphs/secret/jobs/{job}/status"))
        .assert_error(404, "GES.8011");
    other
        .post_empty("/v2/other/graphs/secret/restart")
        .assert_error(404, "GES.8011");
    assert_eq!(
        other.get("/v2/other/graphs/jobs").ok(),
        json!({"job_count": 0, "job_list": []})
    );
    // A graph of its own with the same name has none of the other's jobs.
    other
        .post("/v2/other/graphs", json!({"graph": {"name": "secret"}}))
        .ok();
    other
        .get(&format!("/v2/other/graphs/secret/jobs/{job}/status"))
        .assert_error(404, "GES.7007");

    // On the other project's path, the credential is forbidden.
    other
        .get("/v2/demo/graphs/secret")
        .assert_error(403, "GES.8006");
    other
        .get("/v2/demo/graphs/nosuch")
        .assert_error(403, "GES.8006");
    // No credential, or a wrong one: 401.
    let anon = Client {
        token: None,
        ..t.client(&server, TOKEN)
    };
    anon.get("/v2/demo/graphs").assert_error(401, "GES.8007");
    t.client(&server, "nope")
        .get("/v2/demo/graphs")
        .assert_error(401, "GES.8007");

    server.shutdown().unwrap();
}

/// Every call that changes something, sent twice with one
/// `Idempotency-Key`: the retry gets the first answer, success or error,
/// and changes nothing.
fn every_mutating_call_retried_with_its_idempotency_key_gets_the_first_answer(t: &Transport) {
    let server = t.start("");
    let c = t.client(&server, TOKEN);
    let with = |key: &str| c.with_header("Idempotency-Key", key);
    let twice = |key: &str, send: &dyn Fn(&Client) -> common::Reply| {
        let k = with(key);
        let first = send(&k);
        let again = send(&k);
        assert_eq!(
            (again.status, &again.body),
            (first.status, &first.body),
            "{key}"
        );
        first
    };
    let job_of = |r: &common::Reply| r.body["job_id"].as_str().unwrap().to_owned();

    let created = twice("create-g", &|k| k.post(P, json!({"graph": {"name": "g"}})));
    assert_eq!(created.status, 200, "a retried create is not GES.9001");
    // Without the key it is a second create, refused.
    c.post(P, json!({"graph": {"name": "g"}}))
        .assert_error(409, "GES.9001");

    let start = twice("start-g", &|k| k.post_empty(&format!("{P}/g/start")));
    c.wait_job("demo", "g", &job_of(&start), "success");
    // The same start, retried once the graph runs: still the first answer,
    // not "cannot start a running graph".
    let late = with("start-g").post_empty(&format!("{P}/g/start"));
    assert_eq!((late.status, job_of(&late)), (200, job_of(&start)));

    let import = twice("import-g", &|k| {
        k.post(
            &format!("{P}/g/import-graph"),
            json!({"edgesetPath": "e.csv"}),
        )
    });
    c.wait_job("demo", "g", &job_of(&import), "success");
    let export = twice("export-g", &|k| {
        k.post(&format!("{P}/g/export-graph"), json!({"directory": "out"}))
    });
    c.wait_job("demo", "g", &job_of(&export), "success");
    let clear = twice("clear-g", &|k| k.post_empty(&format!("{P}/g/clear-graph")));
    c.wait_job("demo", "g", &job_of(&clear), "success");
    let restart = twice("restart-g", &|k| k.post_empty(&format!("{P}/g/restart")));
    c.wait_job("demo", "g", &job_of(&restart), "success");
    let stop = twice("stop-g", &|k| k.post_empty(&format!("{P}/g/stop")));
    c.wait_job("demo", "g", &job_of(&stop), "success");
    let deleted = twice("delete-g", &|k| k.delete(&format!("{P}/g")));
    assert_eq!(deleted.status, 200, "a retried delete is not GES.8011");

    // A refusal is an answer too.
    let refused = twice("stop-h", &|k| k.post_empty(&format!("{P}/h/stop")));
    assert_eq!(refused.status, 404);
    // A key reused for another call: 409, in GES's error format.
    with("create-g")
        .post_empty(&format!("{P}/g/stop"))
        .assert_error(409, "GES.9011");
    // Malformed or repeated keys: 400 before anything is applied.
    with("tab\there")
        .post_empty(&format!("{P}/g/start"))
        .assert_error(400, "GES.0001");
    with(&"k".repeat(257))
        .post_empty(&format!("{P}/g/start"))
        .assert_error(400, "GES.0001");
    with("a")
        .with_header("Idempotency-Key", "b")
        .post_empty(&format!("{P}/g/start"))
        .assert_error(400, "GES.0001");
    server.shutdown().unwrap();
}

#[test]
fn shutdown_lets_live_requests_and_jobs_finish() {
    let mut cfg = common::config("");
    // Long enough to be still running when the shutdown begins.
    cfg.simulation.start = ges_server::config::JobTiming::new(500, 5);
    let server = ges_server::Server::new(cfg)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    let addr = server.local_addr();
    let c = Client::new(&server, TOKEN);
    c.post(P, json!({"graph": {"name": "late"}})).ok();
    // A start job the workers will still be running at shutdown.
    let start_job = c.post_empty(&format!("{P}/late/start")).ok()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A request in flight: headers sent, half the body still to come.
    let body = br#"{"graph": {"name": "inflight"}}"#;
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "POST {P} HTTP/1.1\r\nHost: {addr}\r\nX-Auth-Token: {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    conn.write_all(&body[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(100));

    let mut server = server;
    let engine = server.engine().clone();
    server.begin_shutdown();
    // No new connection is accepted once the listener is gone.
    let refused = wait_for(|| {
        std::thread::sleep(Duration::from_millis(20));
        match TcpStream::connect(addr) {
            Err(_) => Some(true),
            Ok(_) => None,
        }
    });
    assert!(refused);

    // The live request finishes and is answered.
    conn.write_all(&body[10..]).unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#"{"id":"inflight","name":"inflight"}"#));

    let t0 = Instant::now();
    let report = server.shutdown().unwrap();
    assert!(report.connections_drained);
    assert_eq!(report.sim.map(|s| s.drained), Some(true));
    assert!(t0.elapsed() < Duration::from_secs(5));
    // Nothing was lost: the graph created in flight exists, and the start
    // job handed over before the shutdown ran to its end.
    let key = graph_lifecycle::GraphKey::parse("demo", "inflight").unwrap();
    assert!(engine.graph_info(&key).is_ok());
    let late = graph_lifecycle::GraphKey::parse("demo", "late").unwrap();
    let job = engine.task(&late, start_job.parse().unwrap()).unwrap();
    assert_eq!(job.status, graph_lifecycle::TaskStatus::Succeeded);
}
