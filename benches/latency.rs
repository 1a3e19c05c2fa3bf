//! Latency figures criterion does not measure well: operations on other
//! graphs while a 100,000-task forced restart runs, and the job hand-off
//! from `force_restart` returning to a worker holding the job. Each is
//! printed next to a baseline measured in the same process.
//!
//! Run with `cargo bench --bench latency`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use graph_lifecycle::{Config, Engine, GraphKey, HostKind, JobReceiver, Report, TaskSpec};

fn key(i: usize) -> GraphKey {
    GraphKey::parse("bench", &format!("graph-{i}")).expect("valid key")
}

fn spec() -> TaskSpec {
    TaskSpec::new(HostKind::new("algo").expect("valid kind"))
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

struct Stats {
    n: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    Stats {
        n: v.len(),
        p50: at(0.50),
        p99: at(0.99),
        max: v[v.len() - 1],
    }
}

fn print(name: &str, s: &Stats) {
    println!(
        "{name:<48} n={:<8} p50={:>9.2?} p99={:>9.2?} max={:>9.2?}",
        s.n, s.p50, s.p99, s.max
    );
}

/// One operation on another graph: a task cycle step or a state read.
fn other_op(engine: &Engine, k: &GraphKey, i: usize) {
    if i.is_multiple_of(4) {
        let job = engine.register_task(k, spec()).expect("register");
        engine.report(&job.task, Report::Succeeded).expect("report");
    } else {
        let _ = engine.state(k);
    }
}

/// 5. Latency of operations on other graphs: while a forced restart of a
///    100,000-task graph runs, and with nothing else running.
fn other_graphs_during_restart(rounds: usize, tasks: usize) {
    let config = Config::default().max_retained_per_graph(16);
    let (engine, _jobs, keys) = running_engine(1_001, config);
    let big = keys[0].clone();
    let others = &keys[1..];

    // Baseline: the same operations with no restart anywhere.
    let mut quiet = Vec::new();
    for i in 0..200_000 {
        let t0 = Instant::now();
        other_op(&engine, &others[i % others.len()], i);
        quiet.push(t0.elapsed());
    }

    let restarting = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let barrier = Barrier::new(2);
    let mut during = Vec::new();
    let mut restart_times = Vec::new();
    thread::scope(|s| {
        let measurer = s.spawn(|| {
            let mut samples = Vec::new();
            let mut i = 0;
            barrier.wait();
            while !done.load(Ordering::Acquire) {
                let k = &others[i % others.len()];
                let before = restarting.load(Ordering::Acquire);
                let t0 = Instant::now();
                other_op(&engine, k, i);
                let dt = t0.elapsed();
                if before && restarting.load(Ordering::Acquire) {
                    samples.push(dt);
                }
                i += 1;
            }
            samples
        });
        barrier.wait();
        for _ in 0..rounds {
            for _ in 0..tasks {
                engine.register_task(&big, spec()).expect("register");
            }
            // Let the measurer settle into the loop.
            thread::sleep(Duration::from_millis(5));
            restarting.store(true, Ordering::Release);
            let t0 = Instant::now();
            let r = engine.force_restart(&big).expect("restart");
            restart_times.push(t0.elapsed());
            restarting.store(false, Ordering::Release);
            assert_eq!(r.failed, tasks);
            let job = engine.task(&big, r.job).expect("restart task");
            engine
                .report(
                    &graph_lifecycle::TaskRef::new(big.clone(), job.id, job.epoch),
                    Report::Succeeded,
                )
                .expect("restart done");
        }
        done.store(true, Ordering::Release);
        during = measurer.join().expect("measurer");
    });
    let r = stats(restart_times);
    println!(
        "force_restart of {tasks} tasks: p50 {:.2?} ({:.1} ns per failed task), max {:.2?}",
        r.p50,
        r.p50.as_nanos() as f64 / tasks as f64,
        r.max
    );
    print("other graphs, no restart running (baseline)", &stats(quiet));
    if during.is_empty() {
        println!("other graphs during the restart: no sample (restart too short)");
    } else {
        print("other graphs, during a 100k-task restart", &stats(during));
    }
}

/// 6. Job hand-off: from `force_restart` returning to a worker holding the
///    job, against a bare crossbeam channel hand-off.
fn hand_off(rounds: usize) {
    let (engine, jobs, keys) = running_engine(1, Config::default().max_retained_per_graph(16));
    let k = keys[0].clone();
    let engine = Arc::new(engine);
    let (tx, rx) = crossbeam_channel::bounded::<Instant>(1);
    let worker = {
        let engine = engine.clone();
        thread::spawn(move || {
            let mut out = Vec::with_capacity(rounds);
            for _ in 0..rounds {
                let job = jobs.recv().expect("job");
                let got = Instant::now();
                let returned = rx.recv().expect("time");
                out.push(got.saturating_duration_since(returned));
                engine.report(&job.task, Report::Succeeded).expect("report");
            }
            out
        })
    };
    for _ in 0..rounds {
        engine.force_restart(&k).expect("restart");
        let returned = Instant::now();
        tx.send(returned).expect("send");
        // Wait until the worker completed the restart.
        while engine.graph_info(&k).expect("info").job.is_some() {
            std::hint::spin_loop();
        }
    }
    let engine_samples = worker.join().expect("worker");

    // Baseline: a value through a bare unbounded crossbeam channel to a
    // blocked receiver, timed from the send returning.
    let (jtx, jrx) = crossbeam_channel::unbounded::<u64>();
    let (ttx, trx) = crossbeam_channel::bounded::<Instant>(1);
    let (ack_tx, ack_rx) = crossbeam_channel::bounded::<()>(1);
    let base = thread::spawn(move || {
        let mut out = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let _ = jrx.recv().expect("value");
            let got = Instant::now();
            let sent = trx.recv().expect("time");
            out.push(got.saturating_duration_since(sent));
            ack_tx.send(()).expect("ack");
        }
        out
    });
    for i in 0..rounds {
        jtx.send(i as u64).expect("send");
        ttx.send(Instant::now()).expect("send");
        ack_rx.recv().expect("ack");
    }
    let base_samples = base.join().expect("baseline");
    print(
        "hand-off, force_restart return -> worker",
        &stats(engine_samples),
    );
    print(
        "hand-off, bare crossbeam send -> recv (baseline)",
        &stats(base_samples),
    );
}

