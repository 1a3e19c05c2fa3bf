//! What every request goes through before its handler: the credential,
//! the body (bounded in size and time), the signature, and the project
//! scope.
//!
//! 0. The request has exactly one `Host` and at most one `X-Project-Id`
//!    (400 otherwise).
//! 1. The credential is read from the headers; a token is checked at
//!    once, and a signature's access key is looked up (401 if missing,
//!    malformed, unknown or wrong): nothing of the body is read for a
//!    request without a credential that could be valid.
//! 2. The body is read: a `Content-Length` over the limit, or a body that
//!    grows past it, is 413; a body slower than the timeout is 408. The
//!    body of a signed request is read before its signature can be
//!    checked, so every such body in flight draws on one budget
//!    (`BodyBudget`): one that would overdraw it is 503 before any of
//!    it is read, and memory held for unauthenticated bodies stays under
//!    the budget whatever the number of connections.
//! 3. A signature is checked over the method, URI, signed headers and
//!    body (401).
//! 4. A path `/v2/{project_id}/...` (or the service plane's
//!    `/ges/v1.0/{project_id}/...`) must name a project the credential
//!    covers, and an `X-Project-Id` header, if sent, must name the same
//!    project (403).
//!
//! The handler then finds the body ([`RequestBody`], absent when the
//! request has none) and the caller ([`Principal`]) in the request's
//! extensions.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::{Body, Bytes, HttpBody};
use axum::http::request::Parts;
use axum::http::{HeaderName, header};
use http_body_util::BodyExt;
use tokio::time::{Instant, timeout_at};

use crate::api::ApiState;
use crate::auth::{AuthError, Presented, Principal};
use crate::error::ApiError;

/// The request body, read and bounded by the gate.
#[derive(Debug, Clone, Default)]
pub struct RequestBody(pub Bytes);

/// How much of an oversized body is read and dropped, so that the 413
/// reaches a client that is still sending; past this the connection is
/// closed.
const DRAIN_CAP: usize = 8 << 20;

const X_PROJECT_ID: HeaderName = HeaderName::from_static("x-project-id");

/// Admits a request, or answers why not: steps 0 to 4 of the
/// [module docs](self). An admitted request carries its [`Principal`] in
/// its extensions, and its [`RequestBody`] if it has a body; its body, read
/// whole, is returned.
pub(crate) async fn admit(st: &ApiState, parts: &mut Parts, body: Body) -> Result<Body, ApiError> {
    for (name, required) in [(&header::HOST, true), (&X_PROJECT_ID, false)] {
        let n = parts.headers.get_all(name).iter().count();
        if n > 1 {
            return Err(ApiError::invalid_parameter(format!(
                "the {name} header is repeated"
            )));
        }
        if required && n == 0 {
            return Err(ApiError::invalid_parameter(format!(
                "the request has no {name} header"
            )));
        }
    }
    let refused = |e: AuthError| {
        st.auth_failed(parts, &e);
        ApiError::unauthorized(e.to_string())
    };
    let presented = st.auth.present(&parts.headers).map_err(refused)?;
    let budget = match presented {
        Presented::Signed(_) => Some(&st.unverified),
        Presented::Token(_) => None,
    };
    // A request that has no body (a GET, a POST without one) has nothing
    // to wait for, to bound or to claim.
    let (bytes, claim) = if body.is_end_stream() {
        (Bytes::new(), None)
    } else {
        // Boxed, so that a request without a body does not carry the
        // reader's state in its future.
        Box::pin(read_body(st, &parts.headers, body, budget)).await?
    };
    let principal: Principal = match presented {
        Presented::Token(p) => p,
        Presented::Signed(s) => st
            .auth
            .verify_signed(&s, &parts.method, &parts.uri, &parts.headers, &bytes)
            .map_err(refused)?,
    };
    // Authenticated: the body no longer counts against the budget.
    drop(claim);
    if let Some(project) = path_project(parts.uri.path()) {
        if !principal.covers(&project) {
            return Err(ApiError::forbidden(format!(
                "the credential does not cover project {}",
                shorten(&project)
            )));
        }
        if let Some(header_project) = parts.headers.get(X_PROJECT_ID)
            && header_project.as_bytes() != project.as_bytes()
        {
            return Err(ApiError::forbidden(
                "X-Project-Id names another project than the request path",
            ));
        }
    }
    parts.extensions.insert(principal);
    if bytes.is_empty() {
        return Ok(Body::empty());
    }
    parts.extensions.insert(RequestBody(bytes.clone()));
    Ok(Body::from(bytes))
}

