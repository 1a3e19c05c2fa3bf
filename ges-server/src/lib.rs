//! A REST front end that speaks the Graph Engine Service (GES)
//! management API over the [`graph_lifecycle`] core, so that existing GES
//! clients, the official SDKs with their AK/SK signing included, can drive
//! graphs through their lifecycle: create, start, import, export, clear,
//! stop, the forced restart, and the task center.
//!
//! The crate is a thin layer, as `quinn` is over `quinn-proto`: it maps
//! requests onto [`Engine`](graph_lifecycle::Engine) calls and the
//! answers onto GES's JSON, and decides nothing about a graph's
//! lifecycle. The engine's calls are synchronous and never block, so the
//! handlers make them directly on the async runtime.
//!
//! # Modules
//!
//! - [`api`]: the routes and their handlers, one engine call each.
//! - [`wire`]: the JSON shapes and the code tables (graph status codes,
//!   job statuses and types, times).
//! - [`error`]: the GES error body and the code of each core error.
//! - [`auth`]: `X-Auth-Token` tokens and `SDK-HMAC-SHA256` signatures.
//! - [`conn`]: the connection layer below the routes: TLS, timeouts and
//!   limits per connection, the HTTP layer's own refusals in GES's format,
//!   the drain at shutdown.
//! - [`gate`]: what every request passes before its handler: credential,
//!   bounded body, signature, project scope.
//! - [`metrics`]: Prometheus metrics.
//! - [`events`]: the event stream, `GET /v2/{project_id}/events`.
//! - [`console`]: the web console, `/console/`.
//! - [`config`]: the TOML configuration file.
//! - [`host`]: the real engine host: workers that import, export, clear,
//!   load and unload graph data (`graph-lifecycle-store`), and run
//!   algorithms.
//! - [`service`]: the GES service plane: vertex queries and algorithms.
//! - [`sim`]: the simulated engine host (`--simulate`) and the deadline
//!   pump.
//! - [`server`]: binding, serving and graceful shutdown.
//!
//! # Serving
//!
//! ```no_run
//! use ges_server::{Config, Server, shutdown_signal};
//!
//! let config = Config::load("ges-server/example-config.toml")?;
//! let server = Server::new(config).bind()?;
//! eprintln!("listening on http://{}", server.local_addr());
//! server.run(shutdown_signal())?; // until SIGINT or SIGTERM
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! An engine that embeds the core passes its own engine and runs its own
//! workers instead of the simulated ones:
//!
//! ```no_run
//! use ges_server::{Config, Server, shutdown_signal};
//! use graph_lifecycle::Engine;
//!
//! let config = Config::load("ges-server/example-config.toml")?;
//! let (engine, jobs) = Engine::builder().config(config.engine_config()).build();
//! // ... start worker threads on `jobs` ...
//! # drop(jobs);
//! Server::new(config).engine(engine).bind()?.run(shutdown_signal())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod auth;
pub mod backup;
pub mod catalog;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod console;
pub mod error;
pub mod events;
pub mod gate;
pub mod host;
pub mod metrics;
pub mod server;
pub mod service;
pub mod sim;
mod tls;
pub mod wire;

pub use api::{ApiState, Limits, router};
pub use auth::{AuthError, Authenticator, Principal};
pub use config::{Config, ConfigError};
pub use error::ApiError;
pub use host::StoreHost;
pub use server::{BoundServer, Server, ServerError, ServerHandle, ShutdownReport, shutdown_signal};
pub use sim::{DeadlinePump, SimHost};
