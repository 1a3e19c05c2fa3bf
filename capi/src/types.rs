//! The plain C types: keys, ids, configuration, queries, the structs the
//! accessors fill, and the enums in them.
//!
//! Enums the library writes (states, statuses, kinds) are C enums. Values
//! the caller passes in that pick one of a few (a report kind, a status
//! filter) are plain integers with named constants, so that an
//! out-of-range value is refused with `GLC_INVALID_ARGUMENT` rather than
//! being undefined behaviour.
#![allow(non_camel_case_types)]

use std::ffi::c_char;
use std::time::Duration;

use graph_lifecycle::{
    Config, FailReason, GraphState, JobId, LifecycleKind, StatusSet, TaskKind, TaskQuery,
    TaskStatus, Timestamp,
};

use crate::args::{out_bytes, out_text};
use crate::status::Fail;

/// The version of this ABI: raised whenever a function, a type or a
/// meaning changes incompatibly.
pub const GLC_ABI_VERSION: u32 = 1;

/// "No time": a timestamp field that has no value (a task not started, a
/// query without an upper bound, no deadline).
pub const GLC_NO_TIME: u64 = u64::MAX;

/// A timeout that never runs out, for the blocking receives.
pub const GLC_WAIT_FOREVER: u64 = u64::MAX;

/// A page limit of "all matches".
pub const GLC_NO_LIMIT: u64 = u64::MAX;

/// A graph's address: project id and graph id, each UTF-8 text given as
/// pointer and length (not NUL-terminated), 1 to 64 bytes of
/// `[A-Za-z0-9_-]` by the engine's rules. The library reads it during the
/// call only.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct glc_key {
    /// The project id's bytes.
    pub project: *const c_char,
    /// Its length in bytes.
    pub project_len: usize,
    /// The graph id's bytes.
    pub graph: *const c_char,
    /// Its length in bytes.
    pub graph_len: usize,
}

/// A job (task) id: a UUID as its 16 bytes, big-endian (RFC 9562 order).
/// `glc_job_id_format` writes its text form.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct glc_job_id {
    /// The UUID's bytes.
    pub bytes: [u8; 16],
}

impl From<JobId> for glc_job_id {
    fn from(id: JobId) -> Self {
        Self {
            bytes: id.as_uuid().into_bytes(),
        }
    }
}

impl From<glc_job_id> for JobId {
    fn from(id: glc_job_id) -> Self {
        JobId::from_uuid(uuid::Uuid::from_bytes(id.bytes))
    }
}

/// The address of a task for a report: its graph, its id and the epoch it
/// was created in (the job's epoch).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct glc_task_ref {
    /// The task's graph.
    pub key: glc_key,
    /// The task's id.
    pub id: glc_job_id,
    /// The epoch the task was created in.
    pub epoch: u64,
}

/// The engine's configuration. Fill it with `glc_config_default`, then
/// change what you need. Times are in milliseconds; where a field says
/// "0 = none", 0 turns the limit off.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct glc_config {
    /// Most graphs the engine holds at once (default 100,000).
    pub max_graphs: usize,
    /// Most graphs one project holds at once (default `SIZE_MAX`: no bound
    /// but `max_graphs`). A create past it is refused with
    /// `PROJECT_QUOTA`.
    pub max_graphs_per_project: usize,
    /// Most live (pending or running) tasks per graph, lifecycle jobs
    /// included (default 100,000).
    pub max_live_tasks_per_graph: usize,
    /// Most ended tasks kept per graph; the first to end goes first
    /// (default 1,000).
    pub max_retained_per_graph: usize,
    /// How long an ended task is kept, in ms (default a day); 0 = none:
    /// kept until the count bound evicts it.
    pub retention_age_ms: u64,
    /// The timeout of each lifecycle job kind, in ms from the job's
    /// creation, indexed by `glc_task_kind` (start, stop, restart, import,
    /// export, clear); 0 = none (the default). Timeouts fire when the host
    /// calls `glc_expire`.
    pub job_timeout_ms: [u64; 6],
    /// Largest payload accepted, in bytes (default 1 MiB).
    pub max_payload_bytes: usize,
    /// The most of a task's payload kept once the task has ended, in bytes
    /// (default `SIZE_MAX`: all of it); a longer payload is cut to its
    /// first this many bytes when the task ends.
    pub retained_payload_bytes: usize,
    /// Largest failure message accepted, in bytes (default 4 KiB).
    pub max_message_bytes: usize,
    /// Events buffered per subscriber before it is cut off as lagging
    /// (default 4,096; 0 is taken as 1).
    pub event_buffer: usize,
    /// Registry shards (default 64; taken into 1 to 65,536).
    pub shards: usize,
    /// Most answers kept per graph key for retries (default 64); 0 turns
    /// retries off.
    pub request_window: usize,
    /// How long an answer stays in the window, in ms (default 15 minutes);
    /// 0 = none: kept until the count bound evicts it.
    pub request_window_age_ms: u64,
    /// Most keys with no graph whose retry windows are kept (default
    /// 4,096).
    pub max_absent_windows: usize,
}

