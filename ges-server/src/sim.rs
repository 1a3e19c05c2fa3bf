//! The simulated engine host: worker threads that take the core's jobs
//! and pretend to run them, and the deadline pump every host needs.
//!
//! A [`SimHost`] worker takes a [`Job`] from the [`JobReceiver`], reports
//! it started, then sleeps through the configured number of steps of the
//! configured duration for its kind ([`SimulationConfig`]), reporting
//! progress after each step, and reports success. Between steps, and
//! every `poll_ms` within a step, it checks the job's [`CancelToken`]:
//! once a forced restart, a cancel, a timeout or a removal voided the
//! job, the worker drops it without another report. A refused report
//! (the job was voided between two checks) ends the job the same way.
//!
//! A job whose payload is a JSON object with a string field
//! `simulate_failure` fails halfway, with that string as its reason: a
//! way to try a client's failure paths.
//!
//! An engine that embeds the crate replaces `SimHost` with its own
//! workers; it keeps a [`DeadlinePump`] (or its own equivalent), since
//! the core never sleeps and job timeouts and retention only happen when
//! someone calls [`Engine::expire`].
//!
//! [`CancelToken`]: graph_lifecycle::CancelToken

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use graph_lifecycle::{Engine, Job, JobReceiver, Report, TaskKind};

use crate::config::{JobTiming, SimulationConfig};

/// The simulated workers.
#[derive(Debug)]
pub struct SimHost {
    engine: Engine,
    workers: Vec<JoinHandle<()>>,
    hard_stop: Arc<AtomicBool>,
}

/// What the simulated host did while it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStopReport {
    /// Whether every worker finished its jobs within the grace period.
    pub drained: bool,
}

impl SimHost {
    /// Starts `cfg.workers` worker threads on `jobs`.
    ///
    /// # Errors
    ///
    /// The OS refused a thread.
    pub fn start(
        engine: &Engine,
        jobs: JobReceiver,
        cfg: &SimulationConfig,
    ) -> std::io::Result<SimHost> {
        let hard_stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::with_capacity(cfg.workers);
        for i in 0..cfg.workers {
            let w = Worker {
                engine: engine.clone(),
                jobs: jobs.clone(),
                cfg: cfg.clone(),
                hard_stop: hard_stop.clone(),
            };
            workers.push(
                thread::Builder::new()
                    .name(format!("sim-worker-{i}"))
                    .spawn(move || w.run())?,
            );
        }
        Ok(SimHost {
            engine: engine.clone(),
            workers,
            hard_stop,
        })
    }

    /// Stops the host: shuts the engine down for new jobs
    /// ([`Engine::shutdown`]), lets the workers finish the jobs already
    /// handed over for at most `grace`, then has them report what is
    /// left as failed ("the simulated host stopped") and joins them.
    pub fn stop(self, grace: Duration) -> SimStopReport {
        self.engine.shutdown();
        let deadline = later(grace);
        while Instant::now() < deadline && !self.workers.iter().all(JoinHandle::is_finished) {
            thread::sleep(Duration::from_millis(5));
        }
        let drained = self.workers.iter().all(JoinHandle::is_finished);
        self.hard_stop.store(true, Ordering::Release);
        for w in self.workers {
            let _ = w.join();
        }
        SimStopReport { drained }
    }
}

struct Worker {
    engine: Engine,
    jobs: JobReceiver,
    cfg: SimulationConfig,
    hard_stop: Arc<AtomicBool>,
}

/// How a simulated step ended.
enum Wait {
    Done,
    Voided,
    Stopped,
}

impl Worker {
    fn run(self) {
        // `recv` fails once the engine is shut down and the channel
        // drained.
        while let Ok(job) = self.jobs.recv() {
            self.run_job(&job);
        }
    }

    fn run_job(&self, job: &Job) {
        let Some(kind) = job.kind.lifecycle() else {
            return;
        };
        let timing: JobTiming = self.cfg.timing(kind);
        let failure = simulated_failure(job);
        if self.engine.report(&job.task, Report::Started).is_err() {
            return;
        }
        let steps = timing.steps.max(1);
        let step = Duration::from_millis(timing.duration_ms) / steps;
        for i in 1..=steps {
            match self.wait(step, job) {
                Wait::Done => {}
                Wait::Voided => return,
                Wait::Stopped => {
                    let _ = self.engine.report(
                        &job.task,
                        Report::Failed("the simulated host stopped".to_owned()),
                    );
                    return;
                }
            }
            if let Some(reason) = &failure
                && i * 2 >= steps
            {
                let _ = self
                    .engine
                    .report(&job.task, Report::Failed(reason.clone()));
                return;
            }
            if i < steps {
                let pct = u8::try_from(u64::from(i) * 100 / u64::from(steps)).unwrap_or(99);
                if self
                    .engine
                    .report(&job.task, Report::Progress(pct))
                    .is_err()
                {
                    return;
                }
            }
        }
        let _ = self.engine.report(&job.task, Report::Succeeded);
    }

    /// Sleeps `d` in slices of `poll_ms`, watching the job's token and
    /// the hard stop.
    fn wait(&self, d: Duration, job: &Job) -> Wait {
        let until = later(d);
        let slice = Duration::from_millis(self.cfg.poll_ms.max(1));
        loop {
            if job.token.is_void() {
                return Wait::Voided;
            }
            if self.hard_stop.load(Ordering::Acquire) {
                return Wait::Stopped;
            }
            let now = Instant::now();
            if now >= until {
                return Wait::Done;
            }
            thread::sleep(slice.min(until - now));
        }
    }
}

/// `d` from now, or a day from now if that is beyond the clock's range.
fn later(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or(now + Duration::from_secs(86_400))
}

