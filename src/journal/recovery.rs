//! Opening a durable engine: the newest valid snapshot, the log replayed
//! after it, a torn tail cut, corruption refused, then recovery.

use std::io;

use super::frame::{SegmentEnd, decode_segment};
use super::snapshot;
use super::storage::Storage;
use super::writer::{Journal, JournalOptions, Recovery};
use crate::engine::{Engine, EngineBuilder};
use crate::error::Error;
use crate::events::Event;
use crate::graph::GraphData;
use crate::id::GraphKey;
use crate::outbox::JobReceiver;

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

fn io_err(what: String) -> impl FnOnce(io::Error) -> Error {
    move |e| Error::Journal {
        detail: format!("{what}: {e}"),
    }
}

/// Opens a durable engine on `storage`: see [`EngineBuilder::open_durable`].
pub(crate) fn open(
    builder: EngineBuilder,
    storage: Box<dyn Storage>,
    options: JournalOptions,
) -> Result<(Engine, JobReceiver, RecoveryReport), Error> {
    let st = &*storage;
    let mut report = RecoveryReport::default();
    let (engine, jobs) = builder.build();

    // 1. The newest snapshot that reads back whole.
    let snaps = st
        .snapshots()
        .map_err(io_err("cannot list snapshots".to_owned()))?;
    let mut from = 1;
    let mut loaded = None;
    for &lsn in snaps.iter().rev() {
        let read = st
            .read_snapshot(lsn)
            .map_err(|e| format!("cannot be read: {e}"))
            .and_then(|bytes| {
                let graphs = snapshot::decode(lsn, &bytes)?
                    .into_iter()
                    .map(GraphData::from_image)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((graphs, bytes.len() as u64))
            });
        match read {
            Ok((graphs, len)) => {
                for g in graphs {
                    engine.install(g)?;
                }
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

    // 2. The log from there on.
    let mut segs = st
        .segments()
        .map_err(io_err("cannot list log segments".to_owned()))?;
    // Segments holding only records below `from` are not read.
    let skip = segs.windows(2).take_while(|w| w[1] <= from).count();
    let mut expected = from;
    let mut len = 0;
    let mut i = skip;
    while let Some(&n) = segs.get(i) {
        let name = st.segment_name(n);
        let gap = |offset: u64, detail: String| Error::JournalCorrupt {
            file: name.clone(),
            offset,
            detail,
        };
        if n > expected {
            return Err(gap(
                0,
                format!(
                    "the segment begins at record {n}, but the log before it ends at record {expected}: records are missing"
                ),
            ));
        }
        let bytes = st
            .read_segment(n)
            .map_err(io_err(format!("cannot read {name}")))?;
        let seg = decode_segment(&bytes);
        if let Some(r) = seg.records.first()
            && r.lsn != n
        {
            return Err(gap(
                0,
                format!("the segment named {n} begins with record {}", r.lsn),
            ));
        }
        for rec in seg.records {
            if rec.lsn < expected {
                continue;
            }
            if rec.lsn != expected {
                return Err(gap(
                    rec.offset,
                    format!("record {} where record {expected} was expected", rec.lsn),
                ));
            }
            engine.replay(&rec.command).map_err(|e| Error::Journal {
                detail: format!(
                    "record {} at byte {} of {name} is refused on replay ({e}): \
                     was the journal written with another configuration?",
                    rec.lsn, rec.offset
                ),
            })?;
            expected += 1;
            report.replayed += 1;
        }
        let last = i + 1 == segs.len();
        let (offset, reason) = match seg.end {
            SegmentEnd::Clean => {
                len = bytes.len() as u64;
                i += 1;
                continue;
            }
            SegmentEnd::Torn { offset } if last => {
                st.truncate_segment(n, offset)
                    .map_err(io_err(format!("cannot cut the torn tail of {name}")))?;
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
        if options.recovery == Recovery::Strict {
            return Err(Error::JournalCorrupt {
                file: name,
                offset,
                detail: reason,
            });
        }
        // Recovery::TruncateAtCorruption: the operator accepted the loss.
        let mut lost = bytes.len() as u64 - offset;
        st.truncate_segment(n, offset)
            .map_err(io_err(format!("cannot cut {name}")))?;
        let later = segs.split_off(i + 1);
        for &m in &later {
            let other = st.segment_name(m);
            lost += st
                .read_segment(m)
                .map_err(io_err(format!("cannot read {other}")))?
                .len() as u64;
            st.remove_segment(m)
                .map_err(io_err(format!("cannot remove {other}")))?;
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
    // An empty newest segment that does not begin where the log goes on
    // (left by a failure right after it was made) is dropped; the writer
    // starts a new one.
    if len == 0
        && let Some(&n) = segs.last()
        && n != expected
    {
        st.remove_segment(n)
            .map_err(io_err(format!("cannot remove {}", st.segment_name(n))))?;
        segs.pop();
    }

    // 3. Writing from here on, then recovery: live tasks fail as
    // interrupted, graphs in a transitional state go to Abnormal.
    let journal = Journal::new(storage, options, expected, segs, len, loaded);
    let engine = engine.attach(journal)?;
    let (interrupted, abnormal, events) = engine.recover_all()?;
    report.interrupted = interrupted;
    report.abnormal = abnormal;
    report.events = events;
    report.next_lsn = engine.journal_status().map_or(expected, |s| s.next_lsn);
    Ok((engine, jobs, report))
}
