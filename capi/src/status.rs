//! Status codes, the calling thread's last error, and the boundary every
//! exported function runs its body in.

use std::any::Any;
use std::borrow::Cow;
use std::cell::RefCell;
use std::ffi::c_char;
use std::panic::{AssertUnwindSafe, catch_unwind};

use graph_lifecycle::Error;

use crate::args::{Out, put_str};

/// What a call did. Every exported function returns one.
///
/// Every status but `GLC_OK` also records the calling thread's last error
/// (see `glc_last_error`); `GLC_OK` leaves it as it was.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum glc_status {
    /// The call succeeded.
    GLC_OK = 0,
    /// A required pointer was NULL, a string was not UTF-8, a length or a
    /// value was out of range. Nothing was done.
    GLC_INVALID_ARGUMENT = 1,
    /// A handle was zero, freed, never handed out by this library, or of
    /// another type. Nothing was done.
    GLC_INVALID_HANDLE = 2,
    /// The engine refused the operation: the last error's code is the
    /// engine's stable error code (`STALE_EPOCH`, `GRAPH_NOT_FOUND`, ...)
    /// and its HTTP status the one a REST front end answers with. A refused
    /// operation changed nothing (a refusal of a command that carried a
    /// request id is kept for its retries).
    GLC_ENGINE_ERROR = 3,
    /// Nothing arrived within the timeout.
    GLC_TIMEOUT = 4,
    /// Nothing is waiting (the non-blocking receives), or there is no last
    /// error to read.
    GLC_EMPTY = 5,
    /// The event subscription fell behind and was cut off: resubscribe and
    /// re-read the state you care about.
    GLC_LAGGED = 6,
    /// The job channel is closed (the engine was shut down and every job
    /// taken), or the engine behind an event subscription is gone.
    GLC_CLOSED = 7,
    /// The handle table is full (2^32 live handles): no handle was made.
    /// An operation the engine applied before its handle could be made
    /// (a graph created with a handle asked for, a host task registered)
    /// stands, and a received job or event is lost to the caller.
    GLC_HANDLE_LIMIT = 8,
    /// The library panicked; the panic was caught at the boundary. The
    /// last error's message holds the panic message. The engine's state is
    /// what its own guarantees make of an interrupted call.
    GLC_PANIC = 9,
}

/// Every status, in code order.
pub(crate) const ALL_STATUSES: [glc_status; 10] = [
    glc_status::GLC_OK,
    glc_status::GLC_INVALID_ARGUMENT,
    glc_status::GLC_INVALID_HANDLE,
    glc_status::GLC_ENGINE_ERROR,
    glc_status::GLC_TIMEOUT,
    glc_status::GLC_EMPTY,
    glc_status::GLC_LAGGED,
    glc_status::GLC_CLOSED,
    glc_status::GLC_HANDLE_LIMIT,
    glc_status::GLC_PANIC,
];

impl glc_status {
    /// The status's name without the prefix, NUL-terminated: the last
    /// error's code for every status but `GLC_ENGINE_ERROR`.
    pub(crate) const fn name_z(self) -> &'static str {
        match self {
            glc_status::GLC_OK => "OK\0",
            glc_status::GLC_INVALID_ARGUMENT => "INVALID_ARGUMENT\0",
            glc_status::GLC_INVALID_HANDLE => "INVALID_HANDLE\0",
            glc_status::GLC_ENGINE_ERROR => "ENGINE_ERROR\0",
            glc_status::GLC_TIMEOUT => "TIMEOUT\0",
            glc_status::GLC_EMPTY => "EMPTY\0",
            glc_status::GLC_LAGGED => "LAGGED\0",
            glc_status::GLC_CLOSED => "CLOSED\0",
            glc_status::GLC_HANDLE_LIMIT => "HANDLE_LIMIT\0",
            glc_status::GLC_PANIC => "PANIC\0",
        }
    }

    /// The status's name without the prefix (`"STALE_EPOCH"` is a code,
    /// `"ENGINE_ERROR"` a status name).
    pub fn name(self) -> &'static str {
        let z = self.name_z();
        &z[..z.len() - 1]
    }
}

