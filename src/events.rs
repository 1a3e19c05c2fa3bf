//! Events (`docs/CONTRACT.md`, section 8): every committed change,
//! numbered, to any number of subscribers.
//!
//! The events of one commit travel together: a subscriber gets all of
//! them or none. Each subscriber may have up to [`Config::event_buffer`]
//! events waiting; a commit is offered without waiting while the graph's
//! lock is held, so the events of one graph reach every subscriber in
//! commit order, with increasing sequence numbers. A commit that would
//! take a subscriber past its buffer **cuts it off**: it gets none of that
//! commit's events and no later ones, it can still read what it had, and
//! then [`Subscription::recv`] returns [`EventError::Lagged`] with the
//! sequence number of the first event it missed. It should resubscribe
//! and re-read the state it cares about (a snapshot or a query). A
//! subscriber with nothing waiting takes any commit whole, even one larger
//! than its buffer (a forced restart of many tasks), so a subscriber that
//! keeps up is never cut off. A dropped [`Subscription`] is forgotten at
//! the next event. So a slow or dead subscriber never blocks the core, and
//! memory stays bounded by `subscribers × (event_buffer + largest commit)`
//! events, the commit's events shared by every subscriber.
//!
//! [`Config::event_buffer`]: crate::Config::event_buffer

use std::time::Duration;

use crate::id::{Epoch, GraphKey, JobId};
use crate::state::GraphState;
use crate::sync::channel::{self, Receiver, Sender};
use crate::sync::{Arc, AtomicU64, AtomicUsize, Mutex, Ordering, RwLock};
use crate::task::{FailReason, TaskKind, TaskStatus};
use crate::time::Timestamp;

/// A committed change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Unique and increasing: per graph, in commit order. Events of
    /// different graphs committed at the same moment may arrive in either
    /// order.
    pub seq: u64,
    /// The time of the command that made the change.
    pub at: Timestamp,
    /// The graph changed.
    pub key: GraphKey,
    /// What changed.
    pub change: Change,
}

/// What an [`Event`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The graph was created, Stopped.
    GraphCreated,
    /// The graph was removed.
    GraphRemoved,
    /// The graph's state (and perhaps its epoch) changed.
    State {
        /// The state before.
        from: GraphState,
        /// The state after.
        to: GraphState,
        /// The epoch after.
        epoch: Epoch,
    },
    /// A task was created or changed status or progress.
    Task {
        /// Its id.
        job: JobId,
        /// Its kind.
        kind: TaskKind,
        /// Its status after the change.
        status: TaskStatus,
        /// Its progress after the change.
        progress: u8,
        /// Why it failed, if it did.
        reason: Option<FailReason>,
    },
    /// Terminal tasks were evicted (retention by count or age).
    Evicted {
        /// How many.
        count: usize,
    },
}

/// Why [`Subscription::recv`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The subscriber fell behind and was cut off; `missed` is the sequence
    /// number of the first event it did not get.
    #[error("subscriber lagged and was cut off at event {missed}")]
    Lagged {
        /// The first missed sequence number.
        missed: u64,
    },
    /// No event arrived in time (or none is waiting, for `try_recv`).
    #[error("no event")]
    Empty,
    /// The engine was dropped and every event read.
    #[error("the engine is gone")]
    Closed,
}

const NOT_CUT: u64 = u64::MAX;

/// The events of one commit, shared by every subscriber.
type Batch = Arc<[Event]>;

/// What a subscriber and the bus share.
#[derive(Debug)]
struct Shared {
    /// The sequence number of the first event it missed, or `NOT_CUT`.
    cut_at: AtomicU64,
    /// Events sent and not yet taken off the channel.
    queued: AtomicUsize,
}

struct Subscriber {
    tx: Sender<Batch>,
    shared: Arc<Shared>,
}

/// A stream of events. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    rx: Receiver<Batch>,
    shared: Arc<Shared>,
    /// The commit being read and how far.
    current: Mutex<(Option<Batch>, usize)>,
}

impl Subscription {
    fn map_empty(&self, closed: bool) -> EventError {
        let cut = self.shared.cut_at.load(Ordering::Acquire);
        if cut != NOT_CUT {
            EventError::Lagged { missed: cut }
        } else if closed {
            EventError::Closed
        } else {
            EventError::Empty
        }
    }

    fn is_cut(&self) -> bool {
        self.shared.cut_at.load(Ordering::Acquire) != NOT_CUT
    }

    /// The next event of the commit being read, or of `next` (a commit
    /// just taken off the channel).
    fn next_event(
        &self,
        next: impl FnOnce() -> Result<Batch, EventError>,
    ) -> Result<Event, EventError> {
        let mut cur = self.current.lock();
        if let (Some(batch), at) = &mut *cur
            && let Some(e) = batch.get(*at)
        {
            *at += 1;
            return Ok(e.clone());
        }
        let batch = next()?;
        self.shared.queued.fetch_sub(batch.len(), Ordering::AcqRel);
        let first = batch.first().cloned();
        *cur = (Some(batch), 1);
        first.ok_or(EventError::Empty)
    }

