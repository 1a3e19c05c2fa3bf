//! The configuration file (TOML): where to listen, the credentials and
//! the projects they cover, the engine's limits, and the simulated host.
//!
//! Every section and field is optional except the credentials a client
//! needs; unknown fields are refused, so a typo is an error rather than a
//! silently ignored setting. `example-config.toml` beside the crate shows
//! every field.
//!
//! ```
//! let cfg = ges_server::Config::from_toml_str(r#"
//!     [[auth.tokens]]
//!     token = "demo-token"
//!     projects = ["demo"]
//!
//!     [simulation.import]
//!     duration_ms = 4000
//!     steps = 8
//! "#).unwrap();
//! assert_eq!(cfg.simulation.import.steps, 8);
//! assert_eq!(cfg.auth.max_clock_skew_secs, 900);
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use graph_lifecycle::{LifecycleKind, ProjectId};
use serde::Deserialize;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not valid TOML for this configuration.
    #[error("invalid configuration: {0}")]
    Parse(String),
    /// A value is out of range or malformed.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The HTTP side.
    pub server: ServerConfig,
    /// Credentials.
    pub auth: AuthConfig,
    /// The core's limits.
    pub engine: EngineConfig,
    /// The simulated engine host (off by default).
    pub simulation: SimulationConfig,
    /// The real engine: graph data, import and export roots, caps.
    pub store: StoreConfig,
    /// Where the engine keeps its journal.
    pub storage: StorageConfig,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// Logging.
    pub log: LogConfig,
    /// This server as a node of a replicated lifecycle (off unless
    /// `node_id` is set).
    pub cluster: ClusterSection,
}

/// `[cluster]`: the server runs as a node of a replicated lifecycle
/// ([`crate::cluster`], `docs/CLUSTER.md`): its graphs and jobs are on
/// every node, and the node's simulated workers run the jobs of the
/// graphs it owns. The node's log and snapshot are kept in
/// `<storage.dir>/cluster`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSection {
    /// This node's id (1 or more; never reused for a node whose disk was
    /// lost). Unset: not a cluster node.
    pub node_id: Option<u64>,
    /// Every node of the cluster, this one included: node id (as a
    /// string, TOML keys are) to the `host:port` of its node-to-node
    /// listener, e.g. `peers = { 1 = "10.0.0.1:7001", 2 = "10.0.0.2:7001" }`.
    pub peers: std::collections::BTreeMap<String, String>,
    /// A file holding the cluster key: at least 16 bytes, the same on every
    /// node; a node presenting another key is refused.
    pub key_file: Option<std::path::PathBuf>,
    /// Initialize the cluster with every peer as a voter: once, on one
    /// node, the first time (a node already initialized ignores it).
    pub bootstrap: bool,
    /// Mutual TLS between the nodes (between machines).
    pub tls: Option<ClusterTlsConfig>,
}

impl ClusterSection {
    /// Whether the server runs as a cluster node.
    pub fn enabled(&self) -> bool {
        self.node_id.is_some()
    }
}

/// `[cluster.tls]`: the node's certificate and key, and the CA that signs
/// every node's certificate (PEM files).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterTlsConfig {
    /// This node's certificate chain.
    pub cert: std::path::PathBuf,
    /// This node's private key.
    pub key: std::path::PathBuf,
    /// The CA every node's certificate is checked against.
    pub ca: std::path::PathBuf,
}

/// `[storage]`: the journal of every command, so that graphs and jobs
/// survive a restart.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// The journal's directory (default `ges-server-data`, relative to the
    /// working directory); created if missing.
    pub dir: std::path::PathBuf,
    /// Keep nothing on disk: every graph and job is lost when the process
    /// ends (default no). For tests and demos.
    pub in_memory: bool,
    /// When a command counts as done: `"sync"` (each command synced before
    /// its answer, the default), `"group"` (commands arriving together
    /// share a sync, as safe), or `"none"` (written, never synced by the
    /// server: a power cut can lose answered commands).
    pub durability: String,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            dir: std::path::PathBuf::from("ges-server-data"),
            in_memory: false,
            durability: "sync".to_owned(),
        }
    }
}

