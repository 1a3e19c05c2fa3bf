//! Node-to-node messages, the [`Transport`] that carries them, and
//! openraft's network on top of it.
//!
//! Every message is one request and one reply, `postcard`-encoded
//! ([`Request`], [`Reply`]): openraft's own three RPCs (append entries,
//! vote, a whole snapshot), and the cluster's: a write forwarded to the
//! leader, a read index, a lease renewal, an administrative change. The
//! transport is a trait so that the same node runs over HTTP between
//! processes ([`crate::http`]) and over a simulated network in one process
//! (the tests' router, which drops, delays, duplicates and reorders).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{RaftNetwork, RaftNetworkFactory, Snapshot};
use serde::{Deserialize, Serialize};

use graph_lifecycle::{Epoch, GraphKey, GraphState, JobId, TaskStatus};

use crate::types::{
    Answer, Consistency, NodeAddr, NodeId, Proposal, SnapshotMeta, TypeConfig, Vote,
};

/// A node-to-node request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
pub enum Request {
    /// openraft: append entries (and heartbeats).
    Append(AppendEntriesRequest<TypeConfig>),
    /// openraft: a vote.
    Vote(VoteRequest<NodeId>),
    /// openraft: a whole snapshot (checked by the receiver before openraft
    /// sees it).
    Snapshot {
        /// The sender's vote.
        vote: Vote,
        /// The snapshot's metadata.
        meta: SnapshotMeta,
        /// The snapshot's bytes.
        data: Vec<u8>,
    },
    /// A write forwarded to the leader.
    Write(Proposal),
    /// The leader's read index, for a linearizable read on a follower.
    ReadIndex,
    /// A node renews its lease: the leader confirms it still leads (a
    /// quorum answered) and notes that it heard from the node.
    Lease {
        /// The node renewing.
        node: NodeId,
    },
    /// An administrative change, run by the leader.
    Admin(Admin),
    /// A client's write through this node: forwarded to the leader,
    /// retried with the same request id until the client timeout.
    Client(Proposal),
    /// A client's read of one graph through this node.
    Query {
        /// The graph.
        key: GraphKey,
        /// How fresh the read must be.
        consistency: Consistency,
    },
    /// What this node knows of the cluster.
    Status,
}

impl Request {
    /// A short name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Append(_) => "append",
            Request::Vote(_) => "vote",
            Request::Snapshot { .. } => "snapshot",
            Request::Write(_) => "write",
            Request::ReadIndex => "read_index",
            Request::Lease { .. } => "lease",
            Request::Admin(_) => "admin",
            Request::Client(_) => "client",
            Request::Query { .. } => "query",
            Request::Status => "status",
        }
    }
}

/// Membership changes, run by the leader (`docs/CLUSTER.md`,
/// "Membership").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Admin {
    /// Add a node as a learner (it receives the log, votes in nothing).
    AddLearner {
        /// Its id: never one a wiped node had.
        node: NodeId,
        /// Its addresses.
        addr: NodeAddr,
    },
    /// Make a learner a voter.
    Promote {
        /// The node.
        node: NodeId,
    },
    /// Move every graph a node owns to other live nodes.
    Drain {
        /// The node.
        node: NodeId,
    },
    /// Drain a node, then remove it from the membership.
    Remove {
        /// The node.
        node: NodeId,
    },
}

/// Why a forwarded call did not get its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// The node asked is not the leader; it names the one it knows.
    #[error("not the leader (the leader is {leader:?})")]
    NotLeader {
        /// The leader it knows of.
        leader: Option<NodeId>,
    },
    /// The node could not do it (it is shutting down, a membership change
    /// is refused): the message says why.
    #[error("{0}")]
    Failed(String),
}

/// A node-to-node reply.
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    /// To [`Request::Append`].
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// To [`Request::Vote`].
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// To [`Request::Snapshot`]: the receiver's vote, or why the snapshot
    /// was refused.
    Snapshot(Result<SnapshotResponse<NodeId>, String>),
    /// To [`Request::Write`].
    Write(Result<Answer, Refusal>),
    /// To [`Request::ReadIndex`]: the index to apply up to.
    ReadIndex(Result<u64, Refusal>),
    /// To [`Request::Lease`].
    Lease(Result<(), Refusal>),
    /// To [`Request::Admin`].
    Admin(Result<(), Refusal>),
    /// To [`Request::Client`].
    Client(Result<Answer, Refusal>),
    /// To [`Request::Query`]: the graph, if it exists.
    Query(Result<Option<GraphView>, Refusal>),
    /// To [`Request::Status`].
    Status(StatusView),
}

/// One graph as a read through a node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphView {
    /// Its state.
    pub state: GraphState,
    /// Its epoch.
    pub epoch: Epoch,
    /// Its owner node.
    pub owner: Option<NodeId>,
    /// Its tasks, in creation order.
    pub tasks: Vec<TaskView>,
}

/// One task as a read sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    /// Its id.
    pub job: JobId,
    /// Its kind's name.
    pub kind: String,
    /// Its epoch.
    pub epoch: Epoch,
    /// Its status.
    pub status: TaskStatus,
    /// Its progress.
    pub progress: u8,
}

