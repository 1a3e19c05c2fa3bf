//! The engine handle: building and freeing an engine, the graph
//! operations, the job channel, reports, cancels and deadlines.
#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_void};
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, TryRecvError};
use graph_lifecycle::{
    Config, Engine, GraphHandle, HostKind, Job, JobId, JobReceiver, Payload, Report, TaskRef,
    TaskSpec, Timestamp,
};

use crate::args::{self, Out};
use crate::handles::{self, Kind};
use crate::status::{Fail, boundary, glc_status};
use crate::types::{
    GLC_NO_TIME, GLC_REPORT_FAILED, GLC_REPORT_PROGRESS, GLC_REPORT_STARTED, GLC_REPORT_SUCCEEDED,
    GLC_WAIT_FOREVER, glc_config, glc_graph_info, glc_graph_state, glc_job_id, glc_key,
    glc_report_kind, glc_restart, glc_task_ref,
};

/// An engine: the lifecycle core with its graphs, task tables and job
/// channel. Made by `glc_engine_new`, freed by `glc_engine_free`. Usable
/// from any number of threads at once.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct glc_engine {
    /// The handle's value; 0 is no engine.
    pub id: u64,
}

/// A graph, for cheap lock-free state reads. Made by `glc_create_graph` or
/// `glc_open_graph`, freed by `glc_graph_free`. It stays valid after the
/// graph is removed (it then reads `GRAPH_NOT_FOUND`) and does not keep the
/// engine alive (once the engine is gone it reads the state the graph last
/// had). Usable from any number of threads at once.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct glc_graph {
    /// The handle's value; 0 is no graph.
    pub id: u64,
}

/// A job received from the engine's job channel, or the ticket of a host
/// task from `glc_register_task`: where to report, what to do, the payload,
/// and the cancel token. Freed by `glc_job_free`. It keeps the engine
/// alive (reports on it keep working after `glc_engine_free`) until it is
/// freed. Usable from any number of threads at once.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct glc_job {
    /// The handle's value; 0 is no job.
    pub id: u64,
}

/// What an engine handle stands for: the engine and its job channel.
pub(crate) struct EngineObj {
    pub(crate) engine: Engine,
    jobs: JobReceiver,
}

impl Kind for EngineObj {
    const KIND: u8 = 1;
    const NAME: &'static str = "glc_engine";
}

impl Kind for GraphHandle {
    const KIND: u8 = 2;
    const NAME: &'static str = "glc_graph";
}

/// What a job handle stands for: the job and the engine to report to.
pub(crate) struct JobObj {
    pub(crate) job: Job,
    pub(crate) engine: Engine,
}

impl Kind for JobObj {
    const KIND: u8 = 3;
    const NAME: &'static str = "glc_job";
}

/// Fills `*out` with the engine's default configuration.
///
/// Returns `GLC_OK`, or `GLC_INVALID_ARGUMENT` if `out` is NULL.
///
/// Thread safety: any thread.
///
/// # Safety
///
/// `out` must be NULL or valid for writing one `glc_config`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_config_default(out: *mut glc_config) -> glc_status {
    boundary(|| {
        let out = Out::required(out, "out")?;
        // SAFETY: non-NULL, writable by the caller's promise.
        unsafe { out.put(glc_config::from(&Config::default())) };
        Ok(())
    })
}

/// Builds an engine with `config` (NULL for the defaults), on the system
/// clock with time-ordered (UUIDv7) job ids and no commit log, and writes
/// its handle to `*out`.
///
/// Returns `GLC_OK`; `GLC_INVALID_ARGUMENT` if `out` is NULL;
/// `GLC_HANDLE_LIMIT`.
///
/// Ownership: the caller owns the new handle and frees it with
/// `glc_engine_free`. The library reads `config` during the call only.
///
/// Thread safety: any thread.
///
/// # Safety
///
/// `config` must be NULL or valid for reading one `glc_config`; `out` must
/// be NULL or valid for writing one `glc_engine`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_engine_new(
    config: *const glc_config,
    out: *mut glc_engine,
) -> glc_status {
    boundary(|| {
        let out = Out::required(out, "out")?;
        let config = if config.is_null() {
            Config::default()
        } else {
            // SAFETY: non-NULL, readable by the caller's promise; the
            // struct is plain integers, valid for any bit pattern.
            Config::from(&unsafe { config.read() })
        };
        let (engine, jobs) = Engine::builder().config(config).build();
        let id = handles::insert(EngineObj { engine, jobs })?;
        // SAFETY: non-NULL, writable by the caller's promise.
        unsafe { out.put(glc_engine { id }) };
        Ok(())
    })
}

