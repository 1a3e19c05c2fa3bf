//! The journal's writer, the engine's [`CommitLog`]: the commit gate, the
//! record buffer, group commit and the durability policies.
//!
//! A command's path through it (the engine calls these, through the seam):
//!
//! 1. `prepare`, before any lock: refuses if the journal has failed,
//!    encodes the command, and takes the commit gate (read).
//! 2. `append`, under the graph's lock once the command changed the
//!    state: the command's outcome is added to the record, the record
//!    gets the next LSN and goes into the buffer (the buffer's mutex,
//!    briefly), and the gate is released.
//! 3. `finish`, after the graph's lock is released: waits until the
//!    record is written (and synced) as the policy asks, and wakes the
//!    snapshot thread if a snapshot is due. It never builds one itself.
//!
//! Waiting: whoever finds its record not yet written and no write under
//! way becomes the **leader**: it takes records out of the buffer, writes
//! them and syncs them with the buffer's mutex released. The others
//! register and park. When the write ends, the leader wakes exactly the
//! waiters it covered and hands the lead to one waiter it did not cover,
//! if any; the rest stay parked until a later write covers them, rather
//! than all waking to find they must wait again. Under [`Durability::SyncEveryCommit`] a leader writes up to
//! its own record; under [`Durability::GroupCommit`] it writes everything
//! buffered, so one sync acknowledges many commits, and, when fewer
//! records are buffered than the last batch had while commands are still
//! on their way, waits a moment for them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use graph_lifecycle::{Command, CommitLog, Error, Image, LogError, Outcome};
use parking_lot::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use crate::error::JournalError;
use crate::frame::{HEADER_LEN, MAX_PAYLOAD_LEN, SegmentHeader, reseal_chunk, seal_frame};
use crate::snapshot;
use crate::storage::Storage;

/// When a committed command counts as done, and what a crash can take.
///
/// Every policy journals every committed command, in commit order per
/// graph, and recovery replays whatever reached the disk. They differ in
/// when the call that made the command returns:
///
/// | policy | the call returns once its record is | a process crash loses | a power cut loses |
/// |---|---|---|---|
/// | `SyncEveryCommit` | written and synced (`fdatasync`) | nothing acknowledged | nothing acknowledged |
/// | `GroupCommit` | written and synced, in a batch | nothing acknowledged | nothing acknowledged |
/// | `NoSync` | written to the operating system | nothing acknowledged | any command written since the last sync: on Linux by default up to about 30 seconds of commands |
///
/// In every policy a command whose call had not returned when the crash
/// came may or may not be there after recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Each commit writes its record and syncs before its call returns:
    /// one sync per commit (commits arriving while a sync runs wait for
    /// the next one). The safest and the slowest.
    #[default]
    SyncEveryCommit,
    /// Commits share syncs: the first commit to wait leads; it waits, at
    /// most `max_delay`, for as many records as the previous batch and
    /// the commits that arrived while it was written (a measure of how
    /// many threads commit at once) and for the commands already under
    /// way, then writes and syncs every record buffered. Each call
    /// returns once its record is synced. A thread that commits alone
    /// does not wait at all. As safe as `SyncEveryCommit`, with more
    /// commits per second when several threads commit at once;
    /// `max_delay` bounds the extra latency (a millisecond is plenty:
    /// commands take microseconds to apply).
    GroupCommit {
        /// The longest a batch waits for commands under way.
        max_delay: Duration,
    },
    /// Each commit is written to the operating system before its call
    /// returns, never synced by the engine (except when a segment is full,
    /// at a snapshot, at [`Journal::sync`](crate::Journal::sync) and when
    /// the journal is dropped). Survives a crash of the process; a power
    /// cut or a kernel crash can lose acknowledged commands.
    NoSync,
}

