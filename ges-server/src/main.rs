//! `ges-server`: the GES management API over the lifecycle core, with a
//! simulated engine host. Run with `--help` for the options.

use std::process::ExitCode;

use clap::Parser;
use ges_server::config::{JobTiming, KINDS, TokenEntry};
use ges_server::{Config, Server, shutdown_signal};
use graph_lifecycle::LifecycleKind;

/// Serves the Graph Engine Service management API (v2) over the
/// graph-lifecycle core, with a simulated engine host by default.
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

    /// Number of simulated worker threads.
    #[arg(long, value_name = "N")]
    workers: Option<usize>,

    /// Run no simulated host: job-starting calls then answer 503.
    #[arg(long)]
    no_simulation: bool,

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
    if let Some(n) = args.workers {
        cfg.simulation.workers = n;
    }
    if args.no_simulation {
        cfg.simulation.enabled = false;
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

fn main() -> ExitCode {
    let cfg = match configure(Args::parse()) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("ges-server: {e}");
            return ExitCode::from(2);
        }
    };
    if cfg.auth.tokens.is_empty() && cfg.auth.access_keys.is_empty() {
        eprintln!("ges-server: warning: no credentials are configured; every request will get 401");
    }
    let sim = if cfg.simulation.enabled {
        format!("simulated host with {} workers", cfg.simulation.workers)
    } else {
        "no simulated host".to_owned()
    };
    let server = match Server::new(cfg).bind() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ges-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "ges-server: listening on http://{} ({sim}); Ctrl-C stops it",
        server.local_addr()
    );
    match server.run(shutdown_signal()) {
        Ok(report) => {
            eprintln!(
                "ges-server: stopped (connections drained: {}, jobs drained: {})",
                report.connections_drained,
                report.sim.is_none_or(|s| s.drained)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ges-server: {e}");
            ExitCode::FAILURE
        }
    }
}
