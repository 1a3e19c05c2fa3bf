//! The ownership protocol on top of the consensus, as a stateright model,
//! checked exhaustively for 3 nodes and 2 graphs up to a stated depth.
//!
//! openraft is the consensus, so the model takes a committed log as given:
//! an append-only list of entries every node applies in order, each at its
//! own pace (a node may lag arbitrarily, even while cut off: it applies
//! what it had received). What the model is about is the protocol the
//! crate runs on that log (`docs/CLUSTER.md`, "Job ownership"):
//!
//! - each graph has an owner; a node hands a graph's job to its workers
//!   when it applies the entry that made the job, if it owns the graph
//!   (no hand-off from another node pending), is up, and is not fenced;
//! - a node comes up by proposing "node up" with a new incarnation while
//!   it holds a lease; applying it recovers the graphs it owns (their live
//!   jobs fail) and adopts graphs with no live owner;
//! - a node that cannot reach a quorum loses its lease and fences itself:
//!   its workers' leases go void (the jobs stop) and it is not up;
//! - the leader declares a node lost only once that node has fenced (the
//!   timing assumption the fence and lost timeouts give: lost = fence +
//!   drift margin); its graphs are recovered and reassigned;
//! - a graph moved to another node while its owner is up (a drain) is
//!   recovered, and the new owner runs none of its jobs until the old owner
//!   has applied the move and says so ("released"), or comes up again, or
//!   is declared lost.
//!
//! Faults: one node at a time may be cut off (then lose its lease and
//! fence) or crash (its workers die with it) and come back.
//!
//! Checked in every reachable state:
//! - no graph has jobs running on two nodes at once;
//! - no acknowledged forced restart is lost: every node that applied it
//!   has the graph at its epoch or later;
//! - once healed and quiet (every node alive, connected, up, caught up,
//!   nothing left to propose), every graph has a live owner and no
//!   hand-off pending.
//!
//! The default depth is 9 (about 1.4 million distinct states, seconds in
//! a debug build); `OWNERSHIP_DEPTH=N` checks to depth N (10: 5.6 million
//! states; each step deeper is about four times as many). Paths deeper
//! than the bound (a lost owner healed, a drained graph released) are
//! walked step by step below, with the same properties checked at each.

use std::collections::BTreeSet;

use stateright::{Checker, Model, Property};

const NODES: usize = 3;
const GRAPHS: usize = 2;
const MAX_LOG: usize = 9;
const MAX_INCARNATION: u8 = 3;

