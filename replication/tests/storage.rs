//! The log store and the state machine against openraft's storage
//! conformance suite, on disk and in memory, with both flush modes; the
//! log store cut at every byte and with every bit flipped; snapshots
//! damaged and hostile.

use std::sync::Arc;

use graph_lifecycle::{Command, Config, GraphKey, Op, Payload, Timestamp};
use graph_lifecycle_journal::{FileStorage, MemStorage, Storage};
use graph_lifecycle_raft::log_store::OpenReport;
use graph_lifecycle_raft::types::{Entry, LogId, StorageError};
use graph_lifecycle_raft::{
    Batch, Body, Flush, Local, LogOptions, LogStore, LogStoreError, MemMeta, Meta, Proposal,
    StateMachine, TypeConfig,
};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader};
use uuid::Uuid;

struct MemBuilder(Flush);

impl StoreBuilder<TypeConfig, LogStore, StateMachine, ()> for MemBuilder {
    async fn build(&self) -> Result<((), LogStore, StateMachine), StorageError> {
        let meta: Arc<dyn Meta> = Arc::new(MemMeta::new());
        let (log, _) = LogStore::open(
            Box::new(MemStorage::new()),
            meta.clone(),
            LogOptions {
                flush: self.0,
                segment_bytes: 256,
            },
        )
        .expect("an empty store opens");
        let (local, _jobs) = Local::new(1, 1);
        let sm = StateMachine::open(Config::default(), meta, local, None).expect("no snapshot");
        Ok(((), log, sm))
    }
}

struct DirBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for DirBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let meta: Arc<dyn Meta> =
            Arc::new(graph_lifecycle_raft::FileMeta::open(dir.path().join("meta")).unwrap());
        let (log, _) = LogStore::open(
            Box::new(FileStorage::open(dir.path().join("log")).unwrap()),
            meta.clone(),
            LogOptions {
                flush: Flush::Background,
                segment_bytes: 512,
            },
        )
        .expect("an empty store opens");
        let (local, _jobs) = Local::new(1, 1);
        let sm = StateMachine::open(Config::default(), meta, local, None).expect("no snapshot");
        Ok((dir, log, sm))
    }
}

// The suite returns openraft's own error type.
#[allow(clippy::result_large_err)]
#[test]
fn the_conformance_suite_passes_in_memory_with_inline_flushes() -> Result<(), StorageError> {
    Suite::test_all(MemBuilder(Flush::Inline))
}

#[allow(clippy::result_large_err)]
#[test]
fn the_conformance_suite_passes_in_memory_with_a_writer_thread() -> Result<(), StorageError> {
    Suite::test_all(MemBuilder(Flush::Background))
}

#[allow(clippy::result_large_err)]
#[test]
fn the_conformance_suite_passes_on_disk() -> Result<(), StorageError> {
    Suite::test_all(DirBuilder)
}

// ---- cuts and flips ------------------------------------------------------------

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

/// An entry holding a core command whose payload imitates the log's own
/// framing: a segment header and a frame with the sync mark.
fn entry(index: u64) -> Entry {
    let key = GraphKey::parse("p", "g").unwrap();
    let mut forged = b"GLJSEG\0\x02".to_vec();
    forged.extend_from_slice(&[0xff, 0xff, 0xff, 0x80, 1, 2, 3, 4]);
    forged.extend_from_slice(&index.to_le_bytes());
    let cmd = Command::new(
        key,
        Timestamp::from_millis(1_000 + index),
        Op::Import {
            job: graph_lifecycle::SequentialIds::new(7)
                .next_id_for_test(Timestamp::from_millis(1_000 + index)),
            payload: Payload::new(forged),
        },
    );
    Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Normal(Batch {
            proposals: vec![Proposal {
                id: Uuid::from_u128(u128::from(index)),
                body: Body::Core(cmd),
            }],
        }),
    }
}

trait NextId {
    fn next_id_for_test(&self, at: Timestamp) -> graph_lifecycle::JobId;
}

