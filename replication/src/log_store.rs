//! The Raft log on disk: openraft's [`RaftLogStorage`], on the journal's
//! segments and record framing.
//!
//! Entries are kept in log segments of the journal crate
//! ([`graph_lifecycle_journal::Storage`]: [`FileStorage`] in a directory,
//! [`MemStorage`] in memory for tests and simulations), one record per
//! entry, framed and checksummed by the journal's codec
//! ([`graph_lifecycle_journal::frame`]): a salted CRC-32 per record and
//! the sync mark that tells a torn tail from corruption. A segment is
//! named by the index of its first entry; its records hold consecutive
//! indices. The payload of a record is the openraft entry (log id and
//! proposal) in `postcard`.
//!
//! - **Appending**: entries are encoded on the caller's task and written
//!   and synced (`fdatasync`) before openraft is told they are stored
//!   ([`LogFlushed`]): nothing is acknowledged before it is on disk. With
//!   [`Flush::Background`] a thread of the store does the writing, and
//!   one sync covers every append queued while the previous one ran
//!   (group commit); with [`Flush::Inline`] the append writes and syncs
//!   before it returns (for a single-threaded simulated runtime).
//! - **Truncating** a suffix (a follower's conflicting entries) cuts the
//!   segment that holds the first removed entry at that entry's offset
//!   and deletes the segments after it, durably, before it returns.
//! - **Purging** a prefix (after a snapshot) first records the purge point
//!   durably (`purged`), then deletes segments that hold only purged
//!   entries.
//! - **The vote** is written whole and synced (temporary file, rename,
//!   directory sync: [`Meta::write`]) before `save_vote` returns. The
//!   committed log id is written whole without a sync
//!   ([`Meta::write_unsynced`]): it survives a process crash, which is
//!   what keeps a restarted node from serving state older than it served
//!   before (openraft re-applies the log up to it before the node starts).
//!
//! Opening reads every segment: a record that cannot be read in the last
//! segment, with no record carrying the sync mark after it, is a **torn
//! tail** (what a crash leaves of a write that was never acknowledged) and
//! is cut off; anything else that cannot be read (a damaged record before
//! a synced one, a record that does not decode, a segment header, a gap
//! in the indices) is **corruption**: opening fails with
//! [`LogStoreError::Corrupt`] naming the file and the byte, and changes
//! nothing (`docs/CLUSTER.md` says what an operator does then).
//!
//! Every entry not yet purged is also kept in memory, so replication
//! reads no disk; openraft's snapshot policy bounds how many there are.
//!
//! [`FileStorage`]: graph_lifecycle_journal::FileStorage
//! [`MemStorage`]: graph_lifecycle_journal::MemStorage

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::Arc;
use std::sync::mpsc;

use graph_lifecycle_journal::Storage;
use graph_lifecycle_journal::frame::{
    Frame, SEGMENT_HEADER_LEN, SegmentHeader, decode_frame, synced_after, write_frame,
};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, RaftLogReader, StorageIOError};
use parking_lot::Mutex;

use crate::meta::Meta;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// Names of the store's small files.
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "purged";

/// Who writes and syncs appended entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flush {
    /// A thread of the store: appends queue, and one sync covers every
    /// append queued while the previous one ran.
    #[default]
    Background,
    /// The appending task, before `append` returns: for a simulated
    /// runtime whose clock must not run while a thread writes.
    Inline,
}

/// How the log store writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// A new segment begins once the current one holds this many bytes
    /// (default 16 MiB).
    pub segment_bytes: u64,
    /// Who writes and syncs.
    pub flush: Flush,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            segment_bytes: 16 << 20,
            flush: Flush::Background,
        }
    }
}

/// Why the log cannot be opened or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogStoreError {
    /// The storage failed.
    #[error("log store: cannot {op} {file}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file (or store) involved.
        file: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Bytes that had been synced cannot be read: opening refuses to go
    /// on (`docs/CLUSTER.md`, "A corrupt log").
    #[error("log store: {file} is corrupt at byte {offset}: {reason}")]
    Corrupt {
        /// The segment or file.
        file: String,
        /// Where the damage begins.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// An earlier write or sync failed; the store takes no more writes.
    #[error("log store: an earlier write failed ({0}); reopen the store")]
    Failed(String),
}

