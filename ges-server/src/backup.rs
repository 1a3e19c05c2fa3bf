//! Backups of a graph's data: taken while the graph serves, listed,
//! removed, and loaded by a start that names one.
//!
//! | method and path | what |
//! |---|---|
//! | `POST /v2/{p}/graphs/{g}/backups` | starts a backup, a host task of the graph ([`Engine::register_task`]) |
//! | `GET /v2/{p}/graphs/backups?offset&limit` | the project's backups |
//! | `GET /v2/{p}/graphs/{g}/backups?offset&limit` | one graph's backups |
//! | `DELETE /v2/{p}/graphs/{g}/backups/{backup_id}` | removes one |
//!
//! A backup is the graph's data in the store's checksummed form
//! ([`graph_lifecycle_store::format`]), `<data dir>/backups/<project>/<id>.gls`,
//! beside a manifest `<id>.json` that holds what the listing shows and the
//! SHA-256 of its own record. The backup's id is the id of the task that
//! took it. The worker writes the data to a temporary file, syncs it,
//! checks the task's token, renames it into place, then writes the
//! manifest the same way; only a backup with a manifest is listed, so a
//! backup cut by a forced restart (or a crash) is never shown. If the core
//! refuses the task's success (a forced restart got in between), the
//! files go. At start, the host removes temporary files, data
//! without a manifest, and backups whose task the core knows did not
//! succeed.
//!
//! [`Engine::register_task`]: graph_lifecycle::Engine::register_task

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::{delete, get};
use graph_lifecycle::{
    Clock, Engine, GraphId, GraphKey, HostKind, JobId, ProjectId, SystemClock, TaskSpec,
    TaskStatus, Timestamp,
};
use graph_lifecycle_store::{Control, GraphData, StoreError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::api::{
    ApiState, GraphPath, Idempotency, ProjectPath, Query, json_response, path_param, raw_params,
};
use crate::error::{ApiError, codes};

/// The host task kind of a backup, as the task center shows it.
pub const BACKUP_TASK_KIND: &str = "backup";

/// Default page size of the backup list.
pub const DEFAULT_BACKUP_LIMIT: usize = 10;

/// What a backup's manifest records (and the listing shows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackupRecord {
    /// The backup's id: the id of the task that took it.
    pub id: String,
    /// `<graph>_<yyyyMMddHHmmss>`.
    pub name: String,
    /// The project.
    pub project: String,
    /// The graph backed up (its id is its name).
    pub graph: String,
    /// When the backup started, in milliseconds since the epoch.
    pub start_ms: u64,
    /// When it ended.
    pub end_ms: u64,
    /// The data file's size, in bytes.
    pub size: u64,
}

/// A record and the SHA-256 of its JSON form: a file of this shape is
/// written whole (temporary file, sync, rename) and read back only if the
/// digest matches.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest<T> {
    record: T,
    sha256: String,
}

fn digest<T: Serialize>(record: &T) -> io::Result<String> {
    let bytes = serde_json::to_vec(record).map_err(io::Error::other)?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// Syncs a directory, so that a rename in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `dir/name` whole: a temporary file, synced, renamed
/// into place, the directory synced.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("tmp-{name}"));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(name))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes a record with its digest as `dir/name`.
pub(crate) fn write_manifest<T: Serialize>(dir: &Path, name: &str, record: &T) -> io::Result<()> {
    let m = Manifest {
        record,
        sha256: digest(record)?,
    };
    let bytes = serde_json::to_vec_pretty(&m).map_err(io::Error::other)?;
    write_atomic(dir, name, &bytes)
}

/// Reads a record written by [`write_manifest`]; `None` if the file is
/// missing, `Err` if it is damaged.
pub(crate) fn read_manifest<T: Serialize + DeserializeOwned>(
    path: &Path,
) -> Result<Option<T>, String> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let m: Manifest<T> =
        serde_json::from_slice(&bytes).map_err(|e| format!("malformed manifest: {e}"))?;
    let sum = digest(&m.record).map_err(|e| e.to_string())?;
    if sum != m.sha256 {
        return Err("the manifest's checksum does not match".into());
    }
    Ok(Some(m.record))
}

