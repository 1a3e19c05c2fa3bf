//! Criterion benchmarks of the durable journal (feature `journal`): commits
//! per second under each durability policy with 1 and 2 committing
//! threads, and the time to open (recover) a journal of 1,000,000 records
//! and a snapshot of 100,000 graphs. The journals live in a directory
//! under the build's target directory, on the disk the build uses.
//! `docs/BENCHMARKS.md` has the figures.
//!
//! `cargo bench --features journal --bench journal`

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use graph_lifecycle::journal::{Durability, FileStorage, JournalOptions, RecoveryReport};
use graph_lifecycle::{Config, Engine, GraphKey, HostKind, JobReceiver, Report, TaskSpec};

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a scratch directory")
}

fn open(
    dir: &Path,
    config: Config,
    options: JournalOptions,
) -> (Engine, JobReceiver, RecoveryReport) {
    Engine::builder()
        .config(config)
        .open_durable(FileStorage::open(dir).expect("directory"), options)
        .expect("open")
}

fn key(i: usize) -> GraphKey {
    GraphKey::parse(&format!("project-{}", i % 4), &format!("graph-{i}")).expect("valid key")
}

/// Makes graph `i` Running: create, start, start succeeded.
fn running(engine: &Engine, jobs: &JobReceiver, i: usize) -> GraphKey {
    let k = key(i);
    engine.create_graph(&k).expect("create");
    engine.start(&k).expect("start");
    let job = jobs.try_recv().expect("start job");
    engine.report(&job.task, Report::Succeeded).expect("report");
    k
}

fn spec() -> TaskSpec {
    TaskSpec::new(HostKind::new("algo").expect("valid kind"))
}

/// `n` commits on graph `k`: host tasks registered and reported
/// succeeded, two commits each.
fn commits(engine: &Engine, k: &GraphKey, n: u64) {
    for _ in 0..n / 2 {
        let t = engine.register_task(k, spec()).expect("register");
        engine.report(&t.task, Report::Succeeded).expect("report");
    }
}

/// Commits per second, each policy, 1 and 2 threads committing to graphs
/// of their own.
fn commit_throughput(c: &mut Criterion) {
    let policies = [
        ("sync_every_commit", Durability::SyncEveryCommit),
        (
            "group_commit",
            Durability::GroupCommit {
                max_delay: Duration::from_millis(1),
            },
        ),
        ("no_sync", Durability::NoSync),
    ];
    let mut g = c.benchmark_group("journal_commit");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(1));
    for (name, durability) in policies {
        for threads in [1usize, 2] {
            let dir = scratch();
            let (engine, jobs, _) = open(
                dir.path(),
                Config::default(),
                JournalOptions::new(durability),
            );
            let keys: Vec<_> = (0..threads).map(|i| running(&engine, &jobs, i)).collect();
            g.bench_function(format!("{name}/{threads}_threads"), |b| {
                b.iter_custom(|iters| {
                    let per = (iters / threads as u64).max(2);
                    let t0 = Instant::now();
                    thread::scope(|s| {
                        for k in &keys {
                            let engine = &engine;
                            s.spawn(move || commits(engine, k, per));
                        }
                    });
                    // Time per commit, whatever the rounding of `per`.
                    t0.elapsed()
                        .mul_f64(iters as f64 / (per * threads as u64) as f64)
                })
            });
        }
    }
    g.finish();
}

/// Opening a journal of 1,000,000 records (no snapshot), and a snapshot
/// of 100,000 graphs (with the log after it empty).
fn recovery(c: &mut Criterion) {
    let mut g = c.benchmark_group("journal_recovery");
    g.sample_size(10).measurement_time(Duration::from_secs(20));

    let log_dir = scratch();
    let options = JournalOptions::new(Durability::NoSync).snapshot_after_bytes(None);
    {
        let (engine, jobs, _) = open(log_dir.path(), Config::default(), options.clone());
        let keys: Vec<_> = (0..1_000).map(|i| running(&engine, &jobs, i)).collect();
        // 3,000 records so far; the rest are task cycles, nothing left live.
        for k in keys.iter().cycle().take(498_500) {
            commits(&engine, k, 2);
        }
        let status = engine.journal_status().expect("journal");
        assert_eq!(status.next_lsn, 1_000_001);
        engine.sync_journal().expect("sync");
    }
    g.throughput(Throughput::Elements(1_000_000));
    g.bench_function("replay_1m_records", |b| {
        b.iter(|| {
            let (_engine, _jobs, report) = open(log_dir.path(), Config::default(), options.clone());
            assert_eq!(report.replayed, 1_000_000);
        })
    });

    let snap_dir = scratch();
    let options = options.segment_bytes(1 << 20);
    let config = Config::default().max_graphs(200_000);
    {
        let (engine, jobs, _) = open(snap_dir.path(), config.clone(), options.clone());
        for i in 0..100_000 {
            running(&engine, &jobs, i);
        }
        engine.snapshot_journal().expect("snapshot");
        // A second snapshot compacts the log below the first.
        let extra = key(100_000);
        engine.create_graph(&extra).expect("create");
        engine.remove_graph(&extra).expect("remove");
        engine.snapshot_journal().expect("snapshot");
    }
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("load_snapshot_100k_graphs", |b| {
        b.iter(|| {
            let (engine, _jobs, report) = open(snap_dir.path(), config.clone(), options.clone());
            assert!(report.snapshot.is_some());
            assert!(engine.graph_count() >= 100_000);
        })
    });
    g.finish();
}

criterion_group!(benches, commit_throughput, recovery);
criterion_main!(benches);
