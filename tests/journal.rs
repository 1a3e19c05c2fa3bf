//! The durable journal (feature `journal`): recovery from any cut, any
//! flipped bit, any crash; snapshots and compaction; the durability
//! policies; a failing disk.
//!
//! Most tests drive a durable engine on a `MemStorage` with commands made
//! by a seeded generator, and check the recovered engine against a plain
//! in-memory engine (the reference) that applied the same acknowledged
//! commands. The expected state after recovery is computed here, not by
//! the crate: every live task Failed as interrupted at the recovery's
//! time, every graph in a transitional state Abnormal.
//!
//! `JOURNAL_CASES=2000 cargo test --release --features journal --test
//! journal` runs the property tests with more cases.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use graph_lifecycle::journal::{
    Durability, FileStorage, Frame, JournalOptions, MemStorage, Recovery, RecoveryReport,
    SegmentEnd, Storage, decode_frame, decode_segment, encode_record,
};
use graph_lifecycle::{
    Change, Command, Config, Engine, Error, FailReason, GraphKey, GraphState, HostKind, IdSource,
    JobReceiver, LifecycleKind, ManualClock, Op, Payload, Report, SequentialIds, Snapshot,
    TaskQuery, TaskSpec, TaskStatus, Timestamp,
};
use proptest::prelude::*;

// ---- the harness --------------------------------------------------------------

/// The time recovery runs at.
const RECOVERY_AT: u64 = 50_000_000;

fn config() -> Config {
    // Retention large enough that recovery evicts nothing, so the expected
    // state is easy to compute; an import timeout, so expiry does work.
    Config::default()
        .max_retained_per_graph(10_000)
        .timeout(LifecycleKind::Import, Some(Duration::from_millis(300)))
}

fn options(durability: Durability) -> JournalOptions {
    JournalOptions::new(durability).snapshot_after_bytes(None)
}

/// Opens a durable engine whose clock shows [`RECOVERY_AT`]. Each opening
/// draws ids with another seed: an id source must not repeat the ids of
/// an earlier run of the same journal.
fn open(
    storage: &MemStorage,
    options: JournalOptions,
) -> Result<(Engine, JobReceiver, RecoveryReport), Error> {
    static RUN: AtomicU64 = AtomicU64::new(100);
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(RECOVERY_AT)));
    Engine::builder()
        .config(config())
        .clock(clock)
        .ids(SequentialIds::new(
            RUN.fetch_add(1, Ordering::Relaxed) % 4096,
        ))
        .open_durable(storage.clone(), options)
}

fn reference() -> (Engine, JobReceiver) {
    Engine::builder().config(config()).build()
}

/// `s` as recovery at `at` must leave it: live tasks Failed as
/// interrupted, transitional graphs Abnormal.
fn interrupted(s: &Snapshot, at: Timestamp) -> Snapshot {
    let mut s = s.clone();
    for g in &mut s.graphs {
        let mut changed = false;
        for t in &mut g.tasks {
            if !t.status.is_terminal() {
                t.status = TaskStatus::Failed;
                t.reason = Some(FailReason::Interrupted);
                t.ended_at = Some(at);
                changed = true;
            }
        }
        g.info.retained_tasks += g.info.live_tasks;
        g.info.live_tasks = 0;
        g.info.job = None;
        g.restart_key = None;
        if g.info.state.job_kind().is_some() {
            g.info.state = GraphState::Abnormal;
            changed = true;
        }
        if changed {
            g.info.updated_at = at;
        }
    }
    s
}

fn recovered(s: &Snapshot) -> Snapshot {
    interrupted(s, Timestamp::from_millis(RECOVERY_AT))
}

/// A small xorshift generator: the tests are reproducible from a seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const KEYS: [(&str, &str); 4] = [("p1", "a"), ("p1", "b"), ("p2", "a"), ("p2", "c")];

/// Makes commands that mostly succeed on the reference: creations first,
/// reports on live tasks, every kind of operation.
struct Gen {
    rng: Rng,
    ids: SequentialIds,
    now: u64,
}

impl Gen {
    fn new(seed: u64) -> Self {
        Gen {
            rng: Rng::new(seed),
            ids: SequentialIds::new(seed % 4096),
            now: 1_000,
        }
    }

