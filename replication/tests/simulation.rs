//! A seeded simulation of a cluster in one process: 3 and 5 real nodes
//! (openraft, the log store on simulated disks, the state machine, the
//! duties) on a simulated network that partitions (both ways and one
//! way), drops, delays, duplicates and reorders messages, with nodes
//! killed (a power cut: only what was synced survives) and restarted on
//! their disks. Time is tokio's paused clock, so a run of minutes of
//! cluster time takes seconds.
//!
//! The workload is the model test's step generator (`tests/workload`):
//! clients send each step as a command to a random node (which forwards
//! it to the leader) and retry with the same request id; linearizable
//! reads go to random nodes too. Each node's simulated workers run the
//! jobs it hands over, report through a random node, stop when their job
//! goes void, and now and then send a stale report.
//!
//! Checked after every run:
//! - the history of every call (clients' and the nodes' own proposals)
//!   is linearizable against the deterministic step (stateright's
//!   tester; a call that timed out is left open);
//! - nodes at one applied index have identical images and cluster states
//!   (sampled during the run, and at the end);
//! - a graph's epoch never goes back on any node;
//! - every acknowledged forced restart is on every node at the end;
//! - no job id is handed to workers twice, cluster-wide;
//! - at most one live restart job per graph on every node;
//! - after healing: one leader, every node caught up, and no graph stuck
//!   in a transitional state.
//!
//! `CLUSTER_CASES=N` runs N seeds of each size (default 2 and 1);
//! `CLUSTER_SEED=S` runs one seed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use graph_lifecycle::{
    Clock, Command, Config, Dispatch, Engine, Epoch, Error, GraphKey, GraphState, HostKind, Image,
    JobId, LifecycleKind, Op, Outcome, Report, RequestId, SequentialIds, TaskKind, TaskQuery,
    TaskSpec, TaskStatus, Timestamp,
};
use graph_lifecycle_journal::MemStorage;
use graph_lifecycle_raft::rpc::CallFuture;
use graph_lifecycle_raft::{
    Answer, Body, ClusterConfig, ClusterOutcome, ClusterState, Consistency, Disk, Env, Flush,
    MemMeta, NetError, Node, NodeAddr, NodeId, Observer, Proposal, Request, Timeouts, Transport,
};
use parking_lot::Mutex;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config as PropConfig, RngAlgorithm, TestRng, TestRunner};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};
use tokio::time::Instant;
use uuid::Uuid;

#[path = "../../tests/workload/mod.rs"]
mod workload;
use workload::{
    HOST_KINDS, KEYS, MESSAGES, Rep, Step, Tamper, Target, call, key_of, mirror, payload_of,
    request_of,
};

// ---- randomness -------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // SplitMix64.
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

// ---- the network ------------------------------------------------------------------

#[derive(Default)]
struct NetState {
    nodes: HashMap<NodeId, Node>,
    /// Directed links that drop everything.
    cut: HashSet<(NodeId, NodeId)>,
    drop_percent: u64,
    dup_percent: u64,
    max_delay_ms: u64,
}

struct Net {
    state: Mutex<NetState>,
    rng: Mutex<Rng>,
}

impl Net {
    fn roll(&self, percent: u64) -> bool {
        self.rng.lock().chance(percent)
    }
    fn delay(&self) -> Duration {
        let max = self.state.lock().max_delay_ms;
        self.rng.lock().ms(0, max)
    }
}

/// One node's end of the network.
struct Link {
    from: NodeId,
    net: Arc<Net>,
}

impl Transport for Link {
    fn call(&self, to: NodeId, _addr: &NodeAddr, req: Request, timeout: Duration) -> CallFuture {
        let net = self.net.clone();
        let from = self.from;
        Box::pin(async move {
            let lost = |ms: u64| NetError::Timeout { node: to, ms };
            let ms = timeout.as_millis() as u64;
            let run = async {
                // Every message goes through the codec, as between processes.
                let bytes = postcard::to_allocvec(&req).expect("requests encode");
                let req: Request = postcard::from_bytes(&bytes).expect("requests decode");
                tokio::time::sleep(net.delay()).await;
                let (target, blocked, drop, dup) = {
                    let st = net.state.lock();
                    (
                        st.nodes.get(&to).cloned(),
                        st.cut.contains(&(from, to)),
                        st.drop_percent,
                        st.dup_percent,
                    )
                };
                let Some(target) = target else {
                    return Err(NetError::Unreachable {
                        node: to,
                        why: "down".into(),
                    });
                };
                if blocked || net.roll(drop) {
                    tokio::time::sleep(timeout).await;
                    return Err(lost(ms));
                }
                if net.roll(dup) {
                    let again = req.clone();
                    let t = target.clone();
                    let later = net.delay();
                    tokio::spawn(async move {
                        tokio::time::sleep(later).await;
                        let _ = t.handle(again).await;
                    });
                }
                let reply = target.handle(req).await;
                tokio::time::sleep(net.delay()).await;
                let back_blocked = net.state.lock().cut.contains(&(to, from));
                if back_blocked || net.roll(drop) {
                    tokio::time::sleep(timeout).await;
                    return Err(lost(ms));
                }
                let bytes = postcard::to_allocvec(&reply).expect("replies encode");
                Ok(postcard::from_bytes(&bytes).expect("replies decode"))
            };
            match tokio::time::timeout(timeout, run).await {
                Ok(r) => r,
                Err(_) => Err(lost(ms)),
            }
        })
    }
}

