//! The durable journal: recovery from any cut, any flipped bit, any crash;
//! snapshots and compaction; the durability policies; a failing disk;
//! retries across a crash.
//!
//! Most tests drive a durable engine on a `MemStorage` with commands made
//! by a seeded generator, and check the recovered engine against a plain
//! in-memory engine (the reference) that applied the same acknowledged
//! commands. The expected state after recovery is computed here, not by
//! the crate: every live task Failed as interrupted at the recovery's
//! time, every graph in a transitional state Abnormal.
//!
//! `JOURNAL_CASES=2000 cargo test -p graph-lifecycle-journal --release
//! --test journal` runs the property tests with more cases.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use graph_lifecycle::{
    Change, Command, Config, Engine, EngineBuilder, Epoch, Error, FailReason, GraphKey, GraphState,
    HostKind, IdSource, LifecycleKind, ManualClock, Op, Outcome, Payload, Report, RequestId,
    SequentialIds, Snapshot, TaskQuery, TaskRef, TaskSpec, TaskStatus, Timestamp,
};
use graph_lifecycle_journal::frame::{SEGMENT_HEADER_LEN, write_frame};
use graph_lifecycle_journal::{
    Cut, Durability, Durable, FileStorage, Frame, Journal, JournalError, JournalOptions,
    JournalStatus, MemStorage, Recovery, SegmentEnd, SegmentHeader, Storage, decode_frame,
    decode_segment, encode_record,
};
use parking_lot::Mutex;
use proptest::prelude::*;

// ---- the harness --------------------------------------------------------------

/// The time recovery runs at.
const RECOVERY_AT: u64 = 50_000_000;

/// A salt for records made by hand.
const SALT: u32 = 0x5eed_1234;

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

/// A builder with `config`, whose clock shows [`RECOVERY_AT`] and whose
/// ids are drawn with `seed`.
fn builder(config: Config, seed: u64) -> EngineBuilder {
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(RECOVERY_AT)));
    Engine::builder()
        .config(config)
        .clock(clock)
        .ids(SequentialIds::new(seed))
}

/// Opens a durable engine whose clock shows [`RECOVERY_AT`]. Each opening
/// draws ids with another seed: an id source must not repeat the ids of
/// an earlier run of the same journal.
fn open(storage: &MemStorage, options: JournalOptions) -> Result<Durable, JournalError> {
    open_with(storage, config(), options)
}

/// [`open`] with another configuration.
fn open_with(
    storage: &MemStorage,
    config: Config,
    options: JournalOptions,
) -> Result<Durable, JournalError> {
    // Seeds 1 to 4,095 in turn (0 is [`inspect`]'s): two openings of one
    // journal draw the same ids only if 4,094 other openings came between
    // them.
    static RUN: AtomicU64 = AtomicU64::new(1);
    let seed = RUN.fetch_add(1, Ordering::Relaxed) % 4095 + 1;
    graph_lifecycle_journal::open(builder(config, seed), storage.clone(), options)
}

/// Opens a durable engine only to look at what recovery made of the
/// journal: the tests that open thousands of damaged journals draw no id
/// afterwards, so they share seed 0 rather than use up the others.
fn inspect(storage: &MemStorage) -> Result<Durable, JournalError> {
    graph_lifecycle_journal::open(
        builder(config(), 0),
        storage.clone(),
        JournalOptions::default(),
    )
}

fn reference() -> (Engine, graph_lifecycle::JobReceiver) {
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

/// The journal's error behind a command's [`Error::CommitLog`].
fn journal_error(e: &Error) -> &JournalError {
    match e {
        Error::CommitLog { source, .. } => source
            .downcast_ref::<JournalError>()
            .unwrap_or_else(|| panic!("the commit log's error is not the journal's: {e}")),
        other => panic!("expected COMMIT_LOG_FAILED, got {other:?}"),
    }
}

/// The first failure behind [`JournalError::Failed`].
fn first_failure(e: &JournalError) -> &JournalError {
    match e {
        JournalError::Failed(first) => first_failure(first),
        other => other,
    }
}

/// Applies `cmd` on a durable engine; also says whether it was journaled
/// (the journal's next LSN moved).
fn commit(d: &Durable, cmd: Command) -> (Result<Outcome, Error>, bool) {
    let before = d.journal.status().next_lsn;
    let got = d.engine.apply(cmd);
    let after = d.journal.status().next_lsn;
    assert!(
        after <= before + 1,
        "one command, {} records",
        after - before
    );
    (got, after > before)
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
/// reports on live tasks, every kind of operation. Half the forced
/// restarts carry the same request id, and a quarter of the other
/// commands one of a few, so that the journals hold retries (answered
/// from the window, not journaled), refusals that carried a request id
/// (journaled), and request ids reused for another operation.
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
        let mut request = None;
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
            8 => {
                if self.rng.below(2) == 0 {
                    request = Some(RequestId::new("retry-key").expect("valid request id"));
                }
                Op::ForceRestart { job }
            }
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
        if request.is_none() && self.rng.below(4) == 0 {
            let id = format!("req-{}", self.rng.below(6));
            request = Some(RequestId::new(&id).expect("valid request id"));
        }
        let cmd = Command::new(key, at, op);
        match request {
            Some(r) => cmd.with_request(r),
            None => cmd,
        }
    }
}

/// A journal of `n` records on a `MemStorage` (one segment), and the
/// reference's snapshot after each prefix: `states[i]` holds the first
/// `i` records. A command is journaled when it changed something: a
/// success that changed nothing (an expiry with nothing to expire, a
/// retry answered from the window) is not, a refusal that carried a
/// request id is (its answer is kept for the retries).
struct Written {
    disk: MemStorage,
    states: Vec<Snapshot>,
}

fn journal(seed: u64, n: usize) -> Written {
    journal_with(seed, n, Durability::SyncEveryCommit)
}

fn journal_with(seed: u64, n: usize, durability: Durability) -> Written {
    let disk = MemStorage::new();
    let d = open(&disk, options(durability)).expect("open");
    let (reference, _ref_jobs) = reference();
    let mut g = Gen::new(seed);
    let mut states = vec![reference.snapshot()];
    while states.len() <= n {
        let cmd = g.command(&reference);
        let has_request = cmd.request.is_some();
        let want = reference.apply(cmd.clone());
        let (got, journaled) = commit(&d, cmd);
        assert_eq!(got, want, "the durable engine and the reference disagree");
        assert!(
            !journaled || want.is_ok() || has_request,
            "a refusal without a request id was journaled: {want:?}"
        );
        if journaled {
            states.push(reference.snapshot());
        }
    }
    assert_eq!(d.engine.snapshot(), reference.snapshot());
    Written { disk, states }
}

/// The record boundaries of a segment: offsets where records begin (the
/// first right after the segment's header), and its length.
fn boundaries(bytes: &[u8]) -> Vec<usize> {
    let seg = decode_segment(bytes);
    assert_eq!(seg.end, SegmentEnd::Clean);
    let mut b: Vec<usize> = seg.records.iter().map(|r| r.offset as usize).collect();
    assert_eq!(
        b.first(),
        Some(&SEGMENT_HEADER_LEN),
        "records follow the header"
    );
    b.push(bytes.len());
    b
}

