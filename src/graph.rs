//! The pure step: one graph's state machine and task table, and the rule
//! for a key that has no graph. No lock, no clock, no channel: a
//! [`Command`] and the state in, the outcome and the effects out.
//!
//! [`GraphData::apply`] validates a command completely before it changes
//! anything, so a refused command leaves no trace (but its answer in the
//! request window, when it carried a request id). Its side effects (jobs
//! to hand over, tokens to fire, changes to publish) are collected in an
//! [`Effects`] buffer that the engine dispatches while it still holds the
//! graph's lock. [`apply_absent`] is the same step for a key with no
//! graph: a create makes one, anything else is "not found".

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use crate::command::{Command, Op, Outcome, Restart};
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
    CancelToken, FailReason, Fence, HostKind, Payload, Report, TaskInfo, TaskKind, TaskSpec,
    TaskStatus, TokenPool,
};
use crate::time::Timestamp;

pub(crate) mod queue;
pub(crate) mod window;

use queue::{Key, Timed, TimedQueue};
pub(crate) use window::{Answered, Requests};

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
    pub(crate) token: Option<CancelToken>,
}

/// Ended tasks are retained in the order they ended.
impl Timed for Task {
    type Id = JobId;
    fn id(&self) -> &JobId {
        &self.id
    }
    fn key(&self) -> Key {
        (self.ended_at.unwrap_or(Timestamp::ZERO), self.seq)
    }
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
    /// The command changed the state (so a commit log must keep it).
    pub(crate) changed: bool,
    /// The command's request id was in the window: nothing changed.
    pub(crate) repeat: bool,
    pub(crate) jobs: Vec<Job>,
    /// The ticket of a registered host task, returned to the caller
    /// instead of being sent.
    pub(crate) ticket: Option<Job>,
    pub(crate) void: Vec<CancelToken>,
    pub(crate) changes: Vec<Change>,
}

std::thread_local! {
    /// A thread's [`Effects`]: its commands use them one after the other,
    /// so that the buffers are reused from one command to the next without
    /// every graph carrying buffers of its own.
    static SPARE: std::cell::RefCell<Effects> = std::cell::RefCell::new(Effects::default());
}

impl Effects {
    /// Runs `f` on the calling thread's effects, reset for a command, and
    /// empties them after; buffers a big step grew are let go, so a thread
    /// keeps little between commands. Should the thread's effects be in
    /// use already (a model checker running several threads on one),
    /// fresh ones stand in.
    pub(crate) fn with<R>(record: bool, f: impl FnOnce(&mut Effects) -> R) -> R {
        SPARE.with(|spare| match spare.try_borrow_mut() {
            Ok(mut fx) => {
                fx.reset(record);
                let out = f(&mut fx);
                fx.trim();
                out
            }
            Err(_) => {
                let mut fx = Effects::default();
                fx.reset(record);
                f(&mut fx)
            }
        })
    }

    /// Empties the buffers, and lets go of any grown past a few pages.
    fn trim(&mut self) {
        const KEEP: usize = 1024;
        self.jobs.clear();
        self.ticket = None;
        self.void.clear();
        self.changes.clear();
        if self.void.capacity() > KEEP {
            self.void = Vec::new();
        }
        if self.changes.capacity() > KEEP {
            self.changes = Vec::new();
        }
        if self.jobs.capacity() > KEEP {
            self.jobs = Vec::new();
        }
    }

    #[inline]
    fn record(&mut self, change: impl FnOnce() -> Change) {
        if self.record {
            self.changes.push(change());
        }
    }

    /// Ready for the next command; keeps the buffers' memory.
    pub(crate) fn reset(&mut self, record: bool) {
        self.record = record;
        self.changed = false;
        self.repeat = false;
        self.jobs.clear();
        self.ticket = None;
        self.void.clear();
        self.changes.clear();
    }
}

/// Terminal tasks, oldest-ended first: each stored once, in a queue that
/// grows to the retention bound and no further, with an index by id.
pub(crate) type Retained = TimedQueue<Task, BuildHasherDefault<IdHasher>>;

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
    pub(crate) next_seq: u64,
    /// The live lifecycle job; its kind matches `state`.
    pub(crate) lifecycle: Option<JobId>,
    /// The task table, allocated while it holds something.
    pub(crate) t: Tasks,
    /// The answers to commands that carried a request id.
    pub(crate) requests: Requests,
    /// Voids the tokens of older epochs, and all of them on removal;
    /// moved when the registry publishes a commit.
    pub(crate) fence: Arc<Fence>,
}

