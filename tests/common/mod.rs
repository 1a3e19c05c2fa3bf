//! The harness the contract tests share: an engine on a manual clock with
//! deterministic ids, and the steps that bring a graph where a test needs
//! it.

// Each test crate uses a different part of the harness.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use graph_lifecycle::*;

/// The time the rig's clock starts at, in milliseconds.
pub const T0: u64 = 1_000_000;

/// An engine on a manual clock and deterministic ids, with its first job
/// receiver.
pub struct Rig {
    pub engine: Engine,
    pub jobs: JobReceiver,
    pub clock: Arc<ManualClock>,
}

impl Rig {
    pub fn new() -> Self {
        Self::with(Config::default())
    }

    pub fn with(cfg: Config) -> Self {
        Self::seeded(cfg, 1)
    }

    /// A rig whose ids are drawn with `seed`: rigs with different seeds
    /// never draw the same id.
    pub fn seeded(cfg: Config, seed: u64) -> Self {
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(T0)));
        let (engine, jobs) = Engine::builder()
            .config(cfg)
            .clock(clock.clone())
            .ids(SequentialIds::new(seed))
            .build();
        Rig {
            engine,
            jobs,
            clock,
        }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Moves the clock so that consecutive commands carry distinct times.
    pub fn tick(&self) {
        self.clock.advance(Duration::from_millis(10));
    }

    /// The job that must have been handed over.
    #[track_caller]
    pub fn job(&self) -> Job {
        self.jobs
            .try_recv()
            .expect("a job should have been handed over")
    }

    #[track_caller]
    pub fn assert_no_job(&self) {
        if let Ok(job) = self.jobs.try_recv() {
            panic!("no job should have been handed over, got {job:?}");
        }
    }

    #[track_caller]
    pub fn report(&self, job: &Job, r: Report) {
        self.tick();
        self.engine.report(&job.task, r).unwrap();
    }

    /// Creates `key` and brings it to Running (start job succeeded).
    pub fn running(&self, key: &GraphKey) {
        self.engine.create_graph(key).unwrap();
        self.tick();
        self.engine.start(key).unwrap();
        let job = self.job();
        self.report(&job, Report::Started);
        self.report(&job, Report::Succeeded);
        assert_eq!(self.engine.state(key).unwrap(), GraphState::Running);
        self.tick();
    }

    /// Registers a host task of kind `name` on `key`.
    pub fn host_task(&self, key: &GraphKey, name: &str) -> Job {
        self.tick();
        self.engine
            .register_task(key, TaskSpec::new(HostKind::new(name).unwrap()))
            .unwrap()
    }

    /// Runs `f`, which must fail, and checks that it changed nothing and
    /// handed no job over.
    #[track_caller]
    pub fn refused<T: std::fmt::Debug>(
        &self,
        f: impl FnOnce(&Engine) -> Result<T, Error>,
    ) -> Error {
        let before = self.engine.image().encode();
        let next = self.engine.next_deadline();
        self.tick();
        let err = f(&self.engine).expect_err("the call should be refused");
        assert!(
            self.engine.image().encode() == before,
            "{err}: the state changed"
        );
        assert_eq!(self.engine.next_deadline(), next);
        assert!(self.jobs.is_empty(), "{err}: a job was handed over");
        err
    }

    /// Runs `f`, which must succeed without changing anything.
    #[track_caller]
    pub fn unchanged<T>(&self, f: impl FnOnce(&Engine) -> Result<T, Error>) -> T {
        let before = self.engine.image().encode();
        let out = f(&self.engine).unwrap();
        assert!(self.engine.image().encode() == before, "the state changed");
        assert!(self.jobs.is_empty());
        out
    }
}

pub fn key(project: &str, graph: &str) -> GraphKey {
    GraphKey::parse(project, graph).unwrap()
}