fn only_segment(disk: &MemStorage) -> Vec<u8> {
    let segs = disk.segments().expect("segments");
    assert_eq!(segs, vec![1], "one segment, from record 1");
    disk.read_segment(1).expect("segment")
}

/// `header` followed by `records`: a segment's bytes.
fn segment(header: SegmentHeader, records: &[u8]) -> Vec<u8> {
    let mut bytes = header.encode().to_vec();
    bytes.extend_from_slice(records);
    bytes
}

fn cases(default: u32) -> u32 {
    std::env::var("JOURNAL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A [`MemStorage`] that notes the thread that writes each snapshot, and
/// can hold a snapshot's write: with `hold`, the writer waits on the
/// barrier once on entering (the test knows the snapshot is being
/// written) and once more before writing (the test lets it go).
#[derive(Clone, Default)]
struct Watched {
    inner: MemStorage,
    snapshot_writers: Arc<Mutex<Vec<ThreadId>>>,
    hold: Option<Arc<Barrier>>,
}

impl Storage for Watched {
    fn segments(&self) -> io::Result<Vec<u64>> {
        self.inner.segments()
    }
    fn read_segment(&self, first_lsn: u64) -> io::Result<Vec<u8>> {
        self.inner.read_segment(first_lsn)
    }
    fn create_segment(&self, first_lsn: u64, header: &[u8]) -> io::Result<()> {
        self.inner.create_segment(first_lsn, header)
    }
    fn append(&self, bytes: &[u8]) -> io::Result<()> {
        self.inner.append(bytes)
    }
    fn sync(&self) -> io::Result<()> {
        self.inner.sync()
    }
    fn truncate_segment(&self, first_lsn: u64, len: u64) -> io::Result<()> {
        self.inner.truncate_segment(first_lsn, len)
    }
    fn remove_segment(&self, first_lsn: u64) -> io::Result<()> {
        self.inner.remove_segment(first_lsn)
    }
    fn snapshots(&self) -> io::Result<Vec<u64>> {
        self.inner.snapshots()
    }
    fn read_snapshot(&self, lsn: u64) -> io::Result<Vec<u8>> {
        self.inner.read_snapshot(lsn)
    }
    fn write_snapshot(&self, lsn: u64, bytes: &[u8]) -> io::Result<()> {
        self.snapshot_writers.lock().push(thread::current().id());
        if let Some(hold) = &self.hold {
            hold.wait();
            hold.wait();
        }
        self.inner.write_snapshot(lsn, bytes)
    }
    fn remove_snapshot(&self, lsn: u64) -> io::Result<()> {
        self.inner.remove_snapshot(lsn)
    }
    fn segment_name(&self, first_lsn: u64) -> String {
        self.inner.segment_name(first_lsn)
    }
    fn snapshot_name(&self, lsn: u64) -> String {
        self.inner.snapshot_name(lsn)
    }
}

// ---- recovery of what was acknowledged -----------------------------------------

/// Reopening after a crash fails every live task as interrupted, moves
/// every graph in a transitional state to Abnormal, reports both (with
/// events), hands over no job, and is itself journaled: reopening again
/// finds nothing left to recover.
#[test]
fn a_reopened_engine_fails_live_tasks_as_interrupted_and_transitional_graphs_go_abnormal() {
    let disk = MemStorage::new();
    let movies = GraphKey::parse("tenant", "movies").expect("valid key");
    let social = GraphKey::parse("tenant", "social").expect("valid key");
    let (import, pagerank) = {
        let d = open(&disk, options(Durability::SyncEveryCommit)).expect("open");
        let engine = &d.engine;
        assert_eq!(d.report.replayed, 0);
        engine.create_graph(&movies).unwrap();
        engine.create_graph(&social).unwrap();
        engine.start(&movies).unwrap();
        let job = d.jobs.try_recv().expect("the start job");
        engine.report(&job.task, Report::Succeeded).unwrap();
        let pagerank = engine
            .register_task(&movies, TaskSpec::new(HostKind::new("pagerank").unwrap()))
            .unwrap();
        let import = engine.import(&movies, "s3://edges").unwrap();
        (import, pagerank.id())
    };
    let disk = disk.crash();
    let d = open(&disk, JournalOptions::default()).expect("reopen");
    let (engine, jobs, report) = (&d.engine, &d.jobs, &d.report);
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
                epoch: Epoch(0),
            }));
    assert!(report.events.windows(2).all(|w| w[0].seq < w[1].seq));
    // No job was handed over by the replay or the recovery.
    assert!(jobs.try_recv().is_err());
    // A forced restart works as usual.
    let restart = engine.force_restart(&movies).unwrap();
    assert_eq!(restart.failed, 0);
    let job = jobs.try_recv().expect("the restart job");
    engine.report(&job.task, Report::Succeeded).unwrap();
    assert_eq!(engine.state(&movies).unwrap(), GraphState::Running);
    let after = engine.snapshot();
    drop(d);
    // Reopening again replays the recovery and the restart: same state,
    // nothing left to recover.
    let d = open(&disk, JournalOptions::default()).expect("reopen again");
    assert_eq!(d.report.interrupted, 0);
    assert!(d.report.abnormal.is_empty());
    assert_eq!(d.engine.snapshot(), after);
}

/// A refused command that carried no request id changes nothing, and so
/// is not journaled.
#[test]
fn a_refused_command_is_not_journaled() {
    let disk = MemStorage::new();
    let key = GraphKey::parse("p", "g").unwrap();
    let d = open(&disk, options(Durability::SyncEveryCommit)).expect("open");
    d.engine.create_graph(&key).unwrap();
    assert_eq!(
        d.engine.stop(&key).unwrap_err().code(),
        "TRANSITION_REFUSED"
    );
    assert_eq!(
        d.engine.create_graph(&key).unwrap_err().code(),
        "GRAPH_EXISTS"
    );
    assert_eq!(d.journal.status().next_lsn, 2);
    drop(d);
    let d = open(&disk, JournalOptions::default()).expect("reopen");
    assert_eq!(d.report.replayed, 1);
}

