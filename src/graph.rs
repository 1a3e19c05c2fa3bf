//! One graph's state machine and task table: the deterministic apply step.
//!
//! [`GraphData::apply`] validates a command completely before it changes
//! anything, so a refused command leaves no trace. Its side effects (jobs
//! to hand over, tokens to fire, changes to publish) are collected in an
//! [`Effects`] buffer that the engine dispatches while it still holds the
//! graph's lock.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use crate::command::{Op, Outcome, Restart};
use crate::config::Config;
use crate::error::Error;
use crate::events::Change;
use crate::id::{Epoch, GraphKey, JobId};
use crate::outbox::{Job, TaskRef};
use crate::state::{
    GraphState, JobEnd, LifecycleKind, Operation, Transition, job_outcome, transition,
};
use crate::sync::Arc;
use crate::task::{
    CancelToken, FailReason, Fence, Payload, Report, TaskInfo, TaskKind, TaskSpec, TaskStatus,
};
use crate::time::Timestamp;

#[cfg(feature = "journal")]
mod image;
#[cfg(feature = "journal")]
pub(crate) use image::GraphImage;

/// Hashes job ids by mixing their two halves: ids come from the engine's
/// id source, never from an attacker, so a keyed hash buys nothing and
/// costs a SipHash per lookup.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }

    #[inline]
    fn write_u64(&mut self, v: u64) {
        // The finaliser of MurmurHash3: every input bit reaches every
        // output bit.
        let mut x = self.0 ^ v;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^= x >> 33;
        self.0 = x;
    }

    #[inline]
    fn write_u128(&mut self, v: u128) {
        self.write_u64((v as u64) ^ ((v >> 64) as u64).rotate_left(32));
    }
}

impl std::hash::Hash for JobId {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(self.as_u128());
    }
}

type IdMap<V> = HashMap<JobId, V, BuildHasherDefault<IdHasher>>;

/// A task as the table keeps it.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "journal", derive(serde::Serialize, serde::Deserialize))]
pub(crate) struct Task {
    pub(crate) id: JobId,
    pub(crate) kind: TaskKind,
    pub(crate) epoch: Epoch,
    /// Creation order within the graph.
    pub(crate) seq: u64,
    pub(crate) status: TaskStatus,
    pub(crate) progress: u8,
    pub(crate) stoppable: bool,
    pub(crate) created_at: Timestamp,
    pub(crate) started_at: Option<Timestamp>,
    pub(crate) ended_at: Option<Timestamp>,
    pub(crate) deadline: Option<Timestamp>,
    pub(crate) reason: Option<FailReason>,
    pub(crate) payload: Payload,
    /// Present while the task is live.
    #[cfg_attr(feature = "journal", serde(skip))]
    pub(crate) token: Option<CancelToken>,
}

impl Task {
    pub(crate) fn info(&self, key: &GraphKey) -> TaskInfo {
        TaskInfo {
            id: self.id,
            key: key.clone(),
            kind: self.kind.clone(),
            epoch: self.epoch,
            status: self.status,
            progress: self.progress,
            stoppable: self.stoppable,
            created_at: self.created_at,
            started_at: self.started_at,
            ended_at: self.ended_at,
            deadline: self.deadline,
            reason: self.reason.clone(),
            payload: self.payload.clone(),
        }
    }

    fn change(&self) -> Change {
        Change::Task {
            job: self.id,
            kind: self.kind.clone(),
            status: self.status,
            progress: self.progress,
            reason: self.reason.clone(),
        }
    }
}

/// What a command asks the engine to do once it committed.
#[derive(Default)]
pub(crate) struct Effects {
    /// Whether to record `changes` (someone subscribed).
    pub(crate) record: bool,
    pub(crate) jobs: Vec<Job>,
    /// The ticket of a registered host task, returned to the caller
    /// instead of being sent.
    pub(crate) ticket: Option<Job>,
    pub(crate) void: Vec<CancelToken>,
    pub(crate) changes: Vec<Change>,
}

