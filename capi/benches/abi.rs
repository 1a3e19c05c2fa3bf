//! The C ABI's call overhead, in one run: a graph state read and a task
//! cycle (register a host task, report started, progress, succeeded)
//! through the `extern "C"` functions a C host calls, against the same
//! through the Rust API, with the ratio.
//!
//! ```sh
//! cargo bench -p graph-lifecycle-capi --bench abi
//! ```
//!
//! Each figure is the median of several rounds, the two sides of a row
//! measured in alternating rounds in the same process, each on its own
//! engine with the same configuration (the task cycle's as in the core's
//! `task_cycle/one_graph` benchmark). A round takes about a tenth of a
//! second; the whole run a few seconds.

use std::hint::black_box;
use std::mem::MaybeUninit;
use std::ptr::{null, null_mut};
use std::time::Instant;

use graph_lifecycle::{Config, Engine, GraphKey, HostKind, JobReceiver, Report, TaskSpec};
use graph_lifecycle_capi::*;

const ROUNDS: usize = 7;

/// The time of one call of `f` in nanoseconds, from a round of `n` calls.
fn per_call(n: u64, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_secs_f64() * 1e9 / n as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Rounds of `rust` and `c`, alternating; the medians, in nanoseconds.
fn compare(n: u64, mut rust: impl FnMut(), mut c: impl FnMut()) -> (f64, f64) {
    // Warm up both.
    per_call(n / 10 + 1, &mut rust);
    per_call(n / 10 + 1, &mut c);
    let (mut r, mut k) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        r.push(per_call(n, &mut rust));
        k.push(per_call(n, &mut c));
    }
    (median(r), median(k))
}

fn show(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.2} ns")
    } else {
        format!("{:.2} µs", ns / 1_000.0)
    }
}

fn row(name: &str, (rust, c): (f64, f64)) {
    println!(
        "{name:<52} {:>10} {:>10} {:>7.2}",
        show(rust),
        show(c),
        c / rust
    );
}

/// A Rust engine with one running graph.
fn rust_engine(config: Config, key: &GraphKey) -> (Engine, JobReceiver) {
    let (engine, jobs) = Engine::builder().config(config).build();
    engine.create_graph(key).expect("create");
    engine.start(key).expect("start");
    let job = jobs.try_recv().expect("start job");
    engine.report(&job.task, Report::Succeeded).expect("report");
    (engine, jobs)
}

fn ok(status: glc_status) {
    assert_eq!(status, glc_status::GLC_OK);
}

/// A C engine with one running graph, and a handle to it.
fn c_engine(config: &glc_config, key: &glc_key) -> (glc_engine, glc_graph) {
    let mut e = glc_engine::default();
    let mut g = glc_graph::default();
    let mut job = glc_job::default();
    // SAFETY: `config`, `key` (whose strings outlive the call) and the out
    // values are live.
    unsafe {
        ok(glc_engine_new(config, &mut e));
        ok(glc_create_graph(e, key, null(), 0, &mut g));
        ok(glc_start(e, key, null(), 0, null(), 0, null_mut()));
        ok(glc_try_recv_job(e, &mut job));
        ok(glc_job_report(
            job,
            GLC_REPORT_SUCCEEDED,
            0,
            null(),
            0,
            null(),
            0,
        ));
    }
    ok(glc_job_free(job));
    (e, g)
}

fn main() {
    let (project, graph) = ("project-0", "graph-0");
    let key = GraphKey::parse(project, graph).expect("key");
    let ckey = glc_key {
        project: project.as_ptr().cast(),
        project_len: project.len(),
        graph: graph.as_ptr().cast(),
        graph_len: graph.len(),
    };
    let config = Config::default().max_retained_per_graph(100);
    let mut cconfig = MaybeUninit::<glc_config>::uninit();
    // SAFETY: a live local.
    let mut cconfig = unsafe {
        ok(glc_config_default(cconfig.as_mut_ptr()));
        cconfig.assume_init()
    };
    cconfig.max_retained_per_graph = 100;

    let (engine, _jobs) = rust_engine(config, &key);
    let handle = engine.graph(&key).expect("graph");
    let (e, g) = c_engine(&cconfig, &ckey);

    println!("C ABI call overhead: median of {ROUNDS} rounds, each side on its own engine");
    println!();
    println!(
        "{:<52} {:>10} {:>10} {:>7}",
        "benchmark", "Rust API", "C ABI", "C/Rust"
    );

    let mut st = glc_graph_state::GLC_STATE_STOPPED;
    row(
        "state read through a graph handle",
        compare(
            5_000_000,
            || {
                black_box(black_box(&handle).state());
            },
            || {
                // SAFETY: `st` is a live local.
                black_box(unsafe { glc_graph_get_state(black_box(g), &mut st, null_mut()) });
            },
        ),
    );
    row(
        "state read by key",
        compare(
            500_000,
            || {
                black_box(engine.state(black_box(&key)).ok());
            },
            || {
                // SAFETY: `ckey`'s strings and `st` are live.
                black_box(unsafe { glc_get_state(black_box(e), &ckey, &mut st) });
            },
        ),
    );

    let kind = "algo";
    row(
        "task cycle: register, started, progress, succeeded",
        compare(
            20_000,
            || {
                let job = engine
                    .register_task(&key, TaskSpec::new(HostKind::new(kind).expect("kind")))
                    .expect("register");
                engine.report(&job.task, Report::Started).expect("started");
                engine
                    .report(&job.task, Report::Progress(50))
                    .expect("progress");
                engine
                    .report(&job.task, Report::Succeeded)
                    .expect("succeeded");
            },
            || {
                let mut job = glc_job::default();
                // SAFETY: `ckey`'s and `kind`'s strings and `job` are live;
                // the other pointers are NULL with length 0.
                unsafe {
                    ok(glc_register_task(
                        e,
                        &ckey,
                        kind.as_ptr().cast(),
                        kind.len(),
                        true,
                        0,
                        null(),
                        0,
                        null(),
                        0,
                        &mut job,
                    ));
                    for (report, pct) in [
                        (GLC_REPORT_STARTED, 0),
                        (GLC_REPORT_PROGRESS, 50),
                        (GLC_REPORT_SUCCEEDED, 0),
                    ] {
                        ok(glc_job_report(job, report, pct, null(), 0, null(), 0));
                    }
                }
                ok(glc_job_free(job));
            },
        ),
    );

    ok(glc_graph_free(g));
    ok(glc_engine_free(e));
}
