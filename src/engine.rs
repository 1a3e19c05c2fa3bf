//! The engine: the registry, the apply step, the job outbox and the event
//! bus put together behind one handle.

use crate::command::{Command, Op, Outcome, Restart};
use crate::config::Config;
use crate::error::Error;
use crate::events::{Change, Event, EventBus, Subscription};
use crate::graph::{Effects, GraphData};
use crate::id::{Epoch, GraphKey, JobId, ProjectId};
use crate::outbox::{Closed, Job, JobReceiver, Lease, Outbox, TaskRef};
use crate::query::{GraphInfo, GraphSnapshot, Page, Snapshot, TaskQuery, paginate};
use crate::registry::{GraphCell, InsertError, Registry};
use crate::state::{GraphState, Operation};
use crate::sync::Arc;
use crate::task::{Payload, Report, TaskInfo, TaskSpec};
use crate::time::{Clock, IdSource, SystemClock, Timestamp, UuidV7Ids};
use crate::wal::Journal;

/// Builds an [`Engine`]: configuration, clock and id source.
///
/// ```
/// use graph_lifecycle::{Config, Engine, ManualClock, SequentialIds, Timestamp};
/// use std::sync::Arc;
/// let clock = Arc::new(ManualClock::new(Timestamp::from_millis(0)));
/// let (engine, jobs) = Engine::builder()
///     .config(Config::default().max_graphs(100))
///     .clock(clock.clone())
///     .ids(SequentialIds::new(1))
///     .build();
/// # let _ = (engine, jobs);
/// ```
pub struct EngineBuilder {
    config: Config,
    clock: Box<dyn Clock>,
    ids: Box<dyn IdSource>,
}

impl EngineBuilder {
    /// Sets the configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Sets the clock (default: [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// Sets the id source (default: [`UuidV7Ids`]).
    pub fn ids(mut self, ids: impl IdSource) -> Self {
        self.ids = Box::new(ids);
        self
    }

    /// The engine, and the first receiver of its jobs: clone it for each
    /// worker thread.
    pub fn build(self) -> (Engine, JobReceiver) {
        let (outbox, jobs) = Outbox::new();
        let shared = Shared {
            registry: Registry::new(self.config.shards),
            events: EventBus::new(self.config.event_buffer),
            config: self.config,
            clock: self.clock,
            ids: self.ids,
            outbox,
            journal: None,
        };
        (Engine(Arc::new(shared)), jobs)
    }
}

struct Shared {
    config: Config,
    clock: Box<dyn Clock>,
    ids: Box<dyn IdSource>,
    registry: Registry,
    outbox: Outbox,
    events: EventBus,
    /// The durable journal, if the engine was opened with one.
    journal: Option<Journal>,
}

/// The lifecycle core: graphs, their states and their task tables.
///
/// Cloning an `Engine` is cheap and gives another handle to the same
/// engine; it is `Send + Sync`. Every method is synchronous and returns
/// quickly: the engine never sleeps, never does I/O and never waits on the
/// host. Jobs go to the [`JobReceiver`] returned by
/// [`EngineBuilder::build`].
///
/// ```
/// use graph_lifecycle::*;
/// let (engine, jobs) = Engine::builder().build();
/// let key = GraphKey::parse("tenant", "movies").unwrap();
/// engine.create_graph(&key).unwrap();
/// let start = engine.start(&key).unwrap();
/// let job = jobs.try_recv().unwrap();
/// assert_eq!(job.id(), start);
/// engine.report(&job.task, Report::Succeeded).unwrap();
/// assert_eq!(engine.state(&key).unwrap(), GraphState::Running);
/// ```
#[derive(Clone)]
pub struct Engine(Arc<Shared>);

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("graphs", &self.0.registry.len())
            .field("config", &self.0.config)
            .finish_non_exhaustive()
    }
}

/// A cheap handle to one graph, for the host's query path: reading its
/// state takes one atomic load and no lock.
///
/// The handle stays valid after the graph is removed; it then reports
/// `None` (and a graph created again under the same key is a new graph
/// that this handle does not see).
#[derive(Clone)]
pub struct GraphHandle {
    key: GraphKey,
    cell: Arc<GraphCell>,
}

impl GraphHandle {
    /// The graph's key.
    #[inline]
    pub fn key(&self) -> &GraphKey {
        &self.key
    }

    /// The graph's state, `None` once it is removed.
    #[inline]
    pub fn state(&self) -> Option<GraphState> {
        self.cell.status().map(|(s, _)| s)
    }

