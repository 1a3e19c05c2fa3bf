//! Many threads at once: host workers run the jobs they are handed while
//! other threads force restarts, run lifecycle operations, register and
//! cancel host tasks and expire deadlines, over several graphs in two
//! projects. Afterwards (and during the run, by sampling) every invariant
//! of the contract must hold.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use graph_lifecycle::*;

const GRAPHS: [(&str, &str); 5] = [
    ("pa", "g0"),
    ("pa", "g1"),
    ("pa", "g2"),
    ("pb", "g0"),
    ("pb", "g1"),
];
const WORKERS: usize = 3;
const LIFECYCLE_ROUNDS: usize = 2_000;
const RESTART_ROUNDS: usize = 800;
const HOST_ROUNDS: usize = 2_000;
const CANCEL_ROUNDS: usize = 2_000;

/// A small deterministic generator (xorshift64*), one per thread.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What the threads record for the final checks.
#[derive(Default)]
struct Log {
    /// Every lifecycle job a committed operation returned (restarts that
    /// were not replays included).
    committed: Mutex<Vec<(GraphKey, JobId)>>,
    /// Committed restarts, per graph.
    restarts: Mutex<HashMap<GraphKey, Vec<JobId>>>,
    /// Restart jobs returned as replays.
    replayed: Mutex<Vec<JobId>>,
    /// Every job a worker received.
    received: Mutex<Vec<(GraphKey, JobId)>>,
    /// Every host task registered.
    hosts: Mutex<Vec<(GraphKey, JobId)>>,
}

/// Runs a job or a host task to its end the way a careful worker does:
/// report, and check the token between steps. Returns once the task ended
/// or the engine said the work is void.
fn work(engine: &Engine, job: &Job, rng: &mut Rng) {
    let last = if rng.below(5) == 0 {
        Report::Failed("worker failed".into())
    } else {
        Report::Succeeded
    };
    for report in [
        Report::Started,
        Report::Progress(30),
        Report::Progress(70),
        last,
    ] {
        if rng.below(4) == 0 {
            thread::yield_now();
        }
        let void_before = job.token.is_void();
        match engine.report(&job.task, report) {
            Ok(()) => assert!(
                !void_before,
                "a report on void job {} was accepted",
                job.id()
            ),
            Err(e) => {
                assert!(
                    matches!(e.code(), "STALE_EPOCH" | "TASK_TERMINAL"),
                    "unexpected refusal: {e}"
                );
                assert!(
                    job.token.is_void(),
                    "{e}, yet the token of job {} is not void",
                    job.id()
                );
                return;
            }
        }
    }
}

/// Per-graph invariants on one atomic view of a graph.
fn check_graph(g: &GraphSnapshot) {
    let live: Vec<&TaskInfo> = g.tasks.iter().filter(|t| !t.status.is_terminal()).collect();
    let lifecycle: Vec<&TaskInfo> = live
        .iter()
        .copied()
        .filter(|t| t.kind.lifecycle().is_some())
        .collect();
    assert!(
        lifecycle.len() <= 1,
        "{}: several live lifecycle jobs {lifecycle:#?}",
        g.info.key
    );
    assert_eq!(
        g.info.state.job_kind(),
        lifecycle.first().and_then(|t| t.kind.lifecycle()),
        "{}: the state does not match the live job",
        g.info.key
    );
    assert_eq!(g.info.job, lifecycle.first().map(|t| t.id));
    for t in &live {
        assert_eq!(
            t.epoch, g.info.epoch,
            "{}: live task of an older epoch {t:?}",
            g.info.key
        );
    }
    assert_eq!(g.info.live_tasks, live.len());
}

