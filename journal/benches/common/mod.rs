//! What the journal's benchmarks share.

// Each bench uses a different part of it.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use graph_lifecycle::{Config, Engine, GraphKey, HostKind, JobReceiver, Report, TaskSpec};
use graph_lifecycle_journal::{FileStorage, Journal, JournalOptions, RecoveryReport, open};

pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a scratch directory")
}

pub fn open_dir(
    dir: &Path,
    config: Config,
    options: JournalOptions,
) -> (Engine, JobReceiver, Journal, RecoveryReport) {
    let d = open(
        Engine::builder().config(config),
        FileStorage::open(dir).expect("directory"),
        options,
    )
    .expect("open");
    (d.engine, d.jobs, d.journal, d.report)
}

pub fn key(i: usize) -> GraphKey {
    GraphKey::parse(&format!("project-{}", i % 4), &format!("graph-{i}")).expect("valid key")
}

/// Makes graph `i` Running: create, start, start succeeded.
pub fn running(engine: &Engine, jobs: &JobReceiver, i: usize) -> GraphKey {
    let k = key(i);
    engine.create_graph(&k).expect("create");
    engine.start(&k).expect("start");
    let job = jobs.try_recv().expect("start job");
    engine.report(&job.task, Report::Succeeded).expect("report");
    k
}

pub fn spec() -> TaskSpec {
    TaskSpec::new(HostKind::new("algo").expect("valid kind"))
}

/// `n` commits on graph `k`: host tasks registered and reported
/// succeeded, two commits each.
pub fn commits(engine: &Engine, k: &GraphKey, n: u64) {
    for _ in 0..n / 2 {
        let t = engine.register_task(k, spec()).expect("register");
        engine.report(&t.task, Report::Succeeded).expect("report");
    }
}

/// Percentiles of a sample of latencies.
pub struct Stats {
    pub n: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

pub fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    Stats {
        n: v.len(),
        p50: at(0.50),
        p99: at(0.99),
        max: v[v.len() - 1],
    }
}

pub fn print(name: &str, s: &Stats) {
    println!(
        "{name:<52} n={:<7} p50={:>9.2?} p99={:>9.2?} max={:>9.2?}",
        s.n, s.p50, s.p99, s.max
    );
}
