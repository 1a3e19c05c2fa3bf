//! The model test's workload: the world its cases run in (projects, graph
//! ids, payloads, request ids) and the generator of its steps. Shared with
//! the replicated lifecycle's simulation (`replication/tests/simulation.rs`),
//! which drives a cluster with the same steps.

// Each test crate uses a different part of the workload.
#![allow(dead_code)]

use graph_lifecycle::{GraphKey, Payload, ProjectId, RequestId};
use proptest::prelude::*;

// ---- the world the cases run in ---------------------------------------------

pub const PROJECTS: [&str; 2] = ["tenant-a", "tenant-b"];
pub const GRAPH_IDS: [&str; 3] = ["movies", "roads", "social"];
pub const KEYS: u8 = 6;

pub const PAYLOADS: [&str; 4] = ["", "a", "csv:e1", "oversized-payload"];
pub const MESSAGES: [&str; 3] = ["boom", "disk full", "a-message-too-long"];
pub const HOST_KINDS: [&str; 2] = ["pagerank", "async-query"];

pub fn key_of(i: u8) -> GraphKey {
    let i = usize::from(i % KEYS);
    GraphKey::parse(PROJECTS[i / 3], GRAPH_IDS[i % 3]).expect("valid key")
}

pub fn project_of(i: u8) -> ProjectId {
    ProjectId::new(PROJECTS[usize::from(i % 2)]).expect("valid project")
}

/// The same graph id in the other project.
pub fn mirror(key: &GraphKey) -> GraphKey {
    let other = if key.project.as_str() == PROJECTS[0] {
        PROJECTS[1]
    } else {
        PROJECTS[0]
    };
    GraphKey::new(
        ProjectId::new(other).expect("valid project"),
        key.graph.clone(),
    )
}

pub fn payload_of(i: usize) -> Payload {
    Payload::from(PAYLOADS[i % PAYLOADS.len()])
}

/// A few request ids, so that commands share them: retries, and
/// commands that reuse another's id.
pub const REQUESTS: [&str; 4] = [
    "req-a",
    "req-b",
    "req-c",
    "8e0c2bbd-5a1f-4a7e-9d55-0f3f2f8d7c11",
];

pub fn request_of(i: u8) -> RequestId {
    RequestId::new(REQUESTS[usize::from(i) % REQUESTS.len()]).expect("valid request id")
}

// ---- the steps ------------------------------------------------------------------

#[derive(Debug, Clone)]
pub enum Tamper {
    None,
    OtherProject,
    EpochUp,
    EpochDown,
}

/// Which task a report or cancel is about. A pick `n` takes candidate
/// `n % len` (the first, once shrunk).
#[derive(Debug, Clone)]
pub enum Target {
    /// A live lifecycle job (any live job or ticket if there is none).
    Job(u16, Tamper),
    /// A job or ticket handed over whose task the model holds live (any
    /// handed-over one if none is live).
    Live(u16, Tamper),
    /// Any job or ticket handed over, stale ones included.
    Any(u16, Tamper),
    /// A made-up id on a graph.
    Unknown(u8, u8),
}

#[derive(Debug, Clone)]
pub enum Rep {
    Started,
    Progress(u8),
    Succeeded,
    Failed(usize),
}

#[derive(Debug, Clone)]
pub struct Query {
    /// Bit i: `STATUSES[i]`; `None`: no status filter.
    pub statuses: Option<u8>,
    /// Build the status set with repeated `TaskQuery::status` calls.
    pub builder: bool,
    pub since_back: Option<u64>,
    pub until_back: Option<u64>,
    pub offset: usize,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone)]
pub enum Step {
    Create(u8),
    Remove(u8),
    Start(u8, usize),
    Stop(u8),
    Import(u8, usize),
    Export(u8, usize),
    Clear(u8, bool),
    ForceRestart(u8),
    Register {
        graph: u8,
        kind: usize,
        stoppable: bool,
        timeout_ms: Option<u64>,
        payload: usize,
    },
    Report(Target, Rep),
    Cancel(Target),
    Advance(u64),
    /// The clock steps back (a wall clock corrected).
    Rewind(u64),
    Expire,
    /// The step, its command carrying request id `REQUESTS[n]`.
    Req(u8, Box<Step>),
    /// A step that carried a request id, sent again with it: pick `n`
    /// of those so far.
    Retry(u16),
    /// Not generated: every case ends with one per graph, as if the
    /// engine had crashed there and recovered.
    Recover(u8),
    Tasks(u8, Query),
    ProjectTasks(u8, Query),
    Graphs(u8, usize, usize),
}

