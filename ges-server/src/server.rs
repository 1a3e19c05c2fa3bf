//! Binding, serving and shutting down.
//!
//! [`Server::bind`] binds the listening socket, builds the engine (or
//! takes the embedder's), and starts the simulated host and the deadline
//! pump. [`BoundServer::run`] then serves on the calling thread until a
//! shutdown signal; [`BoundServer::spawn`] serves on a thread of its own
//! and hands back a [`ServerHandle`].
//!
//! Shutdown is graceful, in this order:
//!
//! 1. the listener closes: no new connection is accepted;
//! 2. requests in flight finish and get their answers; idle keep-alive
//!    connections close (all within `shutdown_grace_ms`, after which the
//!    remaining connections are dropped);
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

use graph_lifecycle::{Clock, Engine, SystemClock};
use tokio::sync::oneshot;

use crate::api::{ApiState, Limits};
use crate::auth::Authenticator;
use crate::config::{Config, ConfigError};
use crate::sim::{DeadlinePump, SimHost, SimStopReport};

/// How often the deadline pump looks at the engine at the least.
const PUMP_MAX_WAIT: Duration = Duration::from_millis(500);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
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
        let listener = std::net::TcpListener::bind(addr).map_err(io("binding the address"))?;
        listener
            .set_nonblocking(true)
            .map_err(io("configuring the socket"))?;
        let local_addr = listener
            .local_addr()
            .map_err(io("reading the bound address"))?;
        let (engine, owned) = match self.engine {
            Some(engine) => (engine, None),
            None => {
                let (engine, jobs) = Engine::builder().config(cfg.engine_config()).build();
                (engine, Some(jobs))
            }
        };
        let sim = match owned {
            Some(jobs) if cfg.simulation.enabled => Some(
                SimHost::start(&engine, jobs, &cfg.simulation)
                    .map_err(io("starting the simulated host"))?,
            ),
            // With no simulation the receiver is dropped here, and
            // job-starting calls answer 503.
            _ => None,
        };
        let pump = if sim.is_some() {
            Some(DeadlinePump::start(&engine, PUMP_MAX_WAIT).map_err(io("starting the pump"))?)
        } else {
            None
        };
        let state = ApiState {
            engine: engine.clone(),
            auth: Authenticator::with_shared_clock(&cfg.auth, self.auth_clock),
            limits: Limits {
                max_body_bytes: cfg.server.max_body_bytes,
                body_timeout: Duration::from_millis(cfg.server.body_timeout_ms),
            },
        };
        Ok(BoundServer {
            listener,
            local_addr,
            engine,
            state,
            sim,
            pump,
            threads: cfg.server.threads,
            grace: Duration::from_millis(cfg.server.shutdown_grace_ms),
        })
    }
}

/// A bound server, ready to serve.
#[derive(Debug)]
pub struct BoundServer {
    listener: std::net::TcpListener,
    local_addr: SocketAddr,
    engine: Engine,
    state: ApiState,
    sim: Option<SimHost>,
    pump: Option<DeadlinePump>,
    threads: usize,
    grace: Duration,
}

/// What a shutdown did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Whether every connection closed within the grace period.
    pub connections_drained: bool,
    /// What the simulated host reported, if it ran.
    pub sim: Option<SimStopReport>,
}

impl BoundServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The engine behind the API.
    pub fn engine(&self) -> &Engine {
        &self.engine
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
            engine,
            state,
            sim,
            pump,
            grace,
            ..
        } = self;
        let owns_engine = sim.is_some();
        let connections_drained = runtime.block_on(serve(listener, state, shutdown, grace))?;
        // Connections still open past the grace are dropped with the
        // runtime.
        runtime.shutdown_timeout(Duration::from_millis(100));
        if owns_engine {
            engine.shutdown();
        }
        let sim = sim.map(|s| s.stop(grace));
        if let Some(p) = pump {
            p.stop();
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
        let engine = self.engine.clone();
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
            engine,
            stop: Some(tx),
            thread: Some(thread),
        })
    }
}

async fn serve(
    listener: std::net::TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> Result<bool, ServerError> {
    let listener =
        tokio::net::TcpListener::from_std(listener).map_err(io("registering the socket"))?;
    let app = crate::api::router(state);
    let (fired_tx, fired_rx) = oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = fired_tx.send(());
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(signal);
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        // The server ended on its own (it does not, short of the signal).
        _ = server.as_mut() => return Ok(true),
        _ = fired_rx => {}
    }
    Ok(tokio::time::timeout(grace, server).await.is_ok())
}

/// A server running on its own thread (from [`BoundServer::spawn`]).
/// Dropping the handle stops the server too.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    engine: Engine,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<ShutdownReport, ServerError>>>,
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The engine behind the API.
    pub fn engine(&self) -> &Engine {
        &self.engine
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