/// `force_restart` of a graph of `tasks` host tasks, per failed task: with
/// the hosts' tickets dropped (the restart frees each task's token) and
/// with them still held (as workers hold the jobs they run).
fn restart_cost(rounds: usize, tasks: usize) {
    for hold in [false, true] {
        let (engine, jobs, keys) = running_engine(1, Config::default());
        let k = &keys[0];
        let mut times = Vec::new();
        for _ in 0..rounds {
            let mut held = Vec::new();
            for _ in 0..tasks {
                let ticket = engine.register_task(k, spec()).expect("register");
                if hold {
                    held.push(ticket);
                }
            }
            let t0 = Instant::now();
            engine.force_restart(k).expect("restart");
            times.push(t0.elapsed());
            drop(held);
            let job = jobs.try_recv().expect("restart job");
            engine
                .report(&job.task, Report::Succeeded)
                .expect("restart done");
        }
        let s = stats(times);
        println!(
            "force_restart of {tasks} tasks, tickets {}: p50 {:.2?} ({:.1} ns per failed task)",
            if hold { "held" } else { "dropped" },
            s.p50,
            s.p50.as_nanos() as f64 / tasks as f64
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: keep
    // that run short.
    let full = std::env::args().any(|a| a == "--bench");
    let (rounds, tasks, handoffs) = if full {
        (20, 100_000, 20_000)
    } else {
        (1, 1_000, 100)
    };
    restart_cost(rounds, tasks);
    other_graphs_during_restart(rounds, tasks);
    hand_off(handoffs);
}
