//! A durable host: an engine whose commit log is a journal in a directory,
//! workers that run imports on three graphs, and recovery when it is run
//! again after a crash.
//!
//! ```text
//! cargo run -p graph-lifecycle-journal --example durable -- DIR
//! ```
//!
//! The first run creates three graphs in `DIR`, starts them and imports
//! into them, one import after another, for a few seconds. Kill it
//! (`kill -9`) in the middle and run it again on the same directory: it
//! replays the journal, reports the tasks the crash interrupted and the
//! graphs it left Abnormal, force-restarts those, starts the ones that are
//! Stopped, and waits until every graph runs again. A run that is not
//! killed ends by itself with every graph running; run it again and it
//! finds them so.

use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use graph_lifecycle::{
    Engine, Error, GraphKey, GraphState, Job, JobReceiver, Report, RequestId, TaskKind,
};
use graph_lifecycle_journal::{Durability, FileStorage, JournalOptions, RecoveryReport, open};

/// One unit of simulated work.
const STEP: Duration = Duration::from_millis(40);
/// Imports per graph in a run that is not killed.
const IMPORTS: usize = 6;

type Result<T = (), E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

fn main() -> ExitCode {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: durable DIR");
        return ExitCode::FAILURE;
    };
    match run(&dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("durable: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &str) -> Result {
    let options = JournalOptions::new(Durability::SyncEveryCommit)
        // Small, so that a run of a few seconds takes snapshots too.
        .snapshot_after_bytes(Some(4 << 10));
    let durable = open(Engine::builder(), FileStorage::open(dir)?, options)?;
    let (engine, jobs) = (durable.engine, durable.jobs);
    print_report(dir, &durable.report, engine.graph_count());

    let workers: Vec<_> = (1..=2)
        .map(|n| {
            let (engine, jobs) = (engine.clone(), jobs.clone());
            thread::spawn(move || work(&format!("worker-{n}"), &engine, &jobs))
        })
        .collect();
    drop(jobs);

    let keys: Vec<GraphKey> = ["movies", "roads", "social"]
        .iter()
        .map(|g| GraphKey::parse("tenant", g))
        .collect::<std::result::Result<_, _>>()?;
    if engine.graph_count() == 0 {
        first_run(&engine, &keys)?;
    } else {
        recover(&engine, &keys)?;
    }

    engine.shutdown();
    for w in workers {
        w.join().map_err(|_| "a worker panicked")?;
    }
    let status = durable.journal.status();
    println!(
        "journal: next record {}, snapshot at {:?}, every record below {} synced",
        status.next_lsn, status.snapshot, status.durable
    );
    Ok(())
}

fn print_report(dir: &str, report: &RecoveryReport, graphs: usize) {
    println!(
        "journal {dir}: {} records replayed{}, {graphs} graphs",
        report.replayed,
        report
            .snapshot
            .map(|lsn| format!(" after the snapshot at record {lsn}"))
            .unwrap_or_default()
    );
    if let Some(cut) = &report.torn_tail {
        println!("a torn record of {} bytes cut off {}", cut.bytes, cut.file);
    }
    if report.interrupted > 0 || !report.abnormal.is_empty() {
        println!(
            "recovery: {} tasks interrupted by the crash, graphs left abnormal: {:?}",
            report.interrupted,
            report
                .abnormal
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        );
    }
}

/// Creates and starts the graphs, then imports into each, one import after
/// another. Each call carries a request id, so that a host repeating a call
/// after a crash gets the first answer rather than a second import.
fn first_run(engine: &Engine, keys: &[GraphKey]) -> Result {
    for key in keys {
        engine.create_graph(key)?;
        engine.start(key)?;
        println!("{key}: created and started");
    }
    wait_all(engine, keys, GraphState::Running)?;
    for round in 0..IMPORTS {
        for key in keys {
            let id = RequestId::new(&format!("{key}-import-{round}"))?;
            let job = engine
                .request(Some(id))
                .import(key, format!("s3://bucket/{key}/part-{round}.csv"))?;
            println!("{key}: import {round}, job {job}");
        }
        wait_all(engine, keys, GraphState::Running)?;
    }
    println!("done: {} imports into every graph", IMPORTS);
    Ok(())
}

/// After a crash: what the crash left Abnormal is force-restarted, what it
/// left Stopped is started; then every graph must run.
fn recover(engine: &Engine, keys: &[GraphKey]) -> Result {
    for key in keys {
        match engine.state(key) {
            Ok(GraphState::Abnormal) => {
                let r = engine.force_restart(key)?;
                println!(
                    "{key}: abnormal after the crash: force_restart, job {}",
                    r.job
                );
            }
            Ok(GraphState::Stopped) => {
                engine.start(key)?;
                println!("{key}: stopped: start");
            }
            Ok(state) => println!("{key}: {state}, as the last run left it"),
            Err(Error::GraphNotFound { .. }) => {
                engine.create_graph(key)?;
                engine.start(key)?;
                println!("{key}: not created before the crash: created and started");
            }
            Err(e) => return Err(e.into()),
        }
    }
    wait_all(engine, keys, GraphState::Running)?;
    println!("recovered: {} graphs running again", keys.len());
    Ok(())
}

fn wait_all(engine: &Engine, keys: &[GraphKey], state: GraphState) -> Result {
    let give_up = Instant::now() + Duration::from_secs(20);
    for key in keys {
        while engine.state(key)? != state {
            if Instant::now() > give_up {
                return Err(format!("{key} is not {state} after 20 s").into());
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(())
}

/// A worker: a few units of work per job, each reported; a void token or a
/// refused report ends the job's work.
fn work(name: &str, engine: &Engine, jobs: &JobReceiver) {
    while let Ok(job) = jobs.recv() {
        let steps = if job.kind == TaskKind::Import { 5 } else { 2 };
        if let Err(e) = run_job(engine, &job, steps) {
            println!("{}: {name}: {} {}: {e}", job.key(), job.kind, job.id());
        }
    }
}

fn run_job(engine: &Engine, job: &Job, steps: u8) -> std::result::Result<(), Error> {
    engine.report(&job.task, Report::Started)?;
    for step in 1..steps {
        if job.token.is_void() {
            return Ok(());
        }
        thread::sleep(STEP);
        engine.report(&job.task, Report::Progress(step * (100 / steps)))?;
    }
    thread::sleep(STEP);
    engine.report(&job.task, Report::Succeeded)
}
