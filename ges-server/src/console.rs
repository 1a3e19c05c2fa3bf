//! The web console: a page at `/console/` that shows a project's graphs,
//! their states and live jobs, the task center, and acts on them
//! (`docs/REST.md`, section 16).
//!
//! Its three files (HTML, CSS, JavaScript, hand-written, in
//! `ges-server/console/`) are built into the binary: nothing is fetched
//! from anywhere at run time, and there is no build step. The pages carry
//! no data and need no credential; the page's script signs in with a
//! token it keeps in the browser's session storage (never in a URL) and
//! calls the API like any client, with the same credentials and the same
//! gate, and reads the event stream ([`crate::events`]) with `fetch`, so
//! that the token travels in a header. Its nodes panel reads the cluster
//! view (`GET /v2/{project_id}/cluster`, [`crate::cluster`]) the same way,
//! and shows only on a cluster node.
//!
//! Every answer under `/console` carries a strict Content-Security-Policy
//! ([`CSP`]): scripts and styles only from the server's own files, no
//! inline script or style, no framing, no form posting anywhere; the
//! script writes every name, job and fail reason as text, never as markup.

use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Where the console is served.
pub const PREFIX: &str = "/console";

/// The Content-Security-Policy of every answer under [`PREFIX`].
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; \
base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const INDEX: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/console.js");
const STYLE: &str = include_str!("../console/console.css");

/// The answer to a request under [`PREFIX`], or `None` for any other
/// path (which goes through the gate to the API).
pub fn respond(parts: &Parts) -> Option<Response> {
    let path = parts.uri.path();
    let rest = path.strip_prefix(PREFIX)?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let mut response = answer(&parts.method, rest);
    secure(&mut response);
    Some(response)
}

fn answer(method: &Method, rest: &str) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return ApiError::method_not_allowed(method.as_str()).into_response();
    }
    let (kind, body): (&str, &'static str) = match rest {
        "" => {
            return (
                StatusCode::PERMANENT_REDIRECT,
                [(header::LOCATION, "/console/")],
            )
                .into_response();
        }
        "/" | "/index.html" => ("text/html; charset=utf-8", INDEX),
        "/console.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "/console.css" => ("text/css; charset=utf-8", STYLE),
        _ => {
            return ApiError::new(
                StatusCode::NOT_FOUND,
                crate::error::codes::RESOURCE_NOT_FOUND,
                "the console has no such file",
            )
            .into_response();
        }
    };
    let body = if method == Method::HEAD { "" } else { body };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

/// The headers that keep the console's pages to themselves.
fn secure(r: &mut Response) {
    let h = r.headers_mut();
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
        ("cache-control", "no-store"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Option<Response> {
        let (parts, ()) = axum::http::Request::builder()
            .uri(path)
            .body(())
            .unwrap()
            .into_parts();
        respond(&parts)
    }

    #[test]
    fn the_console_answers_its_own_paths_with_the_policy() {
        for path in ["/console/", "/console/console.js", "/console/console.css"] {
            let r = get(path).unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(r.headers()["content-security-policy"], CSP);
            assert_eq!(r.headers()["x-frame-options"], "DENY");
        }
        assert_eq!(
            get("/console").unwrap().status(),
            StatusCode::PERMANENT_REDIRECT
        );
        let missing = get("/console/nothing").unwrap();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(missing.headers()["content-security-policy"], CSP);
        assert!(get("/consoles").is_none());
        assert!(get("/v2/demo/graphs").is_none());
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        assert!(!INDEX.contains("<script>"));
        assert!(!INDEX.contains("style="));
        assert!(!INDEX.contains("<style"));
        // No inline event handler: no attribute `on...=` in any tag.
        for tag in INDEX.split('<').skip(1) {
            let tag = tag.split('>').next().unwrap_or_default();
            for word in tag.split_ascii_whitespace().skip(1) {
                assert!(
                    !(word.starts_with("on") && word.contains('=')),
                    "an inline event handler in <{tag}>"
                );
            }
        }
        assert!(!SCRIPT.contains("innerHTML"));
        assert!(!SCRIPT.contains("outerHTML"));
        assert!(!SCRIPT.contains("insertAdjacentHTML"));
        assert!(!SCRIPT.contains("eval("));
    }
}
