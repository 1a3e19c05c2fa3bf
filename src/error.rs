//! The crate's one error type (SPEC section 9).

use crate::id::{Epoch, GraphKey, IdKind, JobId};
use crate::state::{GraphState, Operation};
use crate::task::TaskStatus;

/// Everything that can go wrong, each with a stable [`code`](Error::code)
/// and an [`http_status`](Error::http_status).
///
/// A call that returns an error changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
        reason: &'static str,
    },
    /// An argument other than an id is malformed.
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// Which argument.
        what: &'static str,
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
        report: &'static str,
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
    /// The journal (feature `journal`) could not write, sync or read. After
    /// a failed write or sync the engine refuses every further command
    /// with this error until it is opened again; the command that met the
    /// failure may have changed the engine's memory but is not durable.
    #[error("journal failure: {detail}")]
    Journal {
        /// What failed, with the file and the operating system's error.
        detail: String,
    },
    /// Opening a durable engine found a damaged record in the middle of
    /// the journal, with intact records after it. Nothing past it is
    /// applied; `docs/JOURNAL.md` says how an operator proceeds.
    #[error("journal record at byte {offset} of {file} is corrupt: {detail}")]
    JournalCorrupt {
        /// The journal file (a path for a directory journal).
        file: String,
        /// The byte offset of the damaged record in that file.
        offset: u64,
        /// What is wrong with it.
        detail: String,
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
            Error::NoJobReceiver { .. } => "NO_JOB_RECEIVER",
            Error::ShutDown { .. } => "SHUT_DOWN",
            Error::DuplicateJobId { .. } => "DUPLICATE_JOB_ID",
            Error::Journal { .. } => "JOURNAL_FAILED",
            Error::JournalCorrupt { .. } => "JOURNAL_CORRUPT",
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
            | Error::ReportRefused { .. } => 409,
            Error::TooManyTasks { .. } => 429,
            Error::TooManyGraphs { .. }
            | Error::NoJobReceiver { .. }
            | Error::ShutDown { .. }
            | Error::Journal { .. } => 503,
            Error::DuplicateJobId { .. } | Error::JournalCorrupt { .. } => 500,
        }
    }

    /// The graph the error is about, if any.
    pub fn graph(&self) -> Option<&GraphKey> {
        match self {
            Error::InvalidId { .. }
            | Error::InvalidArgument { .. }
            | Error::Journal { .. }
            | Error::JournalCorrupt { .. } => None,
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
            | Error::NoJobReceiver { key, .. }
            | Error::ShutDown { key, .. }
            | Error::DuplicateJobId { key, .. } => Some(key),
        }
    }
}
