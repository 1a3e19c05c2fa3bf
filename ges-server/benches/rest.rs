//! The REST path under load: job-status polls and forced restarts sent
//! over keep-alive connections on loopback, with a token and signed with
//! `SDK-HMAC-SHA256`, to the real server and to a bare handler that
//! returns the same bytes.
//!
//! - **The real server** runs in this process as the binary runs it
//!   (`Server::bind`, then `spawn`): its own runtime of `[server] threads`
//!   workers, the connection loop of `src/conn.rs`, the API service with
//!   the gate, the panic guard, the access log and the metrics (a metrics
//!   listener is configured, so every request is counted), and the access
//!   log formatted by a `tracing` subscriber set up as the binary sets it
//!   up, writing to a sink (`REST_LOG=off`: no subscriber). Storage is in
//!   memory and the host is the simulated one: a job-status poll is then
//!   one read of the engine, and a forced restart one command of the core
//!   and a simulated worker's look at a voided token, with no journal
//!   write, no sync and no graph data loaded, so that what is measured is
//!   the REST path and the core's call, not a disk or an import.
//! - **The bare handler** is an axum router with the two routes and
//!   nothing else, each returning the bytes the real server returns (the
//!   same body, `content-type` and an `x-request-id` of the same length),
//!   served by the same connection loop (`conn::serve`) on a runtime built
//!   with the same settings. The only difference between the two is the
//!   routes' and middleware's work.
//! - **The bare handler with the core's call** is the same, but its routes
//!   also make the engine call of the real route, on the real server's
//!   engine (`Engine::task`, `Engine::force_restart`) before they answer
//!   the same bytes: what a forced restart costs the core, its job's
//!   hand-off to a worker included, is then on both sides, and the ratio
//!   against it is the REST path's alone.
//! - **The client** is hyper's HTTP/1.1 client, `REST_CONNS` keep-alive
//!   connections to each server (default 8), each sending its request
//!   again as soon as the answer is read, on a runtime of
//!   `REST_CLIENT_THREADS` threads (default 2). A signed request is signed
//!   once per case, as the SDK's signer signs it (the canonical request
//!   is built here from the wire contract, not by the server's code), and
//!   sent again and again: the client's cost stays small and the same for
//!   every server, which receives the same bytes.
//!
//! The cases: `poll-token`, `poll-signed` (GET of a finished job's status,
//! each connection its own graph and job), `restart-token`,
//! `restart-signed` (POST `.../restart` with `{}`, each connection on its
//! own graph, kept restarting: each restart supersedes the one before,
//! whose simulated job lasts longer than the benchmark).
//!
//! Each case runs `REST_ROUNDS` rounds (default 21); a round is a slice of
//! `REST_SECS` seconds (default 0.5) of load on each server in turn, the
//! other servers' connections idle, and which server goes first rotates.
//! Slices this short put the three servers under the same conditions
//! when other work on the machine comes and goes. Printed per case: the
//! medians over the rounds of the throughput and of the p50 and p99
//! latency of a request (from its send to its last body byte), the CPU
//! time the server's HTTP threads spent per request (from
//! `/proc/self/task/*/schedstat`), and the median (and spread) of the
//! rounds' throughput ratios. `REST_VERBOSE=1` prints every round;
//! `REST_COUNT_ALLOCS=1` counts the allocations a request costs, client
//! and server (a counting run's times are not comparable with others).
//!
//! ```sh
//! cargo bench -p ges-server --bench rest
//! REST_CASES=poll-token REST_ROUNDS=5 cargo bench -p ges-server --bench rest
//! ```
//!
//! `docs/BENCHMARKS.md`, "The REST path", has the figures.

#[path = "../tests/common/sign.rs"]
mod sign;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::RawPathParams;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, header};
use axum::routing::{get, post};
use ges_server::conn::ConnLimits;
use ges_server::{Config, Server, ServerHandle};
use graph_lifecycle::{Engine, GraphKey, JobId};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

