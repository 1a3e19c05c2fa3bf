//! The core's performance targets, each beside a naive baseline run in the
//! same process, in alternating rounds (the median round is printed):
//!
//! 1. keyed state reads over 10,000 graphs in a scattered order, against
//!    an `RwLock<HashMap>` keyed by two `String`s (a host's naive map) and
//!    one keyed by [`GraphKey`];
//! 2. `force_restart` of 10,000 and 100,000 live host tasks, the hosts'
//!    tickets held and dropped: time per failed task, against failing as
//!    many records of a `Mutex<HashMap>` task table;
//! 3. the task cycle (register, started, progress, succeeded on one
//!    graph), per command, against the same four steps on a
//!    `Mutex<HashMap>` task table;
//! 4. two threads against one on disjoint graphs, 7 keyed reads to one
//!    task registered and succeeded, beside a pure-arithmetic control
//!    that shows whether two cores were there.
//!
//! `cargo bench --bench targets` (`TARGETS_ROUNDS` to change the number
//! of rounds, `TARGETS_ONLY=13` to run only cases 1 and 3). `docs/BENCHMARKS.md` has the figures.

use std::collections::{HashMap, VecDeque};
use std::hint::black_box;
use std::sync::{Barrier, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use graph_lifecycle::{
    Config, Engine, GraphKey, GraphState, HostKind, Job, JobReceiver, Report, TaskSpec,
};

fn rounds() -> usize {
    std::env::var("TARGETS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `a` and `b` in alternating rounds; the median of each.
fn alternate(mut a: impl FnMut() -> f64, mut b: impl FnMut() -> f64) -> (f64, f64) {
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for _ in 0..rounds() {
        xs.push(a());
        ys.push(b());
    }
    (median(xs), median(ys))
}

fn key(i: usize) -> GraphKey {
    GraphKey::parse(&format!("project-{}", i % 16), &format!("graph-{i}")).expect("valid key")
}

fn running_engine(n: usize, config: Config) -> (Engine, JobReceiver, Vec<GraphKey>) {
    let (engine, jobs) = Engine::builder().config(config).build();
    let keys: Vec<_> = (0..n).map(key).collect();
    for k in &keys {
        engine.create_graph(k).expect("create");
        engine.start(k).expect("start");
        let job = jobs.try_recv().expect("start job");
        engine.report(&job.task, Report::Succeeded).expect("report");
    }
    (engine, jobs, keys)
}

/// A fixed pseudo-random permutation of `0..n`.
fn scattered(n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    order
}

/// Nanoseconds per call of `f` over `reads` calls.
fn per_call(reads: usize, mut f: impl FnMut(usize)) -> f64 {
    let t0 = Instant::now();
    for i in 0..reads {
        f(i);
    }
    t0.elapsed().as_nanos() as f64 / reads as f64
}

fn keyed_reads() {
    const GRAPHS: usize = 10_000;
    const READS: usize = 2_000_000;
    let (engine, _jobs, keys) = running_engine(GRAPHS, Config::default());
    let order = scattered(GRAPHS);
    let strings: Vec<(String, String)> = keys
        .iter()
        .map(|k| (k.project.to_string(), k.graph.to_string()))
        .collect();
    let naive: RwLock<HashMap<(String, String), GraphState>> = RwLock::new(
        strings
            .iter()
            .map(|k| (k.clone(), GraphState::Running))
            .collect(),
    );
    let by_key: RwLock<HashMap<GraphKey, GraphState>> = RwLock::new(
        keys.iter()
            .map(|k| (k.clone(), GraphState::Running))
            .collect(),
    );
    let engine_read = || {
        per_call(READS, |i| {
            black_box(engine.state(&keys[order[i % GRAPHS]]).ok());
        })
    };
    let (e, n) = alternate(engine_read, || {
        per_call(READS, |i| {
            let k = &strings[order[i % GRAPHS]];
            black_box(naive.read().expect("lock").get(k).copied());
        })
    });
    let (e2, g) = alternate(engine_read, || {
        per_call(READS, |i| {
            let k = &keys[order[i % GRAPHS]];
            black_box(by_key.read().expect("lock").get(k).copied());
        })
    });
    println!("1. keyed state read, {GRAPHS} graphs, scattered order");
    println!(
        "   Engine::state {e:.1} ns | RwLock<HashMap<(String, String), _>> {n:.1} ns | ratio {:.2}",
        e / n
    );
    println!(
        "   Engine::state {e2:.1} ns | RwLock<HashMap<GraphKey, _>> {g:.1} ns | ratio {:.2}",
        e2 / g
    );
}

/// A task record of a naive host table.
struct Rec {
    kind: std::sync::Arc<str>,
    status: u8,
    progress: u8,
    created: u64,
    started: Option<u64>,
    ended: Option<u64>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A naive host's task table: live records by id, the last `cap` ended.
struct Naive {
    live: HashMap<u128, Rec>,
    done: VecDeque<Rec>,
    next: u128,
    cap: usize,
}

impl Naive {
    fn new(cap: usize) -> Mutex<Naive> {
        Mutex::new(Naive {
            live: HashMap::new(),
            done: VecDeque::new(),
            next: 0,
            cap,
        })
    }

    fn end(&mut self, mut r: Rec, status: u8, at: u64) {
        r.status = status;
        r.ended = Some(at);
        self.done.push_back(r);
        if self.done.len() > self.cap {
            self.done.pop_front();
        }
    }
}

fn restart() {
    println!("2. force_restart, time per failed task (tickets held / dropped)");
    for n in [10_000usize, 100_000] {
        let engine_round = |hold: bool| {
            let (engine, _jobs, keys) = running_engine(1, Config::default());
            let k = &keys[0];
            let kind = HostKind::new("algo").expect("kind");
            let mut held: Vec<Job> = Vec::new();
            for _ in 0..n {
                let t = engine
                    .register_task(k, TaskSpec::new(kind.clone()))
                    .expect("register");
                if hold {
                    held.push(t);
                }
            }
            let t0 = Instant::now();
            let r = engine.force_restart(k).expect("restart");
            let took = t0.elapsed();
            assert_eq!(r.failed, n);
            drop(held);
            took.as_nanos() as f64 / n as f64
        };
        let naive_round = || {
            let table = Naive::new(1_000);
            let kind: std::sync::Arc<str> = "algo".into();
            {
                let mut t = table.lock().expect("lock");
                for _ in 0..n {
                    t.next += 1;
                    let id = t.next;
                    let rec = Rec {
                        kind: kind.clone(),
                        status: 0,
                        progress: 0,
                        created: now_ms(),
                        started: None,
                        ended: None,
                    };
                    t.live.insert(id, rec);
                }
            }
            let t0 = Instant::now();
            {
                let mut t = table.lock().expect("lock");
                let at = now_ms();
                let live = std::mem::take(&mut t.live);
                for (_, r) in live {
                    t.end(r, 3, at);
                }
            }
            t0.elapsed().as_nanos() as f64 / n as f64
        };
        let (held, dropped) = alternate(|| engine_round(true), || engine_round(false));
        let naive = median((0..rounds()).map(|_| naive_round()).collect());
        println!(
            "   {n:>7} tasks: held {held:.1} ns, dropped {dropped:.1} ns | naive table {naive:.1} ns"
        );
    }
}

fn task_cycle() {
    const CYCLES: usize = 200_000;
    let engine_round = || {
        let (engine, _jobs, keys) =
            running_engine(1, Config::default().max_retained_per_graph(100));
        let k = &keys[0];
        let kind = HostKind::new("algo").expect("kind");
        let t0 = Instant::now();
        for _ in 0..CYCLES {
            let job = engine
                .register_task(k, TaskSpec::new(kind.clone()))
                .expect("register");
            engine.report(&job.task, Report::Started).expect("started");
            engine
                .report(&job.task, Report::Progress(50))
                .expect("progress");
            engine
                .report(&job.task, Report::Succeeded)
                .expect("succeeded");
        }
        t0.elapsed().as_nanos() as f64 / (4 * CYCLES) as f64
    };
    let naive_round = || {
        let table = Naive::new(100);
        let kind: std::sync::Arc<str> = "algo".into();
        let t0 = Instant::now();
        for _ in 0..CYCLES {
            let id = {
                let mut t = table.lock().expect("lock");
                let at = now_ms();
                t.next += 1;
                let id = t.next;
                let rec = Rec {
                    kind: kind.clone(),
                    status: 0,
                    progress: 0,
                    created: at,
                    started: None,
                    ended: None,
                };
                t.live.insert(id, rec);
                id
            };
            {
                let mut t = table.lock().expect("lock");
                let at = now_ms();
                let r = t.live.get_mut(&id).expect("live");
                r.status = 1;
                r.started = Some(at);
            }
            {
                let mut t = table.lock().expect("lock");
                black_box(now_ms());
                t.live.get_mut(&id).expect("live").progress = 50;
            }
            {
                let mut t = table.lock().expect("lock");
                let at = now_ms();
                let r = t.live.remove(&id).expect("live");
                t.end(r, 2, at);
            }
        }
        let t = table.lock().expect("lock");
        black_box((
            t.done.len(),
            t.done
                .back()
                .map(|r| (r.kind.len(), r.progress, r.created, r.started)),
        ));
        t0.elapsed().as_nanos() as f64 / (4 * CYCLES) as f64
    };
    let (e, n) = alternate(engine_round, naive_round);
    println!("3. task cycle on one graph (register, started, progress, succeeded), per command");
    println!(
        "   engine {e:.0} ns | Mutex<HashMap> task table {n:.0} ns | ratio {:.2}",
        e / n
    );
}

/// One thread's share of the scaling workload: for each graph in turn,
/// 7 keyed reads then a task registered and succeeded.
fn scaling_work(engine: &Engine, keys: &[GraphKey], ops: usize) {
    let spec = TaskSpec::new(HostKind::new("algo").expect("kind"));
    for i in 0..ops {
        let k = &keys[(i / 8) % keys.len()];
        if i % 8 == 7 {
            let t = engine.register_task(k, spec.clone()).expect("register");
            engine.report(&t.task, Report::Succeeded).expect("report");
        } else {
            black_box(engine.state(k).ok());
        }
    }
}

/// Operations per second of `threads` threads, each on its own graphs.
fn scaling_round(threads: usize, ops: usize) -> f64 {
    let (engine, _jobs, keys) = running_engine(1_000, Config::default().max_retained_per_graph(16));
    let per = keys.len() / threads;
    let barrier = Barrier::new(threads + 1);
    let took = thread::scope(|s| {
        for t in 0..threads {
            let (engine, barrier) = (&engine, &barrier);
            let mine = &keys[t * per..(t + 1) * per];
            s.spawn(move || {
                barrier.wait();
                scaling_work(engine, mine, ops);
                barrier.wait();
            });
        }
        barrier.wait();
        let t0 = Instant::now();
        barrier.wait();
        t0.elapsed()
    });
    (threads * ops) as f64 / took.as_secs_f64()
}

/// The same shape of run with pure arithmetic: what two cores give.
fn control_round(threads: usize) -> f64 {
    const N: u64 = 50_000_000;
    let barrier = Barrier::new(threads + 1);
    let took = thread::scope(|s| {
        for t in 0..threads {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                let mut x = t as u64 + 1;
                for i in 0..N {
                    x = black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i));
                }
                black_box(x);
                barrier.wait();
            });
        }
        barrier.wait();
        let t0 = Instant::now();
        barrier.wait();
        t0.elapsed()
    });
    (threads as u64 * N) as f64 / took.as_secs_f64()
}

