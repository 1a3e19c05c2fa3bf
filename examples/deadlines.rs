//! Deadlines without a timer: the engine never sleeps, it says when it next
//! has something to do ([`Engine::next_deadline`]) and the host calls
//! [`Engine::expire`] with the time once that moment has come.
//!
//! Time here is a [`ManualClock`] that the host loop moves forward instead
//! of sleeping, and ids come from [`SequentialIds`], so every run prints
//! the same thing. Run it with `cargo run --example deadlines`.

use std::sync::Arc;
use std::time::Duration;

use graph_lifecycle::{
    Clock, Config, Engine, GraphKey, LifecycleKind, ManualClock, Report, SequentialIds, Timestamp,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Any start will do; ids from `SequentialIds` embed it.
    let t0 = Timestamp::from_millis(1_750_000_000_000);
    let clock = Arc::new(ManualClock::new(t0));
    let (engine, jobs) = Engine::builder()
        .config(
            Config::default()
                .timeout(LifecycleKind::Start, Some(Duration::from_secs(30)))
                .retention_age(Some(Duration::from_secs(3600))),
        )
        .clock(clock.clone())
        .ids(SequentialIds::new(1))
        .build();
    let at = |t: Timestamp| format!("t={:>5}s", t.saturating_since(t0).as_secs());

    let key = GraphKey::parse("tenant-a", "movies")?;
    engine.create_graph(&key)?;
    let start = engine.start(&key)?;
    println!(
        "{}  start {key}: job {start}, times out after 30s",
        at(clock.now())
    );

    // A worker takes the job, reports a little progress, then hangs.
    // A committed start has handed its job over already.
    let stuck = jobs.try_recv()?;
    engine.report(&stuck.task, Report::Progress(10))?;
    println!("{}  the worker reports 10% and hangs", at(clock.now()));

    // Expiring early changes nothing.
    clock.advance(Duration::from_secs(10));
    let (timed_out, evicted) = engine.expire(clock.now());
    println!(
        "{}  expire: {timed_out} timed out, {evicted} evicted (nothing is due yet)",
        at(clock.now())
    );

    // The host loop: sleep until the next deadline (here: move the clock),
    // then let the engine expire what is due. A host with a real clock
    // would wait on its job and event channels with that timeout instead.
    while let Some(deadline) = engine.next_deadline() {
        println!("{}  next deadline: {}", at(clock.now()), at(deadline));
        clock.set(deadline);
        let (timed_out, evicted) = engine.expire(clock.now());
        println!(
            "{}  expire: {timed_out} timed out, {evicted} evicted; {key} is {}",
            at(clock.now()),
            engine.state(&key)?
        );

        if timed_out > 0 {
            let task = engine.task(&key, start)?;
            println!(
                "{}  job {start}: {} at {}%, reason \"{}\", token void: {}",
                at(clock.now()),
                task.status,
                task.progress,
                task.reason.map(|r| r.to_string()).unwrap_or_default(),
                stuck.token.is_void()
            );
            if let Err(e) = engine.report(&stuck.task, Report::Progress(20)) {
                println!(
                    "{}  the hung worker wakes up and reports: refused, {} ({})",
                    at(clock.now()),
                    e.code(),
                    e
                );
            }
            // From Abnormal the graph can be stopped; this stop runs fine.
            clock.advance(Duration::from_secs(5));
            let stop = engine.stop(&key)?;
            if let Ok(job) = jobs.try_recv() {
                engine.report(&job.task, Report::Succeeded)?;
            }
            println!(
                "{}  stop: job {stop} succeeded; {key} is {}",
                at(clock.now()),
                engine.state(&key)?
            );
        }
    }
    println!(
        "{}  no deadline left: the host can sleep until new work arrives",
        at(clock.now())
    );
    match engine.task(&key, start) {
        Err(e) => println!("{}  job {start}: {}", at(clock.now()), e.code()),
        Ok(t) => println!("{}  job {start}: still kept, {}", at(clock.now()), t.status),
    }
    Ok(())
}
