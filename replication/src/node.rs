//! A node of the cluster: the Raft node over the log store and the state
//! machine, its client API (writes forwarded to the leader, linearizable
//! or stale reads), the answers it gives its peers, and its duties.
//!
//! # Duties, every heartbeat
//!
//! - **Lease and fence.** A node renews its lease with the leader every
//!   quarter of the fence timeout (the leader answers only after a quorum
//!   confirmed it still leads). A lease counts from the moment the renewal
//!   was *sent*. Once its last lease is older than the fence timeout the
//!   node fences itself: every job lease it gave out goes void and it
//!   hands no job over until it is up again.
//! - **Up.** A node that is not up (just booted, back from a fence, or its
//!   state replaced by a snapshot) and holds a lease proposes "node up"
//!   with a new incarnation; applying it recovers the graphs it owns, and
//!   from then on it dispatches their jobs.
//! - **Leader only.** It declares lost a node it has not heard from (no
//!   lease renewal) for the fence timeout plus the drift margin, counted
//!   from when it became leader at the earliest; it proposes the expiry of
//!   every graph with a deadline due (no node expires its own state); it
//!   re-issues a membership change left joint by a crash.
//! - **Elections.** A voter that has seen no leader for the longest
//!   election timeout plus a random jitter triggers an election itself:
//!   openraft 0.9 draws each node's election timeout once, so two
//!   survivors can otherwise tie for ever.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use graph_lifecycle::{
    Clock, Command, Error, GraphKey, IdSource, JobId, Op, Outcome, RequestId, SystemClock,
    UuidV7Ids,
};
use graph_lifecycle_journal::Storage;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{ChangeMembers, RaftMetrics, ServerState};
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use crate::config::ClusterConfig;
use crate::jobs::{ClusterJobs, Local};
use crate::log_store::{Flush, LogOptions, LogStore, LogStoreError, OpenReport};
use crate::machine::{MachineError, Observer, StateMachine};
use crate::meta::Meta;
use crate::rpc::{
    Admin, GraphView, NetError, NetworkFactory, Refusal, Reply, Request, StatusView, TaskView,
    Transport,
};
use crate::types::{
    Answer, Batch, Body, ClusterCmd, ClusterOutcome, Consistency, NodeAddr, NodeId, Proposal, Raft,
};

/// A node's disk: its log segments and its small files (vote, committed,
/// purge point, snapshot).
pub struct Disk {
    /// The log segments.
    pub log: Box<dyn Storage>,
    /// The small files.
    pub meta: Arc<dyn Meta>,
}

impl Disk {
    /// A disk in directory `dir`: segments in `dir/log`, small files in
    /// `dir/meta`.
    ///
    /// # Errors
    ///
    /// The directories cannot be created.
    pub fn open(dir: impl AsRef<std::path::Path>) -> std::io::Result<Disk> {
        let dir = dir.as_ref();
        let log = graph_lifecycle_journal::FileStorage::open(dir.join("log"))
            .map_err(std::io::Error::other)?;
        let meta = crate::meta::FileMeta::open(dir.join("meta"))?;
        Ok(Disk {
            log: Box::new(log),
            meta: Arc::new(meta),
        })
    }
}

/// What a node runs on besides its disk: a clock for the commands it
/// makes, an id source for their jobs, who flushes the log, and who
/// observes its own proposals.
#[derive(Clone)]
pub struct Env {
    /// The time commands carry.
    pub clock: Arc<dyn Clock>,
    /// The ids of new jobs.
    pub ids: Arc<dyn IdSource>,
    /// Who writes and syncs the log.
    pub flush: Flush,
    /// Who sees the node's own proposals, if anyone.
    pub observer: Option<Arc<dyn Observer>>,
}

impl Default for Env {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            ids: Arc::new(UuidV7Ids),
            flush: Flush::Background,
            observer: None,
        }
    }
}