/// An I/O error of `op` on `file`, as the store reports them.
fn io_error(op: &'static str, file: String) -> impl FnOnce(io::Error) -> StoreError {
    move |source| StoreError::Io { op, file, source }
}

/// Removes a file, a missing one included.
fn remove_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Files kept per project under a root, a manifest beside each (backups,
/// schemas), with a bound per project and one lock held while they are
/// listed, added or removed.
#[derive(Debug)]
pub(crate) struct Shelf {
    root: PathBuf,
    lock: Mutex<()>,
    max_per_project: usize,
}

impl Shelf {
    /// A shelf under `root`, at most `max_per_project` entries a project.
    pub(crate) fn new(root: PathBuf, max_per_project: usize) -> Self {
        Self {
            root,
            lock: Mutex::new(()),
            max_per_project,
        }
    }

    /// The shelf's lock.
    pub(crate) fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The root, holding a folder per project.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The project's folder.
    pub(crate) fn dir(&self, project: &str) -> PathBuf {
        self.root.join(project)
    }

    /// Most entries one project keeps.
    pub(crate) fn max_per_project(&self) -> usize {
        self.max_per_project
    }
}

/// The backups under `<data dir>/backups`.
#[derive(Debug)]
pub(crate) struct Backups {
    shelf: Shelf,
    bytes_per_sec: Option<u64>,
}

impl Backups {
    /// The backups kept under `root`: at most `max_per_project` a project,
    /// written at most `bytes_per_sec` (if bounded).
    pub(crate) fn new(root: PathBuf, max_per_project: usize, bytes_per_sec: Option<u64>) -> Self {
        Self {
            shelf: Shelf::new(root, max_per_project),
            bytes_per_sec,
        }
    }

    /// Most backups one project keeps.
    pub(crate) fn max_per_project(&self) -> usize {
        self.shelf.max_per_project()
    }

    /// Every complete backup of `project` (of `graph` only, if given),
    /// oldest first. A damaged manifest is logged and skipped.
    pub(crate) fn list(&self, project: &str, graph: Option<&str>) -> Vec<BackupRecord> {
        let _g = self.shelf.guard();
        self.scan(project, graph)
    }

    fn scan(&self, project: &str, graph: Option<&str>) -> Vec<BackupRecord> {
        let dir = self.shelf.dir(project);
        let Ok(entries) = fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries.filter_map(Result::ok) {
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            if name.starts_with("tmp-") {
                continue;
            }
            match read_manifest::<BackupRecord>(&e.path()) {
                Ok(Some(r)) if r.id == id && r.project == project => {
                    if graph.is_none_or(|g| g == r.graph) {
                        out.push(r);
                    }
                }
                Ok(_) => {}
                Err(why) => {
                    tracing::warn!(project, backup = id, error = %why, "a backup's manifest is damaged; it is not listed");
                }
            }
        }
        out.sort_by(|a, b| (a.start_ms, &a.id).cmp(&(b.start_ms, &b.id)));
        out
    }

    /// Backups `project` keeps.
    pub(crate) fn count(&self, project: &str) -> usize {
        self.list(project, None).len()
    }

    /// One backup of `project`.
    pub(crate) fn get(&self, project: &str, id: JobId) -> Option<BackupRecord> {
        let _g = self.shelf.guard();
        let path = self.shelf.dir(project).join(format!("{id}.json"));
        read_manifest::<BackupRecord>(&path)
            .ok()
            .flatten()
            .filter(|r| r.id == id.to_string() && r.project == project)
    }

    fn remove_files(&self, project: &str, id: &str) -> io::Result<()> {
        let dir = self.shelf.dir(project);
        // The manifest first: without it the data is never listed.
        remove_file(&dir.join(format!("{id}.json")))?;
        remove_file(&dir.join(format!("{id}.gls")))?;
        sync_dir(&dir)
    }

    /// Removes one backup; `false` if there was none.
    pub(crate) fn remove(&self, project: &str, id: JobId) -> io::Result<bool> {
        let Some(r) = self.get(project, id) else {
            return Ok(false);
        };
        let _g = self.shelf.guard();
        self.remove_files(project, &r.id)?;
        Ok(true)
    }

    /// Removes every backup of a graph (the graph was deleted without
    /// `keep_backup`).
    pub(crate) fn remove_graph(&self, key: &GraphKey) {
        let _g = self.shelf.guard();
        for r in self.scan(key.project.as_str(), Some(key.graph.as_str())) {
            if let Err(e) = self.remove_files(&r.project, &r.id) {
                tracing::warn!(graph = %key, backup = %r.id, error = %e, "a backup of the removed graph could not be deleted");
            }
        }
    }

    /// The graph a backup holds, read whole and checked: a damaged file is
    /// [`StoreError::Corrupt`].
    pub(crate) fn read_data(&self, r: &BackupRecord) -> Result<GraphData, StoreError> {
        let shown = format!("backup {}", r.id);
        let path = self.shelf.dir(&r.project).join(format!("{}.gls", r.id));
        let bytes = fs::read(&path).map_err(io_error("read", shown.clone()))?;
        if bytes.len() as u64 != r.size {
            return Err(StoreError::Corrupt {
                file: shown,
                reason: format!(
                    "the file holds {} bytes, its manifest says {}",
                    bytes.len(),
                    r.size
                ),
            });
        }
        graph_lifecycle_store::format::read(&bytes, &shown).map(|(_, g)| g)
    }

    /// Writes a backup of `data` for the task `id` of `key`; returns its
    /// record once the data and the manifest are in place.
    /// [`StoreError::Cancelled`] if the task's token went void (nothing is
    /// left behind).
    pub(crate) fn write(
        &self,
        key: &GraphKey,
        id: JobId,
        started: Timestamp,
        data: &GraphData,
        control: &dyn Control,
    ) -> Result<BackupRecord, StoreError> {
        let project = key.project.as_str();
        let dir = self.shelf.dir(project);
        let shown = format!("backup {id}");
        fs::create_dir_all(&dir).map_err(io_error("create", shown.clone()))?;
        let tmp = dir.join(format!("tmp-{id}.gls"));
        let result = self
            .write_data(&tmp, data, control, &shown)
            .and_then(|size| {
                if control.is_cancelled() {
                    return Err(StoreError::Cancelled);
                }
                let _g = self.shelf.guard();
                fs::rename(&tmp, dir.join(format!("{id}.gls")))
                    .map_err(io_error("rename", shown.clone()))?;
                let end = SystemClock.now();
                let record = BackupRecord {
                    id: id.to_string(),
                    name: format!("{}_{}", key.graph, compact_time(started)),
                    project: project.to_owned(),
                    graph: key.graph.as_str().to_owned(),
                    start_ms: started.as_millis(),
                    end_ms: end.as_millis().max(started.as_millis()),
                    size,
                };
                if let Err(e) = write_manifest(&dir, &format!("{id}.json"), &record) {
                    let _ = remove_file(&dir.join(format!("{id}.gls")));
                    return Err(io_error("write", shown.clone())(e));
                }
                Ok(record)
            });
        if result.is_err() {
            let _ = remove_file(&tmp);
        }
        result
    }

    fn write_data(
        &self,
        tmp: &Path,
        data: &GraphData,
        control: &dyn Control,
        shown: &str,
    ) -> Result<u64, StoreError> {
        let f = File::create(tmp).map_err(io_error("create", shown.to_owned()))?;
        let estimate = 64
            + data.schema().to_xml().len() as u64
            + data.property_bytes() as u64
            + data.vertex_count() as u64 * 24
            + data.edge_count() as u64 * 14;
        let mut w = Paced {
            inner: io::BufWriter::with_capacity(1 << 20, f),
            control,
            bytes_per_sec: self.bytes_per_sec,
            written: 0,
            estimate: estimate.max(1),
            percent: 0,
        };
        let stamp = 0;
        match graph_lifecycle_store::format::write(data, stamp, &mut w) {
            Ok(()) => {}
            Err(_) if control.is_cancelled() => return Err(StoreError::Cancelled),
            Err(e) => return Err(io_error("write", shown.to_owned())(e)),
        }
        let written = w.written;
        let f = w
            .inner
            .into_inner()
            .map_err(|e| io_error("write", shown.to_owned())(e.into_error()))?;
        f.sync_all().map_err(io_error("sync", shown.to_owned()))?;
        Ok(written)
    }

    /// Settles what a crash left: temporary files, data without a
    /// manifest, and backups whose task the core knows did not succeed
    /// go. Returns how many files were removed.
    pub(crate) fn recover(&self, engine: &Engine) -> usize {
        let _g = self.shelf.guard();
        let mut removed = 0;
        let Ok(projects) = fs::read_dir(self.shelf.root()) else {
            return 0;
        };
        for p in projects.filter_map(Result::ok) {
            let Ok(project) = p.file_name().into_string() else {
                continue;
            };
            let dir = p.path();
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            let names: Vec<String> = entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .collect();
            for name in &names {
                let gone = if name.starts_with("tmp-") {
                    true
                } else if let Some(id) = name.strip_suffix(".gls") {
                    !names.iter().any(|n| *n == format!("{id}.json"))
                } else if let Some(id) = name.strip_suffix(".json") {
                    match read_manifest::<BackupRecord>(&dir.join(name)) {
                        Ok(Some(r)) => failed_task(engine, &project, &r.graph, id),
                        _ => false,
                    }
                } else {
                    false
                };
                if gone {
                    if let Some(id) = name.strip_suffix(".json") {
                        let _ = remove_file(&dir.join(format!("{id}.gls")));
                    }
                    if remove_file(&dir.join(name)).is_ok() {
                        removed += 1;
                    }
                }
            }
            if removed > 0 {
                let _ = sync_dir(&dir);
            }
        }
        removed
    }
}

/// Whether the core knows the backup task `id` of graph `graph` and that
/// it did not succeed (a crash cut it after its manifest was written).
fn failed_task(engine: &Engine, project: &str, graph: &str, id: &str) -> bool {
    let (Ok(key), Ok(job)) = (GraphKey::parse(project, graph), JobId::parse(id)) else {
        return false;
    };
    engine
        .task(&key, job)
        .is_ok_and(|t| t.status != TaskStatus::Succeeded)
}

/// `yyyyMMddHHmmss`, UTC.
fn compact_time(t: Timestamp) -> String {
    crate::wire::format_time(t)
        .chars()
        .filter(char::is_ascii_digit)
        .collect()
}

/// A writer that checks the task's token on every write, reports
/// progress, and, if bounded, keeps to a rate (for demonstrations and
/// tests of a backup cut in the middle).
struct Paced<'a, W: Write> {
    inner: W,
    control: &'a dyn Control,
    bytes_per_sec: Option<u64>,
    written: u64,
    estimate: u64,
    percent: u8,
}