/// Jobs learnt of: (graph, job, epoch).
type Known = Arc<Mutex<Vec<(GraphKey, JobId, Epoch)>>>;
/// Acknowledged forced restarts: (graph, job, epoch, the command's time).
type Restarts = Arc<Mutex<Vec<(GraphKey, JobId, Epoch, Timestamp)>>>;

// ---- time -----------------------------------------------------------------------------

const T0_MS: u64 = 1_700_000_000_000;

/// The cluster's wall clock: tokio's (paused) clock from a fixed start.
struct SimClock(Instant);

impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(T0_MS + self.0.elapsed().as_millis() as u64)
    }
}

// ---- the history ----------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum SimOp {
    Write(Proposal),
    Read(GraphKey),
    /// A cluster entry's recovery of the graph, projected on one key.
    Recover(Timestamp),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SimRet {
    Core(Result<Outcome, Error>),
    Cluster(ClusterOutcome),
    None,
    Read(Option<(GraphState, Epoch)>),
}

fn ret_of(a: &Answer) -> SimRet {
    match a {
        Answer::Core { outcome, .. } => SimRet::Core(outcome.clone()),
        Answer::Cluster(c) => SimRet::Cluster(c.clone()),
        Answer::None => SimRet::None,
    }
}

/// The reference for one graph key: the deterministic step on an engine
/// that holds only that key (commands on different graphs commute, so a
/// history is linearizable if each key's history is).
#[derive(Clone)]
struct Spec {
    config: Config,
    image: Image,
}

impl SequentialSpec for Spec {
    type Op = SimOp;
    type Ret = SimRet;

    fn invoke(&mut self, op: &SimOp) -> SimRet {
        let (engine, _jobs) = Engine::builder()
            .config(self.config.clone())
            .restore(&self.image)
            .expect("the reference's own image restores");
        let ret = match op {
            SimOp::Write(Proposal {
                body: Body::Core(cmd),
                ..
            }) => SimRet::Core(engine.apply_decided(cmd, Dispatch::Hold).outcome),
            SimOp::Write(_) => SimRet::None,
            SimOp::Recover(at) => {
                // The key is the only graph the engine may hold.
                for key in engine.keys() {
                    let _ =
                        engine.apply_decided(&Command::new(key, *at, Op::Recover), Dispatch::Hold);
                }
                SimRet::None
            }
            SimOp::Read(key) => {
                SimRet::Read(engine.graph_info(key).ok().map(|i| (i.state, i.epoch)))
            }
        };
        self.image = engine.image();
        ret
    }
}

#[derive(Default)]
struct History {
    events: Vec<(u64, Option<SimOp>, Option<SimRet>)>,
    next_thread: u64,
    /// A duty proposal's request id → its thread.
    duties: HashMap<Uuid, u64>,
    /// The graphs each applied cluster entry recovered (its first
    /// application), by request id.
    touched: HashMap<Uuid, Vec<GraphKey>>,
}

impl History {
    fn thread(&mut self) -> u64 {
        self.next_thread += 1;
        self.next_thread
    }
    fn invoke(&mut self, t: u64, op: SimOp) {
        self.events.push((t, Some(op), None));
    }
    fn ret(&mut self, t: u64, r: SimRet) {
        self.events.push((t, None, Some(r)));
    }
}

struct Recorder(Arc<Mutex<History>>);

impl Observer for Recorder {
    fn proposing(&self, _node: NodeId, p: &Proposal) {
        let mut h = self.0.lock();
        let t = h.thread();
        h.duties.insert(p.id, t);
        h.invoke(t, SimOp::Write(p.clone()));
    }
    fn answered(&self, _node: NodeId, p: &Proposal, a: &Answer) {
        let mut h = self.0.lock();
        if let Some(t) = h.duties.remove(&p.id) {
            h.ret(t, ret_of(a));
        }
    }
    fn applied(
        &self,
        _node: NodeId,
        _log_id: graph_lifecycle_raft::types::LogId,
        p: &Proposal,
        _answer: &Answer,
        recovered: &[GraphKey],
    ) {
        if matches!(p.body, Body::Cluster(_)) {
            self.0
                .lock()
                .touched
                .entry(p.id)
                .or_insert_with(|| recovered.to_vec());
        }
    }
}

