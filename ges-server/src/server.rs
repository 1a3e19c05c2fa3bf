//! Binding, serving and shutting down.
//!
//! [`Server::bind`] binds the listening socket, builds the engine (or
//! takes the embedder's), and starts the job host (the real engine's
//! workers, [`crate::host`], or the simulated ones) and the deadline pump. [`BoundServer::run`] then serves on the calling thread until a
//! shutdown signal; [`BoundServer::spawn`] serves on a thread of its own
//! and hands back a [`ServerHandle`].
//!
//! The engine is durable by default: its commands are journaled in
//! `[storage] dir` (`--data-dir`), and opening the journal recovers what a
//! crash left (jobs that were running fail as interrupted, their graphs go
//! Abnormal). `[storage] in_memory` (`--in-memory`) keeps nothing.
//!
//! Shutdown is graceful, in this order:
//!
//! 1. the listener closes: no new connection is accepted, and those
//!    already waiting in its backlog are answered 503 (see
//!    [`conn`](crate::conn));
//! 2. requests in flight finish and get their answers; idle keep-alive
//!    connections and connections stalled in a request head close at
//!    once (all within `shutdown_grace_ms`, after which the remaining
//!    connections are dropped);
//! 3. the engine is shut down for new jobs ([`Engine::shutdown`]);
//! 4. the simulated workers finish the jobs already handed to them
//!    (within the same grace; past it, what is left is reported failed)
//!    and are joined; the deadline pump stops.
//!
//! Every request that got an answer had its effect committed in the
//! engine, and every job it started was handed to a worker.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::AtomicBool;

use graph_lifecycle::{Clock, Engine, SystemClock};
use tokio::sync::oneshot;

use crate::api::{ApiState, Limits};
use crate::auth::Authenticator;
use crate::config::{Config, ConfigError};
use crate::conn::ConnLimits;
use crate::host::StoreHost;
use crate::metrics::Metrics;
use crate::sim::{DeadlinePump, SimHost, SimStopReport};