/// Shuts the engine down for work: from now on operations that would hand
/// over a job fail with `SHUT_DOWN`, and once the jobs already committed
/// are taken, `glc_recv_job` returns `GLC_CLOSED`, so worker loops end.
/// Reports, cancels and queries keep working, so workers can finish and
/// report what they hold. Calling it again does nothing.
///
/// Returns `GLC_OK` or `GLC_INVALID_HANDLE`.
///
/// Thread safety: any thread, concurrently with any call.
#[unsafe(no_mangle)]
pub extern "C" fn glc_engine_shutdown(engine: glc_engine) -> glc_status {
    boundary(|| {
        handles::get::<EngineObj>(engine.id)?.engine.shutdown();
        Ok(())
    })
}

/// Frees an engine handle: shuts the engine down (as
/// `glc_engine_shutdown`, so that workers blocked in `glc_recv_job` on it
/// return `GLC_CLOSED` once the channel is drained) and releases the
/// handle. The engine itself is dropped when the last call running on it
/// returns and the last `glc_job` handle from it is freed. Graph,
/// subscription and other handles made from it stay valid (freeable) but
/// no longer see changes.
///
/// Returns `GLC_OK` (also for the zero handle, which is no engine), or
/// `GLC_INVALID_HANDLE` for a handle already freed or never handed out.
///
/// Thread safety: any thread, also while other threads use the handle:
/// their calls either finish as if it came before or fail with
/// `GLC_INVALID_HANDLE`.
#[unsafe(no_mangle)]
pub extern "C" fn glc_engine_free(engine: glc_engine) -> glc_status {
    boundary(|| {
        if let Some(obj) = handles::remove::<EngineObj>(engine.id)? {
            obj.engine.shutdown();
        }
        Ok(())
    })
}

/// Looks an engine up.
fn engine(e: glc_engine) -> Result<std::sync::Arc<EngineObj>, Fail> {
    handles::get::<EngineObj>(e.id)
}

/// Writes a new job's id, if asked for.
///
/// # Safety
///
/// As [`Out::put`].
unsafe fn put_job(out: &Out<glc_job_id>, job: JobId) {
    // SAFETY: forwarded from the caller.
    unsafe { out.put(job.into()) }
}

/// Creates a graph, stopped, under `key`. With a request id, a retry gets
/// the first answer. If `out_graph` is not NULL, writes a graph handle for
/// lock-free state reads to it.
///
/// Returns `GLC_OK`; `GLC_ENGINE_ERROR` with `INVALID_ID`, `GRAPH_EXISTS`,
/// `TOO_MANY_GRAPHS`, `PROJECT_QUOTA` or `REQUEST_ID_REUSED`; `GLC_INVALID_ARGUMENT`;
/// `GLC_INVALID_HANDLE`; `GLC_HANDLE_LIMIT` (the graph is created all the
/// same).
///
/// Ownership: the caller owns the graph handle written to `*out_graph` and
/// frees it with `glc_graph_free`. `key` and `request_id` are read during
/// the call only.
///
/// Thread safety: any thread, concurrently with any call.
///
/// # Safety
///
/// `key` must be NULL or valid for reading one `glc_key` whose strings are
/// readable for their lengths; `request_id` must be readable for
/// `request_id_len` bytes unless that is 0; `out_graph` must be NULL or
/// valid for writing one `glc_graph`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_create_graph(
    engine: glc_engine,
    key: *const glc_key,
    request_id: *const c_char,
    request_id_len: usize,
    out_graph: *mut glc_graph,
) -> glc_status {
    boundary(|| {
        let out_graph = Out::optional(out_graph);
        // SAFETY: the caller promises readable key and request id.
        let (key, request) =
            unsafe { (args::key(key)?, args::request(request_id, request_id_len)?) };
        let e = self::engine(engine)?;
        let graph = e.engine.request(request).create_graph(&key)?;
        if !out_graph.is_null() {
            let id = handles::insert(graph)?;
            // SAFETY: non-NULL, writable by the caller's promise.
            unsafe { out_graph.put(glc_graph { id }) };
        }
        Ok(())
    })
}

/// Removes a stopped or abnormal graph with its task table. Live host tasks
/// it still had are dropped and their tokens go void.
///
/// Returns `GLC_OK`; `GLC_ENGINE_ERROR` with `INVALID_ID`,
/// `GRAPH_NOT_FOUND`, `TRANSITION_REFUSED` or `REQUEST_ID_REUSED`;
/// `GLC_INVALID_ARGUMENT`; `GLC_INVALID_HANDLE`.
///
/// Thread safety: any thread, concurrently with any call.
///
/// # Safety
///
/// As `glc_create_graph`, for `key` and `request_id`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_remove_graph(
    engine: glc_engine,
    key: *const glc_key,
    request_id: *const c_char,
    request_id_len: usize,
) -> glc_status {
    boundary(|| {
        // SAFETY: the caller promises readable key and request id.
        let (key, request) =
            unsafe { (args::key(key)?, args::request(request_id, request_id_len)?) };
        self::engine(engine)?
            .engine
            .request(request)
            .remove_graph(&key)?;
        Ok(())
    })
}

