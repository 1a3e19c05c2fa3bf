//! The engine's limits, retention and timeouts.

use std::time::Duration;

use crate::state::LifecycleKind;

/// Limits, retention and timeouts. [`Config::default`] suits a small
/// engine; every field can be set.
///
/// ```
/// use graph_lifecycle::{Config, LifecycleKind};
/// use std::time::Duration;
/// let cfg = Config::default()
///     .max_graphs(10_000)
///     .timeout(LifecycleKind::Import, Some(Duration::from_secs(3600)));
/// assert_eq!(cfg.job_timeout(LifecycleKind::Import), Some(Duration::from_secs(3600)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Most graphs the engine holds at once (default 100,000).
    pub max_graphs: usize,
    /// Most live (Pending or Running) tasks per graph, lifecycle jobs
    /// included (default 100,000). A forced restart always fits: it ends
    /// every live task before it adds its own.
    pub max_live_tasks_per_graph: usize,
    /// Most terminal tasks kept per graph; the oldest-ended go first
    /// (default 1,000).
    pub max_retained_per_graph: usize,
    /// How long a terminal task is kept after it ended (default: a day).
    /// `None` keeps tasks until the count bound evicts them.
    pub retention_age: Option<Duration>,
    /// Timeouts of lifecycle jobs, by kind, from the job's creation
    /// (default: none).
    pub job_timeouts: [Option<Duration>; 6],
    /// Largest host payload accepted, in bytes (default 1 MiB).
    pub max_payload_bytes: usize,
    /// Largest failure message accepted from the host, in bytes
    /// (default 4 KiB).
    pub max_message_bytes: usize,
    /// Events buffered per subscriber before it is cut off as lagging
    /// (default 4,096).
    pub event_buffer: usize,
    /// Number of registry shards (default 64); more shards, fewer
    /// collisions between graph creations and lookups.
    pub shards: usize,
    /// Most answers kept per graph key for retries, newest kept (default
    /// 64): a command carrying a [`RequestId`](crate::RequestId) that the
    /// window still holds gets its first answer again. 0 turns retries
    /// off.
    pub request_window: usize,
    /// How long an answer stays in the window (default 15 minutes); `None`
    /// keeps answers until the count bound evicts them.
    pub request_window_age: Option<Duration>,
    /// Most graphs one project holds at once (default: no bound but
    /// `max_graphs`). A create past it is refused with
    /// [`Error::ProjectFull`](crate::Error::ProjectFull), which names only
    /// the project's own figures, so that one project cannot fill the
    /// engine for every other.
    pub max_graphs_per_project: usize,
    /// The most of a task's payload kept once the task has ended, in bytes
    /// (default: all of it): a longer payload is cut to its first this many
    /// bytes, a summary, when the task ends. Ended tasks are kept for the
    /// retention period, and their payloads (an import's whole request)
    /// would otherwise stay in memory with them.
    pub retained_payload_bytes: usize,
    /// Most keys with no graph whose windows are kept (default 4,096): the
    /// windows of removed graphs, so that a retried remove is answered,
    /// and of keys a command with a request id did not find. The key whose
    /// newest answer is oldest goes first.
    pub max_absent_windows: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_graphs: 100_000,
            max_live_tasks_per_graph: 100_000,
            max_retained_per_graph: 1_000,
            retention_age: Some(Duration::from_secs(24 * 3600)),
            job_timeouts: [None; 6],
            max_payload_bytes: 1 << 20,
            max_message_bytes: 4 << 10,
            event_buffer: 4_096,
            shards: 64,
            request_window: 64,
            request_window_age: Some(Duration::from_secs(15 * 60)),
            max_absent_windows: 4_096,
            max_graphs_per_project: usize::MAX,
            retained_payload_bytes: usize::MAX,
        }
    }
}

impl Config {
    /// Sets [`Config::max_graphs`].
    pub fn max_graphs(mut self, n: usize) -> Self {
        self.max_graphs = n;
        self
    }

    /// Sets [`Config::max_live_tasks_per_graph`].
    pub fn max_live_tasks_per_graph(mut self, n: usize) -> Self {
        self.max_live_tasks_per_graph = n;
        self
    }

    /// Sets [`Config::max_retained_per_graph`].
    pub fn max_retained_per_graph(mut self, n: usize) -> Self {
        self.max_retained_per_graph = n;
        self
    }

    /// Sets [`Config::retention_age`].
    pub fn retention_age(mut self, age: Option<Duration>) -> Self {
        self.retention_age = age;
        self
    }

    /// Sets the timeout of one lifecycle job kind.
    pub fn timeout(mut self, kind: LifecycleKind, t: Option<Duration>) -> Self {
        self.job_timeouts[kind as usize] = t;
        self
    }

    /// Sets [`Config::event_buffer`].
    pub fn event_buffer(mut self, n: usize) -> Self {
        self.event_buffer = n;
        self
    }

    /// Sets [`Config::shards`].
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n;
        self
    }

    /// Sets [`Config::request_window`].
    pub fn request_window(mut self, n: usize) -> Self {
        self.request_window = n;
        self
    }

    /// Sets [`Config::request_window_age`].
    pub fn request_window_age(mut self, age: Option<Duration>) -> Self {
        self.request_window_age = age;
        self
    }

    /// Sets [`Config::max_graphs_per_project`].
    pub fn max_graphs_per_project(mut self, n: usize) -> Self {
        self.max_graphs_per_project = n;
        self
    }

    /// Sets [`Config::retained_payload_bytes`].
    pub fn retained_payload_bytes(mut self, n: usize) -> Self {
        self.retained_payload_bytes = n;
        self
    }

    /// Sets [`Config::max_absent_windows`].
    pub fn max_absent_windows(mut self, n: usize) -> Self {
        self.max_absent_windows = n;
        self
    }

    /// The timeout of a lifecycle job kind.
    #[inline]
    pub fn job_timeout(&self, kind: LifecycleKind) -> Option<Duration> {
        self.job_timeouts[kind as usize]
    }
}