impl Effects {
    #[inline]
    fn record(&mut self, change: impl FnOnce() -> Change) {
        if self.record {
            self.changes.push(change());
        }
    }
}

/// Terminal tasks in the order they ended, which is the eviction order:
/// each task stored once, in a queue that grows to the retention bound
/// and no further, with an index from id to position.
#[derive(Debug, Default)]
pub(crate) struct Retained {
    tasks: VecDeque<Task>,
    /// Id to absolute position: `base` is the position of `tasks[0]`.
    index: IdMap<u64>,
    base: u64,
}

impl Retained {
    pub(crate) fn get(&self, id: &JobId) -> Option<&Task> {
        let pos = self.index.get(id)?.checked_sub(self.base)?;
        self.tasks.get(usize::try_from(pos).ok()?)
    }

    /// Appends a task that just ended; the queue's capacity doubles up to
    /// `cap`, not past it.
    pub(crate) fn push(&mut self, task: Task, cap: usize) {
        let len = self.tasks.len();
        if len == self.tasks.capacity() {
            let want = (len * 2).max(4).min(cap.max(len + 1));
            self.tasks.reserve_exact(want - len);
        }
        self.index.insert(task.id, self.base + len as u64);
        self.tasks.push_back(task);
    }

    pub(crate) fn front(&self) -> Option<&Task> {
        self.tasks.front()
    }

    pub(crate) fn pop_front(&mut self) -> Option<Task> {
        let t = self.tasks.pop_front()?;
        self.index.remove(&t.id);
        self.base += 1;
        Some(t)
    }

    pub(crate) fn len(&self) -> usize {
        self.tasks.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Task> {
        self.tasks.iter()
    }

    pub(crate) fn clear(&mut self) {
        self.tasks.clear();
        self.index.clear();
    }
}

/// A task about to enter the table, validated.
struct NewTask {
    job: JobId,
    kind: TaskKind,
    stoppable: bool,
    timeout: Option<std::time::Duration>,
    payload: Payload,
}

/// One graph: its state, epoch and task table.
#[derive(Debug)]
pub(crate) struct GraphData {
    pub(crate) key: GraphKey,
    pub(crate) state: GraphState,
    pub(crate) epoch: Epoch,
    pub(crate) created_at: Timestamp,
    pub(crate) updated_at: Timestamp,
    /// Set when the graph is removed; a handle may outlive the graph.
    pub(crate) removed: bool,
    next_seq: u64,
    /// The live lifecycle job; its kind matches `state`.
    pub(crate) lifecycle: Option<JobId>,
    /// The idempotency key of the live restart job, if it had one.
    pub(crate) restart_key: Option<(JobId, String)>,
    pub(crate) live: IdMap<Task>,
    pub(crate) done: Retained,
    /// Deadlines of live tasks.
    deadlines: BTreeSet<(Timestamp, JobId)>,
    /// Voids the tokens of older epochs, and all of them on removal;
    /// moved when the registry publishes a commit.
    pub(crate) fence: Arc<Fence>,
}

/// The longest idempotency key accepted, in bytes.
pub(crate) const MAX_IDEMPOTENCY_KEY: usize = 256;

impl GraphData {
    pub(crate) fn new(key: GraphKey, at: Timestamp) -> Self {
        Self {
            key,
            state: GraphState::Stopped,
            epoch: Epoch::ZERO,
            created_at: at,
            updated_at: at,
            removed: false,
            next_seq: 0,
            lifecycle: None,
            restart_key: None,
            live: IdMap::default(),
            done: Retained::default(),
            deadlines: BTreeSet::new(),
            fence: Fence::new(Epoch::ZERO),
        }
    }

    /// The earliest time an [`Op::Expire`] would change something.
    pub(crate) fn next_deadline(&self, cfg: &Config) -> Option<Timestamp> {
        let timeout = self.deadlines.first().map(|(t, _)| *t);
        let age = cfg.retention_age.and_then(|age| {
            let ended = self.done.front()?.ended_at?;
            Some(ended.saturating_add(age))
        });
        match (timeout, age) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn task(&self, id: JobId) -> Option<&Task> {
        self.live.get(&id).or_else(|| self.done.get(&id))
    }

    pub(crate) fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.live.values().chain(self.done.iter())
    }