/// What the lifecycle operations share: the checks, then `op`, then the
/// job id out.
///
/// # Safety
///
/// As `glc_create_graph`, for `key`, `request_id` and `out_job`.
unsafe fn lifecycle(
    engine: glc_engine,
    key: *const glc_key,
    request_id: *const c_char,
    request_id_len: usize,
    out_job: *mut glc_job_id,
    op: impl FnOnce(
        &graph_lifecycle::Request<'_>,
        &graph_lifecycle::GraphKey,
    ) -> Result<JobId, graph_lifecycle::Error>,
) -> Result<(), Fail> {
    let out_job = Out::optional(out_job);
    // SAFETY: the caller promises readable key and request id.
    let (key, request) = unsafe { (args::key(key)?, args::request(request_id, request_id_len)?) };
    let e = self::engine(engine)?;
    let job = op(&e.engine.request(request), &key)?;
    // SAFETY: NULL or writable by the caller's promise.
    unsafe { put_job(&out_job, job) };
    Ok(())
}

/// Starts a stopped graph: it goes starting and a start job carrying
/// `payload` (the host's request, e.g. a backup to start from; may be
/// empty) is handed to the workers. Writes the job's id to `*out_job` if
/// that is not NULL.
///
/// Returns `GLC_OK`; `GLC_ENGINE_ERROR` with `INVALID_ID`,
/// `GRAPH_NOT_FOUND`, `TRANSITION_REFUSED`, `TOO_MANY_TASKS`,
/// `INVALID_ARGUMENT` (payload too large), `SHUT_DOWN` or
/// `REQUEST_ID_REUSED`; `GLC_INVALID_ARGUMENT`; `GLC_INVALID_HANDLE`.
///
/// Ownership: the payload is copied; the library reads the arguments
/// during the call only.
///
/// Thread safety: any thread, concurrently with any call.
///
/// # Safety
///
/// As `glc_create_graph`; `payload` must be readable for `payload_len`
/// bytes unless that is 0; `out_job` must be NULL or valid for writing one
/// `glc_job_id`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_start(
    engine: glc_engine,
    key: *const glc_key,
    payload: *const c_void,
    payload_len: usize,
    request_id: *const c_char,
    request_id_len: usize,
    out_job: *mut glc_job_id,
) -> glc_status {
    boundary(|| {
        // SAFETY: the caller promises a readable payload.
        let payload = Payload::new(unsafe { args::bytes(payload, payload_len, "payload")? });
        // SAFETY: forwarded from the caller.
        unsafe {
            lifecycle(engine, key, request_id, request_id_len, out_job, |r, k| {
                r.start_with(k, payload)
            })
        }
    })
}

/// Stops a running or abnormal graph: it goes stopping and a stop job is
/// handed over. Writes the job's id to `*out_job` if that is not NULL.
///
/// Returns as `glc_start`.
///
/// Thread safety: any thread, concurrently with any call.
///
/// # Safety
///
/// As `glc_start`, without the payload.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_stop(
    engine: glc_engine,
    key: *const glc_key,
    request_id: *const c_char,
    request_id_len: usize,
    out_job: *mut glc_job_id,
) -> glc_status {
    boundary(|| {
        // SAFETY: forwarded from the caller.
        unsafe {
            lifecycle(engine, key, request_id, request_id_len, out_job, |r, k| {
                r.stop(k)
            })
        }
    })
}

/// Imports into a running graph: it goes importing (and keeps serving
/// queries) and an import job carrying `payload` (paths, format: the
/// host's request) is handed over. Writes the job's id to `*out_job` if
/// that is not NULL.
///
/// Returns as `glc_start`.
///
/// Thread safety: any thread, concurrently with any call.
///
/// # Safety
///
/// As `glc_start`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_import(
    engine: glc_engine,
    key: *const glc_key,
    payload: *const c_void,
    payload_len: usize,
    request_id: *const c_char,
    request_id_len: usize,
    out_job: *mut glc_job_id,
) -> glc_status {
    boundary(|| {
        // SAFETY: the caller promises a readable payload.
        let payload = Payload::new(unsafe { args::bytes(payload, payload_len, "payload")? });
        // SAFETY: forwarded from the caller.
        unsafe {
            lifecycle(engine, key, request_id, request_id_len, out_job, |r, k| {
                r.import(k, payload)
            })
        }
    })
}

