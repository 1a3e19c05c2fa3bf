//! Commands: every change to the engine as a value (SPEC section 10).
//!
//! The engine's convenience methods ([`Engine::start`](crate::Engine::start)
//! and the rest) read the clock and draw a job id, build a [`Command`] and
//! pass it to [`Engine::apply`](crate::Engine::apply). Applying a command is
//! deterministic: its effect depends only on the command and the graph's
//! state. A journal or a consensus log records commands and replays them
//! through the same `apply` to rebuild the same state.

use crate::id::{Epoch, GraphKey, JobId};
use crate::state::Operation;
use crate::task::{Payload, Report, TaskSpec};
use crate::time::Timestamp;

/// A change to one graph, with everything nondeterministic (time, ids)
/// inside it.
///
/// With the `serde` feature it is `Serialize` and `Deserialize`; ids and
/// names are validated again when deserialized.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Command {
    /// The graph it applies to.
    pub key: GraphKey,
    /// The time the command carries; the apply step uses no other.
    pub at: Timestamp,
    /// What to do.
    pub op: Op,
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
    /// restart job (SPEC section 6).
    ForceRestart {
        /// The restart job's id.
        job: JobId,
        /// The caller's key for retries: while the restart it started is
        /// the graph's live restart, the same key gets the same job back.
        idempotency_key: Option<String>,
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
    /// when it opens (the `journal` module, behind the feature of that
    /// name); a replica applies it when it takes over from a crashed
    /// leader.
    Recover,
}

impl Op {
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

/// What an applied command did.
#[derive(Debug, Clone, PartialEq, Eq)]
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
pub struct Restart {
    /// The restart job: poll it like any other.
    pub job: JobId,
    /// The graph's new epoch.
    pub epoch: Epoch,
    /// How many live tasks were failed (a superseded restart included).
    pub failed: usize,
    /// True if this was a retry with the idempotency key of the live
    /// restart: nothing changed and `job` is that restart's job.
    pub replayed: bool,
}
