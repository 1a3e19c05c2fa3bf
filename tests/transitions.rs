//! The contract's tables and promises, checked through the public API only:
//! every (state, operation) pair, every (job kind, end) pair, the forced
//! restart, idempotency, retention, caps, deadlines, queries, project
//! isolation, events and the job hand-off.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use graph_lifecycle::*;

mod common;
use common::*;

const KINDS: [LifecycleKind; 6] = [
    LifecycleKind::Start,
    LifecycleKind::Stop,
    LifecycleKind::Restart,
    LifecycleKind::Import,
    LifecycleKind::Export,
    LifecycleKind::Clear,
];

const ENDS: [JobEnd; 4] = [
    JobEnd::Succeeded,
    JobEnd::Failed,
    JobEnd::Cancelled,
    JobEnd::TimedOut,
];

/// `docs/CONTRACT.md` section 4, "Operations and transitions", written out: every
/// allowed (state, operation) pair on an existing graph. Everything else is
/// refused (create included: the graph exists).
const CONTRACT_ALLOWED: &[(GraphState, Operation, Transition)] = {
    use GraphState::*;
    use LifecycleKind as K;
    use Operation as Op;
    use Transition::{Job, Remove, Stay};
    &[
        (Stopped, Op::Start, Job(Starting, K::Start)),
        (Running, Op::Stop, Job(Stopping, K::Stop)),
        (Abnormal, Op::Stop, Job(Stopping, K::Stop)),
        (Running, Op::Import, Job(Importing, K::Import)),
        (Running, Op::Export, Job(Exporting, K::Export)),
        (Running, Op::Clear, Job(Clearing, K::Clear)),
        (Stopped, Op::ForceRestart, Job(Restarting, K::Restart)),
        (Starting, Op::ForceRestart, Job(Restarting, K::Restart)),
        (Running, Op::ForceRestart, Job(Restarting, K::Restart)),
        (Importing, Op::ForceRestart, Job(Restarting, K::Restart)),
        (Exporting, Op::ForceRestart, Job(Restarting, K::Restart)),
        (Clearing, Op::ForceRestart, Job(Restarting, K::Restart)),
        (Stopping, Op::ForceRestart, Job(Restarting, K::Restart)),
        (Restarting, Op::ForceRestart, Job(Restarting, K::Restart)),
        (Abnormal, Op::ForceRestart, Job(Restarting, K::Restart)),
        (Stopped, Op::Remove, Remove),
        (Abnormal, Op::Remove, Remove),
        // Host tasks run while the graph serves queries (`docs/CONTRACT.md`, section 5).
        (Running, Op::RegisterTask, Stay),
        (Importing, Op::RegisterTask, Stay),
        (Exporting, Op::RegisterTask, Stay),
    ]
};

fn contract_transition(from: GraphState, op: Operation) -> Option<Transition> {
    CONTRACT_ALLOWED
        .iter()
        .find(|(s, o, _)| *s == from && *o == op)
        .map(|(_, _, t)| *t)
}

/// `docs/CONTRACT.md` section 4, "Job outcomes reported by the host", written out.
const CONTRACT_OUTCOMES: &[(LifecycleKind, JobEnd, GraphState)] = {
    use GraphState::*;
    use JobEnd::*;
    use LifecycleKind as K;
    &[
        (K::Start, Succeeded, Running),
        (K::Start, Failed, Abnormal),
        (K::Start, Cancelled, Abnormal),
        (K::Start, TimedOut, Abnormal),
        (K::Stop, Succeeded, Stopped),
        (K::Stop, Failed, Abnormal),
        (K::Stop, Cancelled, Abnormal),
        (K::Stop, TimedOut, Abnormal),
        (K::Restart, Succeeded, Running),
        (K::Restart, Failed, Abnormal),
        (K::Restart, Cancelled, Abnormal),
        (K::Restart, TimedOut, Abnormal),
        (K::Import, Succeeded, Running),
        (K::Import, Failed, Running),
        (K::Import, Cancelled, Running),
        (K::Import, TimedOut, Abnormal),
        (K::Export, Succeeded, Running),
        (K::Export, Failed, Running),
        (K::Export, Cancelled, Running),
        (K::Export, TimedOut, Abnormal),
        (K::Clear, Succeeded, Running),
        (K::Clear, Failed, Abnormal),
        (K::Clear, Cancelled, Abnormal),
        (K::Clear, TimedOut, Abnormal),
    ]
};

fn contract_outcome(kind: LifecycleKind, end: JobEnd) -> GraphState {
    CONTRACT_OUTCOMES
        .iter()
        .find(|(k, e, _)| *k == kind && *e == end)
        .map(|(_, _, s)| *s)
        .expect("the contract's table has a row for every (kind, end)")
}

/// The task kind a lifecycle job of `kind` carries in these tests.
fn task_kind(kind: LifecycleKind) -> TaskKind {
    match kind {
        LifecycleKind::Start => TaskKind::Start,
        LifecycleKind::Stop => TaskKind::Stop,
        LifecycleKind::Restart => TaskKind::Restart,
        LifecycleKind::Import => TaskKind::Import,
        LifecycleKind::Export => TaskKind::Export,
        LifecycleKind::Clear => TaskKind::Clear {
            clear_metadata: true,
        },
    }
}

/// The payload each operation is given by [`perform`].
fn op_payload(op: Operation) -> Payload {
    match op {
        Operation::Start => Payload::from("backup-7"),
        Operation::Import => Payload::from("edges.csv"),
        Operation::Export => Payload::from("s3://out"),
        Operation::RegisterTask => Payload::from("iterations=20"),
        _ => Payload::EMPTY,
    }
}

/// What a successful operation returned.
#[derive(Debug)]
enum Done {
    Created,
    Job(JobId),
    Restart(Restart),
    Ticket(Job),
    Removed,
}

fn perform(engine: &Engine, key: &GraphKey, op: Operation) -> Result<Done, Error> {
    let payload = op_payload(op);
    match op {
        Operation::Create => engine.create_graph(key).map(|_| Done::Created),
        Operation::Start => engine.start_with(key, payload).map(Done::Job),
        Operation::Stop => engine.stop(key).map(Done::Job),
        Operation::Import => engine.import(key, payload).map(Done::Job),
        Operation::Export => engine.export(key, payload).map(Done::Job),
        Operation::Clear => engine.clear(key, true).map(Done::Job),
        Operation::ForceRestart => engine.force_restart(key).map(Done::Restart),
        Operation::Remove => engine.remove_graph(key).map(|()| Done::Removed),
        Operation::RegisterTask => engine
            .register_task(
                key,
                TaskSpec::new(HostKind::new("pagerank").unwrap()).payload(payload),
            )
            .map(Done::Ticket),
    }
}

/// Creates `key` and brings it to `to` through the public API; returns the
/// graph's live lifecycle job, if the state has one. The receiver is empty
/// on return.
fn drive(rig: &Rig, key: &GraphKey, to: GraphState) -> Option<Job> {
    let job = match to {
        GraphState::Stopped => {
            rig.engine.create_graph(key).unwrap();
            None
        }
        GraphState::Starting => {
            rig.engine.create_graph(key).unwrap();
            rig.engine.start(key).unwrap();
            Some(rig.job())
        }
        GraphState::Running => {
            rig.running(key);
            None
        }
        GraphState::Importing => {
            rig.running(key);
            rig.engine.import(key, "seed.csv").unwrap();
            Some(rig.job())
        }
        GraphState::Exporting => {
            rig.running(key);
            rig.engine.export(key, "dump").unwrap();
            Some(rig.job())
        }
        GraphState::Clearing => {
            rig.running(key);
            rig.engine.clear(key, false).unwrap();
            Some(rig.job())
        }
        GraphState::Stopping => {
            rig.running(key);
            rig.engine.stop(key).unwrap();
            Some(rig.job())
        }
        GraphState::Restarting => {
            rig.running(key);
            rig.engine.force_restart(key).unwrap();
            Some(rig.job())
        }
        GraphState::Abnormal => {
            rig.engine.create_graph(key).unwrap();
            rig.engine.start(key).unwrap();
            let start = rig.job();
            rig.report(&start, Report::Failed("no memory".into()));
            None
        }
    };
    assert_eq!(rig.engine.state(key).unwrap(), to, "driving to {to}");
    rig.assert_no_job();
    check_invariants(&rig.engine);
    rig.tick();
    job
}

