//! Small named files written whole: the vote, the committed log id, the
//! purge point and the latest snapshot.
//!
//! Each file is `[magic "GLRMETA\x01"][length u64 LE][CRC-32 u32 LE][body]`,
//! the CRC-32 over the length and the body. [`FileMeta`] writes a file to
//! `NAME.tmp`, syncs it, renames it into place and syncs the directory, so
//! after a crash it is whole (old or new) or absent; [`MemMeta`] keeps
//! them in memory for tests and simulations, and shows what a crash
//! leaves ([`MemMeta::crash`]).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

const MAGIC: &[u8; 8] = b"GLRMETA\x01";
const HEADER_LEN: usize = 8 + 8 + 4;

/// Where a node keeps its small files. Every method takes `&self`.
pub trait Meta: Send + Sync + 'static {
    /// The bytes of `name` as last written whole, or `None`.
    ///
    /// # Errors
    ///
    /// The storage's read error; `InvalidData` for a damaged file.
    fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>>;

    /// Replaces `name` with `bytes`, atomically and durably: once it
    /// returns `Ok`, a crash or a power cut leaves the new bytes; before,
    /// the old ones.
    ///
    /// # Errors
    ///
    /// The storage's write error.
    fn write(&self, name: &str, bytes: &[u8]) -> io::Result<()>;

    /// Replaces `name` with `bytes`, atomically but without waiting for
    /// the disk: a process crash leaves the new bytes, a power cut may
    /// leave the old ones.
    ///
    /// # Errors
    ///
    /// The storage's write error.
    fn write_unsynced(&self, name: &str, bytes: &[u8]) -> io::Result<()>;
}

/// Frames `body` as a meta file.
pub(crate) fn seal(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&(body.len() as u64).to_le_bytes());
    h.update(body);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// The body of a meta file, checked.
pub(crate) fn open(bytes: &[u8]) -> Result<&[u8], &'static str> {
    let Some(head) = bytes.get(..HEADER_LEN) else {
        return Err("shorter than its header");
    };
    if &head[..8] != MAGIC {
        return Err("not a meta file of this format");
    }
    let len = u64::from_le_bytes(head[8..16].try_into().map_err(|_| "bad header")?);
    let crc = u32::from_le_bytes(head[16..20].try_into().map_err(|_| "bad header")?);
    let body = &bytes[HEADER_LEN..];
    if body.len() as u64 != len {
        return Err("its length does not match its header");
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(body);
    if h.finalize() != crc {
        return Err("its checksum does not match");
    }
    Ok(body)
}

fn damaged(name: &str, why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{name}: {why}"))
}

/// Small files in a directory of their own.
#[derive(Debug)]
pub struct FileMeta {
    dir: PathBuf,
    /// Serialises writers of one name (a snapshot writer and a vote).
    lock: Mutex<()>,
}