/// A command's request id survives a crash: the retry after recovery gets
/// the first answer and changes nothing. A refusal that carried a request
/// id is journaled (it is part of the state: the retry gets it again),
/// one without is not.
#[test]
fn retries_get_the_first_answer_across_a_crash_and_refusals_with_a_request_id_are_journaled() {
    let disk = MemStorage::new();
    let key = GraphKey::parse("p", "g").unwrap();
    let x = RequestId::new("x").unwrap();
    let y = RequestId::new("y").unwrap();
    let (job, refused, lsn) = {
        let d = open(&disk, options(Durability::SyncEveryCommit)).expect("open");
        let engine = &d.engine;
        engine.create_graph(&key).unwrap();
        // Refused without a request id: not journaled.
        let lsn = d.journal.status().next_lsn;
        assert_eq!(engine.stop(&key).unwrap_err().code(), "TRANSITION_REFUSED");
        assert_eq!(d.journal.status().next_lsn, lsn);
        // Refused with one: journaled.
        let refused = engine.request(Some(y.clone())).stop(&key).unwrap_err();
        assert_eq!(refused.code(), "TRANSITION_REFUSED");
        assert_eq!(d.journal.status().next_lsn, lsn + 1);
        let job = engine.request(Some(x.clone())).start(&key).unwrap();
        // A retry before the crash: the same answer, not journaled.
        let lsn = d.journal.status().next_lsn;
        assert_eq!(engine.request(Some(x.clone())).start(&key), Ok(job));
        assert_eq!(d.journal.status().next_lsn, lsn);
        (job, refused, lsn)
    };
    let d = open(&disk.crash(), JournalOptions::default()).expect("reopen");
    let engine = &d.engine;
    assert_eq!(d.report.replayed, lsn - 1);
    assert_eq!(d.report.interrupted, 1);
    assert_eq!(engine.state(&key).unwrap(), GraphState::Abnormal);
    // The retry: the same job, no new task, nothing journaled.
    let lsn = d.journal.status().next_lsn;
    assert_eq!(engine.request(Some(x.clone())).start(&key), Ok(job));
    assert_eq!(engine.tasks(&key, &TaskQuery::new()).unwrap().total, 1);
    assert_eq!(
        engine.task(&key, job).unwrap().reason,
        Some(FailReason::Interrupted)
    );
    assert!(d.jobs.try_recv().is_err(), "a retry hands over no job");
    // The stop refused before the crash is refused again on retry, though
    // a stop would now be accepted (the graph is Abnormal).
    let again = engine.request(Some(y.clone())).stop(&key).unwrap_err();
    assert_eq!(again, refused);
    assert!(
        matches!(
            again,
            Error::TransitionRefused {
                state: GraphState::Stopped,
                ..
            }
        ),
        "{again}"
    );
    assert_eq!(d.journal.status().next_lsn, lsn);
    assert_eq!(engine.state(&key).unwrap(), GraphState::Abnormal);
}

/// Recovery brings back the reference's state after the same commands,
/// with live tasks interrupted; nothing is left live or transitional.
#[test]
fn recovery_state_equals_the_reference_with_live_tasks_interrupted() {
    for seed in 1..=8 {
        let j = journal(seed, 200);
        let d = open(&j.disk.crash(), JournalOptions::default()).expect("reopen");
        assert_eq!(d.report.replayed, 200);
        let want = recovered(j.states.last().unwrap());
        assert_eq!(d.engine.snapshot(), want, "seed {seed}");
        // Nothing is left live or transitional.
        for g in d.engine.snapshot().graphs {
            assert_eq!(g.info.live_tasks, 0);
            assert!(g.info.state.job_kind().is_none());
        }
    }
}

/// Replay checks that each record does what it did: a journal opened with
/// another configuration (here a lower graph limit) under which a record
/// answers otherwise is refused with [`JournalError::Diverged`], naming
/// the record and both outcomes.
#[test]
fn a_journal_replayed_with_another_configuration_is_refused_as_diverged() {
    let disk = MemStorage::new();
    {
        let d = open(&disk, options(Durability::SyncEveryCommit)).expect("open");
        for g in ["a", "b", "c"] {
            d.engine
                .create_graph(&GraphKey::parse("p", g).unwrap())
                .unwrap();
        }
    }
    let image = disk.crash();
    let e = open_with(&image, config().max_graphs(2), JournalOptions::default())
        .expect_err("a replay that answers otherwise is refused");
    match &e {
        JournalError::Diverged {
            lsn,
            file,
            offset,
            expected,
            got,
        } => {
            assert_eq!(*lsn, 3);
            assert_eq!(file, "memory segment 1");
            let records = decode_segment(&only_segment(&image)).records;
            assert_eq!(*offset, records[2].offset);
            assert_eq!(**expected, Ok(Outcome::Created));
            assert!(
                matches!(**got, Err(Error::TooManyGraphs { limit: 2, .. })),
                "{got:?}"
            );
        }
        other => panic!("expected Diverged, got {other:?}"),
    }
    assert!(e.to_string().contains("another configuration"), "{e}");
    // The same configuration opens it.
    let d = open(&image, JournalOptions::default()).expect("the same configuration");
    assert_eq!(d.engine.graph_count(), 3);
}

// ---- torn tails and corruption ------------------------------------------------------

/// The journal cut at every byte offset: recovery yields exactly the
/// records wholly before the cut, cuts the rest, and never panics. A cut
/// inside the segment's header is a creation the crash cut short: the
/// segment is dropped, with nothing to replay and no torn tail.
#[test]
fn a_journal_cut_at_every_byte_offset_recovers_the_records_before_the_cut() {
    let j = journal(42, 300);
    let bytes = only_segment(&j.disk);
    let bounds = boundaries(&bytes);
    assert_eq!(bounds.len(), 301);
    let mut whole = 0;
    for cut in 0..=bytes.len() {
        let disk = MemStorage::new();
        disk.put_segment(1, bytes[..cut].to_vec());
        let d = inspect(&disk).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        if cut < SEGMENT_HEADER_LEN {
            assert_eq!(d.report.replayed, 0, "cut at {cut}");
            assert_eq!(d.report.torn_tail, None, "cut at {cut}");
            assert_eq!(disk.segments().unwrap(), Vec::<u64>::new(), "cut at {cut}");
            assert_eq!(d.engine.snapshot(), recovered(&j.states[0]), "cut at {cut}");
            continue;
        }
        while whole + 1 < bounds.len() && bounds[whole + 1] <= cut {
            whole += 1;
        }
        assert_eq!(d.report.replayed, whole as u64, "cut at {cut}");
        let torn = cut - bounds[whole];
        assert_eq!(
            d.report.torn_tail.as_ref().map(|c| (c.offset, c.bytes)),
            (torn > 0).then_some((bounds[whole] as u64, torn as u64)),
            "cut at {cut}"
        );
        assert_eq!(
            d.engine.snapshot(),
            recovered(&j.states[whole]),
            "cut at {cut}"
        );
    }
}