/// The history of one key: its commands and reads, and the recoveries of
/// it that cluster entries made.
fn project(history: &History, key: &GraphKey) -> Vec<(u64, Option<SimOp>, Option<SimRet>)> {
    let mut open: HashSet<u64> = HashSet::new();
    let mut out = Vec::new();
    for (t, op, ret) in &history.events {
        match (op, ret) {
            (Some(op), _) => {
                let mine = match op {
                    SimOp::Write(Proposal {
                        body: Body::Core(cmd),
                        ..
                    }) => (cmd.key == *key).then(|| op.clone()),
                    SimOp::Write(Proposal {
                        id,
                        body: Body::Cluster(c),
                    }) => history
                        .touched
                        .get(id)
                        .is_some_and(|keys| keys.contains(key))
                        .then(|| SimOp::Recover(cluster_time(c))),
                    SimOp::Read(k) => (k == key).then(|| op.clone()),
                    SimOp::Recover(_) => None,
                };
                if let Some(op) = mine {
                    open.insert(*t);
                    out.push((*t, Some(op), None));
                }
            }
            (None, Some(ret)) => {
                if open.remove(t) {
                    let ret = match ret {
                        SimRet::Cluster(_) => SimRet::None,
                        other => other.clone(),
                    };
                    out.push((*t, None, Some(ret)));
                }
            }
            (None, None) => {}
        }
    }
    out
}

fn cluster_time(c: &graph_lifecycle_raft::ClusterCmd) -> Timestamp {
    use graph_lifecycle_raft::ClusterCmd::*;
    match c {
        NodeUp { at, .. } | Assign { at, .. } | Released { at, .. } | NodeLost { at, .. } => *at,
    }
}

// ---- the cluster ------------------------------------------------------------------------

struct Member {
    id: NodeId,
    disk: (MemStorage, MemMeta),
    node: Option<Node>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    boots: u64,
}

struct Sim {
    seed: u64,
    rng: Rng,
    net: Arc<Net>,
    members: Vec<Member>,
    config: ClusterConfig,
    clock: Arc<SimClock>,
    history: Arc<Mutex<History>>,
    /// Every job id handed to a worker, and by which node.
    handed: Arc<Mutex<HashMap<JobId, NodeId>>>,
    duplicates: Arc<Mutex<Vec<String>>>,
    /// Every job a client or a worker learnt of: (key, job, epoch).
    known: Known,
    /// Acknowledged forced restarts: (key, job, epoch, the command's time).
    restarts: Restarts,
    /// Highest epoch each node was seen with, per graph.
    epochs: HashMap<(NodeId, GraphKey), (Timestamp, Epoch)>,
    violations: Vec<String>,
}

fn engine_config() -> Config {
    Config::default()
        .max_graphs(6)
        .max_live_tasks_per_graph(4)
        .max_retained_per_graph(400)
        .timeout(LifecycleKind::Start, Some(Duration::from_secs(20)))
        .timeout(LifecycleKind::Stop, Some(Duration::from_secs(20)))
        .retained_payload_bytes(64)
        .request_window(16)
}

fn cluster_config(n: usize) -> ClusterConfig {
    let peers: BTreeMap<NodeId, NodeAddr> = (1..=n as NodeId)
        .map(|i| (i, NodeAddr::new(format!("sim-{i}"))))
        .collect();
    let mut c = ClusterConfig::new(1, peers, "simulated-cluster-key");
    c.engine = engine_config();
    c.engine.max_payload_bytes = 8;
    c.engine.max_message_bytes = 16;
    c.timeouts = Timeouts {
        client: Duration::from_secs(6),
        ..Timeouts::default()
    };
    c.snapshot_every = 60;
    c
}

impl Sim {
    fn new(seed: u64, n: usize) -> Sim {
        let net = Arc::new(Net {
            state: Mutex::new(NetState {
                max_delay_ms: 20,
                ..NetState::default()
            }),
            rng: Mutex::new(Rng(seed ^ 0x5eed)),
        });
        Sim {
            seed,
            rng: Rng(seed),
            net,
            members: (1..=n as NodeId)
                .map(|id| Member {
                    id,
                    disk: (MemStorage::new(), MemMeta::new()),
                    node: None,
                    workers: Vec::new(),
                    boots: 0,
                })
                .collect(),
            config: cluster_config(n),
            clock: Arc::new(SimClock(Instant::now())),
            history: Arc::new(Mutex::new(History::default())),
            handed: Arc::new(Mutex::new(HashMap::new())),
            duplicates: Arc::new(Mutex::new(Vec::new())),
            known: Arc::new(Mutex::new(Vec::new())),
            restarts: Arc::new(Mutex::new(Vec::new())),
            epochs: HashMap::new(),
            violations: Vec::new(),
        }
    }