/// A failed call, on its way to the thread's last error.
#[derive(Debug, Clone)]
pub(crate) struct Fail {
    pub(crate) status: glc_status,
    /// NUL-terminated.
    code: Cow<'static, str>,
    /// NUL-terminated.
    message: Cow<'static, str>,
    http_status: u16,
}

impl Fail {
    /// A failure of the ABI itself (not the engine's): its code is the
    /// status's name. A NUL is appended to `message` unless it ends with
    /// one.
    pub(crate) fn new(status: glc_status, message: impl Into<Cow<'static, str>>) -> Self {
        let mut message = message.into();
        if !message.ends_with('\0') {
            message.to_mut().push('\0');
        }
        Self {
            status,
            code: Cow::Borrowed(status.name_z()),
            message,
            http_status: 0,
        }
    }

    /// `GLC_INVALID_ARGUMENT` with a message.
    pub(crate) fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(glc_status::GLC_INVALID_ARGUMENT, message)
    }

    /// `GLC_INVALID_ARGUMENT` for a NULL pointer that must not be NULL.
    pub(crate) fn null(what: &'static str) -> Self {
        Self::invalid(format!("{what} is NULL"))
    }

    /// The engine's refusal.
    pub(crate) fn engine(e: &Error) -> Self {
        let mut message = e.to_string();
        message.push('\0');
        Self {
            status: glc_status::GLC_ENGINE_ERROR,
            code: Cow::Owned(format!("{}\0", e.code())),
            message: Cow::Owned(message),
            http_status: e.http_status(),
        }
    }

    fn panic(payload: &(dyn Any + Send)) -> Self {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic with a non-string payload".to_owned());
        Self::new(glc_status::GLC_PANIC, format!("panic: {what}"))
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::engine(&e)
    }
}

thread_local! {
    static LAST: RefCell<Option<Fail>> = const { RefCell::new(None) };
}

fn set_last(fail: Fail) {
    // During thread teardown the slot may be gone: the status still tells.
    let _ = LAST.try_with(|last| {
        if let Ok(mut last) = last.try_borrow_mut() {
            *last = Some(fail);
        }
    });
}

/// Runs an exported function's body: a panic is caught and becomes
/// `GLC_PANIC`, and a failure is recorded as the thread's last error.
pub(crate) fn boundary(body: impl FnOnce() -> Result<(), Fail>) -> glc_status {
    let fail = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return glc_status::GLC_OK,
        Ok(Err(fail)) => fail,
        Err(payload) => {
            let fail = Fail::panic(&*payload);
            // Dropping a payload can panic in turn; that one is not let out
            // either.
            if let Err(again) = catch_unwind(AssertUnwindSafe(|| drop(payload))) {
                std::mem::forget(again);
            }
            fail
        }
    };
    let status = fail.status;
    set_last(fail);
    status
}

/// The calling thread's last error: what the last call on this thread that
/// did not return `GLC_OK` failed with.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct glc_error {
    /// The status that call returned.
    pub status: glc_status,
    /// For `GLC_ENGINE_ERROR`, the HTTP status a REST front end answers
    /// with (400, 404, 409, 429, 500 or 503); 0 for every other status.
    pub http_status: u16,
    /// The stable code: for `GLC_ENGINE_ERROR` the engine's error code
    /// (`"STALE_EPOCH"`, `"GRAPH_NOT_FOUND"`, ...), for every other status
    /// the status's name without its prefix (`"INVALID_HANDLE"`). ASCII,
    /// also NUL-terminated. Owned by the thread, like `message`.
    pub code: *const c_char,
    /// The length of `code` in bytes, without the NUL.
    pub code_len: usize,
    /// A message for people, in English, naming the graph, job, state or
    /// argument involved. UTF-8, also NUL-terminated. Owned by the thread:
    /// valid until the next call on this thread that does not return
    /// `GLC_OK`, or `glc_last_error_clear`, or the thread's end.
    pub message: *const c_char,
    /// The length of `message` in bytes, without the NUL.
    pub message_len: usize,
}

