//! The journal's decoder, recovery and the core's image decoder on
//! arbitrary bytes: nothing panics.
//!
//! The input is tried as raw log bytes after a valid segment header (the
//! framing decoder at every offset, then recovery), as the payload of a
//! record with a valid frame (so the record decoder and the replay see
//! it), as raw snapshot bytes, as the image inside a snapshot file with a
//! valid header, and as an image body under a valid image header (so the
//! image decoder and the checks of a restore see it).
//!
//! `cargo +nightly fuzz run decode` from this directory.

#![no_main]

use graph_lifecycle::{Engine, Image};
use graph_lifecycle_journal::frame::{decode_frame, decode_record, write_frame};
use graph_lifecycle_journal::{JournalOptions, MemStorage, SegmentHeader, decode_segment, open};
use libfuzzer_sys::fuzz_target;

const SALT: u32 = 0x0123_4567;

fn recover(log: Option<Vec<u8>>, snapshot: Option<Vec<u8>>) {
    let disk = MemStorage::new();
    if let Some(body) = log {
        let mut bytes = SegmentHeader {
            first_lsn: 1,
            salt: SALT,
        }
        .encode()
        .to_vec();
        bytes.extend_from_slice(&body);
        disk.put_segment(1, bytes);
    }
    if let Some(bytes) = snapshot {
        disk.put_snapshot(1, bytes);
    }
    let _ = open(Engine::builder(), disk, JournalOptions::default());
}

/// `body` under an image header whose checksum (FNV-1a) matches it.
fn image_of(body: &[u8]) -> Vec<u8> {
    let mut out = b"GLIMAGE\0".to_vec();
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in out[8..20].iter().chain(body) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    out.extend_from_slice(&h.to_le_bytes());
    out.extend_from_slice(body);
    out
}

fuzz_target!(|data: &[u8]| {
    for at in 0..data.len().min(16) {
        let _ = decode_frame(data, at, SALT);
    }
    let _ = decode_segment(data);
    let _ = decode_record(data);
    recover(Some(data.to_vec()), None);

    let mut framed = Vec::new();
    write_frame(&mut framed, SALT, data, true);
    recover(Some(framed), None);

    recover(None, Some(data.to_vec()));

    // The snapshot file's header: magic, LSN, length, CRC-32 of LSN,
    // length and image (docs/JOURNAL.md).
    let image = image_of(data);
    let mut head = 1u64.to_le_bytes().to_vec();
    head.extend_from_slice(&(image.len() as u64).to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head);
    crc.update(&image);
    let mut snapshot = b"GLJSNAP\x02".to_vec();
    snapshot.extend_from_slice(&head);
    snapshot.extend_from_slice(&crc.finalize().to_le_bytes());
    snapshot.extend_from_slice(&image);
    recover(None, Some(snapshot));

    if let Ok(image) = Image::decode(&image) {
        let (engine, _jobs) = Engine::builder().build();
        let _ = engine.restore(&image);
    }
    let _ = Image::decode(data);
});