    /// State and epoch from one load, so they belong together.
    #[inline]
    pub fn status(&self) -> Option<(GraphState, Epoch)> {
        self.cell.status()
    }

    /// Whether the host may answer queries on the graph now.
    #[inline]
    pub fn serves_queries(&self) -> bool {
        self.state().is_some_and(GraphState::serves_queries)
    }
}

impl std::fmt::Debug for GraphHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphHandle")
            .field("key", &self.key)
            .field("status", &self.status())
            .finish()
    }
}

impl Engine {
    /// A builder with the default configuration, the system clock and
    /// UUIDv7 ids.
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            config: Config::default(),
            clock: Box::new(SystemClock),
            ids: Box::new(UuidV7Ids),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// The engine clock's current time.
    pub fn now(&self) -> Timestamp {
        self.0.clock.now()
    }

    /// Another receiver of the job channel: for a worker pool started
    /// after every earlier receiver was dropped.
    pub fn job_receiver(&self) -> JobReceiver {
        self.0.outbox.receiver()
    }

    /// Shuts the engine down for work: from now on operations that would
    /// hand over a job fail with [`Error::ShutDown`], and once the workers
    /// have taken the jobs already committed, their
    /// [`JobReceiver::recv`] returns an error so their loops end. Waits
    /// only for commands in flight. Reports, cancels and queries keep
    /// working, so workers can finish and report what they hold.
    ///
    /// ```
    /// # use graph_lifecycle::*;
    /// let (engine, jobs) = Engine::builder().build();
    /// let key = GraphKey::parse("p", "g").unwrap();
    /// engine.create_graph(&key).unwrap();
    /// engine.start(&key).unwrap();
    /// engine.shutdown();
    /// assert_eq!(engine.stop(&key).unwrap_err().code(), "SHUT_DOWN");
    /// assert!(jobs.recv().is_ok()); // the start job committed before
    /// assert!(jobs.recv().is_err()); // then the channel is closed
    /// ```
    pub fn shutdown(&self) {
        self.0.outbox.shutdown();
    }

    /// Subscribes to events (see [`events`](crate::events) for what
    /// happens to a subscriber that falls behind).
    pub fn subscribe(&self) -> Subscription {
        self.0.events.subscribe()
    }

    // ---- the command seam -------------------------------------------------

    /// Applies a command: the deterministic step every change goes
    /// through. Replaying the same commands in the same order on a new
    /// engine (same configuration) gives the same state.
    ///
    /// # Errors
    ///
    /// Whatever the operation refuses; on error nothing changed (but for
    /// [`Error::Journal`]: see its documentation).
    pub fn apply(&self, cmd: Command) -> Result<Outcome, Error> {
        self.apply_at(&cmd.key, cmd.at, &cmd.op).map(|(o, _)| o)
    }

    fn apply_at(
        &self,
        key: &GraphKey,
        at: Timestamp,
        op: &Op,
    ) -> Result<(Outcome, Option<Job>), Error> {
        self.apply_logged(key, at, op, None)
    }

    /// [`apply_at`](Self::apply_at), also copying the command's events into
    /// `log` (for a recovery report). With a journal: the command is
    /// encoded and the commit gate taken before the graph's lock; its
    /// record is buffered under that lock once it committed; and the call
    /// waits for the record to be durable after the lock is released.
    fn apply_logged(
        &self,
        key: &GraphKey,
        at: Timestamp,
        op: &Op,
        log: Option<&mut Vec<Event>>,
    ) -> Result<(Outcome, Option<Job>), Error> {
        match op {
            Op::Create => return self.create_at(key, at).map(|()| (Outcome::Created, None)),
            Op::Remove => return self.remove_at(key, at).map(|o| (o, None)),
            _ => {}
        }
        let mut wal = self
            .0
            .journal
            .as_ref()
            .map(|j| j.prepare(key, at, op))
            .transpose()?;
        let done = self.commit(key, at, op, log, || {
            if let Some(w) = wal.as_mut() {
                w.append();
            }
        });
        if let Some(w) = wal {
            w.finish(self)?;
        }
        done
    }

