//! The cluster's replicated state (who owns which graph, which node
//! incarnations are up, the answers to recent cluster commands) and the one
//! deterministic step that applies a proposal to it and to the core.
//!
//! Every node applies every committed entry through one step, in log
//! order, with the same result ([`step`] is that step without handing
//! jobs over); what differs between nodes is only
//! whether the jobs a command produced are handed to this node's workers
//! (it owns the graph, is up and not fenced: [`Local::dispatching`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use graph_lifecycle::{Command, Dispatch, Engine, GraphKey, Job, Op, Outcome, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::jobs::Local;
use crate::types::{Answer, Body, ClusterCmd, ClusterOutcome, NodeId, Proposal};

/// How many cluster commands' answers are kept for retries.
pub const CLUSTER_REQUEST_WINDOW: usize = 1024;

/// One node as the log knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Its latest incarnation that came up.
    pub incarnation: u64,
    /// Up: its "node up" was applied and it was not declared lost (or
    /// removed) since.
    pub live: bool,
}

/// The cluster's replicated state, in snapshots next to the core's image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Each graph's owner (`None`: no live node could take it; the next
    /// node to come up adopts it).
    pub owners: BTreeMap<GraphKey, Option<NodeId>>,
    /// Graphs moved away from a node that was up: the old owner, which
    /// must release the graph before the new owner runs its jobs.
    pub handoffs: BTreeMap<GraphKey, NodeId>,
    /// Every node that ever came up.
    pub nodes: BTreeMap<NodeId, NodeRecord>,
    /// The answers to the last [`CLUSTER_REQUEST_WINDOW`] cluster
    /// commands, oldest first, for retries.
    pub requests: VecDeque<(Uuid, ClusterOutcome)>,
    /// The latest time a proposal carried, in milliseconds: the time of
    /// the recoveries a membership entry (which carries none) causes.
    pub last_at: u64,
    /// How many graphs each node owns (derived from `owners`).
    #[serde(skip)]
    load: BTreeMap<NodeId, usize>,
}

