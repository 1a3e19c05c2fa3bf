//! Linearizability: concurrent histories of operations on a few graphs,
//! checked against a sequential reference with `stateright`'s
//! `LinearizabilityTester`.
//!
//! Each history sets two graphs up in random states (sequentially, checked
//! against the reference as it goes), then runs three threads of three
//! random operations each at once: lifecycle operations, forced restarts
//! (some with a request id, retries included), host task registration,
//! reports and
//! cancels (on tasks of the set-up or of the history, with a right or a
//! wrong epoch), creation and removal, and reads (the state through the
//! registry, the lock-free word through a handle, a task through the
//! lock). Every invocation and return is logged in real-time order. A
//! final operation, after every thread returned, reads each graph's whole
//! table and the jobs handed over since the set-up. The history must have
//! a sequential order, consistent with real time, in which the reference
//! gives every operation the answer the engine gave, the final read
//! included; so the forced restart, as every other operation, takes effect
//! at one point between its call and its return, and the job channel
//! holds exactly the committed jobs in commit order.
//!
//! The reference is written from the contract (`docs/CONTRACT.md`, sections 3 to 7), with the choices
//! the crate documents where the contract leaves them open (the order of
//! checks, which error a report on a dead task gets), the same ones
//! `tests/model.rs` makes. It shares no code with the crate.
//!
//! `LIN_HISTORIES=5000 cargo test --release --test linearizability` runs
//! more histories than the default; `LIN_SEED` picks the first seed.

mod invariants;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Instant;

use graph_lifecycle::{
    Command, Config, Engine, Epoch, Error, FailReason, GraphHandle, GraphKey, GraphState, HostKind,
    IdSource, JobEnd, JobId, JobReceiver, ManualClock, Op, Operation, Outcome, Payload, Report,
    RequestId, SequentialIds, TaskKind, TaskRef, TaskSpec, TaskStatus, Timestamp, Transition,
    job_outcome, transition,
};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};

const GRAPHS: usize = 2;
const THREADS: usize = 3;
const OPS_PER_THREAD: usize = 3;
const DEFAULT_HISTORIES: u64 = 2_000;
const NOW: Timestamp = Timestamp::from_millis(1_000);

// ---- operations and answers --------------------------------------------------

/// What a report says, without the message's allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rep {
    Started,
    Progress(u8),
    Succeeded,
    Failed,
}

impl Rep {
    fn report(self) -> Report {
        match self {
            Rep::Started => Report::Started,
            Rep::Progress(p) => Report::Progress(p),
            Rep::Succeeded => Report::Succeeded,
            Rep::Failed => Report::Failed("host failure".into()),
        }
    }
}

/// One operation of a history; `usize` is the graph's index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LinOp {
    Create(usize),
    Remove(usize),
    Begin(usize, Operation, JobId),
    ForceRestart(usize, JobId, Option<&'static str>),
    Register(usize, JobId),
    Report(usize, JobId, Epoch, Rep),
    Cancel(usize, JobId),
    /// `Engine::state`: a registry lookup and the state word.
    State(usize),
    /// `GraphHandle::status` on the handle taken at set-up.
    Word(usize),
    /// `Engine::task`, under the graph's lock.
    Task(usize, JobId),
    /// Every graph's table and the jobs handed over; run alone at the end.
    Final,
}

/// A task as the final read compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TaskView {
    kind: TaskKind,
    epoch: Epoch,
    status: TaskStatus,
    progress: u8,
    stoppable: bool,
    reason: Option<FailReason>,
}

