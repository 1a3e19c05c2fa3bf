//! [`FileStorage`]: the journal in a directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use super::storage::Storage;
use crate::error::Error;

const SEGMENT_EXT: &str = "log";
const SNAPSHOT_EXT: &str = "snapshot";
const TMP_EXT: &str = "tmp";

/// The journal in a directory of its own.
///
/// - Log segments are files `00000000000000000001.log`, named by the LSN
///   of their first record in 20 digits; records are appended to the
///   newest one and synced with `fdatasync`.
/// - Snapshots are files `00000000000000000001.snapshot`, written as a
///   `.tmp` file, synced, renamed into place, and the directory synced:
///   after a crash a snapshot is whole or absent.
/// - A new segment's directory entry is synced before it is written to.
///
/// One engine per directory: the host must not open the same directory
/// from two engines (or two processes) at once.
///
/// ```no_run
/// use graph_lifecycle::journal::{Durability, FileStorage, JournalOptions};
/// use graph_lifecycle::Engine;
///
/// let storage = FileStorage::open("/var/lib/my-engine/lifecycle")?;
/// let (engine, jobs, report) = Engine::builder()
///     .open_durable(storage, JournalOptions::new(Durability::SyncEveryCommit))?;
/// # Ok::<(), graph_lifecycle::Error>(())
/// ```
#[derive(Debug)]
pub struct FileStorage {
    dir: PathBuf,
    /// The newest segment, open for appending, once something was written.
    log: Mutex<Option<(u64, File)>>,
}

impl FileStorage {
    /// Opens (and creates, if missing) the journal directory. Leftover
    /// `.tmp` files of a snapshot interrupted by a crash are removed.
    ///
    /// # Errors
    ///
    /// [`Error::Journal`] if the directory cannot be created or read.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, Error> {
        let dir = dir.as_ref().to_path_buf();
        let fail = |what: &str, e: io::Error| Error::Journal {
            detail: format!("{what} {}: {e}", dir.display()),
        };
        fs::create_dir_all(&dir).map_err(|e| fail("cannot create", e))?;
        let entries = fs::read_dir(&dir).map_err(|e| fail("cannot read", e))?;
        for entry in entries {
            let path = entry.map_err(|e| fail("cannot read", e))?.path();
            if path.extension().is_some_and(|x| x == TMP_EXT) {
                fs::remove_file(&path).map_err(|e| fail("cannot clean up", e))?;
            }
        }
        Ok(Self {
            dir,
            log: Mutex::new(None),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, n: u64, ext: &str) -> PathBuf {
        self.dir.join(format!("{n:020}.{ext}"))
    }

    /// The numbers of the files with extension `ext`, ascending.
    fn list(&self, ext: &str) -> io::Result<Vec<u64>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some((stem, x)) = name.split_once('.') else {
                continue;
            };
            if x == ext
                && stem.len() == 20
                && stem.bytes().all(|b| b.is_ascii_digit())
                && let Ok(n) = stem.parse()
            {
                out.push(n);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    fn open_append(&self, first_lsn: u64) -> io::Result<File> {
        OpenOptions::new()
            .append(true)
            .open(self.path(first_lsn, SEGMENT_EXT))
    }
}

impl Storage for FileStorage {
    fn segments(&self) -> io::Result<Vec<u64>> {
        self.list(SEGMENT_EXT)
    }

    fn read_segment(&self, first_lsn: u64) -> io::Result<Vec<u8>> {
        fs::read(self.path(first_lsn, SEGMENT_EXT))
    }

    fn create_segment(&self, first_lsn: u64) -> io::Result<()> {
        let path = self.path(first_lsn, SEGMENT_EXT);
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        file.sync_all()?;
        self.sync_dir()?;
        drop(file);
        *self.log.lock() = Some((first_lsn, self.open_append(first_lsn)?));
        Ok(())
    }

    fn append(&self, bytes: &[u8]) -> io::Result<()> {
        let mut log = self.log.lock();
        if log.is_none() {
            let newest = self.segments()?.last().copied().ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "no log segment to append to")
            })?;
            *log = Some((newest, self.open_append(newest)?));
        }
        match &mut *log {
            Some((_, file)) => file.write_all(bytes),
            None => Ok(()),
        }
    }

    fn sync(&self) -> io::Result<()> {
        let mut log = self.log.lock();
        if log.is_none() {
            // Nothing appended since opening: sync what an earlier run
            // may have left unsynced.
            let Some(&newest) = self.segments()?.last() else {
                return Ok(());
            };
            *log = Some((newest, self.open_append(newest)?));
        }
        match &*log {
            Some((_, file)) => file.sync_data(),
            None => Ok(()),
        }
    }

    fn truncate_segment(&self, first_lsn: u64, len: u64) -> io::Result<()> {
        let file = OpenOptions::new()
            .write(true)
            .open(self.path(first_lsn, SEGMENT_EXT))?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn remove_segment(&self, first_lsn: u64) -> io::Result<()> {
        let mut log = self.log.lock();
        if log.as_ref().is_some_and(|(n, _)| *n == first_lsn) {
            *log = None;
        }
        fs::remove_file(self.path(first_lsn, SEGMENT_EXT))
    }

    fn snapshots(&self) -> io::Result<Vec<u64>> {
        self.list(SNAPSHOT_EXT)
    }

    fn read_snapshot(&self, lsn: u64) -> io::Result<Vec<u8>> {
        fs::read(self.path(lsn, SNAPSHOT_EXT))
    }

    fn write_snapshot(&self, lsn: u64, bytes: &[u8]) -> io::Result<()> {
        let path = self.path(lsn, SNAPSHOT_EXT);
        let tmp = path.with_extension(format!("{SNAPSHOT_EXT}.{TMP_EXT}"));
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, &path)?;
        self.sync_dir()
    }

    fn remove_snapshot(&self, lsn: u64) -> io::Result<()> {
        fs::remove_file(self.path(lsn, SNAPSHOT_EXT))
    }

    fn segment_name(&self, first_lsn: u64) -> String {
        self.path(first_lsn, SEGMENT_EXT).display().to_string()
    }

    fn snapshot_name(&self, lsn: u64) -> String {
        self.path(lsn, SNAPSHOT_EXT).display().to_string()
    }
}
