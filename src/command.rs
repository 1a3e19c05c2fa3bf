//! Commands: every change to the engine as a value (`docs/CONTRACT.md`,
//! section 10).
//!
//! The engine's convenience methods ([`Engine::start`](crate::Engine::start)
//! and the rest) read the clock and draw a job id, build a [`Command`] and
//! pass it to [`Engine::apply`](crate::Engine::apply). Applying a command is
//! deterministic: its effect depends only on the command and the state. A
//! journal or a consensus log records commands and has them applied again,
//! as decided commands ([`Engine::apply_decided`](crate::Engine::apply_decided)),
//! to rebuild the same state.

use crate::error::Error;
use crate::id::{Epoch, GraphKey, JobId, RequestId};
use crate::outbox::Job;
use crate::state::Operation;
use crate::task::{Payload, Report, TaskSpec};
use crate::time::Timestamp;

/// A change to one graph, with everything nondeterministic (time, ids)
/// inside it.
///
/// With the `serde` feature it is `Serialize` and `Deserialize`; ids and
/// names are validated again when deserialized.
///
/// ```
/// use graph_lifecycle::{Command, GraphKey, Op, RequestId, Timestamp};
/// let key = GraphKey::parse("p", "g")?;
/// let cmd = Command::new(key, Timestamp::from_millis(5), Op::Create)
///     .with_request(RequestId::new("create-g-once")?);
/// assert!(cmd.request.is_some());
/// # Ok::<(), graph_lifecycle::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Command {
    /// The graph it applies to.
    pub key: GraphKey,
    /// The time the command carries; the apply step uses no other.
    pub at: Timestamp,
    /// The caller's name for the command, for retries: a command whose
    /// request id the graph's window holds gets the first answer and
    /// changes nothing.
    pub request: Option<RequestId>,
    /// What to do.
    pub op: Op,
}

impl Command {
    /// A command with no request id.
    pub fn new(key: GraphKey, at: Timestamp, op: Op) -> Self {
        Self {
            key,
            at,
            request: None,
            op,
        }
    }

    /// The same command carrying `request`.
    #[must_use]
    pub fn with_request(mut self, request: RequestId) -> Self {
        self.request = Some(request);
        self
    }
}

/// The operation of a [`Command`].
///
/// Serialized forms identify a variant by its position: new variants are
/// only ever added at the end, so a journal written by an older release
/// replays on a newer one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Op {
    /// Create the graph, Stopped.
    Create,
    /// Remove the graph (Stopped or Abnormal).
    Remove,
    /// Start it; `payload` is the host's request (a backup to start from).
    Start {
        /// The new job's id.
        job: JobId,
        /// The host's request.
        payload: Payload,
    },
    /// Stop it.
    Stop {
        /// The new job's id.
        job: JobId,
    },
    /// Import data.
    Import {
        /// The new job's id.
        job: JobId,
        /// The host's request.
        payload: Payload,
    },
    /// Export data.
    Export {
        /// The new job's id.
        job: JobId,
        /// The host's request.
        payload: Payload,
    },
    /// Clear data.
    Clear {
        /// The new job's id.
        job: JobId,
        /// Whether the schema goes too.
        clear_metadata: bool,
    },
    /// Fail every live task, bump the epoch, enter Restarting, emit a
    /// restart job (`docs/CONTRACT.md`, section 6). A retry carries the
    /// first one's [`RequestId`] and gets its job back.
    ForceRestart {
        /// The restart job's id.
        job: JobId,
    },
    /// Register a host task.
    RegisterTask {
        /// The task's id.
        job: JobId,
        /// What it is.
        spec: TaskSpec,
    },
    /// A host report about a task.
    Report {
        /// The task.
        job: JobId,
        /// The epoch the host's job carried.
        epoch: Epoch,
        /// What happened.
        report: Report,
    },
    /// Cancel a stoppable task.
    Cancel {
        /// The task.
        job: JobId,
    },
    /// Fail overdue tasks as timed out and evict terminal tasks past their
    /// retention age, as of the command's time.
    Expire,
    /// Recovery after a crash: every live task fails as
    /// [`Interrupted`](crate::FailReason::Interrupted) (its worker died with
    /// the process) and a graph in a state with a lifecycle job (Starting,
    /// Stopping, Restarting, Importing, Exporting, Clearing) goes to
    /// Abnormal, from where it can be stopped, removed or force-restarted.
    /// A graph with no live task in Stopped, Running or Abnormal is left
    /// as it is. A durable engine applies it to every graph that needs it
    /// when it opens; a replica applies it to the graphs it takes over
    /// from a node that was lost.
    Recover,
}

