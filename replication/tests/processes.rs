//! Real processes on loopback: a 3-node cluster of `graph-lifecycle-node`
//! processes, the leader killed with SIGKILL again and again (and started
//! again on its data directory) while clients force-restart graphs and
//! run task cycles through any node. Afterwards no acknowledged command is
//! lost and every node agrees.
//!
//! 3 kills by default; `CLUSTER_KILLS=N` for more.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;
use std::time::Duration;

use graph_lifecycle::{
    Command, GraphKey, HostKind, IdSource, JobId, Op, Outcome, Report, RequestId, TaskSpec,
    TaskStatus, UuidV7Ids,
};
use graph_lifecycle_raft::http::HttpTransport;
use graph_lifecycle_raft::rpc::{GraphView, StatusView};
use graph_lifecycle_raft::{
    Answer, Body, ClusterConfig, Consistency, NodeAddr, NodeId, Proposal, Reply, Request, Transport,
};
use parking_lot::Mutex;
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_graph-lifecycle-node");
const KEY: &str = "loopback-test-cluster-key";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Cluster {
    dir: tempfile::TempDir,
    peers: BTreeMap<NodeId, NodeAddr>,
    procs: Mutex<BTreeMap<NodeId, Child>>,
    client: Arc<HttpTransport>,
}

impl Cluster {
    fn new(n: u64) -> Cluster {
        let dir = tempfile::tempdir().expect("a directory");
        std::fs::write(dir.path().join("key"), KEY).expect("the key file");
        let peers: BTreeMap<NodeId, NodeAddr> = (1..=n)
            .map(|i| (i, NodeAddr::new(format!("127.0.0.1:{}", free_port()))))
            .collect();
        let cfg = ClusterConfig::new(1, peers.clone(), KEY);
        let client = Arc::new(HttpTransport::new(&cfg, None));
        let c = Cluster {
            dir,
            peers,
            procs: Mutex::new(BTreeMap::new()),
            client,
        };
        for i in 1..=n {
            c.start(i, i == 1);
        }
        c
    }

    fn data(&self, id: NodeId) -> PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    fn start(&self, id: NodeId, bootstrap: bool) {
        let mut cmd = Process::new(BIN);
        cmd.arg("--id")
            .arg(id.to_string())
            .arg("--data")
            .arg(self.data(id))
            .arg("--key-file")
            .arg(self.dir.path().join("key"))
            .arg("--job-ms")
            .arg("150")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (p, a) in &self.peers {
            cmd.arg("--peer").arg(format!("{p}={}", a.rpc));
        }
        if bootstrap {
            cmd.arg("--bootstrap");
        }
        let child = cmd.spawn().expect("the node starts");
        self.procs.lock().insert(id, child);
    }