    fn command(&mut self, reference: &Engine) -> Command {
        self.now += self.rng.below(120);
        let at = Timestamp::from_millis(self.now);
        let (p, g) = KEYS[self.rng.below(KEYS.len() as u64) as usize];
        let key = GraphKey::parse(p, g).expect("valid key");
        let exists = reference.graph(&key).is_ok();
        let live = reference
            .tasks(
                &key,
                &TaskQuery::new().statuses(graph_lifecycle::StatusSet::LIVE),
            )
            .map(|p| p.items)
            .unwrap_or_default();
        let job = self.ids.next_id(at);
        let op = match self.rng.below(24) {
            _ if !exists && self.rng.below(3) > 0 => Op::Create,
            0 => Op::Create,
            1 => Op::Remove,
            2 | 3 => Op::Start {
                job,
                payload: Payload::from("backup-7"),
            },
            4 => Op::Stop { job },
            5 => Op::Import {
                job,
                payload: Payload::from("s3://bucket/edges.csv"),
            },
            6 => Op::Export {
                job,
                payload: Payload::EMPTY,
            },
            7 => Op::Clear {
                job,
                clear_metadata: self.rng.below(2) == 0,
            },
            8 => Op::ForceRestart {
                job,
                idempotency_key: (self.rng.below(2) == 0).then(|| "retry-key".to_owned()),
            },
            9 | 10 => Op::RegisterTask {
                job,
                spec: TaskSpec::new(HostKind::new("pagerank").expect("valid kind"))
                    .payload("{\"iterations\": 3}"),
            },
            11 => Op::Expire,
            12 if !live.is_empty() => Op::Cancel {
                job: live[self.rng.below(live.len() as u64) as usize].id,
            },
            _ if !live.is_empty() => {
                let t = &live[self.rng.below(live.len() as u64) as usize];
                let report = match self.rng.below(6) {
                    0 => Report::Started,
                    1 | 2 => Report::Progress((t.progress + 10).min(100)),
                    3 => Report::Failed("disk full".to_owned()),
                    _ => Report::Succeeded,
                };
                Op::Report {
                    job: t.id,
                    epoch: t.epoch,
                    report,
                }
            }
            _ => Op::Start {
                job,
                payload: Payload::EMPTY,
            },
        };
        Command { key, at, op }
    }
}

/// A journal of `n` committed commands on a `MemStorage` (one segment), and
/// the reference's snapshot after each prefix: `states[i]` holds the
/// first `i` records.
struct Journal {
    disk: MemStorage,
    states: Vec<Snapshot>,
}

fn journal(seed: u64, n: usize) -> Journal {
    journal_with(seed, n, Durability::SyncEveryCommit)
}

fn journal_with(seed: u64, n: usize, durability: Durability) -> Journal {
    let disk = MemStorage::new();
    let (engine, _jobs, _) = open(&disk, options(durability)).expect("open");
    let (reference, _ref_jobs) = reference();
    let mut g = Gen::new(seed);
    let mut states = vec![reference.snapshot()];
    while states.len() <= n {
        let cmd = g.command(&reference);
        let want = reference.apply(cmd.clone());
        let got = engine.apply(cmd);
        assert_eq!(got, want, "the durable engine and the reference disagree");
        if want.is_ok() {
            states.push(reference.snapshot());
        }
    }
    assert_eq!(engine.snapshot(), reference.snapshot());
    Journal { disk, states }
}

/// The record boundaries of a segment: offsets where records begin, and
/// its length.
fn boundaries(bytes: &[u8]) -> Vec<usize> {
    let seg = decode_segment(bytes);
    assert_eq!(seg.end, SegmentEnd::Clean);
    let mut b: Vec<usize> = seg.records.iter().map(|r| r.offset as usize).collect();
    b.push(bytes.len());
    b
}

fn only_segment(disk: &MemStorage) -> Vec<u8> {
    let segs = disk.segments().expect("segments");
    assert_eq!(segs, vec![1], "one segment, from record 1");
    disk.read_segment(1).expect("segment")
}

