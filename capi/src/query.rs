//! Task queries: one task, a graph's tasks, a project's tasks, and the
//! handles that own what they return.
#![allow(non_camel_case_types)]

use std::ffi::c_char;

use graph_lifecycle::{TaskInfo, TaskQuery};

use crate::args::{self, Out, out_text};
use crate::engine::{EngineObj, glc_engine};
use crate::handles::{self, Kind};
use crate::status::{Fail, boundary, glc_status};
use crate::types::{
    fail_reason, glc_job_id, glc_key, glc_task_info, glc_task_query, opt_text, payload,
    reason_text, task_kind, time,
};

/// One task, copied out of its graph's table by `glc_get_task`. Freed by
/// `glc_task_free`. Read-only: usable from any number of threads at once.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct glc_task {
    /// The handle's value; 0 is no task.
    pub id: u64,
}

/// A page of a task listing (`glc_list_tasks`, `glc_list_project_tasks`):
/// how many tasks matched in all, and the tasks of this page, newest
/// first. Freed by `glc_page_free`. Read-only: usable from any number of
/// threads at once.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct glc_page {
    /// The handle's value; 0 is no page.
    pub id: u64,
}

/// A task with the text of its failure reason, so that C can borrow both.
pub(crate) struct TaskObj {
    info: TaskInfo,
    reason: Option<Box<str>>,
}

impl TaskObj {
    fn new(info: TaskInfo) -> Self {
        let reason = reason_text(info.reason.as_ref());
        Self { info, reason }
    }

    fn c_info(&self) -> glc_task_info {
        let t = &self.info;
        let (project, project_len) = out_text(t.key.project.as_str());
        let (graph, graph_len) = out_text(t.key.graph.as_str());
        let (kind, clear_metadata, kind_name, kind_name_len) = task_kind(&t.kind);
        let (reason, reason_job) = fail_reason(t.reason.as_ref());
        let (reason_text, reason_text_len) = opt_text(self.reason.as_deref());
        let (payload, payload_len) = payload(t.payload.as_bytes());
        glc_task_info {
            id: t.id.into(),
            project,
            project_len,
            graph,
            graph_len,
            kind,
            kind_name,
            kind_name_len,
            clear_metadata,
            epoch: t.epoch.0,
            status: t.status.into(),
            progress: t.progress,
            stoppable: t.stoppable,
            created_at_ms: t.created_at.as_millis(),
            started_at_ms: time(t.started_at),
            ended_at_ms: time(t.ended_at),
            deadline_ms: time(t.deadline),
            reason,
            reason_job,
            reason_text,
            reason_text_len,
            payload,
            payload_len,
        }
    }
}

impl Kind for TaskObj {
    const KIND: u8 = 4;
    const NAME: &'static str = "glc_task";
}

/// What a page handle stands for.
pub(crate) struct PageObj {
    total: usize,
    items: Vec<TaskObj>,
}

impl Kind for PageObj {
    const KIND: u8 = 5;
    const NAME: &'static str = "glc_page";
}

/// Fills `*out` with the query of every task, newest first: every status,
/// no time bounds, offset 0, no limit.
///
/// Returns `GLC_OK`, or `GLC_INVALID_ARGUMENT` if `out` is NULL.
///
/// Thread safety: any thread.
///
/// # Safety
///
/// `out` must be NULL or valid for writing one `glc_task_query`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_task_query_default(out: *mut glc_task_query) -> glc_status {
    boundary(|| {
        let out = Out::required(out, "out")?;
        // SAFETY: non-NULL, writable by the caller's promise.
        unsafe { out.put(glc_task_query::DEFAULT) };
        Ok(())
    })
}

