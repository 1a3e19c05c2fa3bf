//! `ges-server` as a node of a replicated lifecycle (`docs/CLUSTER.md`,
//! "ges-server as a node", and `docs/REST.md`, section 18).
//!
//! With a `[cluster]` section (or `--node-id`), the server does not keep
//! its own engine: it starts a [`graph_lifecycle_raft::Node`] on the data
//! directory's `cluster/` folder, and the API runs on that node:
//!
//! - **Writes** (create, delete, start, stop, import, export, clear, the
//!   forced restart) become core commands submitted through the node's
//!   log ([`Node::submit`]): forwarded to the leader when this node does
//!   not lead, answered with the outcome every node applied. A command
//!   carries the request's `Idempotency-Key` as its request id, or a
//!   fresh one, so the node's own retries after a lost answer are
//!   answered, not applied twice.
//! - **Reads** (every `GET`) wait for a read barrier first: linearizable
//!   by default (the leader confirms its lead and this node applies up to
//!   the leader's commit index), stale with `X-Read-Consistency: stale`
//!   (this node's applied state, at once).
//! - **Jobs** are run by this node's simulated workers, for the graphs
//!   this node owns; their reports go through the log like any write. A
//!   job is dropped without a report when its token or this node's lease
//!   goes void.
//!
//! When no leader answers within the client timeout, the call is answered
//! 503 `GES.7005` with the node's reason; a write may or may not have been
//! applied, and retrying it with the same `Idempotency-Key` finds out.
//!
//! The node runs on a Tokio runtime of its own, apart from the HTTP
//! runtime, so that a burst of HTTP requests does not delay heartbeats.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use graph_lifecycle::{GraphKey, JobId, Op, Outcome, Report, RequestId};
use graph_lifecycle_raft::http::{self, HttpTransport, Listener, PeerTls, RpcLimits};
use graph_lifecycle_raft::{
    ClusterConfig, ClusterError, ClusterJob, ClusterJobs, Consistency, Disk, Env, Node, NodeAddr,
    NodeId,
};
use tokio::sync::oneshot;

use crate::config::{ClusterSection, Config, SimulationConfig};
use crate::error::{ApiError, codes};
use crate::server::ServerError;

/// The header that asks a read for this node's applied state without a
/// barrier: `X-Read-Consistency: stale`.
pub const READ_CONSISTENCY_HEADER: &str = "x-read-consistency";

/// What the API holds of the node: cheap to clone.
#[derive(Clone)]
pub struct ClusterApi {
    node: Node,
    rt: tokio::runtime::Handle,
}

impl std::fmt::Debug for ClusterApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterApi")
            .field("node", &self.node.id())
            .finish()
    }
}

/// A cluster error as the API answers it.
fn unavailable(e: &ClusterError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        codes::ENGINE_UNAVAILABLE,
        format!("the cluster cannot take the call now: {e}"),
    )
}

impl ClusterApi {
    /// The node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Submits a core command for `key`, on the node's runtime, and
    /// returns the outcome the log gave it.
    async fn submit(
        &self,
        key: &GraphKey,
        request: Option<RequestId>,
        op: impl FnOnce(JobId) -> Op,
    ) -> Result<Outcome, ApiError> {
        let cmd = self.node.command(key, request, op);
        let node = self.node.clone();
        let answer = self
            .rt
            .spawn(async move { node.submit(cmd).await })
            .await
            .map_err(|e| ApiError::internal(format!("the cluster call ended: {e}")))?;
        match answer {
            Ok(outcome) => Ok(outcome?),
            Err(e) => Err(unavailable(&e)),
        }
    }

    /// A command that answers with a job (a lifecycle operation or the
    /// forced restart): the job's id.
    pub async fn job(
        &self,
        key: &GraphKey,
        request: Option<RequestId>,
        op: impl FnOnce(JobId) -> Op,
    ) -> Result<JobId, ApiError> {
        match self.submit(key, request, op).await? {
            Outcome::Job { job, .. } => Ok(job),
            Outcome::Restarted(r) => Ok(r.job),
            other => Err(ApiError::internal(format!(
                "a job-starting command was answered {other:?}"
            ))),
        }
    }