impl StorageConfig {
    /// The journal's policy.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] for an unknown name.
    pub fn durability(&self) -> Result<graph_lifecycle_journal::Durability, ConfigError> {
        use graph_lifecycle_journal::Durability;
        match self.durability.as_str() {
            "sync" => Ok(Durability::SyncEveryCommit),
            "group" => Ok(Durability::GroupCommit {
                max_delay: Duration::from_millis(1),
            }),
            "none" => Ok(Durability::NoSync),
            other => Err(ConfigError::Invalid(format!(
                "storage.durability = {other:?} is not one of \"sync\", \"group\", \"none\""
            ))),
        }
    }
}

/// `[metrics]`: Prometheus metrics in the text exposition format.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `GET /metrics` on this address, a listener of its own with no
    /// credential (default: no metrics listener). Keep it on loopback or
    /// an operator's network.
    pub listen: Option<String>,
}

/// `[log]`: what the server logs, and how.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `"text"` (default) or `"json"`, one object a line.
    pub format: String,
    /// The least severe level logged: `error`, `warn`, `info` (default),
    /// `debug`, `trace`; `RUST_LOG`, if set, wins.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "text".to_owned(),
            level: "info".to_owned(),
        }
    }
}

/// `[server.tls]`: serve HTTPS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, PEM, leaf first (a relative path is from
    /// the working directory).
    pub cert: std::path::PathBuf,
    /// The private key, PEM (PKCS#8, PKCS#1 or SEC1), likewise.
    pub key: std::path::PathBuf,
}

/// `[server]`: the HTTP side.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// The address to listen on (default `127.0.0.1:7480`; port 0 picks a
    /// free port).
    pub listen: String,
    /// Threads serving HTTP (default 2).
    pub threads: usize,
    /// Largest request body accepted, in bytes (default 1 MiB); larger
    /// bodies get 413.
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive, in milliseconds
    /// (default 30,000); slower bodies get 408.
    pub body_timeout_ms: u64,
    /// On shutdown, how long live requests and the simulated host's
    /// jobs may take to finish, in milliseconds (default 10,000).
    pub shutdown_grace_ms: u64,
    /// How long a request's head (request line and headers), a TLS
    /// handshake, or an idle keep-alive connection's next request may
    /// take, in milliseconds (default 10,000); past it the connection is
    /// closed.
    pub header_timeout_ms: u64,
    /// Largest request head, in bytes (default 32 KiB, at least 8 KiB):
    /// larger heads get 431 (or 414 for the request line).
    pub max_head_bytes: usize,
    /// Most connections served at once (default 1,024); one more is
    /// answered 503 and closed.
    pub max_connections: usize,
    /// Most bytes of signed requests' bodies read, across all
    /// connections, before their signatures are checked (default 64 MiB,
    /// at least `max_body_bytes`); a signed request that would go past it
    /// is answered 503 before its body is read. Token requests are
    /// checked before their bodies and do not count.
    pub max_unverified_body_bytes: usize,
    /// Serve HTTPS with this certificate and key (default: plain HTTP).
    pub tls: Option<TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7480".to_owned(),
            threads: 2,
            max_body_bytes: 1 << 20,
            body_timeout_ms: 30_000,
            shutdown_grace_ms: 10_000,
            header_timeout_ms: 10_000,
            max_head_bytes: 32 << 10,
            max_connections: 1_024,
            max_unverified_body_bytes: 64 << 20,
            tls: None,
        }
    }
}

/// `[auth]`: who may call, on which projects.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// How far a signed request's `X-Sdk-Date` may be from the server's
    /// clock, in seconds (default 900, fifteen minutes).
    pub max_clock_skew_secs: u64,
    /// `X-Auth-Token` bearer tokens.
    pub tokens: Vec<TokenEntry>,
    /// AK/SK pairs for `SDK-HMAC-SHA256` signed requests.
    pub access_keys: Vec<AccessKeyEntry>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            max_clock_skew_secs: 900,
            tokens: Vec::new(),
            access_keys: Vec::new(),
        }
    }
}