    /// The apply step under the graph's lock; `committed` runs, still
    /// under it, once the command changed the graph.
    fn commit(
        &self,
        key: &GraphKey,
        at: Timestamp,
        op: &Op,
        log: Option<&mut Vec<Event>>,
        committed: impl FnOnce(),
    ) -> Result<(Outcome, Option<Job>), Error> {
        let sh = &*self.0;
        let cell = sh
            .registry
            .get(key)
            .ok_or_else(|| Error::GraphNotFound { key: key.clone() })?;
        let mut slot = cell.slot.lock();
        let slot = &mut *slot;
        if slot.data.removed {
            return Err(Error::GraphNotFound { key: key.clone() });
        }
        // Job-emitting commands hold the outbox open from the check to the
        // send, so a shutdown can never strand a committed job.
        let lease = if op.emits_job() {
            let refused = |closed| {
                let op = op.operation().unwrap_or(Operation::Start);
                let key = key.clone();
                match closed {
                    Closed::ShutDown => Error::ShutDown { key, op },
                    Closed::NoReceiver => Error::NoJobReceiver { key, op },
                }
            };
            Some(sh.outbox.lease().map_err(refused)?)
        } else {
            None
        };
        slot.fx.record = sh.events.active() || log.is_some();
        let outcome = slot.data.apply(&sh.config, at, op, &mut slot.fx);
        let ticket = slot.fx.ticket.take();
        if outcome.is_ok() {
            committed();
            cell.publish(&slot.data, &sh.config);
            let changes = log.as_ref().map(|_| slot.fx.changes.clone());
            let first = self.dispatch(key, at, &mut slot.fx, lease.as_ref());
            if let (Some(log), Some(changes)) = (log, changes) {
                log.extend(changes.into_iter().zip(first..).map(|(change, seq)| Event {
                    seq,
                    at,
                    key: key.clone(),
                    change,
                }));
            }
        } else {
            debug_assert!(
                slot.fx.jobs.is_empty() && slot.fx.void.is_empty() && slot.fx.changes.is_empty()
            );
        }
        outcome.map(|o| (o, ticket))
    }

    /// Hands a committed command's effects over, in the order readers rely
    /// on: the state word is already published; tokens go void, then jobs
    /// are sent, then events offered. Called with the graph's lock held.
    /// Returns the sequence number of the first event.
    fn dispatch(
        &self,
        key: &GraphKey,
        at: Timestamp,
        fx: &mut Effects,
        lease: Option<&Lease<'_>>,
    ) -> u64 {
        const KEEP: usize = 1024;
        for token in fx.void.drain(..) {
            token.fire();
        }
        // Only job-emitting commands produce jobs, and they hold a lease.
        if let Some(lease) = lease {
            for job in fx.jobs.drain(..) {
                lease.send(job);
            }
        }
        debug_assert!(
            fx.jobs.is_empty(),
            "a command without a lease emitted a job"
        );
        let first = self.0.events.publish(key, at, &mut fx.changes);
        // After a big forced restart, give the memory back.
        if fx.void.capacity() > KEEP {
            fx.void = Vec::new();
        }
        if fx.changes.capacity() > KEEP {
            fx.changes = Vec::new();
        }
        first
    }

    fn create_at(&self, key: &GraphKey, at: Timestamp) -> Result<(), Error> {
        let sh = &*self.0;
        let mut wal = sh
            .journal
            .as_ref()
            .map(|j| j.prepare(key, at, &Op::Create))
            .transpose()?;
        let cell = Arc::new(GraphCell::new(GraphData::new(key.clone(), at)));
        let announce = || {
            if let Some(w) = wal.as_mut() {
                w.append();
            }
            if sh.events.active() {
                sh.events.publish(key, at, &mut vec![Change::GraphCreated]);
            }
        };
        let done = sh
            .registry
            .insert(key, sh.config.max_graphs, cell, announce)
            .map_err(|e| insert_error(key, e, &sh.config));
        if let Some(w) = wal {
            w.finish(self)?;
        }
        done
    }

    fn remove_at(&self, key: &GraphKey, at: Timestamp) -> Result<Outcome, Error> {
        let sh = &*self.0;
        let mut wal = sh
            .journal
            .as_ref()
            .map(|j| j.prepare(key, at, &Op::Remove))
            .transpose()?;
        let missing = Error::GraphNotFound { key: key.clone() };
        let done = sh.registry.remove_if(key, missing, |cell| {
            let mut slot = cell.slot.lock();
            let slot = &mut *slot;
            slot.fx.record = sh.events.active();
            let outcome = slot.data.apply(&sh.config, at, &Op::Remove, &mut slot.fx)?;
            if let Some(w) = wal.as_mut() {
                w.append();
            }
            cell.publish(&slot.data, &sh.config);
            self.dispatch(key, at, &mut slot.fx, None);
            Ok(outcome)
        });
        if let Some(w) = wal {
            w.finish(self)?;
        }
        done
    }

