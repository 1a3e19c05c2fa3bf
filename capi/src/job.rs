//! The job handle's accessors and reports, and job ids as text.

use std::ffi::c_char;

use graph_lifecycle::JobId;

use crate::args::{self, Out, out_text};
use crate::engine::{JobObj, glc_job, report};
use crate::handles;
use crate::status::{Fail, boundary, glc_status};
use crate::types::{glc_job_id, glc_job_info, glc_report_kind, payload, task_kind};

/// Fills `*out` with the job's id, graph, kind, epoch and payload.
///
/// Returns `GLC_OK`, `GLC_INVALID_ARGUMENT` or `GLC_INVALID_HANDLE`.
///
/// Ownership: the strings and the payload `*out` points to belong to the
/// job handle: valid, unchanged, until `glc_job_free` on it. Using them
/// after that (also from another thread) is undefined behaviour.
///
/// Thread safety: any thread, concurrently with any call on the handle.
///
/// # Safety
///
/// `out` must be NULL or valid for writing one `glc_job_info`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_job_get_info(job: glc_job, out: *mut glc_job_info) -> glc_status {
    boundary(|| {
        let out = Out::required(out, "out")?;
        let info = handles::with::<JobObj, _>(job.id, |j| {
            let job = &j.job;
            let (project, project_len) = out_text(job.key().project.as_str());
            let (graph, graph_len) = out_text(job.key().graph.as_str());
            let (kind, clear_metadata, kind_name, kind_name_len) = task_kind(&job.kind);
            let (payload, payload_len) = payload(job.payload.as_bytes());
            glc_job_info {
                id: job.id().into(),
                project,
                project_len,
                graph,
                graph_len,
                kind,
                kind_name,
                kind_name_len,
                clear_metadata,
                epoch: job.epoch().0,
                payload,
                payload_len,
            }
        })?;
        // SAFETY: non-NULL, writable by the caller's promise.
        unsafe { out.put(info) };
        Ok(())
    })
}

/// Writes whether the job's cancel token is void to `*out`: true once the
/// task ended in any way but success (a forced restart, a cancel, a
/// timeout, the graph's removal, a failure report). A worker polls it
/// between units of work and stops early. One or two atomic loads.
///
/// Returns `GLC_OK`, `GLC_INVALID_ARGUMENT` or `GLC_INVALID_HANDLE`.
///
/// Thread safety: any thread, concurrently with any call on the handle.
///
/// # Safety
///
/// `out` must be NULL or valid for writing one `bool`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_job_is_void(job: glc_job, out: *mut bool) -> glc_status {
    boundary(|| {
        let out = Out::required(out, "out")?;
        let void = handles::with::<JobObj, _>(job.id, |j| j.job.token.is_void())?;
        // SAFETY: non-NULL, writable by the caller's promise.
        unsafe { out.put(void) };
        Ok(())
    })
}

/// Reports on the job (to the engine it came from): `kind`, `progress` and
/// `message` as `glc_report`. A `STALE_EPOCH` or `TASK_TERMINAL` answer
/// means the work is void: stop, and do not report again.
///
/// Returns as `glc_report`.
///
/// Thread safety: any thread, concurrently with any call on the handle.
///
/// # Safety
///
/// `message` and `request_id` must be readable for their lengths unless
/// those are 0.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_job_report(
    job: glc_job,
    kind: glc_report_kind,
    progress: u8,
    message: *const c_char,
    message_len: usize,
    request_id: *const c_char,
    request_id_len: usize,
) -> glc_status {
    boundary(|| {
        // SAFETY: the caller promises readable strings for their lengths.
        let (report, request) = unsafe {
            (
                report(kind, progress, message, message_len)?,
                args::request(request_id, request_id_len)?,
            )
        };
        let j = handles::get::<JobObj>(job.id)?;
        j.engine.request(request).report(&j.job.task, report)?;
        Ok(())
    })
}

/// Frees a job handle. The task is untouched: a job freed without a final
/// report stays live until a report by address (`glc_report`), its
/// deadline, or a forced restart ends it.
///
/// Returns `GLC_OK` (also for the zero handle), or `GLC_INVALID_HANDLE` for
/// a handle already freed or never handed out.
///
/// Ownership: what `glc_job_get_info` borrowed from the handle is invalid
/// from this call on.
///
/// Thread safety: any thread, also while other threads use the handle.
#[unsafe(no_mangle)]
pub extern "C" fn glc_job_free(job: glc_job) -> glc_status {
    boundary(|| {
        handles::remove::<JobObj>(job.id)?;
        Ok(())
    })
}

/// Writes the id's text form (hyphenated lower-case UUID: 36 characters
/// and a NUL) to `buf`, which holds `cap` bytes (at least 37).
///
/// Returns `GLC_OK`, or `GLC_INVALID_ARGUMENT` if `buf` is NULL or `cap` is
/// below 37 (nothing is written then).
///
/// Thread safety: any thread.
///
/// # Safety
///
/// `buf` must be NULL or valid for writing `cap` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_job_id_format(
    id: glc_job_id,
    buf: *mut c_char,
    cap: usize,
) -> glc_status {
    boundary(|| {
        if buf.is_null() {
            return Err(Fail::null("buf"));
        }
        if cap < 37 {
            return Err(Fail::invalid(format!(
                "buf holds {cap} bytes; a job id's text needs 37"
            )));
        }
        let text = JobId::from(id).to_string();
        // SAFETY: `buf` is non-NULL and writable for `cap >= 37` bytes by
        // the caller's promise; the text is 36 bytes, and the NUL goes in
        // the 37th. The regions cannot overlap (`text` is ours).
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
            buf.add(text.len()).write(0);
        }
        Ok(())
    })
}

/// Parses a job id's text (hyphenated, simple, braced or URN UUID; not
/// NUL-terminated: `len` bytes) into `*out`.
///
/// Returns `GLC_OK`; `GLC_ENGINE_ERROR` with `INVALID_ID` for text that is
/// no UUID; `GLC_INVALID_ARGUMENT` for a NULL pointer or text that is not
/// UTF-8.
///
/// Thread safety: any thread.
///
/// # Safety
///
/// `text` must be readable for `len` bytes unless that is 0; `out` must be
/// NULL or valid for writing one `glc_job_id`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_job_id_parse(
    text: *const c_char,
    len: usize,
    out: *mut glc_job_id,
) -> glc_status {
    boundary(|| {
        let out = Out::required(out, "out")?;
        // SAFETY: the caller promises `len` readable bytes.
        let s = unsafe { args::text(text, len, "text")? };
        let id = JobId::parse(s)?;
        // SAFETY: non-NULL, writable by the caller's promise.
        unsafe { out.put(id.into()) };
        Ok(())
    })
}