/// Options of a durable engine: [`Durability`], segment size, snapshots,
/// and what to do about corruption.
///
/// ```
/// use graph_lifecycle_journal::{Durability, JournalOptions, Recovery};
/// use std::time::Duration;
/// let options = JournalOptions::new(Durability::GroupCommit { max_delay: Duration::ZERO })
///     .segment_bytes(64 << 20)
///     .snapshot_after_bytes(Some(256 << 20))
///     .recovery(Recovery::Strict);
/// # let _ = options;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalOptions {
    /// When a commit counts as done (default: sync every commit).
    pub durability: Durability,
    /// A log segment is closed, synced and a new one started once it holds
    /// this many bytes (default 16 MiB). Compaction deletes whole
    /// segments.
    pub segment_bytes: u64,
    /// Take a snapshot automatically once the log written since the last
    /// one holds this many bytes, or as many bytes as the last snapshot,
    /// whichever is more (default 64 MiB); `None` leaves snapshots to
    /// [`Journal::snapshot`](crate::Journal::snapshot). The commit that
    /// crosses the line wakes the journal's snapshot thread, which takes
    /// the snapshot while commands go on (they wait only while the state
    /// is copied); no commit ever builds one.
    pub snapshot_after_bytes: Option<u64>,
    /// What opening does about a corrupt record in the middle of the log
    /// (default: refuse to open).
    pub recovery: Recovery,
}

impl Default for JournalOptions {
    fn default() -> Self {
        Self::new(Durability::default())
    }
}

impl JournalOptions {
    /// The defaults, with `durability`.
    pub fn new(durability: Durability) -> Self {
        Self {
            durability,
            segment_bytes: 16 << 20,
            snapshot_after_bytes: Some(64 << 20),
            recovery: Recovery::Strict,
        }
    }

    /// Sets [`JournalOptions::segment_bytes`] (at least 1).
    pub fn segment_bytes(mut self, n: u64) -> Self {
        self.segment_bytes = n.max(1);
        self
    }

    /// Sets [`JournalOptions::snapshot_after_bytes`].
    pub fn snapshot_after_bytes(mut self, n: Option<u64>) -> Self {
        self.snapshot_after_bytes = n;
        self
    }

    /// Sets [`JournalOptions::recovery`].
    pub fn recovery(mut self, r: Recovery) -> Self {
        self.recovery = r;
        self
    }
}

/// What opening a durable engine does about a corrupt record in the middle
/// of the log (a torn tail is always cut: it only ever holds commands
/// whose calls had not returned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Recovery {
    /// Refuse to open, with [`JournalError::Corrupt`] naming the file and
    /// the offset. Nothing is changed on disk.
    #[default]
    Strict,
    /// **Loses data.** Cut the log at the corrupt record and open with
    /// what came before it: the damaged record and every record after it,
    /// in that segment and all later ones, are deleted, acknowledged or
    /// not. The [`RecoveryReport`](super::RecoveryReport) says what was
    /// cut. For an operator who has kept a copy of the journal directory
    /// and accepts the loss.
    TruncateAtCorruption,
}

/// The journal's counters, for monitoring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalStatus {
    /// The LSN the next record will get.
    pub next_lsn: u64,
    /// Every record below this LSN is written to the storage.
    pub written: u64,
    /// Every record below this LSN is synced.
    pub durable: u64,
    /// The newest snapshot's LSN (it holds every record below it).
    pub snapshot: Option<u64>,
    /// Log bytes written since that snapshot.
    pub since_snapshot: u64,
    /// Syncs of the storage made by commits since the journal opened: with
    /// the commits made meanwhile, how many commits a sync acknowledged.
    pub syncs: u64,
    /// Why the journal stopped taking commands, if it did.
    pub failure: Option<String>,
}

/// The records not yet written, and how far writing and syncing got.
struct Buffer {
    next_lsn: u64,
    /// The LSN of the first record in `bytes`.
    first: u64,
    bytes: Vec<u8>,
    /// Where each buffered record ends in `bytes`.
    ends: VecDeque<usize>,
    /// Every record below this LSN is written.
    written: u64,
    /// Every record below this LSN is synced.
    durable: u64,
    /// A leader is writing.
    leader: bool,
    /// Commands prepared and not yet buffered (or refused).
    in_flight: usize,
    /// A group-commit leader waits for them.
    gathering: bool,
    /// How many records a group-commit batch expects: the last batch and
    /// the records that arrived while it was written, as a measure of
    /// how many threads commit at once.
    expect: usize,
    failure: Option<Arc<JournalError>>,
    spare: Vec<u8>,
    /// Threads parked until a write covers their record.
    waiting: Vec<Waiter>,
}

