//! A C ABI for [`graph_lifecycle`], so that engines written in C or C++
//! can link the lifecycle core: build an engine, run the graph operations
//! and the forced restart, receive jobs on worker threads and report on
//! them, query tasks, and follow events.
//!
//! The header is `include/graph_lifecycle.h`, generated from this crate by
//! cbindgen (`tests/header.rs` fails when it is out of date). The crate
//! builds as a static library, a shared library and an rlib (the Rust
//! tests and the benchmark call the same functions). `README.md` beside
//! this crate has the ABI's rules at length; in short:
//!
//! - **Handles.** Every object C holds is an opaque handle: a struct of
//!   one 64-bit number (`glc_engine`, `glc_graph`, `glc_job`, `glc_task`,
//!   `glc_page`, `glc_subscription`, `glc_event`), checked against a
//!   registry of live handles at every call. A zero, freed, made-up or
//!   mistyped handle is `GLC_INVALID_HANDLE`, never a read of memory the
//!   library does not own. Each handle type has a `*_free` function;
//!   freeing the zero handle does nothing.
//! - **Statuses and errors.** Every function returns a [`glc_status`].
//!   Every status but `GLC_OK` also records the calling thread's last
//!   error ([`glc_last_error`]): a stable code (the engine's
//!   `Error::code()`, such as `STALE_EPOCH`, for `GLC_ENGINE_ERROR`; the
//!   status's name otherwise), a message and, for engine errors, an HTTP
//!   status. A failed call changed nothing and wrote no out-pointer
//!   (except `*out_missed` with `GLC_LAGGED`, a refusal kept for the
//!   retries of a command with a request id, and what `GLC_HANDLE_LIMIT`
//!   says). No panic crosses the boundary: it becomes `GLC_PANIC`.
//! - **Strings and bytes.** In: pointer and length, never NUL-terminated;
//!   a length of 0 is empty whatever the pointer; text is checked as UTF-8.
//!   Out: pointer and length borrowed from the handle they came from, valid
//!   until that handle is freed; names and error strings are also
//!   NUL-terminated.
//! - **Threads.** Every function may be called from any thread, and every
//!   handle used from several threads at once, freeing included: a call
//!   that found the handle live completes; later ones get
//!   `GLC_INVALID_HANDLE`.
//! - **Undefined behaviour** remains only where C cannot be checked:
//!   pointers that are non-NULL but invalid (or shorter than their
//!   length), and borrowed pointers used after their handle was freed.
#![warn(missing_docs)]

mod args;
mod engine;
mod events;
mod handles;
mod job;
mod names;
mod query;
mod status;
mod types;

pub use engine::{
    glc_cancel, glc_clear, glc_config_default, glc_create_graph, glc_engine, glc_engine_free,
    glc_engine_new, glc_engine_shutdown, glc_expire, glc_export, glc_force_restart,
    glc_get_graph_info, glc_get_state, glc_graph, glc_graph_free, glc_graph_get_state,
    glc_graph_serves_queries, glc_import, glc_job, glc_next_deadline, glc_now, glc_open_graph,
    glc_recv_job, glc_register_task, glc_remove_graph, glc_report, glc_start, glc_stop,
    glc_try_recv_job,
};
pub use events::{
    glc_event, glc_event_free, glc_event_get_info, glc_subscribe, glc_subscription,
    glc_subscription_free, glc_subscription_recv, glc_subscription_try_recv,
};
pub use job::{
    glc_job_free, glc_job_get_info, glc_job_id_format, glc_job_id_parse, glc_job_is_void,
    glc_job_report,
};
pub use names::{glc_abi_version, glc_live_handles, glc_state_name, glc_task_status_name};
pub use query::{
    glc_get_task, glc_list_project_tasks, glc_list_tasks, glc_page, glc_page_free,
    glc_page_get_counts, glc_page_get_item, glc_task, glc_task_free, glc_task_get_info,
    glc_task_query_default,
};
pub use status::{glc_error, glc_last_error, glc_last_error_clear, glc_status, glc_status_name};
pub use types::{
    GLC_ABI_VERSION, GLC_FILTER_ALL, GLC_FILTER_CANCELLED, GLC_FILTER_FAILED, GLC_FILTER_LIVE,
    GLC_FILTER_PENDING, GLC_FILTER_RUNNING, GLC_FILTER_SUCCEEDED, GLC_NO_LIMIT, GLC_NO_TIME,
    GLC_REPORT_FAILED, GLC_REPORT_PROGRESS, GLC_REPORT_STARTED, GLC_REPORT_SUCCEEDED,
    GLC_WAIT_FOREVER, glc_change_kind, glc_config, glc_event_info, glc_fail_reason, glc_graph_info,
    glc_graph_state, glc_job_id, glc_job_info, glc_key, glc_report_kind, glc_restart,
    glc_status_filter, glc_task_info, glc_task_kind, glc_task_query, glc_task_ref, glc_task_status,
};