const PROJECT: &str = "demo";
const TOKEN: &str = "bench-token";
const AK: &str = "BENCHACCESSKEY000001";
const SK: &str = "bench-secret-key-0000000000000000000000";
const HOST: &str = "ges.bench.test";
const USER_AGENT: &str = "huaweicloud-usdk-python/3.0";
/// What the signed requests sign, as the SDK does.
const SIGNED_HEADERS: &str = "content-type;host;user-agent;x-project-id;x-sdk-date";
const POLL_ROUTE: &str = "/v2/{project_id}/graphs/{graph_id}/jobs/{job_id}/status";
const RESTART_ROUTE: &str = "/v2/{project_id}/graphs/{graph_id}/restart";
/// The first load on each server, not measured.
const WARMUP: Duration = Duration::from_millis(500);
/// How long a slice's load runs before it is measured, and how long the
/// requests in flight get to end after it.
const SETTLE: Duration = Duration::from_millis(30);
/// The thread names the CPU time is read by.
const REAL_THREADS: &str = "ges-http";
const BARE_THREADS: &str = "bare-http";
const BARE_CORE_THREADS: &str = "core-http";
const CLIENT_THREADS: &str = "rest-client";

/// The allocator, counting allocations while `REST_COUNT_ALLOCS` is set
/// (one shared counter: it slows every allocation down, so the figures of
/// a counting run are for the allocations, not the time).
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: as above.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Settings {
    rounds: usize,
    secs: f64,
    conns: usize,
    client_threads: usize,
    verbose: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Poll,
    Restart,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    Token,
    Signed,
}

#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    op: Op,
    auth: Auth,
}

const CASES: [Case; 4] = [
    Case {
        name: "poll-token",
        op: Op::Poll,
        auth: Auth::Token,
    },
    Case {
        name: "poll-signed",
        op: Op::Poll,
        auth: Auth::Signed,
    },
    Case {
        name: "restart-token",
        op: Op::Restart,
        auth: Auth::Token,
    },
    Case {
        name: "restart-signed",
        op: Op::Restart,
        auth: Auth::Signed,
    },
];

/// One request, sent again and again on one connection.
#[derive(Clone)]
struct Shot {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Shot {
    fn request(&self) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.path.parse().expect("a path");
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// The `Authorization` value of a request without a query, signed by the
/// tests' signer (`tests/common/sign.rs`, written from the wire contract
/// and checked against the official SDK's signatures).
fn authorization(date: &str, method: &str, path: &str, headers: &HeaderMap, body: &[u8]) -> String {
    let signed: Vec<(&str, &str)> = SIGNED_HEADERS
        .split(';')
        .map(|name| (name, headers[name].to_str().expect("ASCII")))
        .collect();
    let signature = sign::sign(SK, date, method, path, &[], &signed, body);
    sign::authorization(AK, SIGNED_HEADERS, &signature)
}

/// Now, as `X-Sdk-Date`.
fn sdk_date() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let t = time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).expect("a date"))
        .expect("a date");
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn shot(method: Method, path: String, body: &'static [u8], auth: Auth) -> Shot {
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: &str| {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).expect("a header value"),
        );
    };
    put("host", HOST);
    put("user-agent", USER_AGENT);
    if !body.is_empty() {
        put("content-type", "application/json");
    }
    match auth {
        Auth::Token => put("x-auth-token", TOKEN),
        Auth::Signed => {
            let date = sdk_date();
            put("content-type", "application/json");
            put("x-project-id", PROJECT);
            put("x-sdk-date", &date);
            let value = authorization(&date, method.as_str(), &path, &headers, body);
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&value).expect("a header value"),
            );
        }
    }
    Shot {
        method,
        path,
        headers,
        body: Bytes::from_static(body),
    }
}

/// The graphs and jobs the requests name.
struct Fixture {
    /// Per connection: a graph and its finished start job.
    polled: Vec<(String, String)>,
    /// Per connection: a graph kept restarting.
    restarted: Vec<String>,
}

impl Fixture {
    fn shots(&self, case: Case) -> Vec<Shot> {
        match case.op {
            Op::Poll => self
                .polled
                .iter()
                .map(|(g, j)| {
                    let path = format!("/v2/{PROJECT}/graphs/{g}/jobs/{j}/status");
                    shot(Method::GET, path, b"", case.auth)
                })
                .collect(),
            Op::Restart => self
                .restarted
                .iter()
                .map(|g| {
                    let path = format!("/v2/{PROJECT}/graphs/{g}/restart");
                    shot(Method::POST, path, b"{}", case.auth)
                })
                .collect(),
        }
    }
}

/// A whole answer.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

/// One request on a connection of its own.
async fn call(addr: SocketAddr, s: &Shot) -> Answer {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let res = sender.send_request(s.request()).await.expect("an answer");
    let (parts, body) = res.into_parts();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await.expect("a body").to_bytes(),
    }
}

fn json(a: &Answer) -> serde_json::Value {
    serde_json::from_slice(&a.body).expect("a JSON body")
}

