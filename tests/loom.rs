//! Exhaustive interleaving checks of the forced restart (`docs/CONTRACT.md`, section 6).
//!
//! Each model races `force_restart` against one other operation on the
//! same graph, while a third thread reads the graph on the lock-free path
//! and through a snapshot. loom runs the model under every interleaving of
//! the threads' synchronisation points (up to a preemption bound) and with
//! every value the memory model lets an atomic load return. Each model
//! asserts the contract's invariants on every read and at its end.
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test --release --test loom
//! ```
//!
//! `docs/VERIFICATION.md` says what each model covers, what it cannot, and
//! the bounds.
#![cfg(loom)]

mod invariants;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use graph_lifecycle::*;
use invariants::{Word, assert_step, check_graph, check_handed, drain};
use loom::thread;

/// Preemptions per execution when `LOOM_MAX_PREEMPTIONS` is not set.
const DEFAULT_PREEMPTIONS: usize = 3;

/// Runs `model` under every interleaving loom explores, and prints how
/// many there were. Each run names the order its race resolved in; every
/// name in `outcomes` must come up, so a model whose threads never
/// actually raced fails instead of passing vacuously.
fn explore(
    name: &str,
    outcomes: &'static [&'static str],
    model: impl Fn() -> &'static str + Sync + Send + 'static,
) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(DEFAULT_PREEMPTIONS);
    }
    // A model runs a few hundred synchronisation points per execution.
    builder.max_branches = builder.max_branches.max(20_000);
    let runs = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let (counter, record) = (runs.clone(), seen.clone());
    let started = Instant::now();
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        let outcome = model();
        assert!(outcomes.contains(&outcome), "unexpected outcome {outcome}");
        record.lock().unwrap().insert(outcome);
    });
    println!(
        "{name}: {} interleavings in {:.1?} (preemption bound {:?})",
        runs.load(Ordering::Relaxed),
        started.elapsed(),
        builder.preemption_bound
    );
    let seen = seen.lock().unwrap();
    for outcome in outcomes {
        assert!(
            seen.contains(outcome),
            "{name}: no interleaving gave \"{outcome}\""
        );
    }
}

/// One engine with one graph, set up on the model's main thread before
/// any other thread exists.
struct World {
    engine: Engine,
    jobs: JobReceiver,
    key: GraphKey,
    graph: GraphHandle,
    clock: Arc<ManualClock>,
    /// Tasks created during set-up; their jobs were taken off the channel.
    seen: BTreeSet<JobId>,
}

