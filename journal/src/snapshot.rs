//! The snapshot file, and the thread that takes snapshots.
//!
//! ```text
//! [magic "GLJSNAP\x02"][LSN u64 LE][length u64 LE][CRC-32 u32 LE][image]
//! ```
//!
//! The checksum covers the LSN, the length and the image; the image is the
//! engine's own ([`graph_lifecycle::Image`]), which checks itself again
//! when it is decoded and once more when it is restored. A snapshot named
//! `n` holds the state after every record below LSN `n`.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use graph_lifecycle::{Image, WeakEngine};

use crate::writer::Log;

const MAGIC: &[u8; 8] = b"GLJSNAP\x02";
const HEADER_LEN: usize = 8 + 8 + 8 + 4;

fn checksum(head: &[u8], image: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(head);
    h.update(image);
    h.finalize()
}

/// The file's bytes for a snapshot holding every record below `lsn`.
pub(crate) fn encode(lsn: u64, image: &Image) -> Vec<u8> {
    let body = image.encode();
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    let crc = checksum(&out[8..24], &body);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Reads a snapshot file named `lsn`. Never panics, for any bytes.
///
/// # Errors
///
/// What is wrong with the file.
pub(crate) fn decode(lsn: u64, bytes: &[u8]) -> Result<Image, String> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err("not a snapshot file of this format".to_owned());
    }
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let (held, len) = (word(8), word(16));
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[24..HEADER_LEN]);
    let body = &bytes[HEADER_LEN..];
    if body.len() as u64 != len {
        return Err(format!(
            "{} bytes of image where the header says {len}",
            body.len()
        ));
    }
    if checksum(&bytes[8..24], body) != u32::from_le_bytes(crc) {
        return Err("its checksum does not match".to_owned());
    }
    if held != lsn {
        return Err(format!("it holds the state at record {held}"));
    }
    Image::decode(body).map_err(|e| e.to_string())
}

/// The journal's snapshot thread: takes a snapshot when a commit says one
/// is due, so that no commit ever takes one itself. It ends once every
/// handle to the engine is gone.
pub(crate) fn spawn(
    log: Arc<Log>,
    engine: WeakEngine,
    wake: Receiver<()>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("journal-snapshot".to_owned())
        .spawn(move || {
            loop {
                match wake.recv_timeout(Duration::from_millis(200)) {
                    Ok(()) => {
                        let Some(engine) = engine.upgrade() else {
                            return;
                        };
                        // A failed snapshot is retried after as much log
                        // again; the commands it covers are durable in the
                        // log whatever happens to it.
                        let _ = log.snapshot(|| engine.image(), true);
                    }
                    Err(RecvTimeoutError::Timeout) if engine.upgrade().is_some() => {}
                    Err(_) => return,
                }
            }
        })
}
