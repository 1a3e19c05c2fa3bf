//! The commit seam: where a command the engine applies live meets whatever
//! keeps it (a journal on disk, a replicated log, or nothing).
//!
//! The engine calls a [`CommitLog`] three times per live command, in this
//! order, and never the other way round: the core does not know what
//! persists it (`docs/DESIGN.md`, "The commit seam").
//!
//! 1. [`prepare`](CommitLog::prepare), before any lock of the engine is
//!    taken. The log MAY refuse (it failed, it is read-only): the command
//!    is then refused with [`Error::CommitLog`]
//!    and changes nothing. This is the place for slow work that does not
//!    need the order of commits (encoding the command).
//! 2. [`append`](CommitLog::append), with the graph's lock held, only if
//!    the command changed the state, with the command's outcome. The log
//!    MUST place the command in its order here: two commands on one graph
//!    reach `append` in the order they were applied, and replaying them
//!    in that order rebuilds the same state and the same outcomes. It
//!    MUST NOT block on I/O: it runs under a lock that queries and other
//!    commands on the graph wait for.
//! 3. [`finish`](CommitLog::finish), after every lock of the engine is
//!    released, for every command that was prepared (appended or not).
//!    The log MAY block here until the command is durable, and returns its
//!    failure if it cannot make it so; the command is then applied in
//!    memory but not durable, and the caller gets
//!    [`Error::CommitLog`].
//!
//! Commands applied with
//! [`Engine::apply_decided`](crate::Engine::apply_decided) do not pass
//! through the seam: they were decided by a log already.
//!
//! ```
//! use graph_lifecycle::{CommitLog, Command, Engine, Error, GraphKey, LogError, Outcome};
//! use std::sync::Mutex;
//!
//! /// Keeps every committed command in memory, in commit order.
//! #[derive(Default)]
//! struct Recorder(Mutex<Vec<Command>>);
//!
//! impl CommitLog for Recorder {
//!     type Pending<'a> = Command;
//!     fn prepare(&self, cmd: &Command) -> Result<Command, LogError> {
//!         Ok(cmd.clone())
//!     }
//!     fn append(&self, pending: &mut Command, _: &Result<Outcome, Error>) {
//!         self.0.lock().unwrap().push(pending.clone());
//!     }
//!     fn finish(&self, _: Command) -> Result<(), LogError> {
//!         Ok(())
//!     }
//! }
//!
//! let log = std::sync::Arc::new(Recorder::default());
//! let (engine, _jobs) = Engine::builder().log(log.clone()).build();
//! let key = GraphKey::parse("p", "g")?;
//! engine.create_graph(&key)?;
//! engine.start(&key)?;
//! assert!(engine.stop(&key).is_err()); // refused: not kept
//! assert_eq!(log.0.lock().unwrap().len(), 2);
//! # Ok::<(), graph_lifecycle::Error>(())
//! ```

use crate::command::{Command, Outcome};
use crate::error::{Error, LogError};

/// What keeps the commands an engine applies live: see the
/// [module](self) for the contract of each call.
pub trait CommitLog: Send + Sync + 'static {
    /// What travels from [`prepare`](Self::prepare) to
    /// [`finish`](Self::finish) for one command (an encoded record, a
    /// guard).
    type Pending<'a>
    where
        Self: 'a;

    /// Before any engine lock: accept the command, or refuse it.
    ///
    /// # Errors
    ///
    /// The log's reason to refuse; the command changes nothing.
    fn prepare<'a>(&'a self, cmd: &Command) -> Result<Self::Pending<'a>, LogError>;

    /// Under the graph's lock, once the command changed the state: place
    /// it, and what it did, in the log's order. Must not block on I/O.
    fn append<'a>(&'a self, pending: &mut Self::Pending<'a>, outcome: &Result<Outcome, Error>);

    /// After every engine lock is released: wait until the command is as
    /// durable as the log promises.
    ///
    /// # Errors
    ///
    /// The log's failure; the command may be applied in memory without
    /// being durable.
    fn finish<'a>(&'a self, pending: Self::Pending<'a>) -> Result<(), LogError>;
}

/// A shared log is a log.
impl<L: CommitLog> CommitLog for std::sync::Arc<L> {
    type Pending<'a>
        = L::Pending<'a>
    where
        Self: 'a;

    fn prepare<'a>(&'a self, cmd: &Command) -> Result<Self::Pending<'a>, LogError> {
        (**self).prepare(cmd)
    }

    fn append<'a>(&'a self, pending: &mut Self::Pending<'a>, outcome: &Result<Outcome, Error>) {
        (**self).append(pending, outcome);
    }

    fn finish<'a>(&'a self, pending: Self::Pending<'a>) -> Result<(), LogError> {
        (**self).finish(pending)
    }
}

/// The log of an in-memory engine: keeps nothing, refuses nothing. An
/// engine built without [`EngineBuilder::log`](crate::EngineBuilder::log)
/// has it.
#[derive(Debug, Default, Clone, Copy)]
pub struct InMemory;

impl CommitLog for InMemory {
    type Pending<'a> = ();

    #[inline]
    fn prepare(&self, _: &Command) -> Result<(), LogError> {
        Ok(())
    }

    #[inline]
    fn append(&self, (): &mut (), _: &Result<Outcome, Error>) {}

    #[inline]
    fn finish(&self, (): ()) -> Result<(), LogError> {
        Ok(())
    }
}

/// The `append` of one command, handed to the locked section.
pub(crate) type Append<'a> = &'a mut dyn FnMut(&Result<Outcome, Error>);

/// A [`CommitLog`] behind a trait object: the three calls folded into one
/// that runs the engine's locked section in the middle, so that the
/// engine needs no type parameter.
pub(crate) trait Seam: Send + Sync {
    /// `prepare`, then `locked` (which calls its argument, the `append`,
    /// under the graph's lock if the command changed something), then
    /// `finish`.
    fn commit(&self, cmd: &Command, locked: &mut dyn FnMut(Append<'_>)) -> Result<(), LogError>;
}

impl<L: CommitLog> Seam for L {
    #[inline]
    fn commit(&self, cmd: &Command, locked: &mut dyn FnMut(Append<'_>)) -> Result<(), LogError> {
        let mut pending = self.prepare(cmd)?;
        locked(&mut |outcome| self.append(&mut pending, outcome));
        self.finish(pending)
    }
}