impl Op {
    /// A stable lower-case name.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Remove => "remove",
            Op::Start { .. } => "start",
            Op::Stop { .. } => "stop",
            Op::Import { .. } => "import",
            Op::Export { .. } => "export",
            Op::Clear { .. } => "clear",
            Op::ForceRestart { .. } => "force_restart",
            Op::RegisterTask { .. } => "register_task",
            Op::Report { .. } => "report",
            Op::Cancel { .. } => "cancel",
            Op::Expire => "expire",
            Op::Recover => "recover",
        }
    }

    /// What a retry must repeat to be recognised as one: the operation,
    /// and the task a report or cancel is about. The ids the engine draws
    /// for a new task are not part of it (a retry draws new ones).
    pub(crate) fn asked(&self) -> Asked {
        let (op, job) = match self {
            Op::Create => (0, None),
            Op::Remove => (1, None),
            Op::Start { .. } => (2, None),
            Op::Stop { .. } => (3, None),
            Op::Import { .. } => (4, None),
            Op::Export { .. } => (5, None),
            Op::Clear { .. } => (6, None),
            Op::ForceRestart { .. } => (7, None),
            Op::RegisterTask { .. } => (8, None),
            Op::Report { job, .. } => (9, Some(*job)),
            Op::Cancel { job } => (10, Some(*job)),
            Op::Expire => (11, None),
            Op::Recover => (12, None),
        };
        Asked { op, job }
    }

    /// The table operation this op is checked against, if any.
    pub fn operation(&self) -> Option<Operation> {
        Some(match self {
            Op::Create => Operation::Create,
            Op::Remove => Operation::Remove,
            Op::Start { .. } => Operation::Start,
            Op::Stop { .. } => Operation::Stop,
            Op::Import { .. } => Operation::Import,
            Op::Export { .. } => Operation::Export,
            Op::Clear { .. } => Operation::Clear,
            Op::ForceRestart { .. } => Operation::ForceRestart,
            Op::RegisterTask { .. } => Operation::RegisterTask,
            Op::Report { .. } | Op::Cancel { .. } | Op::Expire | Op::Recover => return None,
        })
    }

    /// Whether applying it hands a job to the host.
    pub fn emits_job(&self) -> bool {
        matches!(
            self,
            Op::Start { .. }
                | Op::Stop { .. }
                | Op::Import { .. }
                | Op::Export { .. }
                | Op::Clear { .. }
                | Op::ForceRestart { .. }
        )
    }
}

/// The part of a command a retry must repeat (see [`Op::asked`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Asked {
    /// The operation, by a stable code.
    pub(crate) op: u8,
    /// The task a report or cancel is about.
    pub(crate) job: Option<JobId>,
}

impl Asked {
    /// The operation's name.
    pub(crate) fn name(self) -> &'static str {
        const NAMES: [&str; 13] = [
            "create",
            "remove",
            "start",
            "stop",
            "import",
            "export",
            "clear",
            "force_restart",
            "register_task",
            "report",
            "cancel",
            "expire",
            "recover",
        ];
        NAMES
            .get(usize::from(self.op))
            .copied()
            .unwrap_or("an unknown operation")
    }
}

/// What an applied command did.
///
/// With the `serde` feature it is `Serialize` and `Deserialize`, like
/// [`Error`], so that a replica can hand a client the answer the log
/// decided.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Outcome {
    /// The graph was created.
    Created,
    /// The graph was removed; this many live tasks went with it.
    Removed {
        /// Live tasks voided by the removal.
        voided: usize,
    },
    /// A lifecycle job was emitted, or a host task registered.
    Job {
        /// Its id.
        job: JobId,
        /// The graph's epoch.
        epoch: Epoch,
    },
    /// A forced restart.
    Restarted(Restart),
    /// A report or a cancel was applied.
    Updated,
    /// An expiry pass ran.
    Expired {
        /// Tasks failed as timed out.
        timed_out: usize,
        /// Terminal tasks evicted for age.
        evicted: usize,
    },
    /// A recovery ([`Op::Recover`]) ran.
    Recovered {
        /// Live tasks failed as interrupted.
        interrupted: usize,
        /// Whether the graph went to Abnormal.
        abnormal: bool,
    },
}

/// What [`Engine::force_restart`](crate::Engine::force_restart) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Restart {
    /// The restart job: poll it like any other.
    pub job: JobId,
    /// The graph's new epoch.
    pub epoch: Epoch,
    /// How many live tasks were failed (a superseded restart included).
    pub failed: usize,
}

/// Whether applying a decided command hands the jobs it produces to this
/// engine's workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch {
    /// Send them on the job channel (this engine runs the graph's jobs).
    HandOver,
    /// Only return them (a journal being replayed, a replica that does not
    /// own the graph).
    Hold,
}

/// What [`Engine::apply_decided`](crate::Engine::apply_decided) did with a
/// command decided elsewhere.
#[derive(Debug, Clone)]
#[must_use]
pub struct Decided {
    /// The outcome: a refusal is an outcome too, the same on every engine
    /// that applies the same commands.
    pub outcome: Result<Outcome, Error>,
    /// The lifecycle jobs the command produced, whether or not they were
    /// handed over: none for a refused or repeated command.
    pub jobs: Vec<Job>,
    /// The ticket of a host task it registered (see
    /// [`Engine::register_task`](crate::Engine::register_task)).
    pub ticket: Option<Job>,
    /// The command's request id was in the window: `outcome` is the first
    /// answer, and nothing changed.
    pub repeated: bool,
}
