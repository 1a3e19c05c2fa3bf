//! Commit latency while the journal takes snapshots, against the same
//! commits without: each command timed, percentiles printed next to each
//! other, with their ratio. `docs/BENCHMARKS.md` has the figures.
//!
//! `cargo bench -p graph-lifecycle-journal --bench snapshot_latency`

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{commits, open_dir, print, running, scratch, spec, stats};
use graph_lifecycle::{Config, Report};
use graph_lifecycle_journal::{Durability, JournalOptions};

/// The latency of one thread's commits (a host task registered and
/// reported succeeded, each command timed) on an engine of 20,000 graphs
/// with 20 ended tasks each: for 3 s with no snapshot, then for 3 s while
/// another thread takes snapshot after snapshot. A commit waits for a
/// snapshot only while the engine's state is copied (the journal's gate);
/// the snapshot is encoded, written and synced with commits going on.
/// Printed, with the snapshots taken and how long each took.
fn main() {
    // The graphs are made once, without syncs, and snapshotted; each run
    // opens the journal again with its own policy.
    let dir = scratch();
    let config = Config::default().max_retained_per_graph(20);
    let setup = JournalOptions::new(Durability::NoSync).snapshot_after_bytes(None);
    let keys: Vec<_> = {
        let (engine, jobs, journal, _) = open_dir(dir.path(), config.clone(), setup);
        let keys: Vec<_> = (0..20_000).map(|i| running(&engine, &jobs, i)).collect();
        for k in &keys {
            commits(&engine, k, 40);
        }
        journal.snapshot(&engine).expect("snapshot");
        keys
    };
    for (name, durability) in [
        ("no_sync", Durability::NoSync),
        ("sync_every_commit", Durability::SyncEveryCommit),
    ] {
        let options = JournalOptions::new(durability).snapshot_after_bytes(None);
        let (engine, _jobs, journal, _) = open_dir(dir.path(), config.clone(), options);
        let probe = &keys[0];
        let measure = |for_how_long: Duration| {
            let mut v = Vec::new();
            let end = Instant::now() + for_how_long;
            while Instant::now() < end {
                let t0 = Instant::now();
                let t = engine.register_task(probe, spec()).expect("register");
                v.push(t0.elapsed());
                let t0 = Instant::now();
                engine.report(&t.task, Report::Succeeded).expect("report");
                v.push(t0.elapsed());
            }
            v
        };
        let steady = stats(measure(Duration::from_secs(3)));
        let stop = AtomicBool::new(false);
        let (during, taken) = thread::scope(|s| {
            let snapshots = s.spawn(|| {
                let mut took = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    journal.snapshot(&engine).expect("snapshot");
                    took.push(t0.elapsed());
                }
                took
            });
            let during = measure(Duration::from_secs(3));
            stop.store(true, Ordering::Relaxed);
            (during, snapshots.join().expect("the snapshot thread"))
        });
        let during = stats(during);
        print(&format!("journal_commit_latency/{name}/steady"), &steady);
        print(
            &format!("journal_commit_latency/{name}/during_snapshots"),
            &during,
        );
        let took = stats(taken);
        println!(
            "{:<52} n={:<7} p50={:>9.2?} (20,000 graphs, image {} bytes)",
            format!("journal_snapshot/{name}/whole_snapshot"),
            took.n,
            took.p50,
            engine.image().encode().len()
        );
        println!(
            "{:<52} p50 x{:.2}  p99 x{:.2}  max x{:.2}",
            format!("journal_commit_latency/{name}/ratio"),
            during.p50.as_secs_f64() / steady.p50.as_secs_f64(),
            during.p99.as_secs_f64() / steady.p99.as_secs_f64(),
            during.max.as_secs_f64() / steady.max.as_secs_f64()
        );
    }
}