/// `[[auth.tokens]]`: one bearer token.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// The token, as sent in `X-Auth-Token`.
    pub token: String,
    /// The projects it covers.
    pub projects: Vec<String>,
}

impl std::fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEntry")
            .field("token", &"<redacted>")
            .field("projects", &self.projects)
            .finish()
    }
}

/// `[[auth.access_keys]]`: one AK/SK pair.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKeyEntry {
    /// The access key (public: it names the pair).
    pub ak: String,
    /// The secret key (signs requests; never sent).
    pub sk: String,
    /// The projects it covers.
    pub projects: Vec<String>,
}

impl std::fmt::Debug for AccessKeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKeyEntry")
            .field("ak", &self.ak)
            .field("sk", &"<redacted>")
            .field("projects", &self.projects)
            .finish()
    }
}

/// `[engine]`: the core's limits ([`graph_lifecycle::Config`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Most graphs in all (default 10,000).
    pub max_graphs: usize,
    /// Most live jobs per graph (default 1,000).
    pub max_live_tasks_per_graph: usize,
    /// Most ended jobs kept per graph (default 1,000).
    pub max_retained_per_graph: usize,
    /// How long an ended job is kept, in seconds (default a day; 0 keeps
    /// jobs until the count bound evicts them).
    pub retention_secs: u64,
    /// Largest job payload (an import's body), in bytes (default 1 MiB).
    pub max_payload_bytes: usize,
    /// How much of its request an ended job keeps, in bytes (default
    /// 256): no endpoint shows it, so a job that ended keeps only the
    /// first bytes, for an operator reading the journal.
    pub retained_payload_bytes: usize,
    /// Most graphs one project holds (default: `max_graphs`). A project at
    /// its quota is refused 429, told its own quota only.
    pub max_graphs_per_project: Option<usize>,
    /// Most live jobs one project runs at once (default: no bound but
    /// the per-graph one). Checked before a start, stop, import, export or
    /// clear is applied (a forced restart is always allowed); requests
    /// racing each other may each pass the check, so the bound can be
    /// passed by the number of such requests in flight.
    pub max_live_jobs_per_project: Option<usize>,
    /// Job timeouts by kind, in seconds (default: none).
    pub timeouts_secs: PerKind<Option<u64>>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_graphs: 10_000,
            max_live_tasks_per_graph: 1_000,
            max_retained_per_graph: 1_000,
            retention_secs: 24 * 3600,
            max_payload_bytes: 1 << 20,
            retained_payload_bytes: 256,
            max_graphs_per_project: None,
            max_live_jobs_per_project: None,
            timeouts_secs: PerKind::default(),
        }
    }
}

/// One value per lifecycle job kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PerKind<T> {
    /// For start jobs.
    pub start: T,
    /// For stop jobs.
    pub stop: T,
    /// For restart jobs.
    pub restart: T,
    /// For import jobs.
    pub import: T,
    /// For export jobs.
    pub export: T,
    /// For clear jobs.
    pub clear: T,
}

impl<T> PerKind<T> {
    /// The value for `kind`.
    pub fn get(&self, kind: LifecycleKind) -> &T {
        match kind {
            LifecycleKind::Start => &self.start,
            LifecycleKind::Stop => &self.stop,
            LifecycleKind::Restart => &self.restart,
            LifecycleKind::Import => &self.import,
            LifecycleKind::Export => &self.export,
            LifecycleKind::Clear => &self.clear,
        }
    }
}

/// How long a simulated job of one kind runs, and in how many steps
/// (each step ends with a progress report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobTiming {
    /// The whole job, in milliseconds.
    pub duration_ms: u64,
    /// Progress reports along the way (at least 1).
    pub steps: u32,
}