impl World {
    fn new(config: Config) -> World {
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_000)));
        let (engine, jobs) = Engine::builder()
            .config(config.shards(1))
            .clock(clock.clone())
            .ids(SequentialIds::new(1))
            .build();
        let key = GraphKey::parse("p", "g").unwrap();
        let graph = engine.create_graph(&key).unwrap();
        World {
            engine,
            jobs,
            key,
            graph,
            clock,
            seen: BTreeSet::new(),
        }
    }

    fn take_job(&mut self) -> Job {
        let job = self
            .jobs
            .try_recv()
            .expect("the set-up's job was handed over");
        self.seen.insert(job.id());
        job
    }

    /// Stopped to Starting; the start job.
    fn start(&mut self) -> Job {
        self.engine.start(&self.key).unwrap();
        self.take_job()
    }

    /// Stopped to Running.
    fn running(&mut self) {
        let start = self.start();
        self.engine.report(&start.task, Report::Succeeded).unwrap();
    }

    fn import(&mut self) -> Job {
        self.engine.import(&self.key, "edges.csv").unwrap();
        self.take_job()
    }

    fn stop(&mut self) -> Job {
        self.engine.stop(&self.key).unwrap();
        self.take_job()
    }

    fn restart(&mut self) -> Job {
        self.engine.force_restart(&self.key).unwrap();
        self.take_job()
    }

    fn host_task(&mut self) -> Job {
        let spec = TaskSpec::new(HostKind::new("pagerank").unwrap());
        let ticket = self.engine.register_task(&self.key, spec).unwrap();
        self.seen.insert(ticket.id());
        ticket
    }

    /// A reader thread watching `watch` (see [`read_path`]), spawned
    /// before the other threads of the model. With `void_moves_word`,
    /// whatever voids the watched task's token in this model also changes
    /// the graph's state word.
    fn spawn_reader(
        &self,
        allowed: &'static [(GraphState, u64)],
        watch: &Job,
        void_moves_word: bool,
    ) -> Reader {
        let initial = self.graph.status();
        let (engine, graph, watch) = (self.engine.clone(), self.graph.clone(), watch.clone());
        let moved_from = void_moves_word.then_some(initial);
        thread::spawn(move || read_path(&engine, &graph, allowed, &watch, moved_from))
    }

    /// The end of a model: every invariant, the job channel, and the state
    /// word against the locked state.
    fn finish(&self, allowed: &[(GraphState, u64)]) -> GraphSnapshot {
        let snap = self.engine.snapshot();
        assert_eq!(snap.graphs.len(), 1);
        let g = snap.graphs.into_iter().next().unwrap();
        check_graph(&g, true);
        check_handed(&g, &self.seen, &drain(&self.jobs));
        let word = Some((g.info.state, g.info.epoch));
        assert_eq!(self.graph.status(), word, "state word vs locked state");
        assert_allowed(word, allowed);
        g
    }
}

type Reader = thread::JoinHandle<()>;

fn assert_allowed(word: Word, allowed: &[(GraphState, u64)]) {
    let (state, epoch) = word.expect("the graph exists");
    assert!(
        allowed.contains(&(state, epoch.0)),
        "read ({state:?}, epoch {epoch}), which this model cannot produce (allowed: {allowed:?})"
    );
}

/// The reader: a lock-free read, the watched task's token, a lock-free
/// read, a snapshot (locks), a lock-free read, a read through the
/// registry. Every read shows a state this model can produce, each follows
/// the one before by the transition table, the snapshot meets every
/// invariant, and a void token means a terminal task and, read without any
/// lock, a state word that has moved on from `moved_from` (the word is
/// published before tokens fire).
fn read_path(
    engine: &Engine,
    graph: &GraphHandle,
    allowed: &[(GraphState, u64)],
    watch: &Job,
    moved_from: Option<Word>,
) {
    let first = graph.status();
    assert_allowed(first, allowed);
    let void = watch.token.is_void();
    let after_token = graph.status();
    assert_step(first, after_token);
    if let Some(initial) = moved_from
        && void
    {
        assert_ne!(
            after_token, initial,
            "the token went void before the state word moved"
        );
    }
    let snap = engine.snapshot();
    let g = &snap.graphs[0];
    check_graph(g, true);
    let locked = Some((g.info.state, g.info.epoch));
    assert_allowed(locked, allowed);
    assert_step(after_token, locked);
    let task = g.tasks.iter().find(|t| t.id == watch.id()).unwrap();
    if void {
        assert!(
            task.status.is_terminal(),
            "the token went void before its task ended: {task:#?}"
        );
    }
    let second = graph.status();
    assert_allowed(second, allowed);
    assert_step(locked, second);
    // The registry's path: a shard lookup, then the same word.
    let third = engine.state(graph.key()).unwrap();
    assert!(
        allowed
            .iter()
            .any(|&(s, e)| s == third && invariants::reachable(second, Some((s, Epoch(e))))),
        "Engine::state read {third:?} after {second:?}"
    );
}

fn task(g: &GraphSnapshot, id: JobId) -> &TaskInfo {
    g.tasks.iter().find(|t| t.id == id).expect("task kept")
}

fn assert_restarted_by(t: &TaskInfo, r: &Restart) {
    assert_eq!(t.status, TaskStatus::Failed, "{t:#?}");
    assert_eq!(t.reason, Some(FailReason::ForceRestarted(r.job)), "{t:#?}");
}