/// A thread waiting for its record to be written (and synced, if `sync`).
struct Waiter {
    lsn: u64,
    sync: bool,
    thread: Thread,
}

impl Buffer {
    /// Whether the record at `lsn` is written, and synced if `sync`.
    fn covers(&self, lsn: u64, sync: bool) -> bool {
        (if sync { self.durable } else { self.written }) > lsn
    }

    /// Takes the buffered records below `upto` out, with the LSN of the
    /// first.
    fn take(&mut self, upto: u64) -> Vec<u8> {
        let n = usize::try_from(upto.saturating_sub(self.first))
            .unwrap_or(usize::MAX)
            .min(self.ends.len());
        if n == 0 {
            return Vec::new();
        }
        let chunk = if n == self.ends.len() {
            self.ends.clear();
            std::mem::replace(&mut self.bytes, std::mem::take(&mut self.spare))
        } else {
            let cut = self.ends[n - 1];
            let chunk = self.bytes[..cut].to_vec();
            self.bytes.drain(..cut);
            self.ends.drain(..n);
            for e in &mut self.ends {
                *e -= cut;
            }
            chunk
        };
        self.first += n as u64;
        chunk
    }

    fn recycle(&mut self, mut chunk: Vec<u8>) {
        const KEEP: usize = 1 << 20;
        chunk.clear();
        if chunk.capacity() <= KEEP && chunk.capacity() > self.spare.capacity() {
            self.spare = chunk;
        }
    }
}

/// The log's segments, as the writer sees them.
struct Segments {
    /// First LSN of each segment, ascending; the last is being written.
    list: Vec<u64>,
    /// Bytes in the last one.
    len: u64,
    /// The salt of the last one.
    salt: u32,
    /// Every byte of the log is known to be synced.
    synced: bool,
}

/// Snapshot bookkeeping; its mutex also makes snapshots one at a time.
struct SnapState {
    last: Option<u64>,
    last_len: u64,
}

/// Where an opened journal goes on writing.
pub(crate) struct Resume {
    /// The LSN the next record gets.
    pub(crate) next_lsn: u64,
    /// The segments' first LSNs, ascending.
    pub(crate) segments: Vec<u64>,
    /// The last segment's length and salt.
    pub(crate) len: u64,
    pub(crate) salt: u32,
    /// The snapshot loaded: its LSN and size.
    pub(crate) snapshot: Option<(u64, u64)>,
}

/// The journal of a durable engine: the engine's [`CommitLog`].
pub(crate) struct Log {
    storage: Box<dyn Storage>,
    options: JournalOptions,
    /// Commands hold it (read) from before their graph's lock until their
    /// record is buffered; a snapshot holds it (write) while it copies
    /// every graph, so that the copy matches a point of the log.
    gate: RwLock<()>,
    buf: Mutex<Buffer>,
    /// Signalled when a command under way is buffered or refused, for a
    /// gathering leader.
    joined: Condvar,
    seg: Mutex<Segments>,
    snap: Mutex<SnapState>,
    failed: AtomicBool,
    since_snapshot: AtomicU64,
    /// Syncs made by [`Log::write`] ([`JournalStatus::syncs`]).
    syncs: AtomicU64,
    /// While recovery runs: commands wait to be written, not synced; the
    /// recovery syncs once at its end.
    deferred: AtomicBool,
    /// Wakes the snapshot thread.
    wake: Mutex<Option<Sender<()>>>,
}