fn cases(default: u32) -> u32 {
    std::env::var("JOURNAL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---- recovery of what was acknowledged -----------------------------------------

#[test]
fn a_reopened_engine_fails_live_tasks_as_interrupted_and_transitional_graphs_go_abnormal() {
    let disk = MemStorage::new();
    let movies = GraphKey::parse("tenant", "movies").unwrap();
    let social = GraphKey::parse("tenant", "social").unwrap();
    let (import, pagerank) = {
        let (engine, jobs, report) = open(&disk, options(Durability::SyncEveryCommit)).unwrap();
        assert_eq!(report.replayed, 0);
        engine.create_graph(&movies).unwrap();
        engine.create_graph(&social).unwrap();
        engine.start(&movies).unwrap();
        let job = jobs.try_recv().unwrap();
        engine.report(&job.task, Report::Succeeded).unwrap();
        let pagerank = engine
            .register_task(&movies, TaskSpec::new(HostKind::new("pagerank").unwrap()))
            .unwrap();
        let import = engine.import(&movies, "s3://edges").unwrap();
        (import, pagerank.id())
    };
    let disk = disk.crash();
    let (engine, jobs, report) = open(&disk, JournalOptions::default()).unwrap();
    assert_eq!(report.replayed, 6);
    assert_eq!(report.interrupted, 2);
    assert_eq!(report.abnormal, vec![movies.clone()]);
    assert_eq!(report.torn_tail, None);
    assert_eq!(engine.state(&movies).unwrap(), GraphState::Abnormal);
    assert_eq!(engine.state(&social).unwrap(), GraphState::Stopped);
    for id in [import, pagerank] {
        let t = engine.task(&movies, id).unwrap();
        assert_eq!(t.status, TaskStatus::Failed);
        assert_eq!(t.reason, Some(FailReason::Interrupted));
        assert_eq!(t.reason.unwrap().to_string(), "interrupted");
    }
    // An event for each task and for the graph.
    let interrupted: Vec<_> = report
        .events
        .iter()
        .filter(|e| {
            matches!(
                &e.change,
                Change::Task {
                    reason: Some(FailReason::Interrupted),
                    status: TaskStatus::Failed,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(interrupted.len(), 2);
    assert!(report.events.iter().any(|e| e.key == movies
        && e.change
            == Change::State {
                from: GraphState::Importing,
                to: GraphState::Abnormal,
                epoch: graph_lifecycle::Epoch(0),
            }));
    assert!(report.events.windows(2).all(|w| w[0].seq < w[1].seq));
    // No job was handed over by the replay or the recovery.
    assert!(jobs.try_recv().is_err());
    // A forced restart works as usual.
    let restart = engine.force_restart(&movies, None).unwrap();
    assert_eq!(restart.failed, 0);
    let job = jobs.try_recv().unwrap();
    engine.report(&job.task, Report::Succeeded).unwrap();
    assert_eq!(engine.state(&movies).unwrap(), GraphState::Running);
    let after = engine.snapshot();
    drop(engine);
    // Reopening again replays the recovery and the restart: same state,
    // nothing left to recover.
    let (engine, _jobs, report) = open(&disk, JournalOptions::default()).unwrap();
    assert_eq!(report.interrupted, 0);
    assert!(report.abnormal.is_empty());
    assert_eq!(engine.snapshot(), after);
}

#[test]
fn a_refused_command_is_not_journaled() {
    let disk = MemStorage::new();
    let key = GraphKey::parse("p", "g").unwrap();
    let (engine, _jobs, _) = open(&disk, options(Durability::SyncEveryCommit)).unwrap();
    engine.create_graph(&key).unwrap();
    assert_eq!(engine.stop(&key).unwrap_err().code(), "TRANSITION_REFUSED");
    assert_eq!(
        engine.create_graph(&key).unwrap_err().code(),
        "GRAPH_EXISTS"
    );
    assert_eq!(engine.journal_status().unwrap().next_lsn, 2);
    drop(engine);
    let (_, _, report) = open(&disk, JournalOptions::default()).unwrap();
    assert_eq!(report.replayed, 1);
}

#[test]
fn recovery_state_equals_the_reference_with_live_tasks_interrupted() {
    for seed in 1..=8 {
        let j = journal(seed, 200);
        let (engine, _jobs, report) = open(&j.disk.crash(), JournalOptions::default()).unwrap();
        assert_eq!(report.replayed, 200);
        let want = recovered(j.states.last().unwrap());
        assert_eq!(engine.snapshot(), want, "seed {seed}");
        // Nothing is left live or transitional.
        for g in engine.snapshot().graphs {
            assert_eq!(g.info.live_tasks, 0);
            assert!(g.info.state.job_kind().is_none());
        }
    }
}

// ---- torn tails and corruption ------------------------------------------------------

/// The journal cut at every byte offset: recovery yields exactly the
/// records wholly before the cut, cuts the rest, and never panics.
#[test]
fn a_journal_cut_at_every_byte_offset_recovers_the_records_before_the_cut() {
    let j = journal(42, 300);
    let bytes = only_segment(&j.disk);
    let bounds = boundaries(&bytes);
    assert_eq!(bounds.len(), 301);
    let mut whole = 0;
    for cut in 0..=bytes.len() {
        while whole + 1 < bounds.len() && bounds[whole + 1] <= cut {
            whole += 1;
        }
        let disk = MemStorage::new();
        disk.put_segment(1, bytes[..cut].to_vec());
        let (engine, _jobs, report) =
            open(&disk, JournalOptions::default()).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(report.replayed, whole as u64, "cut at {cut}");
        let torn = cut - bounds[whole];
        assert_eq!(
            report.torn_tail.as_ref().map(|c| (c.offset, c.bytes)),
            (torn > 0).then_some((bounds[whole] as u64, torn as u64)),
            "cut at {cut}"
        );
        assert_eq!(
            engine.snapshot(),
            recovered(&j.states[whole]),
            "cut at {cut}"
        );
    }
}

/// A bit flipped anywhere in the log is detected: the damaged record is
/// never applied. In the middle of the log, opening refuses with the
/// record's offset; in the last record, it is cut as a torn tail.
#[test]
fn a_flipped_bit_anywhere_is_detected_never_applied() {
    let j = journal(7, 150);
    let bytes = only_segment(&j.disk);
    let bounds = boundaries(&bytes);
    let records = bounds.len() - 1;
    let (mut refused, mut cut) = (0, 0);
    for at in 0..bytes.len() {
        let rec = bounds.partition_point(|&b| b <= at) - 1;
        let mut damaged = bytes.clone();
        damaged[at] ^= 1 << (at * 5 % 8);
        let disk = MemStorage::new();
        disk.put_segment(1, damaged);
        match open(&disk, JournalOptions::default()) {
            Err(Error::JournalCorrupt { offset, file, .. }) => {
                assert_eq!(offset, bounds[rec] as u64, "flip at {at}");
                assert!(file.contains("segment 1"), "{file}");
                assert!(rec + 1 < records, "the last record is torn, not corrupt");
                refused += 1;
            }
            Ok((engine, _jobs, report)) => {
                assert_eq!(rec + 1, records, "flip at {at} was not refused");
                assert_eq!(report.torn_tail.map(|c| c.offset), Some(bounds[rec] as u64));
                assert_eq!(engine.snapshot(), recovered(&j.states[rec]));
                cut += 1;
            }
            Err(e) => panic!("flip at {at}: {e}"),
        }
    }
    assert_eq!(refused, bounds[records - 1]);
    assert_eq!(cut, bytes.len() - bounds[records - 1]);
}

#[test]
fn a_corrupt_record_names_its_file_and_offset_and_truncation_is_the_way_past_it() {
    let j = journal(11, 100);
    let mut bytes = only_segment(&j.disk);
    let bounds = boundaries(&bytes);
    bytes[bounds[40] + 9] ^= 0x20;
    let disk = MemStorage::new();
    disk.put_segment(1, bytes.clone());
    let e = open(&disk, JournalOptions::default()).unwrap_err();
    assert_eq!(e.code(), "JOURNAL_CORRUPT");
    assert_eq!(e.http_status(), 500);
    let text = e.to_string();
    assert!(
        text.contains(&format!("byte {}", bounds[40])) && text.contains("memory segment 1"),
        "{text}"
    );
    // Strict opening changed nothing.
    assert_eq!(disk.read_segment(1).unwrap(), bytes);

    let (engine, _jobs, report) = open(
        &disk,
        JournalOptions::default().recovery(Recovery::TruncateAtCorruption),
    )
    .unwrap();
    let d = report.discarded.expect("what was cut is reported");
    assert_eq!(d.offset, bounds[40] as u64);
    assert_eq!(d.bytes, (bytes.len() - bounds[40]) as u64);
    assert_eq!(report.replayed, 40);
    assert_eq!(engine.snapshot(), recovered(&j.states[40]));
    // The engine goes on, and opens strictly afterwards.
    let key = GraphKey::parse("p9", "new").unwrap();
    engine.create_graph(&key).unwrap();
    let want = engine.snapshot();
    drop(engine);
    let (engine, _jobs, _) = open(&disk, JournalOptions::default()).unwrap();
    assert_eq!(engine.snapshot(), want);
}

/// Under `NoSync` a power cut may bring the part of the log written since
/// the last sync back with holes (pages written back out of order): such
/// a hole is cut as a torn tail. A hole before a record written after a
/// sync is damage to synced bytes, and refused.
#[test]
fn holes_after_the_last_sync_are_cut_holes_before_it_are_refused() {
    let disk = MemStorage::new();
    let (engine, _jobs, _) = open(&disk, options(Durability::NoSync)).unwrap();
    let (reference, _rj) = reference();
    let mut g = Gen::new(12);
    let mut states = vec![reference.snapshot()];
    while states.len() <= 200 {
        if states.len() == 101 {
            engine.sync_journal().unwrap();
        }
        let cmd = g.command(&reference);
        if reference.apply(cmd.clone()).is_ok() {
            engine.apply(cmd).unwrap();
            states.push(reference.snapshot());
        }
    }
    // Everything reached the disk, as the OS had it, but nothing after the
    // sync is known to be durable.
    let image = disk.crash_keeping(usize::MAX);
    std::mem::forget(engine);
    let bytes = only_segment(&image);
    let records = decode_segment(&bytes).records;
    let marked: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].synced_before)
        .collect();
    assert_eq!(marked, vec![0, 100]);
    let hole = |i: usize| {
        let mut b = bytes.clone();
        let at = records[i].offset as usize + 3;
        b[at..at + 20].fill(0);
        let disk = MemStorage::new();
        disk.put_segment(1, b);
        open(&disk, JournalOptions::default())
    };
    let (engine, _jobs, report) = hole(150).unwrap();
    assert_eq!(
        report.torn_tail.map(|c| c.offset),
        Some(records[150].offset)
    );
    assert_eq!(engine.snapshot(), recovered(&states[150]));
    let e = hole(50).unwrap_err();
    assert_eq!(e.code(), "JOURNAL_CORRUPT");
    assert!(
        e.to_string()
            .contains(&format!("byte {}", records[50].offset)),
        "{e}"
    );
}

#[test]
fn under_the_sync_policies_every_write_begins_with_a_synced_record() {
    for durability in [
        Durability::SyncEveryCommit,
        Durability::GroupCommit {
            max_delay: Duration::ZERO,
        },
    ] {
        let j = journal_with(3, 50, durability);
        let bytes = only_segment(&j.disk);
        assert!(
            decode_segment(&bytes)
                .records
                .iter()
                .all(|r| r.synced_before)
        );
    }
}

#[test]
fn a_torn_segment_followed_by_another_is_corruption() {
    let disk = MemStorage::new();
    {
        let (engine, _jobs, _) = open(
            &disk,
            options(Durability::SyncEveryCommit).segment_bytes(200),
        )
        .unwrap();
        for i in 0..40 {
            let key = GraphKey::parse("p", &format!("g{i}")).unwrap();
            engine.create_graph(&key).unwrap();
        }
    }
    let segs = disk.segments().unwrap();
    assert!(segs.len() > 3, "{segs:?}");
    let second = disk.read_segment(segs[1]).unwrap();
    disk.put_segment(segs[1], second[..second.len() - 3].to_vec());
    let e = open(&disk, JournalOptions::default()).unwrap_err();
    assert_eq!(e.code(), "JOURNAL_CORRUPT", "{e}");
    // A missing segment in the middle is named too.
    let disk2 = disk.crash();
    disk2.remove_segment(segs[2]).unwrap();
    disk2.put_segment(segs[1], second);
    let e = open(&disk2, JournalOptions::default()).unwrap_err();
    assert!(e.to_string().contains("records are missing"), "{e}");
}

// ---- snapshots and compaction --------------------------------------------------------

#[test]
fn snapshots_bound_the_replay_and_compaction_deletes_old_segments() {
    let disk = MemStorage::new();
    let (reference, _rj) = reference();
    let mut g = Gen::new(5);
    let opts = options(Durability::SyncEveryCommit).segment_bytes(2_000);
    let (engine, _jobs, _) = open(&disk, opts.clone()).unwrap();
    let mut snaps = Vec::new();
    for round in 0..6 {
        let mut n = 0;
        while n < 100 {
            let cmd = g.command(&reference);
            let want = reference.apply(cmd.clone());
            assert_eq!(engine.apply(cmd), want);
            n += usize::from(want.is_ok());
        }
        snaps.push(engine.snapshot_journal().unwrap());
        assert_eq!(disk.snapshots().unwrap().len(), (round + 1).min(2));
    }
    // The log before the older kept snapshot is gone.
    let older = snaps[snaps.len() - 2];
    let segs = disk.segments().unwrap();
    assert!(
        segs[0] <= older && segs.get(1).is_none_or(|&s| s > older),
        "{segs:?}"
    );
    // A few more commands after the last snapshot, then a crash.
    let mut n = 0;
    while n < 30 {
        let cmd = g.command(&reference);
        let want = reference.apply(cmd.clone());
        assert_eq!(engine.apply(cmd), want);
        n += usize::from(want.is_ok());
    }
    drop(engine);
    let (engine, _jobs, report) = open(&disk.crash(), opts.clone()).unwrap();
    assert_eq!(report.snapshot, snaps.last().copied());
    assert_eq!(report.replayed, 30);
    assert_eq!(engine.snapshot(), recovered(&reference.snapshot()));
    drop(engine);

    // A damaged newest snapshot is passed over for the one before it.
    let newest = *snaps.last().unwrap();
    let mut bytes = disk.read_snapshot(newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    let disk = disk.crash();
    disk.put_snapshot(newest, bytes);
    let (engine, _jobs, report) = open(&disk, opts).unwrap();
    assert_eq!(report.snapshot, Some(older));
    assert_eq!(report.skipped_snapshots.len(), 1);
    assert!(
        report.skipped_snapshots[0].contains("checksum"),
        "{report:?}"
    );
    // The recovery journaled before is replayed: same state.
    assert_eq!(engine.snapshot(), recovered(&reference.snapshot()));
}

#[test]
fn automatic_snapshots_keep_the_log_short() {
    let disk = MemStorage::new();
    let opts = JournalOptions::new(Durability::SyncEveryCommit)
        .segment_bytes(1_000)
        .snapshot_after_bytes(Some(4_000));
    let (reference, _rj) = reference();
    let mut g = Gen::new(9);
    {
        let (engine, _jobs, _) = open(&disk, opts.clone()).unwrap();
        let mut n = 0;
        while n < 2_000 {
            let cmd = g.command(&reference);
            let want = reference.apply(cmd.clone());
            assert_eq!(engine.apply(cmd), want);
            n += usize::from(want.is_ok());
        }
        let status = engine.journal_status().unwrap();
        assert!(status.snapshot.is_some());
        assert!(status.since_snapshot < 20_000, "{status:?}");
    }
    let log: usize = disk
        .segments()
        .unwrap()
        .iter()
        .map(|&s| disk.read_segment(s).unwrap().len())
        .sum();
    assert!(log < 40_000, "{log} bytes of log kept");
    let (engine, _jobs, report) = open(&disk.crash(), opts).unwrap();
    assert!(report.replayed < 1_000, "{report:?}");
    assert_eq!(engine.snapshot(), recovered(&reference.snapshot()));
}

// ---- durability policies and failures ------------------------------------------------

#[test]
fn every_policy_keeps_what_it_acknowledged_through_a_process_crash() {
    for durability in [
        Durability::SyncEveryCommit,
        Durability::GroupCommit {
            max_delay: Duration::from_micros(200),
        },
        Durability::NoSync,
    ] {
        let j = {
            let disk = MemStorage::new();
            let (engine, _jobs, _) = open(&disk, options(durability)).unwrap();
            let (reference, _rj) = reference();
            let mut g = Gen::new(3);
            for _ in 0..300 {
                let cmd = g.command(&reference);
                assert_eq!(engine.apply(cmd.clone()), reference.apply(cmd));
            }
            // A process crash: what was written survives, synced or not.
            let kept = disk.crash_keeping(usize::MAX);
            std::mem::forget(engine); // no orderly sync on drop
            (kept, reference.snapshot())
        };
        let (engine, _jobs, _) = open(&j.0, JournalOptions::default()).unwrap();
        assert_eq!(engine.snapshot(), recovered(&j.1), "{durability:?}");
    }
}

#[test]
fn sync_policies_keep_what_they_acknowledged_through_a_power_cut_no_sync_a_prefix() {
    for durability in [
        Durability::SyncEveryCommit,
        Durability::GroupCommit {
            max_delay: Duration::ZERO,
        },
        Durability::NoSync,
    ] {
        let disk = MemStorage::new();
        let (engine, _jobs, _) = open(&disk, options(durability)).unwrap();
        let (reference, _rj) = reference();
        let mut g = Gen::new(4);
        let mut states = vec![reference.snapshot()];
        for _ in 0..200 {
            let cmd = g.command(&reference);
            if reference.apply(cmd.clone()).is_ok() {
                engine.apply(cmd).unwrap();
                states.push(reference.snapshot());
            }
        }
        let power_cut = disk.crash();
        std::mem::forget(engine);
        let (engine, _jobs, report) = open(&power_cut, JournalOptions::default()).unwrap();
        let got = engine.snapshot();
        if durability == Durability::NoSync {
            assert_eq!(got, recovered(&states[report.replayed as usize]));
        } else {
            assert_eq!(report.replayed as usize, states.len() - 1);
            assert_eq!(got, recovered(states.last().unwrap()), "{durability:?}");
        }
    }
}

#[test]
fn no_sync_is_made_durable_by_sync_journal() {
    let disk = MemStorage::new();
    let (engine, _jobs, _) = open(&disk, options(Durability::NoSync)).unwrap();
    let key = GraphKey::parse("p", "g").unwrap();
    engine.create_graph(&key).unwrap();
    engine.start(&key).unwrap();
    let status = engine.journal_status().unwrap();
    assert_eq!((status.written, status.durable), (3, 1));
    engine.sync_journal().unwrap();
    assert_eq!(engine.journal_status().unwrap().durable, 3);
    let (_, _, report) = open(&disk.crash(), JournalOptions::default()).unwrap();
    assert_eq!(report.replayed, 2);
}

#[test]
fn group_commit_with_threads_acknowledges_each_commit_once_durable() {
    let disk = MemStorage::new();
    let (engine, _jobs, _) = open(
        &disk,
        options(Durability::GroupCommit {
            max_delay: Duration::from_micros(100),
        }),
    )
    .unwrap();
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let engine = engine.clone();
            thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..50 {
                    let key = GraphKey::parse(&format!("t{t}"), &format!("g{i}")).unwrap();
                    engine.create_graph(&key).unwrap();
                    acked.push(key);
                }
                acked
            })
        })
        .collect();
    let acked: Vec<GraphKey> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let power_cut = disk.crash();
    std::mem::forget(engine);
    let (engine, _jobs, report) = open(&power_cut, JournalOptions::default()).unwrap();
    assert_eq!(report.replayed, 200);
    for key in &acked {
        assert!(engine.graph(key).is_ok(), "{key} lost");
    }
}

#[test]
fn a_failing_disk_turns_the_engine_read_only_and_reopening_goes_on() {
    let disk = MemStorage::new();
    let key = GraphKey::parse("p", "g").unwrap();
    let (engine, _jobs, _) = open(&disk, options(Durability::SyncEveryCommit)).unwrap();
    engine.create_graph(&key).unwrap();
    disk.fail_after(1); // the next append works, its sync fails
    let e = engine.start(&key).unwrap_err();
    assert_eq!(e.code(), "JOURNAL_FAILED");
    assert_eq!(e.http_status(), 503);
    assert!(e.to_string().contains("cannot sync"), "{e}");
    // Memory may be ahead of the disk; commands are refused, queries work.
    assert_eq!(engine.state(&key).unwrap(), GraphState::Starting);
    assert_eq!(
        engine.force_restart(&key, None).unwrap_err().code(),
        "JOURNAL_FAILED"
    );
    assert_eq!(
        engine.create_graph(&key).unwrap_err().code(),
        "JOURNAL_FAILED"
    );
    assert!(engine.graph_info(&key).is_ok());
    assert!(engine.journal_status().unwrap().failure.is_some());
    // After a restart the unsynced start is gone (a power cut) or there
    // (only the process died); either way the engine goes on.
    for image in [disk.crash(), disk.crash_keeping(usize::MAX)] {
        let (engine, _jobs, _) = open(&image, JournalOptions::default()).unwrap();
        let state = engine.state(&key).unwrap();
        assert!(
            matches!(state, GraphState::Stopped | GraphState::Abnormal),
            "{state}"
        );
        engine.force_restart(&key, None).unwrap();
    }
}

// ---- the property test: random commands, a crash anywhere -------------------------

/// Random commands, snapshots now and then, a disk that dies at a random
/// write and a power cut that keeps a random part of what was not synced:
/// the recovered state is the reference's at the last acknowledged
/// command (or one further, if the unacknowledged command's record made
/// it whole to the disk), with live tasks failed as interrupted.
fn crash_case(seed: u64, commands: usize, fail_at: u64, keep: usize, group: bool) {
    let disk = MemStorage::new();
    let durability = if group {
        Durability::GroupCommit {
            max_delay: Duration::ZERO,
        }
    } else {
        Durability::SyncEveryCommit
    };
    let opts = JournalOptions::new(durability)
        .segment_bytes(700)
        .snapshot_after_bytes(Some(3_000));
    let (engine, _jobs, _) = open(&disk, opts.clone()).unwrap();
    let (reference, _rj) = reference();
    let mut g = Gen::new(seed);
    let mut rng = Rng::new(seed ^ 0xabc);
    disk.fail_after(fail_at);
    let mut acked = reference.snapshot();
    let mut unacked = None;
    for _ in 0..commands {
        if rng.below(40) == 0 {
            // A snapshot may fail on the dying disk: the log is what counts.
            let _ = engine.snapshot_journal();
        }
        let cmd = g.command(&reference);
        let want = reference.apply(cmd.clone());
        match engine.apply(cmd) {
            Err(e) if e.code() == "JOURNAL_FAILED" => {
                if want.is_ok() {
                    unacked = Some(reference.snapshot());
                }
                break;
            }
            got => {
                assert_eq!(got, want);
                acked = reference.snapshot();
            }
        }
    }
    let image = disk.crash_keeping(keep);
    std::mem::forget(engine);
    let (engine, _jobs, report) =
        open(&image, opts.clone()).unwrap_or_else(|e| panic!("seed {seed}: recovery failed: {e}"));
    let got = engine.snapshot();
    let ok = got == recovered(&acked) || unacked.as_ref().is_some_and(|u| got == recovered(u));
    assert!(
        ok,
        "seed {seed}: recovered {got:#?}\nexpected {:#?}\n{report:?}",
        recovered(&acked)
    );
    // Recovery is itself durable and repeatable.
    drop(engine);
    let (engine, _jobs, report) = open(&image.crash(), opts).unwrap();
    assert_eq!(engine.snapshot(), got);
    assert_eq!(report.interrupted, 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    #[test]
    fn recovery_after_a_crash_anywhere_equals_the_reference_at_the_last_acknowledged_command(
        seed in any::<u64>(),
        commands in 1usize..400,
        fail_at in 0u64..1_200,
        keep in prop_oneof![Just(0usize), 0usize..64, Just(usize::MAX)],
        group in any::<bool>(),
    ) {
        crash_case(seed, commands, fail_at, keep, group);
    }

    /// Arbitrary bytes as a log segment or a snapshot: decoding and opening
    /// never panic; whatever opens is consistent.
    #[test]
    fn arbitrary_bytes_never_make_the_decoder_or_recovery_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..2_048),
        at in 0usize..2_100,
        snapshot in any::<bool>(),
    ) {
        let _ = decode_frame(&bytes, at);
        let seg = decode_segment(&bytes);
        let end = seg.records.last().map_or(0, |r| r.offset);
        prop_assert!(end <= bytes.len() as u64);
        let disk = MemStorage::new();
        if snapshot {
            disk.put_snapshot(1, bytes.clone());
        }
        disk.put_segment(1, bytes);
        if let Ok((engine, _jobs, _)) = open(&disk, JournalOptions::default()) {
            for g in engine.snapshot().graphs {
                prop_assert_eq!(g.info.live_tasks, 0);
            }
        }
    }

    /// Arbitrary bytes as the payload of records with valid frames, so
    /// that the command decoder and the replay see them: never a panic.
    #[test]
    fn arbitrary_payloads_in_valid_frames_never_make_recovery_panic(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..96), 1..6),
        lsn_first in any::<bool>(),
    ) {
        let mut log = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            let mut payload = if lsn_first { (i as u64 + 1).to_le_bytes().to_vec() } else { Vec::new() };
            payload.extend_from_slice(p);
            graph_lifecycle::journal::frame::write_frame(&mut log, &payload, true);
        }
        let disk = MemStorage::new();
        disk.put_segment(1, log);
        let _ = open(&disk, JournalOptions::default());
    }

    /// Valid records with arbitrary bytes spliced in: the decoder keeps
    /// every record before the damage and never returns one it did not
    /// check.
    #[test]
    fn damage_anywhere_never_yields_an_unchecked_record(
        junk in prop::collection::vec(any::<u8>(), 1..64),
        at in 0usize..4_000,
    ) {
        let j = journal(1, 60);
        let bytes = only_segment(&j.disk);
        let good = decode_segment(&bytes).records;
        let at = at % bytes.len();
        let mut damaged = bytes[..at].to_vec();
        damaged.extend_from_slice(&junk);
        damaged.extend_from_slice(&bytes[at..]);
        let seg = decode_segment(&damaged);
        for r in &seg.records {
            let i = (r.lsn - 1) as usize;
            prop_assert!(i < good.len());
            prop_assert_eq!(&r.command, &good[i].command);
        }
    }
}

