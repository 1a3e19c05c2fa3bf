//! The crate's one error type (`docs/CONTRACT.md`, section 9), and
//! [`LogError`], the cause a commit log gives when it cannot take a
//! command.
//!
//! Operations that can fail only in a few ways of their own have their own
//! small types instead, the way `crossbeam-channel` gives `recv_timeout`
//! a `RecvTimeoutError`: decoding an image ([`ImageError`]) and reading
//! events ([`EventError`]). Everything a command can meet is an [`Error`],
//! so that a host maps one type onto its API (`docs/DESIGN.md`, "Error
//! types").
//!
//! [`ImageError`]: crate::ImageError
//! [`EventError`]: crate::EventError

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use crate::id::{Epoch, GraphKey, IdKind, JobId, RequestId};
use crate::state::{GraphState, Operation};
use crate::task::TaskStatus;

/// Everything that can go wrong with a command or a query, each with a
/// stable [`code`](Error::code) and an [`http_status`](Error::http_status).
///
/// A call that returns an error changed nothing, with two exceptions, both
/// documented where they arise: a command that carried a
/// [`RequestId`] leaves its refusal in the graph's
/// request window, so that a retry gets the same answer; and a
/// [`CommitLog`](Error::CommitLog) failure met after the command was
/// applied in memory.
///
/// With the `serde` feature it is `Serialize` and `Deserialize`, so that a
/// replica can answer a command with the outcome the log decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Error {
    /// A project, graph or job id, or a task kind name, is malformed.
    #[error("{kind} \"{value}\" {reason}")]
    InvalidId {
        /// Which kind of name.
        kind: IdKind,
        /// The input, escaped and shortened.
        value: String,
        /// What is wrong with it.
        reason: Cow<'static, str>,
    },
    /// An argument other than an id is malformed.
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// Which argument.
        what: Cow<'static, str>,
        /// What is wrong with it.
        reason: String,
    },
    /// No such graph (in this project).
    #[error("graph {key} is not found")]
    GraphNotFound {
        /// The graph asked for.
        key: GraphKey,
    },
    /// A graph with this key exists already.
    #[error("graph {key} already exists")]
    GraphExists {
        /// The graph.
        key: GraphKey,
    },
    /// No such task on this graph.
    #[error("job {job} of graph {key} is not found")]
    TaskNotFound {
        /// The graph.
        key: GraphKey,
        /// The job asked for.
        job: JobId,
    },
    /// The transition table refuses this operation in this state.
    #[error("cannot {op} graph {key} while it is {state}")]
    TransitionRefused {
        /// The graph.
        key: GraphKey,
        /// Its state.
        state: GraphState,
        /// The refused operation.
        op: Operation,
    },
    /// The task has ended; nothing more can happen to it.
    #[error("job {job} of graph {key} is {status} already")]
    TaskTerminal {
        /// The graph.
        key: GraphKey,
        /// The job.
        job: JobId,
        /// Its final status.
        status: TaskStatus,
    },
    /// A report about a task of an older epoch: a forced restart voided it.
    #[error(
        "job {job} of graph {key} belongs to epoch {reported}, the graph is at epoch {current}"
    )]
    StaleEpoch {
        /// The graph.
        key: GraphKey,
        /// The job.
        job: JobId,
        /// The epoch the report carried.
        reported: Epoch,
        /// The graph's epoch.
        current: Epoch,
    },
    /// The report does not fit the task's status (started twice).
    #[error("job {job} of graph {key} is {status}: a {report} report does not apply")]
    ReportRefused {
        /// The graph.
        key: GraphKey,
        /// The job.
        job: JobId,
        /// Its status.
        status: TaskStatus,
        /// The report's name.
        report: Cow<'static, str>,
    },
    /// A progress report past 100 or below the task's progress.
    #[error("job {job} of graph {key} is at {current}%: progress {reported}% is refused")]
    BadProgress {
        /// The graph.
        key: GraphKey,
        /// The job.
        job: JobId,
        /// Its progress.
        current: u8,
        /// The reported progress.
        reported: u8,
    },
    /// A cancel of a task that cannot be stopped (a restart job).
    #[error("job {job} ({kind}) of graph {key} cannot be stopped")]
    NotStoppable {
        /// The graph.
        key: GraphKey,
        /// The job.
        job: JobId,
        /// Its kind's name.
        kind: String,
    },
    /// The engine holds as many graphs as it may.
    #[error("the engine holds {limit} graphs, its limit; {key} is refused")]
    TooManyGraphs {
        /// The refused graph.
        key: GraphKey,
        /// The limit.
        limit: usize,
    },
    /// The graph's project holds as many graphs as its quota allows.
    #[error("project {} holds {limit} graphs, its quota; {key} is refused", key.project)]
    ProjectFull {
        /// The refused graph.
        key: GraphKey,
        /// The project's quota.
        limit: usize,
    },
    /// The graph has as many live tasks as it may.
    #[error("graph {key} has {limit} live tasks, its limit")]
    TooManyTasks {
        /// The graph.
        key: GraphKey,
        /// The limit.
        limit: usize,
    },
    /// Every [`JobReceiver`](crate::JobReceiver) was dropped: nobody would
    /// run the job, so the operation is refused.
    #[error("no worker receives jobs: {op} of graph {key} is refused")]
    NoJobReceiver {
        /// The graph.
        key: GraphKey,
        /// The refused operation.
        op: Operation,
    },
    /// The engine was shut down: it takes no more work that needs a job.
    #[error("the engine is shut down: {op} of graph {key} is refused")]
    ShutDown {
        /// The graph.
        key: GraphKey,
        /// The refused operation.
        op: Operation,
    },
    /// A job id the id source handed out is in the graph's table already.
    #[error("job id {job} is in use on graph {key}: the id source repeated itself")]
    DuplicateJobId {
        /// The graph.
        key: GraphKey,
        /// The repeated id.
        job: JobId,
    },
    /// The command's request id was used within the window for another
    /// operation, or a report or cancel of another task: a request id
    /// names one command, and its retries repeat it.
    #[error("request id \"{request}\" on graph {key} was first used for {first}, not for {op}")]
    RequestReused {
        /// The graph.
        key: GraphKey,
        /// The request id.
        request: RequestId,
        /// What it was first used for (an operation's name, with the job
        /// for a report or cancel).
        first: String,
        /// What it is used for now.
        op: String,
    },
    /// The engine's commit log (a journal, a replicated log) refused the
    /// command or failed to make it durable. Refused before it was applied
    /// (the log is failed or read-only), the command changed nothing; met
    /// after (the write or the sync failed), the command may be applied in
    /// memory without being durable, and the log refuses every later
    /// command: `source` says which, and keeps the log's own error.
    #[error("the commit log cannot take the command on graph {key}: {source}")]
    CommitLog {
        /// The graph of the command.
        key: GraphKey,
        /// The log's error.
        #[source]
        source: LogError,
    },
}