impl<W: Write> Write for Paced<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.control.is_cancelled() {
            return Err(io::Error::other("the backup was cancelled"));
        }
        let mut n = buf.len().min(64 << 10);
        if let Some(rate) = self.bytes_per_sec {
            // At most a tenth of a second's worth at a time.
            n = n.min(usize::try_from((rate / 10).max(1)).unwrap_or(usize::MAX));
        }
        let n = self.inner.write(&buf[..n])?;
        self.written += n as u64;
        if let Some(rate) = self.bytes_per_sec {
            let until = Instant::now() + Duration::from_secs_f64(n as f64 / rate.max(1) as f64);
            while Instant::now() < until {
                if self.control.is_cancelled() {
                    return Err(io::Error::other("the backup was cancelled"));
                }
                std::thread::sleep(
                    until
                        .saturating_duration_since(Instant::now())
                        .min(Duration::from_millis(10)),
                );
            }
        }
        let percent = u8::try_from((self.written * 99 / self.estimate).min(99)).unwrap_or(99);
        if percent > self.percent {
            self.percent = percent;
            self.control.progress(percent);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

// ---- routes and handlers ----------------------------------------------------

/// The backup routes (merged into [`crate::api::service`]).
pub(crate) fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v2/{project_id}/graphs/backups", get(list_backups))
        .route(
            "/v2/{project_id}/graphs/{graph_id}/backups",
            get(list_graph_backups).post(create_backup),
        )
        .route(
            "/v2/{project_id}/graphs/{graph_id}/backups/{backup_id}",
            delete(delete_backup),
        )
}