/// `docs/CONTRACT.md` section 4's last promise, and the bookkeeping of `GraphInfo`: at
/// most one live lifecycle job per graph, matching its state; live tasks
/// belong to the current epoch.
fn check_invariants(engine: &Engine) {
    for g in engine.snapshot().graphs {
        let live: Vec<&TaskInfo> = g.tasks.iter().filter(|t| !t.status.is_terminal()).collect();
        let lifecycle: Vec<&TaskInfo> = live
            .iter()
            .copied()
            .filter(|t| t.kind.lifecycle().is_some())
            .collect();
        assert!(lifecycle.len() <= 1, "{}: {lifecycle:#?}", g.info.key);
        assert_eq!(
            g.info.state.job_kind(),
            lifecycle.first().and_then(|t| t.kind.lifecycle()),
            "{}: state and live job disagree",
            g.info.key
        );
        assert_eq!(g.info.job, lifecycle.first().map(|t| t.id));
        for t in &live {
            assert_eq!(t.epoch, g.info.epoch, "live task of an older epoch: {t:?}");
            assert!(t.ended_at.is_none());
        }
        assert_eq!(g.info.live_tasks, live.len());
        assert_eq!(g.info.retained_tasks, g.tasks.len() - live.len());
        for t in g.tasks.iter().filter(|t| t.status.is_terminal()) {
            assert!(t.ended_at.is_some(), "terminal task without end: {t:?}");
        }
    }
}

fn graph_snapshot(engine: &Engine, key: &GraphKey) -> GraphSnapshot {
    engine
        .snapshot()
        .graphs
        .into_iter()
        .find(|g| &g.info.key == key)
        .expect("the graph is in the snapshot")
}

// ---- the transition table -------------------------------------------------

#[test]
fn transition_function_is_the_contract_table() {
    for state in GraphState::ALL {
        for op in Operation::ALL {
            assert_eq!(
                transition(state, op),
                contract_transition(state, op),
                "transition({state}, {op})"
            );
        }
    }
}

#[test]
fn every_state_and_operation_pair_does_what_the_table_says_or_changes_nothing() {
    let mut allowed = 0;
    let mut refused = 0;
    for state in GraphState::ALL {
        for op in Operation::ALL {
            let rig = Rig::new();
            let k = key("proj", "g");
            let prior = drive(&rig, &k, state);
            let before = rig.engine.snapshot();
            let before_graph = graph_snapshot(&rig.engine, &k);
            let at = rig.now();
            let result = perform(&rig.engine, &k, op);
            let ctx = format!("{op} in {state}: {result:?}");
            match transition(state, op) {
                None => {
                    refused += 1;
                    let err = result.expect_err(&ctx);
                    let expected = if op == Operation::Create {
                        Error::GraphExists { key: k.clone() }
                    } else {
                        Error::TransitionRefused {
                            key: k.clone(),
                            state,
                            op,
                        }
                    };
                    assert_eq!(err, expected, "{ctx}");
                    let msg = err.to_string();
                    assert!(msg.contains(&k.to_string()), "{msg}");
                    if op != Operation::Create {
                        assert!(msg.contains(state.name()), "{msg}");
                        assert!(msg.contains(op.name()), "{msg}");
                        assert_eq!(err.code(), "TRANSITION_REFUSED");
                        assert_eq!(err.http_status(), 400);
                    } else {
                        assert_eq!(err.code(), "GRAPH_EXISTS");
                        assert_eq!(err.http_status(), 409);
                    }
                    assert_eq!(rig.engine.snapshot(), before, "{ctx}");
                    rig.assert_no_job();
                    if let Some(job) = &prior {
                        assert!(!job.token.is_void(), "{ctx}");
                    }
                }
                Some(Transition::Job(to, kind)) => {
                    allowed += 1;
                    let done = result.expect(&ctx);
                    let (id, epoch) = match done {
                        Done::Job(id) => (id, before_graph.info.epoch),
                        Done::Restart(r) => {
                            assert_eq!(kind, LifecycleKind::Restart);

                            assert_eq!(r.epoch, before_graph.info.epoch.next(), "{ctx}");
                            assert_eq!(r.failed, usize::from(prior.is_some()), "{ctx}");
                            (r.job, r.epoch)
                        }
                        other => panic!("{ctx}: unexpected {other:?}"),
                    };
                    assert_eq!(rig.engine.state(&k).unwrap(), to, "{ctx}");
                    let job = rig.job();
                    rig.assert_no_job();
                    assert_eq!(job.id(), id);
                    assert_eq!(job.key(), &k);
                    assert_eq!(job.epoch(), epoch);
                    assert_eq!(job.kind, task_kind(kind), "{ctx}");
                    assert_eq!(job.payload, op_payload(op));
                    assert!(!job.token.is_void());
                    let t = rig.engine.task(&k, id).unwrap();
                    assert_eq!(t.status, TaskStatus::Pending);
                    assert_eq!(t.kind, task_kind(kind));
                    assert_eq!(t.epoch, epoch);
                    assert_eq!(t.stoppable, kind != LifecycleKind::Restart);
                    assert_eq!(t.payload, op_payload(op));
                    assert_eq!(t.created_at, at);
                    assert_eq!(t.progress, 0);
                    let after = graph_snapshot(&rig.engine, &k);
                    assert_eq!(after.info.job, Some(id));
                    assert_eq!(after.info.epoch, epoch);
                    assert_eq!(after.tasks.last(), Some(&t), "the new task is the newest");
                    if op == Operation::ForceRestart {
                        if let Some(p) = &prior {
                            let old = rig.engine.task(&k, p.id()).unwrap();
                            assert_eq!(old.status, TaskStatus::Failed);
                            let reason = if p.kind == TaskKind::Restart {
                                FailReason::Superseded(id)
                            } else {
                                FailReason::ForceRestarted(id)
                            };
                            assert_eq!(old.reason, Some(reason));
                            assert!(p.token.is_void());
                        }
                    } else {
                        // Nothing else moved: the old tasks are as they were.
                        assert_eq!(
                            &after.tasks[..after.tasks.len() - 1],
                            &before_graph.tasks[..],
                            "{ctx}"
                        );
                    }
                }
                Some(Transition::Stay) => {
                    allowed += 1;
                    let Done::Ticket(ticket) = result.expect(&ctx) else {
                        panic!("{ctx}: a host task yields a ticket");
                    };
                    assert_eq!(rig.engine.state(&k).unwrap(), state, "{ctx}");
                    rig.assert_no_job();
                    assert_eq!(
                        ticket.kind,
                        TaskKind::Host(HostKind::new("pagerank").unwrap())
                    );
                    assert_eq!(ticket.epoch(), before_graph.info.epoch);
                    let t = rig.engine.task(&k, ticket.id()).unwrap();
                    assert_eq!(t.status, TaskStatus::Pending);
                    assert_eq!(t.kind, ticket.kind);
                    assert!(t.stoppable);
                    assert_eq!(t.payload, op_payload(op));
                    let after = graph_snapshot(&rig.engine, &k);
                    assert_eq!(after.info.job, before_graph.info.job, "{ctx}");
                    assert_eq!(after.info.live_tasks, before_graph.info.live_tasks + 1);
                    if let Some(p) = &prior {
                        assert!(!p.token.is_void());
                    }
                }
                Some(Transition::Remove) => {
                    allowed += 1;
                    assert!(matches!(result.expect(&ctx), Done::Removed));
                    assert_eq!(
                        rig.engine.state(&k),
                        Err(Error::GraphNotFound { key: k.clone() })
                    );
                    assert!(rig.engine.snapshot().graphs.is_empty());
                    assert_eq!(rig.engine.graph_count(), 0);
                    rig.assert_no_job();
                }
            }
            check_invariants(&rig.engine);
        }
    }
    assert_eq!(allowed, CONTRACT_ALLOWED.len());
    assert_eq!(allowed + refused, 81);
}

// ---- the outcome table ----------------------------------------------------

#[test]
fn job_outcome_function_is_the_contract_table() {
    assert_eq!(CONTRACT_OUTCOMES.len(), KINDS.len() * ENDS.len());
    for kind in KINDS {
        for end in ENDS {
            assert_eq!(
                job_outcome(kind, end),
                contract_outcome(kind, end),
                "job_outcome({kind}, {end:?})"
            );
        }
    }
}

/// Brings a fresh graph to the state where a `kind` job is live, and
/// returns that job.
fn live_job(rig: &Rig, k: &GraphKey, kind: LifecycleKind) -> Job {
    if kind == LifecycleKind::Start {
        rig.engine.create_graph(k).unwrap();
    } else {
        rig.running(k);
    }
    match kind {
        LifecycleKind::Start => rig.engine.start(k).map(drop),
        LifecycleKind::Stop => rig.engine.stop(k).map(drop),
        LifecycleKind::Restart => rig.engine.force_restart(k).map(drop),
        LifecycleKind::Import => rig.engine.import(k, "edges.csv").map(drop),
        LifecycleKind::Export => rig.engine.export(k, "dump").map(drop),
        LifecycleKind::Clear => rig.engine.clear(k, true).map(drop),
    }
    .unwrap();
    let job = rig.job();
    assert_eq!(job.kind.lifecycle(), Some(kind));
    job
}

