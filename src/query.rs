//! Read-side types: graph summaries, task queries, pages and snapshots.

use crate::id::{Epoch, GraphKey, JobId};
use crate::state::GraphState;
use crate::task::{TaskInfo, TaskStatus};
use crate::time::Timestamp;

/// A graph as [`Engine::graph_info`](crate::Engine::graph_info) and
/// [`Engine::graphs`](crate::Engine::graphs) show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphInfo {
    /// Its key.
    pub key: GraphKey,
    /// Its state.
    pub state: GraphState,
    /// Its epoch.
    pub epoch: Epoch,
    /// When it was created.
    pub created_at: Timestamp,
    /// When a command last changed it.
    pub updated_at: Timestamp,
    /// Its live (Pending or Running) tasks.
    pub live_tasks: usize,
    /// Its retained terminal tasks.
    pub retained_tasks: usize,
    /// Its live lifecycle job, whose kind matches `state`.
    pub job: Option<JobId>,
}

/// A set of task statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct StatusSet(u8);

impl StatusSet {
    /// No status.
    pub const NONE: StatusSet = StatusSet(0);
    /// Every status.
    pub const ALL: StatusSet = StatusSet(0b1_1111);
    /// Pending and Running.
    pub const LIVE: StatusSet = StatusSet(0b0_0011);
    /// Succeeded, Failed and Cancelled.
    pub const TERMINAL: StatusSet = StatusSet(0b1_1100);

    const fn bit(s: TaskStatus) -> u8 {
        1 << (s as u8)
    }

    /// This set and `s`.
    #[must_use]
    pub const fn with(self, s: TaskStatus) -> StatusSet {
        StatusSet(self.0 | Self::bit(s))
    }

    /// Whether `s` is in the set.
    #[inline]
    pub const fn contains(self, s: TaskStatus) -> bool {
        self.0 & Self::bit(s) != 0
    }
}

impl FromIterator<TaskStatus> for StatusSet {
    fn from_iter<I: IntoIterator<Item = TaskStatus>>(iter: I) -> Self {
        iter.into_iter().fold(StatusSet::NONE, StatusSet::with)
    }
}

/// A filter and a page of a task listing: statuses, a window on the
/// creation time (`since <= created_at < until`), then `offset` and
/// `limit` over the matches, newest first.
///
/// ```
/// use graph_lifecycle::{TaskQuery, TaskStatus, Timestamp};
/// let q = TaskQuery::new()
///     .status(TaskStatus::Failed)
///     .status(TaskStatus::Cancelled)
///     .since(Timestamp::from_millis(1_000))
///     .offset(10)
///     .limit(10);
/// # let _ = q;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskQuery {
    /// Statuses to include (default: all).
    pub statuses: StatusSet,
    /// Earliest creation time included.
    pub since: Option<Timestamp>,
    /// First creation time excluded.
    pub until: Option<Timestamp>,
    /// Matches to skip.
    pub offset: usize,
    /// Most matches to return (default: all).
    pub limit: Option<usize>,
    /// Whether `statuses` was chosen (by [`status`](Self::status) or
    /// [`statuses`](Self::statuses)) rather than left at its default.
    status_chosen: bool,
}

impl Default for TaskQuery {
    fn default() -> Self {
        Self {
            statuses: StatusSet::ALL,
            since: None,
            until: None,
            offset: 0,
            limit: None,
            status_chosen: false,
        }
    }
}

impl TaskQuery {
    /// Every task, newest first.
    pub fn new() -> Self {
        Self::default()
    }

    /// Restricts to `s`; calls add up ("failed or cancelled"). The first
    /// call replaces the default of every status.
    #[must_use]
    pub fn status(mut self, s: TaskStatus) -> Self {
        let base = if self.status_chosen {
            self.statuses
        } else {
            StatusSet::NONE
        };
        self.statuses = base.with(s);
        self.status_chosen = true;
        self
    }

    /// Restricts to a set of statuses; later [`status`](Self::status)
    /// calls add to it.
    #[must_use]
    pub fn statuses(mut self, set: StatusSet) -> Self {
        self.statuses = set;
        self.status_chosen = true;
        self
    }

    /// Tasks created at `t` or later.
    #[must_use]
    pub fn since(mut self, t: Timestamp) -> Self {
        self.since = Some(t);
        self
    }

    /// Tasks created before `t`.
    #[must_use]
    pub fn until(mut self, t: Timestamp) -> Self {
        self.until = Some(t);
        self
    }

    /// Skips the first `n` matches.
    #[must_use]
    pub fn offset(mut self, n: usize) -> Self {
        self.offset = n;
        self
    }

    /// Returns at most `n` matches; `limit(0)` only counts.
    #[must_use]
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Whether a task with this status and creation time matches.
    #[inline]
    pub fn matches(&self, status: TaskStatus, created_at: Timestamp) -> bool {
        self.statuses.contains(status)
            && self.since.is_none_or(|s| created_at >= s)
            && self.until.is_none_or(|u| created_at < u)
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// How many items matched in all (before offset and limit).
    pub total: usize,
    /// The items of this page.
    pub items: Vec<T>,
}

/// Cuts `items`, already in order, to the page asked for.
pub(crate) fn paginate<T>(items: Vec<T>, offset: usize, limit: Option<usize>) -> Page<T> {
    let total = items.len();
    let items = items
        .into_iter()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .collect();
    Page { total, items }
}

/// The whole of one graph, for comparisons and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphSnapshot {
    /// Its summary.
    pub info: GraphInfo,
    /// Every task it holds, in creation order.
    pub tasks: Vec<TaskInfo>,
}

/// The whole engine, graph by graph in key order. Each graph is read
/// atomically; a snapshot taken while other threads commit may mix
/// moments across graphs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Every graph, by key.
    pub graphs: Vec<GraphSnapshot>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_calls_add_up_even_past_every_status() {
        let mut q = TaskQuery::new();
        assert_eq!(q.statuses, StatusSet::ALL);
        for s in TaskStatus::ALL {
            q = q.status(s);
        }
        assert_eq!(q.statuses, StatusSet::ALL);
        let q = q.status(TaskStatus::Failed);
        assert_eq!(q.statuses, StatusSet::ALL);
        let q = TaskQuery::new()
            .status(TaskStatus::Failed)
            .status(TaskStatus::Cancelled);
        assert_eq!(
            q.statuses,
            StatusSet::NONE
                .with(TaskStatus::Failed)
                .with(TaskStatus::Cancelled)
        );
        let q = TaskQuery::new()
            .statuses(StatusSet::LIVE)
            .status(TaskStatus::Failed);
        assert!(
            q.statuses.contains(TaskStatus::Pending) && q.statuses.contains(TaskStatus::Failed)
        );
    }
}
