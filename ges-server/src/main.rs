//! `ges-server`: the GES management and service APIs over the lifecycle
//! core, with a real graph engine (or a simulated host). Run with `--help`
//! for the options.

use std::process::ExitCode;

use clap::Parser;
use ges_server::config::{JobTiming, KINDS, TokenEntry};
use ges_server::{Config, Server, shutdown_signal};
use graph_lifecycle::LifecycleKind;

/// Serves the Graph Engine Service management API (v2) and service plane
/// over the graph-lifecycle core, with a real graph engine by default.
#[derive(Debug, Parser)]
#[command(name = "ges-server", version)]
struct Args {
    /// The TOML configuration file (default: built-in defaults, no
    /// credentials).
    #[arg(short, long, value_name = "PATH")]
    config: Option<std::path::PathBuf>,

    /// Listen on this address instead of the configured one.
    #[arg(long, value_name = "IP:PORT")]
    listen: Option<String>,

    /// Number of worker threads running lifecycle jobs.
    #[arg(long, value_name = "N")]
    workers: Option<usize>,

    /// Run the simulated host instead of the real engine: jobs sleep and
    /// report progress, no data is kept (for demos of long jobs).
    #[arg(long, conflicts_with = "no_simulation")]
    simulate: bool,

    /// Run the real engine even if the configuration enables the
    /// simulation.
    #[arg(long)]
    no_simulation: bool,

    /// Imports read under this directory (`obs://bucket/key` is
    /// `DIR/bucket/key`) instead of the configured one.
    #[arg(long, value_name = "DIR")]
    import_root: Option<std::path::PathBuf>,

    /// Exports write under this directory instead of the configured one.
    #[arg(long, value_name = "DIR")]
    export_root: Option<std::path::PathBuf>,

    /// How long a simulated job of a kind runs, e.g. `import=30000`
    /// (kinds: start, stop, restart, import, export, clear). Repeatable.
    #[arg(long, value_name = "KIND=MS")]
    job_duration: Vec<String>,

    /// In how many progress steps a simulated job of a kind runs, e.g.
    /// `import=20`. Repeatable.
    #[arg(long, value_name = "KIND=N")]
    job_steps: Vec<String>,

    /// Add a bearer token for some projects, e.g.
    /// `my-token=demo,staging`. Repeatable.
    #[arg(long, value_name = "TOKEN=PROJECTS")]
    token: Vec<String>,

    /// Keep the journal (graphs, jobs, epochs) in this directory instead of
    /// the configured one (default `ges-server-data`).
    #[arg(long, value_name = "DIR", conflicts_with = "in_memory")]
    data_dir: Option<std::path::PathBuf>,

    /// Keep nothing on disk: every graph and job is lost when the process
    /// ends. For tests and demos.
    #[arg(long)]
    in_memory: bool,
    /// Run as this node of a replicated lifecycle (`docs/CLUSTER.md`);
    /// its log is kept under the data directory.
    #[arg(long, value_name = "ID")]
    node_id: Option<u64>,
    /// A node of the cluster, this one included: `ID=HOST:PORT` of its
    /// node-to-node listener. Repeat for each (replaces the configured
    /// peers).
    #[arg(long = "peer", value_name = "ID=HOST:PORT")]
    peers: Vec<String>,
    /// The file holding the cluster key (the same on every node).
    #[arg(long, value_name = "PATH")]
    cluster_key_file: Option<std::path::PathBuf>,
    /// Initialize the cluster with every peer as a voter (once, on one
    /// node).
    #[arg(long)]
    bootstrap: bool,
}

fn kind_value<T: std::str::FromStr>(flag: &str, arg: &str) -> Result<(LifecycleKind, T), String> {
    let bad = || {
        format!(
            "--{flag} {arg:?}: expected KIND=NUMBER with KIND one of start, stop, restart, import, export, clear"
        )
    };
    let (kind, value) = arg.split_once('=').ok_or_else(bad)?;
    let kind = KINDS
        .into_iter()
        .find(|k| k.name() == kind)
        .ok_or_else(bad)?;
    Ok((kind, value.parse().map_err(|_| bad())?))
}