    fn refuse(&self, op: Operation) -> Error {
        Error::TransitionRefused {
            key: self.key.clone(),
            state: self.state,
            op,
        }
    }

    /// Applies `op` at time `at`. On error nothing changed.
    pub(crate) fn apply(
        &mut self,
        cfg: &Config,
        at: Timestamp,
        op: &Op,
        fx: &mut Effects,
    ) -> Result<Outcome, Error> {
        match op {
            Op::Create => Err(Error::GraphExists {
                key: self.key.clone(),
            }),
            Op::Remove => self.remove(at, fx),
            Op::Start { job, payload } => self.begin_job(
                cfg,
                at,
                Operation::Start,
                *job,
                TaskKind::Start,
                payload,
                fx,
            ),
            Op::Stop { job } => self.begin_job(
                cfg,
                at,
                Operation::Stop,
                *job,
                TaskKind::Stop,
                &Payload::EMPTY,
                fx,
            ),
            Op::Import { job, payload } => self.begin_job(
                cfg,
                at,
                Operation::Import,
                *job,
                TaskKind::Import,
                payload,
                fx,
            ),
            Op::Export { job, payload } => self.begin_job(
                cfg,
                at,
                Operation::Export,
                *job,
                TaskKind::Export,
                payload,
                fx,
            ),
            Op::Clear {
                job,
                clear_metadata,
            } => self.begin_job(
                cfg,
                at,
                Operation::Clear,
                *job,
                TaskKind::Clear {
                    clear_metadata: *clear_metadata,
                },
                &Payload::EMPTY,
                fx,
            ),
            Op::ForceRestart {
                job,
                idempotency_key,
            } => self.force_restart(cfg, at, *job, idempotency_key.as_deref(), fx),
            Op::RegisterTask { job, spec } => self.register(cfg, at, *job, spec, fx),
            Op::Report { job, epoch, report } => self.report(cfg, at, *job, *epoch, report, fx),
            Op::Cancel { job } => self.cancel(cfg, at, *job, fx),
            Op::Expire => Ok(self.expire(cfg, at, fx)),
            Op::Recover => Ok(self.recover(cfg, at, fx)),
        }
    }

    fn check_new_task(&self, cfg: &Config, job: JobId, payload: &Payload) -> Result<(), Error> {
        if self.live.len() >= cfg.max_live_tasks_per_graph {
            return Err(Error::TooManyTasks {
                key: self.key.clone(),
                limit: cfg.max_live_tasks_per_graph,
            });
        }
        if payload.len() > cfg.max_payload_bytes {
            return Err(Error::InvalidArgument {
                what: "payload",
                reason: format!(
                    "{} bytes, more than the limit of {}",
                    payload.len(),
                    cfg.max_payload_bytes
                ),
            });
        }
        self.check_fresh_id(job)
    }

    fn check_fresh_id(&self, job: JobId) -> Result<(), Error> {
        if self.task(job).is_some() {
            return Err(Error::DuplicateJobId {
                key: self.key.clone(),
                job,
            });
        }
        Ok(())
    }

    /// Adds a Pending task; the caller validated it.
    fn insert_task(&mut self, at: Timestamp, new: NewTask, fx: &mut Effects) -> Job {
        let NewTask {
            job,
            kind,
            stoppable,
            timeout,
            payload,
        } = new;
        let token = CancelToken::new(&self.fence, self.epoch);
        let deadline = timeout.map(|t| at.saturating_add(t));
        let task = Task {
            id: job,
            kind: kind.clone(),
            epoch: self.epoch,
            seq: self.next_seq,
            status: TaskStatus::Pending,
            progress: 0,
            stoppable,
            created_at: at,
            started_at: None,
            ended_at: None,
            deadline,
            reason: None,
            payload: payload.clone(),
            token: Some(token.clone()),
        };
        self.next_seq += 1;
        if let Some(d) = deadline {
            self.deadlines.insert((d, job));
        }
        fx.record(|| task.change());
        self.live.insert(job, task);
        Job {
            task: TaskRef {
                key: self.key.clone(),
                id: job,
                epoch: self.epoch,
            },
            kind,
            payload,
            token,
        }
    }

