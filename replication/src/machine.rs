//! The state machine: the core's engine plus the cluster's state, as
//! openraft's [`RaftStateMachine`].
//!
//! - **Applying** runs each committed entry through the one deterministic
//!   step ([`crate::cluster`]) and hands the jobs of graphs this node runs
//!   to its workers.
//! - **Snapshots** are built from a consistent copy: openraft asks for a
//!   builder between two entries, the builder takes the core's image and
//!   the cluster state there (each graph under its own lock, nothing
//!   applying), and encodes and writes it on its own task while entries
//!   keep being applied.
//! - **Installing** a snapshot checks it whole first ([`snapshot::decode`]),
//!   then replaces the engine's state (voiding the tokens of every task
//!   it replaces) and the cluster state. This node is then not up any
//!   more: the jobs it handed over were voided with their tokens, so it
//!   must come up again (a new "node up" recovers its graphs) before it
//!   dispatches.
//! - **At start** ([`StateMachine::open`]) the latest snapshot on disk is
//!   restored before the Raft node starts (openraft 0.9 does not install
//!   it itself), with dispatch off; openraft then re-applies the log up to
//!   the saved committed index.

use std::collections::BTreeSet;
use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use graph_lifecycle::{Config, Engine};
use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, RaftSnapshotBuilder, Snapshot, StorageIOError};
use parking_lot::{Mutex, RwLock};

use crate::cluster::{self, ClusterState};
use crate::jobs::Local;
use crate::meta::Meta;
use crate::snapshot::{self, SnapshotError};
use crate::types::{
    Answer, Entry, LogId, NodeId, Proposal, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};

/// Sees what a node proposes on its own (its duties: "node up",
/// "released", "node lost", expiries, drains) and what its state machine
/// applies: for logs, metrics and the simulation's history. Every method
/// does nothing unless overridden; none may block.
pub trait Observer: Send + Sync + 'static {
    /// The node is about to propose `p` (it may retry it, with the same
    /// request id, until the client timeout).
    fn proposing(&self, node: NodeId, p: &Proposal) {
        let _ = (node, p);
    }
    /// The log answered `p`.
    fn answered(&self, node: NodeId, p: &Proposal, answer: &Answer) {
        let _ = (node, p, answer);
    }
    /// The state machine applied entry `log_id` holding `p`, which
    /// answered `answer` and recovered the graphs `recovered`.
    fn applied(
        &self,
        node: NodeId,
        log_id: LogId,
        p: &Proposal,
        answer: &Answer,
        recovered: &[graph_lifecycle::GraphKey],
    ) {
        let _ = (node, log_id, p, answer, recovered);
    }
}

/// The name of the snapshot file in the node's meta directory.
const SNAPSHOT: &str = "snapshot";

/// What the state machine holds besides the engine.
#[derive(Debug, Default, Clone)]
pub(crate) struct Applied {
    pub(crate) cluster: ClusterState,
    pub(crate) last: Option<LogId>,
    pub(crate) membership: StoredMembership,
}

struct Inner {
    engine: Engine,
    config: Config,
    data: RwLock<Applied>,
    local: Arc<Local>,
    meta: Arc<dyn Meta>,
    /// The latest snapshot built or installed: its meta and bytes.
    current: Mutex<Option<(SnapshotMeta, Arc<Vec<u8>>)>>,
    built: AtomicU64,
    observer: Option<Arc<dyn Observer>>,
}

/// The state machine. Cloning gives another handle to the same one (the
/// node keeps one to read the cluster state).
#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("last_applied", &self.inner.data.read().last)
            .finish_non_exhaustive()
    }
}

