//! Record framing and the decoder: `[length u32 LE][CRC-32 u32 LE][payload]`.
//!
//! The checksum (CRC-32, IEEE) covers the four length bytes and the
//! payload, so a damaged length is caught as surely as a damaged payload.
//! The length's top bit is the **sync mark**: set on a record written
//! when every byte before it in the log was already synced (the first
//! record of each write under the sync policies, the first after a sync
//! under `NoSync`). The other 31 bits are the payload's length. A
//! record's payload is its log sequence number (LSN, `u64` LE) followed by
//! the [`Command`] in `postcard` encoding.
//!
//! The decoder reads any bytes without panicking and tells two cases apart
//! at the first record it cannot read (incomplete, or failing its
//! checksum):
//!
//! - **torn**: no intact record with the sync mark follows it. It lies in
//!   the part of the log written since the last sync, which a crash may
//!   leave half-written (a power cut even with holes, if the operating
//!   system wrote pages back out of order); recovery cuts the log there.
//!   Nothing acknowledged under the sync policies is ever in that part;
//! - **corrupt**: an intact record with the sync mark follows it, so the
//!   damaged bytes had been synced: they were damaged afterwards, and
//!   recovery stops there with
//!   [`Error::JournalCorrupt`](crate::Error::JournalCorrupt).
//!
//! A record whose frame is intact but whose payload does not decode is
//! always corrupt (a torn write cannot make a matching checksum).

use crate::command::Command;

/// Bytes before a record's payload: its length and its checksum.
pub const HEADER_LEN: usize = 8;

/// The largest payload a record may have, in bytes; a larger length in a
/// header is damage.
pub const MAX_PAYLOAD_LEN: usize = 1 << 28;

/// The sync mark in the length word.
const SYNC_MARK: u32 = 1 << 31;

/// What [`decode_frame`] found at an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// An intact record.
    Record {
        /// The bytes after the header.
        payload: &'a [u8],
        /// Where the next record begins.
        next: usize,
        /// Whether it carries the sync mark: every byte before it was
        /// synced when it was written.
        synced_before: bool,
    },
    /// No bytes left: the end of the log.
    End,
    /// The bytes end before the record does.
    Incomplete,
    /// A whole record whose checksum does not match, or a length that no
    /// record can have.
    Damaged(&'static str),
}

fn checksum(word: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&word.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Appends one framed record holding `payload` to `out`, with the sync
/// mark if `synced_before`.
///
/// A payload longer than [`MAX_PAYLOAD_LEN`] is framed with a length that
/// the decoder reports as damaged (the journal's writer refuses such a
/// command before it applies it).
pub fn write_frame(out: &mut Vec<u8>, payload: &[u8], synced_before: bool) {
    let at = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    out.extend_from_slice(payload);
    seal_frame(&mut out[at..], synced_before);
}

/// Fills in the header of a record laid out in `rec` as `[8 header bytes
/// to fill][payload]`.
pub(crate) fn seal_frame(rec: &mut [u8], synced_before: bool) {
    let Some((head, payload)) = rec.split_at_mut_checked(HEADER_LEN) else {
        return;
    };
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .min(SYNC_MARK - 1);
    let word = if synced_before { len | SYNC_MARK } else { len };
    head[..4].copy_from_slice(&word.to_le_bytes());
    head[4..].copy_from_slice(&checksum(word, payload).to_le_bytes());
}

/// Sets the sync mark on the record that begins `chunk` (whole records, as
/// the writer takes them out of its buffer).
pub(crate) fn mark_synced_before(chunk: &mut [u8]) {
    if let Frame::Record { next, .. } = decode_frame(chunk, 0) {
        seal_frame(&mut chunk[..next], true);
    }
}

/// Reads the record that starts at byte `at` of `buf`. Never panics, for
/// any bytes and any offset.
pub fn decode_frame(buf: &[u8], at: usize) -> Frame<'_> {
    let Some(rest) = buf.get(at..) else {
        return Frame::End;
    };
    if rest.is_empty() {
        return Frame::End;
    }
    let (Some(word), Some(crc)) = (word(rest, 0), word(rest, 4)) else {
        return Frame::Incomplete;
    };
    let n = (word & !SYNC_MARK) as usize;
    if n > MAX_PAYLOAD_LEN {
        return Frame::Damaged("its length is past the largest a record can have");
    }
    let Some(payload) = rest.get(HEADER_LEN..HEADER_LEN + n) else {
        return Frame::Incomplete;
    };
    if checksum(word, payload) != crc {
        return Frame::Damaged("its checksum does not match");
    }
    Frame::Record {
        payload,
        next: at + HEADER_LEN + n,
        synced_before: word & SYNC_MARK != 0,
    }
}

fn word(b: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(bytes))
}

/// One decoded record of a log segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its byte offset in the segment.
    pub offset: u64,
    /// Its log sequence number.
    pub lsn: u64,
    /// The command it holds.
    pub command: Command,
    /// Whether it carries the sync mark.
    pub synced_before: bool,
}

/// How a segment's bytes end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentEnd {
    /// After the last intact record, exactly.
    Clean,
    /// In a record that is incomplete or damaged, with no intact record
    /// carrying the sync mark after it: the unsynced tail of a crash, to
    /// be cut at `offset`.
    Torn {
        /// Where the torn record begins.
        offset: u64,
    },
    /// In a record that cannot be read although synced records follow
    /// it, or an intact record whose payload does not decode.
    Corrupt {
        /// Where the damaged record begins.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
}