    /// Draws the time and a job id, and applies `op(job)`.
    fn run(
        &self,
        key: &GraphKey,
        op: impl FnOnce(JobId) -> Op,
    ) -> Result<(Outcome, Option<Job>), Error> {
        let at = self.0.clock.now();
        let job = self.0.ids.next_id(at);
        self.apply_at(key, at, &op(job))
    }

    fn run_job(&self, key: &GraphKey, op: impl FnOnce(JobId) -> Op) -> Result<JobId, Error> {
        match self.run(key, op)?.0 {
            Outcome::Job { job, .. } => Ok(job),
            // Lifecycle ops yield `Outcome::Job` only.
            other => unreachable_outcome(other),
        }
    }

    // ---- graphs -----------------------------------------------------------

    /// Creates a graph, Stopped, and returns its handle.
    ///
    /// # Errors
    ///
    /// [`Error::GraphExists`], [`Error::TooManyGraphs`].
    pub fn create_graph(&self, key: &GraphKey) -> Result<GraphHandle, Error> {
        self.create_at(key, self.0.clock.now())?;
        self.graph(key)
    }

    /// Removes a Stopped or Abnormal graph with its task table. Live host
    /// tasks it still had are dropped and their tokens go void.
    ///
    /// # Errors
    ///
    /// [`Error::GraphNotFound`], [`Error::TransitionRefused`].
    pub fn remove_graph(&self, key: &GraphKey) -> Result<(), Error> {
        self.remove_at(key, self.0.clock.now()).map(drop)
    }

    /// A handle to the graph, for lock-free state reads.
    ///
    /// # Errors
    ///
    /// [`Error::GraphNotFound`].
    pub fn graph(&self, key: &GraphKey) -> Result<GraphHandle, Error> {
        let cell = self
            .0
            .registry
            .get(key)
            .ok_or_else(|| Error::GraphNotFound { key: key.clone() })?;
        Ok(GraphHandle {
            key: key.clone(),
            cell,
        })
    }

    /// The graph's state (a registry lookup and one atomic load; prefer a
    /// [`GraphHandle`] on a hot path).
    ///
    /// # Errors
    ///
    /// [`Error::GraphNotFound`].
    #[inline]
    pub fn state(&self, key: &GraphKey) -> Result<GraphState, Error> {
        self.0
            .registry
            .with(key, GraphCell::status)
            .flatten()
            .map(|(s, _)| s)
            .ok_or_else(|| Error::GraphNotFound { key: key.clone() })
    }

    /// The graph's summary.
    ///
    /// # Errors
    ///
    /// [`Error::GraphNotFound`].
    pub fn graph_info(&self, key: &GraphKey) -> Result<GraphInfo, Error> {
        let cell = self
            .0
            .registry
            .get(key)
            .ok_or_else(|| Error::GraphNotFound { key: key.clone() })?;
        let slot = cell.slot.lock();
        if slot.data.removed {
            return Err(Error::GraphNotFound { key: key.clone() });
        }
        Ok(info(&slot.data))
    }

    /// A project's graphs in id order: `offset` skipped, at most `limit`.
    pub fn graphs(&self, project: &ProjectId, offset: usize, limit: usize) -> Page<GraphInfo> {
        let (total, cells) = self.0.registry.project_graphs(project, offset, limit);
        let items = cells
            .iter()
            .filter_map(|(_, cell)| {
                let slot = cell.slot.lock();
                (!slot.data.removed).then(|| info(&slot.data))
            })
            .collect();
        Page { total, items }
    }

    /// How many graphs the engine holds.
    pub fn graph_count(&self) -> usize {
        self.0.registry.len()
    }

    // ---- lifecycle operations (SPEC section 4) ------------------------------

    /// Starts a Stopped graph: it goes Starting and a Start job is sent.
    ///
    /// # Errors
    ///
    /// [`Error::GraphNotFound`], [`Error::TransitionRefused`],
    /// [`Error::NoJobReceiver`], [`Error::TooManyTasks`].
    pub fn start(&self, key: &GraphKey) -> Result<JobId, Error> {
        self.start_with(key, Payload::EMPTY)
    }