impl Log {
    /// A journal on `storage` that takes no command until
    /// [`resume`](Self::resume) says where its log ends.
    pub(crate) fn new(storage: Box<dyn Storage>, options: JournalOptions) -> Self {
        Log {
            storage,
            options,
            gate: RwLock::new(()),
            buf: Mutex::new(Buffer {
                next_lsn: 1,
                first: 1,
                bytes: Vec::new(),
                ends: VecDeque::new(),
                written: 1,
                durable: 1,
                leader: false,
                in_flight: 0,
                gathering: false,
                expect: 1,
                failure: None,
                spare: Vec::new(),
                waiting: Vec::new(),
            }),
            joined: Condvar::new(),
            seg: Mutex::new(Segments {
                synced: true,
                list: Vec::new(),
                len: 0,
                salt: 0,
            }),
            snap: Mutex::new(SnapState {
                last: None,
                last_len: 0,
            }),
            failed: AtomicBool::new(false),
            since_snapshot: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            deferred: AtomicBool::new(false),
            wake: Mutex::new(None),
        }
    }

    pub(crate) fn storage(&self) -> &dyn Storage {
        &*self.storage
    }

    /// Sets where the log ends, once recovery has read it.
    pub(crate) fn resume(&self, r: Resume) {
        {
            let mut b = self.buf.lock();
            b.next_lsn = r.next_lsn;
            b.first = r.next_lsn;
            b.written = r.next_lsn;
            b.durable = r.next_lsn;
        }
        *self.seg.lock() = Segments {
            synced: r.segments.is_empty(),
            list: r.segments,
            len: r.len,
            salt: r.salt,
        };
        *self.snap.lock() = SnapState {
            last: r.snapshot.map(|(lsn, _)| lsn),
            last_len: r.snapshot.map_or(0, |(_, n)| n),
        };
    }

    /// Commands wait to be written only, until [`sync_all`](Self::sync_all).
    pub(crate) fn defer_syncs(&self, on: bool) {
        self.deferred.store(on, Ordering::Release);
    }

    /// From now on `finish` wakes `wake` when a snapshot is due.
    pub(crate) fn set_wake(&self, wake: Sender<()>) {
        *self.wake.lock() = Some(wake);
    }

    /// The error for a command after the journal failed.
    pub(crate) fn failure(&self) -> JournalError {
        let first = self.buf.lock().failure.clone();
        match first {
            Some(f) => JournalError::Failed(f),
            None => JournalError::Failed(Arc::new(JournalError::Io {
                op: "write",
                file: "the journal".to_owned(),
                source: std::io::Error::other("the journal failed"),
            })),
        }
    }