impl ClusterState {
    /// The live node that owns the fewest graphs (lowest id on a tie),
    /// not `except`.
    fn pick(&self, except: Option<NodeId>) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter(|(n, r)| r.live && Some(**n) != except)
            .map(|(n, _)| (self.load.get(n).copied().unwrap_or(0), *n))
            .min()
            .map(|(_, n)| n)
    }

    /// Whether `node` hands `key`'s jobs over: it owns the graph, and no
    /// hand-off from an old owner is pending.
    pub fn runs(&self, key: &GraphKey, node: NodeId) -> bool {
        self.owners.get(key).copied().flatten() == Some(node) && !self.handoffs.contains_key(key)
    }

    /// The graphs `node` must release (it applied their move).
    pub fn to_release(&self, node: NodeId) -> Vec<GraphKey> {
        self.handoffs
            .iter()
            .filter(|(_, n)| **n == node)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Ends the hand-offs from `node` (it came up again or was lost: its
    /// old jobs are void), recovering each graph.
    fn release_all(&mut self, rx: &mut Recovery<'_>, node: NodeId, at: Timestamp) {
        for key in self.to_release(node) {
            self.handoffs.remove(&key);
            rx.recover(&key, at);
        }
    }

    /// Sets (or with `None` removes) a graph's entry, keeping the load.
    fn set_owner(&mut self, key: &GraphKey, owner: Option<Option<NodeId>>) {
        let old = match owner {
            Some(o) => self.owners.insert(key.clone(), o),
            None => {
                self.handoffs.remove(key);
                self.owners.remove(key)
            }
        };
        if let Some(Some(n)) = old
            && let Some(c) = self.load.get_mut(&n)
        {
            *c = c.saturating_sub(1);
            if *c == 0 {
                self.load.remove(&n);
            }
        }
        if let Some(Some(n)) = owner {
            *self.load.entry(n).or_default() += 1;
        }
    }

    /// Recomputes the derived load after the state was decoded.
    pub(crate) fn rebuild(&mut self) {
        self.load.clear();
        for n in self.owners.values().flatten() {
            *self.load.entry(*n).or_default() += 1;
        }
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.last_at.max(1))
    }

    /// Whether `node` is up.
    pub fn is_live(&self, node: NodeId) -> bool {
        self.nodes.get(&node).is_some_and(|r| r.live)
    }

    /// The graphs `node` owns.
    pub fn owned_by(&self, node: NodeId) -> Vec<GraphKey> {
        self.owners
            .iter()
            .filter(|(_, o)| **o == Some(node))
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn remember(&mut self, id: Uuid, outcome: &ClusterOutcome) {
        self.requests.push_back((id, outcome.clone()));
        while self.requests.len() > CLUSTER_REQUEST_WINDOW {
            self.requests.pop_front();
        }
    }

    fn answered(&self, id: Uuid) -> Option<ClusterOutcome> {
        self.requests
            .iter()
            .rev()
            .find(|(r, _)| *r == id)
            .map(|(_, o)| o.clone())
    }

    /// Checks that the owners name exactly the engine's graphs.
    pub(crate) fn matches(&self, keys: &[GraphKey]) -> Result<(), String> {
        if self.owners.len() != keys.len() || keys.iter().any(|k| !self.owners.contains_key(k)) {
            return Err(format!(
                "the cluster state assigns {} graphs where the image holds {}",
                self.owners.len(),
                keys.len()
            ));
        }
        if let Some(k) = self.handoffs.keys().find(|k| !self.owners.contains_key(*k)) {
            return Err(format!("graph {k} is handed off but not assigned"));
        }
        Ok(())
    }
}

/// The deterministic step every node applies to a proposal, here without
/// handing any job over: for tools and tests that replay proposals
/// against a reference (a log's order, a linearizability check).
pub fn step(engine: &Engine, state: &mut ClusterState, proposal: &Proposal) -> Answer {
    // Node ids start at 1: node 0 owns nothing and dispatches nothing.
    let (nobody, _jobs) = Local::new(0, 0);
    apply(engine, state, &nobody, proposal, &mut Vec::new())
}

/// Applies one proposal to the core and the cluster state, handing the
/// jobs it produced to this node's workers if this node may run them.
pub(crate) fn apply(
    engine: &Engine,
    state: &mut ClusterState,
    local: &Local,
    proposal: &Proposal,
    recovered: &mut Vec<GraphKey>,
) -> Answer {
    let at = match &proposal.body {
        Body::Core(cmd) => cmd.at,
        Body::Cluster(
            ClusterCmd::NodeUp { at, .. }
            | ClusterCmd::Assign { at, .. }
            | ClusterCmd::Released { at, .. }
            | ClusterCmd::NodeLost { at, .. },
        ) => *at,
    };
    state.last_at = state.last_at.max(at.as_millis());
    match &proposal.body {
        Body::Core(cmd) => {
            let (answer, jobs) = apply_core(engine, state, cmd);
            if state.runs(&cmd.key, local.me) && local.dispatching() {
                for job in jobs {
                    local.hand_over(job);
                }
            }
            answer
        }
        Body::Cluster(cmd) => {
            if let Some(first) = state.answered(proposal.id) {
                return Answer::Cluster(first);
            }
            let mut rx = Recovery::new(engine);
            let outcome = apply_cluster(&mut rx, state, cmd);
            recovered.append(&mut rx.keys);
            match cmd {
                ClusterCmd::NodeUp {
                    node, incarnation, ..
                } if *node == local.me && outcome != ClusterOutcome::Unchanged => {
                    local.applied_up(*incarnation);
                }
                ClusterCmd::NodeLost { node, .. }
                    if *node == local.me && outcome != ClusterOutcome::Unchanged =>
                {
                    local.applied_down();
                }
                _ => {}
            }
            state.remember(proposal.id, &outcome);
            Answer::Cluster(outcome)
        }
    }
}

/// A core command: the core decides; a created graph gets an owner, a
/// removed one loses it.
pub(crate) fn apply_core(
    engine: &Engine,
    state: &mut ClusterState,
    cmd: &Command,
) -> (Answer, Vec<Job>) {
    let d = engine.apply_decided(cmd, Dispatch::Hold);
    if d.outcome.is_ok() && !d.repeated {
        match cmd.op {
            Op::Create => {
                let owner = state.pick(None);
                state.set_owner(&cmd.key, Some(owner));
            }
            Op::Remove => {
                state.set_owner(&cmd.key, None);
            }
            _ => {}
        }
    }
    (
        Answer::Core {
            outcome: d.outcome,
            repeated: d.repeated,
        },
        d.jobs,
    )
}

/// The recoveries one entry makes, and the graphs they touched.
pub(crate) struct Recovery<'a> {
    engine: &'a Engine,
    /// The graphs recovered, in the order they were.
    pub(crate) keys: Vec<GraphKey>,
}

