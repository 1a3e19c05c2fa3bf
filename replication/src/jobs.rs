//! Jobs this node's workers run, and the node's fence.
//!
//! A node hands a graph's jobs to its workers only while it owns the graph,
//! is up (its "node up" entry for this incarnation was applied) and is not
//! fenced. Each job carries the core's cancel token and a [`Lease`] on the
//! node's fence: when the node loses its quorum for longer than its fence
//! timeout, it moves the fence and every lease it gave out goes void, so
//! its workers stop before the leader declares the node lost and another
//! node recovers its graphs (`docs/CLUSTER.md`, "Fencing").

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use graph_lifecycle::Job;

use crate::types::NodeId;

/// A worker's hold on its job: void once the node fenced itself after it
/// was handed out.
#[derive(Debug, Clone)]
pub struct Lease {
    fence: Arc<AtomicU64>,
    generation: u64,
}

impl Lease {
    /// Whether the node fenced itself since the job was handed out.
    #[inline]
    pub fn is_void(&self) -> bool {
        self.fence.load(Ordering::Acquire) != self.generation
    }
}

/// A job handed to this node's workers.
#[derive(Debug, Clone)]
pub struct ClusterJob {
    /// The core's job: id, graph, kind, epoch, payload, cancel token.
    pub job: Job,
    /// The node's fence when the job was handed out.
    pub lease: Lease,
}

impl ClusterJob {
    /// Whether the worker should stop: the core voided the task (a forced
    /// restart, a cancel, a timeout, a recovery), or the node fenced
    /// itself.
    #[inline]
    pub fn is_void(&self) -> bool {
        self.job.token.is_void() || self.lease.is_void()
    }
}

/// The receiver of this node's jobs; clone it for each worker.
pub type ClusterJobs = crossbeam_channel::Receiver<ClusterJob>;

/// What this node knows of itself that is not replicated: whether it may
/// hand jobs over now.
#[derive(Debug)]
pub struct Local {
    /// This node's id.
    pub me: NodeId,
    incarnation: AtomicU64,
    live: AtomicBool,
    fenced: AtomicBool,
    fence: Arc<AtomicU64>,
    tx: crossbeam_channel::Sender<ClusterJob>,
}

impl Local {
    /// This node's local state, not up, not fenced, and the receiver of
    /// its jobs.
    pub fn new(me: NodeId, incarnation: u64) -> (Arc<Local>, ClusterJobs) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let local = Local {
            me,
            incarnation: AtomicU64::new(incarnation),
            live: AtomicBool::new(false),
            fenced: AtomicBool::new(false),
            fence: Arc::new(AtomicU64::new(0)),
            tx,
        };
        (Arc::new(local), rx)
    }

    /// The incarnation this node announces in its next "node up".
    pub fn incarnation(&self) -> u64 {
        self.incarnation.load(Ordering::Acquire)
    }

    /// Whether this node's "node up" for its current incarnation was
    /// applied (and it was not declared lost since).
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// Whether this node fenced itself and has not come back up since.
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// Whether jobs applied now are handed to this node's workers.
    pub fn dispatching(&self) -> bool {
        self.is_live() && !self.is_fenced()
    }

    /// A new incarnation, later than the current one (at least `floor`),
    /// for the next "node up"; this node is not up until it is applied.
    pub fn renew_incarnation(&self, floor: u64) -> u64 {
        self.live.store(false, Ordering::Release);
        let cur = self.incarnation.load(Ordering::Acquire);
        let next = floor.max(cur.saturating_add(1));
        self.incarnation.store(next, Ordering::Release);
        next
    }

    /// The state machine applied a "node up" of this node.
    pub(crate) fn applied_up(&self, incarnation: u64) {
        self.live
            .store(incarnation == self.incarnation(), Ordering::Release);
    }

    /// The state machine applied something that ends this node's tenure
    /// (declared lost, removed from the membership, its state replaced by
    /// a snapshot).
    pub(crate) fn applied_down(&self) {
        self.live.store(false, Ordering::Release);
    }

    /// Fences the node: every lease given out goes void and no job is
    /// handed over until the node is up again.
    pub fn fence(&self) {
        self.fenced.store(true, Ordering::Release);
        self.live.store(false, Ordering::Release);
        self.fence.fetch_add(1, Ordering::AcqRel);
    }

    /// Lifts the fence (the node reached a quorum again); it still needs
    /// a new "node up" to dispatch.
    pub fn unfence(&self) {
        self.fenced.store(false, Ordering::Release);
    }

    /// Hands `job` to this node's workers.
    pub(crate) fn hand_over(&self, job: Job) {
        let lease = Lease {
            fence: self.fence.clone(),
            generation: self.fence.load(Ordering::Acquire),
        };
        // The node keeps no receiver of its own; with none alive the job
        // is simply not run, and recovery fails its task later.
        let _ = self.tx.send(ClusterJob { job, lease });
    }
}
