//! The ABI's version and the names of states and statuses.

use std::ffi::c_char;

use crate::args::{Out, put_str};
use crate::handles;
use crate::status::{Fail, boundary, glc_status};
use crate::types::GLC_ABI_VERSION;

/// The engine's state names, by code, NUL-terminated.
const STATE_NAMES: [&str; 9] = [
    "stopped\0",
    "starting\0",
    "running\0",
    "importing\0",
    "exporting\0",
    "clearing\0",
    "stopping\0",
    "restarting\0",
    "abnormal\0",
];

/// The engine's task status names, by code, NUL-terminated.
const TASK_STATUS_NAMES: [&str; 5] = [
    "pending\0",
    "running\0",
    "succeeded\0",
    "failed\0",
    "cancelled\0",
];

/// Writes `GLC_ABI_VERSION` as this library was built to `*out`, so that a
/// host that loads the library at run time can check it against its
/// header's.
///
/// Returns `GLC_OK`, or `GLC_INVALID_ARGUMENT` if `out` is NULL.
///
/// Thread safety: any thread.
///
/// # Safety
///
/// `out` must be NULL or valid for writing one `uint32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_abi_version(out: *mut u32) -> glc_status {
    boundary(|| {
        let out = Out::required(out, "out")?;
        // SAFETY: non-NULL, writable by the caller's promise.
        unsafe { out.put(GLC_ABI_VERSION) };
        Ok(())
    })
}

/// Writes how many handles of every type are live in this process (made
/// and not yet freed, across all engines) to `*out`. For a host's tests:
/// LeakSanitizer cannot report a handle that was never freed, since the
/// library's registry still holds its object, but this count can. It scans
/// the registry: not for a hot path.
///
/// Returns `GLC_OK`, or `GLC_INVALID_ARGUMENT` if `out` is NULL.
///
/// Thread safety: any thread; with other threads making and freeing
/// handles, the count is of some moment during the call.
///
/// # Safety
///
/// `out` must be NULL or valid for writing one `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_live_handles(out: *mut usize) -> glc_status {
    boundary(|| {
        let out = Out::required(out, "out")?;
        let n = handles::live();
        // SAFETY: non-NULL, writable by the caller's promise.
        unsafe { out.put(n) };
        Ok(())
    })
}

fn name(
    table: &'static [&'static str],
    value: u32,
    what: &'static str,
    out_name: *mut *const c_char,
    out_len: *mut usize,
) -> Result<(), Fail> {
    let (out_name, out_len) = (
        Out::required(out_name, "out_name")?,
        Out::required(out_len, "out_len")?,
    );
    let z = table
        .get(value as usize)
        .ok_or_else(|| Fail::invalid(format!("{value} is no {what}")))?;
    // SAFETY: both non-NULL; the exported callers' contracts make them
    // writable.
    unsafe { put_str(&out_name, &out_len, z) };
    Ok(())
}

/// Writes the stable lower-case name of the graph state `state` (a
/// `glc_graph_state` value: "stopped", "running", ...) to `*out_name` and
/// `*out_len`.
///
/// Returns `GLC_OK`, or `GLC_INVALID_ARGUMENT` for a NULL out-pointer or a
/// value that is no state.
///
/// Ownership: the name is static, NUL-terminated, valid for the life of
/// the process.
///
/// Thread safety: any thread.
///
/// # Safety
///
/// `out_name` and `out_len` must be NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_state_name(
    state: u32,
    out_name: *mut *const c_char,
    out_len: *mut usize,
) -> glc_status {
    boundary(|| name(&STATE_NAMES, state, "glc_graph_state", out_name, out_len))
}

/// Writes the stable lower-case name of the task status `status` (a
/// `glc_task_status` value: "pending", "running", ...) to `*out_name` and
/// `*out_len`.
///
/// Returns `GLC_OK`, or `GLC_INVALID_ARGUMENT` for a NULL out-pointer or a
/// value that is no task status.
///
/// Ownership: the name is static, NUL-terminated, valid for the life of
/// the process.
///
/// Thread safety: any thread.
///
/// # Safety
///
/// `out_name` and `out_len` must be NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_task_status_name(
    status: u32,
    out_name: *mut *const c_char,
    out_len: *mut usize,
) -> glc_status {
    boundary(|| {
        name(
            &TASK_STATUS_NAMES,
            status,
            "glc_task_status",
            out_name,
            out_len,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use graph_lifecycle::{GraphState, TaskStatus};

    /// The C names are the engine's names, code for code.
    #[test]
    fn state_and_status_names_are_the_engines() {
        for s in GraphState::ALL {
            assert_eq!(STATE_NAMES[s.code() as usize], format!("{}\0", s.name()));
        }
        assert_eq!(STATE_NAMES.len(), GraphState::ALL.len());
        for s in TaskStatus::ALL {
            assert_eq!(TASK_STATUS_NAMES[s as usize], format!("{}\0", s.name()));
        }
        assert_eq!(TASK_STATUS_NAMES.len(), TaskStatus::ALL.len());
    }
}
