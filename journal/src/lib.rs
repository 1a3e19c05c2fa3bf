//! A durable journal for [`graph_lifecycle`]: every command the engine
//! commits is appended to a log of checksummed records, snapshots keep
//! replay short, and recovery brings the engine back after a crash. It
//! plugs into the core's commit seam ([`graph_lifecycle::CommitLog`]): the
//! core does no I/O, this crate does it all.
//!
//! # Opening a durable engine
//!
//! ```no_run
//! use graph_lifecycle::Engine;
//! use graph_lifecycle_journal::{Durability, FileStorage, JournalOptions, open};
//!
//! let storage = FileStorage::open("/var/lib/my-engine/lifecycle")?;
//! let options = JournalOptions::new(Durability::SyncEveryCommit);
//! let durable = open(Engine::builder(), storage, options)?;
//! let report = &durable.report;
//! println!("replayed {} commands, {} tasks interrupted", report.replayed, report.interrupted);
//! let (engine, jobs) = (durable.engine, durable.jobs);
//! # let _ = (engine, jobs);
//! # Ok::<(), graph_lifecycle_journal::JournalError>(())
//! ```
//!
//! From then on the engine is used as any other. Every command that
//! changes something is appended to the journal before its call returns;
//! when the call returns depends on the [`Durability`] policy. A refused
//! command is not journaled, unless it carried a request id: its refusal
//! is then part of the state (the retry gets it again), and journaled
//! like any change.
//!
//! # What recovery does
//!
//! 1. Load the newest snapshot that reads back whole (a damaged one is
//!    passed over for the one before it).
//! 2. Replay the log after it, record by record, each as the decided
//!    command it is ([`Engine::apply_decided`], jobs held): the same
//!    deterministic step as the original commands. Each record holds the
//!    outcome its command had; a replay that answers otherwise (a journal
//!    written with another configuration) stops with
//!    [`JournalError::Diverged`].
//! 3. Cut a torn tail: a record that cannot be read in the part of the log
//!    written since its last sync (no record written after a sync
//!    follows it; see [`frame`]). It held a command whose call never
//!    returned, or under [`Durability::NoSync`] one the policy allowed to
//!    lose.
//! 4. Refuse to go past a corrupt record: one that cannot be read although
//!    a record written after a sync follows it, so that its bytes had been
//!    synced. [`JournalError::Corrupt`] names the file and the byte
//!    offset. [`Recovery::TruncateAtCorruption`] cuts the log there
//!    instead, losing what followed.
//! 5. Apply [`Op::Recover`] to every graph, live through the engine's
//!    commit path and so journaled like any command (a graph with nothing
//!    to recover changes nothing and is not journaled): every task live at
//!    the crash fails as
//!    [`FailReason::Interrupted`] (its worker died with the process), and
//!    every graph in a state with a lifecycle job (Starting, Stopping,
//!    Restarting, Importing, Exporting, Clearing) goes to Abnormal, from
//!    where it can be stopped, removed or force-restarted. The
//!    [`RecoveryReport`] lists the events.
//!
//! # Jobs and durability
//!
//! A job is handed to the host under the graph's lock, as in an engine
//! without a journal, which is before its command is durable. A host
//! worker may therefore start a job whose command a power cut then takes
//! back; this is harmless in an embedded engine, whose workers die with
//! the process: after the restart the job does not exist and nobody runs
//! it. A host whose workers outlive the engine process must not act on a
//! job before the call that created it returned.
//!
//! # When the journal fails
//!
//! If a write or a sync fails, the engine stops taking commands: the call
//! that met the failure and every later command return
//! [`graph_lifecycle::Error::CommitLog`] (`COMMIT_LOG_FAILED`, 503) whose
//! source is a [`JournalError`] holding the first failure, while queries
//! go on working. The failed call's
//! command may have changed the engine's memory without being durable, as
//! in any database whose `fsync` failed: memory may be ahead of the disk.
//! Open the engine again (a new process, or a new [`open`]) to go on from
//! what the disk holds.
//!
//! # Formats
//!
//! See [`frame`] for the log's segments and records, and the workspace's
//! `docs/JOURNAL.md` for the whole picture, the snapshot file and the
//! operator's procedures.
//!
//! [`Engine::apply_decided`]: graph_lifecycle::Engine::apply_decided
//! [`Op::Recover`]: graph_lifecycle::Op::Recover
//! [`FailReason::Interrupted`]: graph_lifecycle::FailReason::Interrupted
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::sync::Arc;
use std::thread::JoinHandle;

