//! Log segments and their records.
//!
//! A segment begins with a 24-byte **header**:
//!
//! ```text
//! [magic "GLJSEG\0\x02"][first LSN u64 LE][salt u32 LE][CRC-32 of the 20 bytes before, u32 LE]
//! ```
//!
//! and goes on with **records**, each `[length u32 LE][CRC-32 u32 LE][payload]`.
//! A record's checksum (CRC-32, IEEE) covers the segment's salt, the four
//! length bytes and the payload, so a damaged length is caught as surely
//! as a damaged payload. The length's top bit is the **sync mark**: set on
//! a record written when every byte before it in the segment was already
//! synced (the first record of each write under the sync policies, the
//! first after a sync under `NoSync`). The other 31 bits are the payload's
//! length. The payload holds the record's log sequence number (LSN), the
//! command and the outcome it had, in `postcard` encoding.
//!
//! # The salt
//!
//! Payloads carry the host's opaque bytes (an import request, a REST
//! body), which a client can fill with bytes that look like records. The
//! salt is 32 random bits drawn when the segment is made and kept only in
//! its header: a record's checksum matches only with it, so bytes that
//! imitate a record inside a payload do not pass for one (but with the
//! odds of guessing 32 random bits). SQLite's write-ahead log salts its
//! frames the same way, for the same reason.
//!
//! # Torn or corrupt
//!
//! The decoder reads any bytes without panicking and tells two cases apart
//! at the first record it cannot read (incomplete, or failing its
//! checksum):
//!
//! - **torn**: no intact record with the sync mark follows it. It lies in
//!   the part of the segment written since the last sync, which a crash
//!   may leave half-written (a power cut even with holes, if the operating
//!   system wrote pages back out of order); recovery cuts the log there.
//!   Nothing acknowledged under the sync policies is ever in that part;
//! - **corrupt**: an intact record with the sync mark follows it, so the
//!   damaged bytes had been synced: they were damaged afterwards, and
//!   recovery stops there with [`JournalError::Corrupt`].
//!
//! A record whose frame is intact but whose payload does not decode is
//! always corrupt (a torn write cannot make a matching checksum).
//!
//! [`JournalError::Corrupt`]: crate::JournalError::Corrupt

use graph_lifecycle::{Command, Error, Outcome};
use serde::{Deserialize, Serialize};

/// Bytes before a record's payload: its length and its checksum.
pub const HEADER_LEN: usize = 8;

/// Bytes of a segment's header.
pub const SEGMENT_HEADER_LEN: usize = 24;

/// The largest payload a record may have, in bytes; a larger length in a
/// header is damage.
pub const MAX_PAYLOAD_LEN: usize = 1 << 28;

const SEGMENT_MAGIC: &[u8; 8] = b"GLJSEG\0\x02";

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
    /// No bytes left: the end of the segment.
    End,
    /// The bytes end before the record does.
    Incomplete,
    /// A whole record whose checksum does not match, or a length that no
    /// record can have.
    Damaged(&'static str),
}

fn checksum(salt: u32, word: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&salt.to_le_bytes());
    h.update(&word.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// A segment's header: its first LSN and its salt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The LSN of the segment's first record.
    pub first_lsn: u64,
    /// The salt of its records' checksums.
    pub salt: u32,
}

impl SegmentHeader {
    /// A header for a new segment, with a fresh random salt.
    ///
    /// # Errors
    ///
    /// The operating system's randomness failed.
    pub fn new(first_lsn: u64) -> Result<Self, getrandom::Error> {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b)?;
        Ok(Self {
            first_lsn,
            salt: u32::from_le_bytes(b),
        })
    }

    /// The header's bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut out = [0u8; SEGMENT_HEADER_LEN];
        out[..8].copy_from_slice(SEGMENT_MAGIC);
        out[8..16].copy_from_slice(&self.first_lsn.to_le_bytes());
        out[16..20].copy_from_slice(&self.salt.to_le_bytes());
        let crc = crc32fast::hash(&out[..20]);
        out[20..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads the header at the start of `buf`.
    ///
    /// # Errors
    ///
    /// What is wrong with it (too short, not a segment, damaged).
    pub fn decode(buf: &[u8]) -> Result<Self, &'static str> {
        let Some(h) = buf.get(..SEGMENT_HEADER_LEN) else {
            return Err("the segment is shorter than its header");
        };
        if &h[..8] != SEGMENT_MAGIC {
            return Err("the segment does not begin with a segment header");
        }
        let word = |r: std::ops::Range<usize>| {
            let mut b = [0u8; 8];
            b[..r.len()].copy_from_slice(&h[r]);
            u64::from_le_bytes(b)
        };
        if crc32fast::hash(&h[..20]) != word(20..24) as u32 {
            return Err("the segment header's checksum does not match");
        }
        Ok(Self {
            first_lsn: word(8..16),
            salt: word(16..20) as u32,
        })
    }
}