impl JobTiming {
    /// A job of `duration_ms` in `steps` steps.
    pub const fn new(duration_ms: u64, steps: u32) -> Self {
        Self { duration_ms, steps }
    }
}

/// `[simulation]`: the simulated engine host, which runs instead of the
/// real engine when enabled (`--simulate`), for demos of long jobs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulationConfig {
    /// Whether to run it instead of the real engine (default no).
    pub enabled: bool,
    /// Worker threads (default 4).
    pub workers: usize,
    /// How often a worker checks whether its job was voided, in
    /// milliseconds (default 20).
    pub poll_ms: u64,
    /// Start jobs (default 2 s in 4 steps).
    pub start: JobTiming,
    /// Stop jobs (default 1 s in 2 steps).
    pub stop: JobTiming,
    /// Restart jobs (default 3 s in 3 steps).
    pub restart: JobTiming,
    /// Import jobs (default 10 s in 10 steps).
    pub import: JobTiming,
    /// Export jobs (default 5 s in 5 steps).
    pub export: JobTiming,
    /// Clear jobs (default 2 s in 2 steps).
    pub clear: JobTiming,
}

impl Default for SimulationConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            workers: 4,
            poll_ms: 20,
            start: JobTiming::new(2_000, 4),
            stop: JobTiming::new(1_000, 2),
            restart: JobTiming::new(3_000, 3),
            import: JobTiming::new(10_000, 10),
            export: JobTiming::new(5_000, 5),
            clear: JobTiming::new(2_000, 2),
        }
    }
}

impl SimulationConfig {
    /// The timing of a job kind.
    pub fn timing(&self, kind: LifecycleKind) -> JobTiming {
        match kind {
            LifecycleKind::Start => self.start,
            LifecycleKind::Stop => self.stop,
            LifecycleKind::Restart => self.restart,
            LifecycleKind::Import => self.import,
            LifecycleKind::Export => self.export,
            LifecycleKind::Clear => self.clear,
        }
    }

    /// Sets the timing of a job kind.
    pub fn set_timing(&mut self, kind: LifecycleKind, timing: JobTiming) {
        *match kind {
            LifecycleKind::Start => &mut self.start,
            LifecycleKind::Stop => &mut self.stop,
            LifecycleKind::Restart => &mut self.restart,
            LifecycleKind::Import => &mut self.import,
            LifecycleKind::Export => &mut self.export,
            LifecycleKind::Clear => &mut self.clear,
        } = timing;
    }
}

/// `[store]`: the real engine (`graph-lifecycle-store`), which runs the
/// jobs unless `[simulation] enabled` is set. Graph data is kept in the
/// data directory (`<storage.dir>/graphs`), or in memory with
/// `[storage] in_memory`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Whether the real engine runs (default yes). With neither it nor the
    /// simulation, job-starting calls answer 503.
    pub enabled: bool,
    /// Where imports read: `obs://bucket/key` is `<import_root>/bucket/key`
    /// (default `ges-import`, relative to the working directory).
    pub import_root: std::path::PathBuf,
    /// Where exports write, likewise (default `ges-export`).
    pub export_root: std::path::PathBuf,
    /// Threads running lifecycle jobs (default 2).
    pub workers: usize,
    /// Threads running asynchronous algorithm tasks (default 2).
    pub algorithm_workers: usize,
    /// Most vertices a graph may hold (default 10,000,000).
    pub max_vertices: u64,
    /// Most edges a graph may hold (default 50,000,000).
    pub max_edges: u64,
    /// Most bytes of properties a graph may hold (default 1 GiB, at most
    /// 4 GiB).
    pub max_property_bytes: u64,
    /// Most algorithm results kept for paging (default 64); the oldest
    /// goes first.
    pub max_retained_results: usize,
    /// Most bytes the kept results may take, roughly (default 256 MiB);
    /// the oldest go first, the newest is always kept.
    pub max_result_bytes: usize,
    /// Synchronous queries (k-hop, shortest path) run at once (default 4);
    /// more wait their turn.
    pub max_sync_queries: usize,
    /// Most backups one project keeps (default 100); a backup past it is
    /// refused 429.
    pub max_backups_per_project: usize,
    /// Most schemas (`/metadatas`) one project keeps (default 100).
    pub max_schemas_per_project: usize,
    /// Writes backups at most this many bytes a second (default: as fast
    /// as the disk goes). For demonstrations and tests of a backup cut by
    /// a forced restart.
    pub backup_bytes_per_sec: Option<u64>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            import_root: std::path::PathBuf::from("ges-import"),
            export_root: std::path::PathBuf::from("ges-export"),
            workers: 2,
            algorithm_workers: 2,
            max_vertices: 10_000_000,
            max_edges: 50_000_000,
            max_property_bytes: 1 << 30,
            max_retained_results: 64,
            max_result_bytes: 256 << 20,
            max_sync_queries: 4,
            max_backups_per_project: 100,
            max_schemas_per_project: 100,
            backup_bytes_per_sec: None,
        }
    }
}