#[test]
fn every_lifecycle_job_end_lands_the_graph_where_the_outcome_table_says() {
    let timeout = Duration::from_secs(60);
    for kind in KINDS {
        for end in ENDS {
            let rig = Rig::with(Config::default().timeout(kind, Some(timeout)));
            let k = key("proj", "g");
            let job = live_job(&rig, &k, kind);
            let created = rig.engine.task(&k, job.id()).unwrap().created_at;
            rig.tick();
            let ctx = format!("{kind} job {end:?}");
            let (status, reason) = match end {
                JobEnd::Succeeded => {
                    rig.report(&job, Report::Started);
                    rig.report(&job, Report::Progress(60));
                    rig.report(&job, Report::Succeeded);
                    (TaskStatus::Succeeded, None)
                }
                JobEnd::Failed => {
                    rig.report(&job, Report::Started);
                    rig.report(&job, Report::Failed("disk full".into()));
                    (
                        TaskStatus::Failed,
                        Some(FailReason::Host("disk full".into())),
                    )
                }
                JobEnd::Cancelled => {
                    let before = rig.engine.snapshot();
                    let res = rig.engine.cancel(&k, job.id());
                    if kind == LifecycleKind::Restart {
                        // The table's row cannot be reached: a restart job
                        // is not stoppable.
                        assert_eq!(
                            res,
                            Err(Error::NotStoppable {
                                key: k.clone(),
                                job: job.id(),
                                kind: "restart".into()
                            }),
                            "{ctx}"
                        );
                        assert_eq!(rig.engine.snapshot(), before);
                        assert!(!job.token.is_void());
                        continue;
                    }
                    res.unwrap();
                    (TaskStatus::Cancelled, Some(FailReason::Cancelled))
                }
                JobEnd::TimedOut => {
                    let deadline = created.saturating_add(timeout);
                    assert_eq!(
                        rig.engine.task(&k, job.id()).unwrap().deadline,
                        Some(deadline)
                    );
                    assert_eq!(rig.engine.next_deadline(), Some(deadline), "{ctx}");
                    let before = rig.engine.snapshot();
                    let early = Timestamp::from_millis(deadline.as_millis() - 1);
                    assert_eq!(rig.engine.expire(early), (0, 0), "{ctx}");
                    assert_eq!(rig.engine.snapshot(), before, "{ctx}");
                    assert!(!job.token.is_void());
                    rig.clock.set(deadline);
                    assert_eq!(rig.engine.expire(deadline), (1, 0), "{ctx}");
                    (TaskStatus::Failed, Some(FailReason::TimedOut))
                }
            };
            assert_eq!(
                rig.engine.state(&k).unwrap(),
                contract_outcome(kind, end),
                "{ctx}"
            );
            let t = rig.engine.task(&k, job.id()).unwrap();
            assert_eq!(t.status, status, "{ctx}");
            assert_eq!(t.reason, reason, "{ctx}");
            assert_eq!(t.ended_at, Some(rig.now()), "{ctx}");
            assert_eq!(job.token.is_void(), end != JobEnd::Succeeded, "{ctx}");
            let info = rig.engine.graph_info(&k).unwrap();
            assert_eq!(info.job, None);
            assert_eq!(info.live_tasks, 0);
            assert_eq!(rig.engine.next_deadline().filter(|d| *d <= rig.now()), None);
            rig.assert_no_job();
            check_invariants(&rig.engine);
        }
    }
}

#[test]
fn a_restart_job_is_not_stoppable_and_a_refused_cancel_changes_nothing() {
    let rig = Rig::new();
    let k = key("proj", "g");
    rig.running(&k);
    let r = rig.engine.force_restart(&k).unwrap();
    let job = rig.job();
    rig.report(&job, Report::Started);
    let before = rig.engine.snapshot();
    let err = rig.engine.cancel(&k, r.job).unwrap_err();
    assert_eq!(
        err,
        Error::NotStoppable {
            key: k.clone(),
            job: r.job,
            kind: "restart".into()
        }
    );
    assert_eq!(err.code(), "NOT_STOPPABLE");
    let msg = err.to_string();
    assert!(
        msg.contains(&r.job.to_string()) && msg.contains(&k.to_string()),
        "{msg}"
    );
    assert_eq!(rig.engine.snapshot(), before);
    assert_eq!(rig.engine.state(&k).unwrap(), GraphState::Restarting);
    assert!(!job.token.is_void());
    rig.assert_no_job();

    // A host task registered as not stoppable is refused the same way.
    rig.report(&job, Report::Succeeded);
    let ticket = rig
        .engine
        .register_task(
            &k,
            TaskSpec::new(HostKind::new("query").unwrap()).stoppable(false),
        )
        .unwrap();
    let before = rig.engine.snapshot();
    let err = rig.engine.cancel(&k, ticket.id()).unwrap_err();
    assert_eq!(err.code(), "NOT_STOPPABLE");
    assert_eq!(rig.engine.snapshot(), before);
}

// ---- force_restart (`docs/CONTRACT.md`, section 6) ----------------------------------------

#[test]
fn force_restart_fails_every_live_task_bumps_the_epoch_and_hands_over_one_restart_job() {
    let rig = Rig::new();
    let k = key("proj", "g");
    let other = key("proj", "other");
    rig.running(&k);
    rig.running(&other);
    let bystander = rig.host_task(&other, "bfs");

    let pending = rig.host_task(&k, "pagerank");
    let running = rig.host_task(&k, "louvain");
    rig.report(&running, Report::Started);
    rig.report(&running, Report::Progress(40));
    let finished = rig.host_task(&k, "wcc");
    rig.report(&finished, Report::Succeeded);
    rig.tick();
    rig.engine.import(&k, "edges.csv").unwrap();
    let import = rig.job();
    rig.report(&import, Report::Progress(10));
    let during_import = rig.host_task(&k, "async-query");

    let before = graph_snapshot(&rig.engine, &k);
    let finished_before = rig.engine.task(&k, finished.id()).unwrap();
    let other_before = graph_snapshot(&rig.engine, &other);
    let e0 = before.info.epoch;
    rig.tick();
    let at = rig.now();
    let r = rig.engine.force_restart(&k).unwrap();

    assert_eq!(r.epoch, e0.next());
    assert_eq!(r.failed, 4);
    for victim in [&pending, &running, &import, &during_import] {
        let t = rig.engine.task(&k, victim.id()).unwrap();
        assert_eq!(t.status, TaskStatus::Failed, "{t:?}");
        assert_eq!(t.reason, Some(FailReason::ForceRestarted(r.job)));
        assert_eq!(t.ended_at, Some(at));
        assert_eq!(t.epoch, e0);
        assert!(victim.token.is_void(), "{t:?}");
    }
    assert_eq!(rig.engine.task(&k, finished.id()).unwrap(), finished_before);
    assert!(!finished.token.is_void());
    assert_eq!(graph_snapshot(&rig.engine, &other), other_before);
    assert!(!bystander.token.is_void());

    let info = rig.engine.graph_info(&k).unwrap();
    assert_eq!(info.state, GraphState::Restarting);
    assert_eq!(info.epoch, e0.next());
    assert_eq!(info.job, Some(r.job));
    assert_eq!(info.live_tasks, 1);
    let handle = rig.engine.graph(&k).unwrap();
    assert_eq!(handle.status(), Some((GraphState::Restarting, e0.next())));
    let restart = rig.engine.task(&k, r.job).unwrap();
    assert_eq!(restart.kind, TaskKind::Restart);
    assert_eq!(restart.status, TaskStatus::Pending);
    assert!(!restart.stoppable);
    assert_eq!(restart.epoch, e0.next());
    assert_eq!(restart.created_at, at);

    let job = rig.job();
    rig.assert_no_job();
    assert_eq!(job.id(), r.job);
    assert_eq!(job.kind, TaskKind::Restart);
    assert_eq!(job.epoch(), e0.next());
    assert!(!job.token.is_void());

    // Reports from the voided work are refused and change nothing.
    let snap = rig.engine.snapshot();
    for victim in [&import, &running] {
        let err = rig
            .engine
            .report(&victim.task, Report::Progress(90))
            .unwrap_err();
        assert_eq!(err.code(), "STALE_EPOCH", "{err}");
    }
    assert_eq!(rig.engine.snapshot(), snap);

    // A second forced restart supersedes the live restart.
    rig.tick();
    let r2 = rig.engine.force_restart(&k).unwrap();
    assert_eq!(r2.failed, 1);
    assert_eq!(r2.epoch, e0.next().next());
    let old = rig.engine.task(&k, r.job).unwrap();
    assert_eq!(old.status, TaskStatus::Failed);
    assert_eq!(old.reason, Some(FailReason::Superseded(r2.job)));
    assert!(job.token.is_void());
    let job2 = rig.job();
    rig.assert_no_job();
    assert_eq!(job2.id(), r2.job);
    assert_eq!(
        rig.engine
            .report(&job.task, Report::Succeeded)
            .unwrap_err()
            .code(),
        "STALE_EPOCH"
    );
    rig.report(&job2, Report::Succeeded);
    assert_eq!(rig.engine.state(&k).unwrap(), GraphState::Running);
    check_invariants(&rig.engine);
}