#[test]
fn the_decoder_reads_a_header_only_when_it_is_whole() {
    let mut rec = Vec::new();
    graph_lifecycle::journal::frame::write_frame(&mut rec, b"abc", true);
    for n in 1..rec.len() {
        assert_eq!(decode_frame(&rec[..n], 0), Frame::Incomplete);
    }
    assert!(matches!(decode_frame(&rec, 0), Frame::Record { .. }));
}

// ---- a directory on disk --------------------------------------------------------------

#[test]
fn a_directory_journal_survives_reopening_and_compacts() {
    let dir = tempfile::tempdir().unwrap();
    let opts = JournalOptions::new(Durability::GroupCommit {
        max_delay: Duration::ZERO,
    })
    .segment_bytes(512)
    .snapshot_after_bytes(None);
    let (reference, _rj) = reference();
    let mut g = Gen::new(21);
    let clock = || Arc::new(ManualClock::new(Timestamp::from_millis(RECOVERY_AT)));
    let open_dir = |opts: JournalOptions| {
        Engine::builder()
            .config(config())
            .clock(clock())
            .open_durable(FileStorage::open(dir.path()).unwrap(), opts)
            .unwrap()
    };
    {
        let (engine, _jobs, _) = open_dir(opts.clone());
        for round in 0..3 {
            let mut n = 0;
            while n < 60 {
                let cmd = g.command(&reference);
                let want = reference.apply(cmd.clone());
                assert_eq!(engine.apply(cmd), want);
                n += usize::from(want.is_ok());
            }
            if round < 2 {
                engine.snapshot_journal().unwrap();
            }
        }
    }
    let names = |ext: &str| {
        let mut v: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(ext))
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(".snapshot").len(), 2);
    assert!(names(".log").len() > 1);
    assert!(names(".log")[0] != "00000000000000000001.log", "compacted");
    // A torn tail on disk: a few bytes of a half-written record.
    let last = dir.path().join(names(".log").last().unwrap());
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    std::io::Write::write_all(&mut f, &[42, 0, 0, 0, 1, 2]).unwrap();
    drop(f);
    let (engine, _jobs, report) = open_dir(opts.clone());
    let cut = report.torn_tail.expect("the torn tail is cut");
    assert_eq!(cut.bytes, 6);
    assert!(cut.file.ends_with(".log"), "{}", cut.file);
    assert_eq!(engine.snapshot(), recovered(&reference.snapshot()));
    let want = engine.snapshot();
    drop(engine);
    let (engine, _jobs, report) = open_dir(opts);
    assert_eq!(report.torn_tail, None);
    assert_eq!(engine.snapshot(), want);
}

#[test]
fn an_engine_without_a_journal_says_so() {
    let (engine, _jobs) = Engine::builder().build();
    assert!(engine.journal_status().is_none());
    assert_eq!(
        engine.snapshot_journal().unwrap_err().code(),
        "JOURNAL_FAILED"
    );
    assert_eq!(engine.sync_journal().unwrap_err().code(), "JOURNAL_FAILED");
}

#[test]
fn every_generated_command_round_trips_through_a_record() {
    let (reference, _rj) = reference();
    let mut g = Gen::new(77);
    for lsn in 1..=500 {
        let cmd = g.command(&reference);
        let _ = reference.apply(cmd.clone());
        let bytes = encode_record(lsn, &cmd, lsn % 2 == 0).unwrap();
        let seg = decode_segment(&bytes);
        assert_eq!(seg.end, SegmentEnd::Clean);
        assert_eq!(seg.records.len(), 1);
        assert_eq!((seg.records[0].lsn, &seg.records[0].command), (lsn, &cmd));
    }
}