/// Bytes of request bodies being read before their signature is checked,
/// across all connections, and the most there may be.
#[derive(Debug)]
pub(crate) struct BodyBudget {
    used: AtomicUsize,
    limit: usize,
}

impl BodyBudget {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// An empty claim on the budget.
    fn claim(&self) -> Claim<'_> {
        Claim {
            budget: self,
            held: 0,
        }
    }
}

/// Bytes drawn on a [`BodyBudget`], given back when dropped.
struct Claim<'a> {
    budget: &'a BodyBudget,
    held: usize,
}

impl Claim<'_> {
    /// Draws `n` more bytes; `false`, and nothing drawn, if the budget
    /// would be overdrawn.
    fn grow(&mut self, n: usize) -> bool {
        let b = self.budget;
        let drawn = b
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= b.limit)
            })
            .is_ok();
        if drawn {
            self.held += n;
        }
        drawn
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.held, Ordering::AcqRel);
    }
}

/// Reads the whole body, at most `max_body_bytes`, within
/// `body_timeout`; drawing on `budget`, if given, for every byte held,
/// until the claim returned with the body is dropped.
async fn read_body<'a>(
    st: &ApiState,
    headers: &axum::http::HeaderMap,
    mut body: Body,
    budget: Option<&'a BodyBudget>,
) -> Result<(Bytes, Option<Claim<'a>>), ApiError> {
    let limit = st.limits.max_body_bytes;
    let deadline = later(st.limits.body_timeout);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        // A client waiting for `100 Continue` has sent nothing yet: it
        // gets the 413 without being asked for the body.
        let waits = headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if !waits {
            drain(body, deadline).await;
        }
        return Err(ApiError::body_too_large(limit));
    }
    let mut claim = budget.map(BodyBudget::claim);
    // What the body declares is claimed, and allocated, before any of it
    // is read.
    let declared = declared.map_or(0, |n| usize::try_from(n).unwrap_or(limit));
    if let Some(c) = &mut claim
        && !c.grow(declared)
    {
        return Err(ApiError::busy());
    }
    let mut buf = Vec::with_capacity(declared);
    loop {
        let frame = match timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(ApiError::body_timeout()),
            Ok(None) => break,
            Ok(Some(Err(_))) => {
                return Err(ApiError::invalid_request(
                    "the request body could not be read",
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                drop(claim);
                drain(body, deadline).await;
                return Err(ApiError::body_too_large(limit));
            }
            // A body of no declared length (or longer than it declared)
            // claims, and allocates, as it grows: doubling, up to the limit.
            let needed = buf.len() + data.len();
            if needed > buf.capacity() {
                let target = needed.max(buf.capacity().saturating_mul(2)).min(limit);
                if let Some(c) = &mut claim
                    && !c.grow(target.saturating_sub(c.held))
                {
                    return Err(ApiError::busy());
                }
                buf.reserve_exact(target - buf.len());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok((Bytes::from(buf), claim))
}

/// Reads and drops what is left of a refused body, up to [`DRAIN_CAP`]
/// bytes or the deadline.
async fn drain(mut body: Body, deadline: Instant) {
    let mut seen = 0usize;
    while seen < DRAIN_CAP {
        match timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                seen += frame.data_ref().map_or(0, |d| d.len());
            }
            _ => return,
        }
    }
}

/// `d` from now, or a day from now if that is beyond the clock's range.
fn later(d: std::time::Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or(now + std::time::Duration::from_secs(86_400))
}

/// The decoded `{project_id}` of a `/v2/{project_id}/...` path (or of a
/// `/ges/v1.0/{project_id}/...` one); borrowed from the path when nothing
/// in it is percent-encoded.
pub(crate) fn path_project(path: &str) -> Option<Cow<'_, str>> {
    let rest = path
        .strip_prefix("/v2/")
        .or_else(|| path.strip_prefix("/ges/v1.0/"))?;
    let raw = rest.split('/').next()?;
    Some(percent_encoding::percent_decode_str(raw).decode_utf8_lossy())
}