/// A backup id of the path or the start body: a task id.
pub(crate) fn parse_backup_id(s: &str) -> Result<JobId, ApiError> {
    JobId::parse(s).map_err(|_| {
        ApiError::invalid_parameter(format!(
            "backup id {} is not a backup id (a UUID)",
            graph_lifecycle_store::error::quote(s)
        ))
    })
}

/// The graph key and `{backup_id}` of the path.
struct BackupPath(GraphKey, JobId);

impl<S: Send + Sync> FromRequestParts<S> for BackupPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let params = raw_params(parts).await?;
        let key = crate::api::path_key(&params, "graph_id")?;
        Ok(BackupPath(
            key,
            parse_backup_id(path_param(&params, "backup_id")?)?,
        ))
    }
}

/// The real engine's host and its backups, or why there are none.
fn backups(st: &ApiState) -> Result<(Arc<crate::host::Inner>, Arc<Backups>), ApiError> {
    let host = st.store.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::ENGINE_UNAVAILABLE,
            "this server runs no graph engine (the simulated host has no data to back up)",
        )
    })?;
    let b = host.backups().ok_or_else(|| {
        ApiError::invalid_request(
            "this server keeps nothing on disk ([storage] in_memory): it keeps no backups",
        )
    })?;
    Ok((host, b))
}