// ---- force_restart racing a host report ------------------------------------

const LANDED: &str = "landed first";
const REFUSED: &str = "refused after";
const BOTH_ORDERS: &[&str] = &[LANDED, REFUSED];

const IMPORT_REPORT: &[(GraphState, u64)] = &[
    (GraphState::Importing, 0),
    (GraphState::Running, 0),
    (GraphState::Restarting, 1),
];

/// A live import's worker reports `report` while the graph is forced to
/// restart: the report lands before (the restart then fails or skips the
/// task as it now is) or is refused as stale after; never both, never lost.
fn restart_vs_report(name: &str, report: Report) {
    explore(name, BOTH_ORDERS, move || {
        let mut w = World::new(Config::default());
        w.running();
        let import = w.import();
        let reader = w.spawn_reader(IMPORT_REPORT, &import, true);
        let reporter = {
            let (engine, task, report) = (w.engine.clone(), import.task.clone(), report.clone());
            thread::spawn(move || engine.report(&task, report))
        };
        let r = w.engine.force_restart(&w.key).unwrap();
        let reported = reporter.join().unwrap();
        reader.join().unwrap();

        let g = w.finish(IMPORT_REPORT);
        assert_eq!(
            (g.info.state, g.info.epoch),
            (GraphState::Restarting, Epoch(1))
        );
        assert_eq!(r.epoch, Epoch(1));
        let t = task(&g, import.id());
        match reported {
            Ok(()) => match &report {
                Report::Started | Report::Progress(_) => {
                    assert_restarted_by(t, &r);
                    assert!(t.started_at.is_some());
                    let p = if let Report::Progress(p) = report {
                        p
                    } else {
                        0
                    };
                    assert_eq!(t.progress, p, "the landed progress was kept");
                    assert_eq!(r.failed, 1);
                    assert!(import.token.is_void());
                }
                Report::Succeeded => {
                    assert_eq!(t.status, TaskStatus::Succeeded);
                    assert_eq!(r.failed, 0);
                    assert!(!import.token.is_void());
                }
                Report::Failed(msg) => {
                    assert_eq!(t.status, TaskStatus::Failed);
                    assert_eq!(t.reason, Some(FailReason::Host(msg.as_str().into())));
                    assert_eq!(r.failed, 0);
                }
            },
            Err(e) => {
                assert_eq!(e.code(), "STALE_EPOCH", "{e}");
                assert_restarted_by(t, &r);
                assert!(t.started_at.is_none() && t.progress == 0, "{t:#?}");
                assert_eq!(r.failed, 1);
                assert!(import.token.is_void());
                return REFUSED;
            }
        }
        LANDED
    });
}

#[test]
fn restart_vs_report_started() {
    restart_vs_report("restart_vs_report_started", Report::Started);
}

#[test]
fn restart_vs_report_progress() {
    restart_vs_report("restart_vs_report_progress", Report::Progress(40));
}

#[test]
fn restart_vs_report_succeeded() {
    restart_vs_report("restart_vs_report_succeeded", Report::Succeeded);
}

#[test]
fn restart_vs_report_failed() {
    restart_vs_report(
        "restart_vs_report_failed",
        Report::Failed("disk full".into()),
    );
}

// ---- force_restart racing force_restart ------------------------------------

const TWO_RESTARTS: &[(GraphState, u64)] = &[
    (GraphState::Importing, 0),
    (GraphState::Restarting, 1),
    (GraphState::Restarting, 2),
];

