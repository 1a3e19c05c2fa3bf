//! The journal's decoder and recovery on arbitrary bytes: nothing panics.
//!
//! The input is tried four ways: as raw log bytes (the framing decoder at
//! every offset, then recovery), as the payload of a record with a valid
//! frame (so the command decoder and the replay see it), as raw snapshot
//! bytes, and as the payload of a snapshot file with a valid header (so
//! the snapshot decoder and its checks of each graph see it).
//!
//! `cargo +nightly fuzz run decode` from this directory.

#![no_main]

use graph_lifecycle::Engine;
use graph_lifecycle::journal::frame::{decode_frame, decode_record, write_frame};
use graph_lifecycle::journal::{JournalOptions, MemStorage, decode_segment};
use libfuzzer_sys::fuzz_target;

fn recover(log: Option<Vec<u8>>, snapshot: Option<Vec<u8>>) {
    let disk = MemStorage::new();
    if let Some(bytes) = log {
        disk.put_segment(1, bytes);
    }
    if let Some(bytes) = snapshot {
        disk.put_snapshot(1, bytes);
    }
    let _ = Engine::builder().open_durable(disk, JournalOptions::default());
}

fuzz_target!(|data: &[u8]| {
    for at in 0..data.len().min(16) {
        let _ = decode_frame(data, at);
    }
    let _ = decode_segment(data);
    let _ = decode_record(data);
    recover(Some(data.to_vec()), None);

    let mut framed = Vec::new();
    write_frame(&mut framed, data, true);
    recover(Some(framed), None);

    recover(None, Some(data.to_vec()));

    // The snapshot file's header: magic, length, CRC-32 of length and
    // payload (docs/JOURNAL.md).
    let len = (data.len() as u64).to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len);
    crc.update(data);
    let mut snapshot = b"GLSNAP\x00\x01".to_vec();
    snapshot.extend_from_slice(&len);
    snapshot.extend_from_slice(&crc.finalize().to_le_bytes());
    snapshot.extend_from_slice(data);
    recover(None, Some(snapshot));
});