    async fn boot(&mut self, i: usize) {
        let m = &mut self.members[i];
        m.boots += 1;
        let mut cfg = self.config.clone();
        cfg.node_id = m.id;
        let env = Env {
            clock: self.clock.clone(),
            ids: Arc::new(SequentialIds::new(
                (m.id * 64 + m.boots + self.seed * 7) % 4000,
            )),
            flush: Flush::Inline,
            observer: Some(Arc::new(Recorder(self.history.clone()))),
        };
        let disk = Disk {
            log: Box::new(m.disk.0.clone()),
            meta: Arc::new(m.disk.1.clone()),
        };
        let link = Arc::new(Link {
            from: m.id,
            net: self.net.clone(),
        });
        let (node, jobs, _report) = match Node::start(cfg, disk, link, env).await {
            Ok(x) => x,
            Err(e) => {
                self.violations
                    .push(format!("node {} does not start on its disk: {e}", m.id));
                return;
            }
        };
        self.net.state.lock().nodes.insert(m.id, node.clone());
        // Two workers per node.
        for w in 0..2u64 {
            let jobs = jobs.clone();
            let net = self.net.clone();
            let handed = self.handed.clone();
            let history = self.history.clone();
            let duplicates = self.duplicates.clone();
            let known = self.known.clone();
            let me = m.id;
            let mut rng = Rng(self.seed ^ (me << 8) ^ (m.boots << 16) ^ w);
            m.workers.push(tokio::spawn(async move {
                loop {
                    let Ok(cj) = jobs.try_recv() else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let id = cj.job.id();
                    if let Some(first) = handed.lock().insert(id, me) {
                        duplicates
                            .lock()
                            .push(format!("job {id} handed to node {first} and node {me}"));
                    }
                    let task = cj.job.task.clone();
                    known.lock().push((task.key.clone(), task.id, task.epoch));
                    let report = |r: Report, rng: &mut Rng| {
                        let net = net.clone();
                        let task = task.clone();
                        let history = history.clone();
                        let pick = rng.next();
                        async move {
                            let pick_node = |k: u64| {
                                let st = net.state.lock();
                                let mut ids: Vec<&NodeId> = st.nodes.keys().collect();
                                ids.sort();
                                (!ids.is_empty())
                                    .then(|| st.nodes.get(ids[k as usize % ids.len()]).cloned())
                                    .flatten()
                            };
                            let Some(node) = pick_node(pick) else { return };
                            // One call, retried with the same request id.
                            let cmd = node.command(&task.key, None, |_| Op::Report {
                                job: task.id,
                                epoch: task.epoch,
                                report: r.clone(),
                            });
                            let p = Proposal {
                                id: Uuid::from_u128(u128::from(pick) << 1 | 1),
                                body: Body::Core(cmd),
                            };
                            let thread = history.lock().thread();
                            history.lock().invoke(thread, SimOp::Write(p.clone()));
                            for attempt in 0..3u64 {
                                let Some(node) = pick_node(pick + attempt) else {
                                    return;
                                };
                                if let Ok(a) = node.propose(p.clone()).await {
                                    history.lock().ret(thread, ret_of(&a));
                                    return;
                                }
                            }
                        }
                    };
                    for pct in [30u8, 70] {
                        tokio::time::sleep(rng.ms(50, 800)).await;
                        if cj.is_void() && !rng.chance(20) {
                            break;
                        }
                        report(Report::Progress(pct), &mut rng).await;
                    }
                    tokio::time::sleep(rng.ms(50, 800)).await;
                    if !cj.is_void() || rng.chance(10) {
                        let end = if rng.chance(85) {
                            Report::Succeeded
                        } else {
                            Report::Failed(MESSAGES[0].into())
                        };
                        report(end, &mut rng).await;
                    }
                }
            }));
        }
        m.node = Some(node);
    }

    async fn kill(&mut self, i: usize) {
        let m = &mut self.members[i];
        let Some(node) = m.node.take() else { return };
        trace(format_args!("kill node {}", m.id));
        self.net.state.lock().nodes.remove(&m.id);
        for w in m.workers.drain(..) {
            w.abort();
        }
        node.shutdown().await;
        trace(format_args!("node {} is down", m.id));
        // A power cut: what was not synced is gone, and some of it may
        // survive as a torn tail.
        let keep = if self.rng.chance(50) {
            0
        } else {
            self.rng.below(64) as usize
        };
        m.disk = (m.disk.0.crash_keeping(keep), m.disk.1.crash());
    }

    fn live_nodes(&self) -> Vec<Node> {
        self.members.iter().filter_map(|m| m.node.clone()).collect()
    }

