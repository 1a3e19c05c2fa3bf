//! The replicated lifecycle against the single-node journal, in one run on
//! loopback:
//!
//! 1. commits per second with 1 and 64 concurrent proposers, each running
//!    task cycles (a host task registered and reported succeeded: two
//!    commits) on a graph of its own: the journal on a directory with
//!    group commit, against a 3-node cluster (three nodes in this process,
//!    node-to-node calls over HTTP on loopback, each log on a directory of
//!    its own, synced before it is acknowledged), proposing on the leader;
//! 2. commit latency, p50 and p99, of both;
//! 3. failover: a 3-node cluster of `graph-lifecycle-node` processes, its
//!    leader killed with SIGKILL, and the time until a write through a
//!    survivor is acknowledged, with the default timeouts (5 kills);
//! 4. capacity: the snapshot of a group holding many graphs (bytes per
//!    graph, the time to take, encode, check and restore it).
//!
//! `cargo bench -p graph-lifecycle-raft --bench cluster`
//! (`CLUSTER_BENCH_SECS` per measurement, default 3; `CLUSTER_BENCH_GRAPHS`
//! for the capacity run, default 100,000). `docs/BENCHMARKS.md` has the
//! figures.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use graph_lifecycle::{
    Command, Config, Dispatch, Engine, GraphKey, HostKind, Image, Op, Outcome, Payload, Report,
    TaskSpec, Timestamp,
};
use graph_lifecycle_journal::{Durability, FileStorage, JournalOptions};
use graph_lifecycle_raft::http::{self, HttpTransport, Listener, RpcLimits};
use graph_lifecycle_raft::{
    Answer, Body, ClusterConfig, ClusterState, Disk, Env, Node, NodeAddr, NodeId, Proposal, Reply,
    Request, Transport,
};
use parking_lot::Mutex;
use uuid::Uuid;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn spec() -> TaskSpec {
    TaskSpec::new(HostKind::new("pagerank").expect("a kind"))
}

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

struct Run {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

// ---- the single-node journal ------------------------------------------------------

fn journal(proposers: usize, secs: Duration) -> Run {
    let dir = tempfile::tempdir().expect("a directory");
    let storage = FileStorage::open(dir.path()).expect("a journal directory");
    let options = JournalOptions::new(Durability::GroupCommit {
        max_delay: Duration::ZERO,
    })
    .snapshot_after_bytes(None);
    let durable =
        graph_lifecycle_journal::open(Engine::builder(), storage, options).expect("a journal");
    let (engine, jobs) = (durable.engine, durable.jobs);
    let keys: Vec<GraphKey> = (0..proposers)
        .map(|i| {
            let key = GraphKey::parse("bench", &format!("g{i}")).expect("a key");
            engine.create_graph(&key).expect("create");
            engine.start(&key).expect("start");
            let job = jobs.recv().expect("the start job");
            engine
                .report(&job.task, Report::Succeeded)
                .expect("running");
            key
        })
        .collect();
    let stop = AtomicBool::new(false);
    let count = AtomicU64::new(0);
    let lat = Mutex::new(Vec::new());
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for k in &keys {
            let (engine, stop, count, lat) = (&engine, &stop, &count, &lat);
            s.spawn(move || {
                let mut mine = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let a = Instant::now();
                    let t = engine.register_task(k, spec()).expect("register");
                    mine.push(a.elapsed());
                    let b = Instant::now();
                    engine.report(&t.task, Report::Succeeded).expect("report");
                    mine.push(b.elapsed());
                    count.fetch_add(2, Ordering::Relaxed);
                }
                lat.lock().extend(mine);
            });
        }
        std::thread::sleep(secs);
        stop.store(true, Ordering::Relaxed);
    });
    let lat = lat.into_inner();
    Run {
        per_sec: count.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64(),
        p50: pct(lat.clone(), 0.5),
        p99: pct(lat, 0.99),
    }
}

// ---- a 3-node cluster in this process -----------------------------------------------

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn cluster(dir: &std::path::Path) -> Vec<Node> {
    let peers: BTreeMap<NodeId, NodeAddr> = (1..=3)
        .map(|i| (i, NodeAddr::new(format!("127.0.0.1:{}", free_port()))))
        .collect();
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let mut cfg = ClusterConfig::new(id, peers.clone(), "benchmark-cluster-key");
        cfg.snapshot_every = 50_000;
        let transport = Arc::new(HttpTransport::new(&cfg, None));
        let disk = Disk::open(dir.join(format!("node-{id}"))).expect("a data directory");
        let rpc = cfg.addr().rpc;
        let (node, jobs, _) = Node::start(cfg, disk, Arc::new(transport), Env::default())
            .await
            .expect("a node");
        // Nobody runs the jobs: the benchmark's graphs are started once.
        std::mem::forget(jobs);
        http::listen(
            &rpc,
            Listener::new(node.clone(), None, RpcLimits::default()),
            std::future::pending(),
        )
        .await
        .expect("a listener");
        nodes.push(node);
    }
    nodes[0].bootstrap().await.expect("bootstrap");
    nodes
}