/// A bit flipped anywhere in the log is detected: the damaged record is
/// never applied. In the segment's header or in the middle of the log,
/// opening refuses with the offset (0 for the header, the record's
/// otherwise); in the last record, it is cut as a torn tail.
#[test]
fn a_flipped_bit_anywhere_is_detected_never_applied() {
    let j = journal(7, 150);
    let bytes = only_segment(&j.disk);
    let bounds = boundaries(&bytes);
    let records = bounds.len() - 1;
    let (mut refused, mut cut) = (0, 0);
    for at in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[at] ^= 1 << (at * 5 % 8);
        let disk = MemStorage::new();
        disk.put_segment(1, damaged);
        let in_header = at < SEGMENT_HEADER_LEN;
        let rec = bounds.partition_point(|&b| b <= at).saturating_sub(1);
        match inspect(&disk) {
            Err(JournalError::Corrupt { offset, file, .. }) => {
                if in_header {
                    assert_eq!(offset, 0, "flip at {at}");
                } else {
                    assert_eq!(offset, bounds[rec] as u64, "flip at {at}");
                    assert!(rec + 1 < records, "the last record is torn, not corrupt");
                }
                assert!(file.contains("segment 1"), "{file}");
                refused += 1;
            }
            Ok(d) => {
                assert!(!in_header, "flip at {at} in the header was not refused");
                assert_eq!(rec + 1, records, "flip at {at} was not refused");
                assert_eq!(
                    d.report.torn_tail.map(|c| c.offset),
                    Some(bounds[rec] as u64)
                );
                assert_eq!(d.engine.snapshot(), recovered(&j.states[rec]));
                cut += 1;
            }
            Err(e) => panic!("flip at {at}: {e}"),
        }
    }
    // Every byte before the last record (the header's included) is
    // refused, every byte of the last record cut.
    assert_eq!(refused, bounds[records - 1]);
    assert_eq!(cut, bytes.len() - bounds[records - 1]);
}