/// Exports a running graph: it goes exporting (and keeps serving queries)
/// and an export job carrying `payload` is handed over. Writes the job's
/// id to `*out_job` if that is not NULL.
///
/// Returns as `glc_start`.
///
/// Thread safety: any thread, concurrently with any call.
///
/// # Safety
///
/// As `glc_start`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_export(
    engine: glc_engine,
    key: *const glc_key,
    payload: *const c_void,
    payload_len: usize,
    request_id: *const c_char,
    request_id_len: usize,
    out_job: *mut glc_job_id,
) -> glc_status {
    boundary(|| {
        // SAFETY: the caller promises a readable payload.
        let payload = Payload::new(unsafe { args::bytes(payload, payload_len, "payload")? });
        // SAFETY: forwarded from the caller.
        unsafe {
            lifecycle(engine, key, request_id, request_id_len, out_job, |r, k| {
                r.export(k, payload)
            })
        }
    })
}

/// Clears a running graph's data, and its schema too if `clear_metadata`:
/// it goes clearing and a clear job is handed over. Writes the job's id to
/// `*out_job` if that is not NULL.
///
/// Returns as `glc_start`.
///
/// Thread safety: any thread, concurrently with any call.
///
/// # Safety
///
/// As `glc_stop`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_clear(
    engine: glc_engine,
    key: *const glc_key,
    clear_metadata: bool,
    request_id: *const c_char,
    request_id_len: usize,
    out_job: *mut glc_job_id,
) -> glc_status {
    boundary(|| {
        // SAFETY: forwarded from the caller.
        unsafe {
            lifecycle(engine, key, request_id, request_id_len, out_job, |r, k| {
                r.clear(k, clear_metadata)
            })
        }
    })
}

/// The forced restart, allowed in every state. In one atomic step every
/// live task of the graph fails ("force-restarted by job X") and its token
/// goes void, the epoch grows by one, the graph enters restarting, and one
/// restart job is handed over. Writes the restart job's id, the new epoch
/// and the number of failed tasks to `*out` if that is not NULL.
///
/// With a request id (an idempotency key: 1 to 256 bytes of printable
/// ASCII), a retry within the graph's window gets the first restart back
/// and restarts nothing.
///
/// Returns `GLC_OK`; `GLC_ENGINE_ERROR` with `INVALID_ID`,
/// `GRAPH_NOT_FOUND`, `SHUT_DOWN` or `REQUEST_ID_REUSED`;
/// `GLC_INVALID_ARGUMENT`; `GLC_INVALID_HANDLE`.
///
/// Thread safety: any thread, concurrently with any call.
///
/// # Safety
///
/// As `glc_create_graph`, for `key` and `request_id`; `out` must be NULL
/// or valid for writing one `glc_restart`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_force_restart(
    engine: glc_engine,
    key: *const glc_key,
    request_id: *const c_char,
    request_id_len: usize,
    out: *mut glc_restart,
) -> glc_status {
    boundary(|| {
        let out = Out::optional(out);
        // SAFETY: the caller promises readable key and request id.
        let (key, request) =
            unsafe { (args::key(key)?, args::request(request_id, request_id_len)?) };
        let r = self::engine(engine)?
            .engine
            .request(request)
            .force_restart(&key)?;
        let restart = glc_restart {
            job: r.job.into(),
            epoch: r.epoch.0,
            failed: r.failed,
        };
        // SAFETY: NULL or writable by the caller's promise.
        unsafe { out.put(restart) };
        Ok(())
    })
}