impl<'a> Recovery<'a> {
    pub(crate) fn new(engine: &'a Engine) -> Self {
        Self {
            engine,
            keys: Vec::new(),
        }
    }

    /// Fails the graph's live tasks as interrupted and moves a
    /// transitional graph to Abnormal: nothing of it runs anywhere after
    /// this entry.
    fn recover(&mut self, key: &GraphKey, at: Timestamp) {
        let d = self
            .engine
            .apply_decided(&Command::new(key.clone(), at, Op::Recover), Dispatch::Hold);
        debug_assert!(
            matches!(
                d.outcome,
                Ok(Outcome::Recovered { .. }) | Err(graph_lifecycle::Error::GraphNotFound { .. })
            ),
            "recovery answered {:?}",
            d.outcome
        );
        self.keys.push(key.clone());
    }
}

fn apply_cluster(
    rx: &mut Recovery<'_>,
    state: &mut ClusterState,
    cmd: &ClusterCmd,
) -> ClusterOutcome {
    match cmd {
        ClusterCmd::NodeUp {
            node,
            incarnation,
            at,
        } => {
            if state
                .nodes
                .get(node)
                .is_some_and(|r| r.incarnation >= *incarnation)
            {
                // This incarnation (or a later one) is up already.
                return ClusterOutcome::Unchanged;
            }
            state.nodes.insert(
                *node,
                NodeRecord {
                    incarnation: *incarnation,
                    live: true,
                },
            );
            state.release_all(rx, *node, *at);
            let mut recovered = 0;
            let mut adopted = 0;
            let keys: Vec<(GraphKey, Option<NodeId>)> =
                state.owners.iter().map(|(k, o)| (k.clone(), *o)).collect();
            for (key, owner) in keys {
                match owner {
                    Some(o) if o == *node => {
                        rx.recover(&key, *at);
                        recovered += 1;
                    }
                    Some(o) if state.is_live(o) => {}
                    _ => {
                        rx.recover(&key, *at);
                        state.set_owner(&key, Some(Some(*node)));
                        adopted += 1;
                    }
                }
            }
            ClusterOutcome::Up { recovered, adopted }
        }
        ClusterCmd::Assign { key, node, at } => {
            let Some(owner) = state.owners.get(key).copied() else {
                return ClusterOutcome::Unchanged;
            };
            if owner == Some(*node) || !state.is_live(*node) || state.handoffs.contains_key(key) {
                return ClusterOutcome::Unchanged;
            }
            if let Some(old) = owner.filter(|o| state.is_live(*o)) {
                state.handoffs.insert(key.clone(), old);
            }
            rx.recover(key, *at);
            state.set_owner(key, Some(Some(*node)));
            ClusterOutcome::Assigned
        }
        ClusterCmd::Released { key, node, at } => {
            if state.handoffs.get(key) != Some(node) {
                return ClusterOutcome::Unchanged;
            }
            state.handoffs.remove(key);
            rx.recover(key, *at);
            ClusterOutcome::Released
        }
        ClusterCmd::NodeLost {
            node,
            incarnation,
            at,
        } => match state.nodes.get(node) {
            Some(r) if r.live && r.incarnation == *incarnation => {
                let reassigned = lose(rx, state, *node, *at);
                ClusterOutcome::Lost { reassigned }
            }
            _ => ClusterOutcome::Unchanged,
        },
    }
}

/// Marks `node` down and moves its graphs, each recovered, to live nodes.
fn lose(rx: &mut Recovery<'_>, state: &mut ClusterState, node: NodeId, at: Timestamp) -> usize {
    if let Some(r) = state.nodes.get_mut(&node) {
        r.live = false;
    }
    state.release_all(rx, node, at);
    let mut moved = 0;
    for key in state.owned_by(node) {
        rx.recover(&key, at);
        let to = state.pick(Some(node));
        state.set_owner(&key, Some(to));
        moved += 1;
    }
    moved
}

/// A membership entry: nodes no longer in it are down, their graphs
/// recovered and moved (a drained node has none left).
pub(crate) fn apply_membership(
    rx: &mut Recovery<'_>,
    state: &mut ClusterState,
    local: &Local,
    members: &BTreeSet<NodeId>,
) {
    let at = state.now();
    let gone: Vec<NodeId> = state
        .nodes
        .iter()
        .filter(|(n, r)| r.live && !members.contains(n))
        .map(|(n, _)| *n)
        .collect();
    for n in gone {
        lose(rx, state, n, at);
        if n == local.me {
            local.applied_down();
        }
    }
}