/// How often the deadline pump looks at the engine at the least.
const PUMP_MAX_WAIT: Duration = Duration::from_millis(500);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The journal could not be opened (corrupt, unreadable, or written
    /// with another configuration): `docs/JOURNAL.md` says what an
    /// operator does.
    #[error("the journal cannot be opened: {0}")]
    Journal(#[from] graph_lifecycle_journal::JournalError),
    /// The TLS certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// The cluster node could not start: its `[cluster]` section, key
    /// file, log, snapshot or listener (`docs/CLUSTER.md`).
    #[error("cluster node: {0}")]
    Cluster(String),
    /// Binding the socket, building the runtime or starting a thread
    /// failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> ServerError {
    move |source| ServerError::Io { what, source }
}

/// Builds a server from a [`Config`].
///
/// ```no_run
/// let cfg = ges_server::Config::load("ges-server/example-config.toml")?;
/// let server = ges_server::Server::new(cfg).bind()?;
/// println!("listening on {}", server.local_addr());
/// server.run(ges_server::shutdown_signal())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Server {
    config: Config,
    engine: Option<Engine>,
    auth_clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server for this configuration: its own engine, built from
    /// `[engine]`, and the simulated host if `[simulation]` enables it.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            engine: None,
            auth_clock: Arc::new(SystemClock),
        }
    }

    /// Serves the embedder's engine instead: the embedder's workers run
    /// its jobs, so no simulated host starts, and the engine is not shut
    /// down when the server stops.
    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine = Some(engine);
        self
    }

    /// The clock that signed requests' `X-Sdk-Date` is checked against
    /// (default: the system clock).
    pub fn auth_clock(mut self, clock: impl Clock) -> Self {
        self.auth_clock = Arc::new(clock);
        self
    }

    /// Binds the socket and starts the host threads.
    ///
    /// # Errors
    ///
    /// [`ServerError::Config`] for an invalid configuration,
    /// [`ServerError::Io`] if the address cannot be bound or a thread
    /// cannot start.
    pub fn bind(self) -> Result<BoundServer, ServerError> {
        let cfg = self.config;
        cfg.validate()?;
        let addr = cfg.listen_addr()?;
        let listener = bind_std(addr)?;
        let local_addr = listener
            .local_addr()
            .map_err(io("reading the bound address"))?;
        let metrics_listener = match &cfg.metrics.listen {
            Some(m) => {
                let addr = m
                    .parse()
                    .map_err(|_| ConfigError::Invalid(format!("metrics.listen = {m:?}")))?;
                Some(bind_std(addr)?)
            }
            None => None,
        };
        let tls = match &cfg.server.tls {
            Some(t) => Some(crate::tls::acceptor(t)?),
            None => None,
        };
        let cluster = if cfg.cluster.enabled() {
            if self.engine.is_some() {
                return Err(ServerError::Cluster(
                    "a cluster node's engine is the replicated one: an embedder's engine cannot be served with cluster.node_id".into(),
                ));
            }
            Some(crate::cluster::ClusterMember::start(&cfg)?)
        } else {
            None
        };
        let (engine, owned, journal) = match (self.engine, &cluster) {
            (Some(engine), _) => (engine, None, None),
            // A cluster node serves the replicated engine; its own workers
            // run the jobs of the graphs it owns.
            (None, Some(c)) => (c.api().node().machine().engine().clone(), None, None),
            (None, None) if cfg.storage.in_memory => {
                tracing::warn!(
                    "storage is in memory: every graph and job is lost when the process ends"
                );
                let (engine, jobs) = Engine::builder().config(cfg.engine_config()).build();
                (engine, Some(jobs), None)
            }
            (None, None) => {
                let dir = &cfg.storage.dir;
                let storage = graph_lifecycle_journal::FileStorage::open(dir)?;
                let options =
                    graph_lifecycle_journal::JournalOptions::new(cfg.storage.durability()?);
                let d = graph_lifecycle_journal::open(
                    Engine::builder().config(cfg.engine_config()),
                    storage,
                    options,
                )?;
                let r = &d.report;
                tracing::info!(
                    dir = %dir.display(),
                    replayed = r.replayed,
                    snapshot = ?r.snapshot,
                    graphs = d.engine.graph_count(),
                    interrupted = r.interrupted,
                    abnormal = r.abnormal.len(),
                    torn_tail = r.torn_tail.is_some(),
                    "journal opened"
                );
                (d.engine, Some(d.jobs), Some(d.journal))
            }
        };
        let (sim, store) = match owned {
            Some(jobs) if cfg.simulation.enabled => (
                Some(
                    SimHost::start(&engine, jobs, &cfg.simulation)
                        .map_err(io("starting the simulated host"))?,
                ),
                None,
            ),
            Some(jobs) if cfg.store.enabled => {
                let (host, r) = StoreHost::start(&engine, jobs, &cfg)
                    .map_err(io("starting the engine host"))?;
                tracing::info!(
                    loaded = r.loaded,
                    failed = r.failed,
                    settled = r.settled,
                    orphans = r.orphans,
                    "graph store opened"
                );
                (None, Some(host))
            }
            // With no host the receiver is dropped here, and job-starting
            // calls answer 503.
            _ => (None, None),
        };
        let pump = if sim.is_some() || store.is_some() {
            Some(DeadlinePump::start(&engine, PUMP_MAX_WAIT).map_err(io("starting the pump"))?)
        } else {
            None
        };
        let metrics = metrics_listener.as_ref().map(|_| Metrics::new());
        let metrics_stop = Arc::new(AtomicBool::new(false));
        let metrics_thread = match &metrics {
            Some(m) => Some(
                m.watch(&engine, metrics_stop.clone())
                    .map_err(io("starting the metrics thread"))?,
            ),
            None => None,
        };
        let mut state = ApiState::new(
            engine.clone(),
            Authenticator::with_shared_clock(&cfg.auth, self.auth_clock),
            Limits {
                max_body_bytes: cfg.server.max_body_bytes,
                body_timeout: Duration::from_millis(cfg.server.body_timeout_ms),
                max_unverified_body_bytes: cfg.server.max_unverified_body_bytes,
            },
        );
        state.max_live_jobs_per_project = cfg.engine.max_live_jobs_per_project;
        state.metrics = metrics.clone();
        state.store = store.as_ref().map(|h| h.inner().clone());
        state.cluster = cluster.as_ref().map(|c| c.api().clone());
        Ok(BoundServer {
            cluster,
            listener,
            metrics_listener,
            local_addr,
            engine,
            state,
            tls,
            limits: ConnLimits {
                header_timeout: Duration::from_millis(cfg.server.header_timeout_ms),
                max_head_bytes: cfg.server.max_head_bytes,
                max_connections: cfg.server.max_connections,
            },
            sim,
            store,
            pump,
            journal,
            metrics,
            metrics_stop,
            metrics_thread,
            threads: cfg.server.threads,
            grace: Duration::from_millis(cfg.server.shutdown_grace_ms),
        })
    }
}