    /// Step 1 of a command: checks, encodes, takes the gate.
    fn prepare_command(&self, cmd: &Command) -> Result<Prepared<'_>, JournalError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(self.failure());
        }
        // Header and LSN first, filled in when the LSN is known; the
        // outcome follows the command when it is known.
        let rec =
            postcard::to_extend(cmd, vec![0u8; HEADER_LEN + 8]).map_err(JournalError::Encode)?;
        if rec.len() - HEADER_LEN > MAX_PAYLOAD_LEN {
            return Err(JournalError::TooLarge {
                size: rec.len(),
                limit: MAX_PAYLOAD_LEN,
            });
        }
        self.buf.lock().in_flight += 1;
        Ok(Prepared {
            log: self,
            gate: Some(self.gate.read()),
            rec,
            lsn: None,
            refused: false,
            under_way: true,
        })
    }

    /// Waits until every record up to `lsn` is written, and synced if
    /// `sync`, leading the write if nobody is.
    fn wait(&self, lsn: u64, sync: bool) -> Result<(), JournalError> {
        let mut b = self.buf.lock();
        loop {
            if let Some(f) = &b.failure {
                return Err(JournalError::Failed(f.clone()));
            }
            if b.covers(lsn, sync) {
                return Ok(());
            }
            if b.leader {
                b.waiting.push(Waiter {
                    lsn,
                    sync,
                    thread: std::thread::current(),
                });
                drop(b);
                // Until a leader wakes this thread (a wake-up before the
                // park makes the park return at once); a spurious wake-up
                // only looks again.
                std::thread::park();
                b = self.buf.lock();
                continue;
            }
            b.leader = true;
            self.lead(&mut b, lsn, sync);
            b.leader = false;
            // The covered waiters go; one of the others, if any, takes the
            // lead next. A failure wakes everyone, to see it.
            let failed = b.failure.is_some();
            let mut wake: Vec<Thread> = Vec::new();
            let mut i = 0;
            while i < b.waiting.len() {
                let w = &b.waiting[i];
                if failed || b.covers(w.lsn, w.sync) {
                    wake.push(b.waiting.swap_remove(i).thread);
                } else {
                    i += 1;
                }
            }
            if let Some(next) = b.waiting.pop() {
                wake.push(next.thread);
            }
            MutexGuard::unlocked(&mut b, || {
                for t in wake {
                    t.unpark();
                }
            });
        }
    }

    /// One write (and sync) by the leader, the buffer unlocked meanwhile.
    fn lead(&self, b: &mut MutexGuard<'_, Buffer>, lsn: u64, sync: bool) {
        let policy = self.options.durability;
        if let Durability::GroupCommit { max_delay } = policy {
            // Wait for as much company as the last batch had, and for the
            // commands already under way; alone, do not wait at all.
            let until = Instant::now() + max_delay;
            while b.ends.len() < b.expect && b.in_flight > 0 {
                b.gathering = true;
                if self.joined.wait_until(b, until).timed_out() {
                    break;
                }
            }
            b.gathering = false;
        }
        let upto = match policy {
            Durability::SyncEveryCommit => lsn + 1,
            _ => b.next_lsn,
        };
        let first = b.first;
        let mut chunk = b.take(upto);
        let upto = b.first;
        let sync = sync || (policy != Durability::NoSync && !self.deferred.load(Ordering::Acquire));
        let result = MutexGuard::unlocked(b, || self.write(first, &mut chunk, sync));
        b.expect = usize::try_from(upto - first)
            .unwrap_or(usize::MAX)
            .saturating_add(b.ends.len())
            .max(1);
        match result {
            Ok(()) => {
                b.written = b.written.max(upto);
                if sync {
                    b.durable = b.written;
                }
                b.recycle(chunk);
            }
            Err(e) => {
                b.failure = Some(Arc::new(e));
                self.failed.store(true, Ordering::Release);
            }
        }
    }

    /// Writes whole records starting at LSN `first`, starting a new
    /// segment first if there is none or the current one is full. The
    /// records are sealed here, with the segment's salt; the first gets
    /// the sync mark if every byte before it is synced: always under the
    /// sync policies (after one extra sync, the first time after opening).
    fn write(&self, first: u64, chunk: &mut [u8], sync: bool) -> Result<(), JournalError> {
        let mut seg = self.seg.lock();
        let st = &*self.storage;
        let name = |seg: &Segments| {
            seg.list
                .last()
                .map_or_else(|| "the log".to_owned(), |n| st.segment_name(*n))
        };
        let sync_storage = |seg: &Segments| {
            st.sync().map_err(JournalError::io("sync", name(seg)))?;
            self.syncs.fetch_add(1, Ordering::Relaxed);
            Ok::<(), JournalError>(())
        };
        if !chunk.is_empty() {
            if seg.list.is_empty() || seg.len >= self.options.segment_bytes {
                if !seg.list.is_empty() {
                    sync_storage(&seg)?;
                }
                let header = SegmentHeader::new(first).map_err(JournalError::Random)?;
                let bytes = header.encode();
                st.create_segment(first, &bytes)
                    .map_err(JournalError::io("create", st.segment_name(first)))?;
                seg.list.push(first);
                seg.len = bytes.len() as u64;
                seg.salt = header.salt;
                seg.synced = true;
            }
            let deferred = self.deferred.load(Ordering::Acquire);
            if !seg.synced && self.options.durability != Durability::NoSync && !deferred {
                sync_storage(&seg)?;
                seg.synced = true;
            }
            reseal_chunk(chunk, seg.salt, seg.synced);
            seg.synced = false;
            st.append(chunk)
                .map_err(JournalError::io("write to", name(&seg)))?;
            seg.len += chunk.len() as u64;
            self.since_snapshot
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        if sync {
            sync_storage(&seg)?;
            seg.synced = true;
        }
        Ok(())
    }

    /// Writes and syncs everything committed so far.
    pub(crate) fn sync_all(&self) -> Result<(), JournalError> {
        let last = self.buf.lock().next_lsn;
        match last.checked_sub(1) {
            Some(lsn) => self.wait(lsn, true),
            None => Ok(()),
        }
    }

    /// Whether the log has grown enough since the last snapshot for an
    /// automatic one (a cheap check without the snapshot lock).
    fn snapshot_due(&self) -> bool {
        self.options
            .snapshot_after_bytes
            .is_some_and(|min| self.since_snapshot.load(Ordering::Relaxed) >= min)
    }

    /// Takes a snapshot: copies the engine's state (`capture`, run with
    /// the gate held for writing, so the copy holds exactly the records
    /// below the next LSN), syncs the log up to there, encodes and stores
    /// the snapshot and compacts, with the gate released. `auto`: only if
    /// one is due and none is being taken. Returns the snapshot's LSN
    /// (`None`: an automatic one was not due).
    pub(crate) fn snapshot(
        &self,
        capture: impl FnOnce() -> Image,
        auto: bool,
    ) -> Result<Option<u64>, JournalError> {
        let mut snap = if auto {
            let Some(snap) = self.snap.try_lock() else {
                return Ok(None);
            };
            let since = self.since_snapshot.load(Ordering::Relaxed);
            if !self.snapshot_due() || since < snap.last_len {
                return Ok(None);
            }
            snap
        } else {
            self.snap.lock()
        };
        let (image, lsn, counted) = {
            let _gate = self.gate.write();
            if self.failed.load(Ordering::Acquire) {
                return Err(self.failure());
            }
            let image = capture();
            // The log written so far is what this snapshot replaces; what
            // is written from here on counts towards the next one.
            let counted = self.since_snapshot.load(Ordering::Relaxed);
            (image, self.buf.lock().next_lsn, counted)
        };
        if snap.last == Some(lsn) {
            return Ok(Some(lsn));
        }
        if let Some(last) = lsn.checked_sub(1) {
            self.wait(last, true)?;
        }
        let bytes = snapshot::encode(lsn, &image);
        drop(image);
        let st = &*self.storage;
        let stored = st.write_snapshot(lsn, &bytes);
        // Counted as taken even if it failed: an automatic snapshot is
        // retried after as much log again, not at every commit. Only this
        // thread (holding `snap`) takes from the count, so it does not go
        // below what it read.
        self.since_snapshot.fetch_sub(counted, Ordering::Relaxed);
        stored.map_err(JournalError::io("write", st.snapshot_name(lsn)))?;
        snap.last = Some(lsn);
        snap.last_len = bytes.len() as u64;
        self.compact()?;
        Ok(Some(lsn))
    }

    /// Deletes snapshots older than the two newest, and the segments that
    /// hold only records below the older of those two (kept so that a
    /// damaged newest snapshot can be passed over).
    fn compact(&self) -> Result<(), JournalError> {
        let st = &*self.storage;
        let snaps = st
            .snapshots()
            .map_err(JournalError::io("list the snapshots of", "the journal"))?;
        let Some(&floor) = snaps.len().checked_sub(2).and_then(|i| snaps.get(i)) else {
            return Ok(());
        };
        for &s in snaps.iter().filter(|&&s| s < floor) {
            st.remove_snapshot(s)
                .map_err(JournalError::io("remove", st.snapshot_name(s)))?;
        }
        let mut seg = self.seg.lock();
        let drop_n = seg.list.windows(2).take_while(|w| w[1] <= floor).count();
        for &n in &seg.list[..drop_n] {
            st.remove_segment(n)
                .map_err(JournalError::io("remove", st.segment_name(n)))?;
        }
        seg.list.drain(..drop_n);
        Ok(())
    }

    /// The journal's counters.
    pub(crate) fn status(&self) -> JournalStatus {
        let snapshot = self.snap.lock().last;
        let b = self.buf.lock();
        JournalStatus {
            next_lsn: b.next_lsn,
            written: b.written,
            durable: b.durable,
            snapshot,
            since_snapshot: self.since_snapshot.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
            failure: b.failure.as_ref().map(|f| f.to_string()),
        }
    }
}