async fn leader(nodes: &[Node]) -> Node {
    loop {
        if let Some(n) = nodes
            .iter()
            .find(|n| n.is_leader() && n.local().dispatching())
        {
            return n.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn replicated(nodes: &[Node], proposers: usize, secs: Duration, round: usize) -> Run {
    let node = leader(nodes).await;
    let mut keys = Vec::new();
    for i in 0..proposers {
        let key = GraphKey::parse("bench", &format!("r{round}-g{i}")).expect("a key");
        node.submit(node.command(&key, None, |_| Op::Create))
            .await
            .expect("create")
            .expect("created");
        node.submit(node.command(&key, None, |job| Op::Start {
            job,
            payload: Payload::EMPTY,
        }))
        .await
        .expect("start")
        .expect("started");
        // Succeed the start job directly: no workers here.
        let job = node
            .machine()
            .engine()
            .graph_info(&key)
            .ok()
            .and_then(|i| i.job)
            .expect("a start job");
        node.submit(node.command(&key, None, |_| Op::Report {
            job,
            epoch: graph_lifecycle::Epoch(0),
            report: Report::Succeeded,
        }))
        .await
        .expect("report")
        .expect("running");
        keys.push(key);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let lat = Arc::new(Mutex::new(Vec::new()));
    let t0 = Instant::now();
    let tasks: Vec<_> = keys
        .into_iter()
        .map(|k| {
            let (node, stop, count, lat) = (node.clone(), stop.clone(), count.clone(), lat.clone());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let a = Instant::now();
                    let r = node
                        .submit(
                            node.command(&k, None, |job| Op::RegisterTask { job, spec: spec() }),
                        )
                        .await;
                    mine.push(a.elapsed());
                    let Ok(Ok(Outcome::Job { job, epoch })) = r else {
                        continue;
                    };
                    let b = Instant::now();
                    let _ = node
                        .submit(node.command(&k, None, |_| Op::Report {
                            job,
                            epoch,
                            report: Report::Succeeded,
                        }))
                        .await;
                    mine.push(b.elapsed());
                    count.fetch_add(2, Ordering::Relaxed);
                }
                lat.lock().extend(mine);
            })
        })
        .collect();
    tokio::time::sleep(secs).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let lat = lat.lock().clone();
    Run {
        per_sec: count.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64(),
        p50: pct(lat.clone(), 0.5),
        p99: pct(lat, 0.99),
    }
}

// ---- failover with real processes ---------------------------------------------------

fn node_binary() -> std::path::PathBuf {
    let mut p = std::env::current_exe().expect("the bench's path");
    p.pop();
    if p.ends_with("deps") {
        p.pop();
    }
    p.join("graph-lifecycle-node")
}

async fn failover(kills: usize) -> Vec<Duration> {
    let bin = node_binary();
    if !bin.exists() {
        eprintln!(
            "failover: {} is missing (cargo build -p graph-lifecycle-raft --release --bins)",
            bin.display()
        );
        return Vec::new();
    }
    let dir = tempfile::tempdir().expect("a directory");
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "benchmark-cluster-key").expect("the key");
    let peers: BTreeMap<NodeId, NodeAddr> = (1..=3)
        .map(|i| (i, NodeAddr::new(format!("127.0.0.1:{}", free_port()))))
        .collect();
    let start = |id: NodeId, boot: bool| {
        let mut c = std::process::Command::new(&bin);
        c.arg("--id")
            .arg(id.to_string())
            .arg("--data")
            .arg(dir.path().join(format!("n{id}")))
            .arg("--key-file")
            .arg(&key_file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        for (p, a) in &peers {
            c.arg("--peer").arg(format!("{p}={}", a.rpc));
        }
        if boot {
            c.arg("--bootstrap");
        }
        c.spawn().expect("a node process")
    };
    let mut procs: BTreeMap<NodeId, std::process::Child> =
        (1..=3).map(|i| (i, start(i, i == 1))).collect();
    let cfg = ClusterConfig::new(1, peers.clone(), "benchmark-cluster-key");
    let client = Arc::new(HttpTransport::new(&cfg, None));
    let status = |id: NodeId| {
        let client = client.clone();
        let addr = peers[&id].clone();
        async move {
            match client
                .call(id, &addr, Request::Status, Duration::from_millis(300))
                .await
            {
                Ok(Reply::Status(s)) => Some(s),
                _ => None,
            }
        }
    };
    let key = GraphKey::parse("bench", "failover").expect("a key");
    let write = |via: NodeId, first: bool| {
        let client = client.clone();
        let addr = peers[&via].clone();
        let key = key.clone();
        async move {
            let at = Timestamp::from_millis(1);
            let op = if first { Op::Create } else { Op::Expire };
            let p = Proposal {
                id: Uuid::new_v4(),
                body: Body::Core(Command::new(key, at, op)),
            };
            matches!(
                client
                    .call(via, &addr, Request::Client(p), Duration::from_secs(30))
                    .await,
                Ok(Reply::Client(Ok(Answer::Core { .. })))
            )
        }
    };
    let mut times = Vec::new();
    let mut first = true;
    for _ in 0..kills {
        // A settled cluster: a leader every node knows, a write through it.
        let leader = loop {
            let mut l = None;
            for id in procs.keys() {
                if let Some(s) = status(*id).await
                    && s.leader.is_some()
                    && s.serving
                {
                    l = s.leader;
                }
            }
            if let Some(l) = l
                && write(l, first).await
            {
                break l;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        first = false;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let survivor = *procs.keys().find(|i| **i != leader).expect("a survivor");
        let t0 = Instant::now();
        if let Some(mut c) = procs.remove(&leader) {
            let _ = c.kill();
            let _ = c.wait();
        }
        while !write(survivor, false).await {}
        times.push(t0.elapsed());
        procs.insert(leader, start(leader, false));
    }
    for (_, mut c) in procs {
        let _ = c.kill();
        let _ = c.wait();
    }
    times
}

// ---- capacity ---------------------------------------------------------------------

fn capacity(graphs: usize) {
    let (engine, _jobs) = Engine::builder()
        .config(Config::default().max_graphs(graphs))
        .build();
    let mut cluster = ClusterState::default();
    let at = Timestamp::from_millis(1_700_000_000_000);
    let ids = graph_lifecycle::SequentialIds::new(1);
    let t0 = Instant::now();
    for i in 0..graphs {
        let key = GraphKey::parse(&format!("p{}", i % 100), &format!("g{i}")).expect("a key");
        let create = Proposal {
            id: Uuid::from_u128(i as u128),
            body: Body::Core(Command::new(key.clone(), at, Op::Create)),
        };
        let _ = graph_lifecycle_raft::cluster::step(&engine, &mut cluster, &create);
        let job = graph_lifecycle::IdSource::next_id(&ids, at);
        let start = Command::new(
            key,
            at,
            Op::Start {
                job,
                payload: Payload::EMPTY,
            },
        );
        let _ = engine.apply_decided(&start, Dispatch::Hold);
    }
    let applied = t0.elapsed();
    let t = Instant::now();
    let image = engine.image();
    let copy = t.elapsed();
    let t = Instant::now();
    let bytes = image.encode();
    let encode = t.elapsed();
    let t = Instant::now();
    let back = Image::decode(&bytes).expect("an image");
    let (_restored, _jobs) = Engine::builder()
        .config(Config::default().max_graphs(graphs))
        .restore(&back)
        .expect("a restore");
    let restore = t.elapsed();
    println!(
        "capacity: {graphs} graphs (each with a live start job): 2 commands each applied at {:.0}/s; \
         image {:.1} MB ({} bytes a graph); copy {:.0} ms, encode {:.0} ms, decode and restore {:.0} ms",
        (2 * graphs) as f64 / applied.as_secs_f64(),
        bytes.len() as f64 / 1e6,
        bytes.len() / graphs.max(1),
        copy.as_secs_f64() * 1e3,
        encode.as_secs_f64() * 1e3,
        restore.as_secs_f64() * 1e3,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a plain `cargo test` of benches
    // builds this without running it.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs = Duration::from_secs(env("CLUSTER_BENCH_SECS", 3));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("a directory");
    let nodes = rt.block_on(cluster(dir.path()));
    println!(
        "proposers | journal commits/s | 3-node commits/s | ratio | journal p50/p99 | 3-node p50/p99"
    );
    for (round, p) in [1usize, 64].into_iter().enumerate() {
        let j = journal(p, secs);
        let r = rt.block_on(replicated(&nodes, p, secs, round));
        println!(
            "{p:>9} | {:>17.0} | {:>16.0} | {:>5.2} | {:>6.2} / {:>6.2} ms | {:>6.2} / {:>6.2} ms",
            j.per_sec,
            r.per_sec,
            r.per_sec / j.per_sec,
            j.p50.as_secs_f64() * 1e3,
            j.p99.as_secs_f64() * 1e3,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
        );
    }
    rt.block_on(async {
        for n in &nodes {
            n.shutdown().await;
        }
    });
    let times = rt.block_on(failover(5));
    if !times.is_empty() {
        let ms: Vec<u128> = times.iter().map(|t| t.as_millis()).collect();
        println!(
            "failover (SIGKILL of the leader to the first acknowledged write through a survivor): {ms:?} ms, median {} ms",
            pct(times.clone(), 0.5).as_millis()
        );
    }
    capacity(env("CLUSTER_BENCH_GRAPHS", 100_000) as usize);
}