    fn set_state(&mut self, to: GraphState, fx: &mut Effects) {
        let from = self.state;
        self.state = to;
        let epoch = self.epoch;
        fx.record(|| Change::State { from, to, epoch });
    }

    #[allow(clippy::too_many_arguments)]
    fn begin_job(
        &mut self,
        cfg: &Config,
        at: Timestamp,
        op: Operation,
        job: JobId,
        kind: TaskKind,
        payload: &Payload,
        fx: &mut Effects,
    ) -> Result<Outcome, Error> {
        let Some(Transition::Job(to, lk)) = transition(self.state, op) else {
            return Err(self.refuse(op));
        };
        self.check_new_task(cfg, job, payload)?;
        let new = NewTask {
            job,
            kind,
            stoppable: lk.stoppable(),
            timeout: cfg.job_timeout(lk),
            payload: payload.clone(),
        };
        let handed = self.insert_task(at, new, fx);
        self.lifecycle = Some(job);
        self.set_state(to, fx);
        self.updated_at = at;
        fx.jobs.push(handed);
        Ok(Outcome::Job {
            job,
            epoch: self.epoch,
        })
    }

    /// SPEC section 6, in one place. The caller holds the graph's lock for
    /// the whole step and dispatches `fx` before releasing it.
    fn force_restart(
        &mut self,
        cfg: &Config,
        at: Timestamp,
        job: JobId,
        idempotency_key: Option<&str>,
        fx: &mut Effects,
    ) -> Result<Outcome, Error> {
        if let Some(k) = idempotency_key {
            if k.len() > MAX_IDEMPOTENCY_KEY {
                return Err(Error::InvalidArgument {
                    what: "idempotency key",
                    reason: format!(
                        "{} bytes, more than the limit of {MAX_IDEMPOTENCY_KEY}",
                        k.len()
                    ),
                });
            }
            if let Some((current, key)) = &self.restart_key
                && key == k
                && self.lifecycle == Some(*current)
            {
                return Ok(Outcome::Restarted(Restart {
                    job: *current,
                    epoch: self.epoch,
                    failed: 0,
                    replayed: true,
                }));
            }
        }
        self.check_fresh_id(job)?;

        // 2. Every live task fails, a live restart as superseded. Their
        // tokens go void all at once when the new epoch is published (the
        // graph's fence), so none is touched here. Tasks ended by one step
        // retire in creation order; only the newest `cap` of them can be
        // retained, so the rest are dropped without being moved.
        let failed = self.live.len();
        let cap = cfg.max_retained_per_graph;
        let keep_from = if failed <= cap {
            0
        } else if cap == 0 {
            u64::MAX
        } else {
            let mut seqs: Vec<u64> = self.live.values().map(|t| t.seq).collect();
            *seqs.select_nth_unstable(failed - cap).1
        };
        let reason = |t: &Task| {
            if t.kind == TaskKind::Restart {
                FailReason::Superseded(job)
            } else {
                FailReason::ForceRestarted(job)
            }
        };
        if fx.record {
            let mut changes: Vec<(u64, Change)> = self
                .live
                .values()
                .map(|t| {
                    let mut c = t.change();
                    if let Change::Task {
                        status, reason: r, ..
                    } = &mut c
                    {
                        *status = TaskStatus::Failed;
                        *r = Some(reason(t));
                    }
                    (t.seq, c)
                })
                .collect();
            changes.sort_unstable_by_key(|(seq, _)| *seq);
            fx.changes.extend(changes.into_iter().map(|(_, c)| c));
        }
        // Only the retained tasks move; the others are dropped in place.
        let mut ended: Vec<Task> = self
            .live
            .extract_if(|_, t| t.seq >= keep_from)
            .map(|(_, mut task)| {
                task.reason = Some(reason(&task));
                task.status = TaskStatus::Failed;
                task.ended_at = Some(at);
                task.token = None;
                task
            })
            .collect();
        self.live.clear();
        ended.sort_unstable_by_key(|t| t.seq);
        self.deadlines.clear();
        self.lifecycle = None;
        let dropped = failed - ended.len();
        self.retire_bulk(cfg, ended, dropped, fx);

        // 3. and 4.
        self.epoch = self.epoch.next();
        self.set_state(GraphState::Restarting, fx);
        // 5. and 6.
        let new = NewTask {
            job,
            kind: TaskKind::Restart,
            stoppable: false,
            timeout: cfg.job_timeout(LifecycleKind::Restart),
            payload: Payload::EMPTY,
        };
        let handed = self.insert_task(at, new, fx);
        self.lifecycle = Some(job);
        self.restart_key = idempotency_key.map(|k| (job, k.to_owned()));
        self.updated_at = at;
        fx.jobs.push(handed);
        Ok(Outcome::Restarted(Restart {
            job,
            epoch: self.epoch,
            failed,
            replayed: false,
        }))
    }