/// Appends one framed record holding `payload` to `out`, salted with
/// `salt`, with the sync mark if `synced_before`.
///
/// A payload longer than [`MAX_PAYLOAD_LEN`] is framed with a length that
/// the decoder reports as damaged (the journal refuses such a command
/// before it applies it).
pub fn write_frame(out: &mut Vec<u8>, salt: u32, payload: &[u8], synced_before: bool) {
    let at = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    out.extend_from_slice(payload);
    seal_frame(&mut out[at..], salt, synced_before);
}

/// Fills in the header of a record laid out in `rec` as `[8 header bytes
/// to fill][payload]`.
pub(crate) fn seal_frame(rec: &mut [u8], salt: u32, synced_before: bool) {
    let Some((head, payload)) = rec.split_at_mut_checked(HEADER_LEN) else {
        return;
    };
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .min(SYNC_MARK - 1);
    let word = if synced_before { len | SYNC_MARK } else { len };
    head[..4].copy_from_slice(&word.to_le_bytes());
    head[4..].copy_from_slice(&checksum(salt, word, payload).to_le_bytes());
}

/// Seals every record of `chunk` (whole records whose length words are
/// set, as the writer takes them out of its buffer) with `salt`, the first
/// with the sync mark if `synced_before`.
pub(crate) fn reseal_chunk(chunk: &mut [u8], salt: u32, synced_before: bool) {
    let mut at = 0;
    while let Some(w) = word(&chunk[at..], 0) {
        let end = at + HEADER_LEN + (w & !SYNC_MARK) as usize;
        let Some(rec) = chunk.get_mut(at..end) else {
            return;
        };
        seal_frame(rec, salt, synced_before && at == 0);
        at = end;
    }
}

/// Reads the record that starts at byte `at` of `buf`, salted with
/// `salt`. Never panics, for any bytes and any offset.
pub fn decode_frame(buf: &[u8], at: usize, salt: u32) -> Frame<'_> {
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
    if checksum(salt, word, payload) != crc {
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

/// A record's payload after its LSN: the command and what it did.
#[derive(Serialize)]
pub(crate) struct EntryRef<'a> {
    pub(crate) command: &'a Command,
    pub(crate) outcome: &'a Result<Outcome, Error>,
}

#[derive(Deserialize)]
struct Entry {
    command: Command,
    outcome: Result<Outcome, Error>,
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
    /// What the command did when it was applied: replaying it must do the
    /// same.
    pub outcome: Result<Outcome, Error>,
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
    /// it, or an intact record whose payload does not decode, or a header
    /// that does not read.
    Corrupt {
        /// Where the damage begins.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
}

/// A segment's header and records, up to the first record that cannot be
/// read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The header, if it reads.
    pub header: Option<SegmentHeader>,
    /// The intact records, in order.
    pub records: Vec<Record>,
    /// How the bytes end.
    pub end: SegmentEnd,
}

/// One whole framed record holding `command`, what it did, and LSN `lsn`,
/// as the journal writes it into a segment salted with `salt`.
///
/// # Errors
///
/// The encoder's, which writing into memory does not have in practice.
pub fn encode_record(
    salt: u32,
    lsn: u64,
    command: &Command,
    outcome: &Result<Outcome, Error>,
    synced_before: bool,
) -> Result<Vec<u8>, postcard::Error> {
    let mut rec = vec![0u8; HEADER_LEN];
    rec.extend_from_slice(&lsn.to_le_bytes());
    let mut rec = postcard::to_extend(&EntryRef { command, outcome }, rec)?;
    seal_frame(&mut rec, salt, synced_before);
    Ok(rec)
}

/// Decodes a record's payload: its LSN, its command and its outcome.
///
/// # Errors
///
/// What is wrong with the payload (too short, or not an entry).
pub fn decode_record(payload: &[u8]) -> Result<(u64, Command, Result<Outcome, Error>), String> {
    let Some((lsn, rest)) = payload.split_first_chunk::<8>() else {
        return Err("the record is too short to hold a sequence number".to_owned());
    };
    let e = postcard::from_bytes::<Entry>(rest)
        .map_err(|e| format!("the record does not hold a command: {e}"))?;
    Ok((u64::from_le_bytes(*lsn), e.command, e.outcome))
}