// ---- retries --------------------------------------------------------------------

fn req(s: &str) -> Option<RequestId> {
    Some(RequestId::new(s).unwrap())
}

#[test]
fn a_retried_restart_returns_the_same_restart_and_changes_nothing() {
    let rig = Rig::new();
    let k = key("proj", "g");
    rig.running(&k);
    let r1 = rig.engine.request(req("req-1")).force_restart(&k).unwrap();
    let job = rig.job();
    rig.report(&job, Report::Started);
    let events = rig.engine.subscribe();
    for _ in 0..3 {
        rig.tick();
        let again = rig.unchanged(|e| e.request(req("req-1")).force_restart(&k));
        assert_eq!(again, r1);
        assert!(!job.token.is_void());
    }
    // Still the first answer once the restart ended: the client polls it.
    rig.report(&job, Report::Succeeded);
    let late = rig.unchanged(|e| e.request(req("req-1")).force_restart(&k));
    assert_eq!(late, r1);
    assert_eq!(
        events.drain().len(),
        2,
        "only the report's events: the task and the state"
    );
}

#[test]
fn another_request_id_or_none_gives_a_new_restart() {
    let rig = Rig::new();
    let k = key("proj", "g");
    rig.running(&k);
    let r1 = rig.engine.request(req("k1")).force_restart(&k).unwrap();
    let j1 = rig.job();
    rig.tick();
    let r2 = rig.engine.request(req("k2")).force_restart(&k).unwrap();
    assert_ne!(r2.job, r1.job);
    assert_eq!(r2.epoch, r1.epoch.next());
    assert!(j1.token.is_void());
    assert_eq!(rig.job().id(), r2.job);
    assert_eq!(
        rig.engine.task(&k, r1.job).unwrap().reason,
        Some(FailReason::Superseded(r2.job))
    );
    let r3 = rig.engine.force_restart(&k).unwrap();
    let r4 = rig.engine.force_restart(&k).unwrap();
    assert!(r3.job != r4.job && r4.epoch == r3.epoch.next());
    assert_eq!(rig.job().id(), r3.job);
    assert_eq!(rig.job().id(), r4.job);
    // "k1" still answers with its own restart, superseded since.
    assert_eq!(
        rig.unchanged(|e| e.request(req("k1")).force_restart(&k)),
        r1
    );
}

/// Each mutating operation, retried with its request id after it
/// succeeded, is answered as the first time: never GRAPH_EXISTS,
/// TRANSITION_REFUSED, TASK_TERMINAL or DUPLICATE_JOB_ID for its own
/// earlier success.
#[test]
fn a_retry_after_success_is_answered_as_the_first_call_and_changes_nothing() {
    let rig = Rig::new();
    let k = key("proj", "g");
    let created = rig.engine.request(req("create")).create_graph(&k).unwrap();
    let again = rig.unchanged(|e| e.request(req("create")).create_graph(&k));
    assert_eq!(again.state(), created.state());
    assert_eq!(
        rig.refused(|e| e.create_graph(&k).map(drop)).code(),
        "GRAPH_EXISTS"
    );

    let start = rig.engine.request(req("start")).start(&k).unwrap();
    let job = rig.job();
    assert_eq!(rig.unchanged(|e| e.request(req("start")).start(&k)), start);
    rig.tick();
    rig.engine
        .request(req("done"))
        .report(&job.task, Report::Succeeded)
        .unwrap();
    rig.unchanged(|e| e.request(req("done")).report(&job.task, Report::Succeeded));

    for (name, op) in [("import", 0), ("export", 1), ("clear", 2)] {
        let call = |e: &Engine| match op {
            0 => e.request(req(name)).import(&k, "x"),
            1 => e.request(req(name)).export(&k, "x"),
            _ => e.request(req(name)).clear(&k, true),
        };
        let id = call(&rig.engine).unwrap();
        let job = rig.job();
        assert_eq!(rig.unchanged(call), id, "{name}");
        rig.tick();
        rig.engine
            .request(req(&format!("{name}-cancel")))
            .cancel(&k, job.id())
            .unwrap();
        rig.unchanged(|e| {
            e.request(req(&format!("{name}-cancel")))
                .cancel(&k, job.id())
        });
        if rig.engine.state(&k).unwrap() == GraphState::Abnormal {
            rig.engine.stop(&k).unwrap();
            rig.report(&rig.job(), Report::Succeeded);
            rig.engine.start(&k).unwrap();
            rig.report(&rig.job(), Report::Succeeded);
        }
    }

    let spec = TaskSpec::new(HostKind::new("algo").unwrap());
    let ticket = rig
        .engine
        .request(req("register"))
        .register_task(&k, spec.clone())
        .unwrap();
    let again = rig.unchanged(|e| e.request(req("register")).register_task(&k, spec.clone()));
    assert_eq!(again.task, ticket.task);
    assert!(!again.token.is_void());
    rig.engine
        .request(req("cancel-it"))
        .cancel(&k, ticket.id())
        .unwrap();
    assert!(
        again.token.is_void(),
        "the retry's ticket shares the task's token"
    );

    let stop = rig.engine.request(req("stop")).stop(&k).unwrap();
    rig.report(&rig.job(), Report::Succeeded);
    assert_eq!(rig.unchanged(|e| e.request(req("stop")).stop(&k)), stop);

    rig.engine.request(req("remove")).remove_graph(&k).unwrap();
    rig.unchanged(|e| e.request(req("remove")).remove_graph(&k));
    // A retried create whose graph is gone: the first answer, a handle
    // that reads "removed", and no graph made.
    let late = rig.unchanged(|e| e.request(req("create")).create_graph(&k));
    assert_eq!(late.state(), None);
    assert_eq!(rig.engine.graph_count(), 0);
    rig.assert_no_job();
}

/// A refusal is an answer too: the retry gets it again, even once the
/// state would allow the command.
#[test]
fn a_retry_after_a_refusal_gets_the_same_refusal_even_when_the_state_moved_on() {
    let rig = Rig::new();
    let k = key("proj", "g");
    let missing = rig
        .engine
        .request(req("early-start"))
        .start(&k)
        .unwrap_err();
    assert_eq!(missing.code(), "GRAPH_NOT_FOUND");
    rig.engine.create_graph(&k).unwrap();
    let again = rig.unchanged(|e| Ok(e.request(req("early-start")).start(&k).unwrap_err()));
    assert_eq!(again, missing);

    let refused = rig.engine.request(req("stop")).stop(&k).unwrap_err();
    assert_eq!(refused.code(), "TRANSITION_REFUSED");
    rig.engine.start(&k).unwrap();
    rig.report(&rig.job(), Report::Succeeded);
    // Running now, where a stop would be allowed: the retry is still the
    // refusal it was.
    let again = rig.unchanged(|e| Ok(e.request(req("stop")).stop(&k).unwrap_err()));
    assert_eq!(again, refused);
}

#[test]
fn a_request_id_used_again_for_another_command_is_refused_as_reused() {
    let rig = Rig::new();
    let k = key("proj", "g");
    rig.running(&k);
    let t = rig.host_task(&k, "algo");
    let u = rig.host_task(&k, "algo");
    rig.engine
        .request(req("r"))
        .report(&t.task, Report::Progress(10))
        .unwrap();
    let err = rig.refused(|e| e.request(req("r")).report(&u.task, Report::Progress(10)));
    assert_eq!((err.code(), err.http_status()), ("REQUEST_ID_REUSED", 409));
    assert!(err.to_string().contains(&t.id().to_string()), "{err}");
    let err = rig.refused(|e| e.request(req("r")).force_restart(&k));
    assert!(err.to_string().contains("force_restart"), "{err}");
}

#[test]
fn the_window_forgets_answers_past_its_age_and_count() {
    let rig = Rig::with(
        Config::default()
            .request_window(2)
            .request_window_age(Some(Duration::from_secs(60))),
    );
    let k = key("proj", "g");
    rig.running(&k);
    let r1 = rig.engine.request(req("a")).force_restart(&k).unwrap();
    rig.clock.advance(Duration::from_secs(60));
    let r2 = rig.engine.request(req("a")).force_restart(&k).unwrap();
    assert_ne!(r1.job, r2.job, "past its age, the id is new again");
    rig.engine.request(req("b")).force_restart(&k).unwrap();
    rig.engine.request(req("c")).force_restart(&k).unwrap();
    let r3 = rig.engine.request(req("a")).force_restart(&k).unwrap();
    assert_ne!(r3.job, r2.job, "evicted by the count bound");
}