impl Error {
    /// A stable machine-readable code, the same in every release.
    pub const fn code(&self) -> &'static str {
        match self {
            Error::InvalidId { .. } => "INVALID_ID",
            Error::InvalidArgument { .. } => "INVALID_ARGUMENT",
            Error::GraphNotFound { .. } => "GRAPH_NOT_FOUND",
            Error::GraphExists { .. } => "GRAPH_EXISTS",
            Error::TaskNotFound { .. } => "TASK_NOT_FOUND",
            Error::TransitionRefused { .. } => "TRANSITION_REFUSED",
            Error::TaskTerminal { .. } => "TASK_TERMINAL",
            Error::StaleEpoch { .. } => "STALE_EPOCH",
            Error::ReportRefused { .. } => "REPORT_REFUSED",
            Error::BadProgress { .. } => "BAD_PROGRESS",
            Error::NotStoppable { .. } => "NOT_STOPPABLE",
            Error::TooManyGraphs { .. } => "TOO_MANY_GRAPHS",
            Error::TooManyTasks { .. } => "TOO_MANY_TASKS",
            Error::ProjectFull { .. } => "PROJECT_QUOTA",
            Error::NoJobReceiver { .. } => "NO_JOB_RECEIVER",
            Error::ShutDown { .. } => "SHUT_DOWN",
            Error::DuplicateJobId { .. } => "DUPLICATE_JOB_ID",
            Error::RequestReused { .. } => "REQUEST_ID_REUSED",
            Error::CommitLog { .. } => "COMMIT_LOG_FAILED",
        }
    }

    /// The HTTP status a REST front end answers with.
    pub const fn http_status(&self) -> u16 {
        match self {
            Error::InvalidId { .. }
            | Error::InvalidArgument { .. }
            | Error::TransitionRefused { .. }
            | Error::BadProgress { .. }
            | Error::NotStoppable { .. } => 400,
            Error::GraphNotFound { .. } | Error::TaskNotFound { .. } => 404,
            Error::GraphExists { .. }
            | Error::TaskTerminal { .. }
            | Error::StaleEpoch { .. }
            | Error::ReportRefused { .. }
            | Error::RequestReused { .. } => 409,
            Error::TooManyTasks { .. } | Error::ProjectFull { .. } => 429,
            Error::TooManyGraphs { .. }
            | Error::NoJobReceiver { .. }
            | Error::ShutDown { .. }
            | Error::CommitLog { .. } => 503,
            Error::DuplicateJobId { .. } => 500,
        }
    }

    /// The graph the error is about, if any.
    pub fn graph(&self) -> Option<&GraphKey> {
        match self {
            Error::InvalidId { .. } | Error::InvalidArgument { .. } => None,
            Error::GraphNotFound { key }
            | Error::GraphExists { key }
            | Error::TaskNotFound { key, .. }
            | Error::TransitionRefused { key, .. }
            | Error::TaskTerminal { key, .. }
            | Error::StaleEpoch { key, .. }
            | Error::ReportRefused { key, .. }
            | Error::BadProgress { key, .. }
            | Error::NotStoppable { key, .. }
            | Error::TooManyGraphs { key, .. }
            | Error::TooManyTasks { key, .. }
            | Error::ProjectFull { key, .. }
            | Error::NoJobReceiver { key, .. }
            | Error::ShutDown { key, .. }
            | Error::DuplicateJobId { key, .. }
            | Error::RequestReused { key, .. }
            | Error::CommitLog { key, .. } => Some(key),
        }
    }
}

