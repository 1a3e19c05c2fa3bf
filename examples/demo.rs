//! A host in miniature: an engine on the system clock, three worker threads
//! that run the jobs it hands out, host threads that run tasks of their own,
//! and a forced restart in the middle of an import.
//!
//! Run it with `cargo run --example demo`. It prints a timeline (elapsed
//! milliseconds, graph, who, what) as it goes, then the final task table of
//! every graph. Timings vary from run to run; the outcome does not.
//!
//! The same host with a durable journal, killed and recovered, is the
//! `durable` example of the `graph-lifecycle-journal` crate.

use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use graph_lifecycle::{
    Change, Clock, Engine, Error, Event, EventError, FailReason, GraphKey, GraphState, HostKind,
    Job, JobId, JobReceiver, Report, RequestId, Snapshot, Subscription, SystemClock, TaskKind,
    TaskSpec, TaskStatus, Timestamp,
};

/// One unit of simulated work.
const STEP: Duration = Duration::from_millis(60);
/// Units per lifecycle job.
const JOB_STEPS: u8 = 4;
/// The longest the demo waits for anything before it gives up.
const PATIENCE: Duration = Duration::from_secs(4);

type DemoResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> DemoResult {
    let tl = Timeline {
        t0: SystemClock.now(),
    };
    let (engine, jobs) = Engine::builder().build();
    let main_line = |key: &GraphKey, what: &dyn fmt::Display| tl.now(key, "main", what);

    println!("graph-lifecycle demo: 3 graphs in 2 projects, 3 workers, one forced restart");
    println!("(job ids are shown by their last 8 hex digits)");
    println!();
    println!("{:>7}  {:<16} {:<10} what", "elapsed", "graph", "who");

    // The event printer: everything the engine commits, in commit order per
    // graph, with its sequence number.
    let printer_stop = Arc::new(AtomicBool::new(false));
    let printer = {
        let events = engine.subscribe();
        let stop = printer_stop.clone();
        thread::spawn(move || print_events(&events, &stop, tl))
    };

    // The worker pool. Each worker holds an `Engine` to report with, so
    // dropping handles would not close the job channel:
    // `Engine::shutdown` does, and their `recv` loops end.
    let refused = Arc::new(AtomicUsize::new(0));
    let workers: Vec<JoinHandle<()>> = (1..=3)
        .map(|n| {
            let w = Worker {
                name: format!("worker-{n}"),
                engine: engine.clone(),
                jobs: jobs.clone(),
                refused: refused.clone(),
                tl,
            };
            thread::spawn(move || w.run())
        })
        .collect();
    drop(jobs);

    // ---- three graphs, created and started ----------------------------------
    let movies = GraphKey::parse("tenant-a", "movies")?;
    let social = GraphKey::parse("tenant-a", "social")?;
    let roads = GraphKey::parse("tenant-b", "roads")?;
    let all = [&movies, &social, &roads];
    for key in all {
        engine.create_graph(key)?;
        let job = engine.start(key)?;
        main_line(key, &format_args!("create, then start: job {}", short(job)));
    }
    for key in all {
        wait_state(&engine, key, GraphState::Running)?;
    }

    // Graphs of one project are invisible from another.
    let elsewhere = GraphKey::parse("tenant-b", "movies")?;
    if let Err(e) = engine.graph_info(&elsewhere) {
        main_line(&elsewhere, &Refusal(&e));
    }

    // ---- maintenance on all three -------------------------------------------
    let import = engine.import(&movies, "s3://bucket/movies/edges.csv")?;
    main_line(&movies, &format_args!("import: job {}", short(import)));
    let roads_import = engine.import(&roads, "s3://bucket/roads/segments.csv")?;
    main_line(&roads, &format_args!("import: job {}", short(roads_import)));
    let export = engine.export(&social, "s3://bucket/social/dump/")?;
    main_line(&social, &format_args!("export: job {}", short(export)));

    // A host task runs while the graph serves queries, on a thread of its own.
    let pagerank = engine.register_task(
        &movies,
        TaskSpec::new(HostKind::new("pagerank")?).payload("{\"iterations\": 10}"),
    )?;
    main_line(
        &movies,
        &format_args!("register host task pagerank: {}", short(pagerank.id())),
    );
    let pagerank = spawn_host_task(&engine, pagerank, 10, tl);

    // The transition table refuses what does not fit the state.
    if let Err(e) = engine.clear(&movies, false) {
        main_line(&movies, &Refusal(&e));
    }

    // ---- the forced restart, in the middle of the import ---------------------
    wait_until("the import to reach 50%", || {
        engine.task(&movies, import).is_ok_and(|t| t.progress >= 50)
    })?;
    // Half a unit later: the worker is busy with its third unit and will
    // report it after the restart.
    thread::sleep(STEP / 2);
    // The operator's console names the request, so that a retry after a
    // lost answer is recognised.
    let ticket = Some(RequestId::new("ticket-4711")?);
    let restart = engine.request(ticket.clone()).force_restart(&movies)?;
    main_line(
        &movies,
        &format_args!(
            "force_restart: job {} (epoch {}, {} live tasks failed)",
            restart.job, restart.epoch, restart.failed
        ),
    );
    let retry = engine.request(ticket).force_restart(&movies)?;
    main_line(
        &movies,
        &format_args!(
            "force_restart retried with the same request id: job {}, the same restart: {}",
            short(retry.job),
            retry == restart
        ),
    );
    // The host's query path: one atomic load, no lock.
    let handle = engine.graph(&movies)?;
    if let Some((state, epoch)) = handle.status() {
        main_line(
            &movies,
            &format_args!(
                "query path reads {state} at epoch {epoch} without a lock: serves queries: {}",
                handle.serves_queries()
            ),
        );
    }

    // ---- after the restart --------------------------------------------------
    for key in all {
        wait_state(&engine, key, GraphState::Running)?;
    }
    let again = engine.import(&movies, "s3://bucket/movies/edges.csv")?;
    main_line(
        &movies,
        &format_args!(
            "import again, at epoch {}: job {}",
            restart.epoch,
            short(again)
        ),
    );
    let clear = engine.clear(&social, true)?;
    main_line(
        &social,
        &format_args!("clear with metadata: job {}", short(clear)),
    );
    let bad = engine.import(&roads, "s3://bucket/roads/corrupt.csv")?;
    main_line(&roads, &format_args!("import: job {}", short(bad)));
    let query = engine.register_task(
        &roads,
        TaskSpec::new(HostKind::new("async-query")?).payload("MATCH (n) RETURN count(n)"),
    )?;
    main_line(
        &roads,
        &format_args!("register host task async-query: {}", short(query.id())),
    );
    let query = spawn_host_task(&engine, query, 3, tl);

    // ---- wind down ------------------------------------------------------------
    for key in all {
        wait_until("every graph to settle", || {
            engine
                .graph_info(key)
                .is_ok_and(|g| g.state == GraphState::Running && g.live_tasks == 0)
        })?;
    }
    for t in [pagerank, query] {
        t.join().map_err(|_| "a host task thread panicked")?;
    }
    engine.shutdown();
    for w in workers {
        w.join().map_err(|_| "a worker panicked")?;
    }
    let snapshot = engine.snapshot();
    // The last handle: the event stream ends once the printer drained it.
    drop(engine);
    printer_stop.store(true, Ordering::Release);
    printer.join().map_err(|_| "the event printer panicked")?;

    print_table(&snapshot);
    check(
        &snapshot,
        &movies,
        import,
        restart.job,
        refused.load(Ordering::Acquire),
    )
}