#[test]
fn removed_graphs_windows_are_bounded_oldest_first() {
    let rig = Rig::with(Config::default().max_absent_windows(2));
    for (i, g) in ["a", "b", "c"].into_iter().enumerate() {
        let k = key("proj", g);
        rig.engine.create_graph(&k).unwrap();
        rig.tick();
        rig.engine
            .request(req(&format!("rm-{i}")))
            .remove_graph(&k)
            .unwrap();
    }
    for (i, g) in [(1, "b"), (2, "c")] {
        rig.unchanged(|e| {
            e.request(req(&format!("rm-{i}")))
                .remove_graph(&key("proj", g))
        });
    }
    // "a" was removed first: its window went when "c"'s came.
    let err = rig
        .engine
        .request(req("rm-0"))
        .remove_graph(&key("proj", "a"));
    assert_eq!(err.unwrap_err().code(), "GRAPH_NOT_FOUND");
}

// ---- retention, caps, deadlines ---------------------------------------------

#[test]
fn retention_by_count_evicts_the_oldest_ended_first() {
    let rig = Rig::with(
        Config::default()
            .max_retained_per_graph(3)
            .retention_age(None),
    );
    let k = key("proj", "g");
    rig.running(&k); // the start job is the first terminal task
    let start_id = rig.engine.tasks(&k, &TaskQuery::new()).unwrap().items[0].id;
    let tasks: Vec<Job> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|n| rig.host_task(&k, n))
        .collect();
    // End them in an order unlike their creation order: c, a, e, b, d.
    for i in [2, 0, 4, 1, 3] {
        rig.report(&tasks[i], Report::Succeeded);
        let info = rig.engine.graph_info(&k).unwrap();
        assert!(info.retained_tasks <= 3, "{info:?}");
    }
    let missing = |id: JobId| {
        assert_eq!(
            rig.engine.task(&k, id),
            Err(Error::TaskNotFound {
                key: k.clone(),
                job: id
            })
        )
    };
    missing(start_id);
    missing(tasks[2].id());
    missing(tasks[0].id());
    for i in [4, 1, 3] {
        assert_eq!(
            rig.engine.task(&k, tasks[i].id()).unwrap().status,
            TaskStatus::Succeeded
        );
    }
    let page = rig.engine.tasks(&k, &TaskQuery::new()).unwrap();
    assert_eq!(page.total, 3);
    assert_eq!(rig.engine.graph_info(&k).unwrap().retained_tasks, 3);

    // Live tasks are never evicted by the count bound.
    let live: Vec<Job> = (0..5)
        .map(|i| rig.host_task(&k, &format!("l{i}")))
        .collect();
    rig.report(&live[0], Report::Succeeded);
    for j in &live[1..] {
        assert_eq!(
            rig.engine.task(&k, j.id()).unwrap().status,
            TaskStatus::Pending
        );
    }
    let info = rig.engine.graph_info(&k).unwrap();
    assert_eq!((info.live_tasks, info.retained_tasks), (4, 3));
    // A forced restart failing more tasks than the bound keeps the newest.
    let r = rig.engine.force_restart(&k).unwrap();
    let info = rig.engine.graph_info(&k).unwrap();
    assert_eq!((info.live_tasks, info.retained_tasks), (1, 3));
    assert_eq!(
        rig.engine.task(&k, r.job).unwrap().status,
        TaskStatus::Pending
    );
    check_invariants(&rig.engine);
}

/// End times out of order (a wall clock stepped back, or an expiry
/// committed after commands with later times): every task past its age is
/// evicted, none is kept past it, and `next_deadline` names the oldest.
#[test]
fn retention_by_age_evicts_every_task_past_its_age_even_when_end_times_are_out_of_order() {
    let (engine, _jobs) = Engine::builder()
        .config(Config::default().retention_age(Some(Duration::from_millis(100))))
        .build();
    let k = key("p", "g");
    let ids = SequentialIds::new(1);
    let t = Timestamp::from_millis;
    let apply = |at, op| engine.apply(Command::new(k.clone(), at, op)).unwrap();
    apply(t(0), Op::Create);
    let start = ids.next_id(t(0));
    apply(
        t(0),
        Op::Start {
            job: start,
            payload: Payload::EMPTY,
        },
    );
    let done = |job| Op::Report {
        job,
        epoch: Epoch::ZERO,
        report: Report::Succeeded,
    };
    apply(t(0), done(start));
    let (a, b) = (ids.next_id(t(1)), ids.next_id(t(2)));
    for job in [a, b] {
        let spec = TaskSpec::new(HostKind::new("x").unwrap());
        apply(t(1), Op::RegisterTask { job, spec });
    }
    apply(t(1_000), done(a));
    apply(t(10), done(b)); // the clock stepped back
    assert_eq!(
        engine.next_deadline(),
        Some(t(100)),
        "the start job, ended at 0"
    );
    assert_eq!(
        engine
            .apply(Command::new(k.clone(), t(500), Op::Expire))
            .unwrap(),
        Outcome::Expired {
            timed_out: 0,
            evicted: 2
        }
    );
    let left: Vec<JobId> = engine.snapshot().graphs[0]
        .tasks
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(left, [a]);
    assert_eq!(engine.next_deadline(), Some(t(1_100)));
}

#[test]
fn retention_by_age_evicts_terminal_tasks_on_expire() {
    let age = Duration::from_secs(60);
    let rig = Rig::with(Config::default().retention_age(Some(age)));
    let k = key("proj", "g");
    rig.running(&k);
    let start = rig.engine.tasks(&k, &TaskQuery::new()).unwrap().items[0].clone();
    let start_end = start.ended_at.unwrap();

    rig.clock.advance(Duration::from_secs(10));
    let a = rig.host_task(&k, "a");
    rig.report(&a, Report::Failed("oops".into()));
    let a_end = rig.engine.task(&k, a.id()).unwrap().ended_at.unwrap();
    rig.clock.advance(Duration::from_secs(10));
    let live = rig.host_task(&k, "live");

    assert_eq!(
        rig.engine.next_deadline(),
        Some(start_end.saturating_add(age))
    );
    let before = rig.engine.snapshot();
    let just_before = Timestamp::from_millis(start_end.saturating_add(age).as_millis() - 1);
    assert_eq!(rig.engine.expire(just_before), (0, 0));
    assert_eq!(rig.engine.snapshot(), before);

    assert_eq!(rig.engine.expire(start_end.saturating_add(age)), (0, 1));
    assert!(rig.engine.task(&k, start.id).is_err());
    assert!(rig.engine.task(&k, a.id()).is_ok());
    assert_eq!(rig.engine.next_deadline(), Some(a_end.saturating_add(age)));

    assert_eq!(rig.engine.expire(Timestamp::from_millis(u64::MAX)), (0, 1));
    assert!(rig.engine.task(&k, a.id()).is_err());
    assert_eq!(
        rig.engine.task(&k, live.id()).unwrap().status,
        TaskStatus::Pending
    );
    assert_eq!(rig.engine.next_deadline(), None);
}

#[test]
fn the_live_task_cap_refuses_with_too_many_tasks_and_changes_nothing() {
    let rig = Rig::with(Config::default().max_live_tasks_per_graph(2));
    let k = key("proj", "g");
    rig.running(&k);
    let a = rig.host_task(&k, "a");
    let _b = rig.host_task(&k, "b");
    let before = rig.engine.snapshot();
    let full = Error::TooManyTasks {
        key: k.clone(),
        limit: 2,
    };
    assert_eq!(
        rig.engine
            .register_task(&k, TaskSpec::new(HostKind::new("c").unwrap()))
            .map(|j| j.id()),
        Err(full.clone())
    );
    assert_eq!(rig.engine.import(&k, "x"), Err(full.clone()));
    assert_eq!(rig.engine.stop(&k), Err(full.clone()));
    assert_eq!(full.code(), "TOO_MANY_TASKS");
    assert!(matches!(full.http_status(), 429 | 503));
    assert!(full.to_string().contains(&k.to_string()));
    assert_eq!(rig.engine.snapshot(), before);
    rig.assert_no_job();

    rig.engine.cancel(&k, a.id()).unwrap();
    rig.host_task(&k, "c");
    // The forced restart always fits: it ends every live task first.
    let r = rig.engine.force_restart(&k).unwrap();
    assert_eq!(r.failed, 2);
    assert_eq!(rig.job().id(), r.job);
}

