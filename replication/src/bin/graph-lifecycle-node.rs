//! `graph-lifecycle-node`: one node of a replicated lifecycle, with the
//! node-to-node listener and simulated workers; the processes of the
//! crate's tests and benchmarks. `ges-server` runs a node with the GES API
//! in front (`docs/CLUSTER.md`). Run with `--help` for the options.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use graph_lifecycle_raft::http::{self, HttpTransport, Listener, PeerTls, RpcLimits};
use graph_lifecycle_raft::{ClusterConfig, Disk, Env, Node, NodeAddr, NodeId};

/// One node of a replicated lifecycle.
#[derive(Debug, Parser)]
#[command(name = "graph-lifecycle-node", version)]
struct Args {
    /// This node's id (1 or more).
    #[arg(long)]
    id: NodeId,
    /// A node of the cluster, this one included: `ID=HOST:PORT` of its
    /// node-to-node listener. Repeat for each.
    #[arg(long = "peer", value_name = "ID=HOST:PORT", required = true)]
    peers: Vec<String>,
    /// The data directory (the log and the snapshot).
    #[arg(long, value_name = "DIR")]
    data: std::path::PathBuf,
    /// A file holding the cluster key (at least 16 bytes; the same on
    /// every node).
    #[arg(long, value_name = "PATH")]
    key_file: std::path::PathBuf,
    /// Initialize the cluster with every peer as a voter (once, on one
    /// node).
    #[arg(long)]
    bootstrap: bool,
    /// Simulated workers.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// How long a simulated job runs, in milliseconds.
    #[arg(long, default_value_t = 300)]
    job_ms: u64,
    /// This node's certificate (PEM): with `--tls-key` and `--tls-ca`,
    /// node-to-node calls use mutual TLS.
    #[arg(long, requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<std::path::PathBuf>,
    /// This node's private key (PEM).
    #[arg(long)]
    tls_key: Option<std::path::PathBuf>,
    /// The CA that signs every node's certificate (PEM).
    #[arg(long)]
    tls_ca: Option<std::path::PathBuf>,
}

fn configure(args: &Args) -> Result<ClusterConfig, String> {
    let mut peers = BTreeMap::new();
    for p in &args.peers {
        let (id, addr) = p
            .split_once('=')
            .ok_or_else(|| format!("--peer {p:?}: expected ID=HOST:PORT"))?;
        let id: NodeId = id
            .parse()
            .map_err(|_| format!("--peer {p:?}: {id:?} is not a node id"))?;
        peers.insert(id, NodeAddr::new(addr));
    }
    let key = std::fs::read_to_string(&args.key_file)
        .map_err(|e| format!("cannot read {}: {e}", args.key_file.display()))?;
    let cfg = ClusterConfig::new(args.id, peers, key.trim());
    cfg.validate()?;
    Ok(cfg)
}

async fn run(args: Args) -> Result<(), String> {
    let cfg = configure(&args)?;
    let tls = match (&args.tls_cert, &args.tls_key, &args.tls_ca) {
        (Some(cert), Some(key), Some(ca)) => Some(PeerTls {
            cert: cert.clone(),
            key: key.clone(),
            ca: ca.clone(),
        }),
        _ => None,
    };
    let connector = tls
        .as_ref()
        .map(PeerTls::connector)
        .transpose()
        .map_err(|e| e.to_string())?;
    let acceptor = tls
        .as_ref()
        .map(PeerTls::acceptor)
        .transpose()
        .map_err(|e| e.to_string())?;
    let transport = Arc::new(HttpTransport::new(&cfg, connector));
    let disk = Disk::open(&args.data).map_err(|e| format!("{}: {e}", args.data.display()))?;
    let listen_on = cfg.addr().rpc;
    let (node, jobs, report) = Node::start(cfg, disk, Arc::new(transport), Env::default())
        .await
        .map_err(|e| e.to_string())?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let addr = http::listen(
        &listen_on,
        Listener::new(node.clone(), acceptor, RpcLimits::default()),
        async move {
            let _ = stop_rx.await;
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    if args.bootstrap {
        node.bootstrap().await.map_err(|e| e.to_string())?;
    }
    let _workers = graph_lifecycle_raft::workers::spawn(
        &node,
        &jobs,
        args.workers,
        Duration::from_millis(args.job_ms),
        tokio::runtime::Handle::current(),
    );
    println!(
        "node {} listening on {addr} (log: {} entries, torn tail: {:?})",
        node.id(),
        report.log.entries,
        report.log.torn_tail
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let _ = stop_tx.send(());
    node.shutdown().await;
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("graph-lifecycle-node: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("graph-lifecycle-node: {e}");
            ExitCode::FAILURE
        }
    }
}
