//! The snapshot file: `[magic 8 bytes][length u64 LE][CRC-32 u32 LE][payload]`.
//!
//! The checksum covers the eight length bytes and the payload; the payload
//! is the snapshot's LSN and every graph's [`GraphImage`] in key order, in
//! `postcard` encoding.

use serde::{Deserialize, Serialize};

use crate::graph::GraphImage;

const MAGIC: &[u8; 8] = b"GLSNAP\x00\x01";
const HEADER_LEN: usize = 8 + 8 + 4;

#[derive(Serialize)]
struct SnapshotRef<'a> {
    lsn: u64,
    graphs: &'a [GraphImage],
}

#[derive(Deserialize)]
struct SnapshotFile {
    lsn: u64,
    graphs: Vec<GraphImage>,
}

fn checksum(len: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// The file's bytes for a snapshot holding every record below `lsn`.
///
/// # Errors
///
/// The encoder's, which writing into memory does not have in practice.
pub(crate) fn encode(lsn: u64, graphs: &[GraphImage]) -> Result<Vec<u8>, String> {
    let mut out = postcard::to_extend(&SnapshotRef { lsn, graphs }, vec![0u8; HEADER_LEN])
        .map_err(|e| format!("cannot encode a snapshot: {e}"))?;
    let (head, payload) = out.split_at_mut(HEADER_LEN);
    let len = payload.len() as u64;
    let crc = checksum(len, payload);
    head[..8].copy_from_slice(MAGIC);
    head[8..16].copy_from_slice(&len.to_le_bytes());
    head[16..].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Reads a snapshot file named `lsn`. Never panics, for any bytes.
///
/// # Errors
///
/// What is wrong with the file.
pub(crate) fn decode(lsn: u64, bytes: &[u8]) -> Result<Vec<GraphImage>, String> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err("not a snapshot file of this format".to_owned());
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[8..16]);
    let len = u64::from_le_bytes(len);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[16..HEADER_LEN]);
    let payload = &bytes[HEADER_LEN..];
    if payload.len() as u64 != len {
        return Err(format!(
            "{} bytes of payload where the header says {len}",
            payload.len()
        ));
    }
    if checksum(len, payload) != u32::from_le_bytes(crc) {
        return Err("its checksum does not match".to_owned());
    }
    let file: SnapshotFile =
        postcard::from_bytes(payload).map_err(|e| format!("it does not decode: {e}"))?;
    if file.lsn != lsn {
        return Err(format!("it holds the state at record {}", file.lsn));
    }
    Ok(file.graphs)
}