    /// Checks what must hold at any moment: nodes at one applied index
    /// agree, epochs only grow, at most one live restart job per graph.
    fn sample(&mut self) {
        let nodes = self.live_nodes();
        let mut by_index: HashMap<u64, (NodeId, Vec<u8>, ClusterState, Node)> = HashMap::new();
        for n in &nodes {
            if !n.serving() {
                continue; // it serves nothing until it caught up
            }
            let sm = n.machine();
            let Some(applied) = sm.last_applied() else {
                continue;
            };
            let image = sm.engine().image().encode();
            let cluster = sm.cluster();
            match by_index.get(&applied.index) {
                Some((other, img, cl, other_node)) => {
                    if *img != image || *cl != cluster {
                        let what = if *cl != cluster {
                            format!("cluster states {cl:?} and {cluster:?}")
                        } else {
                            let a = other_node.machine().engine().snapshot();
                            let b = sm.engine().snapshot();
                            let diff: Vec<String> = a
                                .graphs
                                .iter()
                                .zip(&b.graphs)
                                .filter(|(x, y)| x != y)
                                .map(|(x, y)| format!("{x:?}\n  vs\n{y:?}"))
                                .collect();
                            format!(
                                "images: {} vs {} graphs; {diff:#?}",
                                a.graphs.len(),
                                b.graphs.len()
                            )
                        };
                        self.violations.push(format!(
                            "nodes {other} and {} differ at applied index {}: {what}",
                            n.id(),
                            applied.index
                        ));
                    }
                }
                None => {
                    by_index.insert(applied.index, (n.id(), image, cluster, n.clone()));
                }
            }
            let engine = sm.engine();
            for key in engine.keys() {
                let Ok(info) = engine.graph_info(&key) else {
                    continue;
                };
                let slot = self
                    .epochs
                    .entry((n.id(), key.clone()))
                    .or_insert((info.created_at, info.epoch));
                if slot.0 == info.created_at && info.epoch < slot.1 {
                    self.violations.push(format!(
                        "node {}: graph {key} went back from epoch {} to {}",
                        n.id(),
                        slot.1.0,
                        info.epoch.0
                    ));
                }
                *slot = (info.created_at, info.epoch);
                let live_restarts = engine
                    .tasks(&key, &TaskQuery::new())
                    .map(|p| {
                        p.items
                            .iter()
                            .filter(|t| {
                                t.kind == TaskKind::Restart
                                    && matches!(t.status, TaskStatus::Pending | TaskStatus::Running)
                            })
                            .count()
                    })
                    .unwrap_or(0);
                if live_restarts > 1 {
                    self.violations.push(format!(
                        "node {}: graph {key} has {live_restarts} live restart jobs",
                        n.id()
                    ));
                }
            }
        }
    }

    /// A fault, or a repair.
    async fn chaos(&mut self) {
        trace(format_args!("chaos"));
        let n = self.members.len();
        let i = self.rng.below(n as u64) as usize;
        let id = self.members[i].id;
        let down = self.members.iter().filter(|m| m.node.is_none()).count();
        match self.rng.below(10) {
            0 | 1 if down < (n - 1) / 2 && self.members[i].node.is_some() => self.kill(i).await,
            2 => {
                // A symmetric partition: one node alone.
                let mut st = self.net.state.lock();
                for m in 1..=n as NodeId {
                    if m != id {
                        st.cut.insert((id, m));
                        st.cut.insert((m, id));
                    }
                }
            }
            3 => {
                // A one-way partition: the node hears, nobody hears it.
                let mut st = self.net.state.lock();
                for m in 1..=n as NodeId {
                    if m != id {
                        st.cut.insert((id, m));
                    }
                }
            }
            4 => {
                let mut st = self.net.state.lock();
                st.drop_percent = self.rng.below(15);
                st.dup_percent = self.rng.below(15);
                st.max_delay_ms = 5 + self.rng.below(150);
            }
            _ => {
                // Repairs: heal the network, restart a dead node.
                self.net.state.lock().cut.clear();
                if let Some(dead) = self.members.iter().position(|m| m.node.is_none()) {
                    self.boot(dead).await;
                }
            }
        }
    }

    async fn heal(&mut self) {
        {
            let mut st = self.net.state.lock();
            st.cut.clear();
            st.drop_percent = 0;
            st.dup_percent = 0;
            st.max_delay_ms = 5;
        }
        for i in 0..self.members.len() {
            if self.members[i].node.is_none() {
                self.boot(i).await;
            }
        }
    }
}

fn trace(what: std::fmt::Arguments<'_>) {
    if std::env::var_os("SIM_TRACE").is_some() {
        eprintln!("[{:?}] {what}", Instant::now());
    }
}

// ---- clients --------------------------------------------------------------------------