fn configure(args: Args) -> Result<Config, String> {
    let mut cfg = match &args.config {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    if let Some(listen) = args.listen {
        cfg.server.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        cfg.storage.dir = dir;
        cfg.storage.in_memory = false;
    }
    if args.in_memory {
        cfg.storage.in_memory = true;
    }
    if let Some(n) = args.workers {
        cfg.simulation.workers = n;
        cfg.store.workers = n;
    }
    if args.simulate {
        cfg.simulation.enabled = true;
    }
    if args.no_simulation {
        cfg.simulation.enabled = false;
    }
    if let Some(dir) = args.import_root {
        cfg.store.import_root = dir;
    }
    if let Some(dir) = args.export_root {
        cfg.store.export_root = dir;
    }
    for arg in &args.job_duration {
        let (kind, ms) = kind_value::<u64>("job-duration", arg)?;
        let t = cfg.simulation.timing(kind);
        cfg.simulation.set_timing(kind, JobTiming::new(ms, t.steps));
    }
    for arg in &args.job_steps {
        let (kind, steps) = kind_value::<u32>("job-steps", arg)?;
        let t = cfg.simulation.timing(kind);
        cfg.simulation
            .set_timing(kind, JobTiming::new(t.duration_ms, steps));
    }
    if let Some(id) = args.node_id {
        cfg.cluster.node_id = Some(id);
    }
    if !args.peers.is_empty() {
        cfg.cluster.peers.clear();
        for p in &args.peers {
            let (id, addr) = p
                .split_once('=')
                .filter(|(id, _)| id.parse::<u64>().is_ok())
                .ok_or_else(|| format!("--peer {p:?}: expected ID=HOST:PORT"))?;
            cfg.cluster.peers.insert(id.to_owned(), addr.to_owned());
        }
    }
    if let Some(path) = args.cluster_key_file {
        cfg.cluster.key_file = Some(path);
    }
    if args.bootstrap {
        cfg.cluster.bootstrap = true;
    }
    for arg in &args.token {
        // Projects hold no '=', tokens may.
        let (token, projects) = arg
            .rsplit_once('=')
            .ok_or_else(|| format!("--token: expected TOKEN=PROJECT[,PROJECT...], got {arg:?}"))?;
        cfg.auth.tokens.push(TokenEntry {
            token: token.to_owned(),
            projects: projects.split(',').map(str::to_owned).collect(),
        });
    }
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

/// Logs to standard error: text or JSON lines, at the configured level
/// unless `RUST_LOG` says otherwise.
fn init_logging(cfg: &Config) {
    // openraft reports every vote and heartbeat at `info`: a cluster
    // node's log keeps its warnings unless the level names it.
    let level = if cfg.log.level.contains("openraft") {
        cfg.log.level.clone()
    } else {
        format!("{},openraft=warn", cfg.log.level)
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if cfg.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cfg = match configure(Args::parse()) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("ges-server: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&cfg);
    if cfg.auth.tokens.is_empty() && cfg.auth.access_keys.is_empty() {
        tracing::warn!("no credentials are configured; every request will get 401");
    }
    let scheme = if cfg.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let storage = if let Some(id) = cfg.cluster.node_id {
        format!(
            "cluster node {id}, its log in {}",
            cfg.storage.dir.join("cluster").display()
        )
    } else if cfg.storage.in_memory {
        "in memory".to_owned()
    } else {
        format!("journal in {}", cfg.storage.dir.display())
    };
    let sim = if cfg.simulation.enabled || cfg.cluster.enabled() {
        format!("simulated host with {} workers", cfg.simulation.workers)
    } else if cfg.store.enabled {
        format!(
            "graph engine with {} workers, imports from {}",
            cfg.store.workers,
            cfg.store.import_root.display()
        )
    } else {
        "no job host".to_owned()
    };
    let server = match Server::new(cfg).bind() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ges-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        "listening on {scheme}://{} ({sim}, {storage}{}); Ctrl-C stops it",
        server.local_addr(),
        server
            .metrics_addr()
            .map(|a| format!(", metrics on http://{a}/metrics"))
            .unwrap_or_default()
    );
    match server.run(shutdown_signal()) {
        Ok(report) => {
            tracing::info!(
                connections_drained = report.connections_drained,
                jobs_drained = report.sim.is_none_or(|s| s.drained),
                "stopped"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ges-server: {e}");
            ExitCode::FAILURE
        }
    }
}
