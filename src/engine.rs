//! The engine: the registry, the apply step, the job outbox and the event
//! bus put together behind one handle.

use crate::command::{Command, Op, Outcome, Restart};
use crate::config::Config;
use crate::error::Error;
use crate::events::{Change, EventBus, Subscription};
use crate::graph::{Effects, GraphData};
use crate::id::{Epoch, GraphKey, JobId, ProjectId};
use crate::outbox::{Closed, Job, JobReceiver, Lease, Outbox, TaskRef};
use crate::query::{GraphInfo, GraphSnapshot, Page, Snapshot, TaskQuery, paginate};
use crate::registry::{GraphCell, InsertError, Registry};
use crate::state::{GraphState, Operation};
use crate::sync::Arc;
use crate::task::{Payload, Report, TaskInfo, TaskSpec};
use crate::time::{Clock, IdSource, SystemClock, Timestamp, UuidV7Ids};

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
    /// Whatever the operation refuses; on error nothing changed.
    pub fn apply(&self, cmd: Command) -> Result<Outcome, Error> {
        self.apply_at(&cmd.key, cmd.at, &cmd.op).map(|(o, _)| o)
    }

    fn apply_at(
        &self,
        key: &GraphKey,
        at: Timestamp,
        op: &Op,
    ) -> Result<(Outcome, Option<Job>), Error> {
        let sh = &*self.0;
        match op {
            Op::Create => return self.create_at(key, at).map(|()| (Outcome::Created, None)),
            Op::Remove => return self.remove_at(key, at).map(|o| (o, None)),
            _ => {}
        }
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
        slot.fx.record = sh.events.active();
        let outcome = slot.data.apply(&sh.config, at, op, &mut slot.fx);
        let ticket = slot.fx.ticket.take();
        if outcome.is_ok() {
            cell.publish(&slot.data, &sh.config);
            self.dispatch(key, at, &mut slot.fx, lease.as_ref());
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
    fn dispatch(&self, key: &GraphKey, at: Timestamp, fx: &mut Effects, lease: Option<&Lease<'_>>) {
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
        self.0.events.publish(key, at, &mut fx.changes);
        // After a big forced restart, give the memory back.
        if fx.void.capacity() > KEEP {
            fx.void = Vec::new();
        }
        if fx.changes.capacity() > KEEP {
            fx.changes = Vec::new();
        }
    }

    fn create_at(&self, key: &GraphKey, at: Timestamp) -> Result<(), Error> {
        let sh = &*self.0;
        let cell = Arc::new(GraphCell::new(GraphData::new(key.clone(), at)));
        let announce = || {
            if sh.events.active() {
                sh.events.publish(key, at, &mut vec![Change::GraphCreated]);
            }
        };
        sh.registry
            .insert(key, sh.config.max_graphs, cell, announce)
            .map_err(|e| match e {
                InsertError::Exists => Error::GraphExists { key: key.clone() },
                InsertError::Full => Error::TooManyGraphs {
                    key: key.clone(),
                    limit: sh.config.max_graphs,
                },
            })
    }

    fn remove_at(&self, key: &GraphKey, at: Timestamp) -> Result<Outcome, Error> {
        let sh = &*self.0;
        let missing = Error::GraphNotFound { key: key.clone() };
        sh.registry.remove_if(key, missing, |cell| {
            let mut slot = cell.slot.lock();
            let slot = &mut *slot;
            slot.fx.record = sh.events.active();
            let outcome = slot.data.apply(&sh.config, at, &Op::Remove, &mut slot.fx)?;
            cell.publish(&slot.data, &sh.config);
            self.dispatch(key, at, &mut slot.fx, None);
            Ok(outcome)
        })
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
            .get(key)
            .and_then(|c| c.status())
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