/// Why the state machine cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MachineError {
    /// The snapshot on disk cannot be read.
    #[error("cannot read the snapshot: {0}")]
    Io(#[from] std::io::Error),
    /// The snapshot on disk is damaged or does not restore.
    #[error("the snapshot on disk cannot be used: {0}")]
    Snapshot(#[from] SnapshotError),
}

fn sm_error(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

impl StateMachine {
    /// A state machine over a new engine with `config`, restored from the
    /// latest snapshot in `meta` if there is one, its applied entries
    /// shown to `observer`. No job is handed over until this node is up.
    ///
    /// # Errors
    ///
    /// [`MachineError`] if the snapshot on disk cannot be read or used.
    pub fn open(
        config: Config,
        meta: Arc<dyn Meta>,
        local: Arc<Local>,
        observer: Option<Arc<dyn Observer>>,
    ) -> Result<StateMachine, MachineError> {
        let (engine, _no_workers) = Engine::builder().config(config.clone()).build();
        let mut applied = Applied::default();
        let mut current = None;
        if let Some(bytes) = meta.read(SNAPSHOT)? {
            let d = snapshot::decode(&bytes, &config)?;
            engine
                .restore(&d.image)
                .map_err(|e| SnapshotError::Image(e.to_string()))?;
            applied = Applied {
                cluster: d.cluster,
                last: d.meta.last_log_id,
                membership: d.meta.last_membership.clone(),
            };
            current = Some((d.meta, Arc::new(bytes)));
        }
        Ok(StateMachine {
            inner: Arc::new(Inner {
                engine,
                config,
                data: RwLock::new(applied),
                local,
                meta,
                current: Mutex::new(current),
                built: AtomicU64::new(0),
                observer,
            }),
        })
    }

    /// The engine: every graph's state as of the last applied entry.
    /// Read it, never apply to it: changes go through the log.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The cluster state as of the last applied entry.
    pub fn cluster(&self) -> ClusterState {
        self.inner.data.read().cluster.clone()
    }

    /// Runs `f` on the cluster state without copying it.
    pub fn with_cluster<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        f(&self.inner.data.read().cluster)
    }

    /// The last applied log id.
    pub fn last_applied(&self) -> Option<LogId> {
        self.inner.data.read().last
    }

    /// This node's local state.
    pub fn local(&self) -> &Arc<Local> {
        &self.inner.local
    }

    /// The engine's configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The graph's owner, if it has one.
    pub fn owner(&self, key: &graph_lifecycle::GraphKey) -> Option<NodeId> {
        self.inner
            .data
            .read()
            .cluster
            .owners
            .get(key)
            .copied()
            .flatten()
    }

    // The error is openraft's own type, returned as openraft asks.
    #[allow(clippy::result_large_err)]
    fn keep_snapshot(&self, meta: &SnapshotMeta, bytes: Arc<Vec<u8>>) -> Result<(), StorageError> {
        let mut cur = self.inner.current.lock();
        if cur
            .as_ref()
            .is_some_and(|(m, _)| m.last_log_id >= meta.last_log_id)
        {
            // A newer snapshot is in place already (installed while this
            // one was being built).
            return Ok(());
        }
        self.inner.meta.write(SNAPSHOT, &bytes).map_err(|e| {
            StorageError::from(StorageIOError::write_snapshot(
                Some(meta.signature()),
                AnyError::new(&e),
            ))
        })?;
        *cur = Some((meta.clone(), bytes));
        Ok(())
    }
}

/// Builds a snapshot from a copy taken between two entries.
pub struct Builder {
    machine: StateMachine,
    copy: Option<(graph_lifecycle::Image, Applied)>,
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let Some((image, applied)) = self.copy.take() else {
            return Err(sm_error(std::io::Error::other(
                "the snapshot builder was used twice",
            )));
        };
        let n = self.machine.inner.built.fetch_add(1, Ordering::Relaxed);
        let id = match applied.last {
            Some(l) => format!("{}-{}-{n}", l.leader_id.term, l.index),
            None => format!("0-0-{n}"),
        };
        let meta = SnapshotMeta {
            last_log_id: applied.last,
            last_membership: applied.membership.clone(),
            snapshot_id: id,
        };
        let bytes = snapshot::encode(&meta, &applied.cluster, &image.encode()).map_err(|e| {
            StorageError::from(StorageIOError::write_snapshot(
                Some(meta.signature()),
                AnyError::new(&e),
            ))
        })?;
        let bytes = Arc::new(bytes);
        self.machine.keep_snapshot(&meta, bytes.clone())?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes.to_vec())),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Builder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let d = self.inner.data.read();
        Ok((d.last, d.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Answer>>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let inner = &*self.inner;
        let mut answers = Vec::new();
        for entry in entries {
            let mut d = inner.data.write();
            let answer = match &entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(batch) => {
                    let mut out = Vec::with_capacity(batch.proposals.len());
                    for p in &batch.proposals {
                        let mut recovered = Vec::new();
                        let a = cluster::apply(
                            &inner.engine,
                            &mut d.cluster,
                            &inner.local,
                            p,
                            &mut recovered,
                        );
                        if let Some(o) = &inner.observer {
                            o.applied(inner.local.me, entry.log_id, p, &a, &recovered);
                        }
                        out.push(a);
                    }
                    out
                }
                EntryPayload::Membership(m) => {
                    d.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    let members: BTreeSet<NodeId> = m.nodes().map(|(n, _)| *n).collect();
                    let mut rx = cluster::Recovery::new(&inner.engine);
                    cluster::apply_membership(&mut rx, &mut d.cluster, &inner.local, &members);
                    Vec::new()
                }
            };
            d.last = Some(entry.log_id);
            answers.push(answer);
        }
        Ok(answers)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Nothing is being applied now: the copy is one point of the log.
        let applied = self.inner.data.read().clone();
        let image = self.inner.engine.image();
        Builder {
            machine: self.clone(),
            copy: Some((image, applied)),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let d = snapshot::decode(&bytes, &self.inner.config).map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(
                Some(meta.signature()),
                AnyError::new(&e),
            ))
        })?;
        {
            let mut data = self.inner.data.write();
            self.inner.engine.restore(&d.image).map_err(sm_error)?;
            *data = Applied {
                cluster: d.cluster,
                last: meta.last_log_id,
                membership: meta.last_membership.clone(),
            };
            // The jobs this node handed over went void with their tokens.
            self.inner.local.applied_down();
        }
        self.keep_snapshot(meta, Arc::new(bytes))
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self
            .inner
            .current
            .lock()
            .as_ref()
            .map(|(meta, bytes)| Snapshot {
                meta: meta.clone(),
                snapshot: Box::new(Cursor::new(bytes.to_vec())),
            }))
    }
}