    fn register(
        &mut self,
        cfg: &Config,
        at: Timestamp,
        job: JobId,
        spec: &TaskSpec,
        fx: &mut Effects,
    ) -> Result<Outcome, Error> {
        if transition(self.state, Operation::RegisterTask).is_none() {
            return Err(self.refuse(Operation::RegisterTask));
        }
        self.check_new_task(cfg, job, &spec.payload)?;
        let new = NewTask {
            job,
            kind: TaskKind::Host(spec.kind.clone()),
            stoppable: spec.stoppable,
            timeout: spec.timeout,
            payload: spec.payload.clone(),
        };
        let ticket = self.insert_task(at, new, fx);
        self.updated_at = at;
        fx.ticket = Some(ticket);
        Ok(Outcome::Job {
            job,
            epoch: self.epoch,
        })
    }

    /// The error for a report or cancel on a task that is not live.
    /// `reported` is the epoch a report carried (a cancel carries none: the
    /// task's own epoch stands in).
    fn not_live(&self, job: JobId, reported: Option<Epoch>) -> Error {
        match self.done.get(&job) {
            Some(t) if t.epoch < self.epoch => Error::StaleEpoch {
                key: self.key.clone(),
                job,
                reported: reported.unwrap_or(t.epoch),
                current: self.epoch,
            },
            Some(t) => Error::TaskTerminal {
                key: self.key.clone(),
                job,
                status: t.status,
            },
            None => Error::TaskNotFound {
                key: self.key.clone(),
                job,
            },
        }
    }

    fn report(
        &mut self,
        cfg: &Config,
        at: Timestamp,
        job: JobId,
        epoch: Epoch,
        report: &Report,
        fx: &mut Effects,
    ) -> Result<Outcome, Error> {
        let Some(task) = self.live.get(&job) else {
            return Err(self.not_live(job, Some(epoch)));
        };
        if epoch != task.epoch {
            return Err(Error::StaleEpoch {
                key: self.key.clone(),
                job,
                reported: epoch,
                current: self.epoch,
            });
        }
        let refused = || Error::ReportRefused {
            key: self.key.clone(),
            job,
            status: task.status,
            report: report.name(),
        };
        match report {
            Report::Started => {
                if task.status != TaskStatus::Pending {
                    return Err(refused());
                }
            }
            Report::Progress(p) => {
                if *p > 100 || *p < task.progress {
                    return Err(Error::BadProgress {
                        key: self.key.clone(),
                        job,
                        current: task.progress,
                        reported: *p,
                    });
                }
            }
            Report::Succeeded => {}
            Report::Failed(msg) => {
                if msg.len() > cfg.max_message_bytes {
                    return Err(Error::InvalidArgument {
                        what: "failure message",
                        reason: format!(
                            "{} bytes, more than the limit of {}",
                            msg.len(),
                            cfg.max_message_bytes
                        ),
                    });
                }
            }
        }
        // Validated: from here on the report is applied.
        match report {
            Report::Started | Report::Progress(_) => {
                let Some(task) = self.live.get_mut(&job) else {
                    return Err(Error::TaskNotFound {
                        key: self.key.clone(),
                        job,
                    });
                };
                let before = (task.status, task.progress);
                if task.status == TaskStatus::Pending {
                    task.status = TaskStatus::Running;
                    task.started_at = Some(at);
                }
                if let Report::Progress(p) = report {
                    task.progress = *p;
                }
                if before != (task.status, task.progress) {
                    fx.record(|| task.change());
                }
            }
            Report::Succeeded => self.end_task(cfg, at, job, JobEnd::Succeeded, None, fx),
            Report::Failed(msg) => self.end_task(
                cfg,
                at,
                job,
                JobEnd::Failed,
                Some(FailReason::Host(msg.as_str().into())),
                fx,
            ),
        }
        self.updated_at = at;
        Ok(Outcome::Updated)
    }