    /// [`start`](Self::start) with a request for the host (a backup to
    /// start from).
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start), and [`Error::InvalidArgument`] for an
    /// oversized payload.
    pub fn start_with(&self, key: &GraphKey, payload: impl Into<Payload>) -> Result<JobId, Error> {
        let payload = payload.into();
        self.run_job(key, |job| Op::Start { job, payload })
    }

    /// Stops a Running or Abnormal graph: it goes Stopping and a Stop job
    /// is sent.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn stop(&self, key: &GraphKey) -> Result<JobId, Error> {
        self.run_job(key, |job| Op::Stop { job })
    }

    /// Imports into a Running graph: it goes Importing (and keeps serving
    /// queries) and an Import job with `payload` is sent.
    ///
    /// # Errors
    ///
    /// As [`start_with`](Self::start_with).
    pub fn import(&self, key: &GraphKey, payload: impl Into<Payload>) -> Result<JobId, Error> {
        let payload = payload.into();
        self.run_job(key, |job| Op::Import { job, payload })
    }

    /// Exports a Running graph: it goes Exporting and an Export job is sent.
    ///
    /// # Errors
    ///
    /// As [`start_with`](Self::start_with).
    pub fn export(&self, key: &GraphKey, payload: impl Into<Payload>) -> Result<JobId, Error> {
        let payload = payload.into();
        self.run_job(key, |job| Op::Export { job, payload })
    }

    /// Clears a Running graph's data (and schema, if `clear_metadata`): it
    /// goes Clearing and a Clear job is sent.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn clear(&self, key: &GraphKey, clear_metadata: bool) -> Result<JobId, Error> {
        self.run_job(key, |job| Op::Clear {
            job,
            clear_metadata,
        })
    }

    /// The forced restart (SPEC section 6), allowed in every state. In one
    /// step under the graph's lock: every live task fails as
    /// "force-restarted by job X" (a live restart as "superseded by job
    /// X") and its token goes void; the epoch grows by one; the graph
    /// enters Restarting; a Restart task is created and its job sent.
    /// Nothing of it is visible before all of it is.
    ///
    /// A retry carrying the `idempotency_key` of the graph's live restart
    /// returns that restart's job with `replayed: true` and changes
    /// nothing.
    ///
    /// # Errors
    ///
    /// [`Error::GraphNotFound`], [`Error::NoJobReceiver`],
    /// [`Error::InvalidArgument`] for an idempotency key over 256 bytes.
    pub fn force_restart(
        &self,
        key: &GraphKey,
        idempotency_key: Option<&str>,
    ) -> Result<Restart, Error> {
        let idempotency_key = idempotency_key.map(str::to_owned);
        match self
            .run(key, |job| Op::ForceRestart {
                job,
                idempotency_key,
            })?
            .0
        {
            Outcome::Restarted(r) => Ok(r),
            other => unreachable_outcome(other),
        }
    }

    // ---- tasks (SPEC section 5) -------------------------------------------

    /// Registers a host task on a graph that serves queries (Running,
    /// Importing, Exporting). The engine does not send it anywhere: the
    /// returned [`Job`] is the host's ticket for reports and its token.
    ///
    /// # Errors
    ///
    /// [`Error::GraphNotFound`], [`Error::TransitionRefused`],
    /// [`Error::TooManyTasks`], [`Error::InvalidArgument`].
    pub fn register_task(&self, key: &GraphKey, spec: TaskSpec) -> Result<Job, Error> {
        match self.run(key, |job| Op::RegisterTask { job, spec })? {
            (_, Some(ticket)) => Ok(ticket),
            (other, None) => unreachable_outcome(other),
        }
    }

    /// A host report about a job or host task.
    ///
    /// # Errors
    ///
    /// [`Error::TaskNotFound`]; [`Error::StaleEpoch`] for a task voided by a
    /// forced restart; [`Error::TaskTerminal`] for one that ended;
    /// [`Error::ReportRefused`] for a second `Started`;
    /// [`Error::BadProgress`]; [`Error::InvalidArgument`] for an oversized
    /// message; [`Error::GraphNotFound`].
    pub fn report(&self, task: &TaskRef, report: Report) -> Result<(), Error> {
        let op = Op::Report {
            job: task.id,
            epoch: task.epoch,
            report,
        };
        self.apply_at(&task.key, self.0.clock.now(), &op).map(drop)
    }

    /// Cancels a stoppable live task; a lifecycle job's graph goes where
    /// the outcome table says.
    ///
    /// # Errors
    ///
    /// [`Error::TaskNotFound`], [`Error::TaskTerminal`],
    /// [`Error::StaleEpoch`], [`Error::NotStoppable`],
    /// [`Error::GraphNotFound`].
    pub fn cancel(&self, key: &GraphKey, job: JobId) -> Result<(), Error> {
        self.apply_at(key, self.0.clock.now(), &Op::Cancel { job })
            .map(drop)
    }

    /// One task of a graph.
    ///
    /// # Errors
    ///
    /// [`Error::GraphNotFound`], [`Error::TaskNotFound`] (also for a task
    /// evicted by retention).
    pub fn task(&self, key: &GraphKey, job: JobId) -> Result<TaskInfo, Error> {
        let cell = self
            .0
            .registry
            .get(key)
            .ok_or_else(|| Error::GraphNotFound { key: key.clone() })?;
        let slot = cell.slot.lock();
        if slot.data.removed {
            return Err(Error::GraphNotFound { key: key.clone() });
        }
        slot.data
            .task(job)
            .map(|t| t.info(key))
            .ok_or_else(|| Error::TaskNotFound {
                key: key.clone(),
                job,
            })
    }

    /// A graph's tasks matching `q`, newest first (by creation time, then
    /// creation order). `total` counts every match.
    ///
    /// # Errors
    ///
    /// [`Error::GraphNotFound`].
    pub fn tasks(&self, key: &GraphKey, q: &TaskQuery) -> Result<Page<TaskInfo>, Error> {
        let cell = self
            .0
            .registry
            .get(key)
            .ok_or_else(|| Error::GraphNotFound { key: key.clone() })?;
        let slot = cell.slot.lock();
        if slot.data.removed {
            return Err(Error::GraphNotFound { key: key.clone() });
        }
        let mut hits: Vec<_> = slot
            .data
            .tasks()
            .filter(|t| q.matches(t.status, t.created_at))
            .collect();
        hits.sort_unstable_by_key(|t| std::cmp::Reverse((t.created_at, t.seq)));
        let page = paginate(hits, q.offset, q.limit);
        Ok(Page {
            total: page.total,
            items: page.items.into_iter().map(|t| t.info(key)).collect(),
        })
    }

    /// A project's tasks over all its graphs matching `q`, newest first (by
    /// creation time, then graph key, then creation order).
    pub fn project_tasks(&self, project: &ProjectId, q: &TaskQuery) -> Page<TaskInfo> {
        let (_, cells) = self.0.registry.project_graphs(project, 0, usize::MAX);
        let mut hits = Vec::new();
        for (key, cell) in &cells {
            let slot = cell.slot.lock();
            if slot.data.removed {
                continue;
            }
            hits.extend(
                slot.data
                    .tasks()
                    .filter(|t| q.matches(t.status, t.created_at))
                    .map(|t| (t.created_at, t.seq, t.info(key))),
            );
        }
        hits.sort_by(|a, b| (b.0, &a.2.key, b.1).cmp(&(a.0, &b.2.key, a.1)));
        let page = paginate(hits, q.offset, q.limit);
        Page {
            total: page.total,
            items: page.items.into_iter().map(|(_, _, t)| t).collect(),
        }
    }

    // ---- deadlines and retention --------------------------------------------

    /// The earliest time at which [`expire`](Self::expire) would change
    /// something: a job's deadline or a terminal task's retention age.
    /// The host sleeps until then (or until new work arrives) and calls
    /// `expire`. Reads one atomic per graph, no graph lock.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let mut min: Option<Timestamp> = None;
        self.0.registry.for_each(|cell| {
            if let Some(d) = cell.deadline() {
                min = Some(min.map_or(d, |m| m.min(d)));
            }
        });
        min
    }

    /// Fails every job and task whose deadline is at or before `now` as
    /// timed out (their graphs go where the outcome table says) and evicts
    /// terminal tasks past their retention age. Returns how many tasks
    /// timed out and how many were evicted.
    pub fn expire(&self, now: Timestamp) -> (usize, usize) {
        let mut due = Vec::new();
        self.0.registry.for_each(|cell| {
            if cell.deadline().is_some_and(|d| d <= now) {
                due.push(cell.clone());
            }
        });
        let (mut timed_out, mut evicted) = (0, 0);
        for cell in due {
            let key = cell.slot.lock().data.key.clone();
            if let Ok((
                Outcome::Expired {
                    timed_out: t,
                    evicted: e,
                },
                _,
            )) = self.apply_at(&key, now, &Op::Expire)
            {
                timed_out += t;
                evicted += e;
            }
        }
        (timed_out, evicted)
    }

    // ---- whole-engine views -------------------------------------------------

    /// Every graph with every task, in key order; for tests, debugging and
    /// comparing replicas.
    pub fn snapshot(&self) -> Snapshot {
        let graphs = self
            .0
            .registry
            .all()
            .into_iter()
            .filter_map(|(key, cell)| {
                let slot = cell.slot.lock();
                let d = &slot.data;
                if d.removed {
                    return None;
                }
                let mut tasks: Vec<_> = d.tasks().collect();
                tasks.sort_unstable_by_key(|t| t.seq);
                Some(GraphSnapshot {
                    info: info(d),
                    restart_key: d.restart_key.as_ref().map(|(_, k)| k.clone()),
                    tasks: tasks.into_iter().map(|t| t.info(&key)).collect(),
                })
            })
            .collect();
        Snapshot { graphs }
    }
}