/// Strict opening refuses a corrupt record with [`JournalError::Corrupt`]
/// naming the file and the byte offset, and changes nothing on disk;
/// [`Recovery::TruncateAtCorruption`] cuts there, reports what it cut, and
/// the engine goes on and opens strictly afterwards.
#[test]
fn a_corrupt_record_names_its_file_and_offset_and_truncation_is_the_way_past_it() {
    let j = journal(11, 100);
    let mut bytes = only_segment(&j.disk);
    let bounds = boundaries(&bytes);
    bytes[bounds[40] + 9] ^= 0x20;
    let disk = MemStorage::new();
    disk.put_segment(1, bytes.clone());
    let e = inspect(&disk).expect_err("a corrupt record is refused");
    match &e {
        JournalError::Corrupt { file, offset, .. } => {
            assert_eq!(*offset, bounds[40] as u64);
            assert_eq!(file, "memory segment 1");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(e.io_kind(), None);
    let text = e.to_string();
    assert!(
        text.contains(&format!("byte {}", bounds[40])) && text.contains("memory segment 1"),
        "{text}"
    );
    // Strict opening changed nothing.
    assert_eq!(disk.read_segment(1).unwrap(), bytes);

    let d = open(
        &disk,
        JournalOptions::default().recovery(Recovery::TruncateAtCorruption),
    )
    .expect("truncation opens");
    let report = &d.report;
    let discarded = report.discarded.as_ref().expect("what was cut is reported");
    assert_eq!(discarded.offset, bounds[40] as u64);
    assert_eq!(discarded.bytes, (bytes.len() - bounds[40]) as u64);
    assert_eq!(report.replayed, 40);
    assert_eq!(d.engine.snapshot(), recovered(&j.states[40]));
    // The engine goes on, and opens strictly afterwards.
    let key = GraphKey::parse("p9", "new").unwrap();
    d.engine.create_graph(&key).unwrap();
    let want = d.engine.snapshot();
    drop(d);
    let d = open(&disk, JournalOptions::default()).expect("strict reopening");
    assert_eq!(d.engine.snapshot(), want);
}

/// Under `NoSync` a power cut may bring the part of the log written since
/// the last sync back with holes (pages written back out of order): such
/// a hole is cut as a torn tail. A hole before a record written after a
/// sync is damage to synced bytes, and refused.
#[test]
fn holes_after_the_last_sync_are_cut_holes_before_it_are_refused() {
    let disk = MemStorage::new();
    let d = open(&disk, options(Durability::NoSync)).expect("open");
    let (reference, _rj) = reference();
    let mut g = Gen::new(12);
    let mut states = vec![reference.snapshot()];
    while states.len() <= 200 {
        if states.len() == 101 {
            d.journal.sync().unwrap();
        }
        let cmd = g.command(&reference);
        if reference.apply(cmd.clone()).is_ok() {
            let (got, journaled) = commit(&d, cmd);
            got.unwrap();
            if journaled {
                states.push(reference.snapshot());
            }
        }
    }
    // Everything reached the disk, as the OS had it, but nothing after the
    // sync is known to be durable.
    let image = disk.crash_keeping(usize::MAX);
    std::mem::forget(d.engine);
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
        inspect(&disk)
    };
    let d = hole(150).expect("a hole after the last sync is a torn tail");
    assert_eq!(
        d.report.torn_tail.map(|c| c.offset),
        Some(records[150].offset)
    );
    assert_eq!(d.engine.snapshot(), recovered(&states[150]));
    let e = hole(50).expect_err("a hole before a synced record is corruption");
    assert!(
        matches!(&e, JournalError::Corrupt { offset, .. } if *offset == records[50].offset),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains(&format!("byte {}", records[50].offset)),
        "{e}"
    );
}

/// Under the sync policies every record is written after a sync, so each
/// carries the sync mark.
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

/// A segment that ends in a half-written record is torn only if it is
/// the last: followed by another segment, it is corruption. A missing
/// segment in the middle is refused too, and said to be missing.
#[test]
fn a_torn_segment_followed_by_another_is_corruption() {
    let disk = MemStorage::new();
    {
        let d = open(
            &disk,
            options(Durability::SyncEveryCommit).segment_bytes(200),
        )
        .expect("open");
        for i in 0..40 {
            let key = GraphKey::parse("p", &format!("g{i}")).unwrap();
            d.engine.create_graph(&key).unwrap();
        }
    }
    let segs = disk.segments().unwrap();
    assert!(segs.len() > 3, "{segs:?}");
    let second = disk.read_segment(segs[1]).unwrap();
    disk.put_segment(segs[1], second[..second.len() - 3].to_vec());
    let e = inspect(&disk).expect_err("a torn segment in the middle is refused");
    assert!(
        matches!(&e, JournalError::Corrupt { file, .. } if *file == disk.segment_name(segs[1])),
        "{e:?}"
    );
    // A missing segment in the middle is named too.
    let disk2 = disk.crash();
    disk2.remove_segment(segs[2]).unwrap();
    disk2.put_segment(segs[1], second);
    let e = inspect(&disk2).expect_err("a missing segment is refused");
    assert!(matches!(e, JournalError::Corrupt { .. }), "{e:?}");
    assert!(e.to_string().contains("records are missing"), "{e}");
}

/// A crash may tear a record whose payload (a client's bytes) imitates a
/// whole record carrying the sync mark. The imitation is salted with
/// another salt than the segment's, which a client cannot know, so it
/// does not count as a synced record after the torn one: every cut of
/// the last record opens under strict recovery, with the torn tail cut.
#[test]
fn a_torn_record_whose_payload_imitates_a_synced_record_still_opens() {
    let disk = MemStorage::new();
    let key = GraphKey::parse("p", "g").unwrap();
    let d = open(&disk, options(Durability::SyncEveryCommit)).expect("open");
    d.engine.create_graph(&key).unwrap();
    let start = d.engine.start(&key).unwrap();
    let task = TaskRef::new(key.clone(), start, Epoch::ZERO);
    d.engine.report(&task, Report::Succeeded).unwrap();
    let base = only_segment(&disk);
    let header = SegmentHeader::decode(&base).expect("the segment's header");
    let lsn = d.journal.status().next_lsn;
    assert_eq!(lsn, 4);
    let before = d.engine.snapshot();

    // The imitations: whole records with the sync mark, salted otherwise
    // than the segment (its complement, and a near miss), each with the
    // LSN that would come next.
    let at = d.engine.now();
    let mut forged = b"{\"source\": \"".to_vec();
    let mut fakes = Vec::new();
    for fake in [!header.salt, header.salt.wrapping_add(1)] {
        let imitation = encode_record(
            fake,
            lsn + 1,
            &Command::new(key.clone(), at, Op::Create),
            &Ok(Outcome::Created),
            true,
        )
        .expect("encodes");
        fakes.push((fake, imitation.clone()));
        forged.extend_from_slice(&imitation);
        forged.extend_from_slice(b"\", \"pad\": \"");
    }
    forged.extend_from_slice(b"\"}");
    // The last record: an import whose payload holds them, as the journal
    // writes it.
    let import = d.engine.import(&key, forged.clone()).unwrap();
    drop(d);
    let full = only_segment(&disk);
    let record = encode_record(
        header.salt,
        lsn,
        &Command::new(
            key.clone(),
            at,
            Op::Import {
                job: import,
                payload: Payload::from(forged.clone()),
            },
        ),
        &Ok(Outcome::Job {
            job: import,
            epoch: Epoch::ZERO,
        }),
        true,
    )
    .expect("encodes");
    assert_eq!(
        full,
        [base.as_slice(), record.as_slice()].concat(),
        "encode_record writes what the journal writes"
    );
    // Each imitation is there, whole, and reads as a synced record with
    // its own salt.
    let mut imitated = Vec::new();
    for (fake, imitation) in &fakes {
        let pos = full
            .windows(imitation.len())
            .position(|w| w == imitation.as_slice())
            .expect("the imitation is in the payload");
        assert!(matches!(
            decode_frame(&full, pos, *fake),
            Frame::Record {
                synced_before: true,
                ..
            }
        ));
        imitated.push(pos + imitation.len());
    }
    // The whole record replays.
    let whole = MemStorage::new();
    whole.put_segment(1, full.clone());
    let d = inspect(&whole).expect("the whole record opens");
    assert_eq!(d.report.replayed, lsn);
    assert_eq!(
        d.engine.task(&key, import).unwrap().payload,
        Payload::from(forged)
    );
    drop(d);

    let mut with_imitation = 0;
    for cut in 1..record.len() {
        let torn = MemStorage::new();
        torn.put_segment(1, full[..base.len() + cut].to_vec());
        let d = inspect(&torn).unwrap_or_else(|e| panic!("cut {cut} of {}: {e}", record.len()));
        assert_eq!(d.report.replayed, lsn - 1, "cut {cut}");
        assert_eq!(
            d.report.torn_tail,
            Some(Cut {
                file: "memory segment 1".to_owned(),
                offset: base.len() as u64,
                bytes: cut as u64,
            }),
            "cut {cut}"
        );
        assert_eq!(d.engine.snapshot(), recovered(&before), "cut {cut}");
        assert_eq!(torn.read_segment(1).unwrap(), base, "cut {cut}");
        with_imitation += usize::from(imitated.iter().any(|&end| end <= base.len() + cut));
    }
    assert!(
        with_imitation > record.len() / 4,
        "{with_imitation} of {} cuts hold an imitation",
        record.len() - 1
    );
}

// ---- snapshots and compaction --------------------------------------------------------

/// Snapshots bound the replay to the records after the newest; compaction
/// keeps the two newest snapshots and the log from the older on; a
/// damaged newest snapshot is passed over for the one before it.
#[test]
fn snapshots_bound_the_replay_and_compaction_deletes_old_segments() {
    let disk = MemStorage::new();
    let (reference, _rj) = reference();
    let mut g = Gen::new(5);
    let opts = options(Durability::SyncEveryCommit).segment_bytes(2_000);
    let d = open(&disk, opts.clone()).expect("open");
    let mut snaps = Vec::new();
    for round in 0..6 {
        let mut n = 0;
        while n < 100 {
            let cmd = g.command(&reference);
            let want = reference.apply(cmd.clone());
            assert_eq!(d.engine.apply(cmd), want);
            n += usize::from(want.is_ok());
        }
        snaps.push(d.journal.snapshot(&d.engine).unwrap());
        assert_eq!(disk.snapshots().unwrap().len(), (round + 1).min(2));
    }
    // The log before the older kept snapshot is gone.
    let older = snaps[snaps.len() - 2];
    let segs = disk.segments().unwrap();
    assert!(
        segs[0] <= older && segs.get(1).is_none_or(|&s| s > older),
        "{segs:?}"
    );
    // A few more records after the last snapshot, then a crash.
    let mut n = 0;
    while n < 30 {
        let cmd = g.command(&reference);
        let want = reference.apply(cmd.clone());
        let (got, journaled) = commit(&d, cmd);
        assert_eq!(got, want);
        n += usize::from(journaled);
    }
    drop(d);
    let d = open(&disk.crash(), opts.clone()).expect("reopen");
    assert_eq!(d.report.snapshot, snaps.last().copied());
    assert_eq!(d.report.replayed, 30);
    assert_eq!(d.engine.snapshot(), recovered(&reference.snapshot()));
    drop(d);

    // A damaged newest snapshot is passed over for the one before it.
    let newest = *snaps.last().unwrap();
    let mut bytes = disk.read_snapshot(newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    let disk = disk.crash();
    disk.put_snapshot(newest, bytes);
    let d = open(&disk, opts).expect("reopen past the damaged snapshot");
    assert_eq!(d.report.snapshot, Some(older));
    assert_eq!(d.report.skipped_snapshots.len(), 1);
    assert!(
        d.report.skipped_snapshots[0].contains("checksum"),
        "{:?}",
        d.report
    );
    // The log from the older snapshot on is replayed: same state.
    assert_eq!(d.engine.snapshot(), recovered(&reference.snapshot()));
}

/// Waits up to ten seconds for `done`, polling.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "waited ten seconds for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// Automatic snapshots keep the log short, and what the journal keeps
/// reopens with a short replay.
///
/// The snapshot thread takes a snapshot a moment after the commit that
/// made it due, while commands go on: a committer in a tight loop on a
/// memory disk can run far ahead of it, and the log between two
/// snapshots then grows with the delay. So, as a committer whose
/// commands take time would, this one lets the snapshot thread take each
/// snapshot it made due before it commits more (it never takes one
/// itself); `automatic_snapshots_are_taken_off_the_committing_thread`
/// commits without pause.
#[test]
fn automatic_snapshots_keep_the_log_short() {
    const AFTER: u64 = 4_000;
    let disk = MemStorage::new();
    let opts = JournalOptions::new(Durability::SyncEveryCommit)
        .segment_bytes(1_000)
        .snapshot_after_bytes(Some(AFTER));
    let (reference, _rj) = reference();
    let mut g = Gen::new(9);
    // Whether a snapshot is due: the log since the last one holds
    // `AFTER` bytes, and as many as the last snapshot.
    let due = |status: &JournalStatus| {
        let last = status.snapshot.map_or(0, |lsn| {
            disk.read_snapshot(lsn)
                .map_or(0, |bytes| bytes.len() as u64)
        });
        status.since_snapshot >= AFTER.max(last)
    };
    {
        let d = open(&disk, opts.clone()).expect("open");
        let mut n = 0;
        let mut taken = 0;
        while n < 2_000 {
            let cmd = g.command(&reference);
            let want = reference.apply(cmd.clone());
            assert_eq!(d.engine.apply(cmd), want);
            n += usize::from(want.is_ok());
            let status = d.journal.status();
            if due(&status) {
                wait_for("the snapshot thread", || {
                    d.journal.status().snapshot != status.snapshot
                });
                taken += 1;
            }
        }
        assert!(taken > 1, "{taken} snapshots");
        let status = d.journal.status();
        assert!(status.snapshot.is_some());
        assert!(status.since_snapshot < 20_000, "{status:?}");
    }
    let segments = disk.segments().unwrap();
    let log: usize = segments
        .iter()
        .map(|&s| disk.read_segment(s).unwrap().len())
        .sum();
    assert!(
        log < 40_000,
        "{log} bytes of log kept: segments {segments:?}, snapshots {:?}",
        disk.snapshots().unwrap()
    );
    let d = open(&disk.crash(), opts).expect("reopen");
    assert!(d.report.replayed < 1_000, "{:?}", d.report);
    assert_eq!(d.engine.snapshot(), recovered(&reference.snapshot()));
}

/// An automatic snapshot is taken by the journal's own thread, never by a
/// committing thread: here the test thread only commits (nothing calls
/// [`Journal::snapshot`]), and the snapshot is written by another thread.
#[test]
fn automatic_snapshots_are_taken_off_the_committing_thread() {
    let disk = Watched::default();
    let opts = JournalOptions::new(Durability::SyncEveryCommit).snapshot_after_bytes(Some(1_000));
    let (reference, _rj) = reference();
    let mut g = Gen::new(13);
    let d = graph_lifecycle_journal::open(builder(config(), 0), disk.clone(), opts.clone())
        .expect("open");
    let mut n = 0;
    while n < 200 {
        let cmd = g.command(&reference);
        let want = reference.apply(cmd.clone());
        assert_eq!(d.engine.apply(cmd), want);
        n += usize::from(want.is_ok());
    }
    wait_for("an automatic snapshot", || {
        d.journal.status().snapshot.is_some()
    });
    let committer = thread::current().id();
    let writers = disk.snapshot_writers.lock().clone();
    assert!(!writers.is_empty(), "a snapshot was written");
    assert!(
        writers.iter().all(|&w| w != committer),
        "the committing thread wrote a snapshot"
    );
    let taken = disk.inner.snapshots().unwrap();
    assert!(!taken.is_empty());
    // It is a snapshot like any other: recovery starts from one.
    let image = disk.inner.crash();
    drop(d);
    let d = open(&image, opts).expect("reopen");
    assert!(
        d.report.snapshot.is_some_and(|s| taken.contains(&s)),
        "{:?}",
        d.report
    );
    assert_eq!(d.engine.snapshot(), recovered(&reference.snapshot()));
}

/// `since_snapshot` counts the log written since the newest snapshot,
/// which holds the records below its LSN: the records committed while
/// the snapshot was being synced and stored come after that LSN, so they
/// count (and bring the next automatic snapshot nearer).
#[test]
fn the_log_written_while_a_snapshot_is_stored_counts_as_written_since_it() {
    let hold = Arc::new(Barrier::new(2));
    let disk = Watched {
        hold: Some(hold.clone()),
        ..Watched::default()
    };
    let opts = options(Durability::SyncEveryCommit);
    let Durable {
        engine,
        jobs: _jobs,
        journal,
        ..
    } = graph_lifecycle_journal::open(builder(config(), 0), disk.clone(), opts).expect("open");
    let key = GraphKey::parse("p", "g").unwrap();
    engine.create_graph(&key).unwrap();
    let snapshot = {
        let engine = engine.clone();
        thread::spawn(move || {
            let lsn = journal.snapshot(&engine);
            (journal, lsn)
        })
    };
    hold.wait(); // the snapshot is taken and being stored
    for i in 0..50 {
        let other = GraphKey::parse("p", &format!("g{i}")).unwrap();
        engine.create_graph(&other).unwrap();
    }
    hold.wait(); // let it be stored
    let (journal, lsn) = snapshot.join().expect("the snapshot thread");
    let lsn = lsn.expect("the snapshot is stored");
    assert_eq!(lsn, 2);
    let since: u64 = disk
        .inner
        .segments()
        .unwrap()
        .iter()
        .flat_map(|&s| {
            let bytes = disk.inner.read_segment(s).unwrap();
            let seg = decode_segment(&bytes);
            let mut ends: Vec<u64> = seg.records.iter().skip(1).map(|r| r.offset).collect();
            ends.push(bytes.len() as u64);
            seg.records
                .iter()
                .zip(ends)
                .filter(|(r, _)| r.lsn >= lsn)
                .map(|(r, end)| end - r.offset)
                .collect::<Vec<_>>()
        })
        .sum();
    let status = journal.status();
    assert_eq!(status.next_lsn, 52);
    assert_eq!(status.snapshot, Some(lsn));
    assert_eq!(
        status.since_snapshot, since,
        "the 50 records after the snapshot's LSN are {since} bytes of log"
    );
}

/// The engine keeps its journal alive on its own: with the host's
/// [`Journal`] handle dropped, every command is still journaled and
/// automatic snapshots are still taken.
#[test]
fn dropping_the_journal_handle_leaves_the_engine_durable() {
    let disk = MemStorage::new();
    let opts = JournalOptions::new(Durability::SyncEveryCommit).snapshot_after_bytes(Some(1_000));
    let (reference, _rj) = reference();
    let mut g = Gen::new(17);
    let Durable {
        engine,
        jobs: _jobs,
        journal,
        ..
    } = open(&disk, opts.clone()).expect("open");
    drop::<Journal>(journal);
    let mut n = 0;
    while n < 200 {
        let cmd = g.command(&reference);
        let want = reference.apply(cmd.clone());
        assert_eq!(engine.apply(cmd), want);
        n += usize::from(want.is_ok());
    }
    wait_for("an automatic snapshot", || {
        disk.snapshots().is_ok_and(|s| !s.is_empty())
    });
    // A power cut: every acknowledged command is there.
    let image = disk.crash();
    let d = open(&image, opts).expect("reopen");
    assert!(d.report.snapshot.is_some(), "{:?}", d.report);
    assert_eq!(d.engine.snapshot(), recovered(&reference.snapshot()));
    drop(engine);
}

// ---- durability policies and failures ------------------------------------------------

/// Every policy keeps every acknowledged command through a crash of the
/// process (what was written survives, synced or not).
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
            let d = open(&disk, options(durability)).expect("open");
            let (reference, _rj) = reference();
            let mut g = Gen::new(3);
            for _ in 0..300 {
                let cmd = g.command(&reference);
                assert_eq!(d.engine.apply(cmd.clone()), reference.apply(cmd));
            }
            // A process crash: what was written survives, synced or not.
            let kept = disk.crash_keeping(usize::MAX);
            std::mem::forget(d); // no orderly sync on drop
            (kept, reference.snapshot())
        };
        let d = open(&j.0, JournalOptions::default()).expect("reopen");
        assert_eq!(d.engine.snapshot(), recovered(&j.1), "{durability:?}");
    }
}