/// The longest duration any `*_ms` setting may name: a day.
pub const MAX_MS: u64 = 86_400_000;

/// Every lifecycle job kind, in a fixed order.
pub const KINDS: [LifecycleKind; 6] = [
    LifecycleKind::Start,
    LifecycleKind::Stop,
    LifecycleKind::Restart,
    LifecycleKind::Import,
    LifecycleKind::Export,
    LifecycleKind::Clear,
];

impl Config {
    /// Parses and checks a configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Parse`] for bad TOML or an unknown field,
    /// [`ConfigError::Invalid`] for a value out of range.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads, parses and checks a configuration file.
    ///
    /// # Errors
    ///
    /// As [`from_toml_str`](Self::from_toml_str), and
    /// [`ConfigError::Read`].
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    /// Checks every value: ids, ranges, duplicate keys.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        self.listen_addr()?;
        let s = &self.server;
        if s.threads == 0 || s.threads > 256 {
            return bad(format!("server.threads = {} is not in 1..=256", s.threads));
        }
        if s.max_body_bytes == 0 {
            return bad("server.max_body_bytes must be at least 1".into());
        }
        if !(1..=MAX_MS).contains(&s.body_timeout_ms) {
            return bad(format!("server.body_timeout_ms is not in 1..={MAX_MS}"));
        }
        if s.shutdown_grace_ms > MAX_MS {
            return bad(format!("server.shutdown_grace_ms is over {MAX_MS}"));
        }
        if !(1..=MAX_MS).contains(&s.header_timeout_ms) {
            return bad(format!("server.header_timeout_ms is not in 1..={MAX_MS}"));
        }
        if !((8 << 10)..=(1 << 20)).contains(&s.max_head_bytes) {
            return bad("server.max_head_bytes is not in 8192..=1048576".into());
        }
        if s.max_connections == 0 {
            return bad("server.max_connections must be at least 1".into());
        }
        if s.max_unverified_body_bytes < s.max_body_bytes {
            return bad(format!(
                "server.max_unverified_body_bytes = {} is less than server.max_body_bytes = {}",
                s.max_unverified_body_bytes, s.max_body_bytes
            ));
        }
        self.storage.durability()?;
        if self.cluster.enabled() {
            if self.storage.in_memory {
                return bad(
                    "a cluster node keeps its log on disk: storage.in_memory cannot be set with cluster.node_id"
                        .into(),
                );
            }
            let c = &self.cluster;
            if c.key_file.is_none() {
                return bad("cluster.key_file must be set with cluster.node_id".into());
            }
            if let Some(id) = c.node_id
                && !c.peers.contains_key(&id.to_string())
            {
                return bad(format!(
                    "cluster.peers must list this node ({id}) with its node-to-node address"
                ));
            }
        }
        if let Some(listen) = &self.metrics.listen
            && listen.parse::<SocketAddr>().is_err()
        {
            return bad(format!(
                "metrics.listen = {listen:?} is not an ip:port address"
            ));
        }
        if !["text", "json"].contains(&self.log.format.as_str()) {
            return bad(format!(
                "log.format = {:?} is not \"text\" or \"json\"",
                self.log.format
            ));
        }
        for (i, t) in self.auth.tokens.iter().enumerate() {
            if t.token.is_empty() || t.token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return bad(format!(
                    "auth.tokens[{i}]: a token must be non-empty, without blanks or control characters"
                ));
            }
            check_projects(&format!("auth.tokens[{i}]"), &t.projects)?;
        }
        let mut aks = std::collections::HashSet::new();
        for (i, k) in self.auth.access_keys.iter().enumerate() {
            if k.ak.is_empty() || !k.ak.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
                return bad(format!(
                    "auth.access_keys[{i}]: an access key must be non-empty printable ASCII without ','"
                ));
            }
            if k.sk.is_empty() {
                return bad(format!("auth.access_keys[{i}]: the secret key is empty"));
            }
            if !aks.insert(k.ak.as_str()) {
                return bad(format!(
                    "auth.access_keys[{i}]: access key {} repeats",
                    k.ak
                ));
            }
            check_projects(&format!("auth.access_keys[{i}]"), &k.projects)?;
        }
        let e = &self.engine;
        if e.max_graphs == 0 || e.max_live_tasks_per_graph == 0 {
            return bad(
                "engine.max_graphs and engine.max_live_tasks_per_graph must be at least 1".into(),
            );
        }
        if e.max_graphs_per_project == Some(0) || e.max_live_jobs_per_project == Some(0) {
            return bad(
                "engine.max_graphs_per_project and engine.max_live_jobs_per_project must be at least 1"
                    .into(),
            );
        }
        let st = &self.store;
        if !(1..=256).contains(&st.workers) || !(1..=256).contains(&st.algorithm_workers) {
            return bad("store.workers and store.algorithm_workers must be in 1..=256".into());
        }
        if st.max_property_bytes > u64::from(u32::MAX) {
            return bad("store.max_property_bytes is over 4 GiB".into());
        }
        if st.max_vertices > u64::from(u32::MAX - 1) || st.max_edges > u64::from(u32::MAX - 1) {
            return bad("store.max_vertices and store.max_edges must be below 2^32 - 1".into());
        }
        if st.max_retained_results == 0 || !(1..=1024).contains(&st.max_sync_queries) {
            return bad(
                "store.max_retained_results must be at least 1, store.max_sync_queries in 1..=1024"
                    .into(),
            );
        }
        if st.max_backups_per_project == 0
            || st.max_schemas_per_project == 0
            || st.backup_bytes_per_sec == Some(0)
        {
            return bad(
                "store.max_backups_per_project, store.max_schemas_per_project and store.backup_bytes_per_sec must be at least 1"
                    .into(),
            );
        }
        let sim = &self.simulation;
        if sim.enabled && !(1..=256).contains(&sim.workers) {
            return bad(format!(
                "simulation.workers = {} is not in 1..=256",
                sim.workers
            ));
        }
        if !(1..=60_000).contains(&sim.poll_ms) {
            return bad("simulation.poll_ms is not in 1..=60000".into());
        }
        for kind in KINDS {
            let t = sim.timing(kind);
            if t.steps == 0 || t.steps > 100 {
                return bad(format!(
                    "simulation.{kind}.steps = {} is not in 1..=100",
                    t.steps
                ));
            }
            if t.duration_ms > MAX_MS {
                return bad(format!("simulation.{kind}.duration_ms is over {MAX_MS}"));
            }
        }
        Ok(())
    }

    /// The listening address.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] if `server.listen` is not `ip:port`.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.listen.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "server.listen = {:?} is not an ip:port address",
                self.server.listen
            ))
        })
    }

    /// The core's configuration.
    pub fn engine_config(&self) -> graph_lifecycle::Config {
        let e = &self.engine;
        let mut cfg = graph_lifecycle::Config::default()
            .max_graphs(e.max_graphs)
            .max_live_tasks_per_graph(e.max_live_tasks_per_graph)
            .max_retained_per_graph(e.max_retained_per_graph)
            .retention_age((e.retention_secs > 0).then(|| Duration::from_secs(e.retention_secs)));
        cfg.max_payload_bytes = e.max_payload_bytes;
        cfg.retained_payload_bytes = e.retained_payload_bytes;
        if let Some(n) = e.max_graphs_per_project {
            cfg.max_graphs_per_project = n;
        }
        for kind in KINDS {
            cfg = cfg.timeout(kind, e.timeouts_secs.get(kind).map(Duration::from_secs));
        }
        cfg
    }
}