// ---- the journal (feature `journal`) ---------------------------------------------

#[cfg(feature = "journal")]
impl EngineBuilder {
    /// Opens a durable engine on `storage` (see
    /// [`journal`](crate::journal)): loads the newest valid snapshot,
    /// replays the log after it, cuts a torn tail, and recovers: every
    /// task live at the crash fails as interrupted and every graph in a
    /// transitional state goes to Abnormal ([`Op::Recover`]). Returns the
    /// engine, the receiver of its jobs and what recovery did.
    ///
    /// Open with the [`Config`] the journal was written with: the replay
    /// applies the same limits and retention.
    ///
    /// ```
    /// use graph_lifecycle::journal::{Durability, JournalOptions, MemStorage};
    /// use graph_lifecycle::{Engine, GraphKey};
    ///
    /// let disk = MemStorage::new(); // `FileStorage::open(dir)?` on a real disk
    /// let (engine, jobs, report) = Engine::builder()
    ///     .open_durable(disk, JournalOptions::new(Durability::SyncEveryCommit))?;
    /// assert_eq!(report.replayed, 0);
    /// engine.create_graph(&GraphKey::parse("p", "g")?)?; // durable once it returns
    /// # drop(jobs);
    /// # Ok::<(), graph_lifecycle::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::JournalCorrupt`] for a damaged record in the middle of the
    /// log (see [`Recovery`](crate::journal::Recovery) for the way past
    /// it); [`Error::Journal`] if the storage fails, or if a record is
    /// refused on replay (a different configuration).
    pub fn open_durable(
        self,
        storage: impl crate::journal::Storage,
        options: crate::journal::JournalOptions,
    ) -> Result<(Engine, JobReceiver, crate::journal::RecoveryReport), Error> {
        crate::journal::open(self, Box::new(storage), options)
    }
}