/// Why a node cannot start, or a call through it failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The configuration is invalid.
    #[error("node configuration: {0}")]
    Config(String),
    /// The log cannot be opened.
    #[error(transparent)]
    Log(#[from] LogStoreError),
    /// The state machine cannot be restored.
    #[error(transparent)]
    Machine(#[from] MachineError),
    /// openraft refused to start or stopped.
    #[error("node {node}: the Raft node failed: {why}")]
    Raft {
        /// This node.
        node: NodeId,
        /// Why.
        why: String,
    },
    /// No leader answered within the client timeout: the cluster has no
    /// quorum, or this node cannot reach it. A write may or may not have
    /// been applied; retry it with the same request id to find out.
    #[error("node {node}: no leader answered within {ms} ms ({last})")]
    Unavailable {
        /// This node.
        node: NodeId,
        /// The timeout.
        ms: u64,
        /// The last thing that went wrong.
        last: String,
    },
    /// The leader refused the call.
    #[error("node {node}: {why}")]
    Refused {
        /// The node that refused.
        node: NodeId,
        /// Why.
        why: String,
    },
}

struct Duties {
    /// When the last successful lease renewal was sent.
    lease_ok_at: Option<Instant>,
    renewing: bool,
    catching_up: bool,
    up_in_flight: bool,
    /// Leader: when each node last renewed its lease with this leader.
    contacts: HashMap<NodeId, Instant>,
    leader_term: Option<u64>,
    leader_since: Instant,
    lost_in_flight: HashSet<NodeId>,
    expiring: HashSet<GraphKey>,
    releasing: HashSet<GraphKey>,
    next_elect_at: Option<Instant>,
    joint_since: Option<Instant>,
    rejoin_in_flight: bool,
    rng: u64,
}

struct Inner {
    id: NodeId,
    config: ClusterConfig,
    raft: Raft,
    sm: StateMachine,
    transport: Arc<dyn Transport>,
    env: Env,
    duties: Mutex<Duties>,
    /// Whether this node has caught up since it started: applied the log
    /// up to a commit index the leader confirmed after the start. Until
    /// then its state may be older than what it served before a crash,
    /// and it serves no read, not even a stale one.
    serving: std::sync::atomic::AtomicBool,
    ticker: Mutex<Option<JoinHandle<()>>>,
    /// Proposals waiting to go into the next entry (on the leader).
    batch: tokio::sync::mpsc::UnboundedSender<Pending>,
    batcher: Mutex<Option<JoinHandle<()>>>,
}

/// A proposal waiting for its entry, and where its answer goes.
type Pending = (
    Proposal,
    tokio::sync::oneshot::Sender<Result<Answer, WriteFailed>>,
);

/// Why a write on this node did not get its answer.
#[derive(Debug, Clone)]
enum WriteFailed {
    NotLeader(Option<NodeId>),
    Refused(String),
    Fatal(String),
}

/// Most proposals in one entry.
const MAX_BATCH: usize = 512;
/// Most entries written at once by the batcher.
const BATCHES_IN_FLIGHT: usize = 4;

/// Gathers the proposals that arrive while earlier entries are being
/// written into one entry each time: openraft 0.9 syncs every entry it
/// appends before it takes the next, so one proposal an entry would cost
/// one sync each.
async fn batcher(raft: Raft, mut rx: tokio::sync::mpsc::UnboundedReceiver<Pending>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(BATCHES_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut pending = vec![first];
        while pending.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => pending.push(p),
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let (proposals, answers): (Vec<Proposal>, Vec<_>) = pending.into_iter().unzip();
            match raft.client_write(Batch { proposals }).await {
                Ok(r) => {
                    let mut data = r.data.into_iter();
                    for tx in answers {
                        let a = data.next().ok_or_else(|| {
                            WriteFailed::Fatal("the entry answered fewer proposals".into())
                        });
                        let _ = tx.send(a);
                    }
                }
                Err(e) => {
                    let failed = match e {
                        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                            WriteFailed::NotLeader(f.leader_id)
                        }
                        RaftError::APIError(e) => WriteFailed::Refused(e.to_string()),
                        RaftError::Fatal(e) => WriteFailed::Fatal(e.to_string()),
                    };
                    for tx in answers {
                        let _ = tx.send(Err(failed.clone()));
                    }
                }
            }
            drop(slot);
        });
    }
}

/// A node of the cluster. Cloning gives another handle to the same node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

/// What starting a node found on its disk.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StartReport {
    /// The log store's.
    pub log: OpenReport,
    /// The last log id the restored snapshot held.
    pub snapshot: Option<crate::types::LogId>,
}

fn xorshift(s: &mut u64) -> u64 {
    let mut x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    x
}