/// Two forced restarts of one graph: the second to commit supersedes the
/// first; one live restart job at the end, both handed over in commit
/// order, and every event of each restart contiguous in the event stream.
#[test]
fn restart_vs_restart() {
    explore(
        "restart_vs_restart",
        &["mine first", "theirs first"],
        || {
            let mut w = World::new(Config::default());
            w.running();
            let import = w.import();
            let events = w.engine.subscribe();
            let reader = w.spawn_reader(TWO_RESTARTS, &import, true);
            let other = {
                let (engine, key) = (w.engine.clone(), w.key.clone());
                thread::spawn(move || engine.force_restart(&key).unwrap())
            };
            let mine = w.engine.force_restart(&w.key).unwrap();
            let theirs = other.join().unwrap();
            reader.join().unwrap();

            let g = w.finish(TWO_RESTARTS);
            assert_eq!(
                (g.info.state, g.info.epoch),
                (GraphState::Restarting, Epoch(2))
            );
            let (first, second, outcome) = if mine.epoch == Epoch(1) {
                (mine, theirs, "mine first")
            } else {
                (theirs, mine, "theirs first")
            };
            assert_eq!((first.epoch, second.epoch), (Epoch(1), Epoch(2)));
            assert_ne!(first.job, second.job);
            assert_eq!((first.failed, second.failed), (1, 1));
            assert_restarted_by(task(&g, import.id()), &first);
            let superseded = task(&g, first.job);
            assert_eq!(superseded.status, TaskStatus::Failed);
            assert_eq!(superseded.reason, Some(FailReason::Superseded(second.job)));
            let live: Vec<_> = g
                .tasks
                .iter()
                .filter(|t| t.kind == TaskKind::Restart && !t.status.is_terminal())
                .collect();
            assert_eq!(live.len(), 1);
            assert_eq!(live[0].id, second.job);
            assert_restart_events_contiguous(&events.drain(), &[first, second]);
            outcome
        },
    );
}

/// Each restart's events form one block: the failures it caused, the
/// state change, then its own task's creation, with consecutive sequence
/// numbers and nothing of another command in between.
fn assert_restart_events_contiguous(events: &[Event], restarts: &[Restart]) {
    assert!(
        events.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "sequence numbers of one graph's events are consecutive: {events:#?}"
    );
    for r in restarts {
        let caused_by = |e: &Event| match &e.change {
            Change::Task {
                reason: Some(FailReason::ForceRestarted(j) | FailReason::Superseded(j)),
                ..
            } => *j == r.job,
            Change::State {
                to: GraphState::Restarting,
                epoch,
                ..
            } => *epoch == r.epoch,
            Change::Task {
                job,
                status: TaskStatus::Pending,
                ..
            } => *job == r.job,
            _ => false,
        };
        let at: Vec<usize> = (0..events.len())
            .filter(|&i| caused_by(&events[i]))
            .collect();
        assert_eq!(at.len(), r.failed + 2, "restart {}: {events:#?}", r.job);
        assert!(
            at.windows(2).all(|w| w[1] == w[0] + 1),
            "restart {}'s events are interleaved with others: {events:#?}",
            r.job
        );
    }
}

/// Two sends of one request (the same request id) race: one restart is
/// applied, and both calls answer with it.
#[test]
fn restart_retry_same_request_id() {
    const ALLOWED: &[(GraphState, u64)] =
        &[(GraphState::Importing, 0), (GraphState::Restarting, 1)];
    explore(
        "restart_retry_same_request_id",
        &["mine applied", "theirs applied"],
        || {
            let mut w = World::new(Config::default());
            w.running();
            let import = w.import();
            let reader = w.spawn_reader(ALLOWED, &import, true);
            let send = |engine: &Engine, key: &GraphKey, seed: u64| {
                let at = Timestamp::from_millis(2_000);
                let job = SequentialIds::new(seed).next_id(at);
                let cmd = Command::new(key.clone(), at, Op::ForceRestart { job })
                    .with_request(RequestId::new("req-1").unwrap());
                (job, engine.apply(cmd).unwrap())
            };
            let other = {
                let (engine, key) = (w.engine.clone(), w.key.clone());
                thread::spawn(move || send(&engine, &key, 20))
            };
            let (my_id, mine) = send(&w.engine, &w.key, 10);
            let (their_id, theirs) = other.join().unwrap();
            reader.join().unwrap();

            let g = w.finish(ALLOWED);
            assert_eq!(mine, theirs);
            let Outcome::Restarted(r) = mine else {
                panic!("{mine:?}")
            };
            assert_eq!(r.epoch, Epoch(1));
            let restarts = g
                .tasks
                .iter()
                .filter(|t| t.kind == TaskKind::Restart)
                .count();
            assert_eq!(restarts, 1);
            if r.job == my_id {
                "mine applied"
            } else {
                assert_eq!(r.job, their_id);
                "theirs applied"
            }
        },
    );
}

