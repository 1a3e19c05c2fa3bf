//! [`FileStorage`]: the journal in a directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::error::JournalError;
use crate::storage::Storage;

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
/// - Every change to the directory (a segment made, a snapshot renamed, a
///   file deleted) is followed by a sync of the directory before the call
///   returns, and a directory the journal creates is synced into its
///   parent: a power cut can neither bring a deleted segment back nor lose
///   a new one.
///
/// One engine per directory: the host must not open the same directory
/// from two engines (or two processes) at once.
///
/// ```no_run
/// use graph_lifecycle::Engine;
/// use graph_lifecycle_journal::{Durability, FileStorage, JournalOptions, open};
///
/// let storage = FileStorage::open("/var/lib/my-engine/lifecycle")?;
/// let durable = open(Engine::builder(), storage, JournalOptions::new(Durability::SyncEveryCommit))?;
/// # Ok::<(), graph_lifecycle_journal::JournalError>(())
/// ```
#[derive(Debug)]
pub struct FileStorage {
    dir: PathBuf,
    /// The newest segment, open for appending, once something was written.
    log: Mutex<Option<(u64, File)>>,
    /// What was done to the directory, in order, for the tests that check
    /// each change is synced.
    #[cfg(test)]
    trace: Mutex<Vec<String>>,
}

impl FileStorage {
    /// Opens (and creates, if missing) the journal directory. Leftover
    /// `.tmp` files of a snapshot interrupted by a crash are removed.
    ///
    /// # Errors
    ///
    /// [`JournalError::Io`] if the directory cannot be created, synced or
    /// read.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, JournalError> {
        let dir = dir.as_ref().to_path_buf();
        let name = dir.display().to_string();
        let fail = |op| JournalError::io(op, name.clone());
        let storage = Self {
            dir,
            log: Mutex::new(None),
            #[cfg(test)]
            trace: Mutex::new(Vec::new()),
        };
        storage
            .create_dirs()
            .map_err(fail("create the journal directory"))?;
        let entries = fs::read_dir(&storage.dir).map_err(fail("read"))?;
        let mut cleaned = false;
        for entry in entries {
            let path = entry.map_err(fail("read"))?.path();
            if path.extension().is_some_and(|x| x == TMP_EXT) {
                fs::remove_file(&path).map_err(fail("clean up"))?;
                cleaned = true;
            }
        }
        if cleaned {
            storage.sync_dir().map_err(fail("sync"))?;
        }
        Ok(storage)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory and any missing parent, syncing each new one
    /// into its parent.
    fn create_dirs(&self) -> io::Result<()> {
        let mut missing = Vec::new();
        let mut d = self.dir.as_path();
        while !d.as_os_str().is_empty() && !d.exists() {
            missing.push(d.to_path_buf());
            match d.parent() {
                Some(p) => d = p,
                None => break,
            }
        }
        for new in missing.iter().rev() {
            fs::create_dir(new).or_else(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => Ok(()),
                _ => Err(e),
            })?;
            self.trace(format!("mkdir {}", new.display()));
            let parent = new.parent().filter(|p| !p.as_os_str().is_empty());
            sync_dir_at(parent.unwrap_or(Path::new(".")))?;
            self.trace(format!(
                "sync-dir {}",
                parent.unwrap_or(Path::new(".")).display()
            ));
        }
        Ok(())
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
        sync_dir_at(&self.dir)?;
        self.trace("sync-dir".to_owned());
        Ok(())
    }

    /// Deletes a file and syncs the directory, so that the deletion
    /// survives a power cut.
    fn unlink(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)?;
        self.trace(format!(
            "unlink {}",
            path.file_name().unwrap_or_default().to_string_lossy()
        ));
        self.sync_dir()
    }

    fn open_append(&self, first_lsn: u64) -> io::Result<File> {
        OpenOptions::new()
            .append(true)
            .open(self.path(first_lsn, SEGMENT_EXT))
    }

    #[cfg(test)]
    fn trace(&self, what: String) {
        self.trace.lock().push(what);
    }

    #[cfg(not(test))]
    #[inline]
    fn trace(&self, _: String) {}
}

fn sync_dir_at(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Storage for FileStorage {
    fn segments(&self) -> io::Result<Vec<u64>> {
        self.list(SEGMENT_EXT)
    }

    fn read_segment(&self, first_lsn: u64) -> io::Result<Vec<u8>> {
        fs::read(self.path(first_lsn, SEGMENT_EXT))
    }

    fn create_segment(&self, first_lsn: u64, header: &[u8]) -> io::Result<()> {
        let path = self.path(first_lsn, SEGMENT_EXT);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        file.write_all(header)?;
        file.sync_all()?;
        self.trace(format!("create {first_lsn:020}.{SEGMENT_EXT}"));
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
        file.sync_all()?;
        self.trace(format!("truncate {first_lsn:020}.{SEGMENT_EXT}"));
        Ok(())
    }

    fn remove_segment(&self, first_lsn: u64) -> io::Result<()> {
        let mut log = self.log.lock();
        if log.as_ref().is_some_and(|(n, _)| *n == first_lsn) {
            *log = None;
        }
        self.unlink(&self.path(first_lsn, SEGMENT_EXT))
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
        self.trace(format!("rename {lsn:020}.{SNAPSHOT_EXT}"));
        self.sync_dir()
    }

    fn remove_snapshot(&self, lsn: u64) -> io::Result<()> {
        self.unlink(&self.path(lsn, SNAPSHOT_EXT))
    }

    fn segment_name(&self, first_lsn: u64) -> String {
        self.path(first_lsn, SEGMENT_EXT).display().to_string()
    }

    fn snapshot_name(&self, lsn: u64) -> String {
        self.path(lsn, SNAPSHOT_EXT).display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every change to the directory is followed by a directory sync
    /// before the call returns, and a new journal directory is synced
    /// into its parent.
    #[test]
    fn every_unlink_rename_and_new_file_or_directory_is_followed_by_a_directory_sync() {
        let root = tempfile::tempdir().unwrap();
        let st = FileStorage::open(root.path().join("a/b/journal")).unwrap();
        st.create_segment(1, b"header").unwrap();
        st.create_segment(5, b"header").unwrap();
        st.write_snapshot(5, b"image").unwrap();
        st.write_snapshot(9, b"image").unwrap();
        st.remove_segment(1).unwrap();
        st.remove_snapshot(5).unwrap();
        let trace = st.trace.lock().clone();
        let changes = trace.iter().filter(|t| !t.starts_with("sync-dir")).count();
        assert_eq!(changes, 3 + 6, "{trace:#?}");
        for (i, t) in trace.iter().enumerate() {
            if !t.starts_with("sync-dir") {
                assert!(
                    trace.get(i + 1).is_some_and(|n| n.starts_with("sync-dir")),
                    "{t} is not followed by a directory sync: {trace:#?}"
                );
            }
        }
        assert!(trace[0].starts_with("mkdir") && trace[0].ends_with('a'));
        // Reopening removes a leftover temporary file, durably too.
        fs::write(st.dir().join("00000000000000000011.snapshot.tmp"), b"half").unwrap();
        let again = FileStorage::open(st.dir()).unwrap();
        assert_eq!(again.trace.lock().as_slice(), ["sync-dir"]);
        assert_eq!(again.snapshots().unwrap(), [9]);
    }
}