impl Drop for Log {
    /// Best effort: what `NoSync` wrote reaches the disk when the journal
    /// goes away in good order.
    fn drop(&mut self) {
        if !self.failed.load(Ordering::Acquire) {
            let _ = self.storage.sync();
        }
    }
}

/// A command on its way into the journal.
pub(crate) struct Prepared<'a> {
    log: &'a Log,
    gate: Option<RwLockReadGuard<'a, ()>>,
    /// The record: header and LSN to fill in, then the command, then the
    /// outcome once it is known.
    rec: Vec<u8>,
    lsn: Option<u64>,
    /// The journal failed before the record could be buffered.
    refused: bool,
    /// Counted in [`Buffer::in_flight`].
    under_way: bool,
}

impl Drop for Prepared<'_> {
    fn drop(&mut self) {
        if self.under_way {
            let log = self.log;
            let mut b = log.buf.lock();
            log.arrived(self, &mut b);
        }
    }
}

impl Log {
    /// No longer under way: a gathering leader need not wait for it.
    fn arrived(&self, p: &mut Prepared<'_>, b: &mut Buffer) {
        if std::mem::take(&mut p.under_way) {
            b.in_flight -= 1;
            if b.gathering {
                self.joined.notify_one();
            }
        }
    }
}

impl CommitLog for Log {
    type Pending<'a> = Prepared<'a>;

