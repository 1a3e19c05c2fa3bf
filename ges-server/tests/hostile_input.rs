//! Hostile input over real HTTP: oversized and slow bodies, broken JSON,
//! path traversal, very long ids, unknown jobs and routes, bad query
//! parameters, garbage on the socket. Each gets its error body with the
//! right status, never a hang or a 500, and the server stays up.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Reply, TOKEN, raw};
use serde_json::json;

const P: &str = "/v2/demo/graphs";
const LIMIT: usize = 4096;

fn server() -> ges_server::ServerHandle {
    let mut cfg = common::config("");
    cfg.server.max_body_bytes = LIMIT;
    cfg.server.body_timeout_ms = 300;
    ges_server::Server::new(cfg)
        .bind()
        .unwrap()
        .spawn()
        .unwrap()
}

/// Sends raw bytes on a fresh connection and reads what comes back
/// until the server closes or 5 s pass.
#[track_caller]
fn still_up(c: &Client) {
    assert_eq!(c.get(P).status, 200, "the server is down");
}

#[test]
fn oversized_and_slow_bodies_are_refused_and_the_server_stays_up() {
    let server = server();
    let c = Client::new(&server, TOKEN);
    c.post(P, json!({"graph": {"name": "g"}})).ok();

    // Just over the limit, and far over it.
    let pad = |n: usize| {
        format!(
            r#"{{"graph": {{"name": "x", "pad": "{}"}}}}"#,
            "a".repeat(n)
        )
    };
    c.post_raw(P, pad(LIMIT).as_bytes())
        .assert_error(413, "GES.9008");
    c.post_raw(P, pad(2 << 20).as_bytes())
        .assert_error(413, "GES.9008");
    // Just under it is fine.
    let fits = format!(
        r#"{{"graph": {{"name": "fits", "pad": "{}"}}}}"#,
        "a".repeat(LIMIT - 100)
    );
    assert!(fits.len() <= LIMIT);
    c.post_raw(P, fits.as_bytes()).ok();
    still_up(&c);

    // A chunked body that grows past the limit.
    let chunk = "b".repeat(1000);
    let mut req = format!(
        "POST {P} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    for _ in 0..6 {
        req.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    req.push_str("0\r\n\r\n");
    let answer = raw(server.local_addr(), req.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("GES.9008"), "{answer}");

    // A client that waits for `100 Continue` before sending a body over
    // the limit is answered 413 at once, and never asked for the body.
    let answer = raw(
        server.local_addr(),
        format!("POST {P} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {TOKEN}\r\nExpect: 100-continue\r\nContent-Length: 50000000\r\n\r\n")
            .as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("GES.9008"), "{answer}");

    // A body that stops coming: 408 after the body timeout.
    let t0 = Instant::now();
    let answer = raw(
        server.local_addr(),
        format!("POST {P} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {TOKEN}\r\nContent-Length: 100\r\n\r\n{{\"gra")
            .as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("GES.9009"), "{answer}");
    assert!(t0.elapsed() < Duration::from_secs(3));

    // Garbage on the socket.
    let answer = raw(server.local_addr(), b"\x00\x01GARBAGE \xff\r\n\r\n");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "{answer}"
    );
    still_up(&c);
    server.shutdown().unwrap();
}

#[test]
fn broken_json_and_wrong_shapes_are_invalid_requests() {
    let server = server();
    let c = Client::new(&server, TOKEN);
    c.running_graph("demo", "g");
    for body in [
        &b"{\"graph\": {\"name\": "[..],
        b"",
        b"null",
        b"[1, 2]",
        b"\"graph\"",
        b"{\"graph\": {\"name\": 5}}",
        b"{\"graph\": \"movies\"}",
        b"{\"graph\": {}}",
        b"{\"graph\": {\"name\": \"a\"}} trailing",
        b"\xff\xfe{}",
    ] {
        c.post_raw(P, body).assert_error(400, "GES.7016");
    }
    let import = format!("{P}/g/import-graph");
    for body in [
        &b""[..],
        b"{\"offline\": \"yes\"}",
        b"{\"edgeset_path\": 7}",
        b"{\"parallel_edge\": []}",
        b"{not json}",
    ] {
        c.post_raw(&import, body).assert_error(400, "GES.7016");
    }
    c.post_raw(&format!("{P}/g/export-graph"), b"{\"paginate\": 1}")
        .assert_error(400, "GES.7016");
    // Start, stop, restart and clear take an empty body or a JSON object.
    c.post_raw(&format!("{P}/g/restart"), b"[]")
        .assert_error(400, "GES.7016");
    c.post_raw(&format!("{P}/g/stop"), b"{")
        .assert_error(400, "GES.7016");
    c.post_raw(&format!("{P}/g/start"), b"{\"graph_backup_id\": 1}")
        .assert_error(400, "GES.7016");
    // A long string in a wrong place: the message stays short.
    let long = format!("{{\"graph\": {{\"name\": [\"{}\"]}}}}", "z".repeat(3000));
    let r = c.post_raw(P, long.as_bytes());
    r.assert_error(400, "GES.7016");
    assert!(r.body["error_msg"].as_str().unwrap().len() < 600);
    still_up(&c);
    server.shutdown().unwrap();
}