    /// A command without a job (create, remove).
    pub async fn plain(
        &self,
        key: &GraphKey,
        request: Option<RequestId>,
        op: Op,
    ) -> Result<(), ApiError> {
        self.submit(key, request, |_| op).await.map(drop)
    }

    /// Waits until this node may answer a read: at once for
    /// `X-Read-Consistency: stale`, after a linearizable read barrier
    /// otherwise.
    ///
    /// # Errors
    ///
    /// 400 for another value of the header; 503 if no leader confirmed
    /// its lead in time.
    pub async fn read_barrier(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let consistency = match headers.get(READ_CONSISTENCY_HEADER) {
            None => Consistency::Linearizable,
            Some(v) => match v.to_str() {
                Ok(s) if s.eq_ignore_ascii_case("stale") => Consistency::Stale,
                Ok(s) if s.eq_ignore_ascii_case("linearizable") => Consistency::Linearizable,
                _ => {
                    return Err(ApiError::invalid_parameter(
                        "X-Read-Consistency must be \"linearizable\" or \"stale\"",
                    ));
                }
            },
        };
        let node = self.node.clone();
        self.rt
            .spawn(async move { node.read_barrier(consistency).await })
            .await
            .map_err(|e| ApiError::internal(format!("the cluster call ended: {e}")))?
            .map_err(|e| unavailable(&e))
    }
}

/// The node behind a server: its runtime, its node-to-node listener and
/// its workers. Stopped by [`ClusterMember::stop`] (or when dropped).
pub struct ClusterMember {
    api: ClusterApi,
    runtime: Option<tokio::runtime::Runtime>,
    rpc_addr: SocketAddr,
    stop_rpc: Option<oneshot::Sender<()>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    stop_workers: Arc<AtomicBool>,
}

impl std::fmt::Debug for ClusterMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterMember")
            .field("node", &self.api.node.id())
            .field("rpc_addr", &self.rpc_addr)
            .finish()
    }
}

fn cluster_error(what: &str) -> impl FnOnce(String) -> ServerError + '_ {
    move |why| ServerError::Cluster(format!("{what}: {why}"))
}

/// The node's configuration from `[cluster]`, the engine's section and
/// the key file.
fn node_config(cfg: &Config, c: &ClusterSection) -> Result<ClusterConfig, ServerError> {
    let id = c
        .node_id
        .ok_or_else(|| ServerError::Cluster("cluster.node_id is not set".into()))?;
    let mut peers: BTreeMap<NodeId, NodeAddr> = BTreeMap::new();
    for (k, addr) in &c.peers {
        let peer: NodeId = k
            .parse()
            .map_err(|_| ServerError::Cluster(format!("cluster.peers: {k:?} is not a node id")))?;
        peers.insert(peer, NodeAddr::new(addr.clone()));
    }
    let key_file = c
        .key_file
        .as_ref()
        .ok_or_else(|| ServerError::Cluster("cluster.key_file is not set".into()))?;
    let key = std::fs::read_to_string(key_file)
        .map_err(|e| ServerError::Cluster(format!("cannot read {}: {e}", key_file.display())))?;
    let mut nc = ClusterConfig::new(id, peers, key.trim());
    nc.engine = cfg.engine_config();
    nc.validate().map_err(cluster_error("cluster"))?;
    Ok(nc)
}