/// Prints timeline lines: milliseconds since the demo began, graph, who,
/// what.
#[derive(Clone, Copy)]
struct Timeline {
    t0: Timestamp,
}

impl Timeline {
    fn line(&self, at: Timestamp, key: &GraphKey, who: &str, what: &dyn fmt::Display) {
        let ms = at.saturating_since(self.t0).as_millis();
        println!("{ms:>7}  {:<16} {who:<10} {what}", key.to_string());
    }

    fn now(&self, key: &GraphKey, who: &str, what: &dyn fmt::Display) {
        self.line(SystemClock.now(), key, who, what);
    }
}

/// A job id by its last 8 hex digits (the first ones of a UUIDv7 are the
/// time, alike for every job of the demo).
fn short(id: JobId) -> String {
    let s = id.to_string();
    s[s.len() - 8..].to_owned()
}

/// A failure reason with short job ids.
fn reason(r: &FailReason) -> String {
    match r {
        FailReason::ForceRestarted(j) => format!("force-restarted by job {}", short(*j)),
        FailReason::Superseded(j) => format!("superseded by job {}", short(*j)),
        other => other.to_string(),
    }
}

/// A refused call: the typed error's code, HTTP status and message.
struct Refusal<'a>(&'a Error);

impl fmt::Display for Refusal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        write!(f, "refused: {} (HTTP {}): {e}", e.code(), e.http_status())
    }
}