fn ms(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX - 1))
}

fn duration(ms: u64) -> Option<Duration> {
    (ms != 0).then(|| Duration::from_millis(ms))
}

impl From<&Config> for glc_config {
    fn from(c: &Config) -> Self {
        Self {
            max_graphs: c.max_graphs,
            max_graphs_per_project: c.max_graphs_per_project,
            max_live_tasks_per_graph: c.max_live_tasks_per_graph,
            max_retained_per_graph: c.max_retained_per_graph,
            retention_age_ms: ms(c.retention_age),
            job_timeout_ms: c.job_timeouts.map(ms),
            max_payload_bytes: c.max_payload_bytes,
            retained_payload_bytes: c.retained_payload_bytes,
            max_message_bytes: c.max_message_bytes,
            event_buffer: c.event_buffer,
            shards: c.shards,
            request_window: c.request_window,
            request_window_age_ms: ms(c.request_window_age),
            max_absent_windows: c.max_absent_windows,
        }
    }
}

impl From<&glc_config> for Config {
    fn from(c: &glc_config) -> Self {
        // Every field by name, no `..Default::default()`: a field the core
        // adds fails to compile here until the C struct has it too.
        Config {
            max_graphs: c.max_graphs,
            max_graphs_per_project: c.max_graphs_per_project,
            max_live_tasks_per_graph: c.max_live_tasks_per_graph,
            max_retained_per_graph: c.max_retained_per_graph,
            retention_age: duration(c.retention_age_ms),
            job_timeouts: c.job_timeout_ms.map(duration),
            max_payload_bytes: c.max_payload_bytes,
            retained_payload_bytes: c.retained_payload_bytes,
            max_message_bytes: c.max_message_bytes,
            event_buffer: c.event_buffer.max(1),
            shards: c.shards.clamp(1, 1 << 16),
            request_window: c.request_window,
            request_window_age: duration(c.request_window_age_ms),
            max_absent_windows: c.max_absent_windows,
        }
    }
}

/// A graph's state.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum glc_graph_state {
    /// Not loaded.
    GLC_STATE_STOPPED = 0,
    /// A start job runs.
    GLC_STATE_STARTING = 1,
    /// Loaded, no maintenance job; serves queries.
    GLC_STATE_RUNNING = 2,
    /// An import job runs; serves queries.
    GLC_STATE_IMPORTING = 3,
    /// An export job runs; serves queries.
    GLC_STATE_EXPORTING = 4,
    /// A clear job runs.
    GLC_STATE_CLEARING = 5,
    /// A stop job runs.
    GLC_STATE_STOPPING = 6,
    /// A restart job runs.
    GLC_STATE_RESTARTING = 7,
    /// A start, stop, restart or clear failed, or a job timed out.
    GLC_STATE_ABNORMAL = 8,
}

impl From<GraphState> for glc_graph_state {
    fn from(s: GraphState) -> Self {
        match s {
            GraphState::Stopped => Self::GLC_STATE_STOPPED,
            GraphState::Starting => Self::GLC_STATE_STARTING,
            GraphState::Running => Self::GLC_STATE_RUNNING,
            GraphState::Importing => Self::GLC_STATE_IMPORTING,
            GraphState::Exporting => Self::GLC_STATE_EXPORTING,
            GraphState::Clearing => Self::GLC_STATE_CLEARING,
            GraphState::Stopping => Self::GLC_STATE_STOPPING,
            GraphState::Restarting => Self::GLC_STATE_RESTARTING,
            GraphState::Abnormal => Self::GLC_STATE_ABNORMAL,
        }
    }
}