/// Reads the calling thread's last error into `*out`.
///
/// Errors are per thread: every call that returns a status other than
/// `GLC_OK` records its error for the thread that made it, replacing the
/// one before; calls that succeed leave it alone. This function and
/// `glc_last_error_clear` never change it.
///
/// Returns `GLC_OK` with `*out` filled, `GLC_EMPTY` if this thread has no
/// last error (none yet, or cleared), `GLC_INVALID_ARGUMENT` if `out` is
/// NULL.
///
/// Ownership: `out->code` and `out->message` belong to the thread and stay
/// valid until this thread's next failing call, `glc_last_error_clear`, or
/// the thread's end.
///
/// Thread safety: any thread; it reads only that thread's own error.
///
/// # Safety
///
/// `out` must be NULL or valid for writing one `glc_error`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glc_last_error(out: *mut glc_error) -> glc_status {
    let run = || -> Result<glc_status, Fail> {
        let out = Out::required(out, "out")?;
        let read = LAST.try_with(|last| {
            last.try_borrow().ok().and_then(|last| {
                last.as_ref().map(|f| glc_error {
                    status: f.status,
                    http_status: f.http_status,
                    code: f.code.as_ptr().cast(),
                    code_len: f.code.len() - 1,
                    message: f.message.as_ptr().cast(),
                    message_len: f.message.len() - 1,
                })
            })
        });
        match read.ok().flatten() {
            Some(e) => {
                // SAFETY: `out` is non-NULL and the caller promises it is
                // valid for writing a `glc_error`.
                unsafe { out.put(e) };
                Ok(glc_status::GLC_OK)
            }
            None => Ok(glc_status::GLC_EMPTY),
        }
    };
    // Not through `boundary`: reading the last error must not replace it.
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(Ok(status)) => status,
        Ok(Err(fail)) => fail.status,
        Err(payload) => {
            std::mem::forget(payload);
            glc_status::GLC_PANIC
        }
    }
}

/// Forgets the calling thread's last error (and frees its message).
/// Always returns `GLC_OK`.
///
/// Thread safety: any thread; it clears only that thread's own error.
#[unsafe(no_mangle)]
pub extern "C" fn glc_last_error_clear() -> glc_status {
    let cleared = catch_unwind(|| {
        let _ = LAST.try_with(|last| {
            if let Ok(mut last) = last.try_borrow_mut() {
                last.take();
            }
        });
    });
    if let Err(payload) = cleared {
        std::mem::forget(payload);
        return glc_status::GLC_PANIC;
    }
    glc_status::GLC_OK
}

/// Writes the name of the status `status` (`"OK"`, `"INVALID_HANDLE"`,
/// ...: the name without its `GLC_` prefix) to `*out_name` and
/// `*out_len`.
///
/// Returns `GLC_OK`, or `GLC_INVALID_ARGUMENT` for a NULL out-pointer or a
/// value that is no status.
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
pub unsafe extern "C" fn glc_status_name(
    status: u32,
    out_name: *mut *const c_char,
    out_len: *mut usize,
) -> glc_status {
    boundary(|| {
        let (out_name, out_len) = (
            Out::required(out_name, "out_name")?,
            Out::required(out_len, "out_len")?,
        );
        let s = ALL_STATUSES
            .get(status as usize)
            .ok_or_else(|| Fail::invalid(format!("{status} is no glc_status")))?;
        // SAFETY: both pointers are non-NULL and the caller promises they
        // are valid for writing.
        unsafe { put_str(&out_name, &out_len, s.name_z()) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic inside a call's body never crosses the boundary: it becomes
    /// `GLC_PANIC`, and the last error holds the panic message.
    #[test]
    fn a_panic_in_a_body_becomes_the_panic_status_with_its_message() {
        let status = boundary(|| panic!("the body blew up"));
        assert_eq!(status, glc_status::GLC_PANIC);
        let mut e = std::mem::MaybeUninit::<glc_error>::uninit();
        // SAFETY: `e` is valid for writing one `glc_error`.
        let read = unsafe { glc_last_error(e.as_mut_ptr()) };
        assert_eq!(read, glc_status::GLC_OK);
        // SAFETY: `glc_last_error` returned OK, so it wrote `e`.
        let e = unsafe { e.assume_init() };
        assert_eq!(e.status, glc_status::GLC_PANIC);
        // SAFETY: the message is valid until this thread's next failing
        // call, and there is none in between.
        let msg = unsafe { std::slice::from_raw_parts(e.message.cast::<u8>(), e.message_len) };
        assert_eq!(std::str::from_utf8(msg).unwrap(), "panic: the body blew up");
    }
}