/// Copies one task of a graph and writes a handle to the copy to `*out`.
///
/// Returns `GLC_OK`; `GLC_ENGINE_ERROR` with `INVALID_ID`,
/// `GRAPH_NOT_FOUND` or `TASK_NOT_FOUND` (also for a task evicted by
/// retention); `GLC_INVALID_ARGUMENT`; `GLC_INVALID_HANDLE`;
/// `GLC_HANDLE_LIMIT`.
///
/// Ownership: the caller owns the task handle and frees it with
/// `glc_task_free`.
///
/// Thread safety: any thread, concurrently with any call.
///
/// # Safety
///
/// `key` must be NULL or valid for reading one `glc_key` whose strings are
/// readable for their lengths; `out` must be NULL or valid for writing one
/// `glc_task`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_get_task(
    engine: glc_engine,
    key: *const glc_key,
    job: glc_job_id,
    out: *mut glc_task,
) -> glc_status {
    boundary(|| {
        let out = Out::required(out, "out")?;
        // SAFETY: the caller promises a readable key.
        let key = unsafe { args::key(key)? };
        let info = handles::get::<EngineObj>(engine.id)?
            .engine
            .task(&key, job.into())?;
        let id = handles::insert(TaskObj::new(info))?;
        // SAFETY: non-NULL, writable by the caller's promise.
        unsafe { out.put(glc_task { id }) };
        Ok(())
    })
}

/// Fills `*out` with the task's fields.
///
/// Returns `GLC_OK`, `GLC_INVALID_ARGUMENT` or `GLC_INVALID_HANDLE`.
///
/// Ownership: the strings and the payload `*out` points to belong to the
/// task handle: valid, unchanged, until `glc_task_free` on it.
///
/// Thread safety: any thread, concurrently with any call on the handle.
///
/// # Safety
///
/// `out` must be NULL or valid for writing one `glc_task_info`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_task_get_info(task: glc_task, out: *mut glc_task_info) -> glc_status {
    boundary(|| {
        let out = Out::required(out, "out")?;
        let info = handles::with::<TaskObj, _>(task.id, TaskObj::c_info)?;
        // SAFETY: non-NULL, writable by the caller's promise.
        unsafe { out.put(info) };
        Ok(())
    })
}

/// Frees a task handle.
///
/// Returns `GLC_OK` (also for the zero handle), or `GLC_INVALID_HANDLE` for
/// a handle already freed or never handed out.
///
/// Ownership: what `glc_task_get_info` borrowed from the handle is invalid
/// from this call on.
///
/// Thread safety: any thread, also while other threads use the handle.
#[unsafe(no_mangle)]
pub extern "C" fn glc_task_free(task: glc_task) -> glc_status {
    boundary(|| {
        handles::remove::<TaskObj>(task.id)?;
        Ok(())
    })
}

/// The query, `NULL` being the default.
///
/// # Safety
///
/// `q` NULL or readable.
unsafe fn query(q: *const glc_task_query) -> Result<TaskQuery, Fail> {
    if q.is_null() {
        return Ok(TaskQuery::new());
    }
    // SAFETY: non-NULL, readable by the caller's promise; plain integers.
    unsafe { q.read() }.to_query()
}

/// Registers a page and writes its handle.
///
/// # Safety
///
/// As [`Out::put`].
unsafe fn put_page(out: &Out<glc_page>, page: graph_lifecycle::Page<TaskInfo>) -> Result<(), Fail> {
    let id = handles::insert(PageObj {
        total: page.total,
        items: page.items.into_iter().map(TaskObj::new).collect(),
    })?;
    // SAFETY: forwarded from the caller.
    unsafe { out.put(glc_page { id }) };
    Ok(())
}

/// Lists a graph's tasks matching `query` (NULL: every task), newest first
/// (by creation time, then creation order), and writes a handle to the
/// page to `*out`.
///
/// Returns `GLC_OK`; `GLC_ENGINE_ERROR` with `INVALID_ID` or
/// `GRAPH_NOT_FOUND`; `GLC_INVALID_ARGUMENT` (also for status bits outside
/// `GLC_FILTER_ALL`); `GLC_INVALID_HANDLE`; `GLC_HANDLE_LIMIT`.
///
/// Ownership: the caller owns the page handle and frees it with
/// `glc_page_free`.
///
/// Thread safety: any thread, concurrently with any call.
///
/// # Safety
///
/// As `glc_get_task`, for `key`; `query` must be NULL or valid for reading
/// one `glc_task_query`; `out` must be NULL or valid for writing one
/// `glc_page`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_list_tasks(
    engine: glc_engine,
    key: *const glc_key,
    query: *const glc_task_query,
    out: *mut glc_page,
) -> glc_status {
    boundary(|| {
        let out = Out::required(out, "out")?;
        // SAFETY: the caller promises a readable key and query.
        let (key, q) = unsafe { (args::key(key)?, self::query(query)?) };
        let page = handles::get::<EngineObj>(engine.id)?
            .engine
            .tasks(&key, &q)?;
        // SAFETY: non-NULL, writable by the caller's promise.
        unsafe { put_page(&out, page) }
    })
}