/// Most steps go to one graph of each project, so that graphs get far
/// enough through their lifecycle; the others keep the projects apart.
pub fn graph_index() -> impl Strategy<Value = u8> {
    prop_oneof![6 => Just(0u8), 3 => Just(3u8), 1 => 0..KEYS]
}

pub fn payload_index() -> impl Strategy<Value = usize> {
    prop_oneof![8 => 0..PAYLOADS.len() - 1, 1 => Just(PAYLOADS.len() - 1)]
}

pub fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        12 => Just(Tamper::None),
        1 => Just(Tamper::OtherProject),
        1 => Just(Tamper::EpochUp),
        1 => Just(Tamper::EpochDown),
    ]
}

pub fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        10 => (any::<u16>(), tamper()).prop_map(|(i, t)| Target::Job(i, t)),
        3 => (any::<u16>(), tamper()).prop_map(|(i, t)| Target::Live(i, t)),
        3 => (any::<u16>(), tamper()).prop_map(|(i, t)| Target::Any(i, t)),
        1 => (graph_index(), 0u8..4).prop_map(|(g, n)| Target::Unknown(g, n)),
    ]
}

pub fn report() -> impl Strategy<Value = Rep> {
    prop_oneof![
        2 => Just(Rep::Started),
        3 => prop_oneof![4 => 0u8..=100, 1 => 101u8..=255, 1 => Just(0u8)].prop_map(Rep::Progress),
        8 => Just(Rep::Succeeded),
        2 => (0..MESSAGES.len()).prop_map(Rep::Failed),
    ]
}

pub fn query() -> impl Strategy<Value = Query> {
    (
        prop::option::weighted(0.6, 0u8..32),
        any::<bool>(),
        prop::option::weighted(0.3, 0u64..20_000),
        prop::option::weighted(0.3, 0u64..20_000),
        prop_oneof![3 => Just(0usize), 1 => 1usize..6],
        prop::option::weighted(0.5, 0usize..6),
    )
        .prop_map(
            |(statuses, builder, since_back, until_back, offset, limit)| Query {
                statuses,
                builder,
                since_back,
                until_back,
                offset,
                limit,
            },
        )
}

pub fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => graph_index().prop_map(Step::Create),
        5 => graph_index().prop_map(Step::Remove),
        8 => (graph_index(), payload_index()).prop_map(|(g, p)| Step::Start(g, p)),
        7 => graph_index().prop_map(Step::Stop),
        5 => (graph_index(), payload_index()).prop_map(|(g, p)| Step::Import(g, p)),
        3 => (graph_index(), payload_index()).prop_map(|(g, p)| Step::Export(g, p)),
        3 => (graph_index(), any::<bool>()).prop_map(|(g, m)| Step::Clear(g, m)),
        4 => graph_index().prop_map(Step::ForceRestart),
        9 => (
            graph_index(),
            0..HOST_KINDS.len(),
            prop::bool::weighted(0.8),
            prop::option::weighted(0.5, 100u64..4_000),
            payload_index(),
        )
            .prop_map(|(graph, kind, stoppable, timeout_ms, payload)| Step::Register {
                graph,
                kind,
                stoppable,
                timeout_ms,
                payload,
            }),
        28 => (target(), report()).prop_map(|(t, r)| Step::Report(t, r)),
        4 => target().prop_map(Step::Cancel),
        8 => prop_oneof![1u64..100, 100u64..1_500, 1_500u64..6_000].prop_map(Step::Advance),
        1 => prop_oneof![1u64..100, 100u64..3_000].prop_map(Step::Rewind),
        6 => Just(Step::Expire),
        2 => (graph_index(), query()).prop_map(|(g, q)| Step::Tasks(g, q)),
        2 => (0u8..2, query()).prop_map(|(p, q)| Step::ProjectTasks(p, q)),
        1 => (0u8..2, 0usize..4, 0usize..4).prop_map(|(p, o, l)| Step::Graphs(p, o, l)),
    ]
}

/// A step, or one that carries a request id, or a retry of one that did.
pub fn call() -> impl Strategy<Value = Step> {
    prop_oneof![
        10 => step(),
        4 => (0u8..REQUESTS.len() as u8, step()).prop_map(|(r, s)| Step::Req(r, Box::new(s))),
        3 => any::<u16>().prop_map(Step::Retry),
    ]
}
