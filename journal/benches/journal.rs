//! Benchmarks of the durable journal: commits per second under each
//! durability policy with 1 and 2 committing threads, the time to open
//! (recover) a journal of 1,000,000 records and a snapshot of 100,000
//! graphs, and the latency of commits while a snapshot is taken against
//! the same commits without one. The journals live in a directory under
//! the build's target directory, on the disk the build uses.
//! `docs/BENCHMARKS.md` has the figures.
//!
//! `cargo bench -p graph-lifecycle-journal --bench journal`; the snapshot
//! latency is `--bench snapshot_latency`.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{commits, key, open_dir, running, scratch};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use graph_lifecycle::Config;
use graph_lifecycle_journal::{Durability, JournalOptions};

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
            let (engine, jobs, _journal, _) = open_dir(
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
        let (engine, jobs, journal, _) =
            open_dir(log_dir.path(), Config::default(), options.clone());
        let keys: Vec<_> = (0..1_000).map(|i| running(&engine, &jobs, i)).collect();
        // 3,000 records so far; the rest are task cycles, nothing left live.
        for k in keys.iter().cycle().take(498_500) {
            commits(&engine, k, 2);
        }
        assert_eq!(journal.status().next_lsn, 1_000_001);
        journal.sync().expect("sync");
    }
    g.throughput(Throughput::Elements(1_000_000));
    g.bench_function("replay_1m_records", |b| {
        b.iter(|| {
            let (_engine, _jobs, _journal, report) =
                open_dir(log_dir.path(), Config::default(), options.clone());
            assert_eq!(report.replayed, 1_000_000);
        })
    });

    let snap_dir = scratch();
    let options = options.segment_bytes(1 << 20);
    let config = Config::default().max_graphs(200_000);
    {
        let (engine, jobs, journal, _) = open_dir(snap_dir.path(), config.clone(), options.clone());
        for i in 0..100_000 {
            running(&engine, &jobs, i);
        }
        journal.snapshot(&engine).expect("snapshot");
        // A second snapshot compacts the log below the first.
        let extra = key(100_000);
        engine.create_graph(&extra).expect("create");
        engine.remove_graph(&extra).expect("remove");
        journal.snapshot(&engine).expect("snapshot");
    }
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("load_snapshot_100k_graphs", |b| {
        b.iter(|| {
            let (engine, _jobs, _journal, report) =
                open_dir(snap_dir.path(), config.clone(), options.clone());
            assert!(report.snapshot.is_some());
            assert!(engine.graph_count() >= 100_000);
        })
    });
    g.finish();
}

criterion_group!(benches, commit_throughput, recovery);
criterion_main!(benches);