/// The `simulate_failure` string of a job's JSON payload.
fn simulated_failure(job: &Job) -> Option<String> {
    if job.payload.is_empty() || matches!(job.kind, TaskKind::Host(_)) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(job.payload.as_bytes()).ok()?;
    v.get("simulate_failure")?.as_str().map(str::to_owned)
}

/// A thread that calls [`Engine::expire`] when the next deadline is due,
/// so that job timeouts fire and ended jobs age out. It looks at
/// [`Engine::next_deadline`] at least every `max_wait`, since a job
/// started later may have an earlier deadline.
#[derive(Debug)]
pub struct DeadlinePump {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl DeadlinePump {
    /// Starts the pump.
    ///
    /// # Errors
    ///
    /// The OS refused a thread.
    pub fn start(engine: &Engine, max_wait: Duration) -> std::io::Result<DeadlinePump> {
        let (tx, rx) = mpsc::channel::<()>();
        let engine = engine.clone();
        let thread = thread::Builder::new()
            .name("deadline-pump".to_owned())
            .spawn(move || {
                loop {
                    let now = engine.now();
                    engine.expire(now);
                    let wait = engine
                        .next_deadline()
                        .map_or(max_wait, |d| d.saturating_since(now).min(max_wait))
                        .max(Duration::from_millis(1));
                    match rx.recv_timeout(wait) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                }
            })?;
        Ok(DeadlinePump {
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// Stops the pump and joins its thread.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for DeadlinePump {
    fn drop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use graph_lifecycle::{FailReason, GraphKey, GraphState, LifecycleKind, TaskStatus};

    fn fast() -> SimulationConfig {
        let mut cfg = SimulationConfig {
            workers: 2,
            poll_ms: 2,
            ..SimulationConfig::default()
        };
        for kind in crate::config::KINDS {
            cfg.set_timing(kind, JobTiming::new(20, 2));
        }
        cfg
    }

    fn wait_for(mut ok: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(10);
        while !ok() {
            assert!(Instant::now() < until, "timed out");
            thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn workers_run_jobs_to_success_and_drop_voided_ones() {
        let (engine, jobs) = Engine::builder().build();
        let mut cfg = fast();
        cfg.import = JobTiming::new(5_000, 50);
        let host = SimHost::start(&engine, jobs, &cfg).unwrap();
        let key = GraphKey::parse("p", "g").unwrap();
        let graph = engine.create_graph(&key).unwrap();
        engine.start(&key).unwrap();
        wait_for(|| graph.state() == Some(GraphState::Running));
        let import = engine.import(&key, "{}").unwrap();
        wait_for(|| engine.task(&key, import).unwrap().progress > 0);
        let restart = engine.force_restart(&key).unwrap();
        wait_for(|| graph.state() == Some(GraphState::Running));
        let t = engine.task(&key, import).unwrap();
        assert_eq!(t.status, TaskStatus::Failed);
        assert_eq!(t.reason, Some(FailReason::ForceRestarted(restart.job)));
        assert_eq!(
            engine.task(&key, restart.job).unwrap().status,
            TaskStatus::Succeeded
        );
        assert!(host.stop(Duration::from_secs(5)).drained);
    }

    #[test]
    fn a_payload_can_ask_for_a_failure() {
        let (engine, jobs) = Engine::builder().build();
        let host = SimHost::start(&engine, jobs, &fast()).unwrap();
        let key = GraphKey::parse("p", "g").unwrap();
        let graph = engine.create_graph(&key).unwrap();
        engine.start(&key).unwrap();
        wait_for(|| graph.state() == Some(GraphState::Running));
        let export = engine
            .export(&key, r#"{"simulate_failure": "disk full"}"#)
            .unwrap();
        wait_for(|| engine.task(&key, export).unwrap().status == TaskStatus::Failed);
        let t = engine.task(&key, export).unwrap();
        assert_eq!(t.reason, Some(FailReason::Host("disk full".into())));
        assert_eq!(graph.state(), Some(GraphState::Running));
        host.stop(Duration::from_secs(5));
    }

    #[test]
    fn a_stop_past_the_grace_fails_what_is_left() {
        let (engine, jobs) = Engine::builder().build();
        let mut cfg = fast();
        cfg.start = JobTiming::new(60_000, 1);
        let host = SimHost::start(&engine, jobs, &cfg).unwrap();
        let key = GraphKey::parse("p", "g").unwrap();
        engine.create_graph(&key).unwrap();
        let start = engine.start(&key).unwrap();
        wait_for(|| engine.task(&key, start).unwrap().status == TaskStatus::Running);
        let report = host.stop(Duration::from_millis(50));
        assert!(!report.drained);
        let t = engine.task(&key, start).unwrap();
        assert_eq!(t.status, TaskStatus::Failed);
        assert_eq!(engine.state(&key).unwrap(), GraphState::Abnormal);
    }

    #[test]
    fn the_pump_times_jobs_out() {
        let cfg = graph_lifecycle::Config::default()
            .timeout(LifecycleKind::Start, Some(Duration::from_millis(30)));
        let (engine, _jobs) = Engine::builder().config(cfg).build();
        let pump = DeadlinePump::start(&engine, Duration::from_millis(20)).unwrap();
        let key = GraphKey::parse("p", "g").unwrap();
        engine.create_graph(&key).unwrap();
        let start = engine.start(&key).unwrap();
        wait_for(|| engine.task(&key, start).unwrap().status == TaskStatus::Failed);
        assert_eq!(
            engine.task(&key, start).unwrap().reason,
            Some(FailReason::TimedOut)
        );
        pump.stop();
    }
}
