//! The engine: the registry, the pure step, the commit seam, the job outbox
//! and the event bus put together behind one handle.
//!
//! Every change goes through one function, `Engine::commit`: a live
//! command ([`Engine::apply`] and the convenience methods), a decided one
//! ([`Engine::apply_decided`]: a journal being replayed, a consensus log),
//! and recovery, which is a live [`Op::Recover`].

use crate::command::{Command, Decided, Dispatch, Op, Outcome, Restart};
use crate::config::Config;
use crate::error::{Error, LogError};
use crate::events::{EventBus, Subscription};
use crate::graph::{Effects, GraphData, apply_absent};
use crate::id::{Epoch, GraphKey, JobId, ProjectId, RequestId};
use crate::image::{Image, ImageError};
use crate::outbox::{Closed, Job, JobReceiver, Lease, Outbox, TaskRef};
use crate::query::{GraphInfo, GraphSnapshot, Page, Snapshot, TaskQuery, paginate};
use crate::registry::{GraphCell, Registry};
use crate::seam::{Append, CommitLog, InMemory, Seam};
use crate::state::{GraphState, Operation};
use crate::sync::Arc;
use crate::task::{CancelToken, Payload, Report, TaskInfo, TaskKind, TaskSpec};
use crate::time::{Clock, IdSource, SystemClock, Timestamp, UuidV7Ids};

/// Builds an [`Engine`]: configuration, clock, id source and commit log.
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
    log: Box<dyn Seam>,
}

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
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

    /// Sets the commit log that keeps every command applied live (default:
    /// [`InMemory`], which keeps nothing). See [`seam`](crate::seam).
    pub fn log(mut self, log: impl CommitLog) -> Self {
        self.log = Box::new(log);
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
            log: self.log,
            outbox,
        };
        (Engine(Arc::new(shared)), jobs)
    }

    /// The engine holding the state of `image` (see [`Engine::image`]),
    /// and the first receiver of its jobs. Its live tasks have new tokens;
    /// no job is handed over (their workers, if any, belong to the engine
    /// the image came from).
    ///
    /// # Errors
    ///
    /// [`ImageError`] if the image breaks a rule the engine relies on.
    pub fn restore(self, image: &Image) -> Result<(Engine, JobReceiver), ImageError> {
        let (engine, jobs) = self.build();
        engine.restore(image)?;
        Ok((engine, jobs))
    }
}

struct Shared {
    config: Config,
    clock: Box<dyn Clock>,
    ids: Box<dyn IdSource>,
    registry: Registry,
    log: Box<dyn Seam>,
    outbox: Outbox,
    events: EventBus,
}

/// The lifecycle core: graphs, their states and their task tables.
///
/// Cloning an `Engine` is cheap and gives another handle to the same
/// engine; it is `Send + Sync`. Every method is synchronous and returns
/// quickly: the engine never sleeps, never does I/O and never waits on the
/// host (a [`CommitLog`] the host plugs in may wait, in its own
/// [`finish`](CommitLog::finish), after the engine's locks are released).
/// Jobs go to the [`JobReceiver`] returned by [`EngineBuilder::build`].
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

/// A handle to an [`Engine`] that does not keep it alive: for a thread
/// that works for the engine (a snapshot writer, a deadline timer) and
/// should end when the host drops its last `Engine`.
#[derive(Clone)]
pub struct WeakEngine(std::sync::Weak<Shared>);

impl WeakEngine {
    /// The engine, if a handle to it is still alive.
    pub fn upgrade(&self) -> Option<Engine> {
        self.0.upgrade().map(Engine)
    }
}

impl std::fmt::Debug for WeakEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WeakEngine")
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

/// What the commit path did, whatever the way in.
struct Applied {
    outcome: Result<Outcome, Error>,
    jobs: Vec<Job>,
    ticket: Option<Job>,
    repeated: bool,
    /// The graph the command found or created.
    cell: Option<Arc<GraphCell>>,
}

impl Applied {
    fn refused(e: Error) -> Self {
        Self {
            outcome: Err(e),
            jobs: Vec::new(),
            ticket: None,
            repeated: false,
            cell: None,
        }
    }
}