/// What a task or job does.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum glc_task_kind {
    /// Load the graph.
    GLC_TASK_START = 0,
    /// Unload the graph.
    GLC_TASK_STOP = 1,
    /// The forced restart's job.
    GLC_TASK_RESTART = 2,
    /// Import data (details in the payload).
    GLC_TASK_IMPORT = 3,
    /// Export data (details in the payload).
    GLC_TASK_EXPORT = 4,
    /// Clear the graph's data (and its schema if `clear_metadata`).
    GLC_TASK_CLEAR = 5,
    /// A task of the host's own (`glc_register_task`); its kind name says
    /// which.
    GLC_TASK_HOST = 6,
}

/// A task kind as C sees it: the enum, whether a clear takes the schema,
/// and the name (static for lifecycle kinds, borrowed from `kind` for host
/// kinds).
pub(crate) fn task_kind(kind: &TaskKind) -> (glc_task_kind, bool, *const c_char, usize) {
    let (k, clear_metadata) = match kind.lifecycle() {
        Some(LifecycleKind::Start) => (glc_task_kind::GLC_TASK_START, false),
        Some(LifecycleKind::Stop) => (glc_task_kind::GLC_TASK_STOP, false),
        Some(LifecycleKind::Restart) => (glc_task_kind::GLC_TASK_RESTART, false),
        Some(LifecycleKind::Import) => (glc_task_kind::GLC_TASK_IMPORT, false),
        Some(LifecycleKind::Export) => (glc_task_kind::GLC_TASK_EXPORT, false),
        Some(LifecycleKind::Clear) => (
            glc_task_kind::GLC_TASK_CLEAR,
            matches!(
                kind,
                TaskKind::Clear {
                    clear_metadata: true
                }
            ),
        ),
        None => (glc_task_kind::GLC_TASK_HOST, false),
    };
    let (name, name_len) = out_text(kind.name());
    (k, clear_metadata, name, name_len)
}

/// A task's status. Succeeded, failed and cancelled are final.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum glc_task_status {
    /// Created, not yet reported started.
    GLC_TASK_PENDING = 0,
    /// Reported started.
    GLC_TASK_RUNNING = 1,
    /// Ended well.
    GLC_TASK_SUCCEEDED = 2,
    /// Ended badly; the reason says why.
    GLC_TASK_FAILED = 3,
    /// Cancelled by a caller.
    GLC_TASK_CANCELLED = 4,
}

impl From<TaskStatus> for glc_task_status {
    fn from(s: TaskStatus) -> Self {
        match s {
            TaskStatus::Pending => Self::GLC_TASK_PENDING,
            TaskStatus::Running => Self::GLC_TASK_RUNNING,
            TaskStatus::Succeeded => Self::GLC_TASK_SUCCEEDED,
            TaskStatus::Failed => Self::GLC_TASK_FAILED,
            TaskStatus::Cancelled => Self::GLC_TASK_CANCELLED,
        }
    }
}

/// Why a task did not succeed.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum glc_fail_reason {
    /// No reason: the task did not fail (or is not over).
    GLC_REASON_NONE = 0,
    /// Failed by the forced restart whose job is `reason_job`.
    GLC_REASON_FORCE_RESTARTED = 1,
    /// A restart job replaced by a newer forced restart, whose job is
    /// `reason_job`.
    GLC_REASON_SUPERSEDED = 2,
    /// Cancelled by a caller.
    GLC_REASON_CANCELLED = 3,
    /// Its deadline passed.
    GLC_REASON_TIMED_OUT = 4,
    /// Live when the engine crashed; set by recovery.
    GLC_REASON_INTERRUPTED = 5,
    /// The host's own failure message (the reason text).
    GLC_REASON_HOST = 6,
}