#[test]
fn the_graph_cap_refuses_with_too_many_graphs_and_changes_nothing() {
    let rig = Rig::with(Config::default().max_graphs(2));
    let (a, b, c) = (key("p", "a"), key("q", "b"), key("p", "c"));
    rig.engine.create_graph(&a).unwrap();
    rig.engine.create_graph(&b).unwrap();
    let before = rig.engine.snapshot();
    let err = rig.engine.create_graph(&c).unwrap_err();
    assert_eq!(
        err,
        Error::TooManyGraphs {
            key: c.clone(),
            limit: 2
        }
    );
    assert_eq!(err.code(), "TOO_MANY_GRAPHS");
    assert!(matches!(err.http_status(), 429 | 503));
    assert_eq!(
        rig.engine.create_graph(&a).unwrap_err(),
        Error::GraphExists { key: a.clone() }
    );
    assert_eq!(rig.engine.snapshot(), before);
    assert_eq!(rig.engine.graph_count(), 2);
    assert!(rig.engine.state(&c).is_err());
    assert_eq!(rig.engine.graphs(&c.project, 0, 10).total, 1);

    rig.engine.remove_graph(&a).unwrap();
    rig.engine.create_graph(&c).unwrap();
    assert_eq!(rig.engine.graph_count(), 2);
}

#[test]
fn next_deadline_is_the_earliest_deadline_and_expire_honours_each_in_turn() {
    let rig = Rig::with(
        Config::default()
            .retention_age(None)
            .timeout(LifecycleKind::Start, Some(Duration::from_secs(30)))
            .timeout(LifecycleKind::Import, Some(Duration::from_secs(10))),
    );
    assert_eq!(rig.engine.next_deadline(), None);
    let (g1, g2) = (key("p", "g1"), key("q", "g2"));
    rig.running(&g2);
    assert_eq!(rig.engine.next_deadline(), None, "the start job ended");

    rig.clock.set(Timestamp::from_millis(T0 * 2));
    let base = rig.now();
    rig.engine.create_graph(&g1).unwrap();
    rig.engine.start(&g1).unwrap();
    let start = rig.job();
    let at = |s: u64| base.saturating_add(Duration::from_secs(s));
    assert_eq!(rig.engine.next_deadline(), Some(at(30)));

    rig.clock.set(at(5));
    rig.engine.import(&g2, "edges").unwrap();
    let import = rig.job();
    assert_eq!(rig.engine.next_deadline(), Some(at(15)));

    rig.clock.set(at(6));
    let host = rig
        .engine
        .register_task(
            &g2,
            TaskSpec::new(HostKind::new("q").unwrap()).timeout(Duration::from_secs(2)),
        )
        .unwrap();
    assert_eq!(rig.engine.next_deadline(), Some(at(8)));

    assert_eq!(rig.engine.expire(at(7)), (0, 0));
    assert_eq!(rig.engine.expire(at(8)), (1, 0));
    let t = rig.engine.task(&g2, host.id()).unwrap();
    assert_eq!(
        (t.status, t.reason),
        (TaskStatus::Failed, Some(FailReason::TimedOut))
    );
    assert!(host.token.is_void());
    assert_eq!(rig.engine.state(&g2).unwrap(), GraphState::Importing);
    assert_eq!(rig.engine.next_deadline(), Some(at(15)));

    assert_eq!(rig.engine.expire(at(20)), (1, 0));
    assert!(import.token.is_void());
    assert_eq!(rig.engine.state(&g2).unwrap(), GraphState::Abnormal);
    assert_eq!(rig.engine.next_deadline(), Some(at(30)));

    assert_eq!(rig.engine.expire(at(30)), (1, 0));
    assert!(start.token.is_void());
    assert_eq!(rig.engine.state(&g1).unwrap(), GraphState::Abnormal);
    assert_eq!(rig.engine.next_deadline(), None);
    assert_eq!(rig.engine.expire(at(1_000)), (0, 0));
    check_invariants(&rig.engine);
}

// ---- queries and isolation --------------------------------------------------

fn ids(page: &Page<TaskInfo>) -> Vec<JobId> {
    page.items.iter().map(|t| t.id).collect()
}

#[test]
fn task_queries_filter_by_status_and_window_newest_first_with_offset_limit_and_total() {
    let rig = Rig::new();
    let k = key("proj", "g");
    rig.running(&k);
    let start = rig.engine.tasks(&k, &TaskQuery::new()).unwrap().items[0].id;
    let mut t = Vec::new();
    for i in 0..6 {
        rig.clock.advance(Duration::from_secs(1));
        t.push(rig.host_task(&k, &format!("t{i}")));
    }
    rig.report(&t[0], Report::Succeeded);
    rig.report(&t[1], Report::Failed("bad".into()));
    rig.engine.cancel(&k, t[2].id()).unwrap();
    rig.report(&t[3], Report::Started);
    rig.report(&t[5], Report::Succeeded);
    let id = |i: usize| t[i].id();
    let created = |i: usize| rig.engine.task(&k, id(i)).unwrap().created_at;
    let q = |q: TaskQuery| rig.engine.tasks(&k, &q).unwrap();

    let all = q(TaskQuery::new());
    assert_eq!(all.total, 7);
    assert_eq!(
        ids(&all),
        vec![id(5), id(4), id(3), id(2), id(1), id(0), start]
    );
    assert!(
        all.items
            .windows(2)
            .all(|w| w[0].created_at >= w[1].created_at)
    );

    let ok = q(TaskQuery::new().status(TaskStatus::Succeeded));
    assert_eq!((ok.total, ids(&ok)), (3, vec![id(5), id(0), start]));
    let bad = q(TaskQuery::new()
        .status(TaskStatus::Failed)
        .status(TaskStatus::Cancelled));
    assert_eq!((bad.total, ids(&bad)), (2, vec![id(2), id(1)]));
    let live = q(TaskQuery::new().statuses(StatusSet::LIVE));
    assert_eq!((live.total, ids(&live)), (2, vec![id(4), id(3)]));
    let running = q(TaskQuery::new().status(TaskStatus::Running));
    assert_eq!(ids(&running), vec![id(3)]);
    let none = q(TaskQuery::new().statuses(StatusSet::NONE));
    assert_eq!((none.total, none.items.len()), (0, 0));

    let window = q(TaskQuery::new().since(created(2)).until(created(5)));
    assert_eq!((window.total, ids(&window)), (3, vec![id(4), id(3), id(2)]));
    let since = q(TaskQuery::new().since(created(4)));
    assert_eq!(ids(&since), vec![id(5), id(4)]);
    let until = q(TaskQuery::new().until(created(1)));
    assert_eq!(ids(&until), vec![id(0), start]);
    let empty = q(TaskQuery::new().since(created(4)).until(created(2)));
    assert_eq!(empty.total, 0);

    let page = q(TaskQuery::new().offset(1).limit(2));
    assert_eq!((page.total, ids(&page)), (7, vec![id(4), id(3)]));
    let count = q(TaskQuery::new().limit(0));
    assert_eq!((count.total, count.items.len()), (7, 0));
    let past = q(TaskQuery::new().offset(100));
    assert_eq!((past.total, past.items.len()), (7, 0));
    let mixed = q(TaskQuery::new()
        .status(TaskStatus::Succeeded)
        .since(created(0))
        .offset(1)
        .limit(5));
    assert_eq!((mixed.total, ids(&mixed)), (2, vec![id(0)]));
}

#[test]
fn project_task_and_graph_listings_page_newest_first_and_count_all_matches() {
    let rig = Rig::new();
    let keys: Vec<GraphKey> = (0..5).map(|i| key("pa", &format!("g{i}"))).collect();
    let foreign = key("pb", "g0");
    for k in keys.iter().chain([&foreign]) {
        rig.running(k);
        rig.clock.advance(Duration::from_millis(500));
    }
    for round in 0..3 {
        for k in keys.iter().take(2).chain([&foreign]) {
            let j = rig.host_task(k, &format!("r{round}"));
            if round == 1 {
                rig.report(&j, Report::Succeeded);
            }
        }
    }
    let pa = keys[0].project.clone();
    let all = rig.engine.project_tasks(&pa, &TaskQuery::new());
    // 5 start jobs and 3 rounds on 2 graphs.
    assert_eq!(all.total, 5 + 6);
    assert_eq!(all.items.len(), 11);
    assert!(all.items.iter().all(|t| t.key.project == pa));
    assert!(
        all.items
            .windows(2)
            .all(|w| w[0].created_at >= w[1].created_at)
    );
    let page = rig
        .engine
        .project_tasks(&pa, &TaskQuery::new().offset(3).limit(4));
    assert_eq!(page.total, 11);
    assert_eq!(page.items, all.items[3..7].to_vec());
    let ok = rig
        .engine
        .project_tasks(&pa, &TaskQuery::new().status(TaskStatus::Succeeded));
    assert_eq!(ok.total, 5 + 2);
    assert!(ok.items.iter().all(|t| t.status == TaskStatus::Succeeded));
    let pending = rig
        .engine
        .project_tasks(&pa, &TaskQuery::new().status(TaskStatus::Pending).limit(1));
    assert_eq!((pending.total, pending.items.len()), (4, 1));
    // A time window: exactly the tasks created in [since, until).
    let (since, until) = (all.items[8].created_at, all.items[2].created_at);
    let window = rig
        .engine
        .project_tasks(&pa, &TaskQuery::new().since(since).until(until));
    let expected: Vec<TaskInfo> = all
        .items
        .iter()
        .filter(|t| t.created_at >= since && t.created_at < until)
        .cloned()
        .collect();
    assert_eq!(expected.len(), 6);
    assert_eq!((window.total, window.items), (6, expected));

    let graphs = rig.engine.graphs(&pa, 0, 100);
    assert_eq!(graphs.total, 5);
    assert_eq!(
        graphs
            .items
            .iter()
            .map(|g| g.key.clone())
            .collect::<Vec<_>>(),
        keys
    );
    let page = rig.engine.graphs(&pa, 1, 2);
    assert_eq!(page.total, 5);
    assert_eq!(
        page.items.iter().map(|g| g.key.clone()).collect::<Vec<_>>(),
        keys[1..3].to_vec()
    );
    assert_eq!(rig.engine.graphs(&pa, 5, 2).items.len(), 0);
    let pb = rig.engine.graphs(&foreign.project, 0, 100);
    assert_eq!(pb.total, 1);
    assert_eq!(pb.items[0].key, foreign);
    let nobody = ProjectId::new("nobody").unwrap();
    assert_eq!(rig.engine.graphs(&nobody, 0, 100).total, 0);
    assert_eq!(
        rig.engine.project_tasks(&nobody, &TaskQuery::new()).total,
        0
    );
}

