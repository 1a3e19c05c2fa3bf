//! The durable journal (feature `journal`): every committed command
//! appended to a log, snapshots that keep replay short, and recovery when
//! the engine opens again after a crash.
//!
//! # Opening a durable engine
//!
//! ```no_run
//! use graph_lifecycle::journal::{Durability, FileStorage, JournalOptions};
//! use graph_lifecycle::Engine;
//!
//! let storage = FileStorage::open("/var/lib/my-engine/lifecycle")?;
//! let options = JournalOptions::new(Durability::SyncEveryCommit);
//! let (engine, jobs, report) = Engine::builder().open_durable(storage, options)?;
//! println!("replayed {} commands, {} tasks interrupted", report.replayed, report.interrupted);
//! # Ok::<(), graph_lifecycle::Error>(())
//! ```
//!
//! From then on the engine is used as any other. Every command that
//! changes something is appended to the journal before its call returns;
//! when the call returns depends on the [`Durability`] policy. A refused
//! command is never journaled.
//!
//! # What recovery does
//!
//! 1. Load the newest snapshot that reads back whole (a damaged one is
//!    passed over for the one before it).
//! 2. Replay the log after it, record by record, through the same
//!    deterministic apply step as the original commands, without handing
//!    over jobs or publishing events.
//! 3. Cut a torn tail: a record that cannot be read in the part of the log
//!    written since its last sync (no record written after a sync
//!    follows it; see [`frame`]). It held a command whose call never
//!    returned, or under [`Durability::NoSync`] one the policy allowed to
//!    lose.
//! 4. Refuse to go past a corrupt record: one that cannot be read although
//!    a record written after a sync follows it, so that its bytes had been
//!    synced. [`Error::JournalCorrupt`] names the file and the byte
//!    offset. [`Recovery::TruncateAtCorruption`] cuts the log there
//!    instead, losing what followed.
//! 5. Apply [`Op::Recover`] to every graph that needs it, journaled like any
//!    command: every task live at the crash fails as
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
//! that met the failure and every later command return [`Error::Journal`]
//! (`JOURNAL_FAILED`, 503), while queries go on working. The failed call's
//! command may have changed the engine's memory without being durable, as
//! in any database whose `fsync` failed: memory may be ahead of the disk.
//! Open the engine again (a new process, or a new `open_durable`) to go on
//! from what the disk holds.
//!
//! # Formats
//!
//! See [`frame`] for the log's record framing and `docs/JOURNAL.md` for the
//! whole picture, the snapshot file and the operator's procedures.
//!
//! [`Error::JournalCorrupt`]: crate::Error::JournalCorrupt
//! [`Error::Journal`]: crate::Error::Journal
//! [`Op::Recover`]: crate::Op::Recover
//! [`FailReason::Interrupted`]: crate::FailReason::Interrupted

mod file;
pub mod frame;
mod mem;
mod recovery;
mod snapshot;
mod storage;
mod writer;

pub use file::FileStorage;
pub use frame::{Frame, Record, Segment, SegmentEnd, decode_frame, decode_segment, encode_record};
pub use mem::MemStorage;
pub use recovery::{Cut, Discarded, RecoveryReport};
pub use storage::Storage;
pub use writer::{Durability, JournalOptions, JournalStatus, Recovery};

pub(crate) use recovery::open;
pub(crate) use writer::Journal;
