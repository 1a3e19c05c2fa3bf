//! Reading what C passes in (pointer and length, never a NUL-terminated
//! assumption) and writing what it asked for through out-pointers.

use std::ffi::{c_char, c_void};

use graph_lifecycle::{GraphKey, ProjectId, RequestId};

use crate::status::Fail;
use crate::types::glc_key;

/// An out-pointer, checked for NULL before the call does anything, so that
/// a call refused for a NULL out-pointer has changed nothing.
pub(crate) struct Out<T>(*mut T);

impl<T> Out<T> {
    /// A pointer the caller must give.
    pub(crate) fn required(p: *mut T, what: &'static str) -> Result<Self, Fail> {
        if p.is_null() {
            Err(Fail::null(what))
        } else {
            Ok(Self(p))
        }
    }

    /// A pointer the caller may leave NULL: then nothing is written.
    pub(crate) fn optional(p: *mut T) -> Self {
        Self(p)
    }

    /// Whether the caller left the pointer NULL.
    pub(crate) fn is_null(&self) -> bool {
        self.0.is_null()
    }

    /// Writes `v`, unless the pointer is NULL. The old value is not read
    /// or dropped: the memory may be uninitialised.
    ///
    /// # Safety
    ///
    /// The pointer is NULL or valid for writing one aligned `T`.
    pub(crate) unsafe fn put(&self, v: T) {
        if !self.0.is_null() {
            // SAFETY: non-NULL here, and valid for writes by the caller's
            // promise.
            unsafe { self.0.write(v) };
        }
    }
}

/// Writes a NUL-terminated static string as pointer and length (without
/// the NUL).
///
/// # Safety
///
/// As [`Out::put`], for both pointers.
pub(crate) unsafe fn put_str(ptr: &Out<*const c_char>, len: &Out<usize>, z: &'static str) {
    // SAFETY: forwarded from the caller.
    unsafe {
        ptr.put(z.as_ptr().cast());
        len.put(z.len() - 1);
    }
}

/// Borrowed bytes as C sees them: NULL for an empty slice, so that a C
/// caller never holds a dangling non-NULL pointer.
pub(crate) fn out_bytes(b: &[u8]) -> (*const u8, usize) {
    if b.is_empty() {
        (std::ptr::null(), 0)
    } else {
        (b.as_ptr(), b.len())
    }
}

/// Borrowed text as C sees it: see [`out_bytes`].
pub(crate) fn out_text(s: &str) -> (*const c_char, usize) {
    let (p, n) = out_bytes(s.as_bytes());
    (p.cast(), n)
}

/// The bytes at `ptr..ptr+len`. A length of 0 is the empty slice whatever
/// the pointer (it is not read); a NULL pointer with a length is refused,
/// and so is a length no object can have (over `isize::MAX`).
///
/// # Safety
///
/// If `len > 0` and `ptr` is not NULL, `ptr` must be valid for reading
/// `len` bytes, unchanged, for `'a`.
pub(crate) unsafe fn bytes<'a>(
    ptr: *const c_void,
    len: usize,
    what: &'static str,
) -> Result<&'a [u8], Fail> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Fail::invalid(format!("{what} is NULL with length {len}")));
    }
    if len > isize::MAX as usize {
        return Err(Fail::invalid(format!("{what}'s length {len} is too large")));
    }
    // SAFETY: non-NULL, the length fits an object, and the caller promises
    // `len` readable bytes for `'a`.
    Ok(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) })
}

/// UTF-8 text at `ptr..ptr+len` (see [`bytes`]).
///
/// # Safety
///
/// As [`bytes`].
pub(crate) unsafe fn text<'a>(
    ptr: *const c_char,
    len: usize,
    what: &'static str,
) -> Result<&'a str, Fail> {
    // SAFETY: forwarded from the caller.
    let b = unsafe { bytes(ptr.cast(), len, what)? };
    std::str::from_utf8(b).map_err(|e| {
        Fail::invalid(format!(
            "{what} is not UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })
}

/// A graph key: both parts UTF-8, then validated by the engine's rules
/// (`GLC_ENGINE_ERROR` with `INVALID_ID` if malformed).
///
/// # Safety
///
/// `key` is NULL or valid for reading one `glc_key` whose pointers follow
/// [`bytes`]'s rule.
pub(crate) unsafe fn key(key: *const glc_key) -> Result<GraphKey, Fail> {
    if key.is_null() {
        return Err(Fail::null("key"));
    }
    // SAFETY: non-NULL, and readable by the caller's promise; `glc_key` is
    // plain data, valid for any bit pattern.
    let k = unsafe { key.read() };
    // SAFETY: the caller promises the key's pointers are readable for their
    // lengths.
    let (project, graph) = unsafe {
        (
            text(k.project, k.project_len, "key->project")?,
            text(k.graph, k.graph_len, "key->graph")?,
        )
    };
    Ok(GraphKey::parse(project, graph)?)
}

/// A project id (see [`key`]).
///
/// # Safety
///
/// As [`bytes`].
pub(crate) unsafe fn project(ptr: *const c_char, len: usize) -> Result<ProjectId, Fail> {
    // SAFETY: forwarded from the caller.
    let s = unsafe { text(ptr, len, "project")? };
    Ok(ProjectId::new(s)?)
}

/// An optional request id: a length of 0 is none; otherwise UTF-8, then
/// the engine's rules (`GLC_ENGINE_ERROR` with `INVALID_ID`).
///
/// # Safety
///
/// As [`bytes`].
pub(crate) unsafe fn request(ptr: *const c_char, len: usize) -> Result<Option<RequestId>, Fail> {
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: forwarded from the caller.
    let s = unsafe { text(ptr, len, "request_id")? };
    Ok(Some(RequestId::new(s)?))
}