fn check_projects(what: &str, projects: &[String]) -> Result<(), ConfigError> {
    if projects.is_empty() {
        return Err(ConfigError::Invalid(format!("{what}: no projects")));
    }
    for p in projects {
        ProjectId::new(p).map_err(|e| ConfigError::Invalid(format!("{what}: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_defaults() {
        let cfg = Config::from_toml_str("").unwrap();
        assert_eq!(cfg.server.listen, "127.0.0.1:7480");
        assert!(!cfg.simulation.enabled, "the real engine is the default");
        assert!(cfg.store.enabled);
        assert!(cfg.auth.tokens.is_empty());
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        assert!(matches!(
            Config::from_toml_str("[server]\nlisten_on = \"x\"\n"),
            Err(ConfigError::Parse(_))
        ));
        assert!(matches!(
            Config::from_toml_str("[server]\nlisten = \"nowhere\"\n"),
            Err(ConfigError::Invalid(_))
        ));
        let bad_project = "[[auth.tokens]]\ntoken = \"t\"\nprojects = [\"../x\"]\n";
        assert!(matches!(
            Config::from_toml_str(bad_project),
            Err(ConfigError::Invalid(_))
        ));
        let repeated = "[[auth.access_keys]]\nak = \"A\"\nsk = \"s\"\nprojects = [\"p\"]\n\
                        [[auth.access_keys]]\nak = \"A\"\nsk = \"t\"\nprojects = [\"q\"]\n";
        assert!(matches!(
            Config::from_toml_str(repeated),
            Err(ConfigError::Invalid(_))
        ));
        assert!(matches!(
            Config::from_toml_str("[simulation.import]\nduration_ms = 1\nsteps = 0\n"),
            Err(ConfigError::Invalid(_))
        ));
        for huge in [
            "[server]\nbody_timeout_ms = 9223372036854775807\n",
            "[server]\nshutdown_grace_ms = 9223372036854775807\n",
            "[simulation.stop]\nduration_ms = 9223372036854775807\nsteps = 1\n",
        ] {
            assert!(matches!(
                Config::from_toml_str(huge),
                Err(ConfigError::Invalid(_))
            ));
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let cfg = Config::from_toml_str(
            "[[auth.tokens]]\ntoken = \"hunter2\"\nprojects = [\"p\"]\n\
             [[auth.access_keys]]\nak = \"AK\"\nsk = \"s3cret\"\nprojects = [\"p\"]\n",
        )
        .unwrap();
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("s3cret"));
    }

    #[test]
    fn engine_limits_and_timeouts_reach_the_core() {
        let cfg = Config::from_toml_str(
            "[engine]\nmax_graphs = 7\nretention_secs = 0\n[engine.timeouts_secs]\nimport = 60\n",
        )
        .unwrap();
        let core = cfg.engine_config();
        assert_eq!(core.max_graphs, 7);
        assert_eq!(core.retention_age, None);
        assert_eq!(
            core.job_timeout(LifecycleKind::Import),
            Some(Duration::from_secs(60))
        );
        assert_eq!(core.job_timeout(LifecycleKind::Start), None);
    }
}