/// Registers a task of the host's own (an algorithm run, an asynchronous
/// query) on a graph that serves queries (running, importing, exporting).
/// The engine tracks it and hands nothing over: the ticket written to
/// `*out_ticket` is the host's job handle for reports and its cancel
/// token.
///
/// `kind_name` is the kind (1 to 64 bytes of `[A-Za-z0-9_-]`);
/// `stoppable` whether callers may cancel it; `timeout_ms` its timeout
/// from now (0 = none; it fires when the host calls `glc_expire`);
/// `payload` the host's request (copied; may be empty).
///
/// Returns `GLC_OK`; `GLC_ENGINE_ERROR` with `INVALID_ID`,
/// `GRAPH_NOT_FOUND`, `TRANSITION_REFUSED`, `TOO_MANY_TASKS`,
/// `INVALID_ARGUMENT` or `REQUEST_ID_REUSED`; `GLC_INVALID_ARGUMENT`;
/// `GLC_INVALID_HANDLE`; `GLC_HANDLE_LIMIT`.
///
/// Ownership: the caller owns the ticket and frees it with
/// `glc_job_free`.
///
/// Thread safety: any thread, concurrently with any call.
///
/// # Safety
///
/// As `glc_start`; `kind_name` must be readable for `kind_name_len` bytes
/// unless that is 0; `out_ticket` must be NULL or valid for writing one
/// `glc_job`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_register_task(
    engine: glc_engine,
    key: *const glc_key,
    kind_name: *const c_char,
    kind_name_len: usize,
    stoppable: bool,
    timeout_ms: u64,
    payload: *const c_void,
    payload_len: usize,
    request_id: *const c_char,
    request_id_len: usize,
    out_ticket: *mut glc_job,
) -> glc_status {
    boundary(|| {
        let out_ticket = Out::required(out_ticket, "out_ticket")?;
        // SAFETY: the caller promises readable arguments for their lengths.
        let (key, request, kind, payload) = unsafe {
            (
                args::key(key)?,
                args::request(request_id, request_id_len)?,
                args::text(kind_name, kind_name_len, "kind_name")?,
                args::bytes(payload, payload_len, "payload")?,
            )
        };
        let mut spec = TaskSpec::new(HostKind::new(kind)?)
            .stoppable(stoppable)
            .payload(payload.to_vec());
        if timeout_ms != 0 {
            spec = spec.timeout(Duration::from_millis(timeout_ms));
        }
        let e = self::engine(engine)?;
        let job = e.engine.request(request).register_task(&key, spec)?;
        let id = handles::insert(JobObj {
            job,
            engine: e.engine.clone(),
        })?;
        // SAFETY: non-NULL, writable by the caller's promise.
        unsafe { out_ticket.put(glc_job { id }) };
        Ok(())
    })
}

/// A report from its C parts.
///
/// # Safety
///
/// `message` readable for `message_len` bytes unless that is 0.
pub(crate) unsafe fn report(
    kind: glc_report_kind,
    progress: u8,
    message: *const c_char,
    message_len: usize,
) -> Result<Report, Fail> {
    Ok(match kind {
        GLC_REPORT_STARTED => Report::Started,
        GLC_REPORT_PROGRESS => Report::Progress(progress),
        GLC_REPORT_SUCCEEDED => Report::Succeeded,
        GLC_REPORT_FAILED => {
            // SAFETY: forwarded from the caller.
            Report::Failed(unsafe { args::text(message, message_len, "message")? }.to_owned())
        }
        other => {
            return Err(Fail::invalid(format!(
                "report kind {other} is none of GLC_REPORT_STARTED, _PROGRESS, _SUCCEEDED, _FAILED"
            )));
        }
    })
}

/// Reports on a task by its address (graph, id, epoch), for a host that
/// keeps those rather than the `glc_job` handle: `kind` is one of
/// `GLC_REPORT_STARTED`, `GLC_REPORT_PROGRESS` (with `progress`, 0 to
/// 100), `GLC_REPORT_SUCCEEDED`, `GLC_REPORT_FAILED` (with `message`,
/// UTF-8, may be empty). `progress` is read only for a progress report and
/// `message` only for a failure.
///
/// A `STALE_EPOCH` or `TASK_TERMINAL` answer means the work is void (a
/// forced restart, a cancel or a timeout ended it): stop, and do not
/// report again.
///
/// Returns `GLC_OK`; `GLC_ENGINE_ERROR` with `INVALID_ID`,
/// `GRAPH_NOT_FOUND`, `TASK_NOT_FOUND`, `STALE_EPOCH`, `TASK_TERMINAL`,
/// `REPORT_REFUSED`, `BAD_PROGRESS`, `INVALID_ARGUMENT` (message too
/// long) or `REQUEST_ID_REUSED`; `GLC_INVALID_ARGUMENT` (also for an
/// unknown `kind`); `GLC_INVALID_HANDLE`.
///
/// Thread safety: any thread, concurrently with any call.
///
/// # Safety
///
/// `task` must be NULL or valid for reading one `glc_task_ref` whose key
/// strings are readable for their lengths; `message` and `request_id` must
/// be readable for their lengths unless those are 0.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_report(
    engine: glc_engine,
    task: *const glc_task_ref,
    kind: glc_report_kind,
    progress: u8,
    message: *const c_char,
    message_len: usize,
    request_id: *const c_char,
    request_id_len: usize,
) -> glc_status {
    boundary(|| {
        if task.is_null() {
            return Err(Fail::null("task"));
        }
        // SAFETY: non-NULL, readable by the caller's promise; plain data.
        let t = unsafe { task.read() };
        // SAFETY: the caller promises readable strings for their lengths.
        let (key, report, request) = unsafe {
            (
                args::key(&t.key)?,
                report(kind, progress, message, message_len)?,
                args::request(request_id, request_id_len)?,
            )
        };
        let task = TaskRef::new(key, t.id.into(), graph_lifecycle::Epoch(t.epoch));
        self::engine(engine)?
            .engine
            .request(request)
            .report(&task, report)?;
        Ok(())
    })
}