/// A failure reason as C sees it, with the text kept by the caller.
pub(crate) fn fail_reason(r: Option<&FailReason>) -> (glc_fail_reason, glc_job_id) {
    match r {
        None => (glc_fail_reason::GLC_REASON_NONE, glc_job_id::default()),
        Some(FailReason::ForceRestarted(j)) => {
            (glc_fail_reason::GLC_REASON_FORCE_RESTARTED, (*j).into())
        }
        Some(FailReason::Superseded(j)) => (glc_fail_reason::GLC_REASON_SUPERSEDED, (*j).into()),
        Some(FailReason::Cancelled) => {
            (glc_fail_reason::GLC_REASON_CANCELLED, glc_job_id::default())
        }
        Some(FailReason::TimedOut) => {
            (glc_fail_reason::GLC_REASON_TIMED_OUT, glc_job_id::default())
        }
        Some(FailReason::Interrupted) => (
            glc_fail_reason::GLC_REASON_INTERRUPTED,
            glc_job_id::default(),
        ),
        Some(FailReason::Host(_)) => (glc_fail_reason::GLC_REASON_HOST, glc_job_id::default()),
    }
}

/// The text of a failure reason, stored next to the task it describes so
/// that C can borrow it: the host's message as it is, or the engine's
/// wording ("force-restarted by job 0190...").
pub(crate) fn reason_text(r: Option<&FailReason>) -> Option<Box<str>> {
    r.map(|r| r.to_string().into_boxed_str())
}

/// A millisecond timestamp, `GLC_NO_TIME` for none.
pub(crate) fn time(t: Option<Timestamp>) -> u64 {
    t.map_or(GLC_NO_TIME, Timestamp::as_millis)
}

/// A report about a job or task: one of the `GLC_REPORT_*` constants.
pub type glc_report_kind = u32;
/// The work began (pending to running).
pub const GLC_REPORT_STARTED: glc_report_kind = 0;
/// The work is `progress` percent done: never backwards, never past 100.
/// On a pending task it also marks it started.
pub const GLC_REPORT_PROGRESS: glc_report_kind = 1;
/// The work is done.
pub const GLC_REPORT_SUCCEEDED: glc_report_kind = 2;
/// The work failed; the message says why.
pub const GLC_REPORT_FAILED: glc_report_kind = 3;

/// A set of task statuses: an OR of the `GLC_FILTER_*` bits; 0 is every
/// status.
pub type glc_status_filter = u32;
/// Pending tasks.
pub const GLC_FILTER_PENDING: glc_status_filter = 1 << 0;
/// Running tasks.
pub const GLC_FILTER_RUNNING: glc_status_filter = 1 << 1;
/// Succeeded tasks.
pub const GLC_FILTER_SUCCEEDED: glc_status_filter = 1 << 2;
/// Failed tasks.
pub const GLC_FILTER_FAILED: glc_status_filter = 1 << 3;
/// Cancelled tasks.
pub const GLC_FILTER_CANCELLED: glc_status_filter = 1 << 4;
/// Pending and running tasks.
pub const GLC_FILTER_LIVE: glc_status_filter = GLC_FILTER_PENDING | GLC_FILTER_RUNNING;
/// Every status.
pub const GLC_FILTER_ALL: glc_status_filter =
    GLC_FILTER_LIVE | GLC_FILTER_SUCCEEDED | GLC_FILTER_FAILED | GLC_FILTER_CANCELLED;

/// A task listing's filter and page. Fill it with
/// `glc_task_query_default`, then change what you need. Matches are
/// ordered newest first.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct glc_task_query {
    /// The statuses to list: an OR of `GLC_FILTER_*`; 0 is every status.
    pub statuses: glc_status_filter,
    /// Tasks created at or after this time, in ms since the Unix epoch
    /// (0: no lower bound).
    pub since_ms: u64,
    /// Tasks created before this time, in ms since the Unix epoch
    /// (`GLC_NO_TIME` or 0: no upper bound).
    pub until_ms: u64,
    /// Matches to skip.
    pub offset: u64,
    /// Most matches to return: `GLC_NO_LIMIT` for all, 0 to only count.
    pub limit: u64,
}

impl glc_task_query {
    /// Every task, newest first.
    pub(crate) const DEFAULT: glc_task_query = glc_task_query {
        statuses: 0,
        since_ms: 0,
        until_ms: GLC_NO_TIME,
        offset: 0,
        limit: GLC_NO_LIMIT,
    };
}

