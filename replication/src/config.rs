//! A node's configuration: who it is, its peers, the cluster key, the
//! timeouts, and the engine configuration every node must share.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::types::{NodeAddr, NodeId};

/// The timeouts of a cluster (every node must use the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// How often the leader sends heartbeats (default 100 ms).
    pub heartbeat: Duration,
    /// The shortest election timeout (default 300 ms).
    pub election_min: Duration,
    /// The longest election timeout (default 800 ms): a wide range, so
    /// that two survivors seldom draw the same. openraft 0.9 lets a
    /// follower that heard from its leader start an election only after
    /// this long (the leader's lease) plus its own drawn timeout, so a
    /// leader's loss is noticed after 1.1 to 1.6 s.
    pub election_max: Duration,
    /// A node that has not confirmed a quorum for this long voids its
    /// jobs' leases and stops handing jobs over (default 2 s).
    pub fence: Duration,
    /// What the clocks of two nodes may drift apart over a fence timeout
    /// (default 1 s): the leader declares a silent node lost only after
    /// `fence + drift`.
    pub drift: Duration,
    /// How long one node-to-node call may take (default 1 s; snapshots get
    /// ten times as long).
    pub rpc: Duration,
    /// How long a client call keeps trying to reach a leader before it
    /// fails (default 10 s).
    pub client: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(100),
            election_min: Duration::from_millis(300),
            election_max: Duration::from_millis(800),
            fence: Duration::from_millis(2_000),
            drift: Duration::from_millis(1_000),
            rpc: Duration::from_millis(1_000),
            client: Duration::from_secs(10),
        }
    }
}

impl Timeouts {
    /// After how long without hearing from a node the leader declares it
    /// lost: the fence timeout plus the drift margin.
    pub fn lost(&self) -> Duration {
        self.fence + self.drift
    }
}

/// One node's configuration.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's id (1 or more; never reused for a wiped node).
    pub node_id: NodeId,
    /// Every node of the initial cluster, this one included: the
    /// membership a bootstrap initializes, and where to reach each.
    pub peers: BTreeMap<NodeId, NodeAddr>,
    /// The shared secret every node presents on each call.
    pub key: String,
    /// The timeouts.
    pub timeouts: Timeouts,
    /// The core's configuration: caps, retention, timeouts, windows. It
    /// must be the same on every node, since every node applies the same
    /// commands and must reach the same state.
    pub engine: graph_lifecycle::Config,
    /// A snapshot is taken after this many entries (default 5,000).
    pub snapshot_every: u64,
}

impl ClusterConfig {
    /// A configuration for `node_id` among `peers`, with the default
    /// timeouts and engine configuration.
    pub fn new(node_id: NodeId, peers: BTreeMap<NodeId, NodeAddr>, key: impl Into<String>) -> Self {
        Self {
            node_id,
            peers,
            key: key.into(),
            timeouts: Timeouts::default(),
            engine: graph_lifecycle::Config::default(),
            snapshot_every: 5_000,
        }
    }

    /// This node's address, as its peers list it.
    pub fn addr(&self) -> NodeAddr {
        self.peers.get(&self.node_id).cloned().unwrap_or_default()
    }

    /// The fingerprint of everything every node must share (the engine's
    /// caps, retention, timeouts and windows, and the cluster's
    /// timeouts), as 16 hex digits: a node whose fingerprint differs is
    /// refused, since it would apply the same log to a different state.
    pub fn fingerprint(&self) -> String {
        let e = &self.engine;
        let t = &self.timeouts;
        let canon = format!(
            "engine:{}/{}/{}/{:?}/{:?}/{}/{}/{}/{:?}/{}/{}/{};cluster:{:?}/{:?}/{:?}/{:?}/{:?}/{}",
            e.max_graphs,
            e.max_live_tasks_per_graph,
            e.max_retained_per_graph,
            e.retention_age,
            e.job_timeouts,
            e.max_payload_bytes,
            e.max_message_bytes,
            e.request_window,
            e.request_window_age,
            e.max_graphs_per_project,
            e.retained_payload_bytes,
            e.max_absent_windows,
            t.heartbeat,
            t.election_min,
            t.election_max,
            t.fence,
            t.drift,
            self.snapshot_every,
        );
        let a = crc32fast::hash(canon.as_bytes());
        let mut h = crc32fast::Hasher::new_with_initial(a);
        h.update(canon.as_bytes());
        format!("{a:08x}{:08x}", h.finalize())
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// A message naming what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.node_id == 0 {
            return Err("node ids start at 1".into());
        }
        if !self.peers.contains_key(&self.node_id) {
            return Err(format!("node {} is not among its peers", self.node_id));
        }
        if self.peers.contains_key(&0) {
            return Err("node ids start at 1".into());
        }
        if self.key.len() < 16 {
            return Err("the cluster key must be at least 16 bytes".into());
        }
        let t = &self.timeouts;
        if t.election_min <= t.heartbeat * 2 || t.election_max <= t.election_min {
            return Err(
                "the election timeouts must exceed twice the heartbeat, the longest the shortest"
                    .into(),
            );
        }
        if t.fence <= t.heartbeat * 4 {
            return Err("the fence timeout must exceed four heartbeats".into());
        }
        Ok(())
    }

    /// openraft's configuration for these timeouts.
    pub(crate) fn raft(&self) -> openraft::Config {
        let t = &self.timeouts;
        openraft::Config {
            cluster_name: "graph-lifecycle".into(),
            heartbeat_interval: t.heartbeat.as_millis() as u64,
            election_timeout_min: t.election_min.as_millis() as u64,
            election_timeout_max: t.election_max.as_millis() as u64,
            install_snapshot_timeout: (t.rpc * 10).as_millis() as u64,
            max_payload_entries: 64,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: 500,
            ..openraft::Config::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ClusterConfig {
        let peers = [(1, NodeAddr::new("127.0.0.1:1"))].into_iter().collect();
        ClusterConfig::new(1, peers, "0123456789abcdef")
    }

    #[test]
    fn a_fingerprint_changes_with_any_shared_setting_and_not_with_the_node() {
        let a = cfg();
        let mut b = a.clone();
        b.node_id = 2;
        b.peers.insert(2, NodeAddr::new("x"));
        assert_eq!(a.fingerprint(), b.fingerprint());
        let mut c = a.clone();
        c.engine.max_retained_per_graph += 1;
        assert_ne!(a.fingerprint(), c.fingerprint());
        let mut d = a.clone();
        d.timeouts.fence += Duration::from_millis(1);
        assert_ne!(a.fingerprint(), d.fingerprint());
        assert_eq!(a.fingerprint().len(), 16);
    }

    #[test]
    fn bad_configurations_are_refused() {
        assert!(cfg().validate().is_ok());
        let mut c = cfg();
        c.key = "short".into();
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.node_id = 3;
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.timeouts.election_max = c.timeouts.election_min;
        assert!(c.validate().is_err());
        assert!(cfg().raft().validate().is_ok());
    }
}