fn token_shot(method: Method, path: &str, body: &'static [u8]) -> Shot {
    shot(method, path.to_owned(), body, Auth::Token)
}

async fn fixture(addr: SocketAddr, conns: usize) -> Fixture {
    let mut polled = Vec::new();
    let mut restarted = Vec::new();
    for i in 0..conns {
        for (name, list) in [(format!("poll{i}"), true), (format!("restart{i}"), false)] {
            let create = format!(r#"{{"graph": {{"name": "{name}"}}}}"#).into_bytes();
            let create: &'static [u8] = Box::leak(create.into_boxed_slice());
            let a = call(
                addr,
                &token_shot(Method::POST, &format!("/v2/{PROJECT}/graphs"), create),
            )
            .await;
            assert_eq!(a.status, 200, "create: {:?}", a.body);
            let start = format!("/v2/{PROJECT}/graphs/{name}/start");
            let a = call(addr, &token_shot(Method::POST, &start, b"")).await;
            assert_eq!(a.status, 200, "start: {:?}", a.body);
            let job = json(&a)["job_id"].as_str().expect("a job id").to_owned();
            if list {
                polled.push((name, job));
            } else {
                restarted.push(name);
            }
        }
    }
    // Every start has ended before the polls begin, so that each poll's
    // answer stays the same.
    for (g, j) in &polled {
        let path = format!("/v2/{PROJECT}/graphs/{g}/jobs/{j}/status");
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let a = call(addr, &token_shot(Method::GET, &path, b"")).await;
            if json(&a)["status"] == "success" {
                break;
            }
            assert!(Instant::now() < until, "the start job of {g} did not end");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Fixture { polled, restarted }
}

fn config() -> Config {
    let text = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"

        [storage]
        in_memory = true

        [metrics]
        listen = "127.0.0.1:0"

        [simulation]
        enabled = true
        poll_ms = 2

        [simulation.start]
        duration_ms = 10
        steps = 1

        [simulation.restart]
        duration_ms = 3600000
        steps = 1

        [[auth.tokens]]
        token = "{TOKEN}"
        projects = ["{PROJECT}"]

        [[auth.access_keys]]
        ak = "{AK}"
        sk = "{SK}"
        projects = ["{PROJECT}"]
        "#
    );
    Config::from_toml_str(&text).expect("the benchmark's configuration")
}

/// The bare handler's answer: these bytes, with the headers the real
/// server's answer carries besides those hyper adds.
fn fixed(body: Bytes) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        "x-request-id",
        HeaderValue::from_static("01a21c12-ca49-708e-a0a8-9f5cd851d673"),
    );
    r
}

/// A bare handler, served on a thread of its own.
struct Bare {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The graph key and job of a request's path parameters.
fn key_of(params: &RawPathParams) -> (GraphKey, Option<JobId>) {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
            .expect("a parameter")
    };
    let key = GraphKey::parse(get("project_id"), get("graph_id")).expect("a key");
    let job = params
        .iter()
        .find(|(k, _)| *k == "job_id")
        .map(|(_, v)| JobId::parse(v).expect("a job id"));
    (key, job)
}