// ---- force_restart racing host task registration and cancel -----------------

const HOST_TASKS: &[(GraphState, u64)] = &[(GraphState::Running, 0), (GraphState::Restarting, 1)];

/// A host registers a task and cancels it while the graph is forced to
/// restart: registration lands before (the task is then cancelled, or
/// failed by the restart and its cancel refused as stale) or is refused
/// because a restarting graph serves no queries.
#[test]
fn restart_vs_register_and_cancel() {
    const OUTCOMES: &[&str] = &["cancelled", "cancel refused", "registration refused"];
    explore("restart_vs_register_and_cancel", OUTCOMES, || {
        let mut w = World::new(Config::default());
        w.running();
        let existing = w.host_task();
        let reader = w.spawn_reader(HOST_TASKS, &existing, true);
        let host = {
            let (engine, key) = (w.engine.clone(), w.key.clone());
            thread::spawn(move || {
                let spec = TaskSpec::new(HostKind::new("async-query").unwrap());
                let ticket = engine.register_task(&key, spec);
                let cancelled = ticket.as_ref().ok().map(|t| engine.cancel(&key, t.id()));
                (ticket, cancelled)
            })
        };
        let r = w.engine.force_restart(&w.key).unwrap();
        let (ticket, cancelled) = host.join().unwrap();
        reader.join().unwrap();

        let g = w.finish(HOST_TASKS);
        assert_restarted_by(task(&g, existing.id()), &r);
        match (ticket, cancelled) {
            (Ok(ticket), Some(Ok(()))) => {
                let t = task(&g, ticket.id());
                assert_eq!(t.status, TaskStatus::Cancelled);
                assert_eq!(r.failed, 1);
                assert!(ticket.token.is_void());
                "cancelled"
            }
            (Ok(ticket), Some(Err(e))) => {
                assert_eq!(e.code(), "STALE_EPOCH", "{e}");
                assert_restarted_by(task(&g, ticket.id()), &r);
                assert_eq!(r.failed, 2);
                assert!(ticket.token.is_void());
                "cancel refused"
            }
            (Err(e), None) => {
                assert_eq!(e.code(), "TRANSITION_REFUSED", "{e}");
                assert_eq!(g.tasks.len(), 3, "start, existing, restart: {:#?}", g.tasks);
                assert_eq!(r.failed, 1);
                "registration refused"
            }
            other => panic!("impossible: {other:?}"),
        }
    });
}

/// A caller cancels a live host task while the graph is forced to
/// restart: the cancel lands (and the restart skips the task) or is
/// refused as stale.
#[test]
fn restart_vs_cancel() {
    explore("restart_vs_cancel", BOTH_ORDERS, || {
        let mut w = World::new(Config::default());
        w.running();
        let victim = w.host_task();
        let reader = w.spawn_reader(HOST_TASKS, &victim, false);
        let canceller = {
            let (engine, key, id) = (w.engine.clone(), w.key.clone(), victim.id());
            thread::spawn(move || engine.cancel(&key, id))
        };
        let r = w.engine.force_restart(&w.key).unwrap();
        let cancelled = canceller.join().unwrap();
        reader.join().unwrap();

        let g = w.finish(HOST_TASKS);
        assert!(victim.token.is_void());
        let t = task(&g, victim.id());
        match cancelled {
            Ok(()) => {
                assert_eq!(t.status, TaskStatus::Cancelled);
                assert_eq!(r.failed, 0);
                LANDED
            }
            Err(e) => {
                assert_eq!(e.code(), "STALE_EPOCH", "{e}");
                assert_restarted_by(t, &r);
                assert_eq!(r.failed, 1);
                REFUSED
            }
        }
    });
}