    /// Waits for the next event.
    ///
    /// # Errors
    ///
    /// [`EventError::Lagged`] once a cut-off subscriber has read its
    /// buffer; [`EventError::Closed`] when the engine is gone.
    pub fn recv(&self) -> Result<Event, EventError> {
        self.next_event(|| match self.rx.try_recv() {
            Ok(b) => Ok(b),
            Err(crossbeam_channel::TryRecvError::Disconnected) => Err(self.map_empty(true)),
            Err(crossbeam_channel::TryRecvError::Empty) if self.is_cut() => {
                Err(self.map_empty(false))
            }
            Err(crossbeam_channel::TryRecvError::Empty) => {
                self.rx.recv().map_err(|_| self.map_empty(true))
            }
        })
    }

    /// The next event if one is waiting.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv), and [`EventError::Empty`] if none waits.
    pub fn try_recv(&self) -> Result<Event, EventError> {
        self.next_event(|| {
            self.rx
                .try_recv()
                .map_err(|e| self.map_empty(e.is_disconnected()))
        })
    }

    /// Waits at most `timeout` for the next event.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv), and [`EventError::Empty`] on time-out.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Event, EventError> {
        self.next_event(|| match self.rx.try_recv() {
            Ok(b) => Ok(b),
            Err(e) if e.is_disconnected() => Err(self.map_empty(true)),
            Err(_) if self.is_cut() => Err(self.map_empty(false)),
            Err(_) => self
                .rx
                .recv_timeout(timeout)
                .map_err(|e| self.map_empty(e.is_disconnected())),
        })
    }

    /// Every event waiting now, without waiting.
    pub fn drain(&self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Ok(e) = self.try_recv() {
            out.push(e);
        }
        out
    }

    /// Whether this subscriber was cut off for lagging.
    pub fn is_lagged(&self) -> bool {
        self.is_cut()
    }
}

/// The subscriber list and the sequence counter.
pub(crate) struct EventBus {
    subs: RwLock<Vec<Subscriber>>,
    count: AtomicUsize,
    seq: AtomicU64,
    buffer: usize,
}

impl EventBus {
    pub(crate) fn new(buffer: usize) -> Self {
        Self {
            subs: RwLock::new(Vec::new()),
            count: AtomicUsize::new(0),
            seq: AtomicU64::new(0),
            buffer: buffer.max(1),
        }
    }

    /// Whether anyone listens; when not, changes are not even recorded.
    #[inline]
    pub(crate) fn active(&self) -> bool {
        self.count.load(Ordering::Acquire) > 0
    }

    pub(crate) fn subscribe(&self) -> Subscription {
        let (tx, rx) = channel::unbounded();
        let shared = Arc::new(Shared {
            cut_at: AtomicU64::new(NOT_CUT),
            queued: AtomicUsize::new(0),
        });
        let mut subs = self.subs.write();
        subs.push(Subscriber {
            tx,
            shared: shared.clone(),
        });
        self.count.store(subs.len(), Ordering::Release);
        Subscription {
            rx,
            shared,
            current: Mutex::new((None, 0)),
        }
    }

    /// Offers the changes of one commit to every subscriber, whole. Called
    /// with the graph's lock held; never waits on a subscriber. Returns the
    /// sequence number of the first change.
    pub(crate) fn publish(&self, key: &GraphKey, at: Timestamp, changes: &mut Vec<Change>) -> u64 {
        if changes.is_empty() {
            return self.seq.load(Ordering::Acquire);
        }
        let n = changes.len();
        let first = self.seq.fetch_add(n as u64, Ordering::AcqRel);
        let batch: Batch = changes
            .drain(..)
            .enumerate()
            .map(|(i, change)| Event {
                seq: first + i as u64,
                at,
                key: key.clone(),
                change,
            })
            .collect();
        let mut dead = false;
        {
            let subs = self.subs.read();
            for s in subs.iter() {
                if s.shared.cut_at.load(Ordering::Relaxed) != NOT_CUT {
                    continue;
                }
                let before = s.shared.queued.fetch_add(n, Ordering::AcqRel);
                let fits = before == 0 || before + n <= self.buffer;
                if !fits || s.tx.try_send(batch.clone()).is_err() {
                    s.shared.queued.fetch_sub(n, Ordering::AcqRel);
                    s.shared.cut_at.store(first, Ordering::Release);
                    dead = true;
                }
            }
        }
        if dead {
            let mut subs = self.subs.write();
            // Dropping a cut-off subscriber's sender lets its receiver see
            // the end of the stream once drained.
            subs.retain(|s| s.shared.cut_at.load(Ordering::Relaxed) == NOT_CUT);
            self.count.store(subs.len(), Ordering::Release);
        }
        first
    }
}