impl glc_task_query {
    /// The engine's query, or why this one is refused.
    pub(crate) fn to_query(self) -> Result<TaskQuery, Fail> {
        let q = self;
        if q.statuses & !GLC_FILTER_ALL != 0 {
            return Err(Fail::invalid(format!(
                "query->statuses 0x{:x} has bits outside GLC_FILTER_ALL",
                q.statuses
            )));
        }
        let mut tq = TaskQuery::new().offset(usize::try_from(q.offset).unwrap_or(usize::MAX));
        if q.statuses != 0 {
            let set: StatusSet = TaskStatus::ALL
                .into_iter()
                .filter(|s| q.statuses & (1 << (*s as u32)) != 0)
                .collect();
            tq = tq.statuses(set);
        }
        if q.since_ms != 0 {
            tq = tq.since(Timestamp::from_millis(q.since_ms));
        }
        if q.until_ms != 0 && q.until_ms != GLC_NO_TIME {
            tq = tq.until(Timestamp::from_millis(q.until_ms));
        }
        if q.limit != GLC_NO_LIMIT {
            tq = tq.limit(usize::try_from(q.limit).unwrap_or(usize::MAX));
        }
        Ok(tq)
    }
}

/// What a forced restart did.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct glc_restart {
    /// The restart job: poll it like any other.
    pub job: glc_job_id,
    /// The graph's new epoch.
    pub epoch: u64,
    /// How many live tasks it failed (a superseded restart included).
    pub failed: usize,
}

/// A graph's summary. Plain data: no pointers.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct glc_graph_info {
    /// Its state.
    pub state: glc_graph_state,
    /// Its epoch.
    pub epoch: u64,
    /// When it was created, in ms since the Unix epoch.
    pub created_at_ms: u64,
    /// When a command last changed it, in ms since the Unix epoch.
    pub updated_at_ms: u64,
    /// Its live (pending or running) tasks.
    pub live_tasks: usize,
    /// Its retained ended tasks.
    pub retained_tasks: usize,
    /// Whether a lifecycle job is live (its kind matches the state).
    pub has_job: bool,
    /// That job's id, if `has_job`; zero bytes otherwise.
    pub job: glc_job_id,
}

/// A job handed to a worker, or a host task's ticket. The pointers borrow
/// from the `glc_job` handle and stay valid until it is freed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct glc_job_info {
    /// The job's id.
    pub id: glc_job_id,
    /// Its graph's project id (UTF-8, not NUL-terminated).
    pub project: *const c_char,
    /// The project id's length in bytes.
    pub project_len: usize,
    /// Its graph's id (UTF-8, not NUL-terminated).
    pub graph: *const c_char,
    /// The graph id's length in bytes.
    pub graph_len: usize,
    /// What to do.
    pub kind: glc_task_kind,
    /// The kind's name: "start", "stop", "restart", "import", "export",
    /// "clear", or the host task's kind name (UTF-8, not NUL-terminated).
    pub kind_name: *const c_char,
    /// The kind name's length in bytes.
    pub kind_name_len: usize,
    /// For a clear: whether the schema goes too.
    pub clear_metadata: bool,
    /// The epoch the job was issued in: reports carry it.
    pub epoch: u64,
    /// The host's request bytes; NULL when empty.
    pub payload: *const u8,
    /// The payload's length in bytes.
    pub payload_len: usize,
}

/// A task as the task table shows it (a copy taken when the handle that
/// owns it was made). The pointers borrow from that handle (a `glc_task`
/// or a `glc_page`) and stay valid until it is freed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct glc_task_info {
    /// Its id.
    pub id: glc_job_id,
    /// Its graph's project id (UTF-8, not NUL-terminated).
    pub project: *const c_char,
    /// The project id's length in bytes.
    pub project_len: usize,
    /// Its graph's id (UTF-8, not NUL-terminated).
    pub graph: *const c_char,
    /// The graph id's length in bytes.
    pub graph_len: usize,
    /// What it does.
    pub kind: glc_task_kind,
    /// The kind's name (see `glc_job_info`).
    pub kind_name: *const c_char,
    /// The kind name's length in bytes.
    pub kind_name_len: usize,
    /// For a clear: whether the schema goes too.
    pub clear_metadata: bool,
    /// The graph's epoch when the task was created.
    pub epoch: u64,
    /// Its status.
    pub status: glc_task_status,
    /// 0 to 100.
    pub progress: u8,
    /// Whether a caller may cancel it.
    pub stoppable: bool,
    /// When it was created, in ms since the Unix epoch.
    pub created_at_ms: u64,
    /// When it was reported started; `GLC_NO_TIME` if not yet.
    pub started_at_ms: u64,
    /// When it ended; `GLC_NO_TIME` while live.
    pub ended_at_ms: u64,
    /// When it times out; `GLC_NO_TIME` if its kind has no timeout.
    pub deadline_ms: u64,
    /// Why it failed or was cancelled.
    pub reason: glc_fail_reason,
    /// For `GLC_REASON_FORCE_RESTARTED` and `GLC_REASON_SUPERSEDED`, the
    /// restart job; zero bytes otherwise.
    pub reason_job: glc_job_id,
    /// The reason as text (the host's message for `GLC_REASON_HOST`); NULL
    /// when there is no reason. UTF-8, not NUL-terminated.
    pub reason_text: *const c_char,
    /// The reason text's length in bytes.
    pub reason_text_len: usize,
    /// The host's request bytes; NULL when empty.
    pub payload: *const u8,
    /// The payload's length in bytes.
    pub payload_len: usize,
}