#[test]
fn concurrent_workers_restarts_operations_and_cancels_keep_every_invariant() {
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_000_000)));
    let cfg = Config::default()
        .max_retained_per_graph(1_000_000)
        .retention_age(None)
        .event_buffer(1 << 16)
        .timeout(LifecycleKind::Start, Some(Duration::from_millis(40)))
        .timeout(LifecycleKind::Import, Some(Duration::from_millis(5)))
        .timeout(LifecycleKind::Clear, Some(Duration::from_millis(20)));
    let (engine, jobs) = Engine::builder()
        .config(cfg)
        .clock(clock.clone())
        .ids(SequentialIds::new(9))
        .build();
    let keys: Vec<GraphKey> = GRAPHS
        .iter()
        .map(|(p, g)| GraphKey::parse(p, g).unwrap())
        .collect();
    let log = Arc::new(Log::default());
    let events = engine.subscribe();

    // Every graph starts Running.
    for k in &keys {
        engine.create_graph(k).unwrap();
        let id = engine.start(k).unwrap();
        let job = jobs.try_recv().unwrap();
        assert_eq!(job.id(), id);
        engine.report(&job.task, Report::Succeeded).unwrap();
        log.committed.lock().unwrap().push((k.clone(), id));
        log.received.lock().unwrap().push((k.clone(), id));
    }

    let ops_done = Arc::new(AtomicBool::new(false));
    let all_done = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (engine, rx, log, ops_done) =
            (engine.clone(), jobs.clone(), log.clone(), ops_done.clone());
        workers.push(thread::spawn(move || {
            let mut rng = Rng::new(100 + w as u64);
            loop {
                match rx.recv_timeout(Duration::from_millis(5)) {
                    Ok(job) => {
                        log.received
                            .lock()
                            .unwrap()
                            .push((job.key().clone(), job.id()));
                        work(&engine, &job, &mut rng);
                    }
                    Err(_) if ops_done.load(Ordering::SeqCst) && rx.is_empty() => break,
                    Err(_) => {}
                }
            }
        }));
    }
    drop(jobs);

    let mut operators = Vec::new();
    // Lifecycle operations.
    for t in 0..2u64 {
        let (engine, keys, log, clock) = (engine.clone(), keys.clone(), log.clone(), clock.clone());
        operators.push(thread::spawn(move || {
            let mut rng = Rng::new(200 + t);
            for _ in 0..LIFECYCLE_ROUNDS {
                let k = &keys[rng.below(keys.len())];
                let res = match rng.below(5) {
                    0 => engine.start(k),
                    1 => engine.stop(k),
                    2 => engine.import(k, "edges.csv"),
                    3 => engine.export(k, "dump"),
                    _ => engine.clear(k, rng.below(2) == 0),
                };
                match res {
                    Ok(id) => log.committed.lock().unwrap().push((k.clone(), id)),
                    Err(e) => assert_eq!(e.code(), "TRANSITION_REFUSED", "{e}"),
                }
                clock.advance(Duration::from_millis(1));
                if rng.below(3) == 0 {
                    thread::yield_now();
                }
            }
        }));
    }
    // Forced restarts, some retried with a request id.
    {
        let (engine, keys, log) = (engine.clone(), keys.clone(), log.clone());
        operators.push(thread::spawn(move || {
            let mut rng = Rng::new(300);
            let mut seen = HashSet::new();
            for _ in 0..RESTART_ROUNDS {
                let k = &keys[rng.below(keys.len())];
                let idem = ["a", "b"]
                    .get(rng.below(3))
                    .map(|s| RequestId::new(s).unwrap());
                let r = engine.request(idem.clone()).force_restart(k).unwrap();
                // A retry is answered with the first restart of its id.
                let repeat = idem.is_some() && !seen.insert((k.clone(), idem, r.job));
                if repeat {
                    log.replayed.lock().unwrap().push(r.job);
                } else {
                    log.committed.lock().unwrap().push((k.clone(), r.job));
                    log.restarts
                        .lock()
                        .unwrap()
                        .entry(k.clone())
                        .or_default()
                        .push(r.job);
                }
                for _ in 0..rng.below(4) {
                    thread::yield_now();
                }
            }
        }));
    }
    // Host tasks, run by the thread that registered them.
    {
        let (engine, keys, log) = (engine.clone(), keys.clone(), log.clone());
        operators.push(thread::spawn(move || {
            let mut rng = Rng::new(400);
            let mut mine: Vec<Job> = Vec::new();
            for _ in 0..HOST_ROUNDS {
                let k = &keys[rng.below(keys.len())];
                let mut spec = TaskSpec::new(HostKind::new("pagerank").unwrap())
                    .stoppable(rng.below(4) != 0)
                    .payload("iterations=5");
                if rng.below(2) == 0 {
                    spec = spec.timeout(Duration::from_millis(1 + rng.below(10) as u64));
                }
                match engine.register_task(k, spec) {
                    Ok(ticket) => {
                        log.hosts.lock().unwrap().push((k.clone(), ticket.id()));
                        mine.push(ticket);
                    }
                    Err(e) => assert_eq!(e.code(), "TRANSITION_REFUSED", "{e}"),
                }
                if rng.below(2) == 0 && !mine.is_empty() {
                    let ticket = mine.remove(0);
                    work(&engine, &ticket, &mut rng);
                }
            }
            for ticket in mine {
                work(&engine, &ticket, &mut rng);
            }
        }));
    }
    // Cancels of recent jobs and host tasks.
    {
        let (engine, log) = (engine.clone(), log.clone());
        operators.push(thread::spawn(move || {
            let mut rng = Rng::new(500);
            for _ in 0..CANCEL_ROUNDS {
                let pick = if rng.below(2) == 0 {
                    let c = log.committed.lock().unwrap();
                    let n = c.len();
                    c.get(n.saturating_sub(1 + rng.below(8))).cloned()
                } else {
                    let h = log.hosts.lock().unwrap();
                    let n = h.len();
                    h.get(n.saturating_sub(1 + rng.below(8))).cloned()
                };
                if let Some((k, id)) = pick {
                    match engine.cancel(&k, id) {
                        Ok(()) => {}
                        Err(e) => assert!(
                            matches!(e.code(), "TASK_TERMINAL" | "STALE_EPOCH" | "NOT_STOPPABLE"),
                            "{e}"
                        ),
                    }
                }
                thread::yield_now();
            }
        }));
    }
    // Deadlines.
    {
        let (engine, clock, ops_done) = (engine.clone(), clock.clone(), ops_done.clone());
        operators.push(thread::spawn(move || {
            while !ops_done.load(Ordering::SeqCst) {
                engine.expire(clock.now());
                thread::sleep(Duration::from_millis(1));
            }
        }));
    }

    // The sampler: epochs never decrease; each graph's atomic view keeps
    // the invariants; a task seen terminal never changes again.
    let sampler = {
        let engine = engine.clone();
        let handles: Vec<GraphHandle> = keys.iter().map(|k| engine.graph(k).unwrap()).collect();
        let all_done = all_done.clone();
        thread::spawn(move || {
            let mut epochs = vec![Epoch::ZERO; handles.len()];
            let mut terminal: HashMap<JobId, TaskInfo> = HashMap::new();
            let mut rounds = 0usize;
            loop {
                let last = all_done.load(Ordering::SeqCst);
                for (h, seen) in handles.iter().zip(epochs.iter_mut()) {
                    let (_, epoch) = h.status().expect("no graph is removed");
                    assert!(
                        epoch >= *seen,
                        "{}: epoch went from {seen} to {epoch}",
                        h.key()
                    );
                    *seen = epoch;
                }
                for g in engine.snapshot().graphs {
                    check_graph(&g);
                    for t in g.tasks {
                        if let Some(before) = terminal.get(&t.id) {
                            assert_eq!(before, &t, "a terminal task changed");
                        } else if t.status.is_terminal() {
                            terminal.insert(t.id, t);
                        }
                    }
                }
                rounds += 1;
                if last {
                    break;
                }
                thread::sleep(Duration::from_millis(2));
            }
            (epochs, terminal, rounds)
        })
    };

    // Events, drained as they come.
    let collector = {
        let all_done = all_done.clone();
        thread::spawn(move || {
            let mut got = Vec::new();
            loop {
                match events.recv_timeout(Duration::from_millis(5)) {
                    Ok(e) => got.push(e),
                    Err(EventError::Empty) if all_done.load(Ordering::SeqCst) => break,
                    Err(EventError::Empty) => {}
                    Err(e) => panic!("the event stream broke: {e}"),
                }
            }
            got
        })
    };

    for t in operators.drain(..operators.len() - 1) {
        t.join().unwrap();
    }
    ops_done.store(true, Ordering::SeqCst);
    for t in operators {
        t.join().unwrap();
    }
    for w in workers {
        w.join().unwrap();
    }
    all_done.store(true, Ordering::SeqCst);
    let (sampled_epochs, seen_terminal, rounds) = sampler.join().unwrap();
    let events = collector.join().unwrap();
    assert!(rounds > 1);

    // ---- the final checks ----
    let snap = engine.snapshot();
    let log = Arc::try_unwrap(log).ok().unwrap();
    let committed = log.committed.into_inner().unwrap();
    let received = log.received.into_inner().unwrap();
    let hosts = log.hosts.into_inner().unwrap();
    let restarts = log.restarts.into_inner().unwrap();
    let replayed = log.replayed.into_inner().unwrap();

    // A job is handed over if and only if it committed, exactly once.
    let committed_ids: HashSet<JobId> = committed.iter().map(|(_, id)| *id).collect();
    assert_eq!(committed_ids.len(), committed.len(), "job ids repeat");
    let received_ids: HashSet<JobId> = received.iter().map(|(_, id)| *id).collect();
    assert_eq!(
        received_ids.len(),
        received.len(),
        "a job was handed over twice"
    );
    assert_eq!(received_ids, committed_ids);
    let all_restarts: HashSet<JobId> = restarts.values().flatten().copied().collect();
    for id in &replayed {
        assert!(
            all_restarts.contains(id),
            "replayed {id} was never committed"
        );
    }

    let by_id: HashMap<JobId, &TaskInfo> = snap
        .graphs
        .iter()
        .flat_map(|g| g.tasks.iter())
        .map(|t| (t.id, t))
        .collect();
    assert_eq!(
        by_id.len(),
        committed.len() + hosts.len(),
        "nothing evicted, nothing extra"
    );
    for (k, id) in committed.iter().chain(hosts.iter()) {
        let t = by_id.get(id).unwrap_or_else(|| panic!("{id} is missing"));
        assert_eq!(&t.key, k);
        assert!(t.status.is_terminal(), "{id} never ended: {t:?}");
        assert!(t.ended_at.is_some());
    }
    // The run went through the ways a task can end.
    let ended = |f: fn(&TaskInfo) -> bool| by_id.values().filter(|t| f(t)).count();
    assert!(ended(|t| t.status == TaskStatus::Succeeded) > 0);
    assert!(ended(|t| t.status == TaskStatus::Cancelled) > 0);
    assert!(ended(|t| matches!(t.reason, Some(FailReason::Host(_)))) > 0);
    assert!(ended(|t| matches!(t.reason, Some(FailReason::ForceRestarted(_)))) > 0);
    assert!(ended(|t| matches!(t.reason, Some(FailReason::Superseded(_)))) > 0);
    for (id, t) in &seen_terminal {
        assert_eq!(&by_id[id], &t, "a terminal task changed");
    }

    for g in &snap.graphs {
        check_graph(g);
        assert_eq!(g.info.live_tasks, 0);
        assert_eq!(g.info.job, None);
        assert_eq!(g.info.state.job_kind(), None, "{}", g.info.key);
        // The epoch grew by one per committed forced restart.
        let n = restarts.get(&g.info.key).map_or(0, Vec::len) as u64;
        assert_eq!(g.info.epoch, Epoch(n), "{}", g.info.key);
        let idx = keys.iter().position(|k| k == &g.info.key).unwrap();
        assert!(sampled_epochs[idx] <= g.info.epoch);
        let restarts_here: HashMap<JobId, &TaskInfo> = g
            .tasks
            .iter()
            .filter(|t| t.kind == TaskKind::Restart)
            .map(|t| (t.id, t))
            .collect();
        assert_eq!(restarts_here.len() as u64, n);
        for t in &g.tasks {
            if t.kind == TaskKind::Restart {
                assert!(!t.stoppable);
            }
            match &t.reason {
                Some(FailReason::ForceRestarted(x)) | Some(FailReason::Superseded(x)) => {
                    let r = restarts_here
                        .get(x)
                        .unwrap_or_else(|| panic!("{t:?} names an unknown restart"));
                    assert_eq!(r.epoch, t.epoch.next(), "{t:?} failed by {r:?}");
                    assert_eq!(t.ended_at, Some(r.created_at));
                    assert_eq!(
                        matches!(t.reason, Some(FailReason::Superseded(_))),
                        t.kind == TaskKind::Restart
                    );
                }
                Some(FailReason::Cancelled) => assert_eq!(t.status, TaskStatus::Cancelled),
                _ => {}
            }
        }
    }

    // Events: per graph in commit order; every task ended exactly once,
    // and its last event is its final state.
    let mut last_seq: BTreeMap<GraphKey, u64> = BTreeMap::new();
    let mut per_job: HashMap<JobId, Vec<&Event>> = HashMap::new();
    for e in &events {
        if let Some(prev) = last_seq.insert(e.key.clone(), e.seq) {
            assert!(e.seq > prev, "{}: seq {} after {prev}", e.key, e.seq);
        }
        if let Change::Task { job, .. } = &e.change {
            per_job.entry(*job).or_default().push(e);
        }
    }
    for (k, id) in committed.iter().chain(hosts.iter()) {
        let evs = per_job
            .get(id)
            .unwrap_or_else(|| panic!("no event for {id}"));
        let statuses: Vec<TaskStatus> = evs
            .iter()
            .map(|e| match &e.change {
                Change::Task { status, .. } => *status,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(statuses[0], TaskStatus::Pending, "{id}");
        let ends = statuses.iter().filter(|s| s.is_terminal()).count();
        assert_eq!(ends, 1, "{id} ended {ends} times: {statuses:?}");
        assert!(statuses.last().unwrap().is_terminal(), "{id}: {statuses:?}");
        let t = by_id[id];
        let Change::Task {
            status,
            progress,
            reason,
            ..
        } = &evs.last().unwrap().change
        else {
            unreachable!()
        };
        assert_eq!(
            (status, progress, reason),
            (&t.status, &t.progress, &t.reason)
        );
        assert!(evs.iter().all(|e| &e.key == k));
    }
}

/// A create that succeeded returns its graph, whatever removals race with
/// it: it never answers GRAPH_NOT_FOUND for the graph it made.
#[test]
fn create_returns_the_graph_it_created_while_removals_race_with_it() {
    let (engine, _jobs) = Engine::builder().build();
    let key = GraphKey::parse("p", "g").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let remover = {
        let (engine, key, stop) = (engine.clone(), key.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = engine.remove_graph(&key);
            }
        })
    };
    let (mut created, mut exists) = (0, 0);
    for _ in 0..20_000 {
        match engine.create_graph(&key) {
            Ok(handle) => {
                assert_eq!(handle.key(), &key);
                created += 1;
            }
            Err(e) if e.code() == "GRAPH_EXISTS" => exists += 1,
            Err(e) => panic!("create answered {e} for a graph it may have made"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    remover.join().unwrap();
    assert!(created > 0, "{created} created, {exists} found existing");
}
