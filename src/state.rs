//! Graph states and the transition tables of the contract
//! (`docs/CONTRACT.md`, sections 3 and 4), in one place.
//!
//! [`transition`] answers "may this operation run in this state, and where
//! does it lead"; [`job_outcome`] answers "where does the graph go when its
//! lifecycle job ends this way". Nothing else in the crate decides a graph's
//! state.

use std::fmt;

/// The state of a graph.
///
/// ```
/// use graph_lifecycle::GraphState;
/// assert!(GraphState::Importing.serves_queries());
/// assert!(!GraphState::Restarting.serves_queries());
/// assert_eq!(GraphState::from_code(GraphState::Running.code()), Some(GraphState::Running));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[repr(u8)]
pub enum GraphState {
    /// Not loaded.
    Stopped = 0,
    /// A start job runs.
    Starting = 1,
    /// Loaded, no maintenance job.
    Running = 2,
    /// An import job runs.
    Importing = 3,
    /// An export job runs.
    Exporting = 4,
    /// A clear job runs.
    Clearing = 5,
    /// A stop job runs.
    Stopping = 6,
    /// A restart job runs.
    Restarting = 7,
    /// A start, stop or restart (or clear, or a timed-out job) failed.
    Abnormal = 8,
}

impl GraphState {
    /// Every state, in code order.
    pub const ALL: [GraphState; 9] = [
        GraphState::Stopped,
        GraphState::Starting,
        GraphState::Running,
        GraphState::Importing,
        GraphState::Exporting,
        GraphState::Clearing,
        GraphState::Stopping,
        GraphState::Restarting,
        GraphState::Abnormal,
    ];

    /// A stable numeric code, the same in every release (0 to 8).
    #[inline]
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The state of a code, `None` for an unknown code.
    #[inline]
    pub const fn from_code(code: u8) -> Option<GraphState> {
        match code {
            0 => Some(GraphState::Stopped),
            1 => Some(GraphState::Starting),
            2 => Some(GraphState::Running),
            3 => Some(GraphState::Importing),
            4 => Some(GraphState::Exporting),
            5 => Some(GraphState::Clearing),
            6 => Some(GraphState::Stopping),
            7 => Some(GraphState::Restarting),
            8 => Some(GraphState::Abnormal),
            _ => None,
        }
    }

    /// A stable lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            GraphState::Stopped => "stopped",
            GraphState::Starting => "starting",
            GraphState::Running => "running",
            GraphState::Importing => "importing",
            GraphState::Exporting => "exporting",
            GraphState::Clearing => "clearing",
            GraphState::Stopping => "stopping",
            GraphState::Restarting => "restarting",
            GraphState::Abnormal => "abnormal",
        }
    }

    /// Whether the host may answer queries on a graph in this state.
    #[inline]
    pub const fn serves_queries(self) -> bool {
        matches!(
            self,
            GraphState::Running | GraphState::Importing | GraphState::Exporting
        )
    }

    /// The lifecycle job that runs while a graph is in this state, if any.
    pub const fn job_kind(self) -> Option<LifecycleKind> {
        match self {
            GraphState::Starting => Some(LifecycleKind::Start),
            GraphState::Importing => Some(LifecycleKind::Import),
            GraphState::Exporting => Some(LifecycleKind::Export),
            GraphState::Clearing => Some(LifecycleKind::Clear),
            GraphState::Stopping => Some(LifecycleKind::Stop),
            GraphState::Restarting => Some(LifecycleKind::Restart),
            GraphState::Stopped | GraphState::Running | GraphState::Abnormal => None,
        }
    }
}

impl fmt::Display for GraphState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The kinds of lifecycle job the engine emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum LifecycleKind {
    /// Load the graph.
    Start,
    /// Unload the graph.
    Stop,
    /// Stop and start again (forced restart).
    Restart,
    /// Import data.
    Import,
    /// Export data.
    Export,
    /// Clear the data.
    Clear,
}

