//! The crash test: a child process commits with
//! `SyncEveryCommit` into a journal directory and prints every command
//! the engine acknowledged; the parent kills it with SIGKILL at a random
//! moment, reopens the directory and checks that every acknowledged
//! command is there, that recovery failed every live task as interrupted
//! and left no graph in a transitional state. Then a new child goes on in
//! the same directory, and so on.
//!
//! The child is this test binary run again with an environment variable
//! set: the `crash_child` test does the child's work then, and nothing in
//! an ordinary run.
//!
//! `CRASH_KILLS=500 cargo test -p graph-lifecycle-journal --release --test
//! crash` kills more often than the default 20 times.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use graph_lifecycle::{
    Engine, Epoch, FailReason, GraphKey, JobId, JobReceiver, ProjectId, Report, TaskRef, TaskStatus,
};
use graph_lifecycle_journal::{Durability, FileStorage, JournalOptions};

const CHILD_DIR: &str = "GRAPH_LIFECYCLE_CRASH_CHILD_DIR";

/// Opens the journal directory with `SyncEveryCommit`: the engine, its
/// jobs, and how many records recovery replayed.
fn open(dir: &Path) -> (Engine, JobReceiver, u64) {
    let storage = FileStorage::open(dir).unwrap_or_else(|e| panic!("{e}"));
    let durable = graph_lifecycle_journal::open(
        Engine::builder(),
        storage,
        JournalOptions::new(Durability::SyncEveryCommit),
    )
    .unwrap_or_else(|e| panic!("recovery failed: {e}"));
    (durable.engine, durable.jobs, durable.report.replayed)
}

/// The child's work, when the parent runs this binary as the child.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let (engine, jobs, _) = open(Path::new(&dir));
    // Keep the job channel drained; the jobs themselves are reported on
    // by the committing threads below.
    thread::spawn(move || while jobs.recv().is_ok() {});
    let threads: Vec<_> = ["t0", "t1"]
        .into_iter()
        .map(|project| {
            let engine = engine.clone();
            thread::spawn(move || {
                if let Err(e) = commit_forever(&engine, project) {
                    eprintln!("child failed: {e}");
                    std::process::exit(2);
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

/// Prints one acknowledged command, whole, before going on.
fn ack(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ack {line}");
    let _ = out.flush();
}

fn commit_forever(engine: &Engine, project: &str) -> Result<(), graph_lifecycle::Error> {
    let p = ProjectId::new(project)?;
    let mut n = engine.graphs(&p, 0, 0).total;
    loop {
        n += 1;
        let key = GraphKey::parse(project, &format!("g{n}"))?;
        engine.create_graph(&key)?;
        ack(format_args!("create {key}"));
        let start = engine.start(&key)?;
        ack(format_args!("start {key} {start}"));
        let task = TaskRef::new(key.clone(), start, Epoch(0));
        engine.report(&task, Report::Started)?;
        ack(format_args!("started {key} {start}"));
        engine.report(&task, Report::Succeeded)?;
        ack(format_args!("succeeded {key} {start}"));
        let import = engine.import(&key, "s3://bucket/edges.csv")?;
        ack(format_args!("import {key} {import}"));
        let task = TaskRef::new(key.clone(), import, Epoch(0));
        engine.report(&task, Report::Progress(50))?;
        ack(format_args!("progress {key} {import}"));
        if n.is_multiple_of(2) {
            engine.report(&task, Report::Succeeded)?;
            ack(format_args!("succeeded {key} {import}"));
        }
        let restart = engine.force_restart(&key)?;
        ack(format_args!("restart {key} {}", restart.job));
    }
}

/// Checks that the acknowledged command `line` is in the recovered
/// engine.
fn check(engine: &Engine, line: &str) -> Result<(), String> {
    let mut words = line.split(' ');
    let verb = words.next().unwrap_or_default();
    let key = words
        .next()
        .and_then(|k| k.split_once('/'))
        .and_then(|(p, g)| GraphKey::parse(p, g).ok())
        .ok_or_else(|| format!("malformed line {line:?}"))?;
    if engine.graph(&key).is_err() {
        return Err(format!("{line}: the graph is lost"));
    }
    let Some(job) = words.next() else {
        return Ok(());
    };
    let job = JobId::parse(job).map_err(|e| e.to_string())?;
    let t = engine
        .task(&key, job)
        .map_err(|e| format!("{line}: the task is lost: {e}"))?;
    let fine = match verb {
        "start" | "import" | "restart" => true,
        "started" => t.started_at.is_some(),
        "succeeded" => t.status == TaskStatus::Succeeded,
        "progress" => t.progress >= 50,
        _ => false,
    };
    if fine {
        Ok(())
    } else {
        Err(format!("{line}: recovered as {t:?}"))
    }
}

/// A seed from the clock, printed so that a failing run can be repeated
/// with `CRASH_SEED`.
fn seed() -> u64 {
    let s = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("crash test seed {s} (CRASH_SEED={s} repeats it)");
    s | 1
}

#[test]
fn sigkill_at_random_moments_never_loses_an_acknowledged_command() {
    let kills: usize = std::env::var("CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let exe = std::env::current_exe().expect("the test binary");
    let mut rng = seed();
    let mut acked = Vec::new();
    let mut interrupted = 0;
    for round in 0..kills {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // From the child's start: sometimes during its own recovery,
        // mostly in the middle of its work.
        let delay = Duration::from_millis(rng % 250);
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the child starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let reader = thread::spawn(move || {
            let mut lines = Vec::new();
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            // Only whole lines: a line cut by the kill was not printed.
            while r.read_line(&mut line).is_ok_and(|n| n > 0) {
                if let Some(ack) = line.strip_suffix('\n').and_then(|l| l.strip_prefix("ack ")) {
                    lines.push(ack.to_owned());
                }
                line.clear();
            }
            lines
        });
        let errors = thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let t0 = Instant::now();
        let exited = Arc::new(AtomicBool::new(false));
        while t0.elapsed() < delay {
            if child.try_wait().ok().flatten().is_some() {
                exited.store(true, Ordering::Relaxed);
                break;
            }
            thread::sleep(Duration::from_millis(1));
        }
        let _ = child.kill(); // SIGKILL
        let status = child.wait().expect("the child ends");
        let lines = reader.join().expect("the reader");
        let errors = errors.join().expect("the stderr reader");
        assert!(
            !exited.load(Ordering::Relaxed) || status.success(),
            "round {round}: the child failed on its own ({status}): {errors}"
        );
        acked.extend(lines);

        // Reopen: every command acknowledged in any round is there.
        let (engine, _jobs, _) = open(dir.path());
        for line in &acked {
            if let Err(e) = check(&engine, line) {
                panic!("round {round}, after {delay:?}: {e}");
            }
        }
        interrupted = 0;
        for g in engine.snapshot().graphs {
            assert_eq!(g.info.live_tasks, 0, "{:?}", g.info);
            assert!(g.info.state.job_kind().is_none(), "{:?}", g.info);
            interrupted += g
                .tasks
                .iter()
                .filter(|t| t.reason == Some(FailReason::Interrupted))
                .count();
        }
    }
    println!(
        "{kills} kills, {} acknowledged commands checked, {interrupted} tasks interrupted in all",
        acked.len()
    );
    assert!(!acked.is_empty(), "the children acknowledged nothing");
}