struct Client {
    thread: u64,
    rng: Rng,
    /// Steps it sent with a request id, for retries: a retry sends the
    /// same request again (same request id, a new job id and time, as a
    /// client re-sending its call does).
    requested: Vec<Step>,
}

fn resolve(known: &[(GraphKey, JobId, Epoch)], target: &Target) -> (GraphKey, JobId, Epoch) {
    let (pick, tamper) = match target {
        Target::Job(i, t) | Target::Live(i, t) | Target::Any(i, t) => (*i, t.clone()),
        Target::Unknown(g, n) => {
            let id = graph_lifecycle::IdSource::next_id(
                &SequentialIds::new(4095),
                Timestamp::from_millis(u64::from(*n) + 1),
            );
            return (key_of(*g), id, Epoch(0));
        }
    };
    if known.is_empty() {
        let id = graph_lifecycle::IdSource::next_id(
            &SequentialIds::new(4095),
            Timestamp::from_millis(1),
        );
        return (key_of(0), id, Epoch(0));
    }
    // Recent jobs first: the last few dozen.
    let recent = &known[known.len().saturating_sub(24)..];
    let (mut key, job, mut epoch) = recent[usize::from(pick) % recent.len()].clone();
    match tamper {
        Tamper::None => {}
        Tamper::OtherProject => key = mirror(&key),
        Tamper::EpochUp => epoch = Epoch(epoch.0 + 1),
        Tamper::EpochDown => epoch = Epoch(epoch.0.saturating_sub(1)),
    }
    (key, job, epoch)
}

/// The command a step makes on `node`, or `None` for steps the cluster
/// does not take from clients (clock moves, expiries: only the leader
/// proposes those) or a read.
fn command_of(
    node: &Node,
    known: &[(GraphKey, JobId, Epoch)],
    step: &Step,
    req: Option<RequestId>,
) -> Option<Command> {
    let c = |g: u8, op: &dyn Fn(JobId) -> Op| Some(node.command(&key_of(g), req.clone(), op));
    match step {
        Step::Create(g) => c(*g, &|_| Op::Create),
        Step::Remove(g) => c(*g, &|_| Op::Remove),
        Step::Start(g, p) => c(*g, &|job| Op::Start {
            job,
            payload: payload_of(*p),
        }),
        Step::Stop(g) => c(*g, &|job| Op::Stop { job }),
        Step::Import(g, p) => c(*g, &|job| Op::Import {
            job,
            payload: payload_of(*p),
        }),
        Step::Export(g, p) => c(*g, &|job| Op::Export {
            job,
            payload: payload_of(*p),
        }),
        Step::Clear(g, m) => c(*g, &|job| Op::Clear {
            job,
            clear_metadata: *m,
        }),
        Step::ForceRestart(g) => c(*g, &|job| Op::ForceRestart { job }),
        Step::Register {
            graph,
            kind,
            stoppable,
            timeout_ms,
            payload,
        } => c(*graph, &|job| {
            let mut spec = TaskSpec::new(
                HostKind::new(HOST_KINDS[*kind % HOST_KINDS.len()]).expect("a valid kind"),
            )
            .stoppable(*stoppable)
            .payload(payload_of(*payload));
            if let Some(ms) = timeout_ms {
                spec = spec.timeout(Duration::from_millis(*ms));
            }
            Op::RegisterTask { job, spec }
        }),
        Step::Report(t, r) => {
            let (key, job, epoch) = resolve(known, t);
            let report = match r {
                Rep::Started => Report::Started,
                Rep::Progress(p) => Report::Progress(*p),
                Rep::Succeeded => Report::Succeeded,
                Rep::Failed(m) => Report::Failed(MESSAGES[*m % MESSAGES.len()].into()),
            };
            Some(node.command(&key, req, |_| Op::Report { job, epoch, report }))
        }
        Step::Cancel(t) => {
            let (key, job, _) = resolve(known, t);
            Some(node.command(&key, req, |_| Op::Cancel { job }))
        }
        Step::Req(r, inner) => command_of(node, known, inner, Some(request_of(*r))),
        _ => None,
    }
}

fn sorted_nodes(net: &Net) -> Vec<Node> {
    let st = net.state.lock();
    let mut ids: Vec<&NodeId> = st.nodes.keys().collect();
    ids.sort();
    ids.into_iter()
        .filter_map(|i| st.nodes.get(i).cloned())
        .collect()
}

fn pick_node(sim_nodes: &[Node], rng: &mut Rng) -> Option<Node> {
    if sim_nodes.is_empty() {
        return None;
    }
    Some(sim_nodes[rng.below(sim_nodes.len() as u64) as usize].clone())
}