// ---- a lifecycle job ending while the graph is force-restarted --------------

/// The start job succeeds as the graph is forced to restart.
#[test]
fn start_succeeds_during_restart() {
    const ALLOWED: &[(GraphState, u64)] = &[
        (GraphState::Starting, 0),
        (GraphState::Running, 0),
        (GraphState::Restarting, 1),
    ];
    explore("start_succeeds_during_restart", BOTH_ORDERS, || {
        let mut w = World::new(Config::default());
        let start = w.start();
        let reader = w.spawn_reader(ALLOWED, &start, true);
        let worker = {
            let (engine, task) = (w.engine.clone(), start.task.clone());
            thread::spawn(move || engine.report(&task, Report::Succeeded))
        };
        let r = w.engine.force_restart(&w.key).unwrap();
        let reported = worker.join().unwrap();
        reader.join().unwrap();

        let g = w.finish(ALLOWED);
        let t = task(&g, start.id());
        match reported {
            Ok(()) => {
                assert_eq!(t.status, TaskStatus::Succeeded);
                assert_eq!(r.failed, 0);
                LANDED
            }
            Err(e) => {
                assert_eq!(e.code(), "STALE_EPOCH", "{e}");
                assert_restarted_by(t, &r);
                assert_eq!(r.failed, 1);
                REFUSED
            }
        }
    });
}

/// The stop job fails (the graph would go Abnormal) as it is forced to
/// restart.
#[test]
fn stop_fails_during_restart() {
    const ALLOWED: &[(GraphState, u64)] = &[
        (GraphState::Stopping, 0),
        (GraphState::Abnormal, 0),
        (GraphState::Restarting, 1),
    ];
    explore("stop_fails_during_restart", BOTH_ORDERS, || {
        let mut w = World::new(Config::default());
        w.running();
        let stop = w.stop();
        let reader = w.spawn_reader(ALLOWED, &stop, true);
        let worker = {
            let (engine, task) = (w.engine.clone(), stop.task.clone());
            thread::spawn(move || engine.report(&task, Report::Failed("unload failed".into())))
        };
        let r = w.engine.force_restart(&w.key).unwrap();
        let reported = worker.join().unwrap();
        reader.join().unwrap();

        let g = w.finish(ALLOWED);
        assert_eq!(g.info.state, GraphState::Restarting);
        let t = task(&g, stop.id());
        match reported {
            Ok(()) => {
                assert!(matches!(t.reason, Some(FailReason::Host(_))), "{t:#?}");
                assert_eq!(r.failed, 0);
                LANDED
            }
            Err(e) => {
                assert_eq!(e.code(), "STALE_EPOCH", "{e}");
                assert_restarted_by(t, &r);
                assert_eq!(r.failed, 1);
                REFUSED
            }
        }
    });
}

