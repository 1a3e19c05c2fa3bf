//! The stress run: every operation, from many threads, over many graphs,
//! with an auditor checking the contract's invariants while it runs and
//! `parking_lot`'s deadlock detection on.
//!
//! - Drivers mix every operation of the API over a few dozen graphs in two
//!   projects: create and remove, every lifecycle operation, forced
//!   restarts (some retried with an idempotency key), host tasks, reports
//!   and cancels on tasks they know, expiry passes, queries, listings,
//!   subscriptions taken and dropped.
//! - Host workers share the job channel: they run each job, report start
//!   and progress while its token stays live, and end it well or badly.
//! - The auditor takes snapshots and checks every invariant of every graph,
//!   follows each graph's lock-free state word (each read must follow the
//!   one before by the transition table), and reads an event stream
//!   (sequence numbers grow per graph; a cut-off subscriber resubscribes).
//! - The watchdog calls `parking_lot::deadlock::check_deadlock` every few
//!   milliseconds; any deadlock fails the run with the threads' stacks,
//!   and so does any thread that does not finish in time. (Deadlock
//!   detection is on in test builds through the dev-dependency entry for
//!   `parking_lot`; the run ends by checking that the detector does find a
//!   deliberate deadlock.)
//! - At the end the engine shuts down, and the workers must leave their
//!   loops once the channel is drained.
//!
//! A few seconds by default; `STRESS_SECS=600 cargo test --release --test
//! stress` soaks for ten minutes.

mod invariants;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use graph_lifecycle::*;
use invariants::{Word, assert_step, check_snapshot};

const GRAPHS: usize = 24;
const DRIVERS: usize = 3;
const WORKERS: usize = 2;
const DEFAULT_SECS: u64 = 3;

fn keys() -> Vec<GraphKey> {
    (0..GRAPHS)
        .map(|i| GraphKey::parse(&format!("tenant-{}", i % 2), &format!("graph-{i}")).unwrap())
        .collect()
}

/// SplitMix64: small, seedable, no shared state.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

/// What the run saw, for its closing line and to fail on what must not
/// happen.
#[derive(Default)]
struct Counts {
    ops: AtomicU64,
    restarts: AtomicU64,
    jobs_run: AtomicU64,
    audits: AtomicU64,
    word_reads: AtomicU64,
    events: AtomicU64,
}

/// Shared between the threads.
struct Run {
    engine: Engine,
    keys: Vec<GraphKey>,
    stop: AtomicBool,
    counts: Counts,
    /// Host tasks and jobs a driver may report on or cancel.
    known: Mutex<Vec<Job>>,
}

/// Error codes no operation of this run may return: they mean a bug, not
/// a refusal the contract allows.
const NEVER: &[&str] = &[
    "DUPLICATE_JOB_ID",
    "INVALID_ID",
    "INVALID_ARGUMENT",
    "NO_JOB_RECEIVER",
    "TOO_MANY_GRAPHS",
];

impl Run {
    /// Panics on a refusal the contract does not allow.
    fn check<T>(&self, what: &str, r: Result<T, Error>) {
        self.allowed(what, r);
    }

    /// The value, or `None` for a refusal the contract allows; panics on
    /// one it does not.
    fn allowed<T>(&self, what: &str, r: Result<T, Error>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            // The run shuts the engine down as it stops.
            Err(e) if e.code() == "SHUT_DOWN" && self.stop.load(Ordering::Relaxed) => None,
            Err(e) => {
                assert!(!NEVER.contains(&e.code()), "{what}: {e}");
                assert!(e.http_status() < 500, "{what}: {e}");
                None
            }
        }
    }
}