/// One client call: a write or a read through a random node, retried on
/// another node (same request id) while no leader answers.
async fn client_call(
    net: &Arc<Net>,
    history: &Arc<Mutex<History>>,
    known: &Known,
    restarts: &Restarts,
    client: &mut Client,
    step: &Step,
) {
    let nodes = sorted_nodes(net);
    let Some(node) = pick_node(&nodes, &mut client.rng) else {
        return;
    };
    let retried;
    let step = match step {
        Step::Retry(i) if !client.requested.is_empty() => {
            retried = client.requested[usize::from(*i) % client.requested.len()].clone();
            &retried
        }
        other => other,
    };
    let op = match step {
        Step::Tasks(g, _) | Step::Graphs(g, _, _) | Step::ProjectTasks(g, _) => {
            SimOp::Read(key_of(*g))
        }
        other => {
            let snapshot = known.lock().clone();
            let Some(cmd) = command_of(&node, &snapshot, other, None) else {
                return;
            };
            let p = Proposal {
                id: Uuid::from_u128(
                    u128::from(client.rng.next()) << 64 | u128::from(client.rng.next()),
                ),
                body: Body::Core(cmd),
            };
            if matches!(other, Step::Req(..)) {
                client.requested.push(other.clone());
            }
            SimOp::Write(p)
        }
    };
    history.lock().invoke(client.thread, op.clone());
    let mut node = node;
    for attempt in 0..3 {
        let r = match &op {
            SimOp::Write(p) => node.propose(p.clone()).await.map(|a| ret_of(&a)),
            SimOp::Recover(_) => return,
            SimOp::Read(key) => match node.read_barrier(Consistency::Linearizable).await {
                Ok(()) => Ok(SimRet::Read(
                    node.machine()
                        .engine()
                        .graph_info(key)
                        .ok()
                        .map(|i| (i.state, i.epoch)),
                )),
                Err(e) => Err(e),
            },
        };
        match r {
            Ok(ret) => {
                if let SimRet::Core(Ok(o)) = &ret
                    && let SimOp::Write(Proposal {
                        body: Body::Core(cmd),
                        ..
                    }) = &op
                {
                    match o {
                        Outcome::Job { job, epoch } => {
                            known.lock().push((cmd.key.clone(), *job, *epoch))
                        }
                        Outcome::Restarted(r) => {
                            known.lock().push((cmd.key.clone(), r.job, r.epoch));
                            restarts
                                .lock()
                                .push((cmd.key.clone(), r.job, r.epoch, cmd.at));
                        }
                        _ => {}
                    }
                }
                history.lock().ret(client.thread, ret);
                return;
            }
            Err(_) if attempt < 2 => {
                let nodes = sorted_nodes(net);
                match pick_node(&nodes, &mut client.rng) {
                    Some(n) => node = n,
                    None => break,
                }
            }
            Err(_) => {}
        }
    }
    // Timed out: the call stays open; the client goes on as a new thread.
    client.thread = history.lock().thread();
}

// ---- a run ---------------------------------------------------------------------------

fn steps(seed: u64, n: usize) -> Vec<Step> {
    let mut runner = TestRunner::new_with_rng(
        PropConfig::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &{
            let mut s = [0u8; 32];
            s[..8].copy_from_slice(&seed.to_le_bytes());
            s
        }),
    );
    let strategy = call();
    (0..n)
        .map(|_| strategy.new_tree(&mut runner).expect("a step").current())
        .collect()
}