/// A power cut keeps every acknowledged command under the sync policies,
/// and a prefix of them under `NoSync`.
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
        let d = open(&disk, options(durability)).expect("open");
        let (reference, _rj) = reference();
        let mut g = Gen::new(4);
        let mut states = vec![reference.snapshot()];
        for _ in 0..200 {
            let cmd = g.command(&reference);
            if reference.apply(cmd.clone()).is_ok() {
                let (got, journaled) = commit(&d, cmd);
                got.unwrap();
                if journaled {
                    states.push(reference.snapshot());
                }
            }
        }
        let power_cut = disk.crash();
        std::mem::forget(d);
        let d = open(&power_cut, JournalOptions::default()).expect("reopen");
        let got = d.engine.snapshot();
        if durability == Durability::NoSync {
            assert_eq!(got, recovered(&states[d.report.replayed as usize]));
        } else {
            assert_eq!(d.report.replayed as usize, states.len() - 1);
            assert_eq!(got, recovered(states.last().unwrap()), "{durability:?}");
        }
    }
}

/// Under `NoSync` commands are written, not synced, until
/// [`Journal::sync`] makes them durable.
#[test]
fn no_sync_is_made_durable_by_sync() {
    let disk = MemStorage::new();
    let d = open(&disk, options(Durability::NoSync)).expect("open");
    let key = GraphKey::parse("p", "g").unwrap();
    d.engine.create_graph(&key).unwrap();
    d.engine.start(&key).unwrap();
    let status = d.journal.status();
    assert_eq!((status.written, status.durable), (3, 1));
    d.journal.sync().unwrap();
    assert_eq!(d.journal.status().durable, 3);
    let r = open(&disk.crash(), JournalOptions::default()).expect("reopen");
    assert_eq!(r.report.replayed, 2);
}