/// A graph's tasks.
#[derive(Debug, Default)]
pub(crate) struct TaskTable {
    pub(crate) live: IdMap<Task>,
    pub(crate) done: Retained,
    /// Deadlines of live tasks.
    pub(crate) deadlines: BTreeSet<(Timestamp, JobId)>,
    /// Where the live tasks' tokens come from.
    pub(crate) tokens: TokenPool,
    /// The host task kinds this graph has seen last, at most
    /// [`KINDS_KEPT`]: a task of one of them shares its name's allocation,
    /// so that tasks do not each hold (and free) a copy.
    kinds: Vec<HostKind>,
}

/// How many host task kinds a graph keeps for sharing.
const KINDS_KEPT: usize = 8;

/// What an empty [`Tasks`] reads as.
static EMPTY_TABLE: TaskTable = TaskTable {
    live: IdMap::with_hasher(BuildHasherDefault::new()),
    done: Retained::new(),
    deadlines: BTreeSet::new(),
    tokens: TokenPool::new(),
    kinds: Vec::new(),
};

/// A graph's task table, on the heap while it holds anything: a graph
/// with no task, live or retained, spends one pointer on it. Reading an
/// empty one reads a shared empty table; writing allocates it.
#[derive(Debug, Default)]
pub(crate) struct Tasks(Option<Box<TaskTable>>);

impl std::ops::Deref for Tasks {
    type Target = TaskTable;
    #[inline]
    fn deref(&self) -> &TaskTable {
        self.0.as_deref().unwrap_or(&EMPTY_TABLE)
    }
}

impl std::ops::DerefMut for Tasks {
    #[inline]
    fn deref_mut(&mut self) -> &mut TaskTable {
        self.0.get_or_insert_with(Box::default)
    }
}

impl Tasks {
    /// Frees the table once it holds no task.
    fn shrink(&mut self) {
        if self
            .0
            .as_ref()
            .is_some_and(|t| t.live.is_empty() && t.done.is_empty())
        {
            self.0 = None;
        }
    }
}

impl GraphData {
    /// A new graph, Stopped, that goes on with its key's request window.
    pub(crate) fn new(key: GraphKey, at: Timestamp, requests: Requests) -> Self {
        Self {
            key,
            state: GraphState::Stopped,
            epoch: Epoch::ZERO,
            created_at: at,
            updated_at: at,
            removed: false,
            next_seq: 0,
            lifecycle: None,
            t: Tasks::default(),
            requests,
            fence: Fence::new(Epoch::ZERO),
        }
    }

    /// The earliest time an [`Op::Expire`] would change something.
    pub(crate) fn next_deadline(&self, cfg: &Config) -> Option<Timestamp> {
        let timeout = self.t.deadlines.first().map(|(t, _)| *t);
        let age = cfg.retention_age.and_then(|age| {
            let ended = self.t.done.front()?.ended_at?;
            Some(ended.saturating_add(age))
        });
        match (timeout, age) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn task(&self, id: JobId) -> Option<&Task> {
        self.t.live.get(&id).or_else(|| self.t.done.get(&id))
    }

    pub(crate) fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.t.live.values().chain(self.t.done.iter())
    }

    fn refuse(&self, op: Operation) -> Error {
        Error::TransitionRefused {
            key: self.key.clone(),
            state: self.state,
            op,
        }
    }

    /// Applies a command: the pure step. A command whose request id the
    /// window holds gets its first answer and changes nothing
    /// (`fx.repeat`); any other is applied, and its answer recorded if it
    /// carried a request id. On error nothing changed but that record.
    pub(crate) fn apply(
        &mut self,
        cfg: &Config,
        cmd: &Command,
        fx: &mut Effects,
    ) -> Result<Outcome, Error> {
        if let Some(answer) = self.requests.answer(cfg, cmd) {
            fx.repeat = true;
            return answer;
        }
        let result = self.step(cfg, cmd.at, &cmd.op, fx);
        self.t.shrink();
        if let Some(id) = &cmd.request {
            self.requests
                .record(cfg, id.clone(), cmd.at, cmd.op.asked(), result.clone());
            fx.changed = true;
        }
        result
    }