impl Node {
    /// Starts a node on `disk`: restores the latest snapshot, opens the
    /// log, starts the Raft node (which re-applies the log up to the saved
    /// committed index, handing no job over) and its duties. Returns the
    /// node and the receiver of the jobs its workers run.
    ///
    /// # Errors
    ///
    /// [`ClusterError`] if the configuration is invalid, the log or the
    /// snapshot cannot be used, or openraft refuses to start.
    pub async fn start(
        config: ClusterConfig,
        disk: Disk,
        transport: Arc<dyn Transport>,
        env: Env,
    ) -> Result<(Node, ClusterJobs, StartReport), ClusterError> {
        config.validate().map_err(ClusterError::Config)?;
        let id = config.node_id;
        let incarnation = env.clock.now().as_millis() << 12;
        let (local, jobs) = Local::new(id, incarnation.max(1));
        let sm = StateMachine::open(
            config.engine.clone(),
            disk.meta.clone(),
            local,
            env.observer.clone(),
        )?;
        let snapshot = sm.last_applied();
        let (log, log_report) = LogStore::open(
            disk.log,
            disk.meta,
            LogOptions {
                flush: env.flush,
                ..LogOptions::default()
            },
        )?;
        let raft_config = config.raft().validate().map_err(|e| ClusterError::Raft {
            node: id,
            why: e.to_string(),
        })?;
        let raft = Raft::new(
            id,
            Arc::new(raft_config),
            NetworkFactory::new(transport.clone()),
            log,
            sm.clone(),
        )
        .await
        .map_err(|e| ClusterError::Raft {
            node: id,
            why: e.to_string(),
        })?;
        let now = Instant::now();
        let (batch, batch_rx) = tokio::sync::mpsc::unbounded_channel();
        let batcher = tokio::spawn(batcher(raft.clone(), batch_rx));
        let inner = Arc::new(Inner {
            id,
            raft,
            sm,
            transport,
            duties: Mutex::new(Duties {
                lease_ok_at: None,
                renewing: false,
                catching_up: false,
                up_in_flight: false,
                contacts: HashMap::new(),
                leader_term: None,
                leader_since: now,
                lost_in_flight: HashSet::new(),
                expiring: HashSet::new(),
                releasing: HashSet::new(),
                next_elect_at: None,
                joint_since: None,
                rejoin_in_flight: false,
                rng: incarnation | 1,
            }),
            serving: std::sync::atomic::AtomicBool::new(false),
            ticker: Mutex::new(None),
            batch,
            batcher: Mutex::new(Some(batcher)),
            config,
            env,
        });
        let node = Node { inner };
        let ticker = {
            let weak = Arc::downgrade(&node.inner);
            let period = node.inner.config.timeouts.heartbeat;
            tokio::spawn(async move {
                let mut every = tokio::time::interval(period);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    let Some(inner) = weak.upgrade() else { return };
                    Node { inner }.tick();
                }
            })
        };
        *node.inner.ticker.lock() = Some(ticker);
        Ok((
            node,
            jobs,
            StartReport {
                log: log_report,
                snapshot,
            },
        ))
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The Raft node (metrics, waiting for a state).
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// The state machine: the engine and the cluster state this node has
    /// applied. Read after [`read_barrier`](Self::read_barrier).
    pub fn machine(&self) -> &StateMachine {
        &self.inner.sm
    }

    /// The configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    /// This node's local state (up, fenced).
    pub fn local(&self) -> &Arc<Local> {
        self.inner.sm.local()
    }

    /// The latest metrics.
    pub fn metrics(&self) -> RaftMetrics<NodeId, NodeAddr> {
        self.inner.raft.metrics().borrow().clone()
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.inner.raft.metrics().borrow().current_leader
    }