/// Decodes a whole log segment: its header, every intact record up to the
/// first one that cannot be read, and whether that one is a torn tail or
/// corruption. Never panics, for any bytes.
pub fn decode_segment(buf: &[u8]) -> Segment {
    let header = match SegmentHeader::decode(buf) {
        Ok(h) => h,
        Err(reason) => {
            return Segment {
                header: None,
                records: Vec::new(),
                end: SegmentEnd::Corrupt {
                    offset: 0,
                    reason: reason.to_owned(),
                },
            };
        }
    };
    let salt = header.salt;
    let mut records = Vec::new();
    let mut at = SEGMENT_HEADER_LEN;
    loop {
        let end = match decode_frame(buf, at, salt) {
            Frame::End => SegmentEnd::Clean,
            Frame::Record {
                payload,
                next,
                synced_before,
            } => match decode_record(payload) {
                Ok((lsn, command, outcome)) => {
                    records.push(Record {
                        offset: at as u64,
                        lsn,
                        command,
                        outcome,
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
            Frame::Incomplete | Frame::Damaged(_) if !synced_after(buf, at, salt) => {
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
            header: Some(header),
            records,
            end,
        };
    }
}

/// Whether an intact record with the sync mark begins anywhere after
/// `at`. Scans byte by byte to the next intact record, then follows the
/// chain of records from there, so it reads the bytes about once.
///
/// This is what tells a torn tail from corruption at a record that cannot
/// be read (see the [module](self)); it is public for logs of other
/// records framed with [`write_frame`] (a consensus log store), which
/// make the same distinction.
pub fn synced_after(buf: &[u8], at: usize, salt: u32) -> bool {
    let mut p = at.saturating_add(1);
    while p.saturating_add(HEADER_LEN) <= buf.len() {
        match decode_frame(buf, p, salt) {
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

    const SALT: u32 = 0x5eed_1234;

    #[test]
    fn a_frame_reads_back_with_its_salt_and_not_without() {
        let mut buf = Vec::new();
        write_frame(&mut buf, SALT, b"hello", false);
        write_frame(&mut buf, SALT, b"", true);
        assert_eq!(
            decode_frame(&buf, 0, SALT),
            Frame::Record {
                payload: b"hello",
                next: 13,
                synced_before: false,
            }
        );
        assert_eq!(
            decode_frame(&buf, 13, SALT),
            Frame::Record {
                payload: b"",
                next: 21,
                synced_before: true,
            }
        );
        assert_eq!(decode_frame(&buf, 21, SALT), Frame::End);
        assert_eq!(decode_frame(&buf, 99, SALT), Frame::End);
        assert_eq!(decode_frame(&buf[..12], 0, SALT), Frame::Incomplete);
        assert_eq!(decode_frame(&buf[..5], 0, SALT), Frame::Incomplete);
        assert!(matches!(decode_frame(&buf, 0, SALT ^ 1), Frame::Damaged(_)));
    }

    #[test]
    fn a_segment_header_reads_back_and_any_flipped_bit_is_refused() {
        let h = SegmentHeader {
            first_lsn: 42,
            salt: SALT,
        };
        let bytes = h.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(h));
        for bit in 0..bytes.len() * 8 {
            let mut b = bytes;
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentHeader::decode(&b).is_err(), "bit {bit}");
        }
        assert!(SegmentHeader::decode(&bytes[..23]).is_err());
    }

    #[test]
    fn resealing_a_chunk_salts_every_record_and_marks_the_first_only() {
        let mut a = Vec::new();
        write_frame(&mut a, 0, b"one", false);
        write_frame(&mut a, 0, b"two", false);
        reseal_chunk(&mut a, SALT, true);
        let mut b = Vec::new();
        write_frame(&mut b, SALT, b"one", true);
        write_frame(&mut b, SALT, b"two", false);
        assert_eq!(a, b);
        reseal_chunk(&mut a, SALT, false);
        assert!(matches!(
            decode_frame(&a, 0, SALT),
            Frame::Record {
                synced_before: false,
                ..
            }
        ));
    }

    #[test]
    fn a_flipped_length_bit_is_damage_or_incomplete_never_a_record() {
        let mut buf = Vec::new();
        write_frame(&mut buf, SALT, b"some payload bytes", true);
        for bit in 0..32 {
            let mut b = buf.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(!matches!(decode_frame(&b, 0, SALT), Frame::Record { .. }));
        }
    }

    #[test]
    fn damage_before_a_synced_record_is_corruption_after_the_last_one_a_torn_tail() {
        let mut buf = Vec::new();
        for (i, mark) in [true, false, false, true, false, false]
            .into_iter()
            .enumerate()
        {
            write_frame(&mut buf, SALT, &[i as u8; 20], mark);
        }
        // Records are 28 bytes; the fourth (offset 84) carries the mark.
        for at in [0usize, 30, 60] {
            let mut b = buf.clone();
            b[at + 10] ^= 0xff;
            assert!(synced_after(&b, at, SALT), "damage at {at}");
        }
        for at in [84usize, 112, 140] {
            let mut b = buf.clone();
            b[at + 10] ^= 0xff;
            assert!(!synced_after(&b, at, SALT), "damage at {at}");
        }
    }

    /// Every outcome and every error a record can hold reads back equal:
    /// what replay compares against is what was written.
    #[test]
    fn outcomes_and_errors_round_trip_through_a_record() {
        use graph_lifecycle::{
            Epoch, GraphKey, GraphState, IdKind, JobId, LogError, Op, Operation, RequestId,
            Restart, TaskStatus, Timestamp,
        };
        let key = GraphKey::parse("p", "g").unwrap();
        let job = JobId::parse("0190b6d8-4f1e-7c3a-9d2b-5e6f7a8b9c0d").unwrap();
        let outcomes = [
            Outcome::Created,
            Outcome::Removed { voided: 3 },
            Outcome::Job {
                job,
                epoch: Epoch(2),
            },
            Outcome::Restarted(Restart {
                job,
                epoch: Epoch(7),
                failed: 9,
            }),
            Outcome::Updated,
            Outcome::Expired {
                timed_out: 1,
                evicted: 2,
            },
            Outcome::Recovered {
                interrupted: 4,
                abnormal: true,
            },
        ];
        let k = || key.clone();
        let errors = [
            Error::InvalidId {
                kind: IdKind::Request,
                value: "x\\n".into(),
                reason: "is bad".into(),
            },
            Error::InvalidArgument {
                what: "payload".into(),
                reason: "too big".into(),
            },
            Error::GraphNotFound { key: k() },
            Error::GraphExists { key: k() },
            Error::TaskNotFound { key: k(), job },
            Error::TransitionRefused {
                key: k(),
                state: GraphState::Running,
                op: Operation::Start,
            },
            Error::TaskTerminal {
                key: k(),
                job,
                status: TaskStatus::Failed,
            },
            Error::StaleEpoch {
                key: k(),
                job,
                reported: Epoch(1),
                current: Epoch(2),
            },
            Error::ReportRefused {
                key: k(),
                job,
                status: TaskStatus::Running,
                report: "started".into(),
            },
            Error::BadProgress {
                key: k(),
                job,
                current: 50,
                reported: 40,
            },
            Error::NotStoppable {
                key: k(),
                job,
                kind: "restart".into(),
            },
            Error::TooManyGraphs {
                key: k(),
                limit: 10,
            },
            Error::TooManyTasks {
                key: k(),
                limit: 10,
            },
            Error::ProjectFull { key: k(), limit: 3 },
            Error::NoJobReceiver {
                key: k(),
                op: Operation::Stop,
            },
            Error::ShutDown {
                key: k(),
                op: Operation::Import,
            },
            Error::DuplicateJobId { key: k(), job },
            Error::RequestReused {
                key: k(),
                request: RequestId::new("r").unwrap(),
                first: "create".into(),
                op: "stop".into(),
            },
            Error::CommitLog {
                key: k(),
                source: LogError::msg("disk full"),
            },
        ];
        let cmd = Command::new(key.clone(), Timestamp::from_millis(5), Op::Create);
        let answers = outcomes
            .into_iter()
            .map(Ok)
            .chain(errors.into_iter().map(Err));
        for (lsn, answer) in answers.enumerate() {
            let rec = encode_record(SALT, lsn as u64, &cmd, &answer, false).unwrap();
            let Frame::Record { payload, .. } = decode_frame(&rec, 0, SALT) else {
                panic!("{answer:?} does not frame")
            };
            let (l, c, back) = decode_record(payload).unwrap();
            assert_eq!((l, &c, &back), (lsn as u64, &cmd, &answer));
        }
    }

    /// A payload holding a whole synced record of another salt (what a
    /// client who does not know the segment's salt can write) does not
    /// make the record holding it look synced after its own damage.
    #[test]
    fn a_record_imitated_inside_a_payload_does_not_count_as_synced() {
        let mut fake = Vec::new();
        write_frame(&mut fake, SALT ^ 0xdead_beef, b"forged", true);
        let mut payload = vec![b'x'; 50];
        payload.extend_from_slice(&fake);
        payload.extend_from_slice(&[b'y'; 50]);
        let mut buf = Vec::new();
        write_frame(&mut buf, SALT, &payload, false);
        for cut in HEADER_LEN..buf.len() {
            assert!(!synced_after(&buf[..cut], 0, SALT), "cut at {cut}");
        }
    }
}