    fn cancel(
        &mut self,
        cfg: &Config,
        at: Timestamp,
        job: JobId,
        fx: &mut Effects,
    ) -> Result<Outcome, Error> {
        let Some(task) = self.live.get(&job) else {
            return Err(self.not_live(job, None));
        };
        if !task.stoppable {
            return Err(Error::NotStoppable {
                key: self.key.clone(),
                job,
                kind: task.kind.to_string(),
            });
        }
        self.end_task(
            cfg,
            at,
            job,
            JobEnd::Cancelled,
            Some(FailReason::Cancelled),
            fx,
        );
        self.updated_at = at;
        Ok(Outcome::Updated)
    }

    /// Ends a live task and, for a lifecycle job, moves the graph as the
    /// outcome table says. The caller checked that `job` is live.
    fn end_task(
        &mut self,
        cfg: &Config,
        at: Timestamp,
        job: JobId,
        end: JobEnd,
        reason: Option<FailReason>,
        fx: &mut Effects,
    ) {
        let Some(mut task) = self.live.remove(&job) else {
            return;
        };
        task.status = match end {
            JobEnd::Succeeded => TaskStatus::Succeeded,
            JobEnd::Failed | JobEnd::TimedOut => TaskStatus::Failed,
            JobEnd::Cancelled => TaskStatus::Cancelled,
        };
        if end == JobEnd::Succeeded {
            task.progress = 100;
        }
        task.reason = reason;
        task.ended_at = Some(at);
        if let Some(d) = task.deadline {
            self.deadlines.remove(&(d, job));
        }
        if let Some(token) = task.token.take() {
            if end == JobEnd::Succeeded {
                token.settle();
            } else {
                fx.void.push(token);
            }
        }
        fx.record(|| task.change());
        if self.lifecycle == Some(job) {
            self.lifecycle = None;
            if let Some(kind) = task.kind.lifecycle() {
                if kind == LifecycleKind::Restart {
                    self.restart_key = None;
                }
                self.set_state(job_outcome(kind, end), fx);
            }
        }
        self.retire(cfg, task, fx);
    }

    /// Moves a terminal task to the retained set, evicting the oldest past
    /// the count bound.
    fn retire(&mut self, cfg: &Config, task: Task, fx: &mut Effects) {
        let cap = cfg.max_retained_per_graph;
        if cap == 0 {
            fx.record(|| Change::Evicted { count: 1 });
            return;
        }
        self.done.push(task, cap);
        self.evict_over(cap, fx);
    }

    /// [`retire`](Self::retire) for many tasks at once, in order, without
    /// inserting the ones the count bound would evict at once.
    fn retire_all(&mut self, cfg: &Config, mut ended: Vec<Task>, fx: &mut Effects) {
        let skip = ended.len().saturating_sub(cfg.max_retained_per_graph);
        ended.drain(..skip);
        self.retire_bulk(cfg, ended, skip, fx);
    }