/// The restart job itself succeeds as a second forced restart comes in:
/// it succeeded first (the second restart then fails nothing) or it is
/// superseded and its report refused.
#[test]
fn restart_job_succeeds_during_restart() {
    const ALLOWED: &[(GraphState, u64)] = &[
        (GraphState::Restarting, 1),
        (GraphState::Running, 1),
        (GraphState::Restarting, 2),
    ];
    explore("restart_job_succeeds_during_restart", BOTH_ORDERS, || {
        let mut w = World::new(Config::default());
        w.running();
        let first = w.restart();
        let reader = w.spawn_reader(ALLOWED, &first, true);
        let worker = {
            let (engine, task) = (w.engine.clone(), first.task.clone());
            thread::spawn(move || engine.report(&task, Report::Succeeded))
        };
        let r = w.engine.force_restart(&w.key).unwrap();
        let reported = worker.join().unwrap();
        reader.join().unwrap();

        let g = w.finish(ALLOWED);
        assert_eq!((g.info.state, r.epoch), (GraphState::Restarting, Epoch(2)));
        let t = task(&g, first.id());
        match reported {
            Ok(()) => {
                assert_eq!(t.status, TaskStatus::Succeeded);
                assert_eq!(r.failed, 0);
                LANDED
            }
            Err(e) => {
                assert_eq!(e.code(), "STALE_EPOCH", "{e}");
                assert_eq!(t.reason, Some(FailReason::Superseded(r.job)));
                assert_eq!(r.failed, 1);
                REFUSED
            }
        }
    });
}

/// An import times out (the host's `expire` pass) as the graph is forced
/// to restart: the deadline fires first (Abnormal, then Restarting) or
/// the restart fails the import and clears its deadline, and the expiry
/// pass, which found the deadline on the lock-free path, changes nothing.
#[test]
fn import_times_out_during_restart() {
    const ALLOWED: &[(GraphState, u64)] = &[
        (GraphState::Importing, 0),
        (GraphState::Abnormal, 0),
        (GraphState::Restarting, 1),
    ];
    explore("import_times_out_during_restart", BOTH_ORDERS, || {
        let config = Config::default().timeout(LifecycleKind::Import, Some(Duration::from_secs(1)));
        let mut w = World::new(config);
        w.running();
        let import = w.import();
        w.clock.set(Timestamp::from_millis(5_000));
        let reader = w.spawn_reader(ALLOWED, &import, true);
        let host = {
            let engine = w.engine.clone();
            thread::spawn(move || engine.expire(Timestamp::from_millis(5_000)))
        };
        let r = w.engine.force_restart(&w.key).unwrap();
        let (timed_out, evicted) = host.join().unwrap();
        reader.join().unwrap();

        let g = w.finish(ALLOWED);
        assert_eq!(evicted, 0);
        assert!(import.token.is_void());
        let t = task(&g, import.id());
        match timed_out {
            1 => {
                assert_eq!(t.reason, Some(FailReason::TimedOut));
                assert_eq!(r.failed, 0);
                LANDED
            }
            0 => {
                assert_restarted_by(t, &r);
                assert_eq!(r.failed, 1);
                REFUSED
            }
            n => panic!("{n} tasks timed out"),
        }
    });
}

// ---- the hand-off ------------------------------------------------------------

/// A worker blocked on the job channel gets the restart job only once the
/// restart committed: the graph already reads Restarting in the job's
/// epoch, and the job's first report is accepted.
#[test]
fn restart_job_handed_over_after_commit() {
    const ALLOWED: &[(GraphState, u64)] =
        &[(GraphState::Importing, 0), (GraphState::Restarting, 1)];
    explore(
        "restart_job_handed_over_after_commit",
        &["handed over"],
        || {
            let mut w = World::new(Config::default());
            w.running();
            let import = w.import();
            let reader = w.spawn_reader(ALLOWED, &import, true);
            let worker = {
                let (engine, graph, jobs) = (w.engine.clone(), w.graph.clone(), w.jobs.clone());
                thread::spawn(move || {
                    let job = jobs.recv().expect("a job");
                    assert_eq!(job.kind, TaskKind::Restart);
                    assert_eq!(graph.status(), Some((GraphState::Restarting, job.epoch())));
                    engine.report(&job.task, Report::Started).unwrap();
                    job.id()
                })
            };
            let r = w.engine.force_restart(&w.key).unwrap();
            let got = worker.join().unwrap();
            reader.join().unwrap();

            assert_eq!(got, r.job);
            w.seen.insert(got);
            let g = w.finish(ALLOWED);
            assert_eq!(task(&g, r.job).status, TaskStatus::Running);
            "handed over"
        },
    );
}