/// How the commit path hands jobs over.
#[derive(Clone, Copy)]
enum Route<'a> {
    /// A live command: through the lease it took before it was decided
    /// (job-emitting commands only).
    Live(Option<&'a Lease<'a>>),
    /// A decided command: as the caller says, and returned.
    Decided(Dispatch),
}

impl Engine {
    /// A builder with the default configuration, the system clock, UUIDv7
    /// ids and no commit log.
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            config: Config::default(),
            clock: Box::new(SystemClock),
            ids: Box::new(UuidV7Ids),
            log: Box::new(InMemory),
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

    /// A handle that does not keep the engine alive.
    pub fn downgrade(&self) -> WeakEngine {
        WeakEngine(Arc::downgrade(&self.0))
    }

    /// Another receiver of the job channel: for a worker pool started
    /// after every earlier receiver was dropped.
    pub fn job_receiver(&self) -> JobReceiver {
        self.0.outbox.receiver()
    }

    /// Shuts the engine down for work: from now on live operations that
    /// would hand over a job fail with [`Error::ShutDown`], and once the
    /// workers have taken the jobs already committed, their
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

    // ---- the ways in --------------------------------------------------------

    /// Applies a command live: the local conditions are checked (an
    /// operation that hands over a job needs a [`JobReceiver`] alive and
    /// the engine not shut down), then the command is applied through the
    /// commit log and its jobs handed over. Replaying the same commands in
    /// the same order on a new engine (same configuration) gives the same
    /// state.
    ///
    /// # Errors
    ///
    /// [`Error::NoJobReceiver`] and [`Error::ShutDown`] (local, checked
    /// first: nothing is applied); whatever the operation refuses (nothing
    /// changed, but the answer is kept in the request window if the
    /// command carried a request id); [`Error::CommitLog`].
    pub fn apply(&self, cmd: Command) -> Result<Outcome, Error> {
        self.live(&cmd)?.outcome
    }

    /// Applies a command decided elsewhere (a journal being replayed, an
    /// entry a consensus log committed): no clock, no id source, no local
    /// check and no commit log. The outcome depends on the state and the
    /// command alone, so every engine that applies the same decided
    /// commands in the same order reaches the same state and answers the
    /// same, whether it has workers or not, and shut down or not.
    ///
    /// With [`Dispatch::HandOver`] the jobs the command produced are sent
    /// on the job channel (unless the engine is shut down); with
    /// [`Dispatch::Hold`] they are only returned. Events are published
    /// either way.
    ///
    /// ```
    /// use graph_lifecycle::*;
    /// let key = GraphKey::parse("p", "g")?;
    /// let at = Timestamp::from_millis(7);
    /// let job = SequentialIds::new(1).next_id(at);
    /// let (replica, _no_workers) = Engine::builder().build();
    /// replica.shutdown(); // a local condition: it does not change decided outcomes
    /// let _ = replica.apply_decided(&Command::new(key.clone(), at, Op::Create), Dispatch::Hold);
    /// let d = replica.apply_decided(
    ///     &Command::new(key.clone(), at, Op::Start { job, payload: Payload::EMPTY }),
    ///     Dispatch::Hold,
    /// );
    /// assert_eq!(d.outcome?, Outcome::Job { job, epoch: Epoch::ZERO });
    /// assert_eq!(d.jobs.len(), 1);
    /// assert_eq!(replica.state(&key)?, GraphState::Starting);
    /// # Ok::<(), graph_lifecycle::Error>(())
    /// ```
    pub fn apply_decided(&self, cmd: &Command, dispatch: Dispatch) -> Decided {
        let a = match self.commit(cmd, false, Route::Decided(dispatch)) {
            Ok(a) => a,
            Err(e) => Applied::refused(e),
        };
        Decided {
            outcome: a.outcome,
            jobs: a.jobs,
            ticket: a.ticket,
            repeated: a.repeated,
        }
    }

