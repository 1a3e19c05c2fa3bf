//! [`MemStorage`]: the journal in memory, for tests.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use parking_lot::Mutex;

use super::storage::Storage;

/// The journal in memory, for tests: it keeps what a disk would keep, and
/// can show what a power cut would leave ([`crash`](Self::crash)) and fail
/// like a dying disk ([`fail_after`](Self::fail_after)).
///
/// Cloning gives another handle to the same storage, so a test can keep
/// one while an engine writes through the other.
///
/// ```
/// use graph_lifecycle::{Engine, GraphKey, GraphState};
/// use graph_lifecycle_journal::{Durability, JournalOptions, MemStorage, open};
///
/// let disk = MemStorage::new();
/// let key = GraphKey::parse("p", "g")?;
/// {
///     let durable = open(Engine::builder(), disk.clone(), JournalOptions::new(Durability::SyncEveryCommit))?;
///     durable.engine.create_graph(&key)?;
///     durable.engine.start(&key)?;
/// } // the process dies here, with the start job live
/// let durable = open(Engine::builder(), disk.crash(), JournalOptions::default())?;
/// assert_eq!(durable.report.interrupted, 1);
/// assert_eq!(durable.engine.state(&key)?, GraphState::Abnormal);
/// durable.engine.force_restart(&key)?; // and on it goes
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemStorage(Arc<Mutex<Inner>>);

#[derive(Debug, Default)]
struct Inner {
    segments: BTreeMap<u64, Seg>,
    snapshots: BTreeMap<u64, Vec<u8>>,
    /// Writes (appends, syncs, creations) left before the disk dies.
    fail_in: Option<u64>,
    dead: bool,
}

#[derive(Debug, Default, Clone)]
struct Seg {
    bytes: Vec<u8>,
    /// How many of `bytes` a sync made durable.
    synced: usize,
}

fn dead() -> io::Error {
    io::Error::other("the storage failed (injected by MemStorage::fail_after)")
}

fn missing(what: &str, n: u64) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no {what} {n}"))
}

impl Inner {
    /// Counts one write against the failure plan.
    fn write_op(&mut self) -> io::Result<()> {
        if self.dead {
            return Err(dead());
        }
        match &mut self.fail_in {
            Some(0) => {
                self.dead = true;
                Err(dead())
            }
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl MemStorage {
    /// An empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// What a power cut would leave now: a new, independent storage in
    /// which every segment holds only the bytes synced to it. Snapshots,
    /// created segments and truncations were durable already.
    pub fn crash(&self) -> MemStorage {
        self.crash_keeping(0)
    }

    /// Like [`crash`](Self::crash), but up to `unsynced` bytes appended
    /// after the last sync of each segment survive too, as a torn write
    /// would leave them.
    pub fn crash_keeping(&self, unsynced: usize) -> MemStorage {
        let inner = self.0.lock();
        let segments = inner
            .segments
            .iter()
            .map(|(n, s)| {
                let keep = s.synced.saturating_add(unsynced).min(s.bytes.len());
                let bytes = s.bytes[..keep].to_vec();
                (
                    *n,
                    Seg {
                        synced: keep,
                        bytes,
                    },
                )
            })
            .collect();
        MemStorage(Arc::new(Mutex::new(Inner {
            segments,
            snapshots: inner.snapshots.clone(),
            fail_in: None,
            dead: false,
        })))
    }

    /// Makes the disk die: the `writes`-th write from now (an append, a
    /// sync, a new segment, a truncation or a snapshot; 0 is the next one)
    /// fails, and so does every write after it. A failing append writes
    /// half of its bytes first, as a short write would. Reads keep
    /// working.
    pub fn fail_after(&self, writes: u64) {
        self.0.lock().fail_in = Some(writes);
    }

    /// Replaces a segment's bytes, all of them counted as synced: for
    /// tests that damage a journal.
    pub fn put_segment(&self, first_lsn: u64, bytes: Vec<u8>) {
        let synced = bytes.len();
        self.0
            .lock()
            .segments
            .insert(first_lsn, Seg { bytes, synced });
    }

    /// Replaces a snapshot's bytes: for tests that damage a snapshot.
    pub fn put_snapshot(&self, lsn: u64, bytes: Vec<u8>) {
        self.0.lock().snapshots.insert(lsn, bytes);
    }
}

impl Storage for MemStorage {
    fn segments(&self) -> io::Result<Vec<u64>> {
        Ok(self.0.lock().segments.keys().copied().collect())
    }

    fn read_segment(&self, first_lsn: u64) -> io::Result<Vec<u8>> {
        self.0
            .lock()
            .segments
            .get(&first_lsn)
            .map(|s| s.bytes.clone())
            .ok_or_else(|| missing("segment", first_lsn))
    }

    fn create_segment(&self, first_lsn: u64, header: &[u8]) -> io::Result<()> {
        let mut inner = self.0.lock();
        inner.write_op()?;
        inner.segments.insert(
            first_lsn,
            Seg {
                bytes: header.to_vec(),
                synced: header.len(),
            },
        );
        Ok(())
    }

    fn append(&self, bytes: &[u8]) -> io::Result<()> {
        let mut inner = self.0.lock();
        let fails = inner.write_op().err();
        let Some((_, seg)) = inner.segments.iter_mut().next_back() else {
            return Err(missing("segment", 0));
        };
        match fails {
            None => {
                seg.bytes.extend_from_slice(bytes);
                Ok(())
            }
            Some(e) => {
                seg.bytes.extend_from_slice(&bytes[..bytes.len() / 2]);
                Err(e)
            }
        }
    }

    fn sync(&self) -> io::Result<()> {
        let mut inner = self.0.lock();
        inner.write_op()?;
        if let Some((_, seg)) = inner.segments.iter_mut().next_back() {
            seg.synced = seg.bytes.len();
        }
        Ok(())
    }

    fn truncate_segment(&self, first_lsn: u64, len: u64) -> io::Result<()> {
        let mut inner = self.0.lock();
        inner.write_op()?;
        let seg = inner
            .segments
            .get_mut(&first_lsn)
            .ok_or_else(|| missing("segment", first_lsn))?;
        let len = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .min(seg.bytes.len());
        seg.bytes.truncate(len);
        seg.synced = seg.synced.min(len);
        Ok(())
    }

    fn remove_segment(&self, first_lsn: u64) -> io::Result<()> {
        self.0
            .lock()
            .segments
            .remove(&first_lsn)
            .map(drop)
            .ok_or_else(|| missing("segment", first_lsn))
    }

    fn snapshots(&self) -> io::Result<Vec<u64>> {
        Ok(self.0.lock().snapshots.keys().copied().collect())
    }

    fn read_snapshot(&self, lsn: u64) -> io::Result<Vec<u8>> {
        self.0
            .lock()
            .snapshots
            .get(&lsn)
            .cloned()
            .ok_or_else(|| missing("snapshot", lsn))
    }

    fn write_snapshot(&self, lsn: u64, bytes: &[u8]) -> io::Result<()> {
        let mut inner = self.0.lock();
        inner.write_op()?;
        inner.snapshots.insert(lsn, bytes.to_vec());
        Ok(())
    }

    fn remove_snapshot(&self, lsn: u64) -> io::Result<()> {
        self.0
            .lock()
            .snapshots
            .remove(&lsn)
            .map(drop)
            .ok_or_else(|| missing("snapshot", lsn))
    }

    fn segment_name(&self, first_lsn: u64) -> String {
        format!("memory segment {first_lsn}")
    }

    fn snapshot_name(&self, lsn: u64) -> String {
        format!("memory snapshot {lsn}")
    }
}