fn print_events(events: &Subscription, stop: &AtomicBool, tl: Timeline) {
    loop {
        match events.recv_timeout(Duration::from_millis(50)) {
            Ok(ev) => print_event(&ev, tl),
            Err(EventError::Empty) if !stop.load(Ordering::Acquire) => {}
            Err(EventError::Lagged { missed }) => {
                println!("event stream cut off at #{missed}: this printer fell behind");
                return;
            }
            Err(_) => return,
        }
    }
}

fn print_event(ev: &Event, tl: Timeline) {
    let what = match &ev.change {
        Change::GraphCreated => "graph created, stopped".to_owned(),
        Change::GraphRemoved => "graph removed".to_owned(),
        Change::State { from, to, epoch } => format!("state {from} -> {to} (epoch {epoch})"),
        Change::Task {
            job,
            kind,
            status,
            progress,
            reason: why,
        } => {
            let mut s = format!("task {} {kind}: {status} {progress}%", short(*job));
            if let Some(r) = why {
                s.push_str(&format!(", {}", reason(r)));
            }
            s
        }
        Change::Evicted { count } => format!("{count} ended tasks evicted"),
    };
    tl.line(
        ev.at,
        &ev.key,
        "event",
        &format_args!("#{:<4} {what}", ev.seq),
    );
}

/// A worker thread of the host's pool.
struct Worker {
    name: String,
    engine: Engine,
    jobs: JobReceiver,
    refused: Arc<AtomicUsize>,
    tl: Timeline,
}

impl Worker {
    /// Runs jobs until the engine shuts down and the channel is drained.
    fn run(&self) {
        while let Ok(job) = self.jobs.recv() {
            self.work(&job);
        }
    }

    fn say(&self, job: &Job, what: &dyn fmt::Display) {
        self.tl.now(job.key(), &self.name, what);
    }

    /// Runs one job: a few units of work, each reported. The token is read
    /// before each unit; a unit under way is finished and reported, and a
    /// refused report means the work is void.
    fn work(&self, job: &Job) {
        let id = short(job.id());
        self.say(job, &format_args!("picked up {} {id}", job.kind));
        if job.token.is_void() {
            self.say(
                job,
                &format_args!("{id}: token void before it began, skipped"),
            );
            return;
        }
        if !self.send(job, Report::Started) {
            return;
        }
        let corrupt =
            std::str::from_utf8(job.payload.as_bytes()).is_ok_and(|p| p.contains("corrupt"));
        for step in 1..=JOB_STEPS {
            if job.token.is_void() {
                self.say(job, &format_args!("{id}: token void, stopping early"));
                return;
            }
            thread::sleep(STEP); // one unit of the real work
            let report = if corrupt && step == 2 {
                Report::Failed("line 1042: a segment without an end node".to_owned())
            } else if step == JOB_STEPS {
                Report::Succeeded
            } else {
                Report::Progress(step * (100 / JOB_STEPS))
            };
            let last = matches!(report, Report::Failed(_) | Report::Succeeded);
            if !self.send(job, report) || last {
                return;
            }
        }
    }

    /// Reports; on a refusal says so and returns false.
    fn send(&self, job: &Job, report: Report) -> bool {
        let what = match &report {
            Report::Progress(p) => format!("progress {p}%"),
            other => other.name().to_owned(),
        };
        match self.engine.report(&job.task, report) {
            Ok(()) => true,
            Err(e) => {
                if matches!(e, Error::StaleEpoch { .. } | Error::TaskTerminal { .. }) {
                    self.refused.fetch_add(1, Ordering::AcqRel);
                }
                let id = short(job.id());
                self.say(job, &format_args!("{id}: {what} {}", Refusal(&e)));
                self.say(job, &format_args!("{id}: the work is void, dropping it"));
                false
            }
        }
    }
}

