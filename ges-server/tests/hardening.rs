//! The server as an attacker and an operator meet it: time and memory
//! bounded before authentication, connections that stall, the HTTP
//! layer's own rejections, quotas, and shutdown. Each test is one finding
//! that the server once got wrong.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{Client, OTHER_TOKEN, TOKEN, raw};
use serde_json::{Value, json};

const P: &str = "/v2/demo/graphs";

fn server(extra: &str) -> ges_server::ServerHandle {
    common::start(extra)
}

/// A server whose test configuration `tune` changes first.
fn server_with(tune: impl FnOnce(&mut ges_server::Config)) -> ges_server::ServerHandle {
    let mut cfg = common::config("");
    tune(&mut cfg);
    ges_server::Server::new(cfg)
        .bind()
        .unwrap()
        .spawn()
        .unwrap()
}

/// Reads from `conn` until the server closes it (`Ok(bytes read)`) or
/// `patience` passes (`Err`).
fn until_closed(conn: &mut TcpStream, patience: Duration) -> Result<Vec<u8>, Vec<u8>> {
    conn.set_read_timeout(Some(patience)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(out),
            Err(_) => return Err(out),
        }
    }
}

/// The JSON body of a raw response.
fn body_of(response: &str) -> Value {
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or(Value::Null)
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A signed request whose access key does not exist is refused from its
/// headers: the server does not wait for (or hold) a body first.
#[test]
fn a_signed_request_with_an_unknown_access_key_is_refused_before_its_body() {
    let server = server_with(|c| c.server.body_timeout_ms = 60_000);
    let mut conn = TcpStream::connect(server.local_addr()).unwrap();
    let head = format!(
        "POST {P} HTTP/1.1\r\nHost: ges\r\nContent-Type: application/json\r\n\
         X-Sdk-Date: 20240501T120000Z\r\n\
         Authorization: SDK-HMAC-SHA256 Access=NOBODY, SignedHeaders=host;x-sdk-date, \
         Signature={}\r\nContent-Length: 1000000\r\n\r\n",
        "0".repeat(64)
    );
    conn.write_all(head.as_bytes()).unwrap();
    // No body follows: the answer must come anyway, long before the body
    // timeout.
    let out = until_closed(&mut conn, Duration::from_secs(20))
        .expect("the server answered without waiting for the body");
    let text = String::from_utf8_lossy(&out);
    assert_eq!(status_of(&text), 401, "{text}");
    assert_eq!(body_of(&text)["error_code"], "GES.8007");
}

/// The head of a signed request by a known access key, with a wrong
/// signature: its body must be read before the signature can be checked.
fn signed_head(len: usize) -> String {
    format!(
        "POST {P} HTTP/1.1\r\nHost: ges\r\nContent-Type: application/json\r\n\
         X-Sdk-Date: 20240501T120000Z\r\n\
         Authorization: SDK-HMAC-SHA256 Access=KNOWNKEY, SignedHeaders=host;x-sdk-date, \
         Signature={}\r\nContent-Length: {len}\r\n\r\n",
        "0".repeat(64)
    )
}

const KNOWN_KEY: &str =
    "[[auth.access_keys]]\nak = \"KNOWNKEY\"\nsk = \"secret\"\nprojects = [\"demo\"]\n";

/// Whatever `conn` has received within `wait` (nothing is not an error).
fn received(conn: &mut TcpStream, wait: Duration) -> String {
    conn.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    match conn.read(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(_) => String::new(),
    }
}

/// Bodies of signed requests are read before their signature can be
/// checked, and an access key is no secret: the bodies in flight share one
/// budget, and a request that would overdraw it is refused before any of
/// its body is read.
#[test]
fn bodies_read_before_their_signature_share_one_bounded_budget() {
    let server = server_with(|c| {
        c.server.max_body_bytes = 1 << 20;
        c.server.max_unverified_body_bytes = 2 << 20;
        c.server.body_timeout_ms = 60_000;
        c.auth.access_keys = common::config(KNOWN_KEY).auth.access_keys;
    });
    let addr = server.local_addr();
    // Three requests declare 1 MiB each and send a little of it.
    let mut conns: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(signed_head(1 << 20).as_bytes()).unwrap();
            c.write_all(b"{\"graph\":").unwrap();
            c
        })
        .collect();
    // The budget holds two of them: the third is refused, at once.
    let mut answers = vec![String::new(); 3];
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while answers.iter().all(String::is_empty) && std::time::Instant::now() < until {
        for (c, a) in conns.iter_mut().zip(&mut answers) {
            a.push_str(&received(c, Duration::from_millis(50)));
        }
    }
    let refused: Vec<usize> = (0..3).filter(|&i| !answers[i].is_empty()).collect();
    assert_eq!(refused.len(), 1, "{answers:?}");
    let answer = &answers[refused[0]];
    assert_eq!(status_of(answer), 503, "{answer}");
    assert_eq!(body_of(answer)["error_code"], "GES.9015", "{answer}");
    // The two others are still being read; one gives up, and its share of
    // the budget comes back.
    let mut held: Vec<TcpStream> = (0..3)
        .filter(|i| !refused.contains(i))
        .map(|i| conns[i].try_clone().unwrap())
        .collect();
    drop(conns);
    drop(held.pop());
    let next = common::wait_for(|| {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(signed_head(1 << 20).as_bytes()).unwrap();
        let early = received(&mut c, Duration::from_millis(200));
        early.is_empty().then_some(c)
    });
    // That one is read whole, and its signature refused.
    let mut next = next;
    next.write_all(&vec![b' '; 1 << 20]).unwrap();
    let mut out = Vec::new();
    while !common::response_complete(&out) {
        let got = received(&mut next, Duration::from_secs(20));
        assert!(!got.is_empty(), "no answer: {out:?}");
        out.extend_from_slice(got.as_bytes());
    }
    let text = String::from_utf8_lossy(&out);
    assert_eq!(status_of(&text), 401, "{text}");
}

