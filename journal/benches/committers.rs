//! Commits per second with 1, 8 and 64 committing threads, each on a
//! graph of its own, under each durability policy: whether group commit
//! scales with committers that mostly wait on the disk. Each thread runs
//! task cycles (a registration and its success: two commits) for a fixed
//! time; the policies alternate in rounds, and the median round is
//! printed. `docs/BENCHMARKS.md` has the figures.
//!
//! `cargo bench -p graph-lifecycle-journal --bench committers`
//! (`COMMITTERS_ROUNDS`, `COMMITTERS_SECS` to change the run).

mod common;

use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{open_dir, running, scratch, spec};
use graph_lifecycle::{Config, Report};
use graph_lifecycle_journal::{Durability, JournalOptions};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Commits per second of `threads` committers for `secs`, and the
/// commits each sync acknowledged on average.
fn round(durability: Durability, threads: usize, secs: Duration) -> (f64, f64) {
    let dir = scratch();
    let options = JournalOptions::new(durability).snapshot_after_bytes(None);
    let (engine, jobs, journal, _) = open_dir(dir.path(), Config::default(), options);
    let keys: Vec<_> = (0..threads).map(|i| running(&engine, &jobs, i)).collect();
    let syncs_before = journal.status().syncs;
    let stop = AtomicBool::new(false);
    let count = AtomicU64::new(0);
    let start = Barrier::new(threads + 1);
    let elapsed = thread::scope(|s| {
        for k in &keys {
            let (engine, stop, count, start) = (&engine, &stop, &count, &start);
            s.spawn(move || {
                start.wait();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let t = engine.register_task(k, spec()).expect("register");
                    engine.report(&t.task, Report::Succeeded).expect("report");
                    n += 2;
                }
                count.fetch_add(n, Ordering::Relaxed);
            });
        }
        start.wait();
        let t0 = Instant::now();
        thread::sleep(secs);
        stop.store(true, Ordering::Relaxed);
        t0
    });
    let took = elapsed.elapsed().as_secs_f64();
    let commits = count.load(Ordering::Relaxed) as f64;
    let syncs = journal.status().syncs - syncs_before;
    (commits / took, commits / syncs.max(1) as f64)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let rounds = env("COMMITTERS_ROUNDS", 5) as usize;
    let secs = Duration::from_millis(env("COMMITTERS_SECS", 2) * 1000);
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
    println!("commits per second, median of {rounds} rounds of {secs:?}");
    for threads in [1usize, 8, 64] {
        let mut results: Vec<Vec<(f64, f64)>> = vec![Vec::new(); policies.len()];
        for _ in 0..rounds {
            for (i, (_, d)) in policies.iter().enumerate() {
                results[i].push(round(*d, threads, secs));
            }
        }
        // The median round by commits per second, with its commits a sync.
        let medians: Vec<(f64, f64)> = results
            .iter_mut()
            .map(|v| {
                v.sort_by(|a, b| a.0.total_cmp(&b.0));
                v[v.len() / 2]
            })
            .collect();
        let no_sync = medians[2].0;
        for ((name, _), (m, per_sync)) in policies.iter().zip(&medians) {
            println!(
                "{threads:>3} committers  {name:<18} {m:>11.0}/s  {:.2} of no_sync  \
                 {per_sync:>8.1} commits a sync",
                m / no_sync
            );
        }
    }
}