/// Cancels a stoppable live task (a host task or a lifecycle job other
/// than a restart); a lifecycle job's graph goes where the outcome table
/// says. The task's token goes void.
///
/// Returns `GLC_OK`; `GLC_ENGINE_ERROR` with `INVALID_ID`,
/// `GRAPH_NOT_FOUND`, `TASK_NOT_FOUND`, `TASK_TERMINAL`, `STALE_EPOCH`,
/// `NOT_STOPPABLE` or `REQUEST_ID_REUSED`; `GLC_INVALID_ARGUMENT`;
/// `GLC_INVALID_HANDLE`.
///
/// Thread safety: any thread, concurrently with any call.
///
/// # Safety
///
/// As `glc_create_graph`, for `key` and `request_id`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_cancel(
    engine: glc_engine,
    key: *const glc_key,
    job: glc_job_id,
    request_id: *const c_char,
    request_id_len: usize,
) -> glc_status {
    boundary(|| {
        // SAFETY: the caller promises readable key and request id.
        let (key, request) =
            unsafe { (args::key(key)?, args::request(request_id, request_id_len)?) };
        self::engine(engine)?
            .engine
            .request(request)
            .cancel(&key, job.into())?;
        Ok(())
    })
}

/// Writes a graph handle for `key` to `*out`, for lock-free state reads.
///
/// Returns `GLC_OK`; `GLC_ENGINE_ERROR` with `INVALID_ID` or
/// `GRAPH_NOT_FOUND`; `GLC_INVALID_ARGUMENT`; `GLC_INVALID_HANDLE`;
/// `GLC_HANDLE_LIMIT`.
///
/// Ownership: the caller owns the handle and frees it with
/// `glc_graph_free`.
///
/// Thread safety: any thread, concurrently with any call.
///
/// # Safety
///
/// As `glc_create_graph`, for `key`; `out` must be NULL or valid for
/// writing one `glc_graph`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_open_graph(
    engine: glc_engine,
    key: *const glc_key,
    out: *mut glc_graph,
) -> glc_status {
    boundary(|| {
        let out = Out::required(out, "out")?;
        // SAFETY: the caller promises a readable key.
        let key = unsafe { args::key(key)? };
        let graph = self::engine(engine)?.engine.graph(&key)?;
        let id = handles::insert(graph)?;
        // SAFETY: non-NULL, writable by the caller's promise.
        unsafe { out.put(glc_graph { id }) };
        Ok(())
    })
}

/// Reads the graph's state (one atomic load, no lock in the engine) into
/// `*out_state`, and its epoch into `*out_epoch` if that is not NULL; both
/// from the same load.
///
/// Returns `GLC_OK`; `GLC_ENGINE_ERROR` with `GRAPH_NOT_FOUND` once the
/// graph is removed (or its engine's state was replaced);
/// `GLC_INVALID_ARGUMENT`; `GLC_INVALID_HANDLE`.
///
/// Thread safety: any thread, concurrently with any call.
///
/// # Safety
///
/// `out_state` must be NULL or valid for writing one `glc_graph_state`;
/// `out_epoch` NULL or valid for writing one `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_graph_get_state(
    graph: glc_graph,
    out_state: *mut glc_graph_state,
    out_epoch: *mut u64,
) -> glc_status {
    boundary(|| {
        let out_state = Out::required(out_state, "out_state")?;
        let out_epoch = Out::optional(out_epoch);
        let status = handles::with::<GraphHandle, _>(graph.id, |g| {
            g.status()
                .ok_or_else(|| graph_lifecycle::Error::GraphNotFound {
                    key: g.key().clone(),
                })
        })??;
        // SAFETY: writable (or NULL, for the epoch) by the caller's promise.
        unsafe {
            out_state.put(status.0.into());
            out_epoch.put(status.1.0);
        }
        Ok(())
    })
}

/// Writes whether the host may answer queries on the graph now (running,
/// importing or exporting) to `*out`; false once the graph is removed.
///
/// Returns `GLC_OK`, `GLC_INVALID_ARGUMENT` or `GLC_INVALID_HANDLE`.
///
/// Thread safety: any thread, concurrently with any call.
///
/// # Safety
///
/// `out` must be NULL or valid for writing one `bool`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_graph_serves_queries(graph: glc_graph, out: *mut bool) -> glc_status {
    boundary(|| {
        let out = Out::required(out, "out")?;
        let serves = handles::with::<GraphHandle, _>(graph.id, GraphHandle::serves_queries)?;
        // SAFETY: non-NULL, writable by the caller's promise.
        unsafe { out.put(serves) };
        Ok(())
    })
}