/// `JournalStatus::syncs` counts the syncs commits made: one a commit
/// under `SyncEveryCommit` with one committer, none under `NoSync` until
/// `Journal::sync`.
#[test]
fn the_status_counts_syncs() {
    let key = GraphKey::parse("p", "g").unwrap();
    let disk = MemStorage::new();
    let d = open(&disk, options(Durability::SyncEveryCommit)).expect("open");
    let before = d.journal.status().syncs;
    d.engine.create_graph(&key).unwrap();
    d.engine.start(&key).unwrap();
    assert_eq!(d.journal.status().syncs - before, 2);
    let disk = MemStorage::new();
    let d = open(&disk, options(Durability::NoSync)).expect("open");
    let before = d.journal.status().syncs;
    d.engine.create_graph(&key).unwrap();
    d.engine.start(&key).unwrap();
    assert_eq!(d.journal.status().syncs, before);
    d.journal.sync().unwrap();
    assert!(d.journal.status().syncs > before);
}

/// Under group commit, commits from several threads are each acknowledged
/// only once durable: a power cut right after loses none.
#[test]
fn group_commit_with_threads_acknowledges_each_commit_once_durable() {
    let disk = MemStorage::new();
    let d = open(
        &disk,
        options(Durability::GroupCommit {
            max_delay: Duration::from_micros(100),
        }),
    )
    .expect("open");
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let engine = d.engine.clone();
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
        .flat_map(|w| w.join().expect("a committing thread"))
        .collect();
    let power_cut = disk.crash();
    std::mem::forget(d);
    let d = open(&power_cut, JournalOptions::default()).expect("reopen");
    assert_eq!(d.report.replayed, 200);
    for key in &acked {
        assert!(d.engine.graph(key).is_ok(), "{key} lost");
    }
}

/// A failed sync stops the engine from taking commands: the call that met
/// it and every later command fail with `COMMIT_LOG_FAILED` (503) whose
/// source is the journal's error, holding the first failure; queries go
/// on. Reopening goes on from what the disk holds.
#[test]
fn a_failing_disk_turns_the_engine_read_only_and_reopening_goes_on() {
    let disk = MemStorage::new();
    let key = GraphKey::parse("p", "g").unwrap();
    let d = open(&disk, options(Durability::SyncEveryCommit)).expect("open");
    let engine = &d.engine;
    engine.create_graph(&key).unwrap();
    disk.fail_after(1); // the next append works, its sync fails
    let e = engine.start(&key).unwrap_err();
    assert_eq!(e.code(), "COMMIT_LOG_FAILED");
    assert_eq!(e.http_status(), 503);
    assert!(e.to_string().contains("cannot sync"), "{e}");
    let je = journal_error(&e);
    assert_eq!(je.io_kind(), Some(io::ErrorKind::Other));
    assert!(
        matches!(first_failure(je), JournalError::Io { op: "sync", .. }),
        "{je:?}"
    );
    // Memory may be ahead of the disk; commands are refused, queries work.
    assert_eq!(engine.state(&key).unwrap(), GraphState::Starting);
    for refused in [
        engine.force_restart(&key).map(drop).unwrap_err(),
        engine.create_graph(&key).map(drop).unwrap_err(),
    ] {
        assert_eq!(refused.code(), "COMMIT_LOG_FAILED");
        let je = journal_error(&refused);
        assert!(matches!(je, JournalError::Failed(_)), "{je:?}");
        assert!(
            matches!(first_failure(je), JournalError::Io { op: "sync", .. }),
            "{je:?}"
        );
    }
    assert!(engine.graph_info(&key).is_ok());
    assert!(d.journal.status().failure.is_some());
    // After a restart the unsynced start is gone (a power cut) or there
    // (only the process died); either way the engine goes on.
    for image in [disk.crash(), disk.crash_keeping(usize::MAX)] {
        let d = open(&image, JournalOptions::default()).expect("reopen");
        let state = d.engine.state(&key).unwrap();
        assert!(
            matches!(state, GraphState::Stopped | GraphState::Abnormal),
            "{state}"
        );
        d.engine.force_restart(&key).unwrap();
    }
}

// ---- the property test: random commands, a crash anywhere -------------------------