/// Lists a project's tasks over all its graphs matching `query` (NULL:
/// every task), newest first (by creation time, then graph key, then
/// creation order), and writes a handle to the page to `*out`. A project
/// with no graph has an empty page.
///
/// Returns `GLC_OK`; `GLC_ENGINE_ERROR` with `INVALID_ID`;
/// `GLC_INVALID_ARGUMENT`; `GLC_INVALID_HANDLE`; `GLC_HANDLE_LIMIT`.
///
/// Ownership: as `glc_list_tasks`.
///
/// Thread safety: any thread, concurrently with any call.
///
/// # Safety
///
/// `project` must be readable for `project_len` bytes unless that is 0;
/// `query` and `out` as `glc_list_tasks`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_list_project_tasks(
    engine: glc_engine,
    project: *const c_char,
    project_len: usize,
    query: *const glc_task_query,
    out: *mut glc_page,
) -> glc_status {
    boundary(|| {
        let out = Out::required(out, "out")?;
        // SAFETY: the caller promises a readable project id and query.
        let (project, q) = unsafe { (args::project(project, project_len)?, self::query(query)?) };
        let page = handles::get::<EngineObj>(engine.id)?
            .engine
            .project_tasks(&project, &q);
        // SAFETY: non-NULL, writable by the caller's promise.
        unsafe { put_page(&out, page) }
    })
}

/// Writes how many tasks matched in all (before offset and limit) to
/// `*out_total` and how many this page holds to `*out_len`, each if not
/// NULL.
///
/// Returns `GLC_OK` or `GLC_INVALID_HANDLE`.
///
/// Thread safety: any thread, concurrently with any call on the handle.
///
/// # Safety
///
/// `out_total` and `out_len` must each be NULL or valid for writing one
/// `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_page_get_counts(
    page: glc_page,
    out_total: *mut usize,
    out_len: *mut usize,
) -> glc_status {
    boundary(|| {
        let (out_total, out_len) = (Out::optional(out_total), Out::optional(out_len));
        let (total, len) = handles::with::<PageObj, _>(page.id, |p| (p.total, p.items.len()))?;
        // SAFETY: NULL or writable by the caller's promise.
        unsafe {
            out_total.put(total);
            out_len.put(len);
        }
        Ok(())
    })
}

/// Fills `*out` with the page's task number `index` (0 is the newest).
///
/// Returns `GLC_OK`; `GLC_INVALID_ARGUMENT` for a NULL `out` or an index at
/// or past the page's length; `GLC_INVALID_HANDLE`.
///
/// Ownership: the strings and payload `*out` points to belong to the page
/// handle: valid, unchanged, until `glc_page_free` on it.
///
/// Thread safety: any thread, concurrently with any call on the handle.
///
/// # Safety
///
/// `out` must be NULL or valid for writing one `glc_task_info`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_page_get_item(
    page: glc_page,
    index: usize,
    out: *mut glc_task_info,
) -> glc_status {
    boundary(|| {
        let out = Out::required(out, "out")?;
        let info = handles::with::<PageObj, _>(page.id, |p| {
            p.items.get(index).map(TaskObj::c_info).ok_or_else(|| {
                Fail::invalid(format!(
                    "index {index} is past the page's {} items",
                    p.items.len()
                ))
            })
        })??;
        // SAFETY: non-NULL, writable by the caller's promise.
        unsafe { out.put(info) };
        Ok(())
    })
}

/// Frees a page handle.
///
/// Returns `GLC_OK` (also for the zero handle), or `GLC_INVALID_HANDLE` for
/// a handle already freed or never handed out.
///
/// Ownership: what `glc_page_get_item` borrowed from the handle is invalid
/// from this call on.
///
/// Thread safety: any thread, also while other threads use the handle.
#[unsafe(no_mangle)]
pub extern "C" fn glc_page_free(page: glc_page) -> glc_status {
    boundary(|| {
        handles::remove::<PageObj>(page.id)?;
        Ok(())
    })
}