/// `s` escaped and cut to 128 characters, for a log line.
pub(crate) fn printable(s: &str) -> String {
    Printable(s).to_string()
}

/// Most characters of a logged path or project.
const PRINTABLE_CHARS: usize = 128;

/// `s` as [`printable`] shows it, written out without an allocation.
#[derive(Clone, Copy)]
pub(crate) struct Printable<'a>(pub(crate) &'a str);

impl<'a> Printable<'a> {
    /// Whether escaping and cutting leave the text as it is: at most 128
    /// characters, each one `char::escape_default` keeps.
    fn is_plain(self) -> bool {
        self.0.len() <= PRINTABLE_CHARS
            && self
                .0
                .bytes()
                .all(|b| (b' '..=b'~').contains(&b) && !matches!(b, b'\\' | b'\'' | b'"'))
    }

    /// The text as [`printable`] shows it: borrowed if nothing changes.
    pub(crate) fn text(self) -> Cow<'a, str> {
        if self.is_plain() {
            Cow::Borrowed(self.0)
        } else {
            Cow::Owned(printable(self.0))
        }
    }
}

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        if self.is_plain() {
            return f.write_str(self.0);
        }
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(PRINTABLE_CHARS) {
            for e in c.escape_default() {
                f.write_char(e)?;
            }
        }
        if chars.next().is_some() {
            f.write_char('…')?;
        }
        Ok(())
    }
}

fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(64).flat_map(char::escape_default).collect();
    if s.chars().nth(64).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_project_is_the_second_path_segment_decoded() {
        assert_eq!(path_project("/v2/demo/graphs").as_deref(), Some("demo"));
        assert_eq!(path_project("/v2/de%6Do/graphs").as_deref(), Some("demo"));
        assert_eq!(path_project("/v2/").as_deref(), Some(""));
        assert_eq!(path_project("/v1/demo/graphs"), None);
        assert_eq!(
            path_project("/ges/v1.0/demo/graphs/g/vertices/detail").as_deref(),
            Some("demo")
        );
        assert_eq!(path_project("/ges/v2/demo/graphs"), None);
        assert_eq!(path_project("/"), None);
    }

    /// `printable` as it was written before `Printable`.
    fn printable_collected(s: &str) -> String {
        let mut out: String = s.chars().take(128).flat_map(char::escape_default).collect();
        if s.chars().nth(128).is_some() {
            out.push('…');
        }
        out
    }

    #[test]
    fn printable_text_escapes_and_cuts_as_before_and_borrows_plain_text() {
        let long = "a".repeat(128);
        let longer = "a".repeat(129);
        let long_utf8 = "é".repeat(100);
        for s in [
            "",
            "/v2/demo/graphs",
            "with space",
            "quote\"and'apostrophe",
            "back\\slash",
            "line\nbreak\ttab\r",
            "\u{0}nul\u{7f}del",
            "é and ☃",
            "%2e%2e",
            long.as_str(),
            longer.as_str(),
            long_utf8.as_str(),
        ] {
            let expected = printable_collected(s);
            assert_eq!(printable(s), expected, "{s:?}");
            assert_eq!(Printable(s).to_string(), expected, "{s:?}");
            let text = Printable(s).text();
            assert_eq!(text, expected, "{s:?}");
            assert_eq!(matches!(text, Cow::Borrowed(_)), expected == s, "{s:?}");
        }
    }
}