impl NextId for graph_lifecycle::SequentialIds {
    fn next_id_for_test(&self, at: Timestamp) -> graph_lifecycle::JobId {
        graph_lifecycle::IdSource::next_id(self, at)
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
}

fn open(disk: &MemStorage, meta: &MemMeta) -> Result<(LogStore, OpenReport), LogStoreError> {
    LogStore::open(
        Box::new(disk.clone()),
        Arc::new(meta.clone()),
        LogOptions {
            flush: Flush::Inline,
            segment_bytes: 700,
        },
    )
}

/// Appends entries 1..=n, each in its own write.
fn write_log(n: u64) -> (MemStorage, MemMeta) {
    let disk = MemStorage::new();
    let meta = MemMeta::new();
    let (mut log, _) = open(&disk, &meta).unwrap();
    rt().block_on(async {
        for i in 1..=n {
            log.blocking_append([entry(i)]).await.unwrap();
        }
    });
    (disk, meta)
}

fn entries(log: &mut LogStore) -> Vec<Entry> {
    rt().block_on(log.try_get_log_entries(0..)).unwrap()
}

#[test]
fn a_log_cut_at_every_byte_keeps_exactly_the_records_before_the_cut() {
    use graph_lifecycle_journal::frame::{Frame, SegmentHeader, decode_frame};
    let (disk, meta) = write_log(12);
    let segs = disk.segments().unwrap();
    assert!(segs.len() >= 2, "the test needs several segments: {segs:?}");
    let last = *segs.last().unwrap();
    let bytes = disk.read_segment(last).unwrap();
    let (mut full, _) = open(&disk, &meta).unwrap();
    let all = entries(&mut full);
    assert_eq!(all.len(), 12);
    // Where each record of the last segment ends.
    let salt = SegmentHeader::decode(&bytes).unwrap().salt;
    let mut ends = Vec::new();
    let mut at = 24;
    while let Frame::Record { next, .. } = decode_frame(&bytes, at, salt) {
        ends.push(next);
        at = next;
    }
    let before_last = (last - 1) as usize;
    for cut in 0..=bytes.len() {
        let copy = disk.crash_keeping(usize::MAX);
        copy.truncate_segment(last, cut as u64).unwrap();
        let (mut log, report) = match open(&copy, &meta) {
            Ok(x) => x,
            Err(e) => panic!("cut at {cut}: {e}"),
        };
        let got = entries(&mut log);
        let whole = before_last + ends.iter().filter(|e| **e <= cut).count();
        assert_eq!(got.len(), whole, "cut at {cut}");
        assert_eq!(&all[..whole], &got[..], "cut at {cut}");
        let on_boundary = cut <= 24 || ends.contains(&cut);
        assert_eq!(report.torn_tail.is_some(), !on_boundary, "cut at {cut}");
        // The cut store takes the next entry where it ends.
        rt().block_on(log.blocking_append([entry(whole as u64 + 1)]))
            .unwrap();
        let (mut again, _) = open(&copy, &meta).unwrap();
        assert_eq!(entries(&mut again).len(), whole + 1, "cut at {cut}");
    }
}

#[test]
fn a_flipped_bit_is_refused_as_corruption_or_cut_as_a_torn_tail_never_read() {
    let (disk, meta) = write_log(8);
    let segs = disk.segments().unwrap();
    let (mut full, _) = open(&disk, &meta).unwrap();
    let all = entries(&mut full);
    for &seg in &segs {
        let bytes = disk.read_segment(seg).unwrap();
        for byte in 0..bytes.len() {
            for bit in [0u8, 3, 7] {
                let copy = disk.crash_keeping(usize::MAX);
                let mut b = bytes.clone();
                b[byte] ^= 1 << bit;
                copy.truncate_segment(seg, 0).unwrap();
                copy.remove_segment(seg).unwrap();
                copy.create_segment(seg, &b).unwrap();
                match open(&copy, &meta) {
                    Err(LogStoreError::Corrupt { .. }) => {}
                    Err(e) => panic!("segment {seg} byte {byte} bit {bit}: {e}"),
                    Ok((mut log, report)) => {
                        // Only a torn tail in the last segment may be cut;
                        // what is read is a prefix of what was written.
                        assert_eq!(Some(&seg), segs.last(), "byte {byte} bit {bit}");
                        assert!(report.torn_tail.is_some(), "byte {byte} bit {bit}");
                        let got = entries(&mut log);
                        assert!(got.len() < all.len());
                        assert_eq!(&all[..got.len()], &got[..], "byte {byte} bit {bit}");
                    }
                }
            }
        }
    }
}

#[test]
fn a_power_cut_keeps_every_acknowledged_entry() {
    let (disk, meta) = write_log(10);
    let (mut log, report) = open(&disk.crash(), &meta.crash()).unwrap();
    assert_eq!(report.torn_tail, None);
    assert_eq!(entries(&mut log).len(), 10);
}

#[test]
fn truncating_and_purging_are_durable() {
    let (disk, meta) = write_log(12);
    let (mut log, _) = open(&disk, &meta).unwrap();
    rt().block_on(async {
        log.truncate(log_id(1, 9)).await.unwrap();
        log.purge(log_id(1, 3)).await.unwrap();
    });
    let (mut again, _) = open(&disk.crash(), &meta.crash()).unwrap();
    let got: Vec<u64> = entries(&mut again).iter().map(|e| e.log_id.index).collect();
    assert_eq!(got, (4..=8).collect::<Vec<_>>());
    let st = rt().block_on(again.get_log_state()).unwrap();
    assert_eq!(st.last_purged_log_id, Some(log_id(1, 3)));
    assert_eq!(st.last_log_id, Some(log_id(1, 8)));
}

#[test]
fn a_damaged_vote_stops_the_store_from_opening() {
    let (disk, meta) = write_log(2);
    let (mut log, _) = open(&disk, &meta).unwrap();
    rt().block_on(log.save_vote(&openraft::Vote::new(3, 1)))
        .unwrap();
    let mut raw = meta.raw("vote").unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 1;
    meta.put_raw("vote", raw);
    assert!(open(&disk, &meta).is_err());
}

// ---- snapshots ---------------------------------------------------------------------

#[test]
fn a_damaged_or_hostile_snapshot_is_refused_before_it_is_used() {
    use graph_lifecycle_raft::snapshot;
    let meta = MemMeta::new();
    let (local, _jobs) = Local::new(1, 1);
    let mut sm =
        StateMachine::open(Config::default(), Arc::new(meta.clone()), local, None).unwrap();
    rt().block_on(async {
        let create = |i: u64| Entry {
            log_id: log_id(1, i),
            payload: EntryPayload::Normal(Batch {
                proposals: vec![Proposal {
                    id: Uuid::from_u128(u128::from(i)),
                    body: Body::Core(Command::new(
                        GraphKey::parse("p", &format!("g{i}")).unwrap(),
                        Timestamp::from_millis(5),
                        Op::Create,
                    )),
                }],
            }),
        };
        sm.apply([create(1), create(2)]).await.unwrap();
        let mut b = sm.get_snapshot_builder().await;
        use openraft::RaftSnapshotBuilder;
        b.build_snapshot().await.unwrap();
    });
    let bytes = meta.read("snapshot").unwrap().unwrap();
    let cfg = Config::default();
    let good = snapshot::decode(&bytes, &cfg).unwrap();
    assert_eq!(good.cluster.owners.len(), 2);
    for cut in 0..bytes.len() {
        assert!(snapshot::decode(&bytes[..cut], &cfg).is_err(), "cut {cut}");
    }
    for byte in 0..bytes.len() {
        let mut b = bytes.clone();
        b[byte] ^= 0x10;
        assert!(snapshot::decode(&b, &cfg).is_err(), "byte {byte}");
    }
    // A well-framed snapshot whose cluster state names a graph the image
    // lacks: refused by the check of the two together.
    let mut cluster = good.cluster.clone();
    cluster
        .owners
        .insert(GraphKey::parse("p", "ghost").unwrap(), Some(1));
    let forged = snapshot::encode(&good.meta, &cluster, &good.image.encode()).unwrap();
    assert!(matches!(
        snapshot::decode(&forged, &cfg),
        Err(snapshot::SnapshotError::Cluster(_))
    ));
    // A snapshot whose image breaks the node's caps: refused too.
    let small = Config::default().max_graphs(1);
    assert!(matches!(
        snapshot::decode(&bytes, &small),
        Err(snapshot::SnapshotError::Image(_))
    ));
    // The state machine restores a good one at start.
    let (local, _jobs) = Local::new(1, 1);
    let restored = StateMachine::open(cfg, Arc::new(meta), local, None).unwrap();
    assert_eq!(restored.engine().graph_count(), 2);
    assert_eq!(restored.last_applied(), Some(log_id(1, 2)));
}
