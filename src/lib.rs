//! The lifecycle core of a graph database engine: graph states, the table
//! of their asynchronous tasks, and the forced restart.
//!
//! TODO crate docs
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod command;
pub mod config;
pub mod engine;
pub mod error;
pub mod events;
mod graph;
pub mod id;
pub mod outbox;
pub mod query;
mod registry;
pub mod state;
mod sync;
pub mod task;
pub mod time;

pub use command::{Command, Op, Outcome, Restart};
pub use config::Config;
pub use engine::{Engine, EngineBuilder, GraphHandle};
pub use error::Error;
pub use events::{Change, Event, EventError, Subscription};
pub use id::{Epoch, GraphId, GraphKey, IdKind, JobId, MAX_ID_LEN, ProjectId};
pub use outbox::{Job, JobReceiver, TaskRef};
pub use query::{GraphInfo, GraphSnapshot, Page, Snapshot, StatusSet, TaskQuery};
pub use state::{
    GraphState, JobEnd, LifecycleKind, Operation, Transition, job_outcome, transition,
};
pub use task::{
    CancelToken, FailReason, HostKind, Payload, Report, TaskInfo, TaskKind, TaskSpec, TaskStatus,
};
pub use time::{Clock, IdSource, ManualClock, SequentialIds, SystemClock, Timestamp, UuidV7Ids};