type N = u8;
type G = u8;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum E {
    Restart { g: G, job: u8 },
    Done { g: G, job: u8 },
    Up { n: N, inc: u8 },
    Lost { n: N, inc: u8 },
    Assign { g: G, to: N },
    Released { g: G, from: N },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Node {
    alive: bool,
    connected: bool,
    leased: bool,
    fenced: bool,
    /// Its own "node up" for its current incarnation was applied.
    live: bool,
    inc: u8,
    applied: usize,
    /// Jobs its workers run: (graph, job).
    running: BTreeSet<(G, u8)>,
    /// The replicated state after the entries it applied.
    view: Replicated,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Sys {
    log: Vec<E>,
    /// The replicated state after the whole log.
    latest: Replicated,
    nodes: Vec<Node>,
    faults: u8,
}

/// The replicated state after a prefix of the log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Replicated {
    owner: [Option<N>; GRAPHS],
    handoff: [Option<N>; GRAPHS],
    /// Per node: its latest incarnation that came up, and whether it is
    /// live.
    rec: [(u8, bool); NODES],
    live_job: [Option<u8>; GRAPHS],
    epoch: [u8; GRAPHS],
}

/// What applying one entry does locally on the node applying it.
#[derive(Debug, Default)]
struct Effect {
    /// Graphs whose live jobs were voided (recovered, restarted).
    voided: Vec<G>,
    /// A job handed to the applying node's workers, if it may run it.
    made: Option<(G, u8)>,
}

impl Replicated {
    fn initial() -> Self {
        let mut owner = [None; GRAPHS];
        for (g, o) in owner.iter_mut().enumerate() {
            *o = Some((g % NODES) as N);
        }
        Replicated {
            owner,
            handoff: [None; GRAPHS],
            rec: [(0, true); NODES],
            live_job: [None; GRAPHS],
            epoch: [0; GRAPHS],
        }
    }

    fn is_live(&self, n: N) -> bool {
        self.rec[usize::from(n)].1
    }

    fn pick(&self, except: N) -> Option<N> {
        (0..NODES as N)
            .filter(|n| *n != except && self.is_live(*n))
            .min_by_key(|n| (self.owner.iter().filter(|o| **o == Some(*n)).count(), *n))
    }

    fn recover(&mut self, g: usize, fx: &mut Effect) {
        self.live_job[g] = None;
        fx.voided.push(g as G);
    }

    fn apply(&mut self, e: &E) -> Effect {
        let mut fx = Effect::default();
        match *e {
            E::Restart { g, job } => {
                let g = usize::from(g);
                self.epoch[g] += 1;
                self.live_job[g] = Some(job);
                fx.voided.push(g as G);
                fx.made = Some((g as G, job));
            }
            E::Done { g, job } => {
                let g = usize::from(g);
                if self.live_job[g] == Some(job) {
                    self.live_job[g] = None;
                }
            }
            E::Up { n, inc } => {
                let i = usize::from(n);
                if self.rec[i].0 >= inc {
                    return fx;
                }
                self.rec[i] = (inc, true);
                for g in 0..GRAPHS {
                    if self.handoff[g] == Some(n) {
                        self.handoff[g] = None;
                        self.recover(g, &mut fx);
                    }
                    match self.owner[g] {
                        Some(o) if o == n => self.recover(g, &mut fx),
                        Some(o) if self.is_live(o) => {}
                        _ => {
                            self.recover(g, &mut fx);
                            self.owner[g] = Some(n);
                        }
                    }
                }
            }
            E::Lost { n, inc } => {
                let i = usize::from(n);
                if self.rec[i] != (inc, true) {
                    return fx;
                }
                self.rec[i] = (inc, false);
                for g in 0..GRAPHS {
                    if self.handoff[g] == Some(n) {
                        self.handoff[g] = None;
                        self.recover(g, &mut fx);
                    }
                    if self.owner[g] == Some(n) {
                        self.recover(g, &mut fx);
                        self.owner[g] = self.pick(n);
                    }
                }
            }
            E::Assign { g, to } => {
                let g = usize::from(g);
                let old = self.owner[g];
                if old == Some(to) || !self.is_live(to) {
                    return fx;
                }
                if let Some(a) = old.filter(|a| self.is_live(*a)) {
                    self.handoff[g] = Some(a);
                }
                self.recover(g, &mut fx);
                self.owner[g] = Some(to);
            }
            E::Released { g, from } => {
                let g = usize::from(g);
                if self.handoff[g] == Some(from) {
                    self.handoff[g] = None;
                    self.recover(g, &mut fx);
                }
            }
        }
        fx
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Action {
    Restart(G),
    WorkerDone(N, G, u8),
    ProposeUp(N),
    DeclareLost(N),
    Drain(G, N),
    Release(N, G),
    Apply(N),
    Cut(N),
    Heal(N),
    LeaseExpires(N),
    Renew(N),
    Crash(N),
    Reboot(N),
}

struct Ownership;

fn healthy_count(s: &Sys) -> usize {
    s.nodes.iter().filter(|n| n.alive && n.connected).count()
}

impl Model for Ownership {
    type State = Sys;
    type Action = Action;

    fn init_states(&self) -> Vec<Sys> {
        let node = Node {
            alive: true,
            connected: true,
            leased: true,
            fenced: false,
            live: true,
            inc: 0,
            applied: 0,
            running: BTreeSet::new(),
            view: Replicated::initial(),
        };
        vec![Sys {
            log: Vec::new(),
            latest: Replicated::initial(),
            nodes: vec![node; NODES],
            faults: 0,
        }]
    }

    fn actions(&self, s: &Sys, out: &mut Vec<Action>) {
        // A quorum exists while at most one node is cut off or down.
        let quorum = healthy_count(s) * 2 > NODES;
        let latest = &s.latest;
        let room = s.log.len() < MAX_LOG;
        for (i, n) in s.nodes.iter().enumerate() {
            let i = i as N;
            if n.alive && n.applied < s.log.len() {
                out.push(Action::Apply(i));
            }
            let reaches = n.alive && n.connected && quorum;
            if reaches && room {
                for &(g, job) in &n.running {
                    out.push(Action::WorkerDone(i, g, job));
                }
                if n.leased && !n.live && n.inc < MAX_INCARNATION {
                    out.push(Action::ProposeUp(i));
                }
                for g in 0..GRAPHS {
                    if n.view.handoff[g] == Some(i) && latest.handoff[g] == Some(i) {
                        out.push(Action::Release(i, g as G));
                    }
                }
            }
            if n.alive && n.connected && s.faults < 2 && healthy_count(s) == NODES {
                out.push(Action::Cut(i));
                out.push(Action::Crash(i));
            }
            if n.alive && !n.connected {
                out.push(Action::Heal(i));
            }
            if n.alive && !n.connected && n.leased {
                out.push(Action::LeaseExpires(i));
            }
            if n.alive && n.connected && quorum && !n.leased {
                out.push(Action::Renew(i));
            }
            if !n.alive {
                out.push(Action::Reboot(i));
            }
        }
        if quorum && room {
            for g in 0..GRAPHS {
                out.push(Action::Restart(g as G));
                if let Some(a) = latest.owner[g] {
                    for to in 0..NODES as N {
                        if to != a && latest.is_live(to) && latest.handoff[g].is_none() {
                            out.push(Action::Drain(g as G, to));
                        }
                    }
                }
            }
            for (m, r) in latest.rec.iter().enumerate() {
                // The timing assumption: the leader's lost timeout (fence +
                // drift) runs out only after the node fenced.
                if r.1 && !s.nodes[m].leased {
                    out.push(Action::DeclareLost(m as N));
                }
            }
        }
    }

    fn next_state(&self, s: &Sys, a: Action) -> Option<Sys> {
        let mut s = s.clone();
        let next_job = s.log.len() as u8;
        let push = |s: &mut Sys, e: E| {
            s.latest.apply(&e);
            s.log.push(e);
        };
        match a {
            Action::Restart(g) => push(&mut s, E::Restart { g, job: next_job }),
            Action::WorkerDone(n, g, job) => {
                s.nodes[usize::from(n)].running.remove(&(g, job));
                push(&mut s, E::Done { g, job });
            }
            Action::ProposeUp(n) => {
                let node = &mut s.nodes[usize::from(n)];
                node.inc += 1;
                let inc = node.inc;
                push(&mut s, E::Up { n, inc });
            }
            Action::DeclareLost(n) => {
                let inc = s.latest.rec[usize::from(n)].0;
                push(&mut s, E::Lost { n, inc });
            }
            Action::Drain(g, to) => push(&mut s, E::Assign { g, to }),
            Action::Release(n, g) => push(&mut s, E::Released { g, from: n }),
            Action::Apply(n) => {
                let i = usize::from(n);
                let at = s.nodes[i].applied;
                let entry = s.log[at].clone();
                let node = &mut s.nodes[i];
                let fx = node.view.apply(&entry);
                let view = &node.view;
                node.applied += 1;
                // Tokens of voided graphs fire on this node.
                node.running.retain(|(g, _)| !fx.voided.contains(g));
                match entry {
                    E::Up { n: m, inc } if m == n => node.live = inc == node.inc,
                    E::Lost { n: m, inc } if m == n && view.rec[i] == (inc, false) => {
                        node.live = false;
                    }
                    _ => {}
                }
                if let Some((g, job)) = fx.made {
                    let gi = usize::from(g);
                    let owns = view.owner[gi] == Some(n) && view.handoff[gi].is_none();
                    if owns && node.live && !node.fenced {
                        node.running.insert((g, job));
                    }
                }
            }
            Action::Cut(n) => {
                s.faults += 1;
                s.nodes[usize::from(n)].connected = false;
            }
            Action::Heal(n) => s.nodes[usize::from(n)].connected = true,
            Action::LeaseExpires(n) => {
                let node = &mut s.nodes[usize::from(n)];
                node.leased = false;
                node.fenced = true;
                node.live = false;
                node.running.clear();
            }
            Action::Renew(n) => {
                let node = &mut s.nodes[usize::from(n)];
                node.leased = true;
                node.fenced = false;
            }
            Action::Crash(n) => {
                s.faults += 1;
                let node = &mut s.nodes[usize::from(n)];
                node.alive = false;
                node.leased = false;
                node.live = false;
                node.running.clear();
            }
            Action::Reboot(n) => {
                let node = &mut s.nodes[usize::from(n)];
                node.alive = true;
                node.connected = true;
                node.fenced = false;
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("no graph's jobs run on two nodes at once", |_, s: &Sys| {
                (0..GRAPHS as G).all(|g| {
                    s.nodes
                        .iter()
                        .filter(|n| n.alive && n.running.iter().any(|(x, _)| *x == g))
                        .count()
                        <= 1
                })
            }),
            Property::always("no acknowledged forced restart is lost", |_, s: &Sys| {
                s.nodes.iter().all(|n| {
                    (0..GRAPHS).all(|g| {
                        let acked = s.log[..n.applied]
                            .iter()
                            .filter(
                                |e| matches!(e, E::Restart { g: h, .. } if usize::from(*h) == g),
                            )
                            .count();
                        usize::from(n.view.epoch[g]) >= acked
                    })
                })
            }),
            Property::always(
                "healed and quiet, every graph has a live owner",
                |m: &Ownership, s: &Sys| {
                    if !quiet(m, s) {
                        return true;
                    }
                    let r = &s.latest;
                    r.handoff.iter().all(Option::is_none)
                        && r.owner.iter().all(|o| o.is_some_and(|n| r.is_live(n)))
                },
            ),
        ]
    }
}

/// Every node alive, connected, leased, up and caught up, and nothing of
/// the protocol left to propose (no "node up", no "released", no "lost").
fn quiet(m: &Ownership, s: &Sys) -> bool {
    let settled = s
        .nodes
        .iter()
        .all(|n| n.alive && n.connected && n.leased && n.live && n.applied == s.log.len());
    if !settled {
        return false;
    }
    let mut acts = Vec::new();
    m.actions(s, &mut acts);
    !acts.iter().any(|a| {
        matches!(
            a,
            Action::ProposeUp(_) | Action::Release(..) | Action::DeclareLost(_)
        )
    })
}

fn depth() -> usize {
    std::env::var("OWNERSHIP_DEPTH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9)
}

#[test]
fn the_ownership_protocol_holds_for_3_nodes_and_2_graphs() {
    let checker = Ownership
        .checker()
        .target_max_depth(depth())
        .spawn_bfs()
        .join();
    checker.assert_properties();
    eprintln!(
        "ownership model: {} states, {} unique, depth {}",
        checker.state_count(),
        checker.unique_state_count(),
        depth()
    );
}

/// Runs `path` from the initial state, each action enabled where it is
/// taken, checking the `always` properties after every step.
fn walk(path: &[Action]) -> Sys {
    let m = Ownership;
    let mut s = m.init_states().remove(0);
    let props = m.properties();
    for (i, a) in path.iter().enumerate() {
        let mut enabled = Vec::new();
        m.actions(&s, &mut enabled);
        assert!(
            enabled.contains(a),
            "step {i}: {a:?} is not enabled in {s:#?}"
        );
        s = m.next_state(&s, a.clone()).expect("a next state");
        for p in &props {
            if p.expectation == stateright::Expectation::Always {
                assert!(
                    (p.condition)(&m, &s),
                    "step {i} ({a:?}) breaks {:?}",
                    p.name
                );
            }
        }
    }
    s
}

/// The owner of graph 0 is cut off: it fences, is declared lost, its graph
/// moves and runs elsewhere; healed, it comes up again and the cluster is
/// quiet with every graph owned by a live node.
#[test]
fn a_lost_owner_is_fenced_its_graph_moves_and_the_healed_cluster_is_quiet() {
    use Action::*;
    let mut path = vec![Cut(0), LeaseExpires(0), DeclareLost(0), Restart(0)];
    path.extend([Apply(1), Apply(1), Apply(2), Apply(2)]);
    let s = walk(&path);
    assert_eq!(s.latest.owner[0], Some(2));
    assert!(s.nodes[2].running.contains(&(0, 1)), "{s:#?}");
    let mut more = path.clone();
    more.extend([Heal(0), Renew(0), Apply(0), Apply(0), ProposeUp(0)]);
    more.extend([Apply(0), Apply(1), Apply(2)]);
    let s = walk(&more);
    assert!(quiet(&Ownership, &s), "{s:#?}");
    assert_eq!(s.latest.owner, [Some(2), Some(1)]);
}

/// A drain moves graph 0 while its old owner lags with a job running: the
/// new owner runs none of the graph's jobs until the old owner applied
/// the move and released it.
#[test]
fn a_moved_graph_runs_on_its_new_owner_only_after_the_old_one_released_it() {
    use Action::*;
    let path = vec![
        Restart(0),
        Apply(0),
        Drain(0, 2),
        Apply(2),
        Apply(2),
        Restart(0),
        Apply(2),
    ];
    let s = walk(&path);
    assert!(
        s.nodes[0].running.contains(&(0, 0)),
        "the lagging owner still runs its job"
    );
    assert!(s.nodes[2].running.is_empty(), "{s:#?}");
    let mut more = path;
    more.extend([Apply(0), Apply(0), Release(0, 0), Restart(0)]);
    more.extend([Apply(2), Apply(2)]);
    let s = walk(&more);
    assert!(s.nodes[0].running.is_empty());
    assert!(s.nodes[2].running.contains(&(0, 4)), "{s:#?}");
}