/// Headers that stop half-way, and a keep-alive connection left idle,
/// are closed once the header timeout passes.
#[test]
fn half_sent_headers_and_idle_connections_are_closed_after_the_header_timeout() {
    let server = server_with(|c| c.server.header_timeout_ms = 300);
    let addr = server.local_addr();
    let mut half = TcpStream::connect(addr).unwrap();
    half.write_all(format!("GET {P} HTTP/1.1\r\nHost: ges\r\n").as_bytes())
        .unwrap();
    assert!(
        until_closed(&mut half, Duration::from_secs(20)).is_ok(),
        "half-sent headers held the connection"
    );
    let mut idle = TcpStream::connect(addr).unwrap();
    idle.write_all(
        format!("GET {P} HTTP/1.1\r\nHost: ges\r\nX-Auth-Token: {TOKEN}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let out = until_closed(&mut idle, Duration::from_secs(20))
        .expect("an idle keep-alive connection was held");
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
}

/// A connection stalled in the middle of its headers does not make a
/// shutdown wait out its grace period.
#[test]
fn a_stalled_connection_does_not_hold_a_shutdown() {
    let server = server_with(|c| {
        c.server.header_timeout_ms = 60_000;
        c.server.shutdown_grace_ms = 3_000;
    });
    let mut stalled = TcpStream::connect(server.local_addr()).unwrap();
    stalled
        .write_all(format!("GET {P} HTTP/1.1\r\nHost: ges\r\n").as_bytes())
        .unwrap();
    // The server has read what was sent by the time it answers another
    // request.
    Client::new(&server, TOKEN).get(P).ok();
    let report = server.shutdown().unwrap();
    assert!(report.connections_drained, "{report:?}");
}

/// The HTTP layer's own refusals (a malformed request line, a URI or a
/// header block too long) are answered in GES's error format like every
/// other refusal.
#[test]
fn the_http_layers_own_refusals_carry_a_ges_error_body() {
    let server = server("");
    let addr = server.local_addr();
    let cases: [(&str, Vec<u8>, u16); 3] = [
        ("malformed", b"GARBAGE\r\n\r\n".to_vec(), 400),
        (
            "long URI",
            format!("GET /{} HTTP/1.1\r\nHost: ges\r\n\r\n", "a".repeat(70_000)).into_bytes(),
            431,
        ),
        (
            "big headers",
            format!(
                "GET {P} HTTP/1.1\r\nHost: ges\r\nX-Pad: {}\r\n\r\n",
                "b".repeat(200_000)
            )
            .into_bytes(),
            431,
        ),
    ];
    for (what, bytes, status) in cases {
        let out = raw(addr, &bytes);
        assert_eq!(status_of(&out), status, "{what}: {out}");
        let body = body_of(&out);
        assert!(
            body["error_code"]
                .as_str()
                .is_some_and(|c| c.starts_with("GES.")),
            "{what}: {out}"
        );
        assert!(body["error_msg"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

/// HTTP/1.1 requests carry exactly one `Host`; and `X-Project-Id`, which
/// scopes a request, is one header or none.
#[test]
fn a_request_without_host_or_with_two_hosts_or_two_project_ids_is_refused() {
    let server = server("");
    let addr = server.local_addr();
    let auth = format!("X-Auth-Token: {TOKEN}\r\n");
    let cases = [
        format!("GET {P} HTTP/1.1\r\n{auth}\r\n"),
        format!("GET {P} HTTP/1.1\r\nHost: a\r\nHost: b\r\n{auth}\r\n"),
        format!(
            "GET {P} HTTP/1.1\r\nHost: a\r\nX-Project-Id: demo\r\nX-Project-Id: other\r\n{auth}\r\n"
        ),
    ];
    for req in cases {
        let out = raw(addr, req.as_bytes());
        assert_eq!(status_of(&out), 400, "{req:?}: {out}");
        assert_eq!(body_of(&out)["error_code"], "GES.0001", "{out}");
    }
}

/// The duplicate-parameter check is linear, and a query of thousands of
/// parameters is refused before any of it is looked at twice; with the
/// default head size, such a query does not even reach the routes.
#[test]
fn a_query_of_thousands_of_parameters_is_refused() {
    let big = server_with(|c| c.server.max_head_bytes = 1 << 20);
    let c = Client::new(&big, TOKEN);
    // 15,000 distinct keys of up to three characters: a 60 KB query.
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let query: Vec<String> = (0..15_000usize)
        .map(|mut i| {
            let mut k = String::new();
            loop {
                k.push(digits[i % 36] as char);
                i /= 36;
                if i == 0 {
                    break k;
                }
            }
        })
        .collect();
    let r = c.get(&format!("{P}?{}", query.join("&")));
    r.assert_error(400, "GES.0001");
    assert!(
        r.body["error_msg"]
            .as_str()
            .is_some_and(|m| m.contains("parameters")),
        "{:?}",
        r.body
    );
    let default = server("");
    Client::new(&default, TOKEN)
        .get(&format!("{P}?{}", query.join("&")))
        .assert_error(431, "GES.9014");
}

/// One project filling its graph quota does not lock another out, and its
/// refusal names only its own figures.
#[test]
fn one_project_filling_its_quota_leaves_room_for_the_others() {
    let server = server("[engine]\nmax_graphs = 10\nmax_graphs_per_project = 2");
    let demo = Client::new(&server, TOKEN);
    let other = Client::new(&server, OTHER_TOKEN);
    for g in ["a", "b"] {
        demo.post(P, json!({"graph": {"name": g}})).ok();
    }
    let refused = demo.post(P, json!({"graph": {"name": "c"}}));
    assert_eq!(refused.status, 429, "{:?}", refused.body);
    refused.assert_error(429, "GES.9013");
    let msg = refused.body["error_msg"].as_str().unwrap_or_default();
    assert!(msg.contains('2') && !msg.contains("10"), "{msg}");
    other
        .post("/v2/other/graphs", json!({"graph": {"name": "a"}}))
        .ok();
}

/// The live-job quota is per project too: a project running as many jobs
/// as it may is refused another, and told its own figures; the other
/// project's jobs start.
#[test]
fn a_project_at_its_job_quota_is_refused_another_job_and_others_are_not() {
    let server = server("[engine]\nmax_live_jobs_per_project = 1");
    let demo = Client::new(&server, TOKEN);
    let other = Client::new(&server, OTHER_TOKEN);
    demo.running_graph("demo", "a");
    demo.running_graph("demo", "b");
    // The import runs for seconds: the project's one live job.
    demo.post(&format!("{P}/a/import-graph"), json!({"edgeset_path": "e"}))
        .ok();
    let refused = demo.post(&format!("{P}/b/import-graph"), json!({"edgeset_path": "e"}));
    refused.assert_error(429, "GES.9013");
    let msg = refused.body["error_msg"].as_str().unwrap_or_default();
    assert!(msg.contains("demo") && msg.contains("quota is 1"), "{msg}");
    other.running_graph("other", "c");
}

/// Ended jobs keep no more of their request than a short summary: a
/// finished import of a large body holds none of it.
#[test]
fn an_ended_job_keeps_only_a_bounded_summary_of_its_request() {
    let server = server("[engine]\nretained_payload_bytes = 64");
    let c = Client::new(&server, TOKEN);
    c.running_graph("demo", "g");
    let big = json!({"edgesetPath": "e.csv", "pad": "x".repeat(64 << 10)});
    let job = c.post(&format!("{P}/g/import-graph"), big).ok()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    c.wait_job("demo", "g", &job, "success");
    let key = graph_lifecycle::GraphKey::parse("demo", "g").unwrap();
    let task = server.engine().task(&key, job.parse().unwrap()).unwrap();
    assert!(
        task.payload.len() <= 64,
        "{} bytes kept",
        task.payload.len()
    );
}

/// Connections the kernel accepted before a shutdown began are answered
/// (or cleanly refused), never reset without a word.
#[test]
fn connections_waiting_in_the_backlog_at_shutdown_get_an_answer() {
    let cfg = common::config("");
    let bound = ges_server::Server::new(cfg).bind().unwrap();
    let addr: SocketAddr = bound.local_addr();
    // Connected and sent before the server accepts anything: they wait in
    // the listening socket's backlog.
    let mut waiting: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(
                format!("GET {P} HTTP/1.1\r\nHost: ges\r\nX-Auth-Token: {TOKEN}\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
            c
        })
        .collect();
    // The shutdown signal has fired before serving begins.
    let report = bound.run(async {}).unwrap();
    for (i, c) in waiting.iter_mut().enumerate() {
        let out = until_closed(c, Duration::from_secs(10)).unwrap_or_else(|o| o);
        let text = String::from_utf8_lossy(&out);
        let status = status_of(&text);
        assert!(
            status == 200 || status == 503,
            "connection {i} got no answer: {text:?}"
        );
        if status == 503 {
            assert_eq!(body_of(&text)["error_code"], "GES.9007", "{text}");
        }
    }
    assert!(report.connections_drained);
}
