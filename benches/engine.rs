//! Criterion benchmarks of the query path and the control path, each next
//! to a baseline run in the same process. `docs/BENCHMARKS.md` has the
//! figures and the ratios.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Barrier, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use graph_lifecycle::{
    Config, Engine, GraphKey, GraphState, HostKind, JobReceiver, Report, TaskSpec,
};

fn key(i: usize) -> GraphKey {
    GraphKey::parse(&format!("project-{}", i % 4), &format!("graph-{i}")).expect("valid key")
}

/// An engine with `n` Running graphs; the start jobs are taken and
/// reported, so the channel is empty.
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

fn spec() -> TaskSpec {
    TaskSpec::new(HostKind::new("algo").expect("valid kind"))
}

/// 1. State read: the handle and the registry against a raw atomic and a
///    locked map.
fn state_read(c: &mut Criterion) {
    let (engine, _jobs, keys) = running_engine(1_000, Config::default());
    let handle = engine.graph(&keys[500]).expect("graph");
    let raw = AtomicU8::new(GraphState::Running.code());
    let map: RwLock<HashMap<GraphKey, GraphState>> = RwLock::new(
        keys.iter()
            .map(|k| (k.clone(), GraphState::Running))
            .collect(),
    );
    let k = keys[500].clone();

    let mut g = c.benchmark_group("state_read");
    g.bench_function("baseline_atomic_u8", |b| {
        b.iter(|| GraphState::from_code(black_box(&raw).load(Ordering::Acquire)))
    });
    g.bench_function("handle", |b| b.iter(|| black_box(&handle).state()));
    g.bench_function("handle_serves_queries", |b| {
        b.iter(|| black_box(&handle).serves_queries())
    });
    g.bench_function("baseline_rwlock_hashmap", |b| {
        b.iter(|| map.read().expect("lock").get(black_box(&k)).copied())
    });
    g.bench_function("registry_by_key", |b| {
        b.iter(|| engine.state(black_box(&k)))
    });
    g.finish();
}

/// One task cycle: register, start, progress, succeed.
fn cycle(engine: &Engine, k: &GraphKey) {
    let job = engine.register_task(k, spec()).expect("register");
    engine.report(&job.task, Report::Started).expect("started");
    engine
        .report(&job.task, Report::Progress(50))
        .expect("progress");
    engine
        .report(&job.task, Report::Succeeded)
        .expect("succeeded");
}

/// 2. Task cycle on one graph, and spread over 1,000 graphs.
fn task_cycle(c: &mut Criterion) {
    let config = Config::default().max_retained_per_graph(100);
    let (engine, _jobs, keys) = running_engine(1_000, config);
    let mut g = c.benchmark_group("task_cycle");
    g.throughput(Throughput::Elements(1));
    g.bench_function("one_graph", |b| b.iter(|| cycle(&engine, &keys[0])));
    let mut i = 0;
    g.bench_function("1000_graphs", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            cycle(&engine, &keys[i]);
        })
    });
    g.finish();
}

/// 3. force_restart with n live tasks: time per failed task.
fn force_restart(c: &mut Criterion) {
    let mut g = c.benchmark_group("force_restart");
    g.sample_size(10);
    for n in [10usize, 1_000, 100_000] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("{n}_live_tasks"), |b| {
            b.iter_batched(
                || {
                    let (engine, jobs, keys) = running_engine(1, Config::default());
                    for _ in 0..n {
                        engine.register_task(&keys[0], spec()).expect("register");
                    }
                    (engine, jobs, keys)
                },
                |(engine, jobs, keys)| {
                    let r = engine.force_restart(&keys[0]).expect("restart");
                    assert_eq!(r.failed, n);
                    // Dropped after the measurement.
                    (engine, jobs, keys)
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

/// The mixed workload over one graph: mostly state reads, some task
/// cycles, now and then a forced restart and its job's completion.
fn mixed_op(engine: &Engine, jobs: &JobReceiver, k: &GraphKey, i: u64) {
    match i % 64 {
        0 => {
            engine.force_restart(k).expect("restart");
            // Complete whatever restart job is waiting (ours or another
            // thread's: any will do to bring a graph back).
            while let Ok(job) = jobs.try_recv() {
                let _ = engine.report(&job.task, Report::Succeeded);
            }
        }
        1..=8 => {
            if engine.state(k) == Ok(GraphState::Running) {
                cycle(engine, k);
            }
        }
        _ => {
            black_box(engine.state(k).ok());
        }
    }
}

/// Runs `ops` mixed operations on each of `threads` threads, thread t on
/// its own slice of the graphs, and returns the wall time. With `global`,
/// every operation first takes one process-wide mutex: the baseline.
fn run_mixed(threads: usize, ops: u64, global: Option<&Mutex<()>>) -> Duration {
    let config = Config::default().max_retained_per_graph(16);
    let (engine, jobs, keys) = running_engine(1_000, config);
    let per = keys.len() / threads;
    let barrier = Barrier::new(threads + 1);
    thread::scope(|s| {
        for t in 0..threads {
            let (engine, jobs, barrier) = (&engine, jobs.clone(), &barrier);
            let mine = &keys[t * per..(t + 1) * per];
            s.spawn(move || {
                barrier.wait();
                for i in 0..ops {
                    let k = &mine[(i as usize / 64) % mine.len()];
                    match global {
                        Some(m) => {
                            let _g = m.lock().expect("lock");
                            mixed_op(engine, &jobs, k, i);
                        }
                        None => mixed_op(engine, &jobs, k, i),
                    }
                }
                barrier.wait();
            });
        }
        barrier.wait();
        let t0 = Instant::now();
        barrier.wait();
        t0.elapsed()
    })
}

/// 4. Throughput of the mixed workload with 1 and 2 threads, against the
///    same workload serialised by one global mutex.
fn throughput(c: &mut Criterion) {
    let global = Mutex::new(());
    let mut g = c.benchmark_group("mixed_1000_graphs");
    g.sample_size(20);
    for threads in [1usize, 2] {
        g.throughput(Throughput::Elements(threads as u64));
        g.bench_function(format!("engine_{threads}_threads"), |b| {
            b.iter_custom(|iters| run_mixed(threads, iters, None))
        });
        g.bench_function(format!("global_mutex_{threads}_threads"), |b| {
            b.iter_custom(|iters| run_mixed(threads, iters, Some(&global)))
        });
    }
    g.finish();
}

criterion_group!(benches, state_read, task_cycle, force_restart, throughput);
criterion_main!(benches);