#[cfg(feature = "journal")]
impl Engine {
    fn journal_or_err(&self) -> Result<&Journal, Error> {
        self.0.journal.as_ref().ok_or_else(|| Error::Journal {
            detail: "the engine was not opened with a journal".to_owned(),
        })
    }

    /// Takes a snapshot of every graph now and compacts the journal: the
    /// log below the older of the two newest snapshots is deleted. Returns
    /// the snapshot's LSN (it holds every record below it).
    ///
    /// Commands wait while every graph is copied (not while the snapshot
    /// is written). With [`JournalOptions::snapshot_after_bytes`] the
    /// engine takes snapshots by itself; a host that would rather not see
    /// a commit take that time turns them off and calls this from a
    /// thread of its own.
    ///
    /// [`JournalOptions::snapshot_after_bytes`]: crate::journal::JournalOptions::snapshot_after_bytes
    ///
    /// # Errors
    ///
    /// [`Error::Journal`]: no journal, or the storage failed.
    pub fn snapshot_journal(&self) -> Result<u64, Error> {
        let j = self.journal_or_err()?;
        j.snapshot(|| self.images(), false)?
            .ok_or_else(|| Error::Journal {
                detail: "the snapshot was not taken".to_owned(),
            })
    }

    /// Writes and syncs every command committed so far, whatever the
    /// [`Durability`](crate::journal::Durability): for a host on `NoSync`
    /// that wants a point it can count on.
    ///
    /// # Errors
    ///
    /// [`Error::Journal`]: no journal, or the storage failed.
    pub fn sync_journal(&self) -> Result<(), Error> {
        self.journal_or_err()?.sync_all()
    }

    /// The journal's counters, `None` without a journal.
    pub fn journal_status(&self) -> Option<crate::journal::JournalStatus> {
        self.0.journal.as_ref().map(Journal::status)
    }

    /// Copies every graph, in key order, for a snapshot. Called with the
    /// commit gate held for writing.
    pub(crate) fn images(&self) -> Vec<crate::graph::GraphImage> {
        self.0
            .registry
            .all()
            .into_iter()
            .filter_map(|(_, cell)| {
                let slot = cell.slot.lock();
                (!slot.data.removed).then(|| slot.data.image())
            })
            .collect()
    }

