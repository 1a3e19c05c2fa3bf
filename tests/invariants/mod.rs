//! The contract's invariants, checked on what a caller can see: a snapshot, the
//! lock-free state word, the job channel. Shared by the loom models, the
//! linearizability check and the stress run.

#![allow(dead_code)] // each test target uses a different part

use std::collections::{BTreeSet, HashMap, VecDeque};

use graph_lifecycle::{
    Epoch, FailReason, GraphSnapshot, GraphState, Job, JobEnd, JobId, JobReceiver, Operation,
    Snapshot, TaskInfo, TaskKind, TaskStatus, Transition, job_outcome, transition,
};

/// A lock-free read of a graph: state and epoch, `None` once removed.
pub type Word = Option<(GraphState, Epoch)>;

/// The single steps a graph's (state, epoch) can take, from the two tables
/// of `docs/CONTRACT.md` section 4: an operation that emits a job (a forced restart also
/// bumps the epoch), or the end of the live lifecycle job.
fn steps(from: GraphState) -> Vec<(GraphState, u64)> {
    let mut out = Vec::new();
    for op in Operation::ALL {
        if let Some(Transition::Job(to, _)) = transition(from, op) {
            out.push((to, u64::from(op == Operation::ForceRestart)));
        }
    }
    if let Some(kind) = from.job_kind() {
        for end in [
            JobEnd::Succeeded,
            JobEnd::Failed,
            JobEnd::Cancelled,
            JobEnd::TimedOut,
        ] {
            out.push((job_outcome(kind, end), 0));
        }
    }
    out
}

/// Whether the transition table can take a graph from `from` to `to` in
/// zero or more committed commands. A removed graph (`None`) stays
/// removed; a graph can be removed from Stopped or Abnormal.
pub fn reachable(from: Word, to: Word) -> bool {
    let Some((s0, e0)) = from else {
        return to.is_none();
    };
    // Search (state, epochs gained); towards a removal the epoch is free.
    let budget = match to {
        Some((_, e)) if e < e0 => return false,
        Some((_, e)) => Some(e.0 - e0.0),
        None => None,
    };
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([(s0, 0u64)]);
    while let Some((s, d)) = queue.pop_front() {
        if !seen.insert((s, d)) {
            continue;
        }
        let arrived = match to {
            Some((t, _)) => s == t && Some(d) == budget,
            None => transition(s, Operation::Remove).is_some(),
        };
        if arrived {
            return true;
        }
        for (next, bump) in steps(s) {
            match budget {
                Some(b) if d + bump <= b => queue.push_back((next, d + bump)),
                Some(_) => {}
                None => queue.push_back((next, 0)),
            }
        }
    }
    false
}

/// Asserts that `to` may follow `from` on a reader's path.
pub fn assert_step(from: Word, to: Word) {
    assert!(
        reachable(from, to),
        "a lock-free read went from {from:?} to {to:?}, which no sequence of \
         committed transitions produces"
    );
}

fn is_restart(t: &TaskInfo) -> bool {
    t.kind == TaskKind::Restart
}