/// A graph as the final read compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GraphView {
    state: GraphState,
    epoch: Epoch,
    job: Option<JobId>,
    tasks: BTreeMap<JobId, TaskView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LinRet {
    Done,
    Removed(usize),
    Job(Epoch),
    Restarted {
        job: JobId,
        epoch: Epoch,
        failed: usize,
    },
    State(GraphState),
    Word(Option<(GraphState, Epoch)>),
    Task(TaskStatus, u8, Option<FailReason>),
    Final(Vec<Option<GraphView>>, Vec<Vec<JobId>>),
    Refused(&'static str),
}

// ---- the sequential reference ------------------------------------------------

#[derive(Debug, Clone)]
struct RefGraph {
    view: GraphView,
}

#[derive(Debug, Clone)]
struct Reference {
    graphs: Vec<Option<RefGraph>>,
    /// Whether the set-up's handle still sees its graph (a removal kills
    /// it; a graph created again is another graph).
    handle_alive: Vec<bool>,
    /// Jobs handed over per graph since the set-up, in commit order.
    handed: Vec<Vec<JobId>>,
    /// Each key's answers to the restarts that carried a request id: a
    /// retry gets the first answer, whether the graph exists or not.
    requests: Vec<BTreeMap<&'static str, LinRet>>,
}

fn refused(code: &'static str) -> LinRet {
    LinRet::Refused(code)
}

impl RefGraph {
    fn new() -> Self {
        RefGraph {
            view: GraphView {
                state: GraphState::Stopped,
                epoch: Epoch(0),
                job: None,
                tasks: BTreeMap::new(),
            },
        }
    }

    fn insert(&mut self, id: JobId, kind: TaskKind, stoppable: bool) {
        let task = TaskView {
            kind,
            epoch: self.view.epoch,
            status: TaskStatus::Pending,
            progress: 0,
            stoppable,
            reason: None,
        };
        self.view.tasks.insert(id, task);
    }

    /// The answer to a report or cancel on a task that is not live.
    fn not_live(&self, id: JobId) -> LinRet {
        match self.view.tasks.get(&id) {
            Some(t) if t.epoch < self.view.epoch => refused("STALE_EPOCH"),
            Some(_) => refused("TASK_TERMINAL"),
            None => refused("TASK_NOT_FOUND"),
        }
    }

    fn live(&self, id: JobId) -> Option<&TaskView> {
        self.view.tasks.get(&id).filter(|t| !t.status.is_terminal())
    }

    fn end(&mut self, id: JobId, end: JobEnd, reason: Option<FailReason>) {
        let v = &mut self.view;
        let Some(t) = v.tasks.get_mut(&id) else {
            return;
        };
        t.status = match end {
            JobEnd::Succeeded => TaskStatus::Succeeded,
            JobEnd::Failed | JobEnd::TimedOut => TaskStatus::Failed,
            JobEnd::Cancelled => TaskStatus::Cancelled,
        };
        if end == JobEnd::Succeeded {
            t.progress = 100;
        }
        t.reason = reason;
        if v.job == Some(id) {
            v.job = None;
            if let Some(kind) = t.kind.lifecycle() {
                v.state = job_outcome(kind, end);
            }
        }
    }
}

fn lifecycle_task_kind(op: Operation) -> TaskKind {
    match op {
        Operation::Start => TaskKind::Start,
        Operation::Stop => TaskKind::Stop,
        Operation::Import => TaskKind::Import,
        Operation::Export => TaskKind::Export,
        Operation::Clear => TaskKind::Clear {
            clear_metadata: false,
        },
        other => unreachable!("{other} is not a job operation of the histories"),
    }
}

fn host_kind() -> HostKind {
    HostKind::new("pagerank").unwrap()
}

impl Reference {
    fn new() -> Self {
        Reference {
            graphs: vec![None; GRAPHS],
            handle_alive: vec![false; GRAPHS],
            handed: vec![Vec::new(); GRAPHS],
            requests: vec![BTreeMap::new(); GRAPHS],
        }
    }

    fn graph(&mut self, g: usize) -> Result<&mut RefGraph, LinRet> {
        self.graphs[g].as_mut().ok_or(refused("GRAPH_NOT_FOUND"))
    }

    fn apply(&mut self, op: &LinOp) -> LinRet {
        self.try_apply(op).unwrap_or_else(|refusal| refusal)
    }

    fn try_apply(&mut self, op: &LinOp) -> Result<LinRet, LinRet> {
        Ok(match *op {
            LinOp::Create(g) => {
                if self.graphs[g].is_some() {
                    return Err(refused("GRAPH_EXISTS"));
                }
                self.graphs[g] = Some(RefGraph::new());
                LinRet::Done
            }
            LinOp::Remove(g) => {
                let graph = self.graph(g)?;
                if transition(graph.view.state, Operation::Remove).is_none() {
                    return Err(refused("TRANSITION_REFUSED"));
                }
                let voided = graph
                    .view
                    .tasks
                    .values()
                    .filter(|t| !t.status.is_terminal())
                    .count();
                self.graphs[g] = None;
                self.handle_alive[g] = false;
                LinRet::Removed(voided)
            }
            LinOp::Begin(g, op, id) => {
                let graph = self.graph(g)?;
                let Some(Transition::Job(to, kind)) = transition(graph.view.state, op) else {
                    return Err(refused("TRANSITION_REFUSED"));
                };
                graph.insert(id, lifecycle_task_kind(op), kind.stoppable());
                graph.view.job = Some(id);
                graph.view.state = to;
                let epoch = graph.view.epoch;
                self.handed[g].push(id);
                LinRet::Job(epoch)
            }
            LinOp::ForceRestart(g, id, Some(req)) => {
                if let Some(first) = self.requests[g].get(req) {
                    return Ok(first.clone());
                }
                let answer = self.apply(&LinOp::ForceRestart(g, id, None));
                self.requests[g].insert(req, answer.clone());
                answer
            }
            LinOp::ForceRestart(g, id, None) => {
                let graph = self.graph(g)?;
                let v = &mut graph.view;
                let mut failed = 0;
                for t in v.tasks.values_mut().filter(|t| !t.status.is_terminal()) {
                    t.status = TaskStatus::Failed;
                    t.reason = Some(if t.kind == TaskKind::Restart {
                        FailReason::Superseded(id)
                    } else {
                        FailReason::ForceRestarted(id)
                    });
                    failed += 1;
                }
                v.epoch = v.epoch.next();
                v.state = GraphState::Restarting;
                v.job = Some(id);
                let epoch = v.epoch;
                graph.insert(id, TaskKind::Restart, false);
                self.handed[g].push(id);
                LinRet::Restarted {
                    job: id,
                    epoch,
                    failed,
                }
            }
            LinOp::Register(g, id) => {
                let graph = self.graph(g)?;
                if transition(graph.view.state, Operation::RegisterTask).is_none() {
                    return Err(refused("TRANSITION_REFUSED"));
                }
                graph.insert(id, TaskKind::Host(host_kind()), true);
                LinRet::Job(graph.view.epoch)
            }
            LinOp::Report(g, id, epoch, rep) => {
                let graph = self.graph(g)?;
                let Some(t) = graph.live(id) else {
                    return Err(graph.not_live(id));
                };
                if t.epoch != epoch {
                    return Err(refused("STALE_EPOCH"));
                }
                match rep {
                    Rep::Started if t.status != TaskStatus::Pending => {
                        return Err(refused("REPORT_REFUSED"));
                    }
                    Rep::Progress(p) if p > 100 || p < t.progress => {
                        return Err(refused("BAD_PROGRESS"));
                    }
                    Rep::Started | Rep::Progress(_) => {
                        let t = graph.view.tasks.get_mut(&id).expect("live");
                        t.status = TaskStatus::Running;
                        if let Rep::Progress(p) = rep {
                            t.progress = p;
                        }
                    }
                    Rep::Succeeded => graph.end(id, JobEnd::Succeeded, None),
                    Rep::Failed => graph.end(
                        id,
                        JobEnd::Failed,
                        Some(FailReason::Host("host failure".into())),
                    ),
                }
                LinRet::Done
            }
            LinOp::Cancel(g, id) => {
                let graph = self.graph(g)?;
                let Some(t) = graph.live(id) else {
                    return Err(graph.not_live(id));
                };
                if !t.stoppable {
                    return Err(refused("NOT_STOPPABLE"));
                }
                graph.end(id, JobEnd::Cancelled, Some(FailReason::Cancelled));
                LinRet::Done
            }
            LinOp::State(g) => LinRet::State(self.graph(g)?.view.state),
            LinOp::Word(g) => {
                let alive = self.handle_alive[g];
                LinRet::Word(
                    self.graphs[g]
                        .as_ref()
                        .filter(|_| alive)
                        .map(|r| (r.view.state, r.view.epoch)),
                )
            }
            LinOp::Task(g, id) => {
                let t = self
                    .graph(g)?
                    .view
                    .tasks
                    .get(&id)
                    .ok_or(refused("TASK_NOT_FOUND"))?;
                LinRet::Task(t.status, t.progress, t.reason.clone())
            }
            LinOp::Final => LinRet::Final(
                self.graphs
                    .iter()
                    .map(|g| g.as_ref().map(|r| r.view.clone()))
                    .collect(),
                self.handed.clone(),
            ),
        })
    }
}

impl SequentialSpec for Reference {
    type Op = LinOp;
    type Ret = LinRet;

    fn invoke(&mut self, op: &LinOp) -> LinRet {
        self.apply(op)
    }
}

// ---- the engine side ---------------------------------------------------------

struct Subject {
    engine: Engine,
    jobs: JobReceiver,
    keys: Vec<GraphKey>,
    handles: Vec<Option<GraphHandle>>,
}

fn code(e: Error) -> LinRet {
    LinRet::Refused(e.code())
}

impl Subject {
    fn new() -> Self {
        let clock = Arc::new(ManualClock::new(NOW));
        let (engine, jobs) = Engine::builder()
            .config(Config::default().shards(4))
            .clock(clock)
            .build();
        let keys = (0..GRAPHS)
            .map(|g| GraphKey::parse("tenant", &format!("g{g}")).unwrap())
            .collect();
        Subject {
            engine,
            jobs,
            keys,
            handles: vec![None; GRAPHS],
        }
    }

    fn apply(&self, g: usize, op: Op, request: Option<&str>) -> Result<Outcome, Error> {
        let mut cmd = Command::new(self.keys[g].clone(), NOW, op);
        cmd.request = request.map(|r| RequestId::new(r).expect("a valid request id"));
        self.engine.apply(cmd)
    }

    fn run(&self, op: &LinOp) -> LinRet {
        let job_op = |g: usize, op: Op| match self.apply(g, op, None) {
            Ok(Outcome::Job { epoch, .. }) => LinRet::Job(epoch),
            Ok(other) => panic!("unexpected outcome {other:?}"),
            Err(e) => code(e),
        };
        match *op {
            LinOp::Create(g) => match self.engine.create_graph(&self.keys[g]) {
                Ok(_) => LinRet::Done,
                Err(e) => code(e),
            },
            LinOp::Remove(g) => match self.apply(g, Op::Remove, None) {
                Ok(Outcome::Removed { voided }) => LinRet::Removed(voided),
                Ok(other) => panic!("unexpected outcome {other:?}"),
                Err(e) => code(e),
            },
            LinOp::Begin(g, operation, job) => {
                let op = match operation {
                    Operation::Start => Op::Start {
                        job,
                        payload: Payload::EMPTY,
                    },
                    Operation::Stop => Op::Stop { job },
                    Operation::Import => Op::Import {
                        job,
                        payload: Payload::from("edges.csv"),
                    },
                    Operation::Export => Op::Export {
                        job,
                        payload: Payload::EMPTY,
                    },
                    Operation::Clear => Op::Clear {
                        job,
                        clear_metadata: false,
                    },
                    other => unreachable!("{other}"),
                };
                job_op(g, op)
            }
            LinOp::ForceRestart(g, job, key) => {
                match self.apply(g, Op::ForceRestart { job }, key) {
                    Ok(Outcome::Restarted(r)) => LinRet::Restarted {
                        job: r.job,
                        epoch: r.epoch,
                        failed: r.failed,
                    },
                    Ok(other) => panic!("unexpected outcome {other:?}"),
                    Err(e) => code(e),
                }
            }
            LinOp::Register(g, job) => job_op(
                g,
                Op::RegisterTask {
                    job,
                    spec: TaskSpec::new(host_kind()),
                },
            ),
            LinOp::Report(g, job, epoch, rep) => {
                let task = TaskRef::new(self.keys[g].clone(), job, epoch);
                match self.engine.report(&task, rep.report()) {
                    Ok(()) => LinRet::Done,
                    Err(e) => code(e),
                }
            }
            LinOp::Cancel(g, job) => match self.engine.cancel(&self.keys[g], job) {
                Ok(()) => LinRet::Done,
                Err(e) => code(e),
            },
            LinOp::State(g) => match self.engine.state(&self.keys[g]) {
                Ok(s) => LinRet::State(s),
                Err(e) => code(e),
            },
            LinOp::Word(g) => LinRet::Word(self.handles[g].as_ref().and_then(GraphHandle::status)),
            LinOp::Task(g, job) => match self.engine.task(&self.keys[g], job) {
                Ok(t) => LinRet::Task(t.status, t.progress, t.reason),
                Err(e) => code(e),
            },
            LinOp::Final => self.final_read(),
        }
    }

    fn final_read(&self) -> LinRet {
        let snapshot = self.engine.snapshot();
        invariants::check_snapshot(&snapshot, true);
        let views = self
            .keys
            .iter()
            .map(|key| {
                let g = snapshot.graphs.iter().find(|g| &g.info.key == key)?;
                Some(GraphView {
                    state: g.info.state,
                    epoch: g.info.epoch,
                    job: g.info.job,
                    tasks: g
                        .tasks
                        .iter()
                        .map(|t| {
                            let view = TaskView {
                                kind: t.kind.clone(),
                                epoch: t.epoch,
                                status: t.status,
                                progress: t.progress,
                                stoppable: t.stoppable,
                                reason: t.reason.clone(),
                            };
                            (t.id, view)
                        })
                        .collect(),
                })
            })
            .collect();
        let mut handed = vec![Vec::new(); GRAPHS];
        for job in invariants::drain(&self.jobs) {
            let g = self.keys.iter().position(|k| k == job.key()).unwrap();
            handed[g].push(job.id());
        }
        LinRet::Final(views, handed)
    }
}

// ---- histories ---------------------------------------------------------------

/// xorshift64*: small, seedable, and enough to pick operations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// A task an operation may name, with the epoch a host would report it in.
#[derive(Clone, Copy)]
struct Known {
    graph: usize,
    id: JobId,
    epoch: Epoch,
}

/// Applies `op` to the engine and the reference in the set-up, which is
/// sequential: both must answer alike.
fn setup_step(subject: &Subject, reference: &mut Reference, op: LinOp) -> LinRet {
    let got = subject.run(&op);
    let want = reference.apply(&op);
    assert_eq!(got, want, "set-up step {op:?}");
    got
}

/// Brings graph `g` to one of a few states, with tasks to name.
fn set_up_graph(
    rng: &mut Rng,
    subject: &mut Subject,
    reference: &mut Reference,
    ids: &SequentialIds,
    g: usize,
    known: &mut Vec<Known>,
) {
    let shape = rng.below(10);
    if shape == 0 {
        return; // absent
    }
    setup_step(subject, reference, LinOp::Create(g));
    subject.handles[g] = Some(subject.engine.graph(&subject.keys[g]).unwrap());
    reference.handle_alive[g] = true;
    let mut step = |subject: &Subject, reference: &mut Reference, op: LinOp| {
        let ret = setup_step(subject, reference, op.clone());
        let (id, epoch) = match (&op, ret) {
            (LinOp::Begin(_, _, id) | LinOp::Register(_, id), LinRet::Job(e)) => (*id, e),
            (LinOp::ForceRestart(_, id, _), LinRet::Restarted { epoch, .. }) => (*id, epoch),
            _ => return,
        };
        known.push(Known {
            graph: g,
            id,
            epoch,
        });
    };
    let next = || ids.next_id(NOW);
    let start = next();
    match shape {
        1 => {} // Stopped
        _ => step(subject, reference, LinOp::Begin(g, Operation::Start, start)),
    }
    let started = |subject: &Subject, reference: &mut Reference| {
        setup_step(
            subject,
            reference,
            LinOp::Report(g, start, Epoch(0), Rep::Succeeded),
        );
    };
    match shape {
        2 => {} // Starting
        3 => started(subject, reference),
        4 => {
            started(subject, reference);
            step(subject, reference, LinOp::Register(g, next()));
            let host = known.last().unwrap().id;
            setup_step(
                subject,
                reference,
                LinOp::Report(g, host, Epoch(0), Rep::Progress(50)),
            );
        }
        5 => {
            started(subject, reference);
            step(
                subject,
                reference,
                LinOp::Begin(g, Operation::Import, next()),
            );
            step(subject, reference, LinOp::Register(g, next()));
        }
        6 => {
            started(subject, reference);
            step(subject, reference, LinOp::Register(g, next()));
            step(
                subject,
                reference,
                LinOp::ForceRestart(g, next(), Some("setup")),
            );
        }
        7 => {
            setup_step(
                subject,
                reference,
                LinOp::Report(g, start, Epoch(0), Rep::Failed),
            );
        }
        8 => {
            started(subject, reference);
            step(subject, reference, LinOp::Begin(g, Operation::Stop, next()));
        }
        _ => {
            started(subject, reference);
            step(
                subject,
                reference,
                LinOp::Begin(g, Operation::Export, next()),
            );
            step(subject, reference, LinOp::Register(g, next()));
        }
    }
}

/// One random operation. Operations that create a task draw a fresh id and
/// add it to `known`, so that later operations (of any thread) may name it.
fn random_op(rng: &mut Rng, ids: &SequentialIds, known: &mut Vec<Known>) -> LinOp {
    // Most operations go to graph 0, so that they contend.
    let g = if rng.below(4) == 0 {
        rng.below(GRAPHS)
    } else {
        0
    };
    let mut fresh = |rng: &mut Rng, bump: u64| {
        let id = ids.next_id(NOW);
        // A guess at the epoch the task will carry: a host only ever
        // knows the one its job came with.
        let base = known
            .iter()
            .filter(|k| k.graph == g)
            .map(|k| k.epoch)
            .max()
            .unwrap_or(Epoch(0));
        let epoch = Epoch(base.0 + bump.min(rng.below(2) as u64));
        known.push(Known {
            graph: g,
            id,
            epoch,
        });
        id
    };
    let named = |rng: &mut Rng, known: &[Known]| -> Option<Known> {
        let here: Vec<&Known> = known.iter().filter(|k| k.graph == g).collect();
        (!here.is_empty()).then(|| *here[rng.below(here.len())])
    };
    match rng.below(20) {
        0 => LinOp::Create(g),
        1 => LinOp::Remove(g),
        2..=4 => {
            let op = rng.pick(&[
                Operation::Start,
                Operation::Stop,
                Operation::Import,
                Operation::Export,
                Operation::Clear,
            ]);
            LinOp::Begin(g, op, fresh(rng, 0))
        }
        5..=7 => {
            let key = rng.pick(&[None, None, Some("retry")]);
            LinOp::ForceRestart(g, fresh(rng, 1), key)
        }
        8 => LinOp::Register(g, fresh(rng, 0)),
        9..=12 => match named(rng, known) {
            Some(k) => {
                let rep = rng.pick(&[
                    Rep::Started,
                    Rep::Progress(30),
                    Rep::Progress(60),
                    Rep::Succeeded,
                    Rep::Failed,
                ]);
                let epoch = if rng.below(6) == 0 {
                    k.epoch.next()
                } else {
                    k.epoch
                };
                LinOp::Report(g, k.id, epoch, rep)
            }
            None => LinOp::State(g),
        },
        13 | 14 => match named(rng, known) {
            Some(k) => LinOp::Cancel(g, k.id),
            None => LinOp::Word(g),
        },
        15 | 16 => LinOp::Word(g),
        17 => LinOp::State(g),
        _ => match named(rng, known) {
            Some(k) => LinOp::Task(g, k.id),
            None => LinOp::Word(g),
        },
    }
}

enum Entry {
    Invoke(usize, LinOp),
    Return(usize, LinRet),
}

/// What the histories exercised, so a run that raced nothing shows it.
#[derive(Default)]
struct Tally {
    ops: usize,
    /// Operations invoked while another thread's was in flight.
    overlapped: usize,
    refused: usize,
    restarts: usize,
}

impl Tally {
    fn add(&mut self, log: &[Entry]) {
        let mut in_flight = 0usize;
        for entry in log {
            match entry {
                Entry::Invoke(_, op) => {
                    self.ops += 1;
                    self.overlapped += usize::from(in_flight > 0);
                    self.restarts += usize::from(matches!(op, LinOp::ForceRestart(..)));
                    in_flight += 1;
                }
                Entry::Return(_, ret) => {
                    self.refused += usize::from(matches!(ret, LinRet::Refused(_)));
                    in_flight -= 1;
                }
            }
        }
    }
}

/// Runs one history from `seed`; panics with the history if it is not
/// linearizable.
fn run_history(seed: u64, tally: &mut Tally) {
    let mut rng = Rng::new(seed);
    let ids = SequentialIds::new(7);
    let mut subject = Subject::new();
    let mut reference = Reference::new();
    let mut known = Vec::new();
    for g in 0..GRAPHS {
        set_up_graph(&mut rng, &mut subject, &mut reference, &ids, g, &mut known);
    }
    invariants::drain(&subject.jobs);
    reference.handed = vec![Vec::new(); GRAPHS];

    let scripts: Vec<Vec<LinOp>> = {
        let mut scripts = vec![Vec::new(); THREADS];
        for _ in 0..OPS_PER_THREAD {
            for script in &mut scripts {
                script.push(random_op(&mut rng, &ids, &mut known));
            }
        }
        scripts
    };

    // Each thread stamps its calls and returns with the monotonic clock,
    // which all threads share, so no lock orders the threads; the stamps
    // merge into one history. At equal stamps the call goes first, the
    // weaker claim. The threads meet before each round of calls, so that
    // calls of one round overlap, and each pauses a random few spins
    // before its call, so that they overlap in ever other ways.
    let ready = AtomicUsize::new(0);
    let pauses: Vec<Vec<u32>> = scripts
        .iter()
        .map(|script| script.iter().map(|_| rng.below(8) as u32).collect())
        .collect();
    let stamped: Vec<Vec<(Instant, Entry)>> = thread::scope(|s| {
        let workers: Vec<_> = scripts
            .iter()
            .zip(&pauses)
            .enumerate()
            .map(|(t, (script, pauses))| {
                let (subject, ready) = (&subject, &ready);
                s.spawn(move || {
                    let mut out = Vec::with_capacity(2 * script.len());
                    for (round, (op, &pause)) in script.iter().zip(pauses).enumerate() {
                        ready.fetch_add(1, Ordering::AcqRel);
                        let mut spins = 0u32;
                        while ready.load(Ordering::Acquire) < THREADS * (round + 1) {
                            spins += 1;
                            if spins.is_multiple_of(64) {
                                thread::yield_now();
                            }
                            std::hint::spin_loop();
                        }
                        for _ in 0..pause {
                            std::hint::spin_loop();
                        }
                        let called = Instant::now();
                        let ret = subject.run(op);
                        let returned = Instant::now();
                        out.push((called, Entry::Invoke(t, op.clone())));
                        out.push((returned, Entry::Return(t, ret)));
                    }
                    out
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut log: Vec<(Instant, Entry)> = stamped.into_iter().flatten().collect();
    log.sort_by_key(|(at, entry)| (*at, matches!(entry, Entry::Return(..))));
    let mut log: Vec<Entry> = log.into_iter().map(|(_, entry)| entry).collect();
    log.push(Entry::Invoke(0, LinOp::Final));
    log.push(Entry::Return(0, subject.run(&LinOp::Final)));

    tally.add(&log);
    let mut tester = LinearizabilityTester::new(reference);
    for entry in &log {
        let recorded = match entry {
            Entry::Invoke(t, op) => tester.on_invoke(*t, op.clone()).map(drop),
            Entry::Return(t, ret) => tester.on_return(*t, ret.clone()).map(drop),
        };
        recorded.expect("a well-formed history");
    }
    if !tester.is_consistent() {
        let mut shown = String::new();
        for entry in &log {
            match entry {
                Entry::Invoke(t, op) => shown += &format!("  t{t} call   {op:?}\n"),
                Entry::Return(t, ret) => shown += &format!("  t{t} return {ret:?}\n"),
            }
        }
        panic!("history of seed {seed} is not linearizable:\n{shown}");
    }
}

#[test]
fn concurrent_histories_are_linearizable() {
    let histories = std::env::var("LIN_HISTORIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_HISTORIES);
    let first = std::env::var("LIN_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut tally = Tally::default();
    for seed in first..first + histories {
        run_history(seed, &mut tally);
    }
    println!(
        "{histories} histories, {} operations: {} overlapped another, {} refused, {} forced restarts",
        tally.ops, tally.overlapped, tally.refused, tally.restarts
    );
    // How many calls overlap depends on the machine's cores and load; a
    // run where none did checked nothing concurrent.
    assert!(
        tally.overlapped >= 10,
        "too few operations ran concurrently for the check to mean much"
    );
}

/// The checker is not vacuous: a history where a report returned before a
/// forced restart was called, yet was answered as if the restart came
/// first, is rejected.
#[test]
fn checker_rejects_a_report_answered_out_of_real_time_order() {
    let ids = SequentialIds::new(9);
    let mut subject = Subject::new();
    let mut reference = Reference::new();
    setup_step(&subject, &mut reference, LinOp::Create(0));
    subject.handles[0] = Some(subject.engine.graph(&subject.keys[0]).unwrap());
    let start = ids.next_id(NOW);
    setup_step(
        &subject,
        &mut reference,
        LinOp::Begin(0, Operation::Start, start),
    );
    let restart = ids.next_id(NOW);

    let mut tester = LinearizabilityTester::new(reference);
    let report = LinOp::Report(0, start, Epoch(0), Rep::Succeeded);
    tester.on_invret(0, report, refused("STALE_EPOCH")).unwrap();
    tester
        .on_invret(
            1,
            LinOp::ForceRestart(0, restart, None),
            LinRet::Restarted {
                job: restart,
                epoch: Epoch(1),
                failed: 1,
            },
        )
        .unwrap();
    assert!(!tester.is_consistent());
}