    /// Applies `op` at time `at`; `fx.changed` says whether it changed
    /// anything. On error nothing changed.
    fn step(
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
            Op::ForceRestart { job } => self.force_restart(cfg, at, *job, fx),
            Op::RegisterTask { job, spec } => self.register(cfg, at, *job, spec, fx),
            Op::Report { job, epoch, report } => self.report(cfg, at, *job, *epoch, report, fx),
            Op::Cancel { job } => self.cancel(cfg, at, *job, fx),
            Op::Expire => Ok(self.expire(cfg, at, fx)),
            Op::Recover => Ok(self.recover(cfg, at, fx)),
        }
    }

    /// The ticket of a host task, for a retried registration: the task's
    /// own token while it is live, a token that reads as it ended after.
    pub(crate) fn ticket(&self, job: JobId) -> Option<Job> {
        let t = self.task(job)?;
        let token = match &t.token {
            Some(token) => token.clone(),
            None => {
                let token = CancelToken::single(&self.fence, t.epoch);
                if t.status == TaskStatus::Succeeded {
                    token.settle();
                } else {
                    token.fire();
                }
                token
            }
        };
        Some(Job {
            task: TaskRef {
                key: self.key.clone(),
                id: job,
                epoch: t.epoch,
            },
            kind: t.kind.clone(),
            payload: t.payload.clone(),
            token,
        })
    }

    fn check_new_task(&self, cfg: &Config, job: JobId, payload: &Payload) -> Result<(), Error> {
        if self.t.live.len() >= cfg.max_live_tasks_per_graph {
            return Err(Error::TooManyTasks {
                key: self.key.clone(),
                limit: cfg.max_live_tasks_per_graph,
            });
        }
        if payload.len() > cfg.max_payload_bytes {
            return Err(Error::InvalidArgument {
                what: "payload".into(),
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
        let token = self.t.tokens.token(&self.fence, self.epoch);
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
            self.t.deadlines.insert((d, job));
        }
        fx.record(|| task.change());
        self.t.live.insert(job, task);
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
        fx.changed = true;
        fx.jobs.push(handed);
        Ok(Outcome::Job {
            job,
            epoch: self.epoch,
        })
    }

    /// The forced restart (`docs/CONTRACT.md`, section 6), in one place.
    /// The caller holds the graph's lock for the whole step and dispatches
    /// `fx` before releasing it.
    fn force_restart(
        &mut self,
        cfg: &Config,
        at: Timestamp,
        job: JobId,
        fx: &mut Effects,
    ) -> Result<Outcome, Error> {
        // 1. The graph exists (the caller found it).
        self.check_fresh_id(job)?;

        // 2. Every live task fails, a live restart as superseded. Their
        // tokens go void all at once when the new epoch is published (the
        // graph's fence), so none is touched here. Tasks ended by one step
        // retire in creation order; only the newest `cap` of them can be
        // retained, so the rest are dropped without being moved.
        let failed = self.t.live.len();
        let cap = cfg.max_retained_per_graph;
        let reason = |t: &Task| {
            if t.kind == TaskKind::Restart {
                FailReason::Superseded(job)
            } else {
                FailReason::ForceRestarted(job)
            }
        };
        if fx.record {
            let mut changes: Vec<(u64, Change)> = self
                .t
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
        let mut ended = self.newest_live(cap);
        self.t.live.clear();
        for task in &mut ended {
            task.reason = Some(reason(task));
            task.status = TaskStatus::Failed;
            task.ended_at = Some(at);
            task.token = None;
        }
        ended.sort_unstable_by_key(|t| t.seq);
        self.t.deadlines.clear();
        self.lifecycle = None;
        let dropped = failed - ended.len();
        self.retire_bulk(cfg, ended, dropped, fx);

        // 3. and 4. The new epoch's tokens come from a chunk of their own.
        self.epoch = self.epoch.next();
        self.t.tokens.release();
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
        self.updated_at = at;
        fx.changed = true;
        fx.jobs.push(handed);
        Ok(Outcome::Restarted(Restart {
            job,
            epoch: self.epoch,
            failed,
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
        let kind = self.shared_kind(&spec.kind);
        let new = NewTask {
            job,
            kind: TaskKind::Host(kind),
            stoppable: spec.stoppable,
            timeout: spec.timeout,
            payload: spec.payload.clone(),
        };
        let ticket = self.insert_task(at, new, fx);
        self.updated_at = at;
        fx.changed = true;
        fx.ticket = Some(ticket);
        Ok(Outcome::Job {
            job,
            epoch: self.epoch,
        })
    }

    /// Takes the `cap` newest live tasks (by creation) out of the table,
    /// in no particular order, moving no other task. Tasks are most often
    /// live in a run of the newest ones, so the cut is first guessed at
    /// the `cap` newest ids ever made, which takes them in one pass; only
    /// when some of those have ended is the rest of the cut found by a
    /// selection over the remaining tasks' creation numbers.
    fn newest_live(&mut self, cap: usize) -> Vec<Task> {
        if self.t.live.len() <= cap {
            return self.t.live.drain().map(|(_, t)| t).collect();
        }
        if cap == 0 {
            return Vec::new();
        }
        let guess = self.next_seq.saturating_sub(cap as u64);
        let mut kept: Vec<Task> = Vec::with_capacity(cap);
        kept.extend(
            self.t
                .live
                .extract_if(|_, t| t.seq >= guess)
                .map(|(_, t)| t),
        );
        let need = cap - kept.len();
        if need > 0 {
            let mut seqs: Vec<u64> = self.t.live.values().map(|t| t.seq).collect();
            let n = seqs.len();
            let from = *seqs.select_nth_unstable(n - need).1;
            kept.extend(self.t.live.extract_if(|_, t| t.seq >= from).map(|(_, t)| t));
        }
        kept
    }

    /// `kind`, as an allocation this graph's tasks share: the kept one
    /// with the same name, or `kind` itself, kept from now on (replacing
    /// the oldest kept if there are [`KINDS_KEPT`]).
    fn shared_kind(&mut self, kind: &HostKind) -> HostKind {
        let kinds = &mut self.t.kinds;
        if let Some(k) = kinds.iter().find(|k| *k == kind) {
            return k.clone();
        }
        if kinds.len() == KINDS_KEPT {
            kinds.remove(0);
        }
        kinds.push(kind.clone());
        kind.clone()
    }

    /// The error for a report or cancel on a task that is not live.
    /// `reported` is the epoch a report carried (a cancel carries none: the
    /// task's own epoch stands in).
    fn not_live(&self, job: JobId, reported: Option<Epoch>) -> Error {
        match self.t.done.get(&job) {
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
        let Some(task) = self.t.live.get(&job) else {
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
            report: report.name().into(),
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
                        what: "failure message".into(),
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
                let Some(task) = self.t.live.get_mut(&job) else {
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
                if before == (task.status, task.progress) {
                    // A report that changes nothing leaves no trace.
                    return Ok(Outcome::Updated);
                }
                fx.record(|| task.change());
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
        fx.changed = true;
        Ok(Outcome::Updated)
    }

    fn cancel(
        &mut self,
        cfg: &Config,
        at: Timestamp,
        job: JobId,
        fx: &mut Effects,
    ) -> Result<Outcome, Error> {
        let Some(task) = self.t.live.get(&job) else {
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
        fx.changed = true;
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
        let Some(mut task) = self.t.live.remove(&job) else {
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
            self.t.deadlines.remove(&(d, job));
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
                self.set_state(job_outcome(kind, end), fx);
            }
        }
        self.retire(cfg, task, fx);
    }

    /// Moves a terminal task to the retained set, evicting the oldest past
    /// the count bound.
    fn retire(&mut self, cfg: &Config, mut task: Task, fx: &mut Effects) {
        summarize(cfg, &mut task);
        let cap = cfg.max_retained_per_graph;
        if cap == 0 {
            fx.record(|| Change::Evicted { count: 1 });
            return;
        }
        self.t.done.push(task, cap);
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
        self.t.done.reserve(ended.len(), cap);
        for mut task in ended {
            summarize(cfg, &mut task);
            self.t.done.push(task, cap);
        }
        let mut evicted = dropped;
        while self.t.done.len() > cap && self.t.done.pop_front().is_some() {
            evicted += 1;
        }
        if evicted > 0 {
            fx.record(|| Change::Evicted { count: evicted });
        }
    }

    fn evict_over(&mut self, cap: usize, fx: &mut Effects) {
        let mut count = 0;
        while self.t.done.len() > cap && self.t.done.pop_front().is_some() {
            count += 1;
        }
        if count > 0 {
            fx.record(|| Change::Evicted { count });
        }
    }

    fn expire(&mut self, cfg: &Config, at: Timestamp, fx: &mut Effects) -> Outcome {
        let mut timed_out = 0;
        while let Some(&(deadline, job)) = self.t.deadlines.first() {
            if deadline > at {
                break;
            }
            self.t.deadlines.pop_first();
            if self.t.live.contains_key(&job) {
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
            while let Some(t) = self.t.done.front() {
                let ended = t.ended_at.unwrap_or(Timestamp::ZERO);
                if ended.saturating_add(age) > at {
                    break;
                }
                self.t.done.pop_front();
                evicted += 1;
            }
        }
        if evicted > 0 {
            fx.record(|| Change::Evicted { count: evicted });
        }
        if timed_out > 0 {
            self.updated_at = at;
        }
        fx.changed |= timed_out > 0 || evicted > 0;
        Outcome::Expired { timed_out, evicted }
    }

    /// Recovery after a crash: every live task fails as interrupted (they
    /// retire in creation order, as after a forced restart), and a graph
    /// whose lifecycle job was live goes to Abnormal. The epoch stays.
    fn recover(&mut self, cfg: &Config, at: Timestamp, fx: &mut Effects) -> Outcome {
        let interrupted = self.t.live.len();
        let mut ended: Vec<Task> = Vec::with_capacity(interrupted);
        for (_, mut task) in self.t.live.drain() {
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
        self.t.deadlines.clear();
        self.lifecycle = None;
        self.retire_all(cfg, ended, fx);
        let abnormal = self.state.job_kind().is_some();
        if abnormal {
            self.set_state(GraphState::Abnormal, fx);
        }
        if interrupted > 0 || abnormal {
            self.updated_at = at;
            fx.changed = true;
        }
        Outcome::Recovered {
            interrupted,
            abnormal,
        }
    }

    /// Validates a removal; on success marks the graph removed and voids
    /// its live tasks.
    fn remove(&mut self, at: Timestamp, fx: &mut Effects) -> Result<Outcome, Error> {
        if transition(self.state, Operation::Remove).is_none() {
            return Err(self.refuse(Operation::Remove));
        }
        // The fence voids every token of the graph when the removal is
        // published.
        let voided = self.t.live.len();
        self.t = Tasks::default();
        self.removed = true;
        self.updated_at = at;
        fx.changed = true;
        fx.record(|| Change::GraphRemoved);
        Ok(Outcome::Removed { voided })
    }
}

/// An ended task keeps at most [`Config::retained_payload_bytes`] of its
/// payload.
fn summarize(cfg: &Config, task: &mut Task) {
    if task.payload.len() > cfg.retained_payload_bytes {
        task.payload = task.payload.prefix(cfg.retained_payload_bytes);
    }
}

/// The pure step for a key with no graph, `graphs` graphs existing, of
/// which `in_project` in the key's project. A command whose request id
/// the key's window holds gets its first answer (`fx.repeat`); a create
/// makes the graph, Stopped, which takes the key's window with it (or is
/// [`Error::ProjectFull`] or [`Error::TooManyGraphs`]); anything else is
/// [`Error::GraphNotFound`]. A refusal is recorded in the window when the
/// command carried a request id.
///
/// Returns the answer and, for a create, the new graph.
pub(crate) fn apply_absent(
    cfg: &Config,
    cmd: &Command,
    window: &mut Requests,
    (graphs, in_project): (usize, usize),
    fx: &mut Effects,
) -> (Result<Outcome, Error>, Option<GraphData>) {
    if let Some(answer) = window.answer(cfg, cmd) {
        fx.repeat = true;
        return (answer, None);
    }
    let refusal = if !matches!(cmd.op, Op::Create) {
        Some(Error::GraphNotFound {
            key: cmd.key.clone(),
        })
    } else if in_project >= cfg.max_graphs_per_project {
        Some(Error::ProjectFull {
            key: cmd.key.clone(),
            limit: cfg.max_graphs_per_project,
        })
    } else if graphs >= cfg.max_graphs {
        Some(Error::TooManyGraphs {
            key: cmd.key.clone(),
            limit: cfg.max_graphs,
        })
    } else {
        None
    };
    if let Some(e) = refusal {
        if let Some(id) = &cmd.request {
            window.record(cfg, id.clone(), cmd.at, cmd.op.asked(), Err(e.clone()));
            fx.changed = true;
        }
        return (Err(e), None);
    }
    let mut g = GraphData::new(cmd.key.clone(), cmd.at, std::mem::take(window));
    if let Some(id) = &cmd.request {
        g.requests.record(
            cfg,
            id.clone(),
            cmd.at,
            cmd.op.asked(),
            Ok(Outcome::Created),
        );
    }
    fx.changed = true;
    fx.record(|| Change::GraphCreated);
    (Ok(Outcome::Created), Some(g))
}

#[cfg(test)]
mod tests {
    //! The pure step on its own: no registry, no lock, no channel.

    use super::*;
    use crate::id::RequestId;
    use crate::time::{IdSource, SequentialIds};

    fn key() -> GraphKey {
        GraphKey::parse("p", "g").unwrap()
    }

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn cmd(ms: u64, op: Op) -> Command {
        Command::new(key(), at(ms), op)
    }

    /// A Running graph, its start job ended, and the ids it drew.
    fn running(cfg: &Config, ids: &SequentialIds) -> GraphData {
        let mut g = GraphData::new(key(), at(0), Requests::default());
        let mut fx = Effects::default();
        let job = ids.next_id(at(0));
        g.apply(
            cfg,
            &cmd(
                0,
                Op::Start {
                    job,
                    payload: Payload::EMPTY,
                },
            ),
            &mut fx,
        )
        .unwrap();
        let done = Op::Report {
            job,
            epoch: Epoch::ZERO,
            report: Report::Succeeded,
        };
        g.apply(cfg, &cmd(1, done), &mut fx).unwrap();
        assert_eq!(g.state, GraphState::Running);
        g
    }

    /// What an image sees of a graph, to compare before and after.
    fn seen(g: &GraphData) -> crate::image::GraphImage {
        crate::image::GraphImage::of(g)
    }

    #[test]
    fn a_refused_command_changes_nothing_and_has_no_effects() {
        let (cfg, ids) = (Config::default(), SequentialIds::new(1));
        let mut g = running(&cfg, &ids);
        let before = seen(&g);
        let mut fx = Effects::default();
        fx.reset(true);
        let job = ids.next_id(at(2));
        let err = g
            .apply(
                &cfg,
                &cmd(
                    2,
                    Op::Start {
                        job,
                        payload: Payload::EMPTY,
                    },
                ),
                &mut fx,
            )
            .unwrap_err();
        assert_eq!(err.code(), "TRANSITION_REFUSED");
        assert_eq!(seen(&g), before);
        assert!(!fx.changed && !fx.repeat);
        assert!(fx.jobs.is_empty() && fx.void.is_empty() && fx.changes.is_empty());
    }

    #[test]
    fn a_forced_restart_is_one_step_with_one_job_and_every_live_task_failed() {
        let (cfg, ids) = (Config::default(), SequentialIds::new(1));
        let mut g = running(&cfg, &ids);
        let mut fx = Effects::default();
        let import = ids.next_id(at(2));
        g.apply(
            &cfg,
            &cmd(
                2,
                Op::Import {
                    job: import,
                    payload: Payload::from("x"),
                },
            ),
            &mut fx,
        )
        .unwrap();
        let host = ids.next_id(at(3));
        let spec = TaskSpec::new(crate::task::HostKind::new("algo").unwrap());
        g.apply(&cfg, &cmd(3, Op::RegisterTask { job: host, spec }), &mut fx)
            .unwrap();
        fx.reset(true);
        let restart = ids.next_id(at(4));
        let out = g
            .apply(&cfg, &cmd(4, Op::ForceRestart { job: restart }), &mut fx)
            .unwrap();
        assert_eq!(
            out,
            Outcome::Restarted(Restart {
                job: restart,
                epoch: Epoch(1),
                failed: 2
            })
        );
        assert!(fx.changed);
        assert_eq!(fx.jobs.len(), 1);
        assert_eq!(fx.jobs[0].task.id, restart);
        assert_eq!(
            (g.state, g.epoch, g.lifecycle),
            (GraphState::Restarting, Epoch(1), Some(restart))
        );
        for id in [import, host] {
            let t = g.task(id).unwrap();
            assert_eq!(t.status, TaskStatus::Failed);
            assert_eq!(t.reason, Some(FailReason::ForceRestarted(restart)));
            assert_eq!(t.ended_at, Some(at(4)));
        }
        assert_eq!(g.t.live.len(), 1);
        // 2 tasks failed, the state, the restart task.
        assert_eq!(fx.changes.len(), 4);
    }

    /// With more live tasks than can be retained, a forced restart keeps
    /// the newest live ones by creation, also when the newest tasks ever
    /// made have ended already (the cut is then not where the ids alone
    /// would put it), and hands out tokens of a new chunk afterwards.
    #[test]
    fn a_forced_restart_retains_the_newest_live_tasks_whatever_ended_before() {
        let cfg = Config::default().max_retained_per_graph(3);
        let ids = SequentialIds::new(1);
        let mut g = running(&cfg, &ids);
        let mut fx = Effects::default();
        let spec = TaskSpec::new(crate::task::HostKind::new("algo").unwrap());
        let mut made = Vec::new();
        for i in 0..6 {
            let job = ids.next_id(at(10 + i));
            let op = Op::RegisterTask {
                job,
                spec: spec.clone(),
            };
            g.apply(&cfg, &cmd(10 + i, op), &mut fx).unwrap();
            made.push(job);
        }
        // The two newest end; four stay live, one more than can be kept.
        for (i, &job) in made[4..].iter().enumerate() {
            let op = Op::Report {
                job,
                epoch: Epoch(0),
                report: Report::Succeeded,
            };
            g.apply(&cfg, &cmd(20 + i as u64, op), &mut fx).unwrap();
        }
        let token_before = g.t.tokens.token(&g.fence, g.epoch);
        let restart = ids.next_id(at(30));
        g.apply(&cfg, &cmd(30, Op::ForceRestart { job: restart }), &mut fx)
            .unwrap();
        // Retained: the three newest of the four that were live.
        let kept: Vec<JobId> = g.t.done.iter().map(|t| t.id).collect();
        assert_eq!(kept, made[1..4]);
        assert!(g.task(made[0]).is_none());
        for t in g.t.done.iter() {
            assert_eq!(t.reason, Some(FailReason::ForceRestarted(restart)));
        }
        // A token of the new epoch is not one of the old epoch's chunk:
        // the old one reads void, the new one live.
        let token_after = g.t.tokens.token(&g.fence, g.epoch);
        g.fence.set(g.epoch, false);
        assert!(token_before.is_void() && !token_after.is_void());
    }

    #[test]
    fn a_command_that_changes_nothing_says_so() {
        let (cfg, ids) = (Config::default(), SequentialIds::new(1));
        let mut g = running(&cfg, &ids);
        let mut fx = Effects::default();
        for op in [Op::Expire, Op::Recover] {
            fx.reset(false);
            g.apply(&cfg, &cmd(5, op), &mut fx).unwrap();
            assert!(!fx.changed);
        }
        let host = ids.next_id(at(6));
        let spec = TaskSpec::new(crate::task::HostKind::new("algo").unwrap());
        g.apply(&cfg, &cmd(6, Op::RegisterTask { job: host, spec }), &mut fx)
            .unwrap();
        let progress = |p| Op::Report {
            job: host,
            epoch: Epoch::ZERO,
            report: Report::Progress(p),
        };
        g.apply(&cfg, &cmd(7, progress(10)), &mut fx).unwrap();
        let before = seen(&g);
        fx.reset(false);
        g.apply(&cfg, &cmd(8, progress(10)), &mut fx).unwrap();
        assert!(!fx.changed);
        assert_eq!(seen(&g), before, "not even the update time moves");
    }

    #[test]
    fn a_repeated_request_gets_the_first_answer_and_changes_nothing() {
        let (cfg, ids) = (Config::default(), SequentialIds::new(1));
        let mut g = running(&cfg, &ids);
        let r = RequestId::new("once").unwrap();
        let mut fx = Effects::default();
        let first = ids.next_id(at(2));
        let c1 = cmd(2, Op::Stop { job: first }).with_request(r.clone());
        let out = g.apply(&cfg, &c1, &mut fx).unwrap();
        assert!(fx.changed && !fx.repeat);
        let before = seen(&g);
        fx.reset(true);
        let c2 = cmd(
            3,
            Op::Stop {
                job: ids.next_id(at(3)),
            },
        )
        .with_request(r);
        assert_eq!(g.apply(&cfg, &c2, &mut fx), Ok(out));
        assert!(fx.repeat && !fx.changed && fx.jobs.is_empty() && fx.changes.is_empty());
        assert_eq!(seen(&g), before);
    }

    #[test]
    fn a_refusal_with_a_request_id_changes_only_the_window() {
        let (cfg, ids) = (Config::default(), SequentialIds::new(1));
        let mut g = running(&cfg, &ids);
        let mut fx = Effects::default();
        let c = cmd(
            2,
            Op::Start {
                job: ids.next_id(at(2)),
                payload: Payload::EMPTY,
            },
        )
        .with_request(RequestId::new("r").unwrap());
        let err = g.apply(&cfg, &c, &mut fx).unwrap_err();
        assert!(fx.changed, "the window changed: a log must keep it");
        assert!(fx.jobs.is_empty() && fx.changes.is_empty());
        assert_eq!(g.requests.len(), 1);
        assert_eq!(g.state, GraphState::Running);
        assert_eq!(g.apply(&cfg, &c, &mut fx), Err(err));
    }

    #[test]
    fn a_key_with_no_graph_creates_one_or_answers_not_found() {
        let cfg = Config::default().max_graphs(2);
        let r = RequestId::new("r").unwrap();
        let mut window = Requests::default();
        let mut fx = Effects::default();
        let start = cmd(
            1,
            Op::Start {
                job: SequentialIds::new(1).next_id(at(1)),
                payload: Payload::EMPTY,
            },
        );
        // Without a request id: refused, nothing kept.
        let (out, made) = apply_absent(&cfg, &start, &mut window, (0, 0), &mut fx);
        assert_eq!(out.unwrap_err().code(), "GRAPH_NOT_FOUND");
        assert!(made.is_none() && !fx.changed && window.is_empty());
        // With one: the refusal is kept.
        let (out, _) = apply_absent(
            &cfg,
            &start.clone().with_request(r.clone()),
            &mut window,
            (0, 0),
            &mut fx,
        );
        assert!(out.is_err() && fx.changed && window.len() == 1);
        // Full: a create is refused.
        let (out, made) = apply_absent(&cfg, &cmd(2, Op::Create), &mut window, (2, 0), &mut fx);
        assert_eq!(out.unwrap_err().code(), "TOO_MANY_GRAPHS");
        assert!(made.is_none());
        // The project is full, the engine is not: the refusal names the project's limit.
        let quota = cfg.clone().max_graphs_per_project(1);
        let (out, made) = apply_absent(&quota, &cmd(2, Op::Create), &mut window, (1, 1), &mut fx);
        assert!(matches!(out, Err(Error::ProjectFull { limit: 1, .. })));
        assert!(made.is_none());
        // A create takes the key's window with it.
        fx.reset(true);
        let (out, made) = apply_absent(&cfg, &cmd(3, Op::Create), &mut window, (1, 0), &mut fx);
        assert_eq!(out, Ok(Outcome::Created));
        let g = made.unwrap();
        assert!(window.is_empty());
        assert_eq!(g.requests.len(), 1);
        assert_eq!(fx.changes, [Change::GraphCreated]);
    }
}