    /// Retires `ended` (in order, at most the count bound) after `dropped`
    /// older tasks of the same step were evicted at once.
    fn retire_bulk(&mut self, cfg: &Config, ended: Vec<Task>, dropped: usize, fx: &mut Effects) {
        let cap = cfg.max_retained_per_graph;
        for task in ended {
            self.done.push(task, cap);
        }
        let mut evicted = dropped;
        while self.done.len() > cap && self.done.pop_front().is_some() {
            evicted += 1;
        }
        if evicted > 0 {
            fx.record(|| Change::Evicted { count: evicted });
        }
    }

    fn evict_over(&mut self, cap: usize, fx: &mut Effects) {
        let mut count = 0;
        while self.done.len() > cap && self.done.pop_front().is_some() {
            count += 1;
        }
        if count > 0 {
            fx.record(|| Change::Evicted { count });
        }
    }

    fn expire(&mut self, cfg: &Config, at: Timestamp, fx: &mut Effects) -> Outcome {
        let mut timed_out = 0;
        while let Some(&(deadline, job)) = self.deadlines.first() {
            if deadline > at {
                break;
            }
            self.deadlines.pop_first();
            if self.live.contains_key(&job) {
                self.end_task(
                    cfg,
                    at,
                    job,
                    JobEnd::TimedOut,
                    Some(FailReason::TimedOut),
                    fx,
                );
                timed_out += 1;
            }
        }
        let mut evicted = 0;
        if let Some(age) = cfg.retention_age {
            while let Some(t) = self.done.front() {
                let ended = t.ended_at.unwrap_or(Timestamp::ZERO);
                if ended.saturating_add(age) > at {
                    break;
                }
                self.done.pop_front();
                evicted += 1;
            }
        }
        if evicted > 0 {
            fx.record(|| Change::Evicted { count: evicted });
        }
        if timed_out > 0 {
            self.updated_at = at;
        }
        Outcome::Expired { timed_out, evicted }
    }

    /// Recovery after a crash: every live task fails as interrupted (they
    /// retire in creation order, as after a forced restart), and a graph
    /// whose lifecycle job was live goes to Abnormal. The epoch stays.
    fn recover(&mut self, cfg: &Config, at: Timestamp, fx: &mut Effects) -> Outcome {
        let interrupted = self.live.len();
        let mut ended: Vec<Task> = Vec::with_capacity(interrupted);
        for (_, mut task) in self.live.drain() {
            task.status = TaskStatus::Failed;
            task.reason = Some(FailReason::Interrupted);
            task.ended_at = Some(at);
            if let Some(token) = task.token.take() {
                fx.void.push(token);
            }
            ended.push(task);
        }
        ended.sort_unstable_by_key(|t| t.seq);
        if fx.record {
            fx.changes.extend(ended.iter().map(Task::change));
        }
        self.deadlines.clear();
        self.lifecycle = None;
        self.restart_key = None;
        self.retire_all(cfg, ended, fx);
        let abnormal = self.state.job_kind().is_some();
        if abnormal {
            self.set_state(GraphState::Abnormal, fx);
        }
        if interrupted > 0 || abnormal {
            self.updated_at = at;
        }
        Outcome::Recovered {
            interrupted,
            abnormal,
        }
    }

    /// Whether [`Op::Recover`] would change anything.
    #[cfg(feature = "journal")]
    pub(crate) fn needs_recovery(&self) -> bool {
        !self.live.is_empty() || self.state.job_kind().is_some()
    }

    /// Validates a removal; on success marks the graph removed and voids
    /// its live tasks.
    fn remove(&mut self, at: Timestamp, fx: &mut Effects) -> Result<Outcome, Error> {
        if transition(self.state, Operation::Remove).is_none() {
            return Err(self.refuse(Operation::Remove));
        }
        // The fence voids every token of the graph when the removal is
        // published.
        let voided = self.live.len();
        self.live.clear();
        self.done.clear();
        self.deadlines.clear();
        self.removed = true;
        self.updated_at = at;
        fx.record(|| Change::GraphRemoved);
        Ok(Outcome::Removed { voided })
    }
}