impl LogStoreError {
    fn io(op: &'static str, file: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let file = file.into();
        move |source| Self::Io { op, file, source }
    }
}

/// What opening found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenReport {
    /// Entries read (not purged).
    pub entries: usize,
    /// Segments read.
    pub segments: usize,
    /// A torn tail cut off: the segment and the byte offset.
    pub torn_tail: Option<(String, u64)>,
}

/// The log store. Cloning gives another handle to the same store (the
/// log reader openraft asks for is one).
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.shared.cache.lock();
        f.debug_struct("LogStore")
            .field("entries", &c.entries.len())
            .field("purged", &c.purged)
            .field("vote", &c.vote)
            .finish_non_exhaustive()
    }
}

struct Shared {
    cache: Mutex<Cache>,
    disk: Arc<Mutex<Disk>>,
    meta: Arc<dyn Meta>,
    /// The writer thread's queue, with [`Flush::Background`].
    queue: Option<crossbeam_channel::Sender<Job>>,
}

#[derive(Default)]
struct Cache {
    entries: BTreeMap<u64, Entry>,
    purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
}

/// What the writer thread is asked to do.
enum Job {
    Append {
        items: Vec<(u64, Vec<u8>)>,
        done: LogFlushed<TypeConfig>,
    },
    /// Cut at an index or purge up to one, after every append before it
    /// is synced; the caller waits for the answer.
    Truncate(u64, mpsc::Sender<Result<(), LogStoreError>>),
    Purge(u64, mpsc::Sender<Result<(), LogStoreError>>),
}

/// The segments on disk and where each entry is.
struct Disk {
    storage: Box<dyn Storage>,
    segment_bytes: u64,
    segs: BTreeMap<u64, Seg>,
    /// Index → (segment, byte offset of its record).
    locs: BTreeMap<u64, (u64, u64)>,
    /// The first failure; every later write refuses.
    failed: Option<String>,
}

#[derive(Debug, Clone, Copy)]
struct Seg {
    salt: u32,
    len: u64,
    last: Option<u64>,
}

impl Disk {
    fn check(&self) -> Result<(), LogStoreError> {
        match &self.failed {
            Some(f) => Err(LogStoreError::Failed(f.clone())),
            None => Ok(()),
        }
    }

    fn fail(&mut self, e: LogStoreError) -> LogStoreError {
        if self.failed.is_none() {
            self.failed = Some(e.to_string());
        }
        e
    }

    /// Writes framed entries (not synced). The first record of the write
    /// in each segment carries the sync mark: every byte before it was
    /// synced (each write is synced before the next begins).
    fn write(&mut self, items: &[(u64, Vec<u8>)]) -> Result<(), LogStoreError> {
        self.check()?;
        let r = self.write_inner(items);
        r.map_err(|e| self.fail(e))
    }

