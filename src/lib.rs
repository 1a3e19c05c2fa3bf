//! The lifecycle core of a graph database engine: graph states, the table
//! of their asynchronous tasks, and the forced restart.
//!
//! The crate decides; the host does the work. It holds, for every graph,
//! its [state](GraphState) and the table of its tasks, applies the
//! operations of the contract, and hands the host [`Job`]s to run over a
//! `crossbeam-channel` receiver that the host's worker threads share. The
//! workers run the jobs and [report](Engine::report) back. The crate does
//! no I/O, never sleeps and never blocks on the host.
//!
//! # The model
//!
//! - A **graph** is addressed by a [`GraphKey`] (project + graph id). Its
//!   [`GraphState`] is one of nine; [`transition`] is the table of which
//!   [`Operation`] is allowed in which state, and [`job_outcome`] the table
//!   of where a lifecycle job's end leads.
//! - A **task** is a lifecycle job the engine emits (start, stop, restart,
//!   import, export, clear) or a task of the host's own
//!   ([`Engine::register_task`]). It has a [`TaskStatus`], a progress, an
//!   epoch, and on failure a typed [`FailReason`].
//! - A graph's **epoch** grows at every [forced restart](Engine::force_restart):
//!   in one atomic step every live task of the graph fails, the epoch
//!   grows, the graph enters Restarting and one restart job is handed over.
//!   Reports about the voided tasks are refused with [`Error::StaleEpoch`],
//!   and their [`CancelToken`]s go void so workers stop early.
//! - Every change is a [`Command`] applied by a deterministic step; time
//!   and ids come in with the command, from an injectable [`Clock`] and
//!   [`IdSource`]. [`Engine::apply`] applies a command live (local checks,
//!   then the [commit log](seam)); [`Engine::apply_decided`] applies one a
//!   journal or a consensus log already decided. A command may carry a
//!   [`RequestId`]: a retry is answered, not applied again.
//! - The whole state is an [`Image`]: bytes out, an engine back.
//! - Every committed change is an [`Event`] to any number of subscribers
//!   ([`Engine::subscribe`]); a subscriber that falls behind is cut off,
//!   never waited for.
//! - One [`Error`] enum, each variant with a stable
//!   [`code`](Error::code) and [`http_status`](Error::http_status). A call
//!   that fails changed nothing.
//!
//! # A host in a few lines
//!
//! ```
//! use graph_lifecycle::*;
//! use std::thread;
//!
//! let (engine, jobs) = Engine::builder().build();
//!
//! // A worker: runs whatever job arrives, reporting progress, and stops
//! // early when the job's token goes void.
//! let worker = {
//!     let engine = engine.clone();
//!     thread::spawn(move || {
//!         while let Ok(job) = jobs.recv() {
//!             for pct in [25, 50, 75] {
//!                 if job.token.is_void() {
//!                     break;
//!                 }
//!                 // ... a unit of the real work ...
//!                 let _ = engine.report(&job.task, Report::Progress(pct));
//!             }
//!             // A refused report (the job was voided meanwhile) is fine:
//!             // the work is simply void.
//!             let _ = engine.report(&job.task, Report::Succeeded);
//!         }
//!     })
//! };
//!
//! let key = GraphKey::parse("tenant-1", "movies")?;
//! let graph = engine.create_graph(&key)?;
//! engine.start(&key)?;
//! # while graph.state() != Some(GraphState::Running) { thread::yield_now(); }
//!
//! // The query path: one atomic load, no lock.
//! if graph.serves_queries() {
//!     // answer the query
//! }
//!
//! // Something is wrong: restart the graph, failing whatever runs on it.
//! let restart = engine.force_restart(&key)?;
//! # while graph.state() != Some(GraphState::Running) { thread::yield_now(); }
//! let job = engine.task(&key, restart.job)?;
//! assert_eq!(job.kind, TaskKind::Restart);
//!
//! engine.shutdown(); // the worker's `recv` fails once the channel is drained
//! worker.join().unwrap();
//! # Ok::<(), graph_lifecycle::Error>(())
//! ```
//!
//! # Determinism
//!
//! With the same [`Config`], the same commands applied in the same order
//! give the same state, byte for byte. Drive an engine with a
//! [`ManualClock`] and [`SequentialIds`], or record commands and apply
//! them elsewhere as decided commands, as a journal or a replica does:
//!
//! ```
//! use graph_lifecycle::*;
//!
//! let key = GraphKey::parse("p", "g")?;
//! let at = Timestamp::from_millis(1_000);
//! let ids = SequentialIds::new(1);
//! let commands = vec![
//!     Command::new(key.clone(), at, Op::Create),
//!     Command::new(key.clone(), at, Op::Start { job: ids.next_id(at), payload: Payload::EMPTY }),
//!     Command::new(key.clone(), at, Op::ForceRestart { job: ids.next_id(at) }),
//! ];
//! let (leader, _jobs) = Engine::builder().build();
//! let (replica, _its_jobs) = Engine::builder().build();
//! for c in &commands {
//!     leader.apply(c.clone())?;
//!     replica.apply_decided(c, Dispatch::Hold).outcome?;
//! }
//! assert_eq!(leader.image().encode(), replica.image().encode());
//! assert_eq!(replica.state(&key)?, GraphState::Restarting);
//! # Ok::<(), graph_lifecycle::Error>(())
//! ```
//!
//! # Modules
//!
//! - [`id`]: project, graph and job ids, graph keys, epochs.
//! - [`state`]: graph states and the two transition tables.
//! - [`task`]: tasks, their kinds, statuses, reasons and tokens.
//! - [`command`]: commands, outcomes, decided commands.
//! - [`seam`]: the commit seam, where a journal or a replicated log plugs
//!   in.
//! - [`image`]: the whole state as bytes, and back.
//! - [`engine`]: the engine, its builder, graph handles, retries.
//! - [`outbox`]: the job hand-off and what the host must do with a job.
//! - [`events`]: events and subscriptions.
//! - [`query`]: listings, pages and snapshots.
//! - [`error`]: the error enum.
//! - [`config`]: limits, retention, timeouts.
//! - [`time`]: timestamps, clocks and id sources.
//!
//! The feature `serde` makes commands, outcomes and errors `Serialize`
//! and `Deserialize`. Durability lives in a crate of its own,
//! `graph-lifecycle-journal`, which plugs into the [seam]; this crate
//! does no file or network I/O.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod command;
pub mod config;
pub mod engine;
pub mod error;
pub mod events;
mod graph;
pub mod id;
pub mod image;
pub mod outbox;
pub mod query;
mod registry;
pub mod seam;
pub mod state;
mod sync;
pub mod task;
pub mod time;

pub use command::{Command, Decided, Dispatch, Op, Outcome, Restart};
pub use config::Config;
pub use engine::{Engine, EngineBuilder, GraphHandle, Request, WeakEngine};
pub use error::{Error, LogError};
pub use events::{Change, Event, EventError, Subscription};
pub use id::{
    Epoch, GraphId, GraphKey, IdKind, JobId, MAX_ID_LEN, MAX_REQUEST_ID_LEN, ProjectId, RequestId,
};
pub use image::{Image, ImageError};
pub use outbox::{Job, JobReceiver, TaskRef};
pub use query::{GraphInfo, GraphSnapshot, Page, Snapshot, StatusSet, TaskQuery};
pub use seam::{CommitLog, InMemory};
pub use state::{
    GraphState, JobEnd, LifecycleKind, Operation, Transition, job_outcome, transition,
};
pub use task::{
    CancelToken, FailReason, HostKind, Payload, Report, TaskInfo, TaskKind, TaskSpec, TaskStatus,
};
pub use time::{Clock, IdSource, ManualClock, SequentialIds, SystemClock, Timestamp, UuidV7Ids};