/// Random commands, snapshots now and then (asked for, and automatic), a
/// disk that dies at a random write and a power cut that keeps a random
/// part of what was not synced: the recovered state is the reference's at
/// the last acknowledged command (or one further, if the unacknowledged
/// command's record made it whole to the disk), with live tasks failed as
/// interrupted.
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
    let d = open(&disk, opts.clone()).expect("open");
    let (reference, _rj) = reference();
    let mut g = Gen::new(seed);
    let mut rng = Rng::new(seed ^ 0xabc);
    disk.fail_after(fail_at);
    let mut acked = reference.snapshot();
    let mut unacked = None;
    for _ in 0..commands {
        if rng.below(40) == 0 {
            // A snapshot may fail on the dying disk: the log is what counts.
            let _ = d.journal.snapshot(&d.engine);
        }
        let cmd = g.command(&reference);
        let want = reference.apply(cmd.clone());
        match d.engine.apply(cmd) {
            Err(e) if e.code() == "COMMIT_LOG_FAILED" => {
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
    // The image is taken: nothing the engine does on its way out (a sync,
    // its snapshot thread ending) reaches it.
    drop(d);
    let r =
        open(&image, opts.clone()).unwrap_or_else(|e| panic!("seed {seed}: recovery failed: {e}"));
    let got = r.engine.snapshot();
    let ok = got == recovered(&acked) || unacked.as_ref().is_some_and(|u| got == recovered(u));
    assert!(
        ok,
        "seed {seed}: recovered {got:#?}\nexpected {:#?}\n{:?}",
        recovered(&acked),
        r.report
    );
    // Recovery is itself durable and repeatable.
    drop(r);
    let r = open(&image.crash(), opts).expect("reopen after recovery");
    assert_eq!(r.engine.snapshot(), got);
    assert_eq!(r.report.interrupted, 0);
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

    /// Arbitrary bytes as a log segment (bare, or after a valid header, so
    /// that the record decoder sees them) or a snapshot: decoding and
    /// opening never panic; whatever opens is consistent.
    #[test]
    fn arbitrary_bytes_never_make_the_decoder_or_recovery_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..2_048),
        at in 0usize..2_100,
        salt in any::<u32>(),
        with_header in any::<bool>(),
        snapshot in any::<bool>(),
    ) {
        let _ = decode_frame(&bytes, at, salt);
        let bytes = if with_header {
            segment(SegmentHeader { first_lsn: 1, salt }, &bytes)
        } else {
            bytes
        };
        let seg = decode_segment(&bytes);
        let end = seg.records.last().map_or(0, |r| r.offset);
        prop_assert!(end <= bytes.len() as u64);
        let disk = MemStorage::new();
        if snapshot {
            disk.put_snapshot(1, bytes.clone());
        }
        disk.put_segment(1, bytes);
        if let Ok(d) = inspect(&disk) {
            for g in d.engine.snapshot().graphs {
                prop_assert_eq!(g.info.live_tasks, 0);
            }
        }
    }

    /// Arbitrary bytes as the payload of records with valid frames (salted
    /// with the segment's salt), so that the command decoder and the
    /// replay see them: never a panic.
    #[test]
    fn arbitrary_payloads_in_valid_frames_never_make_recovery_panic(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..96), 1..6),
        lsn_first in any::<bool>(),
        salt in any::<u32>(),
    ) {
        let mut log = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            let mut payload = if lsn_first { (i as u64 + 1).to_le_bytes().to_vec() } else { Vec::new() };
            payload.extend_from_slice(p);
            write_frame(&mut log, salt, &payload, true);
        }
        let disk = MemStorage::new();
        disk.put_segment(1, segment(SegmentHeader { first_lsn: 1, salt }, &log));
        let _ = inspect(&disk);
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
            prop_assert_eq!(&r.outcome, &good[i].outcome);
        }
    }
}

/// A record's length and checksum are read only when all eight bytes are
/// there; a record reads back only with its segment's salt.
#[test]
fn the_decoder_reads_a_header_only_when_it_is_whole() {
    let mut rec = Vec::new();
    write_frame(&mut rec, SALT, b"abc", true);
    for n in 1..rec.len() {
        assert_eq!(decode_frame(&rec[..n], 0, SALT), Frame::Incomplete);
    }
    assert!(matches!(decode_frame(&rec, 0, SALT), Frame::Record { .. }));
    assert!(matches!(decode_frame(&rec, 0, SALT ^ 1), Frame::Damaged(_)));
}

// ---- a directory on disk --------------------------------------------------------------

/// A journal in a directory: reopened, compacted (two snapshots, the old
/// segments deleted), its torn tail cut on disk.
#[test]
fn a_directory_journal_survives_reopening_and_compacts() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let opts = JournalOptions::new(Durability::GroupCommit {
        max_delay: Duration::ZERO,
    })
    .segment_bytes(512)
    .snapshot_after_bytes(None);
    let (reference, _rj) = reference();
    let mut g = Gen::new(21);
    let clock = || Arc::new(ManualClock::new(Timestamp::from_millis(RECOVERY_AT)));
    let open_dir = |opts: JournalOptions| {
        let storage = FileStorage::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        graph_lifecycle_journal::open(
            Engine::builder().config(config()).clock(clock()),
            storage,
            opts,
        )
        .unwrap_or_else(|e| panic!("opening the directory: {e}"))
    };
    {
        let d = open_dir(opts.clone());
        for round in 0..3 {
            let mut n = 0;
            while n < 60 {
                let cmd = g.command(&reference);
                let want = reference.apply(cmd.clone());
                assert_eq!(d.engine.apply(cmd), want);
                n += usize::from(want.is_ok());
            }
            if round < 2 {
                d.journal.snapshot(&d.engine).unwrap();
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
    let d = open_dir(opts.clone());
    let cut = d.report.torn_tail.clone().expect("the torn tail is cut");
    assert_eq!(cut.bytes, 6);
    assert!(cut.file.ends_with(".log"), "{}", cut.file);
    assert_eq!(d.engine.snapshot(), recovered(&reference.snapshot()));
    let want = d.engine.snapshot();
    drop(d);
    let d = open_dir(opts);
    assert_eq!(d.report.torn_tail, None);
    assert_eq!(d.engine.snapshot(), want);
}

/// Every command the generator makes, with the outcome it had, reads back
/// from its record, in a segment of its own.
#[test]
fn every_generated_command_round_trips_through_a_record() {
    let (reference, _rj) = reference();
    let mut g = Gen::new(77);
    for lsn in 1..=500 {
        let cmd = g.command(&reference);
        let outcome = reference.apply(cmd.clone());
        let synced = lsn % 2 == 0;
        let salt = SALT.wrapping_mul(lsn as u32);
        let rec = encode_record(salt, lsn, &cmd, &outcome, synced).unwrap();
        let header = SegmentHeader {
            first_lsn: lsn,
            salt,
        };
        let seg = decode_segment(&segment(header, &rec));
        assert_eq!(seg.header, Some(header));
        assert_eq!(seg.end, SegmentEnd::Clean);
        assert_eq!(seg.records.len(), 1);
        let r = &seg.records[0];
        assert_eq!(
            (r.offset, r.lsn, &r.command, &r.outcome, r.synced_before),
            (SEGMENT_HEADER_LEN as u64, lsn, &cmd, &outcome, synced)
        );
    }
}