impl FileMeta {
    /// Opens (and creates) the directory.
    ///
    /// # Errors
    ///
    /// The directory cannot be created.
    pub fn open(dir: impl AsRef<Path>) -> io::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(parent)?.sync_all()?;
        }
        Ok(Self {
            dir,
            lock: Mutex::new(()),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn put(&self, name: &str, bytes: &[u8], sync: bool) -> io::Result<()> {
        let _g = self.lock.lock();
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(&seal(bytes))?;
        if sync {
            f.sync_all()?;
        }
        drop(f);
        fs::rename(&tmp, &path)?;
        if sync {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(())
    }
}

impl Meta for FileMeta {
    fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.dir.join(name)) {
            Ok(b) => open(&b)
                .map(|body| Some(body.to_vec()))
                .map_err(|why| damaged(name, why)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.put(name, bytes, true)
    }

    fn write_unsynced(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.put(name, bytes, false)
    }
}

/// Small files in memory, for tests and simulations. Cloning gives
/// another handle to the same files.
#[derive(Debug, Clone, Default)]
pub struct MemMeta(Arc<Mutex<BTreeMap<String, Slot>>>);

#[derive(Debug, Clone)]
struct Slot {
    bytes: Vec<u8>,
    /// What a power cut leaves: the last synced bytes (`None`: no file).
    durable: Option<Vec<u8>>,
}

impl MemMeta {
    /// No files.
    pub fn new() -> Self {
        Self::default()
    }

    /// What a power cut leaves now: a new, independent store holding
    /// what was written with [`Meta::write`] (the unsynced writes since
    /// are gone).
    pub fn crash(&self) -> MemMeta {
        let files = self
            .0
            .lock()
            .iter()
            .filter_map(|(k, s)| {
                s.durable.clone().map(|d| {
                    (
                        k.clone(),
                        Slot {
                            bytes: d.clone(),
                            durable: Some(d),
                        },
                    )
                })
            })
            .collect();
        MemMeta(Arc::new(Mutex::new(files)))
    }

    /// What a process crash leaves: a new, independent store holding
    /// every write.
    pub fn copy(&self) -> MemMeta {
        MemMeta(Arc::new(Mutex::new(self.0.lock().clone())))
    }

    /// Overwrites the stored bytes of `name` (framing included) as they
    /// are: for tests of damaged files.
    pub fn put_raw(&self, name: &str, raw: Vec<u8>) {
        self.0.lock().insert(
            name.to_owned(),
            Slot {
                bytes: raw.clone(),
                durable: Some(raw),
            },
        );
    }

    /// The stored bytes of `name`, framing included.
    pub fn raw(&self, name: &str) -> Option<Vec<u8>> {
        self.0.lock().get(name).map(|s| s.bytes.clone())
    }
}

impl Meta for MemMeta {
    fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match self.0.lock().get(name) {
            Some(s) => open(&s.bytes)
                .map(|b| Some(b.to_vec()))
                .map_err(|why| damaged(name, why)),
            None => Ok(None),
        }
    }

    fn write(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let sealed = seal(bytes);
        self.0.lock().insert(
            name.to_owned(),
            Slot {
                bytes: sealed.clone(),
                durable: Some(sealed),
            },
        );
        Ok(())
    }

    fn write_unsynced(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let sealed = seal(bytes);
        let mut files = self.0.lock();
        let durable = files.get(name).and_then(|s| s.durable.clone());
        files.insert(
            name.to_owned(),
            Slot {
                bytes: sealed,
                durable,
            },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meta_file_reads_back_and_any_damage_is_refused() {
        let body = b"the vote";
        let sealed = seal(body);
        assert_eq!(open(&sealed), Ok(&body[..]));
        for bit in 0..sealed.len() * 8 {
            let mut b = sealed.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(open(&b).is_err(), "bit {bit}");
        }
        for cut in 0..sealed.len() {
            assert!(open(&sealed[..cut]).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn a_file_meta_replaces_whole_files_and_refuses_damaged_ones() {
        let dir = tempfile::tempdir().unwrap();
        let m = FileMeta::open(dir.path().join("meta")).unwrap();
        assert_eq!(m.read("vote").unwrap(), None);
        m.write("vote", b"one").unwrap();
        m.write("vote", b"two").unwrap();
        m.write_unsynced("committed", b"7").unwrap();
        assert_eq!(m.read("vote").unwrap().as_deref(), Some(&b"two"[..]));
        assert_eq!(m.read("committed").unwrap().as_deref(), Some(&b"7"[..]));
        fs::write(m.dir().join("vote"), b"GLRMETA\x01garbage").unwrap();
        assert_eq!(
            m.read("vote").unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn a_power_cut_keeps_synced_writes_only() {
        let m = MemMeta::new();
        m.write("vote", b"a").unwrap();
        m.write_unsynced("vote", b"b").unwrap();
        m.write_unsynced("committed", b"c").unwrap();
        let cut = m.crash();
        assert_eq!(cut.read("vote").unwrap().as_deref(), Some(&b"a"[..]));
        assert_eq!(cut.read("committed").unwrap(), None);
        assert_eq!(m.copy().read("vote").unwrap().as_deref(), Some(&b"b"[..]));
    }
}
