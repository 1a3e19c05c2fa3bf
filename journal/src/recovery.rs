//! Opening a durable engine: the newest valid snapshot, the log replayed
//! after it as decided commands, a torn tail cut, corruption refused, then
//! recovery through the engine's one commit path.

use std::sync::Arc;

use graph_lifecycle::{Command, Dispatch, EngineBuilder, Event, GraphKey, Op, Outcome};

use crate::error::JournalError;
use crate::frame::{SegmentEnd, decode_segment};
use crate::snapshot;
use crate::storage::Storage;
use crate::writer::{JournalOptions, Log, Recovery, Resume};
use crate::{Durable, Journal};

/// What opening a durable engine found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// The LSN of the snapshot loaded (it held every record below it), if
    /// any.
    pub snapshot: Option<u64>,
    /// Snapshots passed over because they were damaged, newest first, each
    /// with the reason; an older one (and more of the log) was used.
    pub skipped_snapshots: Vec<String>,
    /// Records replayed after the snapshot.
    pub replayed: u64,
    /// The half-written record cut off the end of the log, if a crash left
    /// one. It held a command whose call had not returned.
    pub torn_tail: Option<Cut>,
    /// What [`Recovery::TruncateAtCorruption`] deleted, if it had to.
    pub discarded: Option<Discarded>,
    /// Tasks that were live at the crash, now Failed as interrupted.
    pub interrupted: usize,
    /// Graphs that were in a state with a lifecycle job, now Abnormal.
    pub abnormal: Vec<GraphKey>,
    /// The events of the recovery: every task failed and every graph moved,
    /// numbered as the engine numbers events.
    pub events: Vec<Event>,
    /// The LSN the next command will get.
    pub next_lsn: u64,
}

/// A torn tail cut off a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// The segment.
    pub file: String,
    /// Where the segment now ends.
    pub offset: u64,
    /// Bytes cut.
    pub bytes: u64,
}

/// What [`Recovery::TruncateAtCorruption`] deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discarded {
    /// The segment with the corrupt record.
    pub file: String,
    /// Where the corrupt record began; the segment now ends there.
    pub offset: u64,
    /// What was wrong with it.
    pub reason: String,
    /// Bytes deleted, in that segment and the later ones.
    pub bytes: u64,
    /// Later segments deleted whole.
    pub segments: usize,
}