impl Bare {
    /// `engine`: also make the core's call of each route on it (the job
    /// read, the forced restart), and still answer the fixed bytes.
    fn start(
        cfg: &Config,
        poll_body: Bytes,
        restart_body: Bytes,
        engine: Option<Engine>,
        threads: &str,
    ) -> Bare {
        let limits = ConnLimits {
            header_timeout: Duration::from_millis(cfg.server.header_timeout_ms),
            max_head_bytes: cfg.server.max_head_bytes,
            max_connections: cfg.server.max_connections,
        };
        let app = match engine {
            None => Router::new()
                .route(
                    POLL_ROUTE,
                    get(move || std::future::ready(fixed(poll_body.clone()))),
                )
                .route(
                    RESTART_ROUTE,
                    post(move || std::future::ready(fixed(restart_body.clone()))),
                ),
            Some(engine) => {
                let reader = engine.clone();
                Router::new()
                    .route(
                        POLL_ROUTE,
                        get(move |params: RawPathParams| {
                            let (key, job) = key_of(&params);
                            let task = reader.task(&key, job.expect("a job"));
                            assert!(task.is_ok());
                            std::future::ready(fixed(poll_body.clone()))
                        }),
                    )
                    .route(
                        RESTART_ROUTE,
                        post(move |params: RawPathParams| {
                            let (key, _) = key_of(&params);
                            assert!(engine.force_restart(&key).is_ok());
                            std::future::ready(fixed(restart_body.clone()))
                        }),
                    )
            }
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("an address");
        // As `BoundServer::run` builds the server's runtime.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.server.threads)
            .thread_name(threads)
            .enable_all()
            .build()
            .expect("a runtime");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bare-server".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("register");
                    let stop = async move {
                        let _ = rx.await;
                    };
                    ges_server::conn::serve(listener, app, None, limits, stop, Duration::ZERO)
                        .await;
                });
            })
            .expect("a thread");
        Bare {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// CPU time, in nanoseconds, of this process's threads whose name begins
/// with `prefix`.
fn cpu_ns(prefix: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut total = 0;
    for task in dir.flatten() {
        let p = task.path();
        let name = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if !name.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(p.join("schedstat")).unwrap_or_default();
        total += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

/// What one round against one server measured.
#[derive(Clone, Copy)]
struct Round {
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    /// The server's HTTP threads' CPU time a request.
    cpu_us: f64,
    /// The client's threads' CPU time a request.
    client_us: f64,
    /// Allocations a request, client and server (`REST_COUNT_ALLOCS`).
    allocations: f64,
}

/// The client's connections to one server: each sends its request over
/// and over while the load is on, and waits while it is off, keeping its
/// connection open.
struct Load {
    on: Arc<AtomicBool>,
    recording: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    wake: Arc<tokio::sync::Notify>,
    /// Per connection, the latencies recorded, in nanoseconds.
    took: Vec<Arc<Mutex<Vec<u32>>>>,
    unexpected: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    threads: &'static str,
}

impl Load {
    async fn connect(addr: SocketAddr, shots: &[Shot], threads: &'static str) -> Load {
        let mut load = Load {
            on: Arc::new(AtomicBool::new(false)),
            recording: Arc::new(AtomicBool::new(false)),
            stop: Arc::new(AtomicBool::new(false)),
            wake: Arc::new(tokio::sync::Notify::new()),
            took: Vec::new(),
            unexpected: Arc::new(AtomicU64::new(0)),
            tasks: Vec::new(),
            threads,
        };
        for s in shots {
            let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            let took = Arc::new(Mutex::new(Vec::with_capacity(1 << 16)));
            load.took.push(took.clone());
            let s = s.clone();
            let (on, recording, stop, wake, unexpected) = (
                load.on.clone(),
                load.recording.clone(),
                load.stop.clone(),
                load.wake.clone(),
                load.unexpected.clone(),
            );
            load.tasks.push(tokio::spawn(async move {
                loop {
                    let woken = wake.notified();
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    if !on.load(Ordering::Relaxed) {
                        woken.await;
                        continue;
                    }
                    let counted = recording.load(Ordering::Relaxed);
                    sender.ready().await.expect("the connection stays open");
                    let req = s.request();
                    let t = Instant::now();
                    let res = sender.send_request(req).await.expect("an answer");
                    let ok = res.status() == 200;
                    let body = res.into_body().collect().await.expect("a body");
                    let elapsed = t.elapsed();
                    drop(body);
                    if !ok {
                        unexpected.fetch_add(1, Ordering::Relaxed);
                    }
                    if counted && recording.load(Ordering::Relaxed) {
                        let ns = u32::try_from(elapsed.as_nanos()).unwrap_or(u32::MAX);
                        took.lock().expect("not poisoned").push(ns);
                    }
                }
            }));
        }
        load
    }

    /// Turns the load on for `SETTLE` and `secs` more, and measures the
    /// latter.
    async fn slice(&self, secs: f64) -> Round {
        self.on.store(true, Ordering::Relaxed);
        self.wake.notify_waiters();
        tokio::time::sleep(SETTLE).await;
        let cpu0 = cpu_ns(self.threads);
        let client0 = cpu_ns(CLIENT_THREADS);
        let allocations0 = ALLOCATIONS.load(Ordering::Relaxed);
        let t0 = Instant::now();
        self.recording.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        self.recording.store(false, Ordering::Relaxed);
        let elapsed = t0.elapsed();
        let cpu = cpu_ns(self.threads) - cpu0;
        let client = cpu_ns(CLIENT_THREADS) - client0;
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - allocations0;
        self.on.store(false, Ordering::Relaxed);
        // The requests in flight end before the next slice begins.
        tokio::time::sleep(SETTLE).await;
        assert_eq!(
            self.unexpected.load(Ordering::Relaxed),
            0,
            "answers other than 200"
        );
        let mut all = Vec::new();
        for t in &self.took {
            all.append(&mut t.lock().expect("not poisoned"));
        }
        all.sort_unstable();
        let n = all.len().max(1);
        let at = |q: f64| f64::from(all[((n as f64 * q) as usize).min(n - 1)]) / 1_000.0;
        Round {
            per_sec: all.len() as f64 / elapsed.as_secs_f64(),
            p50_us: at(0.50),
            p99_us: at(0.99),
            cpu_us: cpu as f64 / 1_000.0 / n as f64,
            client_us: client as f64 / 1_000.0 / n as f64,
            allocations: allocations as f64 / n as f64,
        }
    }

    async fn close(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake.notify_waiters();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn medians(rounds: &[Round]) -> Round {
    let m = |f: fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    Round {
        per_sec: m(|r| r.per_sec),
        p50_us: m(|r| r.p50_us),
        p99_us: m(|r| r.p99_us),
        cpu_us: m(|r| r.cpu_us),
        client_us: m(|r| r.client_us),
        allocations: m(|r| r.allocations),
    }
}

struct Summary {
    case: Case,
    /// Per target, the medians of the rounds.
    medians: [Round; 3],
    /// Per round, real over bare; real over bare with the core's call.
    ratios: [Vec<f64>; 2],
}

fn init_logging() -> bool {
    if std::env::var("REST_LOG").is_ok_and(|v| v == "off") {
        return false;
    }
    // As the binary sets it up (`src/main.rs`), writing to a sink.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::sink)
        .with_ansi(false)
        .init();
    true
}

fn spread(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(0.0, f64::max);
    format!("{:.3} ({lo:.3} to {hi:.3})", median(v.to_vec()))
}

fn main() {
    let settings = Settings {
        rounds: env("REST_ROUNDS", 21),
        secs: env("REST_SECS", 0.5),
        conns: env("REST_CONNS", 8),
        client_threads: env("REST_CLIENT_THREADS", 2),
        verbose: env("REST_VERBOSE", 0) != 0,
    };
    let wanted: Option<Vec<String>> = std::env::var("REST_CASES")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect());
    // `cargo bench` passes `--bench`; a filter argument selects cases too.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let cases: Vec<Case> = CASES
        .into_iter()
        .filter(|c| {
            wanted
                .as_ref()
                .is_none_or(|w| w.iter().any(|n| n == c.name))
        })
        .filter(|c| filter.is_empty() || filter.iter().any(|f| c.name.contains(f.as_str())))
        .collect();
    let logging = init_logging();
    let counting = env("REST_COUNT_ALLOCS", 0) != 0;
    COUNTING.store(counting, Ordering::Relaxed);

    let cfg = config();
    let server: ServerHandle = Server::new(cfg.clone())
        .bind()
        .expect("bind")
        .spawn()
        .expect("serve");
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.client_threads)
        .thread_name(CLIENT_THREADS)
        .enable_all()
        .build()
        .expect("a runtime");
    let real = server.local_addr();
    let fixture = client.block_on(fixture(real, settings.conns));

    // The bytes the bare handlers return: the real server's answers.
    let poll_shot = &fixture.shots(CASES[0])[0];
    let real_poll = client.block_on(call(real, poll_shot));
    assert_eq!(real_poll.status, 200);
    let restart_body = Bytes::from(format!(
        r#"{{"job_id":"{}"}}"#,
        "01a21c12-ca49-708e-a0a8-9f5cd851d673"
    ));
    let bare = Bare::start(
        &cfg,
        real_poll.body.clone(),
        restart_body.clone(),
        None,
        BARE_THREADS,
    );
    let bare_core = Bare::start(
        &cfg,
        real_poll.body.clone(),
        restart_body.clone(),
        Some(server.engine().clone()),
        BARE_CORE_THREADS,
    );
    let names = |h: &HeaderMap| {
        let mut v: Vec<(String, usize)> = h
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.len()))
            .collect();
        v.sort();
        v
    };
    for addr in [bare.addr, bare_core.addr] {
        let answer = client.block_on(call(addr, poll_shot));
        assert_eq!(answer.body, real_poll.body, "the bare handler's bytes");
        assert_eq!(names(&answer.headers), names(&real_poll.headers));
    }

    println!(
        "REST path: {} keep-alive connections per server, {} client threads, server runtimes of {} threads; \
         per case, {} rounds, each a slice of {:.2} s on each server in turn (which goes first rotates), \
         after {:.1} s on each not measured; access log {}",
        settings.conns,
        settings.client_threads,
        cfg.server.threads,
        settings.rounds,
        settings.secs,
        WARMUP.as_secs_f64(),
        if logging {
            "formatted, written to a sink"
        } else {
            "off"
        },
    );
    println!(
        "job-status answer: {} bytes of body; restart answer: {} bytes",
        real_poll.body.len(),
        restart_body.len()
    );
    let mut summaries = Vec::new();
    for case in cases {
        // Signed once a case: a case lasts less than the skew window.
        let shots = fixture.shots(case);
        let loads = client.block_on(async {
            [
                Load::connect(real, &shots, REAL_THREADS).await,
                Load::connect(bare.addr, &shots, BARE_THREADS).await,
                Load::connect(bare_core.addr, &shots, BARE_CORE_THREADS).await,
            ]
        });
        client.block_on(async {
            for load in &loads {
                load.slice(WARMUP.as_secs_f64()).await;
            }
        });
        let mut rounds: [Vec<Round>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        let mut ratios = [Vec::new(), Vec::new()];
        for r in 0..settings.rounds {
            let mut this = [None; 3];
            // Each round starts with the next server.
            for i in 0..loads.len() {
                let t = (i + r) % loads.len();
                this[t] = Some(client.block_on(loads[t].slice(settings.secs)));
            }
            let [a, b, c] = this.map(|x| x.expect("measured"));
            if settings.verbose {
                println!(
                    "  {:<15} round {r:>2}: real {:>6.0}/s p50 {:>4.0} p99 {:>5.0} µs cpu {:>4.1}+{:>4.1} µs | \
                     bare {:>6.0}/s p50 {:>4.0} p99 {:>5.0} µs cpu {:>4.1}+{:>4.1} µs | \
                     bare+core {:>6.0}/s cpu {:>4.1} µs | ratios {:.3} {:.3}",
                    case.name,
                    a.per_sec,
                    a.p50_us,
                    a.p99_us,
                    a.cpu_us,
                    a.client_us,
                    b.per_sec,
                    b.p50_us,
                    b.p99_us,
                    b.cpu_us,
                    b.client_us,
                    c.per_sec,
                    c.cpu_us,
                    a.per_sec / b.per_sec,
                    a.per_sec / c.per_sec,
                );
            }
            ratios[0].push(a.per_sec / b.per_sec);
            ratios[1].push(a.per_sec / c.per_sec);
            for (v, x) in rounds.iter_mut().zip([a, b, c]) {
                v.push(x);
            }
        }
        client.block_on(async {
            for load in loads {
                load.close().await;
            }
        });
        summaries.push(Summary {
            case,
            medians: [
                medians(&rounds[0]),
                medians(&rounds[1]),
                medians(&rounds[2]),
            ],
            ratios,
        });
    }

    println!();
    println!(
        "| case | real server | bare handler | real / bare (min to max) | at least 0.85 | real p50 / p99 | bare p50 / p99 | server CPU a request, real / bare | bare with the core's call | real / that |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for s in &summaries {
        let [real, bare, core] = &s.medians;
        println!(
            "| {} | {:.0}/s | {:.0}/s | {} | {} | {:.0} / {:.0} µs | {:.0} / {:.0} µs | {:.1} / {:.1} µs | {:.0}/s, {:.1} µs | {} |",
            s.case.name,
            real.per_sec,
            bare.per_sec,
            spread(&s.ratios[0]),
            if median(s.ratios[0].clone()) >= 0.85 {
                "met"
            } else {
                "missed"
            },
            real.p50_us,
            real.p99_us,
            bare.p50_us,
            bare.p99_us,
            real.cpu_us,
            bare.cpu_us,
            core.per_sec,
            core.cpu_us,
            spread(&s.ratios[1]),
        );
    }
    println!(
        "(server CPU: the HTTP runtime's threads, from /proc/self/task/*/schedstat; the client's threads took {} µs a request)",
        summaries
            .iter()
            .map(|s| format!("{:.1}", s.medians[1].client_us))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if counting {
        println!();
        println!(
            "| case | allocations a request (client and server): real | bare | bare with the core's call |"
        );
        println!("|---|---|---|---|");
        for s in &summaries {
            let [real, bare, core] = &s.medians;
            println!(
                "| {} | {:.1} | {:.1} | {:.1} |",
                s.case.name, real.allocations, bare.allocations, core.allocations
            );
        }
    }
    drop(bare);
    drop(bare_core);
    server.shutdown().expect("a clean shutdown");
}