/// What an event reports.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum glc_change_kind {
    /// The graph was created, stopped.
    GLC_CHANGE_GRAPH_CREATED = 0,
    /// The graph was removed.
    GLC_CHANGE_GRAPH_REMOVED = 1,
    /// The graph's state (and perhaps its epoch) changed: `from`, `to`,
    /// `epoch`.
    GLC_CHANGE_STATE = 2,
    /// A task was created or changed status or progress: `job`, `task_*`,
    /// `reason*`.
    GLC_CHANGE_TASK = 3,
    /// Ended tasks were evicted by retention: `evicted`.
    GLC_CHANGE_EVICTED = 4,
}

/// One committed change: a tagged struct, `change` saying which fields
/// mean something (the others are zero). The pointers borrow from the
/// `glc_event` handle and stay valid until it is freed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct glc_event_info {
    /// Unique and increasing per graph, in commit order.
    pub seq: u64,
    /// The time of the command that made the change, in ms since the Unix
    /// epoch.
    pub at_ms: u64,
    /// The graph's project id (UTF-8, not NUL-terminated).
    pub project: *const c_char,
    /// The project id's length in bytes.
    pub project_len: usize,
    /// The graph's id (UTF-8, not NUL-terminated).
    pub graph: *const c_char,
    /// The graph id's length in bytes.
    pub graph_len: usize,
    /// What changed: the tag.
    pub change: glc_change_kind,
    /// `GLC_CHANGE_STATE`: the state before.
    pub from: glc_graph_state,
    /// `GLC_CHANGE_STATE`: the state after.
    pub to: glc_graph_state,
    /// `GLC_CHANGE_STATE`: the epoch after.
    pub epoch: u64,
    /// `GLC_CHANGE_TASK`: the task's id.
    pub job: glc_job_id,
    /// `GLC_CHANGE_TASK`: its kind.
    pub task_kind: glc_task_kind,
    /// `GLC_CHANGE_TASK`: its kind's name (see `glc_job_info`).
    pub kind_name: *const c_char,
    /// The kind name's length in bytes.
    pub kind_name_len: usize,
    /// `GLC_CHANGE_TASK`: for a clear, whether the schema goes too.
    pub clear_metadata: bool,
    /// `GLC_CHANGE_TASK`: its status after the change.
    pub status: glc_task_status,
    /// `GLC_CHANGE_TASK`: its progress after the change.
    pub progress: u8,
    /// `GLC_CHANGE_TASK`: why it failed, if it did.
    pub reason: glc_fail_reason,
    /// `GLC_CHANGE_TASK`: the restart job of a forced-restart or
    /// superseded reason.
    pub reason_job: glc_job_id,
    /// `GLC_CHANGE_TASK`: the reason as text; NULL when none.
    pub reason_text: *const c_char,
    /// The reason text's length in bytes.
    pub reason_text_len: usize,
    /// `GLC_CHANGE_EVICTED`: how many tasks were evicted.
    pub evicted: usize,
}

/// Borrowed text, C's way, from an optional owned string.
pub(crate) fn opt_text(s: Option<&str>) -> (*const c_char, usize) {
    s.map_or((std::ptr::null(), 0), out_text)
}

/// Borrowed payload bytes, C's way.
pub(crate) fn payload(b: &[u8]) -> (*const u8, usize) {
    out_bytes(b)
}