    /// SIGKILL (what `Child::kill` sends on Unix), and reaped.
    fn kill(&self, id: NodeId) {
        let child = self.procs.lock().remove(&id);
        if let Some(mut c) = child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn call(&self, id: NodeId, req: Request, timeout: Duration) -> Option<Reply> {
        self.client
            .call(id, &self.peers[&id], req, timeout)
            .await
            .ok()
    }

    async fn status(&self, id: NodeId) -> Option<StatusView> {
        match self
            .call(id, Request::Status, Duration::from_millis(500))
            .await
        {
            Some(Reply::Status(s)) => Some(s),
            _ => None,
        }
    }

    /// The leader most running nodes name.
    async fn leader(&self) -> Option<NodeId> {
        let mut votes: BTreeMap<NodeId, usize> = BTreeMap::new();
        let running: Vec<NodeId> = self.procs.lock().keys().copied().collect();
        for id in running {
            if let Some(l) = self.status(id).await.and_then(|s| s.leader) {
                *votes.entry(l).or_default() += 1;
            }
        }
        votes.into_iter().max_by_key(|(_, v)| *v).map(|(l, _)| l)
    }

    /// Sends `p` through node after node until one answers.
    async fn submit(&self, p: &Proposal, deadline: tokio::time::Instant) -> Option<Answer> {
        let ids: Vec<NodeId> = self.peers.keys().copied().collect();
        let mut i = 0usize;
        while tokio::time::Instant::now() < deadline {
            let id = ids[i % ids.len()];
            i += 1;
            if let Some(Reply::Client(Ok(a))) = self
                .call(id, Request::Client(p.clone()), Duration::from_secs(12))
                .await
            {
                return Some(a);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    async fn view(&self, id: NodeId, key: &GraphKey) -> Option<Option<GraphView>> {
        match self
            .call(
                id,
                Request::Query {
                    key: key.clone(),
                    consistency: Consistency::Stale,
                },
                Duration::from_secs(5),
            )
            .await
        {
            Some(Reply::Query(Ok(v))) => Some(v),
            _ => None,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, mut c) in std::mem::take(&mut *self.procs.lock()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn proposal(key: &GraphKey, op: impl FnOnce(JobId) -> Op) -> Proposal {
    let id = Uuid::new_v4();
    let at = graph_lifecycle::Clock::now(&graph_lifecycle::SystemClock);
    let mut cmd = Command::new(key.clone(), at, op(UuidV7Ids.next_id(at)));
    cmd.request = Some(RequestId::new(&id.to_string()).expect("a request id"));
    Proposal {
        id,
        body: Body::Core(cmd),
    }
}

fn outcome(a: &Answer) -> Option<&Result<Outcome, graph_lifecycle::Error>> {
    match a {
        Answer::Core { outcome, .. } => Some(outcome),
        _ => None,
    }
}

#[derive(Default)]
struct Acked {
    /// (graph, restart job, epoch).
    restarts: Vec<(GraphKey, JobId, graph_lifecycle::Epoch)>,
    /// Host tasks whose success was acknowledged.
    tasks: Vec<(GraphKey, JobId)>,
}

/// One client: force-restarts a graph, waits for it to run, and runs a
/// host task through started, progress and success, until `stop`.
async fn client(
    c: Arc<Cluster>,
    key: GraphKey,
    acked: Arc<Mutex<Acked>>,
    stop: tokio::time::Instant,
) {
    let far = || tokio::time::Instant::now() + Duration::from_secs(25);
    while tokio::time::Instant::now() < stop {
        let p = proposal(&key, |job| Op::ForceRestart { job });
        if let Some(Ok(Outcome::Restarted(r))) =
            c.submit(&p, far()).await.as_ref().and_then(outcome)
        {
            acked.lock().restarts.push((key.clone(), r.job, r.epoch));
        }
        // The restart job runs on the owner's workers; then a task cycle.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let spec = TaskSpec::new(HostKind::new("pagerank").expect("a kind"));
        let p = proposal(&key, |job| Op::RegisterTask { job, spec });
        let Some(Ok(Outcome::Job { job, epoch })) = c
            .submit(&p, far())
            .await
            .as_ref()
            .and_then(outcome)
            .cloned()
        else {
            continue;
        };
        let mut ok = true;
        for r in [Report::Started, Report::Progress(50), Report::Succeeded] {
            let p = proposal(&key, |_| Op::Report {
                job,
                epoch,
                report: r.clone(),
            });
            match c.submit(&p, far()).await.as_ref().and_then(outcome) {
                Some(Ok(_)) => {}
                _ => {
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            acked.lock().tasks.push((key.clone(), job));
        }
    }
}

fn kills() -> usize {
    std::env::var("CLUSTER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

async fn wait_for<T>(mut f: impl AsyncFnMut() -> Option<T>, limit: Duration) -> Option<T> {
    let end = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < end {
        if let Some(t) = f().await {
            return Some(t);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_again_and_again_loses_no_acknowledged_command() {
    let cluster = Arc::new(Cluster::new(3));
    wait_for(async || cluster.leader().await, Duration::from_secs(30))
        .await
        .expect("a leader");
    let keys: Vec<GraphKey> = (0..3)
        .map(|i| GraphKey::parse("demo", &format!("g{i}")).expect("a key"))
        .collect();
    let far = || tokio::time::Instant::now() + Duration::from_secs(30);
    for key in &keys {
        let created = cluster.submit(&proposal(key, |_| Op::Create), far()).await;
        assert!(
            matches!(
                created.as_ref().and_then(outcome),
                Some(Ok(Outcome::Created))
            ),
            "{created:?}"
        );
        let start = proposal(key, |job| Op::Start {
            job,
            payload: Default::default(),
        });
        let started = cluster.submit(&start, far()).await;
        assert!(
            matches!(
                started.as_ref().and_then(outcome),
                Some(Ok(Outcome::Job { .. }))
            ),
            "{started:?}"
        );
    }
    let acked = Arc::new(Mutex::new(Acked::default()));
    for round in 0..kills() {
        let stop = tokio::time::Instant::now() + Duration::from_secs(3);
        let clients: Vec<_> = keys
            .iter()
            .map(|k| tokio::spawn(client(cluster.clone(), k.clone(), acked.clone(), stop)))
            .collect();
        tokio::time::sleep(Duration::from_millis(800)).await;
        let leader = wait_for(async || cluster.leader().await, Duration::from_secs(20))
            .await
            .expect("a leader");
        cluster.kill(leader);
        eprintln!("round {round}: killed leader {leader} with SIGKILL");
        for c in clients {
            let _ = c.await;
        }
        cluster.start(leader, false);
    }

    // Every node catches up and agrees. The owners' workers may still be
    // reporting on the last restarts, so views are compared only when every
    // node has applied the same index before and after it was read: two
    // views taken at one index and different are a divergence.
    let ids: Vec<NodeId> = cluster.peers.keys().copied().collect();
    let agreed = wait_for(
        async || {
            let mut applied = Vec::new();
            let mut all = Vec::new();
            for id in &ids {
                let before = cluster.status(*id).await?;
                let mut views = Vec::new();
                for key in &keys {
                    views.push(cluster.view(*id, key).await.flatten()?);
                }
                let after = cluster.status(*id).await?;
                if !before.serving || before.applied != after.applied {
                    return None;
                }
                applied.push(before.applied);
                all.push(views);
            }
            if !applied.windows(2).all(|w| w[0] == w[1]) {
                return None;
            }
            for (i, views) in all.iter().enumerate().skip(1) {
                for (k, v) in views.iter().enumerate() {
                    assert_eq!(
                        v, &all[0][k],
                        "nodes {} and {} disagree on {} at one applied index",
                        ids[0], ids[i], keys[k]
                    );
                }
            }
            all.into_iter().next()
        },
        Duration::from_secs(60),
    )
    .await;
    let views = agreed.expect("the nodes did not catch up to one applied index");
    let acked = std::mem::take(&mut *acked.lock());
    assert!(!acked.restarts.is_empty(), "no restart was acknowledged");
    for (key, v) in keys.iter().zip(&views) {
        for (k, job, epoch) in acked.restarts.iter().filter(|r| &r.0 == key) {
            let t = v.tasks.iter().find(|t| t.job == *job);
            assert!(
                t.is_some_and(|t| t.kind == "restart" && t.epoch == *epoch),
                "restart {job} of {k} lost"
            );
            assert!(v.epoch >= *epoch);
        }
        for (_, job) in acked.tasks.iter().filter(|r| &r.0 == key) {
            let t = v.tasks.iter().find(|t| t.job == *job);
            assert!(
                t.is_some_and(|t| t.status == TaskStatus::Succeeded),
                "task {job} of {key} lost"
            );
        }
    }
    eprintln!(
        "{} kills: {} restarts and {} task cycles acknowledged, all on every node",
        kills(),
        acked.restarts.len(),
        acked.tasks.len()
    );
}