use graph_lifecycle::{Engine, EngineBuilder, JobReceiver};

mod error;
mod file;
pub mod frame;
mod mem;
mod recovery;
mod snapshot;
mod storage;
mod writer;

pub use error::JournalError;
pub use file::FileStorage;
pub use frame::{
    Frame, Record, Segment, SegmentEnd, SegmentHeader, decode_frame, decode_segment, encode_record,
};
pub use mem::MemStorage;
pub use recovery::{Cut, Discarded, RecoveryReport};
pub use storage::Storage;
pub use writer::{Durability, JournalOptions, JournalStatus, Recovery};

/// Opens a durable engine on `storage`: loads the newest valid snapshot,
/// replays the log after it, cuts a torn tail, and recovers (every task
/// live at the crash fails as interrupted, every graph in a transitional
/// state goes to Abnormal). `builder` gives the configuration, clock and
/// id source; the journal becomes its commit log.
///
/// Open with the configuration the journal was written with (replay
/// checks it does what it did), and with an id source that does not
/// repeat the ids of earlier runs (the default does not).
///
/// ```
/// use graph_lifecycle::{Engine, GraphKey};
/// use graph_lifecycle_journal::{Durability, JournalOptions, MemStorage, open};
///
/// let disk = MemStorage::new(); // `FileStorage::open(dir)?` on a real disk
/// let durable = open(Engine::builder(), disk, JournalOptions::new(Durability::SyncEveryCommit))?;
/// assert_eq!(durable.report.replayed, 0);
/// durable.engine.create_graph(&GraphKey::parse("p", "g")?)?; // durable once it returns
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// [`JournalError::Corrupt`] for a damaged record in the middle of the
/// log (see [`Recovery`] for the way past it); [`JournalError::Diverged`]
/// if a record does not replay as it was applied; [`JournalError::Io`] if
/// the storage fails.
pub fn open(
    builder: EngineBuilder,
    storage: impl Storage,
    options: JournalOptions,
) -> Result<Durable, JournalError> {
    recovery::open(builder, Box::new(storage), options)
}

/// A durable engine, as [`open`] made it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Durable {
    /// The engine; its commit log is the journal.
    pub engine: Engine,
    /// The first receiver of its jobs.
    pub jobs: JobReceiver,
    /// The journal, for snapshots, syncs and counters.
    pub journal: Journal,
    /// What opening found and did.
    pub report: RecoveryReport,
}

/// The host's handle to a durable engine's journal. The engine keeps the
/// journal alive on its own; dropping this handle changes nothing.
pub struct Journal {
    log: Arc<writer::Log>,
    /// The snapshot thread, if snapshots are automatic; it ends once the
    /// engine is gone.
    _snapshots: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Takes a snapshot of `engine` now, on the calling thread, and
    /// compacts the journal: the log below the older of the two newest
    /// snapshots is deleted. Returns the snapshot's LSN (it holds every
    /// record below it). Commands wait only while the engine's state is
    /// copied, not while the snapshot is encoded and written.
    ///
    /// # Errors
    ///
    /// [`JournalError`] if the journal failed or the storage fails.
    pub fn snapshot(&self, engine: &Engine) -> Result<u64, JournalError> {
        self.log
            .snapshot(|| engine.image(), false)
            .map(|lsn| lsn.unwrap_or_default())
    }

    /// Writes and syncs every command committed so far, whatever the
    /// [`Durability`]: for a host on `NoSync` that wants a point it can
    /// count on.
    ///
    /// # Errors
    ///
    /// [`JournalError`] if the journal failed or the storage fails.
    pub fn sync(&self) -> Result<(), JournalError> {
        self.log.sync_all()
    }

    /// The journal's counters.
    pub fn status(&self) -> JournalStatus {
        self.log.status()
    }
}