fn not_found(project: &str, id: JobId) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        codes::RESOURCE_NOT_FOUND,
        format!("backup {id} is not found in project {project}"),
    )
}

async fn create_backup(
    State(st): State<Arc<ApiState>>,
    GraphPath(key): GraphPath,
    Idempotency(retry): Idempotency,
) -> Result<Response, ApiError> {
    let (host, b) = backups(&st)?;
    let handle = st.engine.graph(&key)?;
    if !handle.serves_queries() {
        let state = handle.state().map_or("removed", |s| s.name());
        return Err(ApiError::invalid_request(format!(
            "graph {key} is {state}: only a graph that serves queries can be backed up"
        )));
    }
    let data = host.data(&key).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::ENGINE_UNAVAILABLE,
            format!("the data of graph {key} is not loaded; a restart loads it"),
        )
    })?;
    let project = key.project.as_str();
    let kept = b.count(project);
    if kept >= b.max_per_project() {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            codes::PROJECT_QUOTA,
            format!(
                "project {project} keeps {kept} backups, its quota is {}: delete one first",
                b.max_per_project()
            ),
        ));
    }
    st.job_quota(&key.project)?;
    let kind = HostKind::new(BACKUP_TASK_KIND)?;
    let (id, ticket) = st.register_host_task(&key, retry, TaskSpec::new(kind))?;
    if let Some(ticket) = ticket
        && let Err(ticket) = host.submit_backup(ticket, data)
    {
        let _ = st.engine.report(
            &ticket.task,
            graph_lifecycle::Report::Failed("the server is stopping".into()),
        );
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::SHUTTING_DOWN,
            "the server is stopping",
        ));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"job_id": id.to_string()}),
    ))
}

fn page(q: &Query) -> Result<(usize, usize), ApiError> {
    Ok((
        q.usize("offset", 0, usize::MAX)?,
        q.usize("limit", DEFAULT_BACKUP_LIMIT, crate::api::MAX_LIMIT)?,
    ))
}

fn listing(
    st: &ApiState,
    project: &ProjectId,
    graph: Option<&GraphId>,
    q: &Query,
) -> Result<Response, ApiError> {
    let (offset, limit) = page(q)?;
    let (_, b) = backups(st)?;
    let all = b.list(project.as_str(), graph.map(GraphId::as_str));
    let list: Vec<serde_json::Value> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(|r| backup_json(st, project, r))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"backup_count": all.len(), "backup_list": list}),
    ))
}