/// Why a commit log could not take a command: the log's own error, kept
/// whole (its `source` chain, and its type for
/// [`downcast_ref`](Self::downcast_ref)), behind a cheap clone.
///
/// Two `LogError`s are equal when they read the same. Serialized, it is
/// its message; deserialized, a message with no cause behind it.
///
/// ```
/// use graph_lifecycle::LogError;
/// use std::io;
/// let e = LogError::new(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
/// assert_eq!(e.to_string(), "disk full");
/// assert_eq!(e.downcast_ref::<io::Error>().map(io::Error::kind), Some(io::ErrorKind::StorageFull));
/// ```
#[derive(Clone)]
pub struct LogError(Arc<dyn std::error::Error + Send + Sync + 'static>);

impl LogError {
    /// Wraps the log's error.
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(e))
    }

    /// A log error with only a message.
    pub fn msg(message: impl Into<String>) -> Self {
        Self(Arc::new(Message(message.into())))
    }

    /// The log's error.
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }

    /// The log's error as a `T`, if it is one.
    pub fn downcast_ref<T: std::error::Error + 'static>(&self) -> Option<&T> {
        self.0.downcast_ref::<T>()
    }
}

impl fmt::Debug for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl std::error::Error for LogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for LogError {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.to_string() == other.to_string()
    }
}

impl Eq for LogError {}

/// The message of a [`LogError::msg`].
#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

#[cfg(feature = "serde")]
impl serde::Serialize for LogError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for LogError {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(LogError::msg)
    }
}
