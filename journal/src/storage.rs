//! Where the journal keeps its bytes: the [`Storage`] trait.

use std::io;

/// The journal's storage: a log of segments and a set of snapshots.
///
/// Shaped like `raft-rs`'s `Storage`: the engine decides what to write and
/// when; an implementation only keeps bytes. [`FileStorage`] keeps them in
/// a directory; [`MemStorage`] in memory, for tests, where it can also
/// simulate a power cut and a failing disk.
///
/// The log is a sequence of **segments**, each named by the log sequence
/// number (LSN) of its first record; the engine only ever appends to the
/// newest one. A **snapshot** is named by the LSN of the first record it
/// does not include.
///
/// What an implementation MUST guarantee:
///
/// 1. bytes passed to [`append`](Self::append) land at the end of the
///    newest segment, in call order;
/// 2. once [`sync`](Self::sync) returns `Ok`, every byte appended before
///    the call survives a crash or a power cut;
/// 3. [`create_segment`](Self::create_segment),
///    [`truncate_segment`](Self::truncate_segment),
///    [`remove_segment`](Self::remove_segment),
///    [`write_snapshot`](Self::write_snapshot) and
///    [`remove_snapshot`](Self::remove_snapshot) are durable when they
///    return `Ok` (a file system needs the directory synced after a file
///    is made, renamed or unlinked), and a snapshot is either whole or
///    absent after a crash, never partly written;
/// 4. after a crash, a segment holds the bytes synced to it, possibly
///    followed by some of the bytes appended after the last sync (a torn
///    tail, which recovery cuts off).
///
/// The engine calls `append`, `sync` and `create_segment` from one thread
/// at a time, and the snapshot and removal methods from another thread at
/// the same time, so every method takes `&self`.
///
/// [`FileStorage`]: crate::FileStorage
/// [`MemStorage`]: crate::MemStorage
pub trait Storage: Send + Sync + 'static {
    /// The first LSN of every segment, ascending.
    ///
    /// # Errors
    ///
    /// The storage's read error.
    fn segments(&self) -> io::Result<Vec<u64>>;

    /// The bytes of the segment whose first LSN is `first_lsn`.
    ///
    /// # Errors
    ///
    /// The storage's read error, or `NotFound`.
    fn read_segment(&self, first_lsn: u64) -> io::Result<Vec<u8>>;

    /// Starts a new segment whose first record will have LSN `first_lsn`,
    /// holding `header` (its first bytes), durably; from now on
    /// [`append`](Self::append) writes to it. The engine syncs the
    /// previous segment first.
    ///
    /// # Errors
    ///
    /// The storage's write error; the engine then stops taking commands.
    fn create_segment(&self, first_lsn: u64, header: &[u8]) -> io::Result<()>;

    /// Appends bytes (whole records) to the newest segment. They are
    /// durable only after the next [`sync`](Self::sync).
    ///
    /// # Errors
    ///
    /// The storage's write error; the engine then stops taking commands.
    fn append(&self, bytes: &[u8]) -> io::Result<()>;

    /// Makes every byte appended so far durable.
    ///
    /// # Errors
    ///
    /// The storage's sync error; the engine then stops taking commands
    /// (after a failed sync nothing is known about what reached the disk).
    fn sync(&self) -> io::Result<()>;

    /// Cuts a segment to its first `len` bytes, durably.
    ///
    /// # Errors
    ///
    /// The storage's write error.
    fn truncate_segment(&self, first_lsn: u64, len: u64) -> io::Result<()>;

    /// Deletes a segment, durably.
    ///
    /// # Errors
    ///
    /// The storage's error.
    fn remove_segment(&self, first_lsn: u64) -> io::Result<()>;

    /// The LSN of every stored snapshot, ascending.
    ///
    /// # Errors
    ///
    /// The storage's read error.
    fn snapshots(&self) -> io::Result<Vec<u64>>;

    /// The bytes of the snapshot named `lsn`.
    ///
    /// # Errors
    ///
    /// The storage's read error, or `NotFound`.
    fn read_snapshot(&self, lsn: u64) -> io::Result<Vec<u8>>;

    /// Stores a snapshot atomically and durably: after a crash it is either
    /// whole or absent. Replaces a snapshot of the same name.
    ///
    /// # Errors
    ///
    /// The storage's write error.
    fn write_snapshot(&self, lsn: u64, bytes: &[u8]) -> io::Result<()>;

    /// Deletes a snapshot, durably.
    ///
    /// # Errors
    ///
    /// The storage's error.
    fn remove_snapshot(&self, lsn: u64) -> io::Result<()>;

    /// How to name a segment in a message: a path, for files.
    fn segment_name(&self, first_lsn: u64) -> String;

    /// How to name a snapshot in a message.
    fn snapshot_name(&self, lsn: u64) -> String;
}