fn backup_json(st: &ApiState, project: &ProjectId, r: &BackupRecord) -> serde_json::Value {
    let graph_status = GraphKey::parse(project.as_str(), &r.graph)
        .ok()
        .and_then(|k| st.engine.graph_info(&k).ok())
        .map(|info| crate::wire::Graph::from_info(&info).status)
        .unwrap_or_default();
    let start = Timestamp::from_millis(r.start_ms);
    let end = Timestamp::from_millis(r.end_ms);
    json!({
        "id": r.id,
        "name": r.name,
        "backup_method": "manual",
        "graph_id": r.graph,
        "graph_name": r.graph,
        "graph_status": graph_status,
        "status": "success",
        "start_timestamp": r.start_ms,
        "start_time": crate::wire::format_time(start),
        "end_timestamp": r.end_ms,
        "end_time": crate::wire::format_time(end),
        "size": r.size.div_ceil(1 << 20),
        "size_bytes": r.size,
        "duration": (r.end_ms.saturating_sub(r.start_ms)).div_ceil(1000),
        "encrypted": false,
    })
}

async fn list_backups(
    State(st): State<Arc<ApiState>>,
    ProjectPath(project): ProjectPath,
    q: Query,
) -> Result<Response, ApiError> {
    listing(&st, &project, None, &q)
}

async fn list_graph_backups(
    State(st): State<Arc<ApiState>>,
    GraphPath(key): GraphPath,
    q: Query,
) -> Result<Response, ApiError> {
    listing(&st, &key.project, Some(&key.graph), &q)
}

async fn delete_backup(
    State(st): State<Arc<ApiState>>,
    BackupPath(key, id): BackupPath,
) -> Result<Response, ApiError> {
    let (_, b) = backups(&st)?;
    let project = key.project.as_str();
    match b.get(project, id) {
        Some(r) if r.graph == key.graph.as_str() => {}
        _ => return Err(not_found(project, id)),
    }
    let p = project.to_owned();
    let removed = tokio::task::spawn_blocking(move || b.remove(&p, id))
        .await
        .map_err(|_| ApiError::internal("the removal failed inside the server"))?;
    match removed {
        Ok(true) => Ok(json_response(StatusCode::OK, &json!({}))),
        Ok(false) => Err(not_found(project, id)),
        Err(e) => {
            tracing::error!(backup = %id, error = %e, "a backup could not be deleted");
            Err(ApiError::internal(format!(
                "backup {id} could not be deleted"
            )))
        }
    }
}

/// Checks, before a start that names a backup is accepted, that the
/// backup exists, belongs to this graph, and reads back whole: a damaged
/// backup is refused here, and the graph stays as it is.
pub(crate) async fn check_restore(st: &ApiState, key: &GraphKey, id: &str) -> Result<(), ApiError> {
    let id = parse_backup_id(id)?;
    let (_, b) = backups(st)?;
    let project = key.project.as_str();
    let r = b.get(project, id).ok_or_else(|| not_found(project, id))?;
    if r.graph != key.graph.as_str() {
        return Err(ApiError::invalid_request(format!(
            "backup {id} is a backup of graph {}, not of graph {}",
            r.graph, key.graph
        )));
    }
    let handle = st.engine.graph(key)?;
    if let Some(state) = handle.state()
        && state != graph_lifecycle::GraphState::Stopped
    {
        return Err(ApiError::invalid_request(format!(
            "graph {key} is {}: only a stopped graph starts from a backup",
            state.name()
        )));
    }
    let checked = tokio::task::spawn_blocking(move || b.read_data(&r).map(drop))
        .await
        .map_err(|_| ApiError::internal("the check failed inside the server"))?;
    checked.map_err(|e| {
        ApiError::invalid_request(format!(
            "backup {id} cannot be loaded, the graph stays as it is: {e}"
        ))
    })
}