#[test]
fn nothing_of_one_project_is_visible_through_another() {
    let rig = Rig::new();
    let b_only = key("pb", "only-b");
    let a_shared = key("pa", "shared");
    let b_shared = key("pb", "shared");
    rig.running(&b_only);
    rig.running(&a_shared);
    rig.running(&b_shared);
    let b_task = rig.host_task(&b_only, "bfs");
    let b_shared_task = rig.host_task(&b_shared, "bfs");
    let a_task = rig.host_task(&a_shared, "bfs");
    // B's graph id under A's project.
    let wrong = GraphKey::new(a_shared.project.clone(), b_only.graph.clone());
    let before = rig.engine.snapshot();
    let nf = Error::GraphNotFound { key: wrong.clone() };

    assert_eq!(rig.engine.state(&wrong), Err(nf.clone()));
    assert_eq!(
        rig.engine.graph(&wrong).map(|h| h.key().clone()),
        Err(nf.clone())
    );
    assert_eq!(rig.engine.graph_info(&wrong), Err(nf.clone()));
    assert_eq!(rig.engine.task(&wrong, b_task.id()), Err(nf.clone()));
    assert_eq!(rig.engine.tasks(&wrong, &TaskQuery::new()), Err(nf.clone()));
    assert_eq!(rig.engine.stop(&wrong), Err(nf.clone()));
    assert_eq!(rig.engine.force_restart(&wrong), Err(nf.clone()));
    assert_eq!(rig.engine.cancel(&wrong, b_task.id()), Err(nf.clone()));
    assert_eq!(rig.engine.remove_graph(&wrong), Err(nf.clone()));
    let forged = TaskRef::new(wrong.clone(), b_task.id(), b_task.epoch());
    assert_eq!(
        rig.engine.report(&forged, Report::Succeeded),
        Err(nf.clone())
    );
    assert_eq!(nf.http_status(), 404);

    // Same graph id in both projects: B's job through A's graph is unknown.
    let tnf = Error::TaskNotFound {
        key: a_shared.clone(),
        job: b_shared_task.id(),
    };
    assert_eq!(
        rig.engine.task(&a_shared, b_shared_task.id()),
        Err(tnf.clone())
    );
    assert_eq!(
        rig.engine.cancel(&a_shared, b_shared_task.id()),
        Err(tnf.clone())
    );
    let forged = TaskRef::new(a_shared.clone(), b_shared_task.id(), b_shared_task.epoch());
    assert_eq!(
        rig.engine.report(&forged, Report::Succeeded),
        Err(tnf.clone())
    );
    assert_eq!(tnf.http_status(), 404);
    assert_eq!(rig.engine.snapshot(), before);
    rig.assert_no_job();

    let a_tasks = rig
        .engine
        .project_tasks(&a_shared.project, &TaskQuery::new());
    assert!(
        a_tasks
            .items
            .iter()
            .all(|t| t.key.project == a_shared.project)
    );
    let a_ids = ids(&a_tasks);
    assert!(a_ids.contains(&a_task.id()));
    for b in [&b_task, &b_shared_task] {
        assert!(!a_ids.contains(&b.id()));
    }
    assert_eq!(a_tasks.total, 2);
    let a_graphs = rig.engine.graphs(&a_shared.project, 0, 100);
    assert_eq!(a_graphs.total, 1);
    assert_eq!(a_graphs.items[0].key, a_shared);
    // B's tasks are untouched by everything above.
    assert_eq!(
        rig.engine.task(&b_only, b_task.id()).unwrap().status,
        TaskStatus::Pending
    );
}

// ---- events ---------------------------------------------------------------

#[test]
fn a_subscriber_sees_every_committed_change_in_order_with_increasing_seq() {
    use GraphState::*;
    let rig = Rig::new();
    let sub = rig.engine.subscribe();
    let k = key("proj", "g");
    let mut expected: Vec<(Timestamp, Change)> = Vec::new();
    let task = |job: &Job, status, progress, reason| Change::Task {
        job: job.id(),
        kind: job.kind.clone(),
        status,
        progress,
        reason,
    };
    let state = |from, to, e| Change::State {
        from,
        to,
        epoch: Epoch(e),
    };

    rig.engine.create_graph(&k).unwrap();
    expected.push((rig.now(), Change::GraphCreated));
    rig.tick();
    rig.engine.start(&k).unwrap();
    let start = rig.job();
    expected.push((rig.now(), task(&start, TaskStatus::Pending, 0, None)));
    expected.push((rig.now(), state(Stopped, Starting, 0)));
    rig.report(&start, Report::Started);
    expected.push((rig.now(), task(&start, TaskStatus::Running, 0, None)));
    rig.report(&start, Report::Progress(40));
    expected.push((rig.now(), task(&start, TaskStatus::Running, 40, None)));
    // Refused commands publish nothing.
    assert!(rig.engine.import(&k, "x").is_err());
    assert!(
        rig.engine
            .report(&start.task, Report::Progress(10))
            .is_err()
    );
    rig.report(&start, Report::Succeeded);
    expected.push((rig.now(), task(&start, TaskStatus::Succeeded, 100, None)));
    expected.push((rig.now(), state(Starting, Running, 0)));
    let host = rig.host_task(&k, "pagerank");
    expected.push((rig.now(), task(&host, TaskStatus::Pending, 0, None)));
    rig.tick();
    rig.engine.import(&k, "edges").unwrap();
    let import = rig.job();
    expected.push((rig.now(), task(&import, TaskStatus::Pending, 0, None)));
    expected.push((rig.now(), state(Running, Importing, 0)));
    rig.tick();
    rig.engine.cancel(&k, host.id()).unwrap();
    let cancelled = Some(FailReason::Cancelled);
    expected.push((rig.now(), task(&host, TaskStatus::Cancelled, 0, cancelled)));
    rig.tick();
    let r = rig.engine.force_restart(&k).unwrap();
    let restart = rig.job();
    let forced = Some(FailReason::ForceRestarted(r.job));
    expected.push((rig.now(), task(&import, TaskStatus::Failed, 0, forced)));
    expected.push((rig.now(), state(Importing, Restarting, 1)));
    expected.push((rig.now(), task(&restart, TaskStatus::Pending, 0, None)));
    rig.report(&restart, Report::Failed("crash".into()));
    let crash = Some(FailReason::Host("crash".into()));
    expected.push((rig.now(), task(&restart, TaskStatus::Failed, 0, crash)));
    expected.push((rig.now(), state(Restarting, Abnormal, 1)));
    rig.tick();
    rig.engine.stop(&k).unwrap();
    let stop = rig.job();
    expected.push((rig.now(), task(&stop, TaskStatus::Pending, 0, None)));
    expected.push((rig.now(), state(Abnormal, Stopping, 1)));
    rig.report(&stop, Report::Succeeded);
    expected.push((rig.now(), task(&stop, TaskStatus::Succeeded, 100, None)));
    expected.push((rig.now(), state(Stopping, Stopped, 1)));
    rig.tick();
    rig.engine.remove_graph(&k).unwrap();
    expected.push((rig.now(), Change::GraphRemoved));

    let events = sub.drain();
    assert_eq!(sub.try_recv(), Err(EventError::Empty));
    assert!(!sub.is_lagged());
    let got: Vec<(Timestamp, Change)> = events.iter().map(|e| (e.at, e.change.clone())).collect();
    assert_eq!(got, expected);
    assert!(events.iter().all(|e| e.key == k));
    let first = events[0].seq;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, first + i as u64, "seq increases by one per change");
    }
}

