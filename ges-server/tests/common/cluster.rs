//! Servers as the nodes of one replicated lifecycle on loopback
//! (`docs/CLUSTER.md`, "ges-server as a node").

use std::collections::BTreeMap;
use std::path::Path;

use ges_server::{Config, Server, ServerHandle};

/// A port nobody listens on now (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `n` servers with [`super::config`] as the nodes of one cluster, their
/// data under `dir`; node 1 bootstraps it. `tweak` changes a node's
/// configuration before it starts.
pub fn start(n: u64, dir: &Path, tweak: impl Fn(u64, &mut Config)) -> BTreeMap<u64, ServerHandle> {
    let key_file = dir.join("cluster.key");
    std::fs::write(&key_file, "a-cluster-key-for-the-tests-0123456789").unwrap();
    let peers: BTreeMap<String, String> = (1..=n)
        .map(|id| (id.to_string(), format!("127.0.0.1:{}", free_port())))
        .collect();
    (1..=n)
        .map(|id| {
            let mut cfg = super::config("");
            cfg.storage.in_memory = false;
            cfg.storage.dir = dir.join(format!("node{id}"));
            let c = &mut cfg.cluster;
            c.node_id = Some(id);
            c.peers = peers.clone();
            c.key_file = Some(key_file.clone());
            c.bootstrap = id == 1;
            tweak(id, &mut cfg);
            let server = Server::new(cfg)
                .bind()
                .expect("a cluster node")
                .spawn()
                .expect("spawn");
            (id, server)
        })
        .collect()
}

/// The leader every running node names, once they agree and each
/// dispatches (its "node up" entry has run recovery on what it owns, so
/// that it hands the jobs of its graphs to its workers).
pub fn agreed_leader(servers: &BTreeMap<u64, ServerHandle>) -> u64 {
    super::wait_long(60, || {
        let named: Vec<Option<u64>> = servers
            .values()
            .map(|s| {
                let n = s.cluster_node()?;
                n.status().dispatching.then(|| n.leader()).flatten()
            })
            .collect();
        let first = named.first().copied().flatten()?;
        named
            .iter()
            .all(|l| *l == Some(first))
            .then_some(first)
            .filter(|l| servers.contains_key(l))
    })
}