    fn write_inner(&mut self, items: &[(u64, Vec<u8>)]) -> Result<(), LogStoreError> {
        let mut buf = Vec::new();
        let mut first_in_seg = true;
        for (index, payload) in items {
            let index = *index;
            let fits = self.segs.iter().next_back().is_some_and(|(first, s)| {
                s.len < self.segment_bytes
                    && match s.last {
                        Some(l) => l.checked_add(1) == Some(index),
                        None => *first == index,
                    }
            });
            if !fits {
                if !buf.is_empty() {
                    self.storage
                        .append(&buf)
                        .map_err(LogStoreError::io("append to", "the log"))?;
                    buf.clear();
                }
                // The previous segment is whole on disk before the next
                // one begins.
                self.storage
                    .sync()
                    .map_err(LogStoreError::io("sync", "the log"))?;
                let header = SegmentHeader::new(index).map_err(|e| LogStoreError::Io {
                    op: "draw a salt for",
                    file: self.storage.segment_name(index),
                    source: io::Error::other(e.to_string()),
                })?;
                self.storage
                    .create_segment(index, &header.encode())
                    .map_err(LogStoreError::io(
                        "create",
                        self.storage.segment_name(index),
                    ))?;
                self.segs.insert(
                    index,
                    Seg {
                        salt: header.salt,
                        len: SEGMENT_HEADER_LEN as u64,
                        last: None,
                    },
                );
                first_in_seg = true;
            }
            let Some((&first, seg)) = self.segs.iter_mut().next_back() else {
                continue;
            };
            let at = buf.len();
            write_frame(&mut buf, seg.salt, payload, first_in_seg);
            first_in_seg = false;
            self.locs.insert(index, (first, seg.len));
            seg.len += (buf.len() - at) as u64;
            seg.last = Some(index);
        }
        if !buf.is_empty() {
            self.storage
                .append(&buf)
                .map_err(LogStoreError::io("append to", "the log"))?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), LogStoreError> {
        self.check()?;
        let r = self
            .storage
            .sync()
            .map_err(LogStoreError::io("sync", "the log"));
        r.map_err(|e| self.fail(e))
    }

    /// Removes every entry at or after `index`, durably.
    fn truncate(&mut self, index: u64) -> Result<(), LogStoreError> {
        self.check()?;
        let r = self.truncate_inner(index);
        r.map_err(|e| self.fail(e))
    }

    fn truncate_inner(&mut self, index: u64) -> Result<(), LogStoreError> {
        let Some((&from, &(seg, offset))) = self.locs.range(index..).next() else {
            return Ok(());
        };
        let later: Vec<u64> = self.segs.range(seg + 1..).map(|(n, _)| *n).collect();
        for n in later.into_iter().rev() {
            self.storage
                .remove_segment(n)
                .map_err(LogStoreError::io("remove", self.storage.segment_name(n)))?;
            self.segs.remove(&n);
        }
        if offset <= SEGMENT_HEADER_LEN as u64 {
            self.storage
                .remove_segment(seg)
                .map_err(LogStoreError::io("remove", self.storage.segment_name(seg)))?;
            self.segs.remove(&seg);
        } else {
            self.storage
                .truncate_segment(seg, offset)
                .map_err(LogStoreError::io(
                    "truncate",
                    self.storage.segment_name(seg),
                ))?;
            if let Some(s) = self.segs.get_mut(&seg) {
                s.len = offset;
                s.last = from.checked_sub(1);
            }
        }
        self.locs.split_off(&from);
        Ok(())
    }

    /// Deletes the segments that hold only entries at or below `index`.
    fn purge(&mut self, index: u64) -> Result<(), LogStoreError> {
        self.check()?;
        let newest = self.segs.keys().next_back().copied();
        let gone: Vec<u64> = self
            .segs
            .iter()
            .filter(|(n, s)| match s.last {
                Some(l) => l <= index,
                None => Some(**n) != newest,
            })
            .map(|(n, _)| *n)
            .collect();
        for n in gone {
            let r = self
                .storage
                .remove_segment(n)
                .map_err(LogStoreError::io("remove", self.storage.segment_name(n)));
            r.map_err(|e| self.fail(e))?;
            self.segs.remove(&n);
        }
        self.locs = self.locs.split_off(&index.saturating_add(1));
        Ok(())
    }
}

fn storage_error(e: &LogStoreError, write: bool) -> StorageError {
    let any = AnyError::new(e);
    if write {
        StorageIOError::write_logs(any).into()
    } else {
        StorageIOError::read_logs(any).into()
    }
}

fn decode_meta<T: serde::de::DeserializeOwned>(
    meta: &dyn Meta,
    name: &str,
) -> Result<Option<T>, LogStoreError> {
    let Some(bytes) = meta
        .read(name)
        .map_err(LogStoreError::io("read", name.to_owned()))?
    else {
        return Ok(None);
    };
    postcard::from_bytes(&bytes)
        .map(Some)
        .map_err(|e| LogStoreError::Corrupt {
            file: name.to_owned(),
            offset: 0,
            reason: format!("it does not decode: {e}"),
        })
}

impl LogStore {
    /// Opens the log on `storage` (segments) and `meta` (vote, committed
    /// and purge point): reads every segment, cuts a torn tail, and
    /// refuses corruption.
    ///
    /// # Errors
    ///
    /// [`LogStoreError::Corrupt`] for bytes that were synced and cannot
    /// be read (the store changes nothing then); [`LogStoreError::Io`].
    pub fn open(
        storage: Box<dyn Storage>,
        meta: Arc<dyn Meta>,
        options: LogOptions,
    ) -> Result<(LogStore, OpenReport), LogStoreError> {
        let vote: Option<Vote> = decode_meta(&*meta, VOTE)?;
        // Written without a sync: a power cut may leave it damaged, and
        // it only keeps reads from going back, so a damaged one is none.
        let committed: Option<LogId> = decode_meta(&*meta, COMMITTED).unwrap_or(None);
        let purged: Option<LogId> = decode_meta(&*meta, PURGED)?;

        let names = storage
            .segments()
            .map_err(LogStoreError::io("list", "the log"))?;
        let mut report = OpenReport::default();
        let mut segs = BTreeMap::new();
        let mut locs = BTreeMap::new();
        let mut entries: BTreeMap<u64, Entry> = BTreeMap::new();
        let mut cut: Option<(u64, u64)> = None;
        let mut dropped: Option<u64> = None;
        for (i, &first) in names.iter().enumerate() {
            let is_last = i + 1 == names.len();
            let file = storage.segment_name(first);
            let bytes = storage
                .read_segment(first)
                .map_err(LogStoreError::io("read", file.clone()))?;
            report.segments += 1;
            let header = match SegmentHeader::decode(&bytes) {
                Ok(h) if h.first_lsn == first => h,
                Ok(_) => {
                    return Err(LogStoreError::Corrupt {
                        file,
                        offset: 0,
                        reason: "its header names another first index".into(),
                    });
                }
                Err(_) if is_last && bytes.len() < SEGMENT_HEADER_LEN => {
                    // A creation a crash cut short: it holds nothing.
                    dropped = Some(first);
                    continue;
                }
                Err(reason) => {
                    return Err(LogStoreError::Corrupt {
                        file,
                        offset: 0,
                        reason: reason.into(),
                    });
                }
            };
            let mut at = SEGMENT_HEADER_LEN;
            let mut last: Option<u64> = None;
            loop {
                match decode_frame(&bytes, at, header.salt) {
                    Frame::End => break,
                    Frame::Record { payload, next, .. } => {
                        let entry: Entry =
                            postcard::from_bytes(payload).map_err(|e| LogStoreError::Corrupt {
                                file: file.clone(),
                                offset: at as u64,
                                reason: format!("the record does not hold an entry: {e}"),
                            })?;
                        let index = entry.log_id.index;
                        let expected = last.map_or(Some(first), |l| l.checked_add(1));
                        if expected != Some(index) {
                            return Err(LogStoreError::Corrupt {
                                file,
                                offset: at as u64,
                                reason: format!(
                                    "the record holds index {index} where {expected:?} belongs"
                                ),
                            });
                        }
                        locs.insert(index, (first, at as u64));
                        entries.insert(index, entry);
                        last = Some(index);
                        at = next;
                    }
                    Frame::Incomplete | Frame::Damaged(_)
                        if is_last && !synced_after(&bytes, at, header.salt) =>
                    {
                        cut = Some((first, at as u64));
                        break;
                    }
                    Frame::Incomplete => {
                        return Err(LogStoreError::Corrupt {
                            file,
                            offset: at as u64,
                            reason: "its length runs past synced records".into(),
                        });
                    }
                    Frame::Damaged(reason) => {
                        return Err(LogStoreError::Corrupt {
                            file,
                            offset: at as u64,
                            reason: reason.into(),
                        });
                    }
                }
            }
            segs.insert(
                first,
                Seg {
                    salt: header.salt,
                    len: at as u64,
                    last,
                },
            );
        }
        // Entries must run without a gap from the purge point on.
        let keep_from = purged.map_or(0, |p| p.index + 1);
        let kept = entries.split_off(&keep_from);
        let mut expected = purged.map(|p| p.index + 1);
        for &index in kept.keys() {
            if expected.is_some_and(|e| e != index) {
                let (seg, offset) = locs.get(&index).copied().unwrap_or((0, 0));
                return Err(LogStoreError::Corrupt {
                    file: storage.segment_name(seg),
                    offset,
                    reason: format!(
                        "entry {index} follows a gap (expected {})",
                        expected.unwrap_or(0)
                    ),
                });
            }
            expected = index.checked_add(1);
        }
        // Validated: now the torn tail and a cut-short segment go.
        if let Some(n) = dropped {
            storage
                .remove_segment(n)
                .map_err(LogStoreError::io("remove", storage.segment_name(n)))?;
        }
        if let Some((seg, offset)) = cut {
            storage
                .truncate_segment(seg, offset)
                .map_err(LogStoreError::io("truncate", storage.segment_name(seg)))?;
            report.torn_tail = Some((storage.segment_name(seg), offset));
        }
        report.entries = kept.len();
        let disk = Disk {
            storage,
            segment_bytes: options.segment_bytes.max(SEGMENT_HEADER_LEN as u64 + 1),
            segs,
            locs: locs.split_off(&keep_from),
            failed: None,
        };
        let disk = Arc::new(Mutex::new(disk));
        let queue = match options.flush {
            Flush::Inline => None,
            Flush::Background => Some(spawn_writer(disk.clone())),
        };
        let shared = Shared {
            cache: Mutex::new(Cache {
                entries: kept,
                purged,
                vote,
                committed,
            }),
            disk,
            meta,
            queue,
        };
        Ok((
            LogStore {
                shared: Arc::new(shared),
            },
            report,
        ))
    }

