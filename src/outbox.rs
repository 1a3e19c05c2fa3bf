//! The job hand-off (`docs/CONTRACT.md`, section 7): how lifecycle jobs
//! reach the host's worker threads.
//!
//! The engine owns the sending side of an unbounded `crossbeam-channel`;
//! the host's workers share [`JobReceiver`]s. A job is sent while its
//! graph's lock is held, right after its transition committed, so jobs of
//! one graph arrive in commit order, and sending never blocks.
//!
//! The host MUST, for every [`Job`] it receives:
//!
//! 1. run it, or report it failed; a job nobody reports stays live until
//!    its deadline (if its kind has a timeout) or a forced restart;
//! 2. report on it with [`Engine::report`](crate::Engine::report) and the
//!    job's [`TaskRef`], which carries the epoch the job was issued in;
//! 3. treat a [`Error::StaleEpoch`](crate::Error::StaleEpoch) or
//!    [`Error::TaskTerminal`](crate::Error::TaskTerminal) answer as "this
//!    work is void": stop, undo what it must, and not report again.
//!
//! Workers SHOULD poll [`Job::token`] between units of work: it goes void
//! the moment the task is failed by a forced restart, cancelled, timed out
//! or removed, so the worker can stop without a round trip to the engine.

use std::time::Duration;

use crossbeam_channel::{RecvError, RecvTimeoutError, TryRecvError};

use crate::id::{Epoch, GraphKey, JobId};
use crate::sync::channel::{self, Receiver, Sender};
use crate::sync::{Arc, AtomicUsize, Ordering, RwLock};
use crate::task::{CancelToken, Payload, TaskKind};

/// The address of a task for a report: graph, id and the epoch it was
/// created in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskRef {
    /// The task's graph.
    pub key: GraphKey,
    /// The task's id.
    pub id: JobId,
    /// The epoch the task was created in.
    pub epoch: Epoch,
}

impl TaskRef {
    /// A reference from its parts (for a host that keeps them apart).
    pub fn new(key: GraphKey, id: JobId, epoch: Epoch) -> Self {
        Self { key, id, epoch }
    }
}

/// A unit of work for the host: a lifecycle job from the channel, or the
/// ticket of a host task from
/// [`Engine::register_task`](crate::Engine::register_task).
#[derive(Debug, Clone)]
pub struct Job {
    /// Where to report.
    pub task: TaskRef,
    /// What to do.
    pub kind: TaskKind,
    /// The host's request.
    pub payload: Payload,
    /// Goes void when the work is no longer wanted.
    pub token: CancelToken,
}

impl Job {
    /// The job's id.
    #[inline]
    pub fn id(&self) -> JobId {
        self.task.id
    }

    /// The job's graph.
    #[inline]
    pub fn key(&self) -> &GraphKey {
        &self.task.key
    }

    /// The epoch the job was issued in.
    #[inline]
    pub fn epoch(&self) -> Epoch {
        self.task.epoch
    }
}

/// The engine's side of the channel.
pub(crate) struct Outbox {
    /// `None` once the engine is shut down: dropping the sender closes the
    /// channel for the workers once it is drained.
    tx: RwLock<Option<Sender<Job>>>,
    // Kept so that sending never fails: a job committed just as the last
    // worker left waits here for the next `JobReceiver`.
    keep: Receiver<Job>,
    receivers: Arc<AtomicUsize>,
}

/// Why the outbox cannot take a job now.
pub(crate) enum Closed {
    /// [`Outbox::shutdown`] ran.
    ShutDown,
    /// Every host receiver was dropped.
    NoReceiver,
}

impl Outbox {
    pub(crate) fn new() -> (Self, JobReceiver) {
        let (tx, rx) = channel::unbounded();
        let receivers = Arc::new(AtomicUsize::new(0));
        let outbox = Outbox {
            tx: RwLock::new(Some(tx)),
            keep: rx,
            receivers,
        };
        let first = outbox.receiver();
        (outbox, first)
    }

    pub(crate) fn receiver(&self) -> JobReceiver {
        self.receivers.fetch_add(1, Ordering::AcqRel);
        JobReceiver {
            rx: self.keep.clone(),
            receivers: self.receivers.clone(),
        }
    }

    /// Holds the sending side open for one command: the caller checks, then
    /// applies, then sends through the lease. [`shutdown`](Self::shutdown)
    /// waits for leases out, so a committed job is never lost to it.
    pub(crate) fn lease(&self) -> Result<Lease<'_>, Closed> {
        let tx = self.tx.read();
        if tx.is_none() {
            return Err(Closed::ShutDown);
        }
        if self.receivers.load(Ordering::Acquire) == 0 {
            return Err(Closed::NoReceiver);
        }
        Ok(Lease(tx))
    }

    /// Sends clones of `jobs` (decided commands), unless the engine is shut
    /// down. Never blocks.
    pub(crate) fn send_all(&self, jobs: &[Job]) {
        if let Some(tx) = &*self.tx.read() {
            for job in jobs {
                let _ = tx.send(job.clone());
            }
        }
    }

    /// Drops the sending side: workers see the channel close once drained.
    pub(crate) fn shutdown(&self) {
        self.tx.write().take();
    }
}

/// The outbox, held open for one command.
pub(crate) struct Lease<'a>(crate::sync::RwLockReadGuard<'a, Option<Sender<Job>>>);

impl Lease<'_> {
    /// Hands a job over. Never blocks; cannot fail while the engine holds
    /// its own receiver.
    #[inline]
    pub(crate) fn send(&self, job: Job) {
        // The channel is unbounded and `keep` holds it open, so `send`
        // cannot fail.
        if let Some(tx) = &*self.0 {
            let _ = tx.send(job);
        }
    }
}

/// The workers' side of the job channel. Clone it, one per worker thread.
///
/// While at least one `JobReceiver` is alive, operations that emit jobs are
/// accepted; once all are dropped they fail with
/// [`Error::NoJobReceiver`](crate::Error::NoJobReceiver), changing nothing.
/// Jobs committed just before the last receiver went are kept, and a new
/// receiver from [`Engine::job_receiver`](crate::Engine::job_receiver)
/// gets them. After [`Engine::shutdown`](crate::Engine::shutdown), or when
/// every [`Engine`](crate::Engine) handle is dropped, receivers see the
/// channel close once it is drained: `recv` returns an error and the
/// worker's loop ends.
#[derive(Debug)]
pub struct JobReceiver {
    rx: Receiver<Job>,
    receivers: Arc<AtomicUsize>,
}

impl JobReceiver {
    /// Blocks until a job arrives, or returns an error once the engine is
    /// gone and the channel drained.
    pub fn recv(&self) -> Result<Job, RecvError> {
        self.rx.recv()
    }

    /// A job if one is waiting.
    pub fn try_recv(&self) -> Result<Job, TryRecvError> {
        self.rx.try_recv()
    }

    /// Waits at most `timeout` for a job.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Job, RecvTimeoutError> {
        self.rx.recv_timeout(timeout)
    }

    /// Jobs waiting in the channel.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether no job is waiting.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// The underlying receiver, for `crossbeam_channel::select!`.
    #[cfg(not(loom))]
    pub fn as_crossbeam(&self) -> &Receiver<Job> {
        &self.rx
    }
}

impl Clone for JobReceiver {
    fn clone(&self) -> Self {
        self.receivers.fetch_add(1, Ordering::AcqRel);
        Self {
            rx: self.rx.clone(),
            receivers: self.receivers.clone(),
        }
    }
}

impl Drop for JobReceiver {
    fn drop(&mut self) {
        self.receivers.fetch_sub(1, Ordering::AcqRel);
    }
}