    fn prepare<'a>(&'a self, cmd: &Command) -> Result<Prepared<'a>, LogError> {
        self.prepare_command(cmd).map_err(LogError::new)
    }

    /// Under the graph's lock, once the command changed the state: the
    /// outcome joins the record, which takes the next LSN and enters the
    /// buffer, unsealed: the leader seals it with its segment's salt.
    fn append<'a>(&'a self, p: &mut Prepared<'a>, outcome: &Result<Outcome, Error>) {
        let mut b = self.buf.lock();
        self.arrived(p, &mut b);
        let rec = std::mem::take(&mut p.rec);
        match postcard::to_extend(outcome, rec) {
            Ok(rec) if b.failure.is_none() => {
                let mut rec = rec;
                let lsn = b.next_lsn;
                b.next_lsn += 1;
                rec[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&lsn.to_le_bytes());
                seal_frame(&mut rec, 0, false);
                b.bytes.extend_from_slice(&rec);
                let end = b.bytes.len();
                b.ends.push_back(end);
                p.lsn = Some(lsn);
            }
            Ok(_) => p.refused = true,
            Err(e) => {
                // An outcome that does not encode cannot be replayed: the
                // journal stops here rather than keep a log it cannot
                // read back.
                b.failure = Some(Arc::new(JournalError::Encode(e)));
                self.failed.store(true, Ordering::Release);
                p.refused = true;
            }
        }
        drop(b);
        p.gate = None;
    }

    /// With no lock of the engine held: waits until the record is as
    /// durable as the policy asks, then wakes the snapshot thread if a
    /// snapshot is due.
    fn finish<'a>(&'a self, mut p: Prepared<'a>) -> Result<(), LogError> {
        p.gate = None;
        if p.under_way {
            let mut b = self.buf.lock();
            self.arrived(&mut p, &mut b);
        }
        if p.refused {
            return Err(LogError::new(self.failure()));
        }
        let Some(lsn) = p.lsn else {
            return Ok(());
        };
        let sync =
            self.options.durability != Durability::NoSync && !self.deferred.load(Ordering::Acquire);
        self.wait(lsn, sync).map_err(LogError::new)?;
        if self.snapshot_due()
            && let Some(wake) = &*self.wake.lock()
        {
            // The thread may be busy with a snapshot already: then this
            // one is not needed.
            let _ = wake.try_send(());
        }
        Ok(())
    }
}