/// Frees a graph handle (the graph itself is untouched).
///
/// Returns `GLC_OK` (also for the zero handle), or `GLC_INVALID_HANDLE` for
/// a handle already freed or never handed out.
///
/// Thread safety: any thread, also while other threads use the handle.
#[unsafe(no_mangle)]
pub extern "C" fn glc_graph_free(graph: glc_graph) -> glc_status {
    boundary(|| {
        handles::remove::<GraphHandle>(graph.id)?;
        Ok(())
    })
}

/// Reads the graph's state by key (a registry lookup and one atomic load;
/// a `glc_graph` handle is cheaper on a hot path) into `*out`.
///
/// Returns `GLC_OK`; `GLC_ENGINE_ERROR` with `INVALID_ID` or
/// `GRAPH_NOT_FOUND`; `GLC_INVALID_ARGUMENT`; `GLC_INVALID_HANDLE`.
///
/// Thread safety: any thread, concurrently with any call.
///
/// # Safety
///
/// As `glc_create_graph`, for `key`; `out` must be NULL or valid for
/// writing one `glc_graph_state`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_get_state(
    engine: glc_engine,
    key: *const glc_key,
    out: *mut glc_graph_state,
) -> glc_status {
    boundary(|| {
        let out = Out::required(out, "out")?;
        // SAFETY: the caller promises a readable key.
        let key = unsafe { args::key(key)? };
        let state = self::engine(engine)?.engine.state(&key)?;
        // SAFETY: non-NULL, writable by the caller's promise.
        unsafe { out.put(state.into()) };
        Ok(())
    })
}

/// Writes the graph's summary (state, epoch, times, task counts, live
/// lifecycle job) to `*out`.
///
/// Returns `GLC_OK`; `GLC_ENGINE_ERROR` with `INVALID_ID` or
/// `GRAPH_NOT_FOUND`; `GLC_INVALID_ARGUMENT`; `GLC_INVALID_HANDLE`.
///
/// Thread safety: any thread, concurrently with any call.
///
/// # Safety
///
/// As `glc_create_graph`, for `key`; `out` must be NULL or valid for
/// writing one `glc_graph_info`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_get_graph_info(
    engine: glc_engine,
    key: *const glc_key,
    out: *mut glc_graph_info,
) -> glc_status {
    boundary(|| {
        let out = Out::required(out, "out")?;
        // SAFETY: the caller promises a readable key.
        let key = unsafe { args::key(key)? };
        let g = self::engine(engine)?.engine.graph_info(&key)?;
        let info = glc_graph_info {
            state: g.state.into(),
            epoch: g.epoch.0,
            created_at_ms: g.created_at.as_millis(),
            updated_at_ms: g.updated_at.as_millis(),
            live_tasks: g.live_tasks,
            retained_tasks: g.retained_tasks,
            has_job: g.job.is_some(),
            job: g.job.map(Into::into).unwrap_or_default(),
        };
        // SAFETY: non-NULL, writable by the caller's promise.
        unsafe { out.put(info) };
        Ok(())
    })
}

/// Receives the next job from the engine's job channel, waiting at most
/// `timeout_ms` milliseconds (`GLC_WAIT_FOREVER`: no limit; 0: do not
/// wait), and writes its handle to `*out`. Jobs of one graph arrive in
/// commit order; each job goes to one receiver.
///
/// Returns `GLC_OK`; `GLC_TIMEOUT` if none arrived in time; `GLC_CLOSED`
/// once the engine is shut down and every job taken (the worker's loop
/// ends); `GLC_INVALID_ARGUMENT`; `GLC_INVALID_HANDLE`; `GLC_HANDLE_LIMIT`
/// (the job is then lost to this caller: report nothing on it).
///
/// Ownership: the caller owns the job handle and frees it with
/// `glc_job_free`.
///
/// Thread safety: any thread; any number of worker threads may wait on the
/// same engine at once. Freeing the engine wakes them (`GLC_CLOSED` once
/// drained).
///
/// # Safety
///
/// `out` must be NULL or valid for writing one `glc_job`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_recv_job(
    engine: glc_engine,
    timeout_ms: u64,
    out: *mut glc_job,
) -> glc_status {
    boundary(|| {
        let out = Out::required(out, "out")?;
        let e = self::engine(engine)?;
        let job = if timeout_ms == GLC_WAIT_FOREVER {
            e.jobs.recv().map_err(|_| closed_jobs())?
        } else {
            e.jobs
                .recv_timeout(Duration::from_millis(timeout_ms))
                .map_err(|err| match err {
                    RecvTimeoutError::Timeout => Fail::new(
                        glc_status::GLC_TIMEOUT,
                        format!("no job arrived within {timeout_ms} ms"),
                    ),
                    RecvTimeoutError::Disconnected => closed_jobs(),
                })?
        };
        // SAFETY: non-NULL, writable by the caller's promise.
        unsafe { put_job_handle(&out, job, &e.engine) }
    })
}