fn scaling() {
    const OPS: usize = 2_000_000;
    let (one, two) = alternate(|| scaling_round(1, OPS), || scaling_round(2, OPS));
    let (c1, c2) = alternate(|| control_round(1), || control_round(2));
    println!("4. two threads against one, disjoint graphs, 7 keyed reads to 1 task cycle");
    println!(
        "   1 thread {:.2} M ops/s | 2 threads {:.2} M ops/s | ratio {:.2} (control: {:.2})",
        one / 1e6,
        two / 1e6,
        two / one,
        c2 / c1
    );
}

/// Whether case `n` runs: every case, or those `TARGETS_ONLY` lists
/// (`TARGETS_ONLY=3` runs only the task cycle, for a profiler).
fn runs(n: char) -> bool {
    std::env::var("TARGETS_ONLY").map_or(true, |only| only.contains(n))
}

fn main() {
    let t0 = Instant::now();
    let cases: [(char, fn()); 4] = [
        ('1', keyed_reads),
        ('2', restart),
        ('3', task_cycle),
        ('4', scaling),
    ];
    for (n, case) in cases {
        if runs(n) {
            case();
        }
    }
    println!(
        "(median of {} rounds each; {:.0?} in all)",
        rounds(),
        t0.elapsed().max(Duration::ZERO)
    );
}
