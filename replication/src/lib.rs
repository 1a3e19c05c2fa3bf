//! A replicated lifecycle: the [`graph_lifecycle`] core on an
//! [`openraft`] log, so that every graph's state and every job record
//! survive the loss of any node, and the same state is on every node.
//!
//! openraft is the consensus; this crate is what the lifecycle puts on
//! top of it:
//!
//! - [`types`]: what a log entry is (a request id and a core command or a
//!   cluster command) and what it answers;
//! - [`log_store`]: the log on disk, on the journal's segments and
//!   checksummed framing, nothing acknowledged before it is synced;
//! - [`machine`]: the state machine (the core's engine and the cluster's
//!   state), snapshots from a consistent copy, restored before the node
//!   starts;
//! - [`cluster`]: job ownership, replicated: each graph's owner, node
//!   incarnations, recovery on "node up", reassignment on "node lost";
//! - [`jobs`]: the jobs a node hands its workers, and its fence;
//! - [`node`]: a node: client writes forwarded to the leader,
//!   linearizable and stale reads, leases and fencing, the leader's
//!   duties (lost nodes, deadlines, joint memberships), elections
//!   re-triggered;
//! - [`rpc`]: node-to-node messages and the transport trait; [`http`]:
//!   the transport over HTTP (and mutual TLS), with a cluster key and a
//!   configuration fingerprint;
//! - [`config`], [`meta`], [`snapshot`]: configuration, small durable
//!   files, the snapshot format;
//! - [`workers`]: simulated workers, for demos and tests.
//!
//! `docs/CLUSTER.md` in the workspace has the design, the failure modes
//! and what each costs, and how to run a cluster.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cluster;
pub mod config;
pub mod http;
pub mod jobs;
pub mod log_store;
pub mod machine;
pub mod meta;
pub mod node;
pub mod rpc;
pub mod snapshot;
pub mod types;
pub mod workers;

pub use cluster::{ClusterState, NodeRecord};
pub use config::{ClusterConfig, Timeouts};
pub use jobs::{ClusterJob, ClusterJobs, Lease, Local};
pub use log_store::{Flush, LogOptions, LogStore, LogStoreError};
pub use machine::{Observer, StateMachine};
pub use meta::{FileMeta, MemMeta, Meta};
pub use node::{ClusterError, Disk, Env, Node, StartReport};
pub use rpc::{Admin, NetError, Refusal, Reply, Request, Transport};
pub use types::{
    Answer, Batch, Body, ClusterCmd, ClusterOutcome, Consistency, NodeAddr, NodeId, Proposal,
    TypeConfig,
};