/// Takes the next job if one is waiting, without waiting, and writes its
/// handle to `*out`.
///
/// Returns `GLC_OK`; `GLC_EMPTY` if none is waiting; `GLC_CLOSED`, and the
/// rest, as `glc_recv_job`.
///
/// Ownership: as `glc_recv_job`.
///
/// Thread safety: as `glc_recv_job`.
///
/// # Safety
///
/// `out` must be NULL or valid for writing one `glc_job`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_try_recv_job(engine: glc_engine, out: *mut glc_job) -> glc_status {
    boundary(|| {
        let out = Out::required(out, "out")?;
        let e = self::engine(engine)?;
        let job = e.jobs.try_recv().map_err(|err| match err {
            TryRecvError::Empty => Fail::new(glc_status::GLC_EMPTY, "no job is waiting"),
            TryRecvError::Disconnected => closed_jobs(),
        })?;
        // SAFETY: non-NULL, writable by the caller's promise.
        unsafe { put_job_handle(&out, job, &e.engine) }
    })
}

fn closed_jobs() -> Fail {
    Fail::new(
        glc_status::GLC_CLOSED,
        "the engine is shut down and every job was taken",
    )
}

/// Registers a received job and writes its handle.
///
/// # Safety
///
/// As [`Out::put`].
unsafe fn put_job_handle(out: &Out<glc_job>, job: Job, engine: &Engine) -> Result<(), Fail> {
    let id = handles::insert(JobObj {
        job,
        engine: engine.clone(),
    })?;
    // SAFETY: forwarded from the caller.
    unsafe { out.put(glc_job { id }) };
    Ok(())
}

/// Writes the engine clock's current time, in ms since the Unix epoch, to
/// `*out_ms`.
///
/// Returns `GLC_OK`, `GLC_INVALID_ARGUMENT` or `GLC_INVALID_HANDLE`.
///
/// Thread safety: any thread, concurrently with any call.
///
/// # Safety
///
/// `out_ms` must be NULL or valid for writing one `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_now(engine: glc_engine, out_ms: *mut u64) -> glc_status {
    boundary(|| {
        let out = Out::required(out_ms, "out_ms")?;
        let now = self::engine(engine)?.engine.now();
        // SAFETY: non-NULL, writable by the caller's promise.
        unsafe { out.put(now.as_millis()) };
        Ok(())
    })
}

/// Writes the earliest time at which `glc_expire` would change something
/// (a job's or task's deadline, an ended task's retention age), in ms since
/// the Unix epoch, to `*out_ms`; `GLC_NO_TIME` if nothing is due ever.
/// The host sleeps until then (or until new work arrives) and calls
/// `glc_expire`: the engine never sleeps.
///
/// Returns `GLC_OK`, `GLC_INVALID_ARGUMENT` or `GLC_INVALID_HANDLE`.
///
/// Thread safety: any thread, concurrently with any call.
///
/// # Safety
///
/// `out_ms` must be NULL or valid for writing one `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_next_deadline(engine: glc_engine, out_ms: *mut u64) -> glc_status {
    boundary(|| {
        let out = Out::required(out_ms, "out_ms")?;
        let next = self::engine(engine)?.engine.next_deadline();
        // SAFETY: non-NULL, writable by the caller's promise.
        unsafe { out.put(next.map_or(GLC_NO_TIME, Timestamp::as_millis)) };
        Ok(())
    })
}

/// Fails every job and task whose deadline is at or before `now_ms` as
/// timed out (their graphs go where the outcome table says) and evicts
/// ended tasks past their retention age. Writes how many timed out and how
/// many were evicted to `*out_timed_out` and `*out_evicted`, each if not
/// NULL.
///
/// Returns `GLC_OK` or `GLC_INVALID_HANDLE`.
///
/// Thread safety: any thread, concurrently with any call.
///
/// # Safety
///
/// `out_timed_out` and `out_evicted` must each be NULL or valid for
/// writing one `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_expire(
    engine: glc_engine,
    now_ms: u64,
    out_timed_out: *mut usize,
    out_evicted: *mut usize,
) -> glc_status {
    boundary(|| {
        let (out_t, out_e) = (Out::optional(out_timed_out), Out::optional(out_evicted));
        let (t, e) = self::engine(engine)?
            .engine
            .expire(Timestamp::from_millis(now_ms));
        // SAFETY: NULL or writable by the caller's promise.
        unsafe {
            out_t.put(t);
            out_e.put(e);
        }
        Ok(())
    })
}
