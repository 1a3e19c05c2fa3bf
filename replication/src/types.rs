//! What the replicated log holds and answers: the openraft type
//! configuration, proposals (a request id and a core or cluster command),
//! and answers.

use std::fmt;
use std::io::Cursor;

use graph_lifecycle::{Command, Error, GraphKey, Outcome, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A node's id in the cluster. Never reused for a node whose storage was
/// wiped (`docs/CLUSTER.md`, "Membership").
pub type NodeId = u64;

/// Where a node is reached: its node-to-node listener, and the address its
/// clients use (informational: forwarded writes go to `rpc`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddr {
    /// `host:port` of the node-to-node listener.
    pub rpc: String,
    /// `host:port` of the client API (a GES server's listener), if any.
    pub api: String,
}

impl NodeAddr {
    /// An address with the node-to-node listener `rpc` and no client API.
    pub fn new(rpc: impl Into<String>) -> Self {
        Self {
            rpc: rpc.into(),
            api: String::new(),
        }
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rpc)
    }
}

openraft::declare_raft_types!(
    /// The openraft type configuration of the lifecycle's log.
    pub TypeConfig:
        D = Batch,
        R = Vec<Answer>,
        NodeId = NodeId,
        Node = NodeAddr,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The openraft node of this crate's log.
pub type Raft = openraft::Raft<TypeConfig>;
/// One entry of the log.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id (term, leader, index).
pub type LogId = openraft::LogId<NodeId>;
/// A vote.
pub type Vote = openraft::Vote<NodeId>;
/// The membership as stored with the state machine.
pub type StoredMembership = openraft::StoredMembership<NodeId, NodeAddr>;
/// A snapshot's metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, NodeAddr>;
/// openraft's storage error, for this configuration.
pub type StorageError = openraft::StorageError<NodeId>;

/// One log entry's proposals: the leader gathers the proposals that
/// arrive while the previous entry is being written into one entry, so
/// that one sync of the log commits many (openraft 0.9 syncs each entry
/// it appends before it takes the next). They are applied in order; the
/// entry answers one [`Answer`] per proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The proposals, in the order they are applied.
    pub proposals: Vec<Proposal>,
}

/// One proposal: the client's request id and what to apply.
///
/// The request id is chosen by the side that first accepted the call (a
/// client that retries reuses it), so that a retry of a command the log
/// already holds gets the first answer instead of being applied again
/// (`docs/CLUSTER.md`, "Retries").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The request id.
    pub id: Uuid,
    /// What to apply.
    pub body: Body,
}

/// What a proposal applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// A core command, applied with `Engine::apply_decided` on every
    /// node. It carries the request id in its own `request` field, so the
    /// core's request windows answer its retries.
    Core(Command),
    /// A command of the cluster's own (ownership).
    Cluster(ClusterCmd),
}

/// The cluster's own commands: who runs which graph's jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterCmd {
    /// Node `node` (booted, or back from a fence, as `incarnation`) takes
    /// up its graphs: applying it recovers every graph it owns (live
    /// tasks fail as interrupted, transitional graphs go Abnormal) and
    /// adopts graphs with no live owner; from then on the node hands its
    /// graphs' jobs to its workers.
    NodeUp {
        /// The node.
        node: NodeId,
        /// Its incarnation: new at each boot and after each fence.
        incarnation: u64,
        /// The time the recovery step carries.
        at: Timestamp,
    },
    /// Graph `key` moves to `node`: recovered (its live tasks fail as
    /// interrupted) and reassigned; if the old owner is up, the new owner
    /// runs none of the graph's jobs until the old one has applied the
    /// move ([`ClusterCmd::Released`]), since a lagging old owner's
    /// workers stop only when it applies it. Used to drain a node before
    /// removing it.
    Assign {
        /// The graph.
        key: GraphKey,
        /// Its new owner.
        node: NodeId,
        /// The time the recovery step carries.
        at: Timestamp,
    },
    /// The old owner of a graph moved by [`ClusterCmd::Assign`] has
    /// applied the move (its jobs of the graph are void) and lets the new
    /// owner run the graph's jobs; until then the new owner hands none
    /// over. A node that comes up again or is declared lost releases its
    /// graphs implicitly.
    Released {
        /// The graph.
        key: GraphKey,
        /// The old owner.
        node: NodeId,
        /// The time the recovery step carries.
        at: Timestamp,
    },
    /// The leader declares `node`'s `incarnation` lost (it has not been
    /// heard from for longer than its fence timeout plus the clock drift
    /// margin, so it has voided its tokens): its graphs are recovered and
    /// reassigned to live nodes.
    NodeLost {
        /// The node.
        node: NodeId,
        /// The incarnation declared lost; a newer one is left alone.
        incarnation: u64,
        /// The time the recovery steps carry.
        at: Timestamp,
    },
}

impl ClusterCmd {
    /// A stable lower-case name.
    pub fn name(&self) -> &'static str {
        match self {
            ClusterCmd::NodeUp { .. } => "node_up",
            ClusterCmd::Assign { .. } => "assign",
            ClusterCmd::Released { .. } => "released",
            ClusterCmd::NodeLost { .. } => "node_lost",
        }
    }
}

/// What the state machine answered to one log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// A core command's outcome, the same on every node.
    Core {
        /// The outcome: a refusal is an outcome too.
        outcome: Result<Outcome, Error>,
        /// The command's request id was in its window: `outcome` is the
        /// first answer, and nothing changed.
        repeated: bool,
    },
    /// A cluster command's outcome.
    Cluster(ClusterOutcome),
    /// A blank or membership entry.
    None,
}

/// What a cluster command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterOutcome {
    /// A node came up: this many graphs were recovered and this many
    /// adopted.
    Up {
        /// Graphs it owned, recovered.
        recovered: usize,
        /// Graphs with no live owner it took over.
        adopted: usize,
    },
    /// A graph moved to a node.
    Assigned,
    /// A graph's old owner released it.
    Released,
    /// A node was declared lost; this many graphs were reassigned.
    Lost {
        /// Graphs reassigned.
        reassigned: usize,
    },
    /// The command changed nothing (an old incarnation, an owner already
    /// in place, a node already lost, a graph that does not exist).
    Unchanged,
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Consistency {
    /// Linearizable (the default): the leader confirms it still leads
    /// (a quorum answers its heartbeat), and the node answers once it has
    /// applied the log up to the leader's commit index at that moment.
    #[default]
    Linearizable,
    /// Whatever this node has applied (never older than what it had
    /// applied before a restart).
    Stale,
}