/// Runs `f` on another thread and fails if it does not return in time: a
/// core that blocked would hang here.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .expect("the engine should not block on a subscriber")
}

/// Start/stop cycles, each job reported succeeded; `after` runs after each
/// command.
fn churn(
    engine: &Engine,
    jobs: &JobReceiver,
    k: &GraphKey,
    rounds: usize,
    mut after: impl FnMut(),
) {
    for _ in 0..rounds {
        for op in [Engine::start, Engine::stop] {
            op(engine, k).unwrap();
            after();
            let job = jobs.try_recv().unwrap();
            engine.report(&job.task, Report::Succeeded).unwrap();
            after();
        }
    }
}

/// The events of one commit arrive together: a subscriber that kept up
/// takes a commit larger than its buffer whole, and one that fell behind
/// gets all of a commit or none of it.
#[test]
fn a_commit_is_delivered_whole_or_not_at_all() {
    let rig = Rig::with(Config::default().event_buffer(16));
    let k = key("proj", "g");
    rig.running(&k);
    for _ in 0..40 {
        rig.host_task(&k, "algo");
    }
    let kept_up = rig.engine.subscribe();
    let behind = rig.engine.subscribe();
    rig.engine.create_graph(&key("proj", "other")).unwrap();
    rig.engine.remove_graph(&key("proj", "other")).unwrap();
    let mut got = kept_up.drain();
    assert_eq!(got.len(), 2);
    let r = rig.engine.force_restart(&k).unwrap();
    // 40 host tasks failed, the state, the restart task: 42 events.
    got.extend(kept_up.drain());
    assert!(!kept_up.is_lagged());
    assert_eq!(got.len(), 2 + 42);
    assert!(got[2..].iter().all(|e| e.key == k));
    assert!(got.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    // The other had two events waiting: the restart did not fit, and none
    // of it was delivered.
    let mut delivered = Vec::new();
    let missed = loop {
        match behind.recv() {
            Ok(e) => delivered.push(e),
            Err(EventError::Lagged { missed }) => break missed,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(delivered, got[..2]);
    assert_eq!(missed, got[2].seq);
    assert_eq!(rig.engine.task(&k, r.job).unwrap().kind, TaskKind::Restart);
}

#[test]
fn a_slow_subscriber_is_cut_off_with_lagged_while_the_engine_carries_on() {
    let rig = Rig::with(Config::default().event_buffer(4));
    let slow = rig.engine.subscribe();
    let healthy = rig.engine.subscribe();
    let k = key("proj", "g");
    let Rig { engine, jobs, .. } = rig;
    let (seen, engine, jobs) = within(Duration::from_secs(20), move || {
        let mut seen = Vec::new();
        engine.create_graph(&k).unwrap();
        seen.extend(healthy.drain());
        churn(&engine, &jobs, &k, 200, || seen.extend(healthy.drain()));
        assert!(!healthy.is_lagged());
        (seen, engine, jobs)
    });
    // 1 creation + 200 × 2 × (2 + 2) changes, none lost for the healthy one.
    assert_eq!(seen.len(), 1 + 200 * 2 * 4);
    assert!(seen.windows(2).all(|w| w[1].seq == w[0].seq + 1));

    assert!(slow.is_lagged());
    // What it had: whole commits, at most the buffer's worth.
    let mut buffered = Vec::new();
    let missed = loop {
        match slow.recv() {
            Ok(e) => buffered.push(e),
            Err(EventError::Lagged { missed }) => break missed,
            Err(e) => panic!("{e}"),
        }
    };
    assert!(!buffered.is_empty() && buffered.len() <= 4);
    assert_eq!(buffered[..], seen[..buffered.len()]);
    assert_eq!(missed, buffered[buffered.len() - 1].seq + 1);
    assert_eq!(slow.try_recv(), Err(EventError::Lagged { missed }));
    assert_eq!(
        slow.recv_timeout(Duration::from_millis(1)),
        Err(EventError::Lagged { missed })
    );
    assert_eq!(seen[buffered.len()].seq, missed);
    // The engine is unaffected, and a new subscription works.
    let again = engine.subscribe();
    engine.start(&key("proj", "g")).unwrap();
    assert!(matches!(
        again.try_recv().map(|e| e.change),
        Ok(Change::Task { .. })
    ));
    assert!(jobs.try_recv().is_ok());
}

#[test]
fn a_dropped_subscription_blocks_nothing_and_later_subscribers_miss_nothing() {
    let rig = Rig::with(Config::default().event_buffer(2));
    let k = key("proj", "g");
    rig.engine.create_graph(&k).unwrap();
    let dropped = rig.engine.subscribe();
    let watcher = rig.engine.subscribe();
    drop(dropped);
    let Rig { engine, jobs, .. } = rig;
    let (seen, engine) = within(Duration::from_secs(20), move || {
        let mut seen = Vec::new();
        churn(&engine, &jobs, &k, 500, || seen.extend(watcher.drain()));
        assert!(!watcher.is_lagged());
        (seen, engine)
    });
    assert_eq!(seen.len(), 500 * 2 * 4);
    assert!(seen.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    // Subscribing again after everyone left starts a fresh, working stream.
    let later = engine.subscribe();
    engine.create_graph(&key("proj", "h")).unwrap();
    let e = later.try_recv().unwrap();
    assert_eq!(e.change, Change::GraphCreated);
    assert_eq!(e.seq, seen.last().unwrap().seq + 1);
}

// ---- the job hand-off -------------------------------------------------------

#[test]
fn without_any_job_receiver_job_emitting_operations_fail_and_change_nothing() {
    let rig = Rig::new();
    let (stopped, running) = (key("p", "stopped"), key("p", "running"));
    rig.engine.create_graph(&stopped).unwrap();
    rig.running(&running);
    let spare = rig.jobs.clone();
    let Rig {
        engine,
        jobs,
        clock,
    } = rig;
    drop(jobs);
    // One clone still attached: operations work.
    engine.export(&running, "x").unwrap();
    let export = spare.try_recv().unwrap();
    engine.report(&export.task, Report::Succeeded).unwrap();
    drop(spare);

    let before = engine.snapshot();
    clock.advance(Duration::from_secs(1));
    let cases: [(&GraphKey, Operation); 6] = [
        (&stopped, Operation::Start),
        (&running, Operation::Stop),
        (&running, Operation::Import),
        (&running, Operation::Export),
        (&running, Operation::Clear),
        (&running, Operation::ForceRestart),
    ];
    for (k, op) in cases {
        let err = perform(&engine, k, op).unwrap_err();
        assert_eq!(err, Error::NoJobReceiver { key: k.clone(), op }, "{op}");
        assert_eq!(err.code(), "NO_JOB_RECEIVER");
        assert!(err.to_string().contains(&k.to_string()));
        assert_eq!(engine.snapshot(), before, "{op}");
    }
    // Operations that hand nothing over still work.
    let ticket = engine
        .register_task(&running, TaskSpec::new(HostKind::new("q").unwrap()))
        .unwrap();
    engine.report(&ticket.task, Report::Succeeded).unwrap();

    let jobs = engine.job_receiver();
    let id = engine.start(&stopped).unwrap();
    assert_eq!(jobs.try_recv().unwrap().id(), id);
    assert_eq!(engine.state(&stopped).unwrap(), GraphState::Starting);
    let r = engine.force_restart(&running).unwrap();
    assert_eq!(jobs.try_recv().unwrap().id(), r.job);
    assert!(jobs.try_recv().is_err());
}

#[test]
fn a_job_committed_before_the_last_receiver_left_reaches_the_next_receiver() {
    let rig = Rig::new();
    let k = key("p", "g");
    rig.engine.create_graph(&k).unwrap();
    let id = rig.engine.start(&k).unwrap();
    let Rig { engine, jobs, .. } = rig;
    drop(jobs);
    let jobs = engine.job_receiver();
    let job = jobs.try_recv().unwrap();
    assert_eq!(job.id(), id);
    engine.report(&job.task, Report::Succeeded).unwrap();
    assert_eq!(engine.state(&k).unwrap(), GraphState::Running);
}

#[test]
fn jobs_of_one_graph_are_handed_over_in_commit_order() {
    let rig = Rig::new();
    let k = key("p", "g");
    rig.engine.create_graph(&k).unwrap();
    let mut committed = Vec::new();
    committed.push(rig.engine.start(&k).unwrap());
    for i in 0..20 {
        committed.push(
            rig.engine
                .request(req(&format!("k{i}")))
                .force_restart(&k)
                .unwrap()
                .job,
        );
    }
    let handed: Vec<(JobId, Epoch)> = std::iter::from_fn(|| rig.jobs.try_recv().ok())
        .map(|j| (j.id(), j.epoch()))
        .collect();
    assert_eq!(
        handed.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        committed
    );
    assert!(handed.windows(2).all(|w| w[0].1 < w[1].1));
}