    /// The same operations as the engine's own methods, each command
    /// carrying `request` (if any): a retry with the same request id is
    /// answered as the first call was, success or refusal, and changes
    /// nothing. See `docs/CONTRACT.md`, "Retries", for the window.
    ///
    /// ```
    /// # use graph_lifecycle::*;
    /// let (engine, _jobs) = Engine::builder().build();
    /// let key = GraphKey::parse("p", "g")?;
    /// engine.create_graph(&key)?;
    /// let once = RequestId::new("start-g-1")?;
    /// let job = engine.request(Some(once.clone())).start(&key)?;
    /// // The answer was lost; the client retries:
    /// assert_eq!(engine.request(Some(once)).start(&key)?, job);
    /// assert_eq!(engine.tasks(&key, &TaskQuery::new())?.total, 1);
    /// # Ok::<(), graph_lifecycle::Error>(())
    /// ```
    pub fn request(&self, request: Option<RequestId>) -> Request<'_> {
        Request {
            engine: self,
            request,
        }
    }

    /// A live command: the local checks, then the commit path through the
    /// log. The lease keeps the outbox open from the check to the send.
    fn live(&self, cmd: &Command) -> Result<Applied, Error> {
        let lease = if cmd.op.emits_job() {
            let refused = |closed| {
                let op = cmd.op.operation().unwrap_or(Operation::Start);
                let key = cmd.key.clone();
                match closed {
                    Closed::ShutDown => Error::ShutDown { key, op },
                    Closed::NoReceiver => Error::NoJobReceiver { key, op },
                }
            };
            Some(self.0.outbox.lease().map_err(refused)?)
        } else {
            None
        };
        self.commit(cmd, true, Route::Live(lease.as_ref()))
    }

    // ---- the commit path ------------------------------------------------------

    /// The one commit path: through the commit log if `log`, find the
    /// graph and lock it (or the key's window, if it has none), apply the
    /// pure step, and settle the effects.
    fn commit(&self, cmd: &Command, log: bool, route: Route<'_>) -> Result<Applied, Error> {
        if !log {
            return Ok(self.locked(cmd, route, &mut |_| {}));
        }
        let mut applied = None;
        let mut locked = |append: Append<'_>| {
            applied = Some(self.locked(cmd, route, append));
        };
        let logged = self.0.log.commit(cmd, &mut locked);
        let failed = |source| Error::CommitLog {
            key: cmd.key.clone(),
            source,
        };
        logged.map_err(failed)?;
        applied.ok_or_else(|| failed(LogError::msg("the commit log did not run the command")))
    }

    /// The locked section: one of three ways to hold the key, the pure
    /// step, then [`settle`](Self::settle) under the same locks.
    fn locked(&self, cmd: &Command, route: Route<'_>, append: Append<'_>) -> Applied {
        let sh = &*self.0;
        let key = &cmd.key;
        if matches!(cmd.op, Op::Create | Op::Remove) {
            // Linking or unlinking a graph: the index and the shard are
            // held for writing while the graph is checked and changed.
            let mut index = sh.registry.lock_index(key);
            if let Some(cell) = index.cell(key) {
                let mut slot = cell.slot.lock();
                let slot = &mut *slot;
                let mut a = Effects::with(sh.events.active(), |fx| {
                    let outcome = slot.data.apply(&sh.config, cmd, fx);
                    self.settle(cmd, &cell, &slot.data, fx, outcome, route, append)
                });
                if slot.data.removed && a.outcome.is_ok() && !a.repeated {
                    index.unlink(key);
                    let window = std::mem::take(&mut slot.data.requests);
                    index
                        .absent()
                        .put(key, window, sh.config.max_absent_windows);
                }
                a.cell = Some(cell.clone());
                return a;
            }
            return Effects::with(sh.events.active(), |fx| {
                let count = (index.count(), index.project_count(&key.project));
                let (outcome, made) =
                    index
                        .absent()
                        .with_window(key, sh.config.max_absent_windows, |w| {
                            apply_absent(&sh.config, cmd, w, count, fx)
                        });
                let Some(data) = made else {
                    return self.settle_absent(cmd, fx, outcome, append);
                };
                let cell = Arc::new(GraphCell::new(data));
                index.insert(key, cell.clone());
                let slot = cell.slot.lock();
                let mut a = self.settle(cmd, &cell, &slot.data, fx, outcome, route, append);
                a.cell = Some(cell.clone());
                a
            });
        }
        loop {
            if let Some(cell) = sh.registry.get(key) {
                let mut slot = cell.slot.lock();
                let slot = &mut *slot;
                if !slot.data.removed {
                    let mut a = Effects::with(sh.events.active(), |fx| {
                        let outcome = slot.data.apply(&sh.config, cmd, fx);
                        self.settle(cmd, &cell, &slot.data, fx, outcome, route, append)
                    });
                    a.cell = Some(cell.clone());
                    return a;
                }
                // Removed since the lookup: the key may hold a new graph.
                if sh
                    .registry
                    .get(key)
                    .is_some_and(|now| !Arc::ptr_eq(&now, &cell))
                {
                    continue;
                }
            }
            if cmd.request.is_none() {
                // Nothing to remember: refused as it is.
                return Applied::refused(Error::GraphNotFound { key: key.clone() });
            }
            let Some(mut held) = sh.registry.lock_absent(key) else {
                // Created meanwhile: apply to it.
                continue;
            };
            return Effects::with(false, |fx| {
                let outcome = held
                    .absent
                    .with_window(key, sh.config.max_absent_windows, |w| {
                        apply_absent(&sh.config, cmd, w, (0, 0), fx).0
                    });
                self.settle_absent(cmd, fx, outcome, append)
            });
        }
    }

    /// Settles a command on a key with no graph: only its answer in the
    /// key's window can have changed.
    fn settle_absent(
        &self,
        cmd: &Command,
        fx: &mut Effects,
        outcome: Result<Outcome, Error>,
        append: Append<'_>,
    ) -> Applied {
        if fx.changed {
            append(&outcome);
        }
        Applied {
            outcome,
            jobs: Vec::new(),
            ticket: None,
            repeated: fx.repeat,
            cell: None,
        }
        .with_ticket(cmd)
    }

    /// Hands a committed command's effects over, in the order readers rely
    /// on, with the graph's lock still held: the log places the command,
    /// the state word is published (voiding the tokens a forced restart or
    /// a removal ended), the other tokens of ended tasks fire, jobs are
    /// sent, events offered.
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &self,
        cmd: &Command,
        cell: &GraphCell,
        data: &GraphData,
        fx: &mut Effects,
        outcome: Result<Outcome, Error>,
        route: Route<'_>,
        append: Append<'_>,
    ) -> Applied {
        let sh = &*self.0;
        if !fx.changed {
            let mut a = Applied {
                outcome,
                jobs: Vec::new(),
                ticket: None,
                repeated: fx.repeat,
                cell: None,
            };
            if fx.repeat
                && let (Op::RegisterTask { .. }, Ok(Outcome::Job { job, .. })) =
                    (&cmd.op, &a.outcome)
            {
                a.ticket = data.ticket(*job);
            }
            return a.with_ticket(cmd);
        }
        append(&outcome);
        cell.publish(data, &sh.config);
        for token in fx.void.drain(..) {
            token.fire();
        }
        let mut jobs = Vec::new();
        match route {
            Route::Live(Some(lease)) => {
                for job in fx.jobs.drain(..) {
                    lease.send(job);
                }
            }
            Route::Live(None) => {
                debug_assert!(
                    fx.jobs.is_empty(),
                    "a command without a lease emitted a job"
                );
                fx.jobs.clear();
            }
            Route::Decided(dispatch) => {
                jobs = std::mem::take(&mut fx.jobs);
                if dispatch == Dispatch::HandOver {
                    sh.outbox.send_all(&jobs);
                }
            }
        }
        sh.events.publish(&cmd.key, cmd.at, &mut fx.changes);
        Applied {
            outcome,
            jobs,
            ticket: fx.ticket.take(),
            repeated: false,
            cell: None,
        }
    }

    /// Draws the time and a job id, and applies `op(job)` live.
    fn run(
        &self,
        key: &GraphKey,
        request: &Option<RequestId>,
        op: impl FnOnce(JobId) -> Op,
    ) -> Result<Applied, Error> {
        let at = self.0.clock.now();
        let job = self.0.ids.next_id(at);
        let cmd = Command {
            key: key.clone(),
            at,
            request: request.clone(),
            op: op(job),
        };
        self.live(&cmd)
    }

    // ---- graphs -----------------------------------------------------------

    /// Creates a graph, Stopped, and returns its handle.
    ///
    /// # Errors
    ///
    /// [`Error::GraphExists`], [`Error::TooManyGraphs`].
    pub fn create_graph(&self, key: &GraphKey) -> Result<GraphHandle, Error> {
        self.request(None).create_graph(key)
    }

    /// Removes a Stopped or Abnormal graph with its task table. Live host
    /// tasks it still had are dropped and their tokens go void.
    ///
    /// # Errors
    ///
    /// [`Error::GraphNotFound`], [`Error::TransitionRefused`].
    pub fn remove_graph(&self, key: &GraphKey) -> Result<(), Error> {
        self.request(None).remove_graph(key)
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

    /// Runs `f` on the graph's data under its lock.
    fn read<R>(&self, key: &GraphKey, f: impl FnOnce(&GraphData) -> R) -> Result<R, Error> {
        let missing = || Error::GraphNotFound { key: key.clone() };
        let cell = self.0.registry.get(key).ok_or_else(missing)?;
        let slot = cell.slot.lock();
        if slot.data.removed {
            return Err(missing());
        }
        Ok(f(&slot.data))
    }

    /// The graph's summary.
    ///
    /// # Errors
    ///
    /// [`Error::GraphNotFound`].
    pub fn graph_info(&self, key: &GraphKey) -> Result<GraphInfo, Error> {
        self.read(key, info)
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

    /// Every graph's key, in key order.
    pub fn keys(&self) -> Vec<GraphKey> {
        self.0.registry.all().into_iter().map(|(k, _)| k).collect()
    }

    /// How many graphs the engine holds.
    pub fn graph_count(&self) -> usize {
        self.0.registry.len()
    }

    // ---- lifecycle operations (docs/CONTRACT.md, section 4) -----------------

    /// Starts a Stopped graph: it goes Starting and a Start job is sent.
    ///
    /// # Errors
    ///
    /// [`Error::GraphNotFound`], [`Error::TransitionRefused`],
    /// [`Error::NoJobReceiver`], [`Error::TooManyTasks`].
    pub fn start(&self, key: &GraphKey) -> Result<JobId, Error> {
        self.request(None).start(key)
    }

    /// [`start`](Self::start) with a request for the host (a backup to
    /// start from).
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start), and [`Error::InvalidArgument`] for an
    /// oversized payload.
    pub fn start_with(&self, key: &GraphKey, payload: impl Into<Payload>) -> Result<JobId, Error> {
        self.request(None).start_with(key, payload)
    }

    /// Stops a Running or Abnormal graph: it goes Stopping and a Stop job
    /// is sent.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn stop(&self, key: &GraphKey) -> Result<JobId, Error> {
        self.request(None).stop(key)
    }

    /// Imports into a Running graph: it goes Importing (and keeps serving
    /// queries) and an Import job with `payload` is sent.
    ///
    /// # Errors
    ///
    /// As [`start_with`](Self::start_with).
    pub fn import(&self, key: &GraphKey, payload: impl Into<Payload>) -> Result<JobId, Error> {
        self.request(None).import(key, payload)
    }

    /// Exports a Running graph: it goes Exporting and an Export job is sent.
    ///
    /// # Errors
    ///
    /// As [`start_with`](Self::start_with).
    pub fn export(&self, key: &GraphKey, payload: impl Into<Payload>) -> Result<JobId, Error> {
        self.request(None).export(key, payload)
    }

    /// Clears a Running graph's data (and schema, if `clear_metadata`): it
    /// goes Clearing and a Clear job is sent.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn clear(&self, key: &GraphKey, clear_metadata: bool) -> Result<JobId, Error> {
        self.request(None).clear(key, clear_metadata)
    }

    /// The forced restart (`docs/CONTRACT.md`, section 6), allowed in
    /// every state. In one step under the graph's lock: every live task
    /// fails as "force-restarted by job X" (a live restart as "superseded
    /// by job X") and its token goes void; the epoch grows by one; the
    /// graph enters Restarting; a Restart task is created and its job
    /// sent. Nothing of it is visible before all of it is.
    ///
    /// A retry goes through [`request`](Self::request) with the first
    /// call's request id, and gets the first call's restart back.
    ///
    /// # Errors
    ///
    /// [`Error::GraphNotFound`], [`Error::NoJobReceiver`],
    /// [`Error::ShutDown`].
    pub fn force_restart(&self, key: &GraphKey) -> Result<Restart, Error> {
        self.request(None).force_restart(key)
    }

    // ---- tasks (docs/CONTRACT.md, section 5) ----------------------------------

    /// Registers a host task on a graph that serves queries (Running,
    /// Importing, Exporting). The engine does not send it anywhere: the
    /// returned [`Job`] is the host's ticket for reports and its token.
    ///
    /// # Errors
    ///
    /// [`Error::GraphNotFound`], [`Error::TransitionRefused`],
    /// [`Error::TooManyTasks`], [`Error::InvalidArgument`].
    pub fn register_task(&self, key: &GraphKey, spec: TaskSpec) -> Result<Job, Error> {
        self.request(None).register_task(key, spec)
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
        self.request(None).report(task, report)
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
        self.request(None).cancel(key, job)
    }

    /// One task of a graph.
    ///
    /// # Errors
    ///
    /// [`Error::GraphNotFound`], [`Error::TaskNotFound`] (also for a task
    /// evicted by retention).
    pub fn task(&self, key: &GraphKey, job: JobId) -> Result<TaskInfo, Error> {
        self.read(key, |d| d.task(job).map(|t| t.info(key)))?
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
        self.read(key, |d| {
            let mut hits: Vec<_> = d
                .tasks()
                .filter(|t| q.matches(t.status, t.created_at))
                .collect();
            hits.sort_unstable_by_key(|t| std::cmp::Reverse((t.created_at, t.seq)));
            let page = paginate(hits, q.offset, q.limit);
            Page {
                total: page.total,
                items: page.items.into_iter().map(|t| t.info(key)).collect(),
            }
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

    /// The keys of the graphs with something due at or before `now` (a
    /// job's deadline or a retained task's age), in key order: the graphs
    /// an [`Op::Expire`] at `now` would change. For a host that must not
    /// apply the expiry itself (a replica proposes one decided
    /// [`Op::Expire`] command per key to its log instead of calling
    /// [`expire`](Self::expire)). Reads one atomic per graph, no graph lock.
    ///
    /// ```
    /// use graph_lifecycle::*;
    /// use std::time::Duration;
    /// let cfg = Config::default().timeout(LifecycleKind::Start, Some(Duration::from_secs(1)));
    /// let clock = std::sync::Arc::new(ManualClock::new(Timestamp::from_millis(1_000)));
    /// let (engine, _jobs) = Engine::builder().config(cfg).clock(clock.clone()).build();
    /// let key = GraphKey::parse("p", "g")?;
    /// engine.create_graph(&key)?;
    /// engine.start(&key)?;
    /// assert!(engine.due_graphs(Timestamp::from_millis(1_500)).is_empty());
    /// assert_eq!(engine.due_graphs(Timestamp::from_millis(2_000)), vec![key]);
    /// # Ok::<(), graph_lifecycle::Error>(())
    /// ```
    pub fn due_graphs(&self, now: Timestamp) -> Vec<GraphKey> {
        let mut due = Vec::new();
        self.0.registry.for_each(|cell| {
            if cell.deadline().is_some_and(|d| d <= now) {
                due.push(cell.clone());
            }
        });
        let mut keys: Vec<GraphKey> = due
            .into_iter()
            .filter_map(|cell| {
                let slot = cell.slot.lock();
                (!slot.data.removed).then(|| slot.data.key.clone())
            })
            .collect();
        keys.sort_unstable();
        keys
    }

    /// Fails every job and task whose deadline is at or before `now` as
    /// timed out (their graphs go where the outcome table says) and evicts
    /// terminal tasks past their retention age: an [`Op::Expire`] at
    /// `now`, applied live, to every graph with something due. Returns
    /// how many tasks timed out and how many were evicted.
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
            if let Ok(Outcome::Expired {
                timed_out: t,
                evicted: e,
            }) = self.apply(Command::new(key, now, Op::Expire))
            {
                timed_out += t;
                evicted += e;
            }
        }
        (timed_out, evicted)
    }

    // ---- whole-engine views -------------------------------------------------

    /// Every graph with every task, in key order; for tests, debugging and
    /// comparing replicas. Each graph is read under its own lock.
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
                    tasks: tasks.into_iter().map(|t| t.info(&key)).collect(),
                })
            })
            .collect();
        Snapshot { graphs }
    }

    /// A copy of the whole state: every graph (its state, epoch, tasks and
    /// request window) and the windows of keys with no graph, for
    /// [`Image::encode`] and [`restore`](Self::restore). Each graph is
    /// copied under its own lock; for a copy that matches one point of a
    /// log, hold the log still while it is taken (as a journal's snapshot
    /// does, and as a consensus state machine does between two entries).
    pub fn image(&self) -> Image {
        let graphs = self
            .0
            .registry
            .all()
            .into_iter()
            .filter_map(|(_, cell)| {
                let slot = cell.slot.lock();
                (!slot.data.removed).then(|| crate::image::GraphImage::of(&slot.data))
            })
            .collect();
        let absent = self.0.registry.with_absent(crate::image::AbsentImage::of);
        Image { graphs, absent }
    }

    /// Replaces the whole state with `image`'s. Every graph the engine held
    /// is removed: handles to it read `None`, and the tokens of its live
    /// tasks go void. The image's live tasks get new tokens; no job is
    /// handed over. Commands running at the same time may apply to the
    /// state being replaced; call it when no command runs (between two
    /// entries of a consensus log, say).
    ///
    /// # Errors
    ///
    /// [`ImageError`] if the image breaks a rule the engine relies on; the
    /// engine is then unchanged.
    pub fn restore(&self, image: &Image) -> Result<(), ImageError> {
        let sh = &*self.0;
        let (graphs, absent) = image.rebuild(&sh.config)?;
        let cells = graphs
            .into_iter()
            .map(|g| {
                let cell = Arc::new(GraphCell::new(g));
                {
                    let slot = cell.slot.lock();
                    cell.publish(&slot.data, &sh.config);
                }
                let key = cell.slot.lock().data.key.clone();
                (key, cell)
            })
            .collect();
        for old in sh.registry.replace(cells, absent) {
            let mut slot = old.slot.lock();
            slot.data.removed = true;
            old.publish(&slot.data, &sh.config);
        }
        Ok(())
    }
}