async fn run(seed: u64, nodes: usize, calls: usize) -> Vec<String> {
    let mut sim = Sim::new(seed, nodes);
    for i in 0..nodes {
        sim.boot(i).await;
    }
    if let Some(first) = sim.members[0].node.clone() {
        first.bootstrap().await.expect("bootstrap");
    }
    // The cluster comes up: a leader, every node up.
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Create the graphs first, so that the steps find them.
    let mut creator = Client {
        thread: sim.history.lock().thread(),
        rng: Rng(seed ^ 0xc0ffee),
        requested: Vec::new(),
    };
    for g in 0..KEYS {
        client_call(
            &sim.net,
            &sim.history,
            &sim.known,
            &sim.restarts,
            &mut creator,
            &Step::Create(g),
        )
        .await;
    }

    let work = steps(seed, calls);
    let clients = 3;
    let mut handles = Vec::new();
    for c in 0..clients {
        let mine: Vec<Step> = work.iter().skip(c).step_by(clients).cloned().collect();
        let net = sim.net.clone();
        let history = sim.history.clone();
        let known = sim.known.clone();
        let restarts = sim.restarts.clone();
        let thread = history.lock().thread();
        let mut client = Client {
            thread,
            rng: Rng(seed.wrapping_mul(31) ^ c as u64),
            requested: Vec::new(),
        };
        handles.push(tokio::spawn(async move {
            for s in mine {
                client_call(&net, &history, &known, &restarts, &mut client, &s).await;
                tokio::time::sleep(client.rng.ms(10, 400)).await;
            }
        }));
    }
    // Faults while the clients work.
    let mut done = false;
    while !done {
        tokio::time::sleep(sim.rng.ms(300, 3_000)).await;
        sim.sample();
        sim.chaos().await;
        done = handles.iter().all(|h| h.is_finished());
    }
    for h in handles {
        let _ = h.await;
    }

    // Heal, and let the cluster settle: workers finish, duties run.
    sim.heal().await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        sim.sample();
        let nodes = sim.live_nodes();
        let leaders: HashSet<Option<NodeId>> = nodes.iter().map(Node::leader).collect();
        let applied: HashSet<_> = nodes
            .iter()
            .map(|n| n.machine().last_applied().map(|l| l.index))
            .collect();
        let all_up = nodes.iter().all(|n| n.local().dispatching());
        let busy = nodes.iter().any(|n| {
            let e = n.machine().engine();
            e.keys()
                .iter()
                .any(|k| e.state(k).is_ok_and(|s| s.job_kind().is_some()))
        });
        let settled =
            leaders.len() == 1 && !leaders.contains(&None) && applied.len() == 1 && all_up;
        if settled && !busy {
            break;
        }
        if Instant::now() >= deadline {
            let states: Vec<String> = nodes
                .iter()
                .map(|n| {
                    let e = n.machine().engine();
                    format!(
                        "node {}: leader {:?}, applied {:?}, up {}, graphs {:?}",
                        n.id(),
                        n.leader(),
                        n.machine().last_applied().map(|l| l.index),
                        n.local().dispatching(),
                        e.keys()
                            .iter()
                            .map(|k| (k.to_string(), e.state(k).ok()))
                            .collect::<Vec<_>>()
                    )
                })
                .collect();
            sim.violations.push(format!(
                "after healing the cluster did not settle in 120 s: {states:#?}"
            ));
            break;
        }
    }
    sim.sample();

    // Every acknowledged forced restart is on every node.
    let nodes = sim.live_nodes();
    for (key, job, epoch, at) in sim.restarts.lock().clone() {
        for n in &nodes {
            let e = n.machine().engine();
            let Ok(info) = e.graph_info(&key) else {
                continue; // removed since
            };
            if info.created_at > at {
                continue; // removed and created again since
            }
            if info.epoch < epoch {
                sim.violations.push(format!(
                    "node {}: graph {key} at epoch {} lacks the acknowledged restart {job} (epoch {})",
                    n.id(), info.epoch.0, epoch.0
                ));
            }
            if e.task(&key, job).is_err() {
                sim.violations.push(format!(
                    "node {}: the restart job {job} of {key} is gone",
                    n.id()
                ));
            }
        }
    }
    sim.violations.extend(sim.duplicates.lock().iter().cloned());

    // The history, checked for linearizability, key by key.
    let history = std::mem::take(&mut *sim.history.lock());
    let config = sim.config.engine.clone();
    let empty = Engine::builder().config(config.clone()).build().0.image();
    for g in 0..KEYS {
        let key = key_of(g);
        let mut tester = LinearizabilityTester::new(Spec {
            config: config.clone(),
            image: empty.clone(),
        });
        for (t, op, ret) in project(&history, &key) {
            let r = match (op, ret) {
                (Some(op), _) => tester.on_invoke(t, op).map(drop),
                (None, Some(ret)) => tester.on_return(t, ret).map(drop),
                (None, None) => Ok(()),
            };
            if let Err(e) = r {
                sim.violations
                    .push(format!("the history of {key} is malformed: {e}"));
            }
        }
        trace(format_args!("checking {} calls on {key}", tester.len()));
        if !tester.is_consistent() {
            sim.violations.push(format!(
                "the history of {} calls on {key} is not linearizable",
                tester.len()
            ));
        }
    }
    for n in sim.live_nodes() {
        n.shutdown().await;
    }
    sim.violations
}

fn seeds(default: u64) -> Vec<u64> {
    if let Some(s) = std::env::var("CLUSTER_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return vec![s];
    }
    let n = std::env::var("CLUSTER_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    (1..=n).collect()
}

fn check(nodes: usize, default_cases: u64, calls: usize) {
    for seed in seeds(default_cases) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a runtime");
        let violations = rt.block_on(run(seed * 1000 + nodes as u64, nodes, calls));
        let short: Vec<String> = violations
            .iter()
            .map(|v| v.chars().take(3000).collect())
            .collect();
        assert!(
            violations.is_empty(),
            "seed {} ({nodes} nodes): {short:#?}",
            seed * 1000 + nodes as u64
        );
    }
}

#[test]
fn a_simulated_3_node_cluster_keeps_its_promises_under_faults() {
    check(3, 2, 120);
}

#[test]
fn a_simulated_5_node_cluster_keeps_its_promises_under_faults() {
    check(5, 1, 120);
}
