//! The event stream, `GET /v2/{project_id}/events` (`docs/REST.md`,
//! "Event stream"): authentication, project scope, resuming with
//! `Last-Event-ID`, a lagging reader told to resync, the bounds, and the
//! end of every stream at shutdown.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use common::{Client, OTHER_TOKEN, TOKEN};
use ges_server::ServerHandle;
use ges_server::events::{EventHub, EventLimits};
use graph_lifecycle::{Engine, GraphKey};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// One SSE event: comment-only blocks are skipped.
#[derive(Debug, Clone, PartialEq)]
struct Sse {
    id: Option<u64>,
    event: String,
    data: Value,
}

impl Sse {
    fn graph(&self) -> &str {
        self.data["graph"].as_str().unwrap_or("")
    }
}

/// Parses one block of `field: value` lines; `None` for a block of
/// comments only.
fn parse_block(block: &str) -> Option<Sse> {
    let mut id = None;
    let mut event = None;
    let mut data = String::new();
    for line in block.lines() {
        if line.starts_with(':') || line.is_empty() {
            continue;
        }
        let (field, value) = line.split_once(": ").unwrap_or((line, ""));
        match field {
            "id" => id = Some(value.parse().expect("a numeric id")),
            "event" => event = Some(value.to_owned()),
            "data" => data.push_str(value),
            "retry" => {}
            other => panic!("unexpected field {other:?} in {block:?}"),
        }
    }
    let event = event?;
    Some(Sse {
        id,
        event,
        data: serde_json::from_str(&data).expect("JSON data"),
    })
}

/// A stream read over a real connection.
struct Stream {
    reader: BufReader<Box<dyn Read + Send>>,
}

impl Stream {
    fn open(server: &ServerHandle, project: &str, token: &str, last: Option<&str>) -> Stream {
        let agent = common::agent();
        let mut req = agent
            .get(format!(
                "http://{}/v2/{project}/events",
                server.local_addr()
            ))
            .header("x-auth-token", token);
        if let Some(last) = last {
            req = req.header("last-event-id", last);
        }
        let res = req.call().expect("the stream opens");
        assert_eq!(res.status().as_u16(), 200);
        assert_eq!(
            res.headers()["content-type"].to_str().unwrap(),
            "text/event-stream; charset=utf-8"
        );
        Stream {
            reader: BufReader::new(Box::new(res.into_body().into_reader())),
        }
    }

    /// The next event; `None` at the end of the stream.
    fn next(&mut self) -> Option<Sse> {
        self.try_next().expect("read the stream")
    }

    /// The next event, `Ok(None)` at the end of the stream, or the error
    /// of a connection closed in the middle of it.
    fn try_next(&mut self) -> std::io::Result<Option<Sse>> {
        loop {
            let mut block = String::new();
            loop {
                let mut line = String::new();
                if self.reader.read_line(&mut line)? == 0 {
                    return Ok(None);
                }
                if line == "\n" {
                    break;
                }
                block.push_str(&line);
            }
            if let Some(e) = parse_block(&block) {
                return Ok(Some(e));
            }
        }
    }

    /// Events up to and including the first that `last` matches.
    fn until(&mut self, last: impl Fn(&Sse) -> bool) -> Vec<Sse> {
        let mut out = Vec::new();
        loop {
            let e = self.next().expect("the stream ended early");
            let done = last(&e);
            out.push(e);
            if done {
                return out;
            }
        }
    }
}

fn created(graph: &str) -> impl Fn(&Sse) -> bool + '_ {
    move |e| e.data["change"] == "graph_created" && e.graph() == graph
}

fn key(project: &str, graph: &str) -> GraphKey {
    GraphKey::parse(project, graph).unwrap()
}

#[test]
fn the_stream_asks_for_the_apis_credentials() {
    let server = common::start("");
    let anonymous = Client {
        token: None,
        ..Client::new(&server, TOKEN)
    };
    let r = anonymous.get("/v2/demo/events");
    r.assert_error(401, "GES.8007");
    let other = Client::new(&server, OTHER_TOKEN);
    other.get("/v2/demo/events").assert_error(403, "GES.8006");
    let wrong = Client::new(&server, "not-a-token");
    wrong.get("/v2/demo/events").assert_error(401, "GES.8007");
    server.shutdown().unwrap();
}

