//! The real engine host: worker threads that run the core's jobs on real
//! graph data (`graph-lifecycle-store`), and a pool that runs algorithm
//! tasks.
//!
//! | job | what the worker does |
//! |---|---|
//! | start | loads the graph's stored data (none yet: an empty graph) |
//! | start with `graph_backup_id` | reads the backup whole, checks it, stores it as the graph's data and loads it, as an import does |
//! | stop | unloads it: the memory goes once the last query holding it ends |
//! | restart | unloads, then loads |
//! | import | imports the request's files into a copy of the data, stores it, swaps it in |
//! | export | writes the data's three files under the export root |
//! | clear | an empty graph (keeping the schema unless `clear_metadata`), stored and swapped in |
//!
//! **The previous data survives a failed or forced-restarted job.** An
//! import or a clear builds its new data apart and replaces the graph's
//! data in one step, under the graph's commit lock, only if its cancel
//! token is still live; it then reports success, and if the core refuses
//! the report (a forced restart got in between) it puts the previous data
//! back, on disk and in memory, before it lets go of the lock. The
//! restart's worker loads under the same lock, so it always loads the
//! data of the last job the core saw succeed. On disk this is
//! [`graph_lifecycle_store::disk`]'s protocol, which a crash cannot
//! break: at start, [`StoreHost::start`] settles what the crash left by
//! asking the (recovered) core whether each job succeeded.
//!
//! Workers check the job's token every few thousand rows (an import, an
//! export) or at every iteration (an algorithm), and drop the job
//! without another report once it is void. Algorithm tasks are host
//! tasks of the core ([`Engine::register_task`]): they show in the task
//! center with their progress, and a forced restart fails them. Their
//! results are kept, bounded in count and bytes, for paging.
//!
//! Backups are host tasks too, run one at a time by a thread of their
//! own ([`crate::backup`]).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use graph_lifecycle::{
    Clock, Engine, GraphKey, Job, JobId, JobReceiver, Report, TaskKind, TaskStatus,
};
use graph_lifecycle_store::disk::GraphDir;
use graph_lifecycle_store::export::ExportNames;
use graph_lifecycle_store::import::{ImportSpec, ParallelEdges, Source};
use graph_lifecycle_store::paths::{Root, file_name};
use graph_lifecycle_store::{Caps, Control, GraphData, StoreError};

use crate::config::{Config, StoreConfig};

/// Longest failure message a worker reports.
const MAX_REASON: usize = 1_024;

/// Where graph data is kept between a stop and a start.
#[derive(Debug)]
enum Persist {
    /// `<data dir>/graphs/<project>/<graph>/data.gls`.
    Dir(PathBuf),
    /// In memory only (`[storage] in_memory`): lost with the process.
    Memory(Mutex<HashMap<GraphKey, Arc<GraphData>>>),
}

/// One graph's data as the host holds it.
#[derive(Debug, Default)]
struct Slot {
    /// Held while the stored data changes, and while it is loaded.
    commit: Mutex<()>,
    /// The loaded data; `None` when not loaded.
    data: RwLock<Option<Arc<GraphData>>>,
}

/// A backup queued for the backup thread.
struct BackupJob {
    ticket: Job,
    data: Arc<GraphData>,
    queued: graph_lifecycle::Timestamp,
}

/// An algorithm run queued for the pool.
struct AlgoJob {
    ticket: Job,
    run: crate::service::AlgoRun,
    data: Arc<GraphData>,
}

/// Results of algorithm tasks, kept for paging: at most a count and
/// roughly a number of bytes, oldest first out (the newest is always
/// kept).
#[derive(Debug, Default)]
struct Results {
    map: HashMap<JobId, Arc<crate::service::Output>>,
    order: VecDeque<(JobId, usize)>,
    bytes: usize,
}