    /// Whether this node leads.
    pub fn is_leader(&self) -> bool {
        self.inner.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Initializes the cluster with every configured peer as a voter, on
    /// one node, once (`docs/CLUSTER.md`, "Starting a cluster"). A node
    /// already initialized answers `Ok` and changes nothing.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Raft`] if openraft refuses.
    pub async fn bootstrap(&self) -> Result<(), ClusterError> {
        match self
            .inner
            .raft
            .initialize(self.inner.config.peers.clone())
            .await
        {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(ClusterError::Raft {
                node: self.inner.id,
                why: e.to_string(),
            }),
        }
    }

    /// Stops the node: its duties and the Raft node. Its workers' leases
    /// stay as they are; a node that stops for good should be removed.
    pub async fn shutdown(&self) {
        if let Some(t) = self.inner.ticker.lock().take() {
            t.abort();
        }
        if let Some(t) = self.inner.batcher.lock().take() {
            t.abort();
        }
        let _ = self.inner.raft.shutdown().await;
    }

    // ---- writes -------------------------------------------------------------

    /// A core command for `key` at this node's clock, with a fresh job id
    /// for `op`, carrying `request` (or a new request id if `None`, so
    /// that this node's own retries are answered, not applied twice).
    pub fn command(
        &self,
        key: &GraphKey,
        request: Option<RequestId>,
        op: impl FnOnce(JobId) -> Op,
    ) -> Command {
        let at = self.inner.env.clock.now();
        let job = self.inner.env.ids.next_id(at);
        Command {
            key: key.clone(),
            at,
            request: Some(request.unwrap_or_else(new_request)),
            op: op(job),
        }
    }

    /// Applies a core command through the log (forwarded to the leader if
    /// this node does not lead) and returns the outcome every node
    /// applied. A command without a request id gets one.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Unavailable`] if no leader answered in time: the
    /// command may or may not have been applied; submitting the same
    /// command again (same request id) gets its answer.
    pub async fn submit(&self, mut cmd: Command) -> Result<Result<Outcome, Error>, ClusterError> {
        if cmd.request.is_none() {
            cmd.request = Some(new_request());
        }
        let p = Proposal {
            id: Uuid::new_v4(),
            body: Body::Core(cmd),
        };
        match self.propose(p).await? {
            Answer::Core { outcome, .. } => Ok(outcome),
            other => Err(ClusterError::Refused {
                node: self.inner.id,
                why: format!("a core command was answered {other:?}"),
            }),
        }
    }

    /// Proposes `p` and waits for the answer the log gave it: on the
    /// leader, or forwarded to it, retrying with the same request id
    /// until the client timeout.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Unavailable`] if no leader answered in time.
    pub async fn propose(&self, p: Proposal) -> Result<Answer, ClusterError> {
        let inner = &*self.inner;
        let limit = inner.config.timeouts.client;
        let deadline = Instant::now() + limit;
        let mut last = String::from("no leader known");
        loop {
            if Instant::now() >= deadline {
                return Err(ClusterError::Unavailable {
                    node: inner.id,
                    ms: limit.as_millis() as u64,
                    last,
                });
            }
            let leader = self.leader();
            if leader == Some(inner.id) {
                match self.write_here(p.clone()).await {
                    Ok(a) => return Ok(a),
                    Err(WriteFailed::NotLeader(l)) => {
                        last = format!("not the leader any more (leader {l:?})");
                    }
                    Err(WriteFailed::Refused(why)) => {
                        return Err(ClusterError::Refused {
                            node: inner.id,
                            why,
                        });
                    }
                    Err(WriteFailed::Fatal(why)) => {
                        return Err(ClusterError::Raft {
                            node: inner.id,
                            why,
                        });
                    }
                }
            } else if let Some(l) = leader {
                let left = deadline.saturating_duration_since(Instant::now());
                match self
                    .call_leader(
                        l,
                        Request::Write(p.clone()),
                        left.min(inner.config.timeouts.rpc * 5),
                    )
                    .await
                {
                    Ok(Reply::Write(Ok(a))) => return Ok(a),
                    Ok(Reply::Write(Err(Refusal::NotLeader { leader }))) => {
                        last = format!("node {l} does not lead (it knows {leader:?})");
                    }
                    Ok(Reply::Write(Err(Refusal::Failed(why)))) => {
                        return Err(ClusterError::Refused { node: l, why });
                    }
                    Ok(other) => last = format!("node {l} answered {other:?}"),
                    Err(e) => last = e.to_string(),
                }
            }
            tokio::time::sleep(inner.config.timeouts.heartbeat / 2).await;
        }
    }

    /// Puts `p` into this node's next entry (it must lead).
    async fn write_here(&self, p: Proposal) -> Result<Answer, WriteFailed> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner
            .batch
            .send((p, tx))
            .map_err(|_| WriteFailed::Fatal("the node is shutting down".into()))?;
        rx.await
            .map_err(|_| WriteFailed::Fatal("the node is shutting down".into()))?
    }

    fn addr_of(&self, node: NodeId) -> NodeAddr {
        let m = self.inner.raft.metrics().borrow().membership_config.clone();
        m.membership()
            .get_node(&node)
            .cloned()
            .or_else(|| self.inner.config.peers.get(&node).cloned())
            .unwrap_or_default()
    }

    async fn call_leader(
        &self,
        leader: NodeId,
        req: Request,
        timeout: Duration,
    ) -> Result<Reply, NetError> {
        let addr = self.addr_of(leader);
        self.inner.transport.call(leader, &addr, req, timeout).await
    }

    // ---- reads ----------------------------------------------------------------