impl Applied {
    /// The ticket of a repeated host-task registration whose task is gone:
    /// rebuilt from the command, its token void.
    fn with_ticket(mut self, cmd: &Command) -> Self {
        if self.ticket.is_none()
            && let (Op::RegisterTask { spec, .. }, Ok(Outcome::Job { job, epoch })) =
                (&cmd.op, &self.outcome)
        {
            self.ticket = Some(Job {
                task: TaskRef::new(cmd.key.clone(), *job, *epoch),
                kind: TaskKind::Host(spec.kind.clone()),
                payload: spec.payload.clone(),
                token: CancelToken::voided(),
            });
        }
        self
    }
}

/// The engine's operations, each command carrying the same request id:
/// see [`Engine::request`]. Each method is the engine method of the same
/// name.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    engine: &'a Engine,
    request: Option<RequestId>,
}

impl Request<'_> {
    fn run(&self, key: &GraphKey, op: impl FnOnce(JobId) -> Op) -> Result<Applied, Error> {
        self.engine.run(key, &self.request, op)
    }

    fn run_job(&self, key: &GraphKey, op: impl FnOnce(JobId) -> Op) -> Result<JobId, Error> {
        match self.run(key, op)?.outcome? {
            Outcome::Job { job, .. } => Ok(job),
            // Lifecycle ops yield `Outcome::Job` only.
            other => unreachable_outcome(other),
        }
    }

    fn run_plain(&self, key: &GraphKey, op: Op) -> Result<Applied, Error> {
        let e = self.engine;
        let cmd = Command {
            key: key.clone(),
            at: e.0.clock.now(),
            request: self.request.clone(),
            op,
        };
        e.live(&cmd)
    }

    /// [`Engine::create_graph`]. A repeated create whose graph was removed
    /// since returns a handle that reads `None`.
    ///
    /// # Errors
    ///
    /// As [`Engine::create_graph`].
    pub fn create_graph(&self, key: &GraphKey) -> Result<GraphHandle, Error> {
        let a = self.run_plain(key, Op::Create)?;
        a.outcome?;
        let cell = a.cell.unwrap_or_else(|| Arc::new(GraphCell::detached(key)));
        Ok(GraphHandle {
            key: key.clone(),
            cell,
        })
    }

    /// [`Engine::remove_graph`].
    ///
    /// # Errors
    ///
    /// As [`Engine::remove_graph`].
    pub fn remove_graph(&self, key: &GraphKey) -> Result<(), Error> {
        self.run_plain(key, Op::Remove)?.outcome.map(drop)
    }

    /// [`Engine::start`].
    ///
    /// # Errors
    ///
    /// As [`Engine::start`].
    pub fn start(&self, key: &GraphKey) -> Result<JobId, Error> {
        self.start_with(key, Payload::EMPTY)
    }

    /// [`Engine::start_with`].
    ///
    /// # Errors
    ///
    /// As [`Engine::start_with`].
    pub fn start_with(&self, key: &GraphKey, payload: impl Into<Payload>) -> Result<JobId, Error> {
        let payload = payload.into();
        self.run_job(key, |job| Op::Start { job, payload })
    }

    /// [`Engine::stop`].
    ///
    /// # Errors
    ///
    /// As [`Engine::stop`].
    pub fn stop(&self, key: &GraphKey) -> Result<JobId, Error> {
        self.run_job(key, |job| Op::Stop { job })
    }

    /// [`Engine::import`].
    ///
    /// # Errors
    ///
    /// As [`Engine::import`].
    pub fn import(&self, key: &GraphKey, payload: impl Into<Payload>) -> Result<JobId, Error> {
        let payload = payload.into();
        self.run_job(key, |job| Op::Import { job, payload })
    }

    /// [`Engine::export`].
    ///
    /// # Errors
    ///
    /// As [`Engine::export`].
    pub fn export(&self, key: &GraphKey, payload: impl Into<Payload>) -> Result<JobId, Error> {
        let payload = payload.into();
        self.run_job(key, |job| Op::Export { job, payload })
    }

    /// [`Engine::clear`].
    ///
    /// # Errors
    ///
    /// As [`Engine::clear`].
    pub fn clear(&self, key: &GraphKey, clear_metadata: bool) -> Result<JobId, Error> {
        self.run_job(key, |job| Op::Clear {
            job,
            clear_metadata,
        })
    }

    /// [`Engine::force_restart`].
    ///
    /// # Errors
    ///
    /// As [`Engine::force_restart`].
    pub fn force_restart(&self, key: &GraphKey) -> Result<Restart, Error> {
        match self.run(key, |job| Op::ForceRestart { job })?.outcome? {
            Outcome::Restarted(r) => Ok(r),
            other => unreachable_outcome(other),
        }
    }

    /// [`Engine::register_task`]. A repeated registration returns a ticket
    /// for the first one's task, its token as the task stands.
    ///
    /// # Errors
    ///
    /// As [`Engine::register_task`].
    pub fn register_task(&self, key: &GraphKey, spec: TaskSpec) -> Result<Job, Error> {
        let a = self.run(key, |job| Op::RegisterTask { job, spec })?;
        let outcome = a.outcome?;
        a.ticket.ok_or_else(|| unreachable_outcome(outcome))
    }

    /// [`Engine::report`].
    ///
    /// # Errors
    ///
    /// As [`Engine::report`].
    pub fn report(&self, task: &TaskRef, report: Report) -> Result<(), Error> {
        let op = Op::Report {
            job: task.id,
            epoch: task.epoch,
            report,
        };
        self.run_plain(&task.key, op)?.outcome.map(drop)
    }

    /// [`Engine::cancel`].
    ///
    /// # Errors
    ///
    /// As [`Engine::cancel`].
    pub fn cancel(&self, key: &GraphKey, job: JobId) -> Result<(), Error> {
        self.run_plain(key, Op::Cancel { job })?.outcome.map(drop)
    }
}

fn info(d: &GraphData) -> GraphInfo {
    GraphInfo {
        key: d.key.clone(),
        state: d.state,
        epoch: d.epoch,
        created_at: d.created_at,
        updated_at: d.updated_at,
        live_tasks: d.t.live.len(),
        retained_tasks: d.t.done.len(),
        job: d.lifecycle,
    }
}

#[cold]
fn unreachable_outcome(o: Outcome) -> ! {
    unreachable!("the apply step returned {o:?} for an operation that cannot yield it")
}