/// A listening, non-blocking socket on `addr`.
fn bind_std(addr: SocketAddr) -> Result<std::net::TcpListener, ServerError> {
    let listener = std::net::TcpListener::bind(addr).map_err(io("binding the address"))?;
    listener
        .set_nonblocking(true)
        .map_err(io("configuring the socket"))?;
    Ok(listener)
}

/// A bound server, ready to serve.
pub struct BoundServer {
    listener: std::net::TcpListener,
    metrics_listener: Option<std::net::TcpListener>,
    local_addr: SocketAddr,
    engine: Engine,
    state: ApiState,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: ConnLimits,
    sim: Option<SimHost>,
    store: Option<StoreHost>,
    pump: Option<DeadlinePump>,
    journal: Option<graph_lifecycle_journal::Journal>,
    cluster: Option<crate::cluster::ClusterMember>,
    metrics: Option<Arc<Metrics>>,
    metrics_stop: Arc<AtomicBool>,
    metrics_thread: Option<std::thread::JoinHandle<()>>,
    threads: usize,
    grace: Duration,
}

impl std::fmt::Debug for BoundServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundServer")
            .field("local_addr", &self.local_addr)
            .field("tls", &self.tls.is_some())
            .field("limits", &self.limits)
            .field("journal", &self.journal)
            .finish_non_exhaustive()
    }
}

/// What a shutdown did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Whether every connection closed within the grace period.
    pub connections_drained: bool,
    /// What the job host (the real engine's or the simulated one)
    /// reported, if one ran.
    pub sim: Option<SimStopReport>,
}