#[test]
fn a_reader_of_another_project_sees_nothing_of_this_one() {
    let server = common::start("");
    let mut other = Stream::open(&server, "other", OTHER_TOKEN, None);
    let mut demo = Stream::open(&server, "demo", TOKEN, None);
    let demo_client = Client::new(&server, TOKEN);
    for name in ["secret-a", "secret-b"] {
        demo_client
            .post(
                "/v2/demo/graphs",
                serde_json::json!({"graph": {"name": name}}),
            )
            .ok();
    }
    demo_client
        .post_empty("/v2/demo/graphs/secret-a/start")
        .ok();
    demo.until(created("secret-b"));
    server.engine().create_graph(&key("other", "mine")).unwrap();
    let seen = other.until(created("mine"));
    assert_eq!(seen.len(), 1, "the other project's stream saw {seen:?}");
    // And the demo stream never gets the other project's graph.
    server
        .engine()
        .create_graph(&key("demo", "sentinel"))
        .unwrap();
    let rest = demo.until(created("sentinel"));
    assert!(rest.iter().all(|e| e.graph() != "mine"), "{rest:?}");
    server.shutdown().unwrap();
}

#[test]
fn last_event_id_resumes_with_exactly_the_missed_events() {
    let server = common::start("");
    let engine = server.engine().clone();
    // The reference: a reader that misses nothing.
    let mut all = Stream::open(&server, "demo", TOKEN, None);
    let mut first = Stream::open(&server, "demo", TOKEN, None);
    for name in ["g1", "g2", "g3"] {
        engine.create_graph(&key("demo", name)).unwrap();
    }
    engine.start(&key("demo", "g1")).unwrap();
    // The first reader reads one event and goes away.
    let seen = first.next().expect("an event");
    assert_eq!(seen.event, "change");
    let last = seen.id.expect("an id");
    drop(first);
    for name in ["g4", "g5"] {
        engine.create_graph(&key("demo", name)).unwrap();
    }
    engine.remove_graph(&key("demo", "g2")).unwrap();
    // Another project's events are not the demo reader's to miss.
    engine.create_graph(&key("other", "noise")).unwrap();
    engine.create_graph(&key("demo", "sentinel")).unwrap();
    let reference = all.until(created("sentinel"));
    let at = reference
        .iter()
        .position(|e| e.id == Some(last))
        .expect("the reference saw the first reader's event");
    let missed: Vec<Option<u64>> = reference[at + 1..].iter().map(|e| e.id).collect();
    assert!(missed.len() >= 6, "{reference:?}");

    let mut resumed = Stream::open(&server, "demo", TOKEN, Some(&last.to_string()));
    let got: Vec<Option<u64>> = resumed
        .until(created("sentinel"))
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(got, missed);

    // An id the hub does not hold: told to resync before anything else.
    let mut lost = Stream::open(&server, "demo", TOKEN, Some("999999999"));
    let e = lost.next().unwrap();
    assert_eq!(e.event, "resync");
    assert_eq!(e.id, None);
    let mut garbled = Stream::open(&server, "demo", TOKEN, Some("12abc"));
    assert_eq!(garbled.next().unwrap().event, "resync");
    // And one of another project's events resumes nothing either.
    let mut theirs = Stream::open(&server, "other", OTHER_TOKEN, Some(&last.to_string()));
    assert_eq!(theirs.next().unwrap().event, "resync");
    server.shutdown().unwrap();
}

#[test]
fn streams_are_bounded_per_project_and_end_at_shutdown() {
    let server = common::start("");
    let per_project = EventLimits::default().max_streams_per_project;
    let mut open: Vec<Stream> = (0..per_project)
        .map(|_| Stream::open(&server, "demo", TOKEN, None))
        .collect();
    let client = Client::new(&server, TOKEN);
    client.get("/v2/demo/events").assert_error(429, "GES.9013");
    // Another project has seats of its own.
    let mut other = Stream::open(&server, "other", OTHER_TOKEN, None);
    server.engine().create_graph(&key("demo", "g")).unwrap();
    for s in &mut open {
        s.until(created("g"));
    }
    // Shutdown ends every stream, so the drain does not wait on them.
    let report = server.shutdown().unwrap();
    assert!(report.connections_drained);
    // The connection layer closes a connection whose answer has begun
    // without waiting for its body: the stream ends, cleanly or not.
    for s in open.iter_mut().chain([&mut other]) {
        assert!(matches!(s.try_next(), Ok(None) | Err(_)));
    }
}