    /// The committed log id last saved, as read when the store opened or
    /// saved since.
    pub fn committed(&self) -> Option<LogId> {
        self.shared.cache.lock().committed
    }

    /// The index of the last entry, or of the purge point.
    pub fn last_index(&self) -> Option<u64> {
        let c = self.shared.cache.lock();
        c.entries
            .keys()
            .next_back()
            .copied()
            .or(c.purged.map(|p| p.index))
    }

    /// Runs a truncate or purge on the writer (after every append queued
    /// before it is synced), or inline.
    fn barrier(
        &self,
        make: impl FnOnce(mpsc::Sender<Result<(), LogStoreError>>) -> Job,
        inline: impl FnOnce(&mut Disk) -> Result<(), LogStoreError>,
    ) -> Result<(), LogStoreError> {
        match &self.shared.queue {
            Some(q) => {
                let (tx, rx) = mpsc::channel();
                q.send(make(tx))
                    .map_err(|_| LogStoreError::Failed("the writer thread is gone".into()))?;
                rx.recv()
                    .map_err(|_| LogStoreError::Failed("the writer thread is gone".into()))?
            }
            None => inline(&mut self.shared.disk.lock()),
        }
    }
}

/// The writer thread: takes every queued job, writes the appends, syncs
/// once, acknowledges them; a truncate or purge waits for the appends
/// before it.
fn spawn_writer(disk: Arc<Mutex<Disk>>) -> crossbeam_channel::Sender<Job> {
    let (tx, rx) = crossbeam_channel::unbounded::<Job>();
    let run = move || {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            batch.extend(rx.try_iter());
            let mut d = disk.lock();
            let mut waiting: Vec<LogFlushed<TypeConfig>> = Vec::new();
            let settle = |d: &mut Disk, waiting: &mut Vec<LogFlushed<TypeConfig>>| {
                if waiting.is_empty() {
                    return;
                }
                let r = d.sync();
                for w in waiting.drain(..) {
                    w.log_io_completed(
                        r.as_ref()
                            .map(drop)
                            .map_err(|e| io::Error::other(e.to_string())),
                    );
                }
            };
            for job in batch {
                match job {
                    Job::Append { items, done } => match d.write(&items) {
                        Ok(()) => waiting.push(done),
                        Err(e) => done.log_io_completed(Err(io::Error::other(e.to_string()))),
                    },
                    Job::Truncate(index, reply) => {
                        settle(&mut d, &mut waiting);
                        let _ = reply.send(d.truncate(index));
                    }
                    Job::Purge(index, reply) => {
                        settle(&mut d, &mut waiting);
                        let _ = reply.send(d.purge(index));
                    }
                }
            }
            settle(&mut d, &mut waiting);
        }
    };
    // If the thread cannot start, the queue's receiver is dropped and
    // every write fails as "the writer thread is gone".
    let _ = std::thread::Builder::new()
        .name("raft-log-writer".into())
        .spawn(run);
    tx
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let c = self.shared.cache.lock();
        Ok(c.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let c = self.shared.cache.lock();
        let last = c
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(c.purged);
        Ok(LogState {
            last_purged_log_id: c.purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes = postcard::to_allocvec(vote)
            .map_err(|e| StorageError::from(StorageIOError::write_vote(AnyError::new(&e))))?;
        self.shared
            .meta
            .write(VOTE, &bytes)
            .map_err(|e| StorageError::from(StorageIOError::write_vote(AnyError::new(&e))))?;
        self.shared.cache.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.shared.cache.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let bytes = postcard::to_allocvec(&committed)
            .map_err(|e| StorageError::from(StorageIOError::write(AnyError::new(&e))))?;
        self.shared
            .meta
            .write_unsynced(COMMITTED, &bytes)
            .map_err(|e| StorageError::from(StorageIOError::write(AnyError::new(&e))))?;
        self.shared.cache.lock().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.shared.cache.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut items = Vec::with_capacity(entries.len());
        for e in &entries {
            let bytes = postcard::to_allocvec(e).map_err(|err| {
                StorageError::from(StorageIOError::write_log_entry(
                    e.log_id,
                    AnyError::new(&err),
                ))
            })?;
            items.push((e.log_id.index, bytes));
        }
        {
            let mut c = self.shared.cache.lock();
            for e in entries {
                c.entries.insert(e.log_id.index, e);
            }
        }
        match &self.shared.queue {
            Some(q) => {
                if let Err(crossbeam_channel::SendError(job)) = q.send(Job::Append {
                    items,
                    done: callback,
                }) {
                    let e = LogStoreError::Failed("the writer thread is gone".into());
                    if let Job::Append { done, .. } = job {
                        done.log_io_completed(Err(io::Error::other(e.to_string())));
                    }
                    return Err(storage_error(&e, true));
                }
                Ok(())
            }
            None => {
                let r = {
                    let mut d = self.shared.disk.lock();
                    d.write(&items).and_then(|()| d.sync())
                };
                match r {
                    Ok(()) => {
                        callback.log_io_completed(Ok(()));
                        Ok(())
                    }
                    Err(e) => {
                        callback.log_io_completed(Err(io::Error::other(e.to_string())));
                        Err(storage_error(&e, true))
                    }
                }
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let index = log_id.index;
        self.shared.cache.lock().entries.split_off(&index);
        self.barrier(|tx| Job::Truncate(index, tx), |d| d.truncate(index))
            .map_err(|e| storage_error(&e, true))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes = postcard::to_allocvec(&log_id)
            .map_err(|e| StorageError::from(StorageIOError::write_logs(AnyError::new(&e))))?;
        self.shared
            .meta
            .write(PURGED, &bytes)
            .map_err(|e| StorageError::from(StorageIOError::write_logs(AnyError::new(&e))))?;
        {
            let mut c = self.shared.cache.lock();
            c.entries = c.entries.split_off(&(log_id.index + 1));
            c.purged = Some(log_id);
        }
        let index = log_id.index;
        self.barrier(|tx| Job::Purge(index, tx), |d| d.purge(index))
            .map_err(|e| storage_error(&e, true))
    }
}