/// A segment's records, up to the first one that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The intact records, in order.
    pub records: Vec<Record>,
    /// How the bytes end.
    pub end: SegmentEnd,
}

/// One whole framed record holding `command` with LSN `lsn`, as the
/// journal writes it (with the sync mark if `synced_before`).
///
/// # Errors
///
/// The encoder's, which writing into memory does not have in practice.
pub fn encode_record(lsn: u64, command: &Command, synced_before: bool) -> Result<Vec<u8>, String> {
    let mut rec = vec![0u8; HEADER_LEN];
    rec.extend_from_slice(&lsn.to_le_bytes());
    let mut rec = postcard::to_extend(command, rec).map_err(|e| e.to_string())?;
    seal_frame(&mut rec, synced_before);
    Ok(rec)
}

/// Decodes a record's payload: its LSN and its command.
///
/// # Errors
///
/// What is wrong with the payload (too short, or not a command).
pub fn decode_record(payload: &[u8]) -> Result<(u64, Command), String> {
    let Some((lsn, cmd)) = payload.split_first_chunk::<8>() else {
        return Err("the record is too short to hold a sequence number".to_owned());
    };
    let command = postcard::from_bytes::<Command>(cmd)
        .map_err(|e| format!("the record does not hold a command: {e}"))?;
    Ok((u64::from_le_bytes(*lsn), command))
}

/// Decodes a whole log segment: every intact record up to the first one
/// that cannot be read, and whether that one is a torn tail or
/// corruption. Never panics, for any bytes.
pub fn decode_segment(buf: &[u8]) -> Segment {
    let mut records = Vec::new();
    let mut at = 0;
    loop {
        let damage = match decode_frame(buf, at) {
            Frame::End => SegmentEnd::Clean,
            Frame::Record {
                payload,
                next,
                synced_before,
            } => match decode_record(payload) {
                Ok((lsn, command)) => {
                    records.push(Record {
                        offset: at as u64,
                        lsn,
                        command,
                        synced_before,
                    });
                    at = next;
                    continue;
                }
                Err(reason) => SegmentEnd::Corrupt {
                    offset: at as u64,
                    reason,
                },
            },
            Frame::Incomplete | Frame::Damaged(_) if !synced_after(buf, at) => {
                SegmentEnd::Torn { offset: at as u64 }
            }
            Frame::Incomplete => SegmentEnd::Corrupt {
                offset: at as u64,
                reason: "its length runs past the end of the file".to_owned(),
            },
            Frame::Damaged(reason) => SegmentEnd::Corrupt {
                offset: at as u64,
                reason: reason.to_owned(),
            },
        };
        return Segment {
            records,
            end: damage,
        };
    }
}

/// Whether an intact record with the sync mark begins anywhere after
/// `at`. Scans byte by byte to the next intact record, then follows the
/// chain of records from there, so it reads the bytes about once.
fn synced_after(buf: &[u8], at: usize) -> bool {
    let mut p = at.saturating_add(1);
    while p.saturating_add(HEADER_LEN) <= buf.len() {
        match decode_frame(buf, p) {
            Frame::Record {
                synced_before: true,
                ..
            } => return true,
            Frame::Record { next, .. } => p = next,
            _ => p += 1,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_reads_back() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"hello", false);
        write_frame(&mut buf, b"", true);
        assert_eq!(
            decode_frame(&buf, 0),
            Frame::Record {
                payload: b"hello",
                next: 13,
                synced_before: false,
            }
        );
        assert_eq!(
            decode_frame(&buf, 13),
            Frame::Record {
                payload: b"",
                next: 21,
                synced_before: true,
            }
        );
        assert_eq!(decode_frame(&buf, 21), Frame::End);
        assert_eq!(decode_frame(&buf, 99), Frame::End);
        assert_eq!(decode_frame(&buf[..12], 0), Frame::Incomplete);
        assert_eq!(decode_frame(&buf[..5], 0), Frame::Incomplete);
    }

    #[test]
    fn marking_a_chunk_marks_its_first_record_only() {
        let mut a = Vec::new();
        write_frame(&mut a, b"one", false);
        write_frame(&mut a, b"two", false);
        mark_synced_before(&mut a);
        let mut b = Vec::new();
        write_frame(&mut b, b"one", true);
        write_frame(&mut b, b"two", false);
        assert_eq!(a, b);
    }

    #[test]
    fn a_flipped_length_bit_is_damage_or_incomplete_never_a_record() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"some payload bytes", true);
        for bit in 0..32 {
            let mut b = buf.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(!matches!(decode_frame(&b, 0), Frame::Record { .. }));
        }
    }

    #[test]
    fn damage_before_a_synced_record_is_corruption_after_the_last_one_a_torn_tail() {
        let mut buf = Vec::new();
        for (i, mark) in [true, false, false, true, false, false]
            .into_iter()
            .enumerate()
        {
            write_frame(&mut buf, &[i as u8; 20], mark);
        }
        // Records are 28 bytes; the fourth (offset 84) carries the mark.
        for at in [0usize, 30, 60] {
            let mut b = buf.clone();
            b[at + 10] ^= 0xff;
            assert!(synced_after(&b, at), "damage at {at}");
        }
        for at in [84usize, 112, 140] {
            let mut b = buf.clone();
            b[at + 10] ^= 0xff;
            assert!(!synced_after(&b, at), "damage at {at}");
        }
    }
}