impl ClusterMember {
    /// Starts the node: its runtime, its log and state machine (restored
    /// from its snapshot), its node-to-node listener, the bootstrap if
    /// asked, and `simulation.workers` workers.
    ///
    /// # Errors
    ///
    /// [`ServerError::Cluster`] for a bad `[cluster]` section, a key file
    /// that cannot be read, a log or snapshot that cannot be opened, or a
    /// listener that cannot be bound.
    pub fn start(cfg: &Config) -> Result<ClusterMember, ServerError> {
        let c = &cfg.cluster;
        let nc = node_config(cfg, c)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ges-cluster")
            .enable_all()
            .build()
            .map_err(|e| ServerError::Cluster(format!("building the node's runtime: {e}")))?;
        let tls = c.tls.as_ref().map(|t| PeerTls {
            cert: t.cert.clone(),
            key: t.key.clone(),
            ca: t.ca.clone(),
        });
        let connector = tls
            .as_ref()
            .map(PeerTls::connector)
            .transpose()
            .map_err(|e| ServerError::Cluster(format!("cluster.tls: {e}")))?;
        let acceptor = tls
            .as_ref()
            .map(PeerTls::acceptor)
            .transpose()
            .map_err(|e| ServerError::Cluster(format!("cluster.tls: {e}")))?;
        let dir = cfg.storage.dir.join("cluster");
        let disk = Disk::open(&dir)
            .map_err(|e| ServerError::Cluster(format!("{}: {e}", dir.display())))?;
        let listen_on = nc.addr().rpc;
        let transport = Arc::new(HttpTransport::new(&nc, connector));
        let bootstrap = c.bootstrap;
        let (stop_rpc, rpc_stopped) = oneshot::channel::<()>();
        let (node, jobs, rpc_addr) = runtime.block_on(async move {
            let (node, jobs, report) = Node::start(nc, disk, Arc::new(transport), Env::default())
                .await
                .map_err(|e| ServerError::Cluster(e.to_string()))?;
            let addr = http::listen(
                &listen_on,
                Listener::new(node.clone(), acceptor, RpcLimits::default()),
                async move {
                    let _ = rpc_stopped.await;
                },
            )
            .await
            .map_err(|e| ServerError::Cluster(format!("cluster listener {listen_on}: {e}")))?;
            tracing::info!(
                node = node.id(),
                rpc = %addr,
                log_entries = report.log.entries,
                torn_tail = report.log.torn_tail.is_some(),
                "cluster node started"
            );
            if bootstrap {
                node.bootstrap()
                    .await
                    .map_err(|e| ServerError::Cluster(format!("bootstrap: {e}")))?;
            }
            Ok::<_, ServerError>((node, jobs, addr))
        })?;
        let api = ClusterApi {
            node: node.clone(),
            rt: runtime.handle().clone(),
        };
        let stop_workers = Arc::new(AtomicBool::new(false));
        let workers = spawn_workers(&api, &jobs, &cfg.simulation, &stop_workers)
            .map_err(|e| ServerError::Cluster(format!("starting the workers: {e}")))?;
        Ok(ClusterMember {
            api,
            runtime: Some(runtime),
            rpc_addr,
            stop_rpc: Some(stop_rpc),
            workers,
            stop_workers,
        })
    }

    /// What the API holds of the node.
    pub fn api(&self) -> &ClusterApi {
        &self.api
    }

    /// The node-to-node listener's address.
    pub fn rpc_addr(&self) -> SocketAddr {
        self.rpc_addr
    }

    /// Stops the node: the workers (a job under way is dropped without a
    /// report, as if the process had ended: the graph's next owner
    /// recovers it), the Raft node, the listener and the runtime.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        self.stop_workers.store(true, Ordering::Release);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        let node = self.api.node.clone();
        runtime.block_on(async move { node.shutdown().await });
        if let Some(tx) = self.stop_rpc.take() {
            let _ = tx.send(());
        }
        runtime.shutdown_timeout(Duration::from_millis(200));
    }
}

impl Drop for ClusterMember {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// The node's simulated workers: each takes a job of a graph this node
/// owns, reports it started, sleeps through the `[simulation]` timing of
/// its kind in steps (reporting progress after each), and reports it
/// succeeded; between steps, and every `poll_ms`, it checks whether the
/// job went void (a forced restart, a cancel, this node fenced), and
/// drops it without a report if so. Reports go through the log.
fn spawn_workers(
    api: &ClusterApi,
    jobs: &ClusterJobs,
    sim: &SimulationConfig,
    stop: &Arc<AtomicBool>,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    (0..sim.workers.max(1))
        .map(|i| {
            let api = api.clone();
            let jobs = jobs.clone();
            let sim = sim.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("ges-cluster-worker-{i}"))
                .spawn(move || {
                    let poll = Duration::from_millis(sim.poll_ms.max(1));
                    while !stop.load(Ordering::Acquire) {
                        match jobs.recv_timeout(poll) {
                            Ok(job) => run_job(&api, &job, &sim, &stop),
                            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                        }
                    }
                })
        })
        .collect()
}