/// Opens a durable engine on `storage`: see [`open`](crate::open).
pub(crate) fn open(
    builder: EngineBuilder,
    storage: Box<dyn Storage>,
    options: JournalOptions,
) -> Result<Durable, JournalError> {
    let strict = options.recovery == Recovery::Strict;
    let auto_snapshots = options.snapshot_after_bytes.is_some();
    let log = Arc::new(Log::new(storage, options));
    let st = log.storage();
    let mut report = RecoveryReport::default();
    let builder = builder.log(log.clone());

    // 1. The newest snapshot that reads back whole and restores.
    let (engine, jobs) = builder.build();
    let snaps = st
        .snapshots()
        .map_err(JournalError::io("list the snapshots of", "the journal"))?;
    let mut from = 1;
    let mut loaded = None;
    for &lsn in snaps.iter().rev() {
        let restored = st
            .read_snapshot(lsn)
            .map_err(|e| format!("cannot be read: {e}"))
            .and_then(|bytes| {
                let image = snapshot::decode(lsn, &bytes)?;
                engine
                    .restore(&image)
                    .map_err(|e| format!("cannot be restored: {e}"))?;
                Ok(bytes.len() as u64)
            });
        match restored {
            Ok(len) => {
                from = lsn;
                loaded = Some((lsn, len));
                report.snapshot = Some(lsn);
                break;
            }
            Err(why) => report
                .skipped_snapshots
                .push(format!("{}: {why}", st.snapshot_name(lsn))),
        }
    }

    // 2. The log from there on, each record applied as the decided command
    // it is, and checked to do what it did the first time.
    let mut segs = st
        .segments()
        .map_err(JournalError::io("list the segments of", "the journal"))?;
    // Segments holding only records below `from` are not read.
    let skip = segs.windows(2).take_while(|w| w[1] <= from).count();
    let mut expected = from;
    let (mut len, mut salt) = (0, 0);
    let mut i = skip;
    while let Some(&n) = segs.get(i) {
        let name = st.segment_name(n);
        let corrupt = |offset: u64, detail: String| JournalError::Corrupt {
            file: name.clone(),
            offset,
            detail,
        };
        if n > expected {
            return Err(corrupt(
                0,
                format!(
                    "the segment begins at record {n}, but the log before it ends at record {expected}: records are missing"
                ),
            ));
        }
        let bytes = st
            .read_segment(n)
            .map_err(JournalError::io("read", name.clone()))?;
        let seg = decode_segment(&bytes);
        let last = i + 1 == segs.len();
        if seg.header.is_none() && last && bytes.len() < crate::frame::SEGMENT_HEADER_LEN {
            // A segment whose creation a crash cut short: it holds no
            // record. Dropped; the writer starts a new one.
            st.remove_segment(n)
                .map_err(JournalError::io("remove", name.clone()))?;
            segs.pop();
            break;
        }
        if let Some(h) = seg.header {
            if h.first_lsn != n {
                return Err(corrupt(
                    0,
                    format!(
                        "the segment named {n} says it begins at record {}",
                        h.first_lsn
                    ),
                ));
            }
            salt = h.salt;
        }
        if let Some(r) = seg.records.first()
            && r.lsn != n
        {
            return Err(corrupt(
                r.offset,
                format!("the segment named {n} begins with record {}", r.lsn),
            ));
        }
        for rec in seg.records {
            if rec.lsn < expected {
                continue;
            }
            if rec.lsn != expected {
                return Err(corrupt(
                    rec.offset,
                    format!("record {} where record {expected} was expected", rec.lsn),
                ));
            }
            let got = engine.apply_decided(&rec.command, Dispatch::Hold).outcome;
            if got != rec.outcome {
                return Err(JournalError::Diverged {
                    lsn: rec.lsn,
                    file: name.clone(),
                    offset: rec.offset,
                    expected: Box::new(rec.outcome),
                    got: Box::new(got),
                });
            }
            expected += 1;
            report.replayed += 1;
        }
        let (offset, reason) = match seg.end {
            SegmentEnd::Clean => {
                len = bytes.len() as u64;
                i += 1;
                continue;
            }
            SegmentEnd::Torn { offset } if last => {
                st.truncate_segment(n, offset)
                    .map_err(JournalError::io("cut the torn tail of", name.clone()))?;
                report.torn_tail = Some(Cut {
                    file: name,
                    offset,
                    bytes: bytes.len() as u64 - offset,
                });
                len = offset;
                break;
            }
            SegmentEnd::Torn { offset } => (
                offset,
                "the segment ends in a half-written record, but later segments exist".to_owned(),
            ),
            SegmentEnd::Corrupt { offset, reason } => (offset, reason),
        };
        if strict || seg.header.is_none() {
            return Err(corrupt(offset, reason));
        }
        // Recovery::TruncateAtCorruption: the operator accepted the loss.
        let mut lost = bytes.len() as u64 - offset;
        st.truncate_segment(n, offset)
            .map_err(JournalError::io("cut", name.clone()))?;
        let later = segs.split_off(i + 1);
        for &m in &later {
            let other = st.segment_name(m);
            lost += st
                .read_segment(m)
                .map_err(JournalError::io("read", other.clone()))?
                .len() as u64;
            st.remove_segment(m)
                .map_err(JournalError::io("remove", other))?;
        }
        report.discarded = Some(Discarded {
            file: name,
            offset,
            reason,
            bytes: lost,
            segments: later.len(),
        });
        len = offset;
        break;
    }
    // A newest segment holding no record and not beginning where the log
    // goes on (left by a failure right after it was made) is dropped; the
    // writer starts a new one.
    if len <= crate::frame::SEGMENT_HEADER_LEN as u64
        && let Some(&n) = segs.last()
        && n != expected
    {
        st.remove_segment(n)
            .map_err(JournalError::io("remove", st.segment_name(n)))?;
        segs.pop();
    }
    if segs.is_empty() {
        len = 0;
    }

    // 3. Writing from here on, then recovery, through the engine's commit
    // path and so journaled: live tasks fail as interrupted, graphs in a
    // transitional state go to Abnormal. Syncs wait for the last one.
    log.resume(Resume {
        next_lsn: expected,
        segments: segs,
        len,
        salt,
        snapshot: loaded,
    });
    log.defer_syncs(true);
    let events = engine.subscribe();
    let at = engine.now();
    for key in engine.keys() {
        let done = engine.apply(Command::new(key.clone(), at, Op::Recover));
        report.events.extend(events.drain());
        match done {
            Ok(Outcome::Recovered {
                interrupted,
                abnormal,
            }) => {
                report.interrupted += interrupted;
                if abnormal {
                    report.abnormal.push(key);
                }
            }
            Ok(_) => {}
            // A recovery is refused only by a journal that failed.
            Err(_) => return Err(log.failure()),
        }
    }
    log.defer_syncs(false);
    log.sync_all()?;
    report.next_lsn = log.status().next_lsn;

    // 4. Snapshots from here on are the snapshot thread's.
    let snapshots = if auto_snapshots {
        let (wake, woken) = crossbeam_channel::bounded(1);
        log.set_wake(wake);
        Some(
            snapshot::spawn(log.clone(), engine.downgrade(), woken).map_err(JournalError::io(
                "start the snapshot thread of",
                "the journal",
            ))?,
        )
    } else {
        None
    };
    Ok(Durable {
        engine,
        jobs,
        journal: Journal {
            log,
            _snapshots: snapshots,
        },
        report,
    })
}