impl LifecycleKind {
    /// A stable lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            LifecycleKind::Start => "start",
            LifecycleKind::Stop => "stop",
            LifecycleKind::Restart => "restart",
            LifecycleKind::Import => "import",
            LifecycleKind::Export => "export",
            LifecycleKind::Clear => "clear",
        }
    }

    /// Whether a caller may cancel a live job of this kind: every kind but
    /// restart. A cancelled job leads where [`job_outcome`] says
    /// (cancelling a stuck start leaves the graph Abnormal, from where it
    /// can be stopped or removed).
    pub const fn stoppable(self) -> bool {
        !matches!(self, LifecycleKind::Restart)
    }
}

impl fmt::Display for LifecycleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The operations a caller can ask of a graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Operation {
    /// Create a graph (from "absent").
    Create,
    /// Start it.
    Start,
    /// Stop it.
    Stop,
    /// Import data.
    Import,
    /// Export data.
    Export,
    /// Clear its data.
    Clear,
    /// Fail all its tasks and restart it.
    ForceRestart,
    /// Remove it.
    Remove,
    /// Register a host task on it.
    RegisterTask,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 9] = [
        Operation::Create,
        Operation::Start,
        Operation::Stop,
        Operation::Import,
        Operation::Export,
        Operation::Clear,
        Operation::ForceRestart,
        Operation::Remove,
        Operation::RegisterTask,
    ];

    /// A stable lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Start => "start",
            Operation::Stop => "stop",
            Operation::Import => "import",
            Operation::Export => "export",
            Operation::Clear => "clear",
            Operation::ForceRestart => "force_restart",
            Operation::Remove => "remove",
            Operation::RegisterTask => "register_task",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where an allowed operation leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The graph moves to this state; a job of this kind is emitted.
    Job(GraphState, LifecycleKind),
    /// The graph keeps its state (a host task is registered).
    Stay,
    /// The graph is removed.
    Remove,
}

/// The transition table (`docs/CONTRACT.md`, section 4): what `op` does to a graph in
/// state `from`, or `None` if it is refused.
///
/// `Create` is never allowed on an existing graph; the registry handles the
/// "graph absent" row.
pub const fn transition(from: GraphState, op: Operation) -> Option<Transition> {
    use GraphState::*;
    use LifecycleKind as K;
    use Operation as Op;
    match (from, op) {
        (Stopped, Op::Start) => Some(Transition::Job(Starting, K::Start)),
        (Running | Abnormal, Op::Stop) => Some(Transition::Job(Stopping, K::Stop)),
        (Running, Op::Import) => Some(Transition::Job(Importing, K::Import)),
        (Running, Op::Export) => Some(Transition::Job(Exporting, K::Export)),
        (Running, Op::Clear) => Some(Transition::Job(Clearing, K::Clear)),
        (_, Op::ForceRestart) => Some(Transition::Job(Restarting, K::Restart)),
        (Stopped | Abnormal, Op::Remove) => Some(Transition::Remove),
        // Host tasks run while the graph serves queries.
        (Running | Importing | Exporting, Op::RegisterTask) => Some(Transition::Stay),
        _ => None,
    }
}

/// How a lifecycle job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobEnd {
    /// The host reported success.
    Succeeded,
    /// The host reported failure.
    Failed,
    /// A caller cancelled it.
    Cancelled,
    /// Its deadline passed.
    TimedOut,
}

/// The outcome table (`docs/CONTRACT.md`, section 4): the state a graph reaches when its
/// lifecycle job of kind `kind` ends as `end`.
pub const fn job_outcome(kind: LifecycleKind, end: JobEnd) -> GraphState {
    use GraphState::*;
    use LifecycleKind as K;
    match (kind, end) {
        (K::Start | K::Restart | K::Import | K::Export | K::Clear, JobEnd::Succeeded) => Running,
        (K::Stop, JobEnd::Succeeded) => Stopped,
        (K::Import | K::Export, JobEnd::Failed | JobEnd::Cancelled) => Running,
        (K::Import | K::Export, JobEnd::TimedOut) => Abnormal,
        (K::Start | K::Stop | K::Restart | K::Clear, _) => Abnormal,
    }
}