#[test]
fn traversal_long_ids_and_unknown_jobs_and_routes_get_their_errors() {
    let server = server();
    let c = Client::new(&server, TOKEN);
    c.running_graph("demo", "g");
    let job = c.get(&format!("{P}/jobs")).ok()["job_list"][0]["job_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Traversal attempts in ids: malformed ids.
    for path in [
        format!("{P}/..%2F..%2Fetc%2Fpasswd"),
        format!("{P}/%2e%2e/start"),
        format!("{P}/g%00/start"),
        format!("{P}/g%20g"),
        format!("{P}/%C3%A9t%C3%A9"),
        format!("{P}/g/jobs/..%2F{job}/status"),
    ] {
        let r = if path.ends_with("start") {
            c.post_empty(&path)
        } else {
            c.get(&path)
        };
        r.assert_error(400, "GES.0001");
    }
    c.post(P, json!({"graph": {"name": "../etc"}}))
        .assert_error(400, "GES.0001");
    // Dot segments that reach the router unresolved match no route.
    c.get(&format!("{P}/g/../../../etc/passwd"))
        .assert_error(404, "GES.0016");
    // A traversal in the project segment names no covered project.
    c.get("/v2/..%2Fdemo/graphs").assert_error(403, "GES.8006");

    // Very long ids.
    for n in [65, 10_000, 60_000] {
        let long = "a".repeat(n);
        // Past the most a request head may hold (32 KiB by default), the
        // HTTP layer refuses the request before any route sees it.
        let (status, code) = if n < 32 << 10 {
            (400, "GES.0001")
        } else {
            (431, "GES.9014")
        };
        c.get(&format!("{P}/{long}")).assert_error(status, code);
        c.get(&format!("{P}/g/jobs/{long}/status"))
            .assert_error(status, code);
        let r = c.post(P, json!({"graph": {"name": long}}));
        if n < LIMIT - 100 {
            r.assert_error(400, "GES.0001");
            assert!(r.body["error_msg"].as_str().unwrap().len() < 200);
        } else {
            r.assert_error(413, "GES.9008");
        }
    }
    c.get(&format!("{P}/{}", "a".repeat(64)))
        .assert_error(404, "GES.8011");

    // Unknown jobs: well-formed ids that name nothing, and malformed ones.
    c.get(&format!(
        "{P}/g/jobs/00000000-0000-7000-8000-000000000000/status"
    ))
    .assert_error(404, "GES.7007");
    c.get(&format!("{P}/nosuch/jobs/{job}/status"))
        .assert_error(404, "GES.8011");
    c.get(&format!("{P}/g/jobs/not-a-uuid/status"))
        .assert_error(400, "GES.0001");
    c.running_graph("demo", "h");
    c.get(&format!("{P}/h/jobs/{job}/status"))
        .assert_error(404, "GES.7007");

    // Unknown routes and methods.
    c.get("/").assert_error(404, "GES.0016");
    c.get("/v3/demo/graphs").assert_error(404, "GES.0016");
    c.get(&format!("{P}/g/unknown"))
        .assert_error(404, "GES.0016");
    c.post_empty(&format!("{P}/g/jobs"))
        .assert_error(404, "GES.0016");
    c.get(&format!("{P}/")).assert_error(404, "GES.0016");
    c.delete(&format!("{P}/g/start"))
        .assert_error(405, "GES.9010");
    c.get(&format!("{P}/g/restart"))
        .assert_error(405, "GES.9010");

    // Bad query parameters.
    for q in [
        "limit=abc",
        "limit=-1",
        "limit=1001",
        "offset=1e3",
        "offset=99999999999999999999999",
        "status=done",
        "start_time=2024-13-45",
        "end_time=yesterday",
        "graph_name=a/b",
        "limit=1&limit=2",
        "graph_name=%FF",
    ] {
        c.get(&format!("{P}/jobs?{q}"))
            .assert_error(400, "GES.0001");
    }
    c.get(&format!("{P}?limit=x")).assert_error(400, "GES.0001");
    c.post_empty(&format!("{P}/g/clear-graph?clear_metadata=maybe"))
        .assert_error(400, "GES.0001");
    c.delete(&format!("{P}/g?keep_backup=2"))
        .assert_error(400, "GES.0001");

    // Credentials that are not text.
    let answer = raw(
        server.local_addr(),
        format!("GET {P} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: é\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");

    still_up(&c);
    let Reply { status, .. } = c.get(&format!("{P}/g"));
    assert_eq!(status, 200);
    server.shutdown().unwrap();
}