fn driver(run: &Run, seed: u64) {
    let mut rng = Rng(seed);
    let engine = &run.engine;
    let host = HostKind::new("pagerank").unwrap();
    let mut subscription = None;
    while !run.stop.load(Ordering::Relaxed) {
        let key = &run.keys[rng.below(run.keys.len())];
        run.counts.ops.fetch_add(1, Ordering::Relaxed);
        match rng.below(24) {
            0 => run.check("create", engine.create_graph(key)),
            1 => run.check("remove", engine.remove_graph(key)),
            2 | 3 => run.check("start", engine.start(key)),
            4 => run.check("stop", engine.stop(key)),
            5 => run.check("import", engine.import(key, "edges.csv")),
            6 => run.check("export", engine.export(key, "s3://bucket")),
            7 => run.check("clear", engine.clear(key, rng.below(2) == 0)),
            8 | 9 => {
                let idem = ["retry-a", "retry-b"];
                let req = (rng.below(3) > 0).then(|| RequestId::new(idem[rng.below(2)]).unwrap());
                let r = engine.request(req).force_restart(key);
                if let Some(r) = run.allowed("force_restart", r) {
                    run.counts.restarts.fetch_add(1, Ordering::Relaxed);
                    assert!(r.epoch >= Epoch(1));
                }
            }
            10 | 11 => {
                let spec = TaskSpec::new(host.clone())
                    .stoppable(rng.below(4) > 0)
                    .timeout(Duration::from_millis(5 + rng.below(50) as u64));
                if let Some(ticket) = run.allowed("register", engine.register_task(key, spec)) {
                    let mut known = run.known.lock().unwrap();
                    if known.len() > 256 {
                        known.swap_remove(0);
                    }
                    known.push(ticket);
                }
            }
            12..=14 => {
                let job = {
                    let known = run.known.lock().unwrap();
                    (!known.is_empty()).then(|| known[rng.below(known.len())].clone())
                };
                if let Some(job) = job {
                    let report = match rng.below(4) {
                        0 => Report::Started,
                        1 => Report::Progress(rng.below(101) as u8),
                        2 => Report::Succeeded,
                        _ => Report::Failed("host says no".into()),
                    };
                    run.check("report", engine.report(&job.task, report));
                    if rng.below(2) == 0 {
                        run.check("cancel", engine.cancel(job.key(), job.id()));
                    }
                }
            }
            15 => {
                engine.expire(engine.now());
            }
            16 => {
                let q = TaskQuery::new().status(TaskStatus::Failed).limit(5);
                run.check("tasks", engine.tasks(key, &q));
                let page = engine.project_tasks(&key.project, &TaskQuery::new().limit(10));
                assert!(page.items.len() <= 10);
            }
            17 => {
                let page = engine.graphs(&key.project, rng.below(4), 8);
                assert!(page.items.len() <= 8);
                run.check("graph_info", engine.graph_info(key));
            }
            18 => {
                subscription = match subscription.take() {
                    Some(_) => None,
                    None => Some(engine.subscribe()),
                };
            }
            19 => {
                let _ = engine.next_deadline();
            }
            _ => {
                if let Ok(handle) = engine.graph(key) {
                    let _ = handle.serves_queries();
                }
                run.check("state", engine.state(key));
            }
        }
    }
}

/// A host worker: runs each job in a few steps, stopping early when its
/// token goes void, and ends it well or badly.
fn worker(run: &Run, jobs: JobReceiver, seed: u64) {
    let mut rng = Rng(seed);
    loop {
        let job = match jobs.recv_timeout(Duration::from_millis(20)) {
            Ok(job) => job,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
            // Shut down and drained: the worker's loop ends.
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        };
        run.counts.jobs_run.fetch_add(1, Ordering::Relaxed);
        let engine = &run.engine;
        if rng.below(8) == 0 {
            // Some jobs are left to time out or be restarted away.
            continue;
        }
        run.check("job started", engine.report(&job.task, Report::Started));
        for pct in [30, 60, 90] {
            if job.token.is_void() {
                break;
            }
            run.check(
                "job progress",
                engine.report(&job.task, Report::Progress(pct)),
            );
        }
        if !job.token.is_void() {
            let end = if rng.below(5) == 0 {
                Report::Failed("worker failed".into())
            } else {
                Report::Succeeded
            };
            run.check("job end", engine.report(&job.task, end));
        }
    }
}

/// The auditor: snapshots, lock-free words, events.
fn auditor(run: &Run) {
    let engine = &run.engine;
    let mut words: HashMap<GraphKey, (GraphHandle, Word)> = HashMap::new();
    let mut events = engine.subscribe();
    let mut last_seq: HashMap<GraphKey, u64> = HashMap::new();
    while !run.stop.load(Ordering::Relaxed) {
        check_snapshot(&engine.snapshot(), false);
        run.counts.audits.fetch_add(1, Ordering::Relaxed);
        for key in &run.keys {
            // A handle follows one graph; once removed, take the next.
            let stale = words.get(key).is_none_or(|(_, w)| w.is_none());
            if stale {
                match engine.graph(key) {
                    Ok(handle) => {
                        let w = handle.status();
                        words.insert(key.clone(), (handle, w));
                    }
                    Err(_) => continue,
                }
            }
            let (handle, last) = words.get_mut(key).unwrap();
            let now = handle.status();
            assert_step(*last, now);
            *last = now;
            run.counts.word_reads.fetch_add(1, Ordering::Relaxed);
        }
        loop {
            match events.try_recv() {
                Ok(e) => {
                    run.counts.events.fetch_add(1, Ordering::Relaxed);
                    if let Some(prev) = last_seq.insert(e.key.clone(), e.seq) {
                        assert!(e.seq > prev, "events of {} out of order", e.key);
                    }
                }
                Err(EventError::Empty) => break,
                Err(EventError::Lagged { .. }) => {
                    events = engine.subscribe();
                    last_seq.clear();
                    break;
                }
                Err(EventError::Closed) => panic!("events closed while the engine lives"),
            }
        }
    }
}