fn run_job(api: &ClusterApi, job: &ClusterJob, sim: &SimulationConfig, stop: &AtomicBool) {
    let void = || job.is_void() || stop.load(Ordering::Acquire);
    let task = &job.job.task;
    let report = |r: Report| {
        let cmd = api.node.command(&task.key, None, |_| Op::Report {
            job: task.id,
            epoch: task.epoch,
            report: r,
        });
        // The node retries with the same request id; a refusal (the job
        // was voided meanwhile) needs nothing more.
        api.rt
            .block_on(api.node.submit(cmd))
            .is_ok_and(|o| o.is_ok())
    };
    // Host tasks are the host's own; a node hands out lifecycle jobs.
    let Some(kind) = job.job.kind.lifecycle() else {
        return;
    };
    let timing = sim.timing(kind);
    if void() || !report(Report::Started) {
        return;
    }
    let steps = timing.steps.max(1);
    let step = Duration::from_millis(timing.duration_ms) / steps;
    let poll = Duration::from_millis(sim.poll_ms.max(1));
    for i in 1..=steps {
        let mut left = step;
        while !left.is_zero() {
            if void() {
                return;
            }
            let nap = left.min(poll);
            std::thread::sleep(nap);
            left -= nap;
        }
        if void() {
            return;
        }
        if i < steps {
            let pct = u8::try_from(i * 100 / steps).unwrap_or(99).min(99);
            if !report(Report::Progress(pct)) {
                return;
            }
        }
    }
    if !void() {
        report(Report::Succeeded);
    }
}

/// One node in [`status`]'s answer.
#[derive(serde::Serialize)]
struct NodeView {
    id: NodeId,
    /// Its node-to-node address, as the configuration lists it.
    rpc: String,
    /// Whether the log holds it up (its "node up" ran, and it was not
    /// declared lost since).
    live: bool,
    /// Its latest incarnation that came up (0: never).
    incarnation: u64,
    leader: bool,
    /// The project's graphs it owns (runs the jobs of).
    graphs: Vec<String>,
}

/// `GET /v2/{project_id}/cluster`: this node's view of the cluster (a
/// documented extension, `docs/REST.md` section 18): which node leads,
/// which nodes are up, and which of the project's graphs each owns. On a
/// server that is not a cluster node: `{"mode": "standalone"}`. A read
/// like the others, behind the barrier unless
/// `X-Read-Consistency: stale`.
pub(crate) async fn status(
    axum::extract::State(st): axum::extract::State<Arc<crate::api::ApiState>>,
    crate::api::ProjectPath(project): crate::api::ProjectPath,
) -> Result<axum::response::Response, ApiError> {
    let Some(c) = &st.cluster else {
        return Ok(crate::api::json_response(
            StatusCode::OK,
            &serde_json::json!({"mode": "standalone"}),
        ));
    };
    let s = c.node.status();
    let peers = &c.node.config().peers;
    // Under the state machine's read lock, briefly: one pass over the
    // owners, no copy of the cluster's state.
    let nodes: Vec<NodeView> = c.node.machine().with_cluster(|cluster| {
        let mut graphs: BTreeMap<NodeId, Vec<String>> = BTreeMap::new();
        for (k, owner) in &cluster.owners {
            if let Some(id) = owner
                && k.project == project
            {
                graphs.entry(*id).or_default().push(k.graph.to_string());
            }
        }
        let mut ids: Vec<NodeId> = peers.keys().copied().collect();
        ids.extend(cluster.nodes.keys().copied());
        ids.extend(s.voters.iter().copied());
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter()
            .map(|id| {
                let record = cluster.nodes.get(&id);
                NodeView {
                    id,
                    rpc: peers.get(&id).map(|a| a.rpc.clone()).unwrap_or_default(),
                    live: record.is_some_and(|r| r.live),
                    incarnation: record.map_or(0, |r| r.incarnation),
                    leader: s.leader == Some(id),
                    graphs: graphs.remove(&id).unwrap_or_default(),
                }
            })
            .collect()
    });
    Ok(crate::api::json_response(
        StatusCode::OK,
        &serde_json::json!({
            "mode": "cluster",
            "node": s.node,
            "leader": s.leader,
            "term": s.term,
            "applied": s.applied,
            "serving": s.serving,
            "dispatching": s.dispatching,
            "voters": s.voters,
            "joint": s.joint,
            "nodes": nodes,
        }),
    ))
}