    /// Whether this node serves reads: it has applied the log up to a
    /// commit index the leader confirmed after this node started, so its
    /// state is no older than anything it served before a crash.
    pub fn serving(&self) -> bool {
        self.inner
            .serving
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Waits until a read of this node's state is as fresh as `c` asks:
    /// linearizable (the leader confirmed it leads, and this node applied
    /// the log up to the leader's commit index then), or stale (this node
    /// caught up once since it started: see [`serving`](Self::serving)).
    ///
    /// # Errors
    ///
    /// [`ClusterError::Unavailable`] if that cannot be had within the
    /// client timeout.
    pub async fn read_barrier(&self, c: Consistency) -> Result<(), ClusterError> {
        let inner = &*self.inner;
        let limit = inner.config.timeouts.client;
        let deadline = Instant::now() + limit;
        let unavailable = |last: String| ClusterError::Unavailable {
            node: inner.id,
            ms: limit.as_millis() as u64,
            last,
        };
        let wait_applied = |index: u64| async move {
            let left = deadline.saturating_duration_since(Instant::now());
            inner
                .raft
                .wait(Some(left))
                .applied_index_at_least(Some(index), "read barrier")
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        };
        if c == Consistency::Stale {
            while !self.serving() {
                if Instant::now() >= deadline {
                    return Err(unavailable(
                        "this node has not caught up since it started".into(),
                    ));
                }
                tokio::time::sleep(inner.config.timeouts.heartbeat / 2).await;
            }
            return Ok(());
        }
        let mut last = String::from("no leader known");
        loop {
            if Instant::now() >= deadline {
                return Err(unavailable(last));
            }
            match self.leader() {
                Some(l) if l == inner.id => match inner.raft.ensure_linearizable().await {
                    Ok(_) => return Ok(()),
                    Err(e) => last = e.to_string(),
                },
                Some(l) => {
                    match self
                        .call_leader(l, Request::ReadIndex, inner.config.timeouts.rpc)
                        .await
                    {
                        Ok(Reply::ReadIndex(Ok(index))) => {
                            return wait_applied(index).await.map_err(unavailable);
                        }
                        Ok(other) => last = format!("node {l} answered {other:?}"),
                        Err(e) => last = e.to_string(),
                    }
                }
                None => {}
            }
            tokio::time::sleep(inner.config.timeouts.heartbeat / 2).await;
        }
    }

    // ---- membership -------------------------------------------------------------

    /// Runs a membership change on the leader (forwarded if this node does
    /// not lead).
    ///
    /// # Errors
    ///
    /// [`ClusterError::Refused`] with openraft's reason, or
    /// [`ClusterError::Unavailable`].
    pub async fn admin(&self, op: Admin) -> Result<(), ClusterError> {
        let inner = &*self.inner;
        let deadline = Instant::now() + inner.config.timeouts.client;
        let mut last = String::from("no leader known");
        while Instant::now() < deadline {
            match self.leader() {
                Some(l) if l == inner.id => {
                    return self.admin_here(op).await.map_err(|e| match e {
                        Refusal::NotLeader { .. } => ClusterError::Unavailable {
                            node: l,
                            ms: 0,
                            last: e.to_string(),
                        },
                        Refusal::Failed(why) => ClusterError::Refused { node: l, why },
                    });
                }
                Some(l) => match self
                    .call_leader(l, Request::Admin(op.clone()), inner.config.timeouts.client)
                    .await
                {
                    Ok(Reply::Admin(Ok(()))) => return Ok(()),
                    Ok(Reply::Admin(Err(Refusal::Failed(why)))) => {
                        return Err(ClusterError::Refused { node: l, why });
                    }
                    Ok(other) => last = format!("node {l} answered {other:?}"),
                    Err(e) => last = e.to_string(),
                },
                None => {}
            }
            tokio::time::sleep(inner.config.timeouts.heartbeat).await;
        }
        Err(ClusterError::Unavailable {
            node: inner.id,
            ms: inner.config.timeouts.client.as_millis() as u64,
            last,
        })
    }

    async fn admin_here(&self, op: Admin) -> Result<(), Refusal> {
        let raft = &self.inner.raft;
        let failed = |e: &dyn std::fmt::Display| Refusal::Failed(e.to_string());
        let change = |r: Result<_, RaftError<NodeId, ClientWriteError<NodeId, NodeAddr>>>| match r {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(Refusal::NotLeader {
                    leader: f.leader_id,
                })
            }
            Err(e) => Err(failed(&e)),
        };
        match op {
            Admin::AddLearner { node, addr } => change(raft.add_learner(node, addr, false).await),
            Admin::Promote { node } => change(
                raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([node])), false)
                    .await,
            ),
            Admin::Drain { node } => self.drain(node).await,
            Admin::Remove { node } => {
                self.drain(node).await?;
                let m = raft.metrics().borrow().membership_config.clone();
                let voter = m.membership().voter_ids().any(|v| v == node);
                if voter {
                    change(
                        raft.change_membership(
                            ChangeMembers::RemoveVoters(BTreeSet::from([node])),
                            false,
                        )
                        .await,
                    )?;
                }
                change(
                    raft.change_membership(
                        ChangeMembers::RemoveNodes(BTreeSet::from([node])),
                        false,
                    )
                    .await,
                )
            }
        }
    }

    /// Moves each graph `node` owns to the least loaded other live node.
    async fn drain(&self, node: NodeId) -> Result<(), Refusal> {
        let owned = self.inner.sm.with_cluster(|c| c.owned_by(node));
        for key in owned {
            let target = self.inner.sm.with_cluster(|c| {
                let mut load: BTreeMap<NodeId, usize> = c
                    .nodes
                    .iter()
                    .filter(|(n, r)| r.live && **n != node)
                    .map(|(n, _)| (*n, 0))
                    .collect();
                for o in c.owners.values().flatten() {
                    if let Some(x) = load.get_mut(o) {
                        *x += 1;
                    }
                }
                load.into_iter()
                    .min_by_key(|(n, l)| (*l, *n))
                    .map(|(n, _)| n)
            });
            let Some(target) = target else {
                return Err(Refusal::Failed(format!(
                    "no other live node can take graph {key} from node {node}"
                )));
            };
            let p = Proposal {
                id: Uuid::new_v4(),
                body: Body::Cluster(ClusterCmd::Assign {
                    key,
                    node: target,
                    at: self.inner.env.clock.now(),
                }),
            };
            self.propose_duty(p)
                .await
                .map_err(|e| Refusal::Failed(e.to_string()))?;
        }
        Ok(())
    }

    // ---- answering peers ----------------------------------------------------------

    /// Answers a peer's request (the node-to-node listener calls it once
    /// the caller is authenticated).
    pub async fn handle(&self, req: Request) -> Reply {
        let inner = &*self.inner;
        let raft = &inner.raft;
        match req {
            Request::Append(r) => Reply::Append(raft.append_entries(r).await),
            Request::Vote(r) => Reply::Vote(raft.vote(r).await),
            Request::Snapshot { vote, meta, data } => {
                // Checked before openraft sees it: a storage error would
                // stop the node.
                if let Err(e) = crate::snapshot::decode(&data, inner.sm.config()) {
                    return Reply::Snapshot(Err(e.to_string()));
                }
                let snapshot = openraft::Snapshot {
                    meta,
                    snapshot: Box::new(std::io::Cursor::new(data)),
                };
                Reply::Snapshot(
                    raft.install_full_snapshot(vote, snapshot)
                        .await
                        .map_err(|e| e.to_string()),
                )
            }
            Request::Write(p) => Reply::Write(match self.write_here(p).await {
                Ok(a) => Ok(a),
                Err(WriteFailed::NotLeader(leader)) => Err(Refusal::NotLeader { leader }),
                Err(WriteFailed::Refused(why) | WriteFailed::Fatal(why)) => {
                    Err(Refusal::Failed(why))
                }
            }),
            Request::ReadIndex => Reply::ReadIndex(match raft.get_read_log_id().await {
                Ok((read, _)) => Ok(read.map_or(0, |l| l.index)),
                Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(
                    f,
                ))) => Err(Refusal::NotLeader {
                    leader: f.leader_id,
                }),
                Err(e) => Err(Refusal::Failed(e.to_string())),
            }),
            Request::Lease { node } => {
                let received = Instant::now();
                Reply::Lease(match raft.get_read_log_id().await {
                    Ok(_) => {
                        let mut d = inner.duties.lock();
                        let e = d.contacts.entry(node).or_insert(received);
                        *e = (*e).max(received);
                        Ok(())
                    }
                    Err(RaftError::APIError(
                        openraft::error::CheckIsLeaderError::ForwardToLeader(f),
                    )) => Err(Refusal::NotLeader {
                        leader: f.leader_id,
                    }),
                    Err(e) => Err(Refusal::Failed(e.to_string())),
                })
            }
            Request::Admin(op) => Reply::Admin(self.admin_here(op).await),
            Request::Client(p) => Reply::Client(self.propose(p).await.map_err(refused)),
            Request::Query { key, consistency } => Reply::Query(
                self.read_barrier(consistency)
                    .await
                    .map(|()| self.view(&key))
                    .map_err(refused),
            ),
            Request::Status => Reply::Status(self.status()),
        }
    }

    /// One graph as this node has applied it.
    pub fn view(&self, key: &GraphKey) -> Option<GraphView> {
        let engine = self.inner.sm.engine();
        let info = engine.graph_info(key).ok()?;
        let mut tasks = engine
            .tasks(key, &graph_lifecycle::TaskQuery::new())
            .map(|p| p.items)
            .unwrap_or_default();
        tasks.sort_by_key(|t| (t.created_at, t.id));
        Some(GraphView {
            state: info.state,
            epoch: info.epoch,
            owner: self.inner.sm.owner(key),
            tasks: tasks
                .into_iter()
                .map(|t| TaskView {
                    job: t.id,
                    kind: t.kind.name().to_owned(),
                    epoch: t.epoch,
                    status: t.status,
                    progress: t.progress,
                })
                .collect(),
        })
    }

    /// What this node knows of the cluster.
    pub fn status(&self) -> StatusView {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        StatusView {
            node: self.inner.id,
            leader: m.current_leader,
            term: m.current_term,
            applied: m.last_applied.map(|l| l.index),
            serving: self.serving(),
            dispatching: self.local().dispatching(),
            voters: membership.voter_ids().collect(),
            joint: membership.get_joint_config().len() > 1,
        }
    }

    // ---- duties -----------------------------------------------------------------

    fn tick(&self) {
        let inner = &*self.inner;
        let t = inner.config.timeouts;
        let now = Instant::now();
        let m = inner.raft.metrics().borrow().clone();
        let local = inner.sm.local().clone();
        let member = m
            .membership_config
            .membership()
            .get_node(&inner.id)
            .is_some();
        let voter = m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == inner.id);
        let mut d = inner.duties.lock();

        // Lease and fence.
        let leased = d
            .lease_ok_at
            .is_some_and(|at| now.saturating_duration_since(at) < t.fence);
        if !leased && (!local.is_fenced() || local.is_live()) {
            local.fence();
        }
        let renew_due = d
            .lease_ok_at
            .is_none_or(|at| now.saturating_duration_since(at) >= t.fence / 4);
        if renew_due && !d.renewing && member {
            d.renewing = true;
            let node = self.clone();
            tokio::spawn(async move { node.renew_lease().await });
        }

        // Caught up since the start.
        if !self.serving() && !d.catching_up && member {
            d.catching_up = true;
            let node = self.clone();
            tokio::spawn(async move {
                let ok = node.read_barrier(Consistency::Linearizable).await.is_ok();
                let inner = &*node.inner;
                inner.duties.lock().catching_up = false;
                if ok {
                    inner
                        .serving
                        .store(true, std::sync::atomic::Ordering::Release);
                }
            });
        }

        // Up.
        if !local.is_live() && leased && member && !d.up_in_flight {
            d.up_in_flight = true;
            let node = self.clone();
            tokio::spawn(async move { node.come_up().await });
        }

        // Graphs moved away from this node, whose move it applied.
        for key in inner.sm.with_cluster(|c| c.to_release(inner.id)) {
            if d.releasing.insert(key.clone()) {
                let node = self.clone();
                tokio::spawn(async move { node.release(key).await });
            }
        }

        // Leader duties.
        if m.state == ServerState::Leader {
            if d.leader_term != Some(m.current_term) {
                d.leader_term = Some(m.current_term);
                d.leader_since = now;
                d.contacts.clear();
                d.joint_since = None;
            }
            let since = d.leader_since;
            let silent: Vec<(NodeId, u64)> = inner.sm.with_cluster(|c| {
                c.nodes
                    .iter()
                    .filter(|(n, r)| r.live && **n != inner.id)
                    .filter(|(n, _)| {
                        let heard = d.contacts.get(n).copied().unwrap_or(since).max(since);
                        now.saturating_duration_since(heard) > t.lost()
                    })
                    .map(|(n, r)| (*n, r.incarnation))
                    .collect()
            });
            for (n, incarnation) in silent {
                if d.lost_in_flight.insert(n) {
                    let node = self.clone();
                    tokio::spawn(async move { node.declare_lost(n, incarnation).await });
                }
            }
            let at = inner.env.clock.now();
            for key in inner.sm.engine().due_graphs(at) {
                if d.expiring.len() >= 64 {
                    break;
                }
                if d.expiring.insert(key.clone()) {
                    let node = self.clone();
                    tokio::spawn(async move { node.expire(key, at).await });
                }
            }
            let joint = m.membership_config.membership().get_joint_config().clone();
            if joint.len() > 1 {
                let since = *d.joint_since.get_or_insert(now);
                if now.saturating_duration_since(since) > t.election_max * 2 && !d.rejoin_in_flight
                {
                    d.rejoin_in_flight = true;
                    let target = joint.last().cloned().unwrap_or_default();
                    let node = self.clone();
                    tokio::spawn(async move { node.finish_joint(target).await });
                }
            } else {
                d.joint_since = None;
            }
        } else {
            d.leader_term = None;
        }

        // Elections.
        if m.current_leader.is_none() && voter {
            let jitter = Duration::from_millis(
                xorshift(&mut d.rng) % (t.election_max.as_millis() as u64).max(1),
            );
            let at = *d.next_elect_at.get_or_insert(now + t.election_max + jitter);
            if now >= at {
                d.next_elect_at = Some(now + t.election_max + jitter);
                let raft = inner.raft.clone();
                tokio::spawn(async move {
                    let _ = raft.trigger().elect().await;
                });
            }
        } else {
            d.next_elect_at = None;
        }
    }

    async fn renew_lease(&self) {
        let inner = &*self.inner;
        let sent = Instant::now();
        let ok = match self.leader() {
            Some(l) if l == inner.id => inner.raft.get_read_log_id().await.is_ok(),
            Some(l) => matches!(
                self.call_leader(
                    l,
                    Request::Lease { node: inner.id },
                    inner.config.timeouts.fence / 2
                )
                .await,
                Ok(Reply::Lease(Ok(())))
            ),
            None => false,
        };
        let mut d = inner.duties.lock();
        d.renewing = false;
        if ok && Instant::now().saturating_duration_since(sent) < inner.config.timeouts.fence {
            d.lease_ok_at = Some(d.lease_ok_at.map_or(sent, |at| at.max(sent)));
            inner.sm.local().unfence();
        }
    }

    async fn come_up(&self) {
        let inner = &*self.inner;
        let at = inner.env.clock.now();
        let incarnation = inner.sm.local().renew_incarnation(at.as_millis() << 12);
        let p = Proposal {
            id: Uuid::new_v4(),
            body: Body::Cluster(ClusterCmd::NodeUp {
                node: inner.id,
                incarnation,
                at,
            }),
        };
        let _ = self.propose_duty(p).await;
        inner.duties.lock().up_in_flight = false;
    }

    /// A proposal of the node's own duties, shown to the observer.
    async fn propose_duty(&self, p: Proposal) -> Result<Answer, ClusterError> {
        let obs = self.inner.env.observer.clone();
        if let Some(o) = &obs {
            o.proposing(self.inner.id, &p);
        }
        let r = self.propose(p.clone()).await;
        if let (Some(o), Ok(a)) = (&obs, &r) {
            o.answered(self.inner.id, &p, a);
        }
        r
    }

    async fn release(&self, key: GraphKey) {
        let inner = &*self.inner;
        let p = Proposal {
            id: Uuid::new_v4(),
            body: Body::Cluster(ClusterCmd::Released {
                key: key.clone(),
                node: inner.id,
                at: inner.env.clock.now(),
            }),
        };
        let _ = self.propose_duty(p).await;
        inner.duties.lock().releasing.remove(&key);
    }

    async fn declare_lost(&self, node: NodeId, incarnation: u64) {
        let inner = &*self.inner;
        let p = Proposal {
            id: Uuid::new_v4(),
            body: Body::Cluster(ClusterCmd::NodeLost {
                node,
                incarnation,
                at: inner.env.clock.now(),
            }),
        };
        let r = self.propose_duty(p).await;
        if matches!(r, Ok(Answer::Cluster(ClusterOutcome::Lost { .. }))) {
            inner.duties.lock().contacts.remove(&node);
        }
        inner.duties.lock().lost_in_flight.remove(&node);
    }

    async fn expire(&self, key: GraphKey, at: graph_lifecycle::Timestamp) {
        let inner = &*self.inner;
        // No request id: an expiry is the same at the same time, and its
        // answers would crowd clients' retries out of the window.
        let p = Proposal {
            id: Uuid::new_v4(),
            body: Body::Core(Command::new(key.clone(), at, Op::Expire)),
        };
        let _ = self.propose_duty(p).await;
        inner.duties.lock().expiring.remove(&key);
    }

    async fn finish_joint(&self, target: BTreeSet<NodeId>) {
        let inner = &*self.inner;
        let _ = inner
            .raft
            .change_membership(ChangeMembers::ReplaceAllVoters(target), false)
            .await;
        let mut d = inner.duties.lock();
        d.rejoin_in_flight = false;
        d.joint_since = None;
    }
}

fn refused(e: ClusterError) -> Refusal {
    Refusal::Failed(e.to_string())
}

fn new_request() -> RequestId {
    // A hyphenated UUID is 36 printable ASCII bytes: always a valid id.
    RequestId::new(&Uuid::new_v4().to_string())
        .unwrap_or_else(|_| unreachable!("a UUID is a valid request id"))
}