/// What a node knows of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    /// The node.
    pub node: NodeId,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its current term.
    pub term: u64,
    /// The index it applied.
    pub applied: Option<u64>,
    /// Whether it serves reads (caught up since it started).
    pub serving: bool,
    /// Whether it hands jobs to its workers (up, not fenced).
    pub dispatching: bool,
    /// The voters of the membership.
    pub voters: Vec<NodeId>,
    /// Whether the membership is joint (a change in flight).
    pub joint: bool,
}

/// Why a message did not get a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// The node cannot be reached (no connection, the node is down, the
    /// network dropped it).
    #[error("node {node} is unreachable: {why}")]
    Unreachable {
        /// The node.
        node: NodeId,
        /// Why.
        why: String,
    },
    /// No reply within the timeout.
    #[error("node {node} did not answer within {ms} ms")]
    Timeout {
        /// The node.
        node: NodeId,
        /// The timeout.
        ms: u64,
    },
    /// The node refused the message (another cluster key or
    /// configuration, a limit): the refusal's code and message.
    #[error("node {node} refused the call: {code}: {message}")]
    Refused {
        /// The node.
        node: NodeId,
        /// The refusal's stable code.
        code: String,
        /// Its message.
        message: String,
    },
    /// The reply does not decode, or answers another request.
    #[error("node {node} answered with something unreadable: {why}")]
    BadReply {
        /// The node.
        node: NodeId,
        /// What is wrong.
        why: String,
    },
}

/// A future a [`Transport`] returns.
pub type CallFuture = Pin<Box<dyn Future<Output = Result<Reply, NetError>> + Send>>;

/// Carries one request to a node and brings its reply back.
pub trait Transport: Send + Sync + 'static {
    /// Sends `req` to node `to` at `addr`, waiting at most `timeout`.
    fn call(&self, to: NodeId, addr: &NodeAddr, req: Request, timeout: Duration) -> CallFuture;
}

/// openraft's network factory over a [`Transport`].
#[derive(Clone)]
pub struct NetworkFactory {
    transport: Arc<dyn Transport>,
}

impl NetworkFactory {
    /// A factory whose clients call through `transport`.
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        Self { transport }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: NodeId, node: &NodeAddr) -> Network {
        Network {
            target,
            addr: node.clone(),
            transport: self.transport.clone(),
        }
    }
}

/// openraft's client to one node.
pub struct Network {
    target: NodeId,
    addr: NodeAddr,
    transport: Arc<dyn Transport>,
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, NodeAddr, RaftError<NodeId, E>>;

fn net_error<E: std::error::Error>(e: NetError) -> RPCError<NodeId, NodeAddr, E> {
    match e {
        NetError::Unreachable { .. } | NetError::Timeout { .. } | NetError::Refused { .. } => {
            RPCError::Unreachable(Unreachable::new(&e))
        }
        NetError::BadReply { .. } => RPCError::Network(NetworkError::new(&e)),
    }
}

fn unexpected(target: NodeId, got: &Reply) -> NetError {
    NetError::BadReply {
        node: target,
        why: format!("a reply of another kind: {got:?}"),
    }
}

impl Network {
    async fn call(&self, req: Request, option: &RPCOption) -> Result<Reply, NetError> {
        let timeout = option.hard_ttl();
        self.transport
            .call(self.target, &self.addr, req, timeout)
            .await
    }
}

impl RaftNetwork<TypeConfig> for Network {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        match self
            .call(Request::Append(rpc), &option)
            .await
            .map_err(net_error)?
        {
            Reply::Append(Ok(r)) => Ok(r),
            Reply::Append(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(net_error(unexpected(self.target, &other))),
        }
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        // Snapshots travel whole (`full_snapshot`), never in chunks.
        Err(RPCError::Unreachable(Unreachable::new(
            &NetError::Refused {
                node: self.target,
                code: "CLUSTER.CHUNKED".into(),
                message: "snapshots are sent whole".into(),
            },
        )))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        match self
            .call(Request::Vote(rpc), &option)
            .await
            .map_err(net_error)?
        {
            Reply::Vote(Ok(r)) => Ok(r),
            Reply::Vote(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(net_error(unexpected(self.target, &other))),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let req = Request::Snapshot {
            vote,
            meta: snapshot.meta.clone(),
            data: snapshot.snapshot.into_inner(),
        };
        let call = self.call(req, &option);
        let reply = tokio::select! {
            r = call => r,
            closed = cancel => return Err(StreamingError::Closed(closed)),
        };
        let unreachable = |e: NetError| StreamingError::Unreachable(Unreachable::new(&e));
        match reply.map_err(unreachable)? {
            Reply::Snapshot(Ok(r)) => Ok(r),
            Reply::Snapshot(Err(why)) => Err(unreachable(NetError::Refused {
                node: self.target,
                code: "CLUSTER.SNAPSHOT".into(),
                message: why,
            })),
            other => Err(StreamingError::Network(NetworkError::new(&unexpected(
                self.target,
                &other,
            )))),
        }
    }
}
