//! The journal's errors: I/O with the file and the operation, corruption
//! with the file and the offset, and a replay that does not reproduce what
//! the log says happened.

use std::io;
use std::sync::Arc;

use graph_lifecycle::{Error, Outcome};

/// What can go wrong opening, writing or reading a journal.
///
/// An I/O failure keeps the operating system's [`io::Error`] as its
/// source, so its [`kind`](io::Error::kind) is there to match on. Once a
/// write or a sync failed, the journal takes no more commands: every later
/// command is refused with [`JournalError::Failed`], which holds the first
/// failure. Commands reach the host as
/// [`graph_lifecycle::Error::CommitLog`] whose source is this error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// The storage failed.
    #[error("cannot {op} {file}: {source}")]
    Io {
        /// What was being done ("sync", "create", ...).
        op: &'static str,
        /// The file or directory (a path for a directory journal).
        file: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A damaged record in the middle of the log, with intact records after
    /// it: nothing past it is applied. `docs/JOURNAL.md` says how an
    /// operator proceeds.
    #[error("journal record at byte {offset} of {file} is corrupt: {detail}")]
    Corrupt {
        /// The segment (a path for a directory journal).
        file: String,
        /// The byte offset of the damage in that file.
        offset: u64,
        /// What is wrong with it.
        detail: String,
    },
    /// Replaying a record did not do what the record says it did when it
    /// was first applied: the journal was written with another
    /// configuration (limits, retention, windows), or by another version
    /// whose rules differ.
    #[error(
        "record {lsn} at byte {offset} of {file} replays as {got:?}, but was {expected:?}: \
         was the journal written with another configuration?"
    )]
    Diverged {
        /// The record's LSN.
        lsn: u64,
        /// Its segment.
        file: String,
        /// Its offset.
        offset: u64,
        /// The outcome the record holds.
        expected: Box<Result<Outcome, Error>>,
        /// The outcome of the replay.
        got: Box<Result<Outcome, Error>>,
    },
    /// A command that cannot be journaled: too large for a record.
    #[error("the command is {size} bytes journaled, more than the limit of {limit}")]
    TooLarge {
        /// Its size, encoded.
        size: usize,
        /// The largest record.
        limit: usize,
    },
    /// A command that does not encode.
    #[error("the command cannot be journaled: {0}")]
    Encode(#[source] postcard::Error),
    /// The journal failed earlier and takes no more commands until it is
    /// opened again; the source is the first failure.
    #[error("the journal failed and takes no more commands: {0}")]
    Failed(#[source] Arc<JournalError>),
    /// The operating system gave no randomness for a segment's salt.
    #[error("cannot draw a segment's salt: {0}")]
    Random(#[source] getrandom::Error),
}

impl JournalError {
    /// A closure making an [`Io`](JournalError::Io) error for `op` on `file`.
    pub(crate) fn io(op: &'static str, file: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let file = file.into();
        move |source| JournalError::Io { op, file, source }
    }

    /// The operating system's error kind, for an I/O failure (directly or
    /// behind [`Failed`](JournalError::Failed)).
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            JournalError::Io { source, .. } => Some(source.kind()),
            JournalError::Failed(first) => first.io_kind(),
            _ => None,
        }
    }
}