/// Asserts every invariant of the contract on one graph of a snapshot. With
/// `complete`, no task of the graph was ever evicted, so its table is its
/// whole history and the restart count can be checked against the epoch.
pub fn check_graph(g: &GraphSnapshot, complete: bool) {
    let info = &g.info;
    let ctx = || {
        format!(
            "graph {} ({:?}, epoch {})",
            info.key, info.state, info.epoch
        )
    };
    let live: Vec<&TaskInfo> = g.tasks.iter().filter(|t| !t.status.is_terminal()).collect();
    assert_eq!(info.live_tasks, live.len(), "{}: live count", ctx());
    assert_eq!(
        info.retained_tasks,
        g.tasks.len() - live.len(),
        "{}: retained count",
        ctx()
    );

    // At most one live lifecycle job, and it matches the state.
    let lifecycle: Vec<&&TaskInfo> = live
        .iter()
        .filter(|t| t.kind.lifecycle().is_some())
        .collect();
    match info.state.job_kind() {
        Some(kind) => {
            assert_eq!(
                lifecycle.len(),
                1,
                "{}: a graph in this state has exactly one live lifecycle job: {:#?}",
                ctx(),
                g.tasks
            );
            assert_eq!(lifecycle[0].kind.lifecycle(), Some(kind), "{}", ctx());
            assert_eq!(info.job, Some(lifecycle[0].id), "{}: info.job", ctx());
        }
        None => {
            assert!(
                lifecycle.is_empty(),
                "{}: no live lifecycle job in this state: {:#?}",
                ctx(),
                g.tasks
            );
            assert_eq!(info.job, None, "{}: info.job", ctx());
        }
    }

    let by_id: HashMap<JobId, &TaskInfo> = g.tasks.iter().map(|t| (t.id, t)).collect();
    assert_eq!(by_id.len(), g.tasks.len(), "{}: duplicate task ids", ctx());
    for t in &g.tasks {
        let tctx = || format!("{}: task {} ({}, {:?})", ctx(), t.id, t.kind, t.status);
        assert_eq!(&t.key, &info.key, "{}", tctx());
        assert!(t.epoch <= info.epoch, "{}: epoch from the future", tctx());
        assert!(t.progress <= 100, "{}: progress", tctx());
        if is_restart(t) {
            assert!(!t.stoppable, "{}: a restart is not stoppable", tctx());
            assert!(t.epoch >= Epoch(1), "{}: a restart opens an epoch", tctx());
        }
        match t.status {
            TaskStatus::Pending | TaskStatus::Running => {
                assert_eq!(
                    t.epoch,
                    info.epoch,
                    "{}: a live task from an older epoch survived a restart",
                    tctx()
                );
                assert!(t.ended_at.is_none() && t.reason.is_none(), "{}", tctx());
                if t.status == TaskStatus::Pending {
                    assert!(t.started_at.is_none() && t.progress == 0, "{}", tctx());
                } else {
                    assert!(t.started_at.is_some(), "{}", tctx());
                }
            }
            TaskStatus::Succeeded => {
                assert!(t.ended_at.is_some(), "{}", tctx());
                assert!(t.reason.is_none() && t.progress == 100, "{}", tctx());
            }
            TaskStatus::Cancelled => {
                assert!(t.ended_at.is_some(), "{}", tctx());
                assert_eq!(t.reason, Some(FailReason::Cancelled), "{}", tctx());
                assert!(t.stoppable, "{}: cancelled but not stoppable", tctx());
            }
            TaskStatus::Failed => {
                assert!(t.ended_at.is_some(), "{}", tctx());
                assert!(t.reason.is_some(), "{}: a failure has a reason", tctx());
            }
        }
        match &t.reason {
            Some(FailReason::ForceRestarted(by)) | Some(FailReason::Superseded(by)) => {
                assert_eq!(t.status, TaskStatus::Failed, "{}", tctx());
                assert_eq!(
                    matches!(t.reason, Some(FailReason::Superseded(_))),
                    is_restart(t),
                    "{}: only a restart is superseded, and a restart only so",
                    tctx()
                );
                match by_id.get(by) {
                    Some(r) => {
                        assert!(is_restart(r), "{}: failed by a non-restart {by}", tctx());
                        assert_eq!(
                            r.epoch,
                            t.epoch.next(),
                            "{}: the restart that failed it opened the next epoch",
                            tctx()
                        );
                        assert_eq!(Some(r.created_at), t.ended_at, "{}", tctx());
                    }
                    None => assert!(!complete, "{}: its restart {by} is missing", tctx()),
                }
            }
            _ => {}
        }
    }

    let restarts: Vec<&TaskInfo> = g.tasks.iter().filter(|t| is_restart(t)).collect();
    assert!(
        restarts.iter().filter(|t| !t.status.is_terminal()).count() <= 1,
        "{}: more than one live restart",
        ctx()
    );
    if complete {
        // Every forced restart bumped the epoch by one and added one
        // restart task in the same step.
        let epochs: Vec<u64> = restarts.iter().map(|t| t.epoch.0).collect();
        let expected: Vec<u64> = (1..=info.epoch.0).collect();
        assert_eq!(
            epochs,
            expected,
            "{}: restart tasks and epochs disagree: {:#?}",
            ctx(),
            g.tasks
        );
    }
}

/// [`check_graph`] on every graph.
pub fn check_snapshot(s: &Snapshot, complete: bool) {
    for g in &s.graphs {
        check_graph(g, complete);
    }
}

/// Every job waiting on the channel now.
pub fn drain(jobs: &JobReceiver) -> Vec<Job> {
    std::iter::from_fn(|| jobs.try_recv().ok()).collect()
}

/// Asserts that `handed` (the jobs received since `seen` were taken) is
/// exactly the graph's lifecycle tasks not in `seen`, each once, in
/// creation order, with the task's kind and epoch.
pub fn check_handed(g: &GraphSnapshot, seen: &BTreeSet<JobId>, handed: &[Job]) {
    let created: Vec<&TaskInfo> = g
        .tasks
        .iter()
        .filter(|t| t.kind.lifecycle().is_some() && !seen.contains(&t.id))
        .collect();
    let got: Vec<JobId> = handed.iter().map(Job::id).collect();
    let want: Vec<JobId> = created.iter().map(|t| t.id).collect();
    assert_eq!(
        got, want,
        "graph {}: jobs handed over vs lifecycle tasks committed",
        g.info.key
    );
    for (job, task) in handed.iter().zip(&created) {
        assert_eq!(job.kind, task.kind);
        assert_eq!(job.epoch(), task.epoch);
        assert_eq!(job.key(), &task.key);
    }
}
