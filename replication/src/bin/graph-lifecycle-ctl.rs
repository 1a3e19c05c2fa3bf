//! `graph-lifecycle-ctl`: a client of a replicated lifecycle, through any
//! node's node-to-node listener (with the cluster key): status, create,
//! start, force-restart, show a graph. Writes are forwarded to the leader
//! by the node asked. Run with `--help`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use graph_lifecycle::{Clock, Command, GraphKey, IdSource, Op, RequestId, SystemClock, UuidV7Ids};
use graph_lifecycle_raft::http::{HttpTransport, PeerTls};
use graph_lifecycle_raft::{
    Body, ClusterConfig, Consistency, NodeAddr, Proposal, Request, Transport,
};
use uuid::Uuid;

/// A client of a replicated lifecycle.
#[derive(Debug, Parser)]
#[command(name = "graph-lifecycle-ctl", version)]
struct Args {
    /// The node to ask: `HOST:PORT` of its node-to-node listener.
    #[arg(long)]
    node: String,
    /// A file holding the cluster key.
    #[arg(long, value_name = "PATH")]
    key_file: std::path::PathBuf,
    /// A client certificate, key and CA for a cluster on mutual TLS.
    #[arg(long, requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<std::path::PathBuf>,
    /// The client's key (PEM).
    #[arg(long)]
    tls_key: Option<std::path::PathBuf>,
    /// The cluster's CA (PEM).
    #[arg(long)]
    tls_ca: Option<std::path::PathBuf>,
    /// What to do.
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, Subcommand)]
enum What {
    /// What the node knows of the cluster.
    Status,
    /// Create a graph `PROJECT/GRAPH`.
    Create {
        /// `PROJECT/GRAPH`.
        graph: String,
    },
    /// Start a graph.
    Start {
        /// `PROJECT/GRAPH`.
        graph: String,
    },
    /// Force-restart a graph; prints the restart job and the new epoch.
    ForceRestart {
        /// `PROJECT/GRAPH`.
        graph: String,
    },
    /// A graph's state, epoch, owner and tasks (linearizable; `--stale`
    /// for this node's own state).
    Graph {
        /// `PROJECT/GRAPH`.
        graph: String,
        /// Read this node's state without asking the leader.
        #[arg(long)]
        stale: bool,
    },
}

fn key(s: &str) -> Result<GraphKey, String> {
    let (p, g) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: expected PROJECT/GRAPH"))?;
    GraphKey::parse(p, g).map_err(|e| e.to_string())
}

async fn run(args: Args) -> Result<String, String> {
    let secret = std::fs::read_to_string(&args.key_file)
        .map_err(|e| format!("cannot read {}: {e}", args.key_file.display()))?;
    // The fingerprint is the defaults' (the nodes run with defaults).
    let cfg = ClusterConfig::new(0, Default::default(), secret.trim());
    let tls = match (args.tls_cert, args.tls_key, args.tls_ca) {
        (Some(cert), Some(key), Some(ca)) => Some(
            PeerTls { cert, key, ca }
                .connector()
                .map_err(|e| e.to_string())?,
        ),
        _ => None,
    };
    let client = Arc::new(HttpTransport::new(&cfg, tls));
    let addr = NodeAddr::new(args.node);
    let call = |req: Request| {
        let client = client.clone();
        let addr = addr.clone();
        async move {
            client
                .call(0, &addr, req, Duration::from_secs(15))
                .await
                .map_err(|e| e.to_string())
        }
    };
    let write = |key: GraphKey, op: Op| {
        let id = Uuid::new_v4();
        let mut cmd = Command::new(key, SystemClock.now(), op);
        cmd.request = RequestId::new(&id.to_string()).ok();
        Request::Client(Proposal {
            id,
            body: Body::Core(cmd),
        })
    };
    let job = || UuidV7Ids.next_id(SystemClock.now());
    let reply = match args.what {
        What::Status => call(Request::Status).await?,
        What::Create { graph } => call(write(key(&graph)?, Op::Create)).await?,
        What::Start { graph } => {
            call(write(
                key(&graph)?,
                Op::Start {
                    job: job(),
                    payload: Default::default(),
                },
            ))
            .await?
        }
        What::ForceRestart { graph } => {
            call(write(key(&graph)?, Op::ForceRestart { job: job() })).await?
        }
        What::Graph { graph, stale } => {
            call(Request::Query {
                key: key(&graph)?,
                consistency: if stale {
                    Consistency::Stale
                } else {
                    Consistency::Linearizable
                },
            })
            .await?
        }
    };
    Ok(format!("{reply:#?}"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("graph-lifecycle-ctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("graph-lifecycle-ctl: {e}");
            ExitCode::FAILURE
        }
    }
}