impl BoundServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the metrics listener, if there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The engine behind the API.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The cluster node this server runs as, if it is one.
    pub fn cluster_node(&self) -> Option<&graph_lifecycle_raft::Node> {
        self.cluster.as_ref().map(|c| c.api().node())
    }

    /// Serves on this thread until `shutdown` completes, then shuts down
    /// gracefully (see the [module docs](self)).
    ///
    /// # Errors
    ///
    /// [`ServerError::Io`] if the runtime cannot be built.
    pub fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<ShutdownReport, ServerError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.threads)
            .thread_name("ges-http")
            .enable_all()
            .build()
            .map_err(io("building the runtime"))?;
        let BoundServer {
            listener,
            metrics_listener,
            engine,
            state,
            tls,
            limits,
            sim,
            store,
            pump,
            journal,
            cluster,
            metrics,
            metrics_stop,
            metrics_thread,
            grace,
            ..
        } = self;
        let owns_engine = sim.is_some() || store.is_some();
        let api_engine = engine.clone();
        let connections_drained = runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)
                .map_err(io("registering the socket"))?;
            let (stop_metrics, metrics_stopped) = oneshot::channel::<()>();
            let metrics_task = match (metrics_listener, metrics) {
                (Some(l), Some(m)) => {
                    let l = tokio::net::TcpListener::from_std(l)
                        .map_err(io("registering the metrics socket"))?;
                    let app = crate::api::metrics_router(api_engine, m);
                    Some(tokio::spawn(crate::conn::serve(
                        l,
                        app,
                        None,
                        limits,
                        async move {
                            let _ = metrics_stopped.await;
                        },
                        Duration::from_millis(100),
                    )))
                }
                _ => None,
            };
            // Event streams end when shutdown begins, so the drain does
            // not wait for them.
            let events = state.events.clone();
            let shutdown = async move {
                shutdown.await;
                events.close();
            };
            let app = crate::api::service(state);
            let drained = crate::conn::serve(listener, app, tls, limits, shutdown, grace).await;
            let _ = stop_metrics.send(());
            if let Some(t) = metrics_task {
                let _ = t.await;
            }
            Ok::<_, ServerError>(drained)
        })?;
        // Connections still open past the grace are dropped with the
        // runtime.
        runtime.shutdown_timeout(Duration::from_millis(100));
        if owns_engine {
            engine.shutdown();
        }
        let sim = sim
            .map(|s| s.stop(grace))
            .or_else(|| store.map(|h| h.stop(grace)));
        if let Some(p) = pump {
            p.stop();
        }
        if let Some(c) = cluster {
            c.stop();
        }
        metrics_stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(t) = metrics_thread {
            let _ = t.join();
        }
        if let Some(j) = journal
            && let Err(e) = j.sync()
        {
            tracing::error!(error = %e, "the journal could not be synced at shutdown");
        }
        Ok(ShutdownReport {
            connections_drained,
            sim,
        })
    }

    /// Serves on a thread of its own; the handle stops it.
    ///
    /// # Errors
    ///
    /// [`ServerError::Io`] if the thread cannot start.
    pub fn spawn(self) -> Result<ServerHandle, ServerError> {
        let (tx, rx) = oneshot::channel::<()>();
        let addr = self.local_addr;
        let metrics_addr = self.metrics_addr();
        let engine = self.engine.clone();
        let cluster = self.cluster_node().cloned();
        let thread = std::thread::Builder::new()
            .name("ges-server".to_owned())
            .spawn(move || {
                self.run(async move {
                    let _ = rx.await;
                })
            })
            .map_err(io("starting the server thread"))?;
        Ok(ServerHandle {
            addr,
            metrics_addr,
            engine,
            cluster,
            stop: Some(tx),
            thread: Some(thread),
        })
    }
}

/// A server running on its own thread (from [`BoundServer::spawn`]).
/// Dropping the handle stops the server too.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    engine: Engine,
    cluster: Option<graph_lifecycle_raft::Node>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<ShutdownReport, ServerError>>>,
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the metrics listener, if there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The engine behind the API.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The cluster node this server runs as, if it is one.
    pub fn cluster_node(&self) -> Option<&graph_lifecycle_raft::Node> {
        self.cluster.as_ref()
    }

    /// Asks the server to shut down gracefully, without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Shuts the server down gracefully and waits until it has.
    ///
    /// # Errors
    ///
    /// [`ServerError::Io`] as [`BoundServer::run`]; a panic of the server
    /// thread is reported as one too.
    pub fn shutdown(mut self) -> Result<ShutdownReport, ServerError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<ShutdownReport, ServerError> {
        self.begin_shutdown();
        match self.thread.take() {
            None => Ok(ShutdownReport::default()),
            Some(t) => t.join().unwrap_or_else(|_| {
                Err(ServerError::Io {
                    what: "serving",
                    source: std::io::Error::other("the server thread panicked"),
                })
            }),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