/// A request for the in-process service.
fn request(path: &str) -> axum::http::Request<axum::body::Body> {
    axum::http::Request::builder()
        .uri(path)
        .header("host", "ges.test")
        .header("x-auth-token", TOKEN)
        .body(axum::body::Body::empty())
        .unwrap()
}

/// Reads SSE events off an in-process response body.
struct BodyEvents {
    body: axum::body::Body,
    buf: String,
}

impl BodyEvents {
    async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(at) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..at + 2).collect();
                if let Some(e) = parse_block(&block) {
                    return Some(e);
                }
                continue;
            }
            let frame = self.body.frame().await?.unwrap();
            if let Ok(data) = frame.into_data() {
                self.buf.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }
}

async fn open(svc: &ges_server::api::ApiService) -> BodyEvents {
    let res = svc
        .clone()
        .oneshot(request("/v2/demo/events"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    BodyEvents {
        body: res.into_body(),
        buf: String::new(),
    }
}

/// The per-stream bound: a reader that does not read is cut off once its
/// queue is full, told to resync, and goes on from there; the engine and
/// the other readers never wait for it.
#[tokio::test]
async fn a_reader_that_falls_behind_is_told_to_resync() {
    const QUEUE: usize = 4;
    let (engine, _jobs) = Engine::builder().build();
    let auth = ges_server::config::AuthConfig {
        tokens: vec![ges_server::config::TokenEntry {
            token: TOKEN.into(),
            projects: vec!["demo".into()],
        }],
        ..Default::default()
    };
    let limits = ges_server::Limits {
        max_body_bytes: 1 << 20,
        body_timeout: Duration::from_secs(30),
        max_unverified_body_bytes: 1 << 20,
    };
    let mut state = ges_server::ApiState::new(
        engine.clone(),
        ges_server::Authenticator::new(&auth),
        limits,
    );
    state.events = EventHub::new(
        engine.clone(),
        EventLimits {
            queue: QUEUE,
            ..EventLimits::default()
        },
    );
    let svc = ges_server::api::service(state);
    // The slow reader opens first and then reads nothing for a while.
    let mut slow = open(&svc).await;
    let mut fast = open(&svc).await;
    // One event at a time, each read by the fast reader before the next:
    // it never has more than one waiting. The hub offers each event to
    // every reader before the next, so when the fast reader has event k,
    // the slow one was offered it too.
    let mut seqs = Vec::new();
    for i in 0..QUEUE + 2 {
        let name = format!("g{i}");
        engine.create_graph(&key("demo", &name)).unwrap();
        let e = fast.next().await.unwrap();
        assert_eq!(e.graph(), name);
        seqs.push(e.id.unwrap());
    }
    // The slow reader gets what fit in its queue, then the resync, which
    // names the first event it missed.
    for want in &seqs[..QUEUE] {
        let e = slow.next().await.unwrap();
        assert_eq!((e.event.as_str(), e.id), ("change", Some(*want)));
    }
    let resync = slow.next().await.unwrap();
    assert_eq!(resync.event, "resync");
    assert_eq!(resync.data["missed"], seqs[QUEUE]);
    // It goes on live from there.
    engine.create_graph(&key("demo", "after")).unwrap();
    assert_eq!(fast.next().await.unwrap().graph(), "after");
    let e = slow.next().await.unwrap();
    assert_eq!((e.event.as_str(), e.graph()), ("change", "after"));
}

/// The connection layer's header timeout bounds a request's head and an
/// idle keep-alive connection, not a stream being answered.
#[test]
fn a_stream_outlives_the_header_timeout() {
    let mut cfg = common::config("");
    cfg.server.header_timeout_ms = 200;
    let server = ges_server::Server::new(cfg)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    let mut stream = Stream::open(&server, "demo", TOKEN, None);
    // Several header timeouts with nothing sent on the connection.
    std::thread::sleep(Duration::from_millis(1_000));
    server.engine().create_graph(&key("demo", "late")).unwrap();
    let seen = stream.until(created("late"));
    assert_eq!(seen.len(), 1, "{seen:?}");
    server.shutdown().unwrap();
}