    /// Puts a graph loaded from a snapshot in place.
    pub(crate) fn install(&self, data: GraphData) -> Result<(), Error> {
        let sh = &*self.0;
        let key = data.key.clone();
        let cell = Arc::new(GraphCell::new(data));
        {
            let slot = cell.slot.lock();
            cell.publish(&slot.data, &sh.config);
        }
        sh.registry
            .insert(&key, sh.config.max_graphs, cell, || {})
            .map_err(|e| insert_error(&key, e, &sh.config))
    }

    /// Applies a journaled command on open: the same apply step, but no
    /// job is handed over, no event published and nothing journaled.
    pub(crate) fn replay(&self, cmd: &Command) -> Result<(), Error> {
        let sh = &*self.0;
        let (key, at) = (&cmd.key, cmd.at);
        let forget = |fx: &mut Effects| {
            fx.jobs.clear();
            fx.ticket = None;
            fx.void.clear();
            fx.changes.clear();
        };
        let missing = || Error::GraphNotFound { key: key.clone() };
        match &cmd.op {
            Op::Create => {
                let cell = Arc::new(GraphCell::new(GraphData::new(key.clone(), at)));
                sh.registry
                    .insert(key, sh.config.max_graphs, cell, || {})
                    .map_err(|e| insert_error(key, e, &sh.config))
            }
            Op::Remove => sh.registry.remove_if(key, missing(), |cell| {
                let mut slot = cell.slot.lock();
                let slot = &mut *slot;
                slot.fx.record = false;
                slot.data.apply(&sh.config, at, &Op::Remove, &mut slot.fx)?;
                cell.publish(&slot.data, &sh.config);
                forget(&mut slot.fx);
                Ok(())
            }),
            op => {
                let cell = sh.registry.get(key).ok_or_else(missing)?;
                let mut slot = cell.slot.lock();
                let slot = &mut *slot;
                if slot.data.removed {
                    return Err(missing());
                }
                slot.fx.record = false;
                let outcome = slot.data.apply(&sh.config, at, op, &mut slot.fx);
                if outcome.is_ok() {
                    cell.publish(&slot.data, &sh.config);
                }
                forget(&mut slot.fx);
                outcome.map(drop)
            }
        }
    }

    /// The engine with its journal, once replay is done.
    pub(crate) fn attach(self, journal: Journal) -> Result<Engine, Error> {
        match Arc::try_unwrap(self.0) {
            Ok(shared) => Ok(Engine(Arc::new(Shared {
                journal: Some(journal),
                ..shared
            }))),
            Err(_) => Err(Error::Journal {
                detail: "the engine was shared before its journal was attached".to_owned(),
            }),
        }
    }

    /// Applies [`Op::Recover`] to every graph that needs it, in key order,
    /// at the clock's time: how many tasks it failed, which graphs went
    /// Abnormal, and the events. The records are synced once, after the
    /// last.
    pub(crate) fn recover_all(&self) -> Result<(usize, Vec<GraphKey>, Vec<Event>), Error> {
        let j = self.journal_or_err()?;
        let at = self.0.clock.now();
        let (mut interrupted, mut abnormal, mut events) = (0, Vec::new(), Vec::new());
        let mut last = None;
        for (key, cell) in self.0.registry.all() {
            if !cell.slot.lock().data.needs_recovery() {
                continue;
            }
            let mut wal = j.prepare(&key, at, &Op::Recover)?;
            let done = self.commit(&key, at, &Op::Recover, Some(&mut events), || wal.append());
            if let (
                Outcome::Recovered {
                    interrupted: n,
                    abnormal: a,
                },
                _,
            ) = done?
            {
                interrupted += n;
                if a {
                    abnormal.push(key);
                }
            }
            // The last record's wait covers every earlier one.
            last = Some(wal);
        }
        if let Some(wal) = last {
            wal.finish(self)?;
        }
        Ok((interrupted, abnormal, events))
    }
}

fn insert_error(key: &GraphKey, e: InsertError, config: &Config) -> Error {
    match e {
        InsertError::Exists => Error::GraphExists { key: key.clone() },
        InsertError::Full => Error::TooManyGraphs {
            key: key.clone(),
            limit: config.max_graphs,
        },
    }
}

fn info(d: &GraphData) -> GraphInfo {
    GraphInfo {
        key: d.key.clone(),
        state: d.state,
        epoch: d.epoch,
        created_at: d.created_at,
        updated_at: d.updated_at,
        live_tasks: d.live.len(),
        retained_tasks: d.done.len(),
        job: d.lifecycle,
    }
}

#[cold]
fn unreachable_outcome(o: Outcome) -> ! {
    unreachable!("the apply step returned {o:?} for an operation that cannot yield it")
}
