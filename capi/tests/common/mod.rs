//! What the ABI tests share: keys as C sees them, the last error as Rust
//! strings, and a few calls every test makes.
#![allow(dead_code)]

use std::ffi::c_char;
use std::mem::MaybeUninit;

use graph_lifecycle_capi::*;

/// A graph key whose strings live as long as it does.
pub struct Key {
    project: String,
    graph: String,
}

impl Key {
    /// A key from its parts (not validated: the library does that).
    pub fn new(project: &str, graph: &str) -> Self {
        Self {
            project: project.to_owned(),
            graph: graph.to_owned(),
        }
    }

    /// The key as C passes it; valid while `self` is.
    pub fn c(&self) -> glc_key {
        glc_key {
            project: self.project.as_ptr().cast(),
            project_len: self.project.len(),
            graph: self.graph.as_ptr().cast(),
            graph_len: self.graph.len(),
        }
    }
}

/// The calling thread's last error, copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    pub status: glc_status,
    pub code: String,
    pub message: String,
    pub http_status: u16,
}

/// Copies `len` bytes of text at `ptr` (NULL with 0 is empty).
///
/// # Safety
///
/// `ptr` readable for `len` bytes unless `len` is 0.
pub unsafe fn text(ptr: *const c_char, len: usize) -> String {
    if len == 0 {
        return String::new();
    }
    // SAFETY: the caller's promise.
    let b = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    String::from_utf8(b.to_vec()).expect("UTF-8 from the library")
}

/// Copies `len` bytes at `ptr` (NULL with 0 is empty).
///
/// # Safety
///
/// `ptr` readable for `len` bytes unless `len` is 0.
pub unsafe fn bytes(ptr: *const u8, len: usize) -> Vec<u8> {
    if len == 0 {
        return Vec::new();
    }
    // SAFETY: the caller's promise.
    unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec()
}

/// The calling thread's last error, if any.
pub fn last() -> Option<LastError> {
    let mut e = MaybeUninit::<glc_error>::uninit();
    // SAFETY: `e` is valid for writing one `glc_error`.
    let status = unsafe { glc_last_error(e.as_mut_ptr()) };
    if status == glc_status::GLC_EMPTY {
        return None;
    }
    assert_eq!(status, glc_status::GLC_OK);
    // SAFETY: OK means it was written; its strings are valid until this
    // thread's next failing call, and there is none before they are copied.
    unsafe {
        let e = e.assume_init();
        // The strings are NUL-terminated too.
        assert_eq!(*e.code.add(e.code_len), 0);
        assert_eq!(*e.message.add(e.message_len), 0);
        Some(LastError {
            status: e.status,
            code: text(e.code, e.code_len),
            message: text(e.message, e.message_len),
            http_status: e.http_status,
        })
    }
}

/// Asserts a call succeeded, showing the last error if it did not.
#[track_caller]
pub fn ok(status: glc_status) {
    assert_eq!(status, glc_status::GLC_OK, "{:?}", last());
}

/// Asserts a call failed with `status` and, for engine errors, `code`;
/// returns the last error.
#[track_caller]
pub fn fails(status: glc_status, expected: glc_status, code: &str) -> LastError {
    assert_eq!(status, expected, "{:?}", last());
    let e = last().expect("a failure records the last error");
    assert_eq!(e.status, expected);
    assert_eq!(e.code, code, "{e:?}");
    e
}

/// An engine with `config` (the defaults if `None`).
pub fn engine(config: Option<glc_config>) -> glc_engine {
    let mut e = glc_engine::default();
    let config = config.as_ref().map_or(std::ptr::null(), |c| c as *const _);
    // SAFETY: `config` is NULL or a live local; `e` is writable.
    ok(unsafe { glc_engine_new(config, &mut e) });
    e
}

/// Creates `key` and starts it, and runs its start job to success: the
/// graph is running when this returns.
pub fn running(e: glc_engine, key: &Key) {
    let k = key.c();
    let mut job = glc_job::default();
    // SAFETY: `k` and `job` are live locals; no strings besides the key's.
    unsafe {
        ok(glc_create_graph(
            e,
            &k,
            std::ptr::null(),
            0,
            std::ptr::null_mut(),
        ));
        ok(glc_start(
            e,
            &k,
            std::ptr::null(),
            0,
            std::ptr::null(),
            0,
            std::ptr::null_mut(),
        ));
        ok(glc_recv_job(e, 1_000, &mut job));
        ok(glc_job_report(
            job,
            GLC_REPORT_SUCCEEDED,
            0,
            std::ptr::null(),
            0,
            std::ptr::null(),
            0,
        ));
    }
    ok(glc_job_free(job));
}

/// Reports `kind` on a job, without message or request id.
pub fn report(job: glc_job, kind: glc_report_kind, progress: u8) -> glc_status {
    // SAFETY: no pointers are passed (NULL with length 0).
    unsafe {
        glc_job_report(
            job,
            kind,
            progress,
            std::ptr::null(),
            0,
            std::ptr::null(),
            0,
        )
    }
}

/// The job's fields, copied.
pub fn job_info(job: glc_job) -> (glc_job_info, String, String, Vec<u8>) {
    let mut info = MaybeUninit::<glc_job_info>::uninit();
    // SAFETY: `info` is writable; its pointers are read while `job` is
    // live (the caller holds it).
    unsafe {
        ok(glc_job_get_info(job, info.as_mut_ptr()));
        let info = info.assume_init();
        let key = format!(
            "{}/{}",
            text(info.project, info.project_len),
            text(info.graph, info.graph_len)
        );
        let kind = text(info.kind_name, info.kind_name_len);
        let payload = bytes(info.payload, info.payload_len);
        (info, key, kind, payload)
    }
}

/// The graph's state through the engine, by key.
pub fn state(e: glc_engine, key: &Key) -> glc_graph_state {
    let k = key.c();
    let mut s = glc_graph_state::GLC_STATE_ABNORMAL;
    // SAFETY: `k` and `s` are live locals.
    ok(unsafe { glc_get_state(e, &k, &mut s) });
    s
}

/// One task, copied: its info (pointers cleared) and its reason text.
pub fn task(e: glc_engine, key: &Key, id: glc_job_id) -> (glc_task_info, String) {
    let k = key.c();
    let mut t = glc_task::default();
    let mut info = MaybeUninit::<glc_task_info>::uninit();
    // SAFETY: live locals; the info's strings are read before the task
    // handle is freed.
    let (info, reason) = unsafe {
        ok(glc_get_task(e, &k, id, &mut t));
        ok(glc_task_get_info(t, info.as_mut_ptr()));
        let info = info.assume_init();
        (info, text(info.reason_text, info.reason_text_len))
    };
    ok(glc_task_free(t));
    (info, reason)
}