pub(crate) struct Inner {
    engine: Engine,
    persist: Persist,
    slots: Mutex<HashMap<GraphKey, Arc<Slot>>>,
    import_root: Result<Root, String>,
    export_root: Result<Root, String>,
    caps: Caps,
    results: Mutex<Results>,
    max_results: usize,
    max_result_bytes: usize,
    hard_stop: AtomicBool,
    algo_tx: Mutex<Option<mpsc::Sender<AlgoJob>>>,
    backup_tx: Mutex<Option<mpsc::Sender<BackupJob>>>,
    /// The backups, kept in the data directory (none in memory).
    backups: Option<Arc<crate::backup::Backups>>,
    /// The stored schemas, likewise.
    schemas: Option<Arc<crate::catalog::Schemas>>,
    /// Synchronous queries running, and the most allowed.
    pub(crate) sync_queries: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("persist", &self.persist)
            .field("caps", &self.caps)
            .finish_non_exhaustive()
    }
}

/// The real engine host: its workers, its algorithm pool, and the graph
/// data they share with the service plane's queries.
#[derive(Debug)]
pub struct StoreHost {
    inner: Arc<Inner>,
    workers: Vec<JoinHandle<()>>,
}

/// What the host did at start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StartReport {
    /// Graphs whose data was loaded (they were running).
    pub loaded: usize,
    /// Graphs whose data could not be loaded (logged; their queries answer
    /// 503 until a restart).
    pub failed: usize,
    /// Interrupted commits confirmed or rolled back.
    pub settled: usize,
    /// Directories of graphs the core no longer has, removed.
    pub orphans: usize,
}

fn resolve_root(what: &str, dir: &std::path::Path) -> Result<Root, String> {
    Root::open(dir).map_err(|e| {
        tracing::warn!("the {what} root {} cannot be used: {e}", dir.display());
        format!("the server's {what} root is not available")
    })
}

/// `s` cut to [`MAX_REASON`] bytes.
fn reason(s: String) -> String {
    if s.len() <= MAX_REASON {
        return s;
    }
    let mut cut = MAX_REASON;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}

/// Reads a job's token and reports its progress.
struct JobControl<'a> {
    engine: &'a Engine,
    job: &'a Job,
}

impl Control for JobControl<'_> {
    fn is_cancelled(&self) -> bool {
        self.job.token.is_void()
    }

    fn progress(&self, percent: u8) {
        let _ = self
            .engine
            .report(&self.job.task, Report::Progress(percent));
    }
}

/// A job's control that also gives up once the host stops for good (a
/// slowed-down backup would otherwise keep the host waiting).
struct StoppingControl<'a> {
    job: JobControl<'a>,
    hard_stop: &'a AtomicBool,
}

impl Control for StoppingControl<'_> {
    fn is_cancelled(&self) -> bool {
        self.job.is_cancelled() || self.hard_stop.load(Ordering::Acquire)
    }

    fn progress(&self, percent: u8) {
        self.job.progress(percent);
    }
}