/// Runs a registered host task on a thread of its own: `iterations`
/// iterations, each followed by a token check before its progress is
/// published.
fn spawn_host_task(engine: &Engine, ticket: Job, iterations: u8, tl: Timeline) -> JoinHandle<()> {
    let engine = engine.clone();
    thread::spawn(move || {
        let who = ticket.kind.to_string();
        let id = short(ticket.id());
        if engine.report(&ticket.task, Report::Started).is_err() {
            return;
        }
        for i in 1..=iterations {
            thread::sleep(STEP); // one iteration
            if ticket.token.is_void() {
                tl.now(
                    ticket.key(),
                    &who,
                    &format_args!("{id}: token void after iteration {i}, stopping early"),
                );
                return;
            }
            let report = if i == iterations {
                Report::Succeeded
            } else {
                // At most 100: `i` never passes `iterations`.
                Report::Progress((u16::from(i) * 100 / u16::from(iterations)) as u8)
            };
            if let Err(e) = engine.report(&ticket.task, report) {
                tl.now(ticket.key(), &who, &format_args!("{id}: {}", Refusal(&e)));
                return;
            }
        }
    })
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> DemoResult {
    let give_up = Instant::now() + PATIENCE;
    while !done() {
        if Instant::now() > give_up {
            return Err(format!("waited {PATIENCE:?} for {what}").into());
        }
        thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

fn wait_state(engine: &Engine, key: &GraphKey, state: GraphState) -> DemoResult {
    wait_until(&format!("{key} to be {state}"), || {
        engine.state(key).is_ok_and(|s| s == state)
    })
}

fn print_table(snapshot: &Snapshot) {
    println!();
    println!("final task table, per graph in creation order");
    println!(
        "{:<16} {:<8} {:<16} {:>5}  {:<10} {:>4}  reason",
        "graph", "id", "kind", "epoch", "status", "prog"
    );
    for g in &snapshot.graphs {
        for t in &g.tasks {
            let row = format!(
                "{:<16} {:<8} {:<16} {:>5}  {:<10} {:>3}%  {}",
                g.info.key.to_string(),
                short(t.id),
                t.kind.to_string(),
                t.epoch.to_string(),
                t.status.name(),
                t.progress,
                t.reason.as_ref().map(reason).unwrap_or_default()
            );
            println!("{}", row.trim_end());
        }
    }
    println!();
    for g in &snapshot.graphs {
        println!(
            "{:<16} {} at epoch {}, {} live tasks, {} ended tasks kept",
            g.info.key.to_string(),
            g.info.state,
            g.info.epoch,
            g.info.live_tasks,
            g.info.retained_tasks
        );
    }
}

/// The outcome the demo promises, whatever the timing.
fn check(
    snapshot: &Snapshot,
    movies: &GraphKey,
    import: JobId,
    restart: JobId,
    refused: usize,
) -> DemoResult {
    let g = snapshot
        .graphs
        .iter()
        .find(|g| &g.info.key == movies)
        .ok_or("movies is gone")?;
    let task = |id: JobId| g.tasks.iter().find(|t| t.id == id);
    let failed_by_restart = g
        .tasks
        .iter()
        .filter(|t| t.reason == Some(FailReason::ForceRestarted(restart)))
        .count();
    let ok = g.info.state == GraphState::Running
        && g.info.epoch.0 == 1
        && task(import).is_some_and(|t| t.status == TaskStatus::Failed)
        && task(restart)
            .is_some_and(|t| t.kind == TaskKind::Restart && t.status == TaskStatus::Succeeded)
        && failed_by_restart == 2
        && refused == 1
        && snapshot
            .graphs
            .iter()
            .all(|g| g.info.state == GraphState::Running && g.info.live_tasks == 0);
    println!();
    if ok {
        println!(
            "outcome as expected: 2 tasks force-restarted by job {}, 1 stale report refused, \
             the restart succeeded, every graph running",
            short(restart)
        );
        Ok(())
    } else {
        Err(format!(
            "unexpected outcome: {failed_by_restart} tasks force-restarted, {refused} reports refused"
        )
        .into())
    }
}