#[test]
fn stress_every_operation_with_auditor_and_deadlock_detection() {
    let secs = std::env::var("STRESS_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SECS);
    let config = Config::default()
        .shards(8)
        .max_retained_per_graph(32)
        .retention_age(Some(Duration::from_millis(200)))
        .timeout(LifecycleKind::Import, Some(Duration::from_millis(30)))
        .timeout(LifecycleKind::Export, Some(Duration::from_millis(30)))
        .event_buffer(256);
    let (engine, jobs) = Engine::builder().config(config).build();
    let run = Arc::new(Run {
        engine,
        keys: keys(),
        stop: AtomicBool::new(false),
        counts: Counts::default(),
        known: Mutex::new(Vec::new()),
    });
    for key in &run.keys {
        run.engine.create_graph(key).unwrap();
    }

    let deadlocks = Arc::new(Mutex::new(Vec::<String>::new()));
    let watching = Arc::new(AtomicBool::new(true));
    let watchdog = {
        let (deadlocks, watching) = (deadlocks.clone(), watching.clone());
        thread::spawn(move || {
            while watching.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(10));
                for cycle in parking_lot::deadlock::check_deadlock() {
                    let threads: Vec<String> = cycle
                        .iter()
                        .map(|t| format!("thread {:?}:\n{:?}", t.thread_id(), t.backtrace()))
                        .collect();
                    deadlocks.lock().unwrap().push(threads.join("\n"));
                }
            }
        })
    };

    let mut threads = Vec::new();
    for i in 0..DRIVERS {
        let run = run.clone();
        threads.push(thread::spawn(move || driver(&run, 1 + i as u64)));
    }
    for i in 0..WORKERS {
        let (run, jobs) = (run.clone(), jobs.clone());
        threads.push(thread::spawn(move || worker(&run, jobs, 100 + i as u64)));
    }
    drop(jobs);
    {
        let run = run.clone();
        threads.push(thread::spawn(move || auditor(&run)));
    }

    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let fail_on_deadlock = || {
        let found = deadlocks.lock().unwrap();
        assert!(found.is_empty(), "deadlock:\n{}", found.join("\n\n"));
    };
    while Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
        fail_on_deadlock();
        assert!(
            threads.iter().all(|t| !t.is_finished()),
            "a thread died early (see its panic above)"
        );
    }
    run.stop.store(true, Ordering::Relaxed);
    // Workers end once the channel is shut and drained.
    run.engine.shutdown();
    let grace = Instant::now() + Duration::from_secs(30);
    while !threads.iter().all(|t| t.is_finished()) {
        fail_on_deadlock();
        assert!(
            Instant::now() < grace,
            "threads still running 30 s after the stop"
        );
        thread::sleep(Duration::from_millis(10));
    }
    for t in threads {
        t.join().expect("a stress thread panicked");
    }
    watching.store(false, Ordering::Relaxed);
    watchdog.join().unwrap();
    fail_on_deadlock();

    let snapshot = run.engine.snapshot();
    check_snapshot(&snapshot, false);
    let c = &run.counts;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "{:.1?}: {} operations ({} forced restarts), {} jobs run, {} audits, {} word reads, {} events; {} graphs at the end",
        started.elapsed(),
        load(&c.ops),
        load(&c.restarts),
        load(&c.jobs_run),
        load(&c.audits),
        load(&c.word_reads),
        load(&c.events),
        snapshot.graphs.len()
    );
    assert!(load(&c.restarts) > 0 && load(&c.jobs_run) > 0 && load(&c.audits) > 0);
    assert_deadlock_detection_works();
}

/// The watchdog is not blind: `parking_lot`'s deadlock detection is on in
/// test builds and finds two threads that lock two mutexes in opposite
/// orders. (The two threads stay blocked until the test binary exits.) Run
/// after the stress run, whose watchdog would otherwise report it.
fn assert_deadlock_detection_works() {
    let a = Arc::new(parking_lot::Mutex::new(()));
    let b = Arc::new(parking_lot::Mutex::new(()));
    let both = Arc::new(std::sync::Barrier::new(2));
    for (first, second) in [(a.clone(), b.clone()), (b, a)] {
        let both = both.clone();
        thread::spawn(move || {
            let _held = first.lock();
            both.wait();
            let _never = second.lock();
        });
    }
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        let found = parking_lot::deadlock::check_deadlock();
        if !found.is_empty() {
            assert_eq!(found[0].len(), 2, "both threads are in the cycle");
            return;
        }
        assert!(Instant::now() < give_up, "the deadlock was not detected");
        thread::sleep(Duration::from_millis(10));
    }
}