impl StoreHost {
    /// Settles what a crash left in the data directory, loads the data of
    /// every running graph, and starts the workers on `jobs`.
    ///
    /// # Errors
    ///
    /// The OS refused a thread.
    pub fn start(
        engine: &Engine,
        jobs: JobReceiver,
        cfg: &Config,
    ) -> std::io::Result<(StoreHost, StartReport)> {
        let st: &StoreConfig = &cfg.store;
        let persist = if cfg.storage.in_memory {
            Persist::Memory(Mutex::new(HashMap::new()))
        } else {
            Persist::Dir(cfg.storage.dir.join("graphs"))
        };
        let (algo_tx, algo_rx) = mpsc::channel::<AlgoJob>();
        let (backup_tx, backup_rx) = mpsc::channel::<BackupJob>();
        let (backups, schemas) = if cfg.storage.in_memory {
            (None, None)
        } else {
            (
                Some(Arc::new(crate::backup::Backups::new(
                    cfg.storage.dir.join("backups"),
                    st.max_backups_per_project,
                    st.backup_bytes_per_sec,
                ))),
                Some(Arc::new(crate::catalog::Schemas::new(
                    cfg.storage.dir.join("metadatas"),
                    st.max_schemas_per_project,
                ))),
            )
        };
        let inner = Arc::new(Inner {
            engine: engine.clone(),
            persist,
            slots: Mutex::new(HashMap::new()),
            import_root: resolve_root("import", &st.import_root),
            export_root: resolve_root("export", &st.export_root),
            caps: Caps {
                max_vertices: st.max_vertices,
                max_edges: st.max_edges,
                max_property_bytes: st.max_property_bytes,
            },
            results: Mutex::new(Results::default()),
            max_results: st.max_retained_results,
            max_result_bytes: st.max_result_bytes,
            hard_stop: AtomicBool::new(false),
            algo_tx: Mutex::new(Some(algo_tx)),
            backup_tx: Mutex::new(Some(backup_tx)),
            backups,
            schemas,
            sync_queries: tokio::sync::Semaphore::new(st.max_sync_queries),
        });
        let mut report = inner.recover();
        if let Some(b) = &inner.backups {
            report.settled += b.recover(engine);
        }
        if let Some(s) = &inner.schemas {
            report.settled += s.recover();
        }
        let mut workers = Vec::new();
        for i in 0..st.workers {
            let (inner, jobs) = (inner.clone(), jobs.clone());
            workers.push(
                thread::Builder::new()
                    .name(format!("store-worker-{i}"))
                    .spawn(move || {
                        while let Ok(job) = jobs.recv() {
                            inner.run_job(&job);
                        }
                    })?,
            );
        }
        let algo_rx = Arc::new(Mutex::new(algo_rx));
        for i in 0..st.algorithm_workers {
            let (inner, rx) = (inner.clone(), algo_rx.clone());
            workers.push(
                thread::Builder::new()
                    .name(format!("algorithm-{i}"))
                    .spawn(move || {
                        loop {
                            let next = rx.lock().map(|r| r.recv());
                            match next {
                                Ok(Ok(job)) => inner.run_algorithm(job),
                                _ => return,
                            }
                        }
                    })?,
            );
        }
        {
            let inner = inner.clone();
            workers.push(
                thread::Builder::new()
                    .name("backup".to_owned())
                    .spawn(move || {
                        while let Ok(job) = backup_rx.recv() {
                            inner.run_backup(job);
                        }
                    })?,
            );
        }
        Ok((StoreHost { inner, workers }, report))
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// Stops the host: shuts the engine down for new jobs, closes the
    /// algorithm queue, lets the workers finish for at most `grace`, then
    /// fails what is left ("the host stopped") and joins them.
    pub fn stop(self, grace: Duration) -> crate::sim::SimStopReport {
        self.inner.engine.shutdown();
        if let Ok(mut tx) = self.inner.algo_tx.lock() {
            tx.take();
        }
        if let Ok(mut tx) = self.inner.backup_tx.lock() {
            tx.take();
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && !self.workers.iter().all(JoinHandle::is_finished) {
            thread::sleep(Duration::from_millis(5));
        }
        let drained = self.workers.iter().all(JoinHandle::is_finished);
        self.inner.hard_stop.store(true, Ordering::Release);
        for w in self.workers {
            let _ = w.join();
        }
        crate::sim::SimStopReport { drained }
    }
}

impl Inner {
    fn slot(&self, key: &GraphKey) -> Arc<Slot> {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.entry(key.clone()).or_default().clone()
    }

    /// The loaded data of a graph, if any.
    pub(crate) fn data(&self, key: &GraphKey) -> Option<Arc<GraphData>> {
        let slot = self.slots.lock().ok()?.get(key).cloned()?;
        let data = slot.data.read().ok()?;
        data.clone()
    }

    /// The backups, if this host keeps any.
    pub(crate) fn backups(&self) -> Option<Arc<crate::backup::Backups>> {
        self.backups.clone()
    }

    /// The stored schemas, if this host keeps any.
    pub(crate) fn schemas(&self) -> Option<Arc<crate::catalog::Schemas>> {
        self.schemas.clone()
    }

    /// Most edges a graph may hold.
    pub(crate) fn max_edges(&self) -> u64 {
        self.caps.max_edges
    }

    /// The graph was removed without `keep_backup`: its backups go.
    pub(crate) fn drop_backups(&self, key: &GraphKey) {
        if let Some(b) = &self.backups {
            b.remove_graph(key);
        }
    }

    /// The graph is gone: its data goes too.
    pub(crate) fn forget(&self, key: &GraphKey) {
        let slot = self.slots.lock().ok().and_then(|mut s| s.remove(key));
        if let Some(slot) = slot {
            let _g = slot.commit.lock();
            if let Ok(mut d) = slot.data.write() {
                *d = None;
            }
        }
        match &self.persist {
            Persist::Dir(_) => {
                if let Some(dir) = self.dir(key)
                    && let Err(e) = dir.remove()
                {
                    tracing::warn!(graph = %key, error = %e, "the removed graph's data could not be deleted");
                }
            }
            Persist::Memory(m) => {
                if let Ok(mut m) = m.lock() {
                    m.remove(key);
                }
            }
        }
    }

    fn dir(&self, key: &GraphKey) -> Option<GraphDir> {
        match &self.persist {
            Persist::Dir(root) => Some(GraphDir::new(
                root.join(key.project.as_str()).join(key.graph.as_str()),
                format!("graphs/{}/{}", key.project, key.graph),
            )),
            Persist::Memory(_) => None,
        }
    }

    /// The stamp data of this graph carries: its creation time.
    fn stamp(&self, key: &GraphKey) -> Option<u64> {
        self.engine
            .graph_info(key)
            .ok()
            .map(|g| g.created_at.as_millis())
    }

    /// The graph's stored data (empty if none, or if it belongs to an
    /// earlier graph of the same name).
    fn load(&self, key: &GraphKey) -> Result<GraphData, StoreError> {
        match &self.persist {
            Persist::Memory(m) => Ok(m
                .lock()
                .ok()
                .and_then(|m| m.get(key).map(|g| GraphData::clone(g)))
                .unwrap_or_default()),
            Persist::Dir(_) => {
                let Some(dir) = self.dir(key) else {
                    return Ok(GraphData::new());
                };
                match dir.load()? {
                    Some((stamp, g)) if Some(stamp) == self.stamp(key) => Ok(g),
                    Some(_) => {
                        tracing::warn!(graph = %key, "stored data of an earlier graph of this name is ignored");
                        Ok(GraphData::new())
                    }
                    None => Ok(GraphData::new()),
                }
            }
        }
    }

    fn recover(&self) -> StartReport {
        let mut report = StartReport::default();
        if let Persist::Dir(root) = &self.persist {
            for (project, graph) in list_graph_dirs(root) {
                let Ok(key) = GraphKey::parse(&project, &graph) else {
                    continue;
                };
                let Some(dir) = self.dir(&key) else { continue };
                if self.engine.graph(&key).is_err() {
                    if dir.remove().is_ok() {
                        report.orphans += 1;
                    }
                    continue;
                }
                let succeeded = |job: &str| {
                    JobId::parse(job)
                        .ok()
                        .and_then(|j| self.engine.task(&key, j).ok())
                        .is_some_and(|t| t.status == TaskStatus::Succeeded)
                };
                match dir.recover(succeeded) {
                    Ok(r) => report.settled += r.confirmed + r.rolled_back,
                    Err(e) => {
                        tracing::error!(graph = %key, error = %e, "graph data could not be recovered")
                    }
                }
            }
        }
        for key in self.engine.keys() {
            let serves = self.engine.graph(&key).is_ok_and(|h| h.serves_queries());
            if !serves {
                continue;
            }
            match self.load(&key) {
                Ok(g) => {
                    let slot = self.slot(&key);
                    if let Ok(mut d) = slot.data.write() {
                        *d = Some(Arc::new(g));
                    }
                    report.loaded += 1;
                }
                Err(e) => {
                    tracing::error!(graph = %key, error = %e, "graph data could not be loaded");
                    report.failed += 1;
                }
            }
        }
        report
    }

    fn run_job(&self, job: &Job) {
        if job.token.is_void() || self.engine.report(&job.task, Report::Started).is_err() {
            return;
        }
        let key = job.key();
        let outcome = match &job.kind {
            TaskKind::Start if !job.payload.as_bytes().is_empty() => self.restore(key, job),
            TaskKind::Start => self.load_into(key, job),
            TaskKind::Restart => {
                self.unload(key);
                self.load_into(key, job)
            }
            TaskKind::Stop => {
                self.unload(key);
                Ok(())
            }
            TaskKind::Import => self.import(key, job),
            TaskKind::Export => self.export(key, job),
            TaskKind::Clear { clear_metadata } => {
                let base = self.data(key).unwrap_or_default();
                self.replace(key, job, base.cleared(*clear_metadata))
            }
            TaskKind::Host(_) => return,
        };
        match outcome {
            Ok(()) => {
                let _ = self.engine.report(&job.task, Report::Succeeded);
            }
            Err(Done::Reported | Done::Voided) => {}
            Err(Done::Failed(why)) => {
                if !job.token.is_void() {
                    let _ = self.engine.report(&job.task, Report::Failed(reason(why)));
                }
            }
        }
    }

    fn unload(&self, key: &GraphKey) {
        let slot = self.slot(key);
        let _g = slot.commit.lock();
        if let Ok(mut d) = slot.data.write() {
            *d = None;
        }
    }

    fn load_into(&self, key: &GraphKey, job: &Job) -> Result<(), Done> {
        let slot = self.slot(key);
        let _g = slot.commit.lock();
        let g = self
            .load(key)
            .map_err(|e| Done::Failed(format!("cannot load graph {key}: {e}")))?;
        if job.token.is_void() {
            return Err(Done::Voided);
        }
        if let Ok(mut d) = slot.data.write() {
            *d = Some(Arc::new(g));
        }
        Ok(())
    }

    /// A start that names a backup: the backup is read whole and checked,
    /// then stored as the graph's data and loaded, as an import's data is
    /// ([`Inner::replace`]); a damaged backup fails the start and nothing
    /// of it is loaded.
    fn restore(&self, key: &GraphKey, job: &Job) -> Result<(), Done> {
        let fail = |e: String| Done::Failed(format!("cannot start graph {key} from a backup: {e}"));
        let req: crate::wire::StartGraphRequest = serde_json::from_slice(job.payload.as_bytes())
            .map_err(|e| fail(format!("the start request: {e}")))?;
        let Some(id) = req.graph_backup_id else {
            return self.load_into(key, job);
        };
        let backups = self
            .backups
            .as_ref()
            .ok_or_else(|| fail("this server keeps no backups".into()))?;
        let id = JobId::parse(&id).map_err(|_| fail(format!("backup id {id:?} is malformed")))?;
        let record = backups
            .get(key.project.as_str(), id)
            .filter(|r| r.graph == key.graph.as_str())
            .ok_or_else(|| fail(format!("backup {id} is not found")))?;
        let g = backups
            .read_data(&record)
            .map_err(|e| fail(format!("backup {id}: {e}")))?;
        if job.token.is_void() {
            return Err(Done::Voided);
        }
        self.replace(key, job, g)
    }

    fn import(&self, key: &GraphKey, job: &Job) -> Result<(), Done> {
        let fail = |e: String| Done::Failed(format!("import into graph {key} failed: {e}"));
        let spec = self
            .import_spec(key, job)
            .map_err(|e| fail(e.to_string()))?;
        let base = self.data(key).unwrap_or_default();
        let control = JobControl {
            engine: &self.engine,
            job,
        };
        let (g, stats) =
            match graph_lifecycle_store::import::import(&base, &spec, &self.caps, &control) {
                Ok(x) => x,
                Err(StoreError::Cancelled) => return Err(Done::Voided),
                Err(e) => return Err(fail(e.to_string())),
            };
        drop(base);
        tracing::info!(
            graph = %key, job = %job.id(), vertices = stats.vertices, edges = stats.edges,
            skipped_edges = stats.skipped_edges, bytes = stats.bytes, "import read"
        );
        self.replace(key, job, g)
    }

    fn import_spec(&self, key: &GraphKey, job: &Job) -> Result<ImportSpec, StoreError> {
        let req: crate::wire::ImportGraphRequest =
            serde_json::from_slice(job.payload.as_bytes())
                .map_err(|e| StoreError::Request(format!("the import request: {e}")))?;
        let root = self
            .import_root
            .as_ref()
            .map_err(|e| StoreError::Request(e.clone()))?;
        let source = |p: &Option<String>| -> Result<Option<Source>, StoreError> {
            p.as_ref()
                .map(|name| {
                    root.file(name).map(|path| Source {
                        name: name.clone(),
                        path,
                    })
                })
                .transpose()
        };
        for (field, format) in [
            ("edgeset_format", &req.edgeset_format),
            ("vertexset_format", &req.vertexset_format),
        ] {
            if let Some(f) = format
                && !f.eq_ignore_ascii_case("csv")
            {
                return Err(StoreError::Request(format!("{field} must be csv")));
            }
        }
        let one_byte = |field: &str,
                        v: &Option<String>,
                        default: Option<u8>|
         -> Result<Option<u8>, StoreError> {
            match v.as_deref() {
                None => Ok(default),
                Some("") if field == "trim_quote" => Ok(None),
                Some(s) if s.len() == 1 && s.is_ascii() && s != "\n" && s != "\r" => {
                    Ok(Some(s.as_bytes()[0]))
                }
                Some(_) => Err(StoreError::Request(format!(
                    "{field} must be one ASCII character"
                ))),
            }
        };
        let parallel_edges = match req
            .parallel_edge
            .as_ref()
            .and_then(|p| p.get("edge_strategy"))
            .and_then(|v| v.as_str())
        {
            None | Some("allow") => ParallelEdges::Allow,
            Some("ignore") => ParallelEdges::Ignore,
            Some(other) => {
                return Err(StoreError::Request(format!(
                    "parallel_edge.edge_strategy {} is not allow or ignore",
                    graph_lifecycle_store::error::quote(other)
                )));
            }
        };
        let delimiter = one_byte("delimiter", &req.delimiter, Some(b','))?.unwrap_or(b',');
        let quote = one_byte("trim_quote", &req.trim_quote, Some(b'"'))?;
        if quote == Some(delimiter) {
            return Err(StoreError::Request(
                "trim_quote and delimiter must differ".into(),
            ));
        }
        // A stored schema, named by its metadata_path, name or id, comes
        // before a file of the import root.
        let stored = req.schema_path.as_ref().and_then(|name| {
            let path = self.schemas.as_ref()?.resolve(key.project.as_str(), name)?;
            Some(Source {
                name: name.clone(),
                path,
            })
        });
        let schema = match stored {
            Some(s) => Some(s),
            None => source(&req.schema_path)?,
        };
        Ok(ImportSpec {
            schema,
            vertices: source(&req.vertexset_path)?,
            edges: source(&req.edgeset_path)?,
            delimiter,
            quote,
            parallel_edges,
        })
    }

    fn export(&self, key: &GraphKey, job: &Job) -> Result<(), Done> {
        let fail = |e: String| Done::Failed(format!("export of graph {key} failed: {e}"));
        let req: crate::wire::ExportGraphRequest =
            serde_json::from_slice(job.payload.as_bytes())
                .map_err(|e| fail(format!("the export request: {e}")))?;
        let root = self.export_root.as_ref().map_err(|e| fail(e.clone()))?;
        let dir = req
            .graph_export_path
            .as_deref()
            .ok_or_else(|| fail("graph_export_path is required".into()))?;
        let mut names = ExportNames::default();
        for (given, slot) in [
            (&req.schema_name, &mut names.schema),
            (&req.vertex_set_name, &mut names.vertices),
            (&req.edge_set_name, &mut names.edges),
        ] {
            if let Some(n) = given {
                *slot = file_name(n).map_err(|e| fail(e.to_string()))?.to_owned();
            }
        }
        if names.schema == names.vertices
            || names.vertices == names.edges
            || names.schema == names.edges
        {
            return Err(fail("the three file names must differ".into()));
        }
        let path = root.directory(dir).map_err(|e| fail(e.to_string()))?;
        let data = self.data(key).unwrap_or_default();
        let control = JobControl {
            engine: &self.engine,
            job,
        };
        match graph_lifecycle_store::export::export(&data, &path, &names, &control) {
            Ok(()) => Ok(()),
            Err(StoreError::Cancelled) => Err(Done::Voided),
            Err(e) => Err(fail(e.to_string())),
        }
    }

    /// Replaces the graph's data with `new` if the job is still live, and
    /// reports its success; puts the previous data back if the core
    /// refuses the report.
    fn replace(&self, key: &GraphKey, job: &Job, new: GraphData) -> Result<(), Done> {
        let stamp = self.stamp(key).ok_or(Done::Voided)?;
        let dir = self.dir(key);
        let job_name = job.id().to_string();
        let staged = match &dir {
            Some(d) => Some(
                d.stage(&new, stamp, &job_name)
                    .map_err(|e| Done::Failed(format!("cannot store graph {key}: {e}")))?,
            ),
            None => None,
        };
        let slot = self.slot(key);
        let _g = slot.commit.lock();
        if job.token.is_void() {
            return Err(Done::Voided);
        }
        let new = Arc::new(new);
        let committed = match staged {
            Some(s) => Some(
                s.commit()
                    .map_err(|e| Done::Failed(format!("cannot store graph {key}: {e}")))?,
            ),
            None => None,
        };
        let mut previous_in_memory = None;
        if let Persist::Memory(m) = &self.persist
            && let Ok(mut m) = m.lock()
        {
            previous_in_memory = Some(m.insert(key.clone(), new.clone()));
        }
        let previous = slot
            .data
            .write()
            .map(|mut d| d.replace(new))
            .unwrap_or_default();
        match self.engine.report(&job.task, Report::Succeeded) {
            Ok(()) => {
                if let Some(c) = committed
                    && let Err(e) = c.confirm()
                {
                    tracing::warn!(graph = %key, error = %e, "the previous data could not be deleted");
                }
                Err(Done::Reported)
            }
            Err(_) => {
                if let Some(c) = committed
                    && let Err(e) = c.roll_back()
                {
                    tracing::error!(graph = %key, error = %e, "the previous data could not be put back");
                }
                if let (Persist::Memory(m), Some(prev)) = (&self.persist, previous_in_memory)
                    && let Ok(mut m) = m.lock()
                {
                    match prev {
                        Some(p) => m.insert(key.clone(), p),
                        None => m.remove(key),
                    };
                }
                if let Ok(mut d) = slot.data.write() {
                    *d = previous;
                }
                Err(Done::Voided)
            }
        }
    }

    /// Queues a backup registered as a host task.
    pub(crate) fn submit_backup(&self, ticket: Job, data: Arc<GraphData>) -> Result<(), Box<Job>> {
        let tx = self.backup_tx.lock().ok().and_then(|t| t.clone());
        let queued = graph_lifecycle::SystemClock.now();
        match tx {
            Some(tx) => tx
                .send(BackupJob {
                    ticket,
                    data,
                    queued,
                })
                .map_err(|e| Box::new(e.0.ticket)),
            None => Err(Box::new(ticket)),
        }
    }

    /// Whether a worker goes on with host task `t`: not if the host is
    /// stopping hard (the task fails), nor if the task was voided or has
    /// started already (a retry's second ticket: the core refuses its
    /// `Started`).
    fn start_host_task(&self, t: &Job) -> bool {
        if self.hard_stop.load(Ordering::Acquire) {
            let _ = self
                .engine
                .report(&t.task, Report::Failed("the host stopped".into()));
            return false;
        }
        !t.token.is_void() && self.engine.report(&t.task, Report::Started).is_ok()
    }

    fn run_backup(&self, job: BackupJob) {
        let t = &job.ticket;
        let Some(backups) = &self.backups else {
            let _ = self.engine.report(
                &t.task,
                Report::Failed("this server keeps no backups".into()),
            );
            return;
        };
        if !self.start_host_task(t) {
            return;
        }
        let control = StoppingControl {
            job: JobControl {
                engine: &self.engine,
                job: t,
            },
            hard_stop: &self.hard_stop,
        };
        let started = graph_lifecycle::SystemClock.now().max(job.queued);
        match backups.write(t.key(), t.id(), started, &job.data, &control) {
            Ok(record) => {
                if self.engine.report(&t.task, Report::Succeeded).is_err()
                    && let Ok(id) = JobId::parse(&record.id)
                {
                    // A forced restart failed the task meanwhile: the
                    // backup goes with it.
                    let _ = backups.remove(&record.project, id);
                }
            }
            Err(StoreError::Cancelled) if !t.token.is_void() => {
                let _ = self
                    .engine
                    .report(&t.task, Report::Failed("the host stopped".into()));
            }
            Err(StoreError::Cancelled) => {}
            Err(e) => {
                let _ = self.engine.report(
                    &t.task,
                    Report::Failed(reason(format!("the backup failed: {e}"))),
                );
            }
        }
    }

    /// Queues an algorithm run registered as a host task.
    pub(crate) fn submit(
        &self,
        ticket: Job,
        run: crate::service::AlgoRun,
        data: Arc<GraphData>,
    ) -> Result<(), Box<Job>> {
        let tx = self.algo_tx.lock().ok().and_then(|t| t.clone());
        match tx {
            Some(tx) => tx
                .send(AlgoJob { ticket, run, data })
                .map_err(|e| Box::new(e.0.ticket)),
            None => Err(Box::new(ticket)),
        }
    }

    fn run_algorithm(&self, job: AlgoJob) {
        let t = &job.ticket;
        if !self.start_host_task(t) {
            return;
        }
        let control = JobControl {
            engine: &self.engine,
            job: t,
        };
        match job.run.execute(&job.data, &control) {
            Ok(out) => {
                let out = Arc::new(out);
                self.keep_result(t.id(), out);
                if self.engine.report(&t.task, Report::Succeeded).is_err() {
                    self.drop_result(t.id());
                }
            }
            Err(StoreError::Cancelled) => {}
            Err(e) => {
                let _ = self
                    .engine
                    .report(&t.task, Report::Failed(reason(e.to_string())));
            }
        }
    }

    fn keep_result(&self, id: JobId, out: Arc<crate::service::Output>) {
        let Ok(mut r) = self.results.lock() else {
            return;
        };
        let size = out.approx_bytes();
        r.map.insert(id, out);
        r.order.push_back((id, size));
        r.bytes += size;
        while r.order.len() > 1
            && (r.order.len() > self.max_results || r.bytes > self.max_result_bytes)
        {
            if let Some((old, n)) = r.order.pop_front() {
                r.map.remove(&old);
                r.bytes -= n;
            }
        }
    }

    fn drop_result(&self, id: JobId) {
        let Ok(mut r) = self.results.lock() else {
            return;
        };
        if r.map.remove(&id).is_some()
            && let Some(i) = r.order.iter().position(|(j, _)| *j == id)
            && let Some((_, n)) = r.order.remove(i)
        {
            r.bytes -= n;
        }
    }

    /// The kept result of an algorithm task.
    pub(crate) fn result(&self, id: JobId) -> Option<Arc<crate::service::Output>> {
        self.results.lock().ok()?.map.get(&id).cloned()
    }
}

/// How a job ended, when not by success reported by [`Inner::run_job`].
enum Done {
    /// The worker reported the outcome itself.
    Reported,
    /// The token went void: no further report.
    Voided,
    /// Failed with this reason.
    Failed(String),
}

/// `(project, graph)` of every graph directory under `root`.
fn list_graph_dirs(root: &std::path::Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(projects) = std::fs::read_dir(root) else {
        return out;
    };
    for p in projects.filter_map(Result::ok) {
        let Ok(project) = p.file_name().into_string() else {
            continue;
        };
        let Ok(graphs) = std::fs::read_dir(p.path()) else {
            continue;
        };
        for g in graphs.filter_map(Result::ok) {
            if let Ok(graph) = g.file_name().into_string() {
                out.push((project.clone(), graph));
            }
        }
    }
    out
}
