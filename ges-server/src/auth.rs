//! Authentication: `X-Auth-Token` bearer tokens and `SDK-HMAC-SHA256`
//! AK/SK signatures, checked against the configured credentials.
//!
//! A signed request carries `X-Sdk-Date: YYYYMMDDTHHMMSSZ` and
//! `Authorization: SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=<h1;h2>,
//! Signature=<hex>`. The server rebuilds the canonical request exactly as
//! the official SDKs build it:
//!
//! ```text
//! METHOD
//! /canonical/uri/            each segment percent-encoded, trailing '/'
//! a=1&b=2                    query pairs decoded, sorted, re-encoded
//! h1:value1
//! h2:value2
//!                            (the headers block ends with an empty line)
//! h1;h2
//! hex(sha256(body))
//! ```
//!
//! signs `"SDK-HMAC-SHA256\n" + X-Sdk-Date + "\n" + hex(sha256(canonical))`
//! with the secret key, and compares the result with the request's
//! signature in constant time. `host` and `x-sdk-date` must be among the
//! signed headers (a signature that does not cover the host could be sent
//! to any host the key is good for), and the date must be within the
//! configured skew of the server's clock. Tokens are compared in constant
//! time too (as SHA-256 digests, so their lengths do not leak either).
//!
//! One credential per request: a token beside a signature is refused,
//! whichever of them is valid. A signed request's access key is looked up
//! from its headers, before its body is read, so that a request with a
//! key nobody configured costs no more than its head. An unknown key and a
//! wrong signature get the same refusal, so that the answer does not tell
//! which keys exist.
//!
//! Within the skew window a captured signed request can be replayed, as
//! with the service this server stands in for; run it behind TLS.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, Method, Uri, header::AsHeaderName};
use graph_lifecycle::{Clock, SystemClock};
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::AuthConfig;

/// The signing algorithm's name, the first word of `Authorization`.
pub const ALGORITHM: &str = "SDK-HMAC-SHA256";

/// Everything but the unreserved characters `A-Z a-z 0-9 - _ . ~` is
/// percent-encoded, as the SDKs' `quote(s, safe='~')` does.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

const X_AUTH_TOKEN: HeaderName = HeaderName::from_static("x-auth-token");
const X_SDK_DATE: HeaderName = HeaderName::from_static("x-sdk-date");
const X_SDK_CONTENT_SHA256: HeaderName = HeaderName::from_static("x-sdk-content-sha256");

/// Most headers a signature may cover.
const MAX_SIGNED_HEADERS: usize = 64;

/// Why a request was not authenticated; every variant is a 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Neither `X-Auth-Token` nor a signed `Authorization` header.
    #[error("the request carries no credential: send X-Auth-Token or an SDK-HMAC-SHA256 signature")]
    Missing,
    /// A credential that cannot be parsed.
    #[error("malformed credential: {0}")]
    Malformed(&'static str),
    /// A token nobody configured.
    #[error("the token is not valid")]
    BadToken,
    /// An access key nobody configured. Reads as [`BadSignature`] does.
    ///
    /// [`BadSignature`]: AuthError::BadSignature
    #[error("the access key and signature are not valid for the request")]
    UnknownAccessKey,
    /// The signature does not match the request.
    #[error("the access key and signature are not valid for the request")]
    BadSignature,
    /// Both a token and a signature.
    #[error(
        "the request carries more than one credential: send X-Auth-Token or a signature, not both"
    )]
    TwoCredentials,
    /// `X-Sdk-Date` is too far from the server's clock.
    #[error("X-Sdk-Date is more than {max_skew_secs} s away from the server's clock")]
    Stale {
        /// The allowed skew.
        max_skew_secs: u64,
    },
}

impl AuthError {
    /// A short, stable name of the reason, for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed(_) => "malformed",
            AuthError::BadToken => "bad_token",
            AuthError::UnknownAccessKey => "unknown_access_key",
            AuthError::BadSignature => "bad_signature",
            AuthError::TwoCredentials => "two_credentials",
            AuthError::Stale { .. } => "stale_date",
        }
    }
}

/// Who is calling: which kind of credential, and the projects it covers.
#[derive(Debug, Clone)]
pub struct Principal {
    /// How the caller authenticated.
    pub credential: Credential,
    projects: Arc<[String]>,
}

/// The kind of credential a [`Principal`] used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An `X-Auth-Token`.
    Token,
    /// A signature by this access key.
    AccessKey(String),
}

impl Principal {
    /// Whether the credential covers `project`.
    pub fn covers(&self, project: &str) -> bool {
        self.projects.iter().any(|p| p == project)
    }

    /// The projects the credential covers.
    pub fn projects(&self) -> &[String] {
        &self.projects
    }
}

struct KeyEntry {
    /// The HMAC keyed with the secret key, cloned for each request (the
    /// key's pads are hashed once, here).
    mac: Hmac<Sha256>,
    projects: Arc<[String]>,
}

/// Checks credentials against the configuration.
pub struct Authenticator {
    tokens: Vec<([u8; 32], Arc<[String]>)>,
    keys: HashMap<String, KeyEntry>,
    max_skew: Duration,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("tokens", &self.tokens.len())
            .field("access_keys", &self.keys.len())
            .field("max_skew", &self.max_skew)
            .finish_non_exhaustive()
    }
}

/// What a request presents, before the body is read.
pub enum Presented {
    /// A token that checked out.
    Token(Principal),
    /// A signature, to check once the body is in.
    Signed(SignedRequest),
}

/// The parsed `Authorization` header of a signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// The access key.
    pub access_key: String,
    /// The signed header names, lower-case, in the order given.
    pub signed_headers: Vec<String>,
    /// The signature, decoded from hex.
    pub signature: Vec<u8>,
}

impl Authenticator {
    /// An authenticator for the configured credentials, on the system
    /// clock.
    pub fn new(cfg: &AuthConfig) -> Self {
        Self::with_clock(cfg, SystemClock)
    }

    /// An authenticator whose skew check reads `clock`.
    pub fn with_clock(cfg: &AuthConfig, clock: impl Clock) -> Self {
        Self::with_shared_clock(cfg, Arc::new(clock))
    }

    pub(crate) fn with_shared_clock(cfg: &AuthConfig, clock: Arc<dyn Clock>) -> Self {
        let tokens = cfg
            .tokens
            .iter()
            .map(|t| (sha256(t.token.as_bytes()), Arc::from(t.projects.clone())))
            .collect();
        let keys = cfg
            .access_keys
            .iter()
            .map(|k| {
                let entry = KeyEntry {
                    mac: <Hmac<Sha256> as KeyInit>::new_from_slice(k.sk.as_bytes())
                        .expect("HMAC takes a key of any length"),
                    projects: Arc::from(k.projects.clone()),
                };
                (k.ak.clone(), entry)
            })
            .collect();
        Self {
            tokens,
            keys,
            max_skew: Duration::from_secs(cfg.max_clock_skew_secs),
            clock,
        }
    }

    /// Reads the credential from the headers. A token is checked at once;
    /// a signature needs the body ([`verify_signed`](Self::verify_signed)).
    ///
    /// # Errors
    ///
    /// [`AuthError::Missing`], [`AuthError::Malformed`],
    /// [`AuthError::BadToken`].
    pub fn present(&self, headers: &HeaderMap) -> Result<Presented, AuthError> {
        let mut authorizations = headers.get_all(axum::http::header::AUTHORIZATION).iter();
        if let Some(auth) = authorizations.next() {
            if authorizations.next().is_some() {
                return Err(AuthError::Malformed("more than one Authorization header"));
            }
            let auth = auth
                .to_str()
                .map_err(|_| AuthError::Malformed("Authorization is not ASCII"))?;
            if let Some(rest) = auth.strip_prefix(ALGORITHM) {
                if headers.contains_key(X_AUTH_TOKEN) {
                    return Err(AuthError::TwoCredentials);
                }
                let signed = parse_authorization(rest)?;
                if !self.keys.contains_key(&signed.access_key) {
                    return Err(AuthError::UnknownAccessKey);
                }
                return Ok(Presented::Signed(signed));
            }
        }
        let mut tokens = headers.get_all(X_AUTH_TOKEN).iter();
        let Some(token) = tokens.next() else {
            return Err(if headers.contains_key(axum::http::header::AUTHORIZATION) {
                AuthError::Malformed("Authorization is not an SDK-HMAC-SHA256 signature")
            } else {
                AuthError::Missing
            });
        };
        if tokens.next().is_some() {
            return Err(AuthError::Malformed("more than one X-Auth-Token"));
        }
        self.check_token(token.as_bytes()).map(Presented::Token)
    }

    fn check_token(&self, token: &[u8]) -> Result<Principal, AuthError> {
        let digest = sha256(token);
        // Every entry is compared, in constant time, whatever matched.
        let mut found = None;
        for (i, (expected, _)) in self.tokens.iter().enumerate() {
            let hit: bool = expected.ct_eq(&digest).into();
            if hit && found.is_none() {
                found = Some(i);
            }
        }
        let (_, projects) = found
            .and_then(|i| self.tokens.get(i))
            .ok_or(AuthError::BadToken)?;
        Ok(Principal {
            credential: Credential::Token,
            projects: projects.clone(),
        })
    }

    /// Checks a signed request: the access key, the signature over the
    /// canonical request, then the date's skew.
    ///
    /// # Errors
    ///
    /// [`AuthError::UnknownAccessKey`], [`AuthError::Malformed`],
    /// [`AuthError::BadSignature`], [`AuthError::Stale`].
    pub fn verify_signed(
        &self,
        signed: &SignedRequest,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Principal, AuthError> {
        let key = self
            .keys
            .get(&signed.access_key)
            .ok_or(AuthError::UnknownAccessKey)?;
        let date = single_header(headers, X_SDK_DATE)?
            .ok_or(AuthError::Malformed("X-Sdk-Date is missing"))?;
        let date_ms = parse_sdk_date(date.trim())
            .ok_or(AuthError::Malformed("X-Sdk-Date is not YYYYMMDDTHHMMSSZ"))?;
        let mut body_hash = [0u8; 64];
        let body_hash = hex_sha256(body, &mut body_hash);
        if let Some(content_hash) = single_header(headers, X_SDK_CONTENT_SHA256)?
            && !body.is_empty()
            && content_hash.trim() != body_hash
        {
            return Err(AuthError::Malformed(
                "X-Sdk-Content-Sha256 is not the body's SHA-256 (unsigned payloads are refused)",
            ));
        }
        let mut lines = Vec::with_capacity(signed.signed_headers.len());
        for name in &signed.signed_headers {
            let value = single_header(headers, name)?
                .ok_or(AuthError::Malformed("a signed header is missing"))?;
            lines.push((name.as_str(), value));
        }
        // The canonical request is hashed as it is written out, never held
        // whole; the string to sign goes into the HMAC the same way.
        let mut canonical = Sha256::new();
        // Its pieces are gathered on the stack and hashed a block of them
        // at a time: hashing each small piece on its own costs more than
        // the hash.
        let mut gathered = [0u8; 1024];
        let mut len = 0;
        write_canonical_request(
            method.as_str(),
            uri.path(),
            uri.query().unwrap_or(""),
            &lines,
            body_hash,
            &mut |piece| {
                let piece = piece.as_bytes();
                if len + piece.len() > gathered.len() {
                    canonical.update(&gathered[..len]);
                    len = 0;
                }
                if piece.len() > gathered.len() {
                    canonical.update(piece);
                } else {
                    gathered[len..len + piece.len()].copy_from_slice(piece);
                    len += piece.len();
                }
            },
        );
        canonical.update(&gathered[..len]);
        let mut canonical_hash = [0u8; 64];
        let canonical_hash = hex_digest(canonical.finalize().into(), &mut canonical_hash);
        let mut mac = key.mac.clone();
        write_string_to_sign(date.trim(), canonical_hash, &mut |piece| {
            mac.update(piece.as_bytes());
        });
        mac.verify_slice(&signed.signature)
            .map_err(|_| AuthError::BadSignature)?;
        let now = self.clock.now().as_millis();
        if now.abs_diff(date_ms) > u64::try_from(self.max_skew.as_millis()).unwrap_or(u64::MAX) {
            return Err(AuthError::Stale {
                max_skew_secs: self.max_skew.as_secs(),
            });
        }
        Ok(Principal {
            credential: Credential::AccessKey(signed.access_key.clone()),
            projects: key.projects.clone(),
        })
    }
}

/// Parses what follows `SDK-HMAC-SHA256` in `Authorization`.
fn parse_authorization(rest: &str) -> Result<SignedRequest, AuthError> {
    if !rest.starts_with(' ') {
        return Err(AuthError::Malformed(
            "Authorization is not an SDK-HMAC-SHA256 signature",
        ));
    }
    let (mut access, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or(AuthError::Malformed("Authorization has a part without '='"))?;
        let slot = match k {
            "Access" => &mut access,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => return Err(AuthError::Malformed("Authorization has an unknown part")),
        };
        if slot.replace(v).is_some() {
            return Err(AuthError::Malformed("Authorization repeats a part"));
        }
    }
    let access = access.ok_or(AuthError::Malformed("Authorization has no Access"))?;
    let signed = signed.ok_or(AuthError::Malformed("Authorization has no SignedHeaders"))?;
    let signature = signature.ok_or(AuthError::Malformed("Authorization has no Signature"))?;
    if access.is_empty() {
        return Err(AuthError::Malformed("the access key is empty"));
    }
    let not_names =
        AuthError::Malformed("SignedHeaders must be lower-case header names joined by ';'");
    // Counted before anything is allocated for them.
    let count = signed.bytes().filter(|&b| b == b';').count() + 1;
    if count > MAX_SIGNED_HEADERS
        || signed.split(';').any(|h| {
            h.is_empty()
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
    {
        return Err(not_names);
    }
    let mut signed_headers = Vec::with_capacity(count);
    signed_headers.extend(signed.split(';').map(str::to_owned));
    for must in ["host", "x-sdk-date"] {
        if !signed_headers.iter().any(|h| h == must) {
            return Err(AuthError::Malformed(if must == "host" {
                "host must be a signed header"
            } else {
                "x-sdk-date must be a signed header"
            }));
        }
    }
    if signature.len() != 64 {
        return Err(AuthError::Malformed("the signature is not 64 hex digits"));
    }
    let signature =
        decode_hex(signature).ok_or(AuthError::Malformed("the signature is not hex"))?;
    Ok(SignedRequest {
        access_key: access.to_owned(),
        signed_headers,
        signature,
    })
}

/// The one value of a header, as text (UTF-8, invalid bytes replaced);
/// `None` if absent.
fn single_header<'a>(
    headers: &'a HeaderMap,
    name: impl AsHeaderName,
) -> Result<Option<std::borrow::Cow<'a, str>>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::Malformed(
            "a signed header appears more than once",
        ));
    }
    Ok(Some(String::from_utf8_lossy(v.as_bytes())))
}

/// Milliseconds since the epoch of an `X-Sdk-Date` value.
fn parse_sdk_date(s: &str) -> Option<u64> {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
        time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    // The form every client sends, read directly; anything else (a sign
    // before the year, say) goes to the time crate's parser.
    let dt = match plain_sdk_date(s.as_bytes()) {
        Some(dt) => dt,
        None => time::PrimitiveDateTime::parse(s, FORMAT).ok()?,
    };
    u64::try_from(dt.assume_utc().unix_timestamp())
        .ok()?
        .checked_mul(1_000)
}

/// `YYYYMMDDTHHMMSSZ`, sixteen bytes, a valid date and time.
fn plain_sdk_date(s: &[u8]) -> Option<time::PrimitiveDateTime> {
    if s.len() != 16 || s[8] != b'T' || s[15] != b'Z' {
        return None;
    }
    let number = |from: usize, to: usize| {
        s[from..to].iter().try_fold(0u32, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
        })
    };
    let year = i32::try_from(number(0, 4)?).ok()?;
    let month = time::Month::try_from(u8::try_from(number(4, 6)?).ok()?).ok()?;
    let day = u8::try_from(number(6, 8)?).ok()?;
    let hour = u8::try_from(number(9, 11)?).ok()?;
    let minute = u8::try_from(number(11, 13)?).ok()?;
    let second = u8::try_from(number(13, 15)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    let time = time::Time::from_hms(hour, minute, second).ok()?;
    Some(time::PrimitiveDateTime::new(date, time))
}

/// Lower- or upper-case hex, decoded.
fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let s = s.as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 2);
    for pair in s.chunks_exact(2) {
        out.push(digit(pair[0])? << 4 | digit(pair[1])?);
    }
    Some(out)
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// `digest` in lower-case hex, written into `out`.
fn hex_digest(digest: [u8; 32], out: &mut [u8; 64]) -> &str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in digest.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
    std::str::from_utf8(out).unwrap_or_default()
}

/// The hex SHA-256 of `data`, written into `out`.
fn hex_sha256<'a>(data: &[u8], out: &'a mut [u8; 64]) -> &'a str {
    /// The hex SHA-256 of nothing: the body of most signed requests.
    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    if data.is_empty() {
        return EMPTY;
    }
    hex_digest(sha256(data), out)
}

fn decode_lossy(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The canonical URI: the path decoded, split on `/`, each segment
/// encoded, and a trailing `/`.
pub fn canonical_uri(path: &str) -> String {
    let mut out = String::new();
    write_canonical_uri(path, &mut |piece| out.push_str(piece));
    out
}

fn write_canonical_uri(path: &str, out: &mut impl FnMut(&str)) {
    // A path of unreserved characters and '/' only is its own canonical
    // form: nothing to decode, nothing to encode.
    if path
        .bytes()
        .all(|b| b == b'/' || b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
    {
        out(path);
        if !path.ends_with('/') {
            out("/");
        }
        return;
    }
    let decoded = percent_decode_str(path).decode_utf8_lossy();
    for (i, seg) in decoded.split('/').enumerate() {
        if i > 0 {
            out("/");
        }
        utf8_percent_encode(seg, ENCODE).for_each(&mut *out);
    }
    // The segments joined end with '/' exactly when the path does.
    if !decoded.ends_with('/') {
        out("/");
    }
}

/// The canonical query string: pairs decoded, sorted by key then value,
/// encoded, `k=v` joined by `&`.
pub fn canonical_query(query: &str) -> String {
    let mut out = String::new();
    write_canonical_query(query, &mut |piece| out.push_str(piece));
    out
}

fn write_canonical_query(query: &str, out: &mut impl FnMut(&str)) {
    if query.is_empty() {
        return;
    }
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode_lossy(k), decode_lossy(v))
        })
        .collect();
    pairs.sort();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out("&");
        }
        utf8_percent_encode(k, ENCODE).for_each(&mut *out);
        out("=");
        utf8_percent_encode(v, ENCODE).for_each(&mut *out);
    }
}

/// The canonical request of a signed request: method, canonical URI,
/// canonical query, one `name:value` line per signed header (values
/// trimmed) and an empty line, the signed header names, and the hex
/// SHA-256 of the body.
pub fn canonical_request(
    method: &str,
    path: &str,
    query: &str,
    signed_headers: &[(&str, std::borrow::Cow<'_, str>)],
    body: &[u8],
) -> String {
    let mut out = String::new();
    let mut body_hash = [0u8; 64];
    write_canonical_request(
        method,
        path,
        query,
        signed_headers,
        hex_sha256(body, &mut body_hash),
        &mut |piece| out.push_str(piece),
    );
    out
}

/// Writes the canonical request, piece by piece, to `out`.
fn write_canonical_request(
    method: &str,
    path: &str,
    query: &str,
    signed_headers: &[(&str, std::borrow::Cow<'_, str>)],
    body_hash: &str,
    out: &mut impl FnMut(&str),
) {
    if method.bytes().any(|b| b.is_ascii_lowercase()) {
        out(&method.to_ascii_uppercase());
    } else {
        out(method);
    }
    out("\n");
    write_canonical_uri(path, out);
    out("\n");
    write_canonical_query(query, out);
    out("\n");
    for (name, value) in signed_headers {
        out(name);
        out(":");
        out(value.trim());
        out("\n");
    }
    out("\n");
    for (i, (name, _)) in signed_headers.iter().enumerate() {
        if i > 0 {
            out(";");
        }
        out(name);
    }
    out("\n");
    out(body_hash);
}

/// The string that is signed: algorithm, date, hex SHA-256 of the
/// canonical request.
pub fn string_to_sign(sdk_date: &str, canonical_request: &str) -> String {
    let mut hash = [0u8; 64];
    let hash = hex_sha256(canonical_request.as_bytes(), &mut hash);
    let mut out = String::new();
    write_string_to_sign(sdk_date, hash, &mut |piece| out.push_str(piece));
    out
}

fn write_string_to_sign(sdk_date: &str, canonical_hash: &str, out: &mut impl FnMut(&str)) {
    out(ALGORITHM);
    out("\n");
    out(sdk_date);
    out("\n");
    out(canonical_hash);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AccessKeyEntry, TokenEntry};
    use axum::http::HeaderValue;
    use graph_lifecycle::{ManualClock, Timestamp};

    // A request signed by the official Python SDK's signer
    // (`huaweicloudsdkcore.signer.Signer`) with this key pair.
    const AK: &str = "GESTESTAK0000EXAMPLE";
    const SK: &str = "GesTestSecretKey0000000000000000000EXAMPLE";
    const SDK_SIGNATURE: &str = "e0f49a6e42c0d461b4ec5b7d3a64b206c3451e1f0fd562354d9c3d6e07d6ca17";
    // 2024-05-01T12:00:00Z
    const DATE_MS: u64 = 1_714_564_800_000;

    fn auth(now_ms: u64) -> Authenticator {
        let cfg = AuthConfig {
            max_clock_skew_secs: 900,
            tokens: vec![TokenEntry {
                token: "demo-token".into(),
                projects: vec!["demo".into()],
            }],
            access_keys: vec![AccessKeyEntry {
                ak: AK.into(),
                sk: SK.into(),
                projects: vec!["demo".into()],
            }],
        };
        Authenticator::with_clock(&cfg, ManualClock::new(Timestamp::from_millis(now_ms)))
    }

    fn sdk_request(signature: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("content-type", "application/json"),
            ("host", "ges.example.test"),
            ("user-agent", "huaweicloud-usdk-python/3.0"),
            ("x-project-id", "demo"),
            ("x-sdk-date", "20240501T120000Z"),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        let auth = format!(
            "SDK-HMAC-SHA256 Access={AK}, SignedHeaders=content-type;host;user-agent;x-project-id;x-sdk-date, Signature={signature}"
        );
        h.insert("authorization", HeaderValue::from_str(&auth).unwrap());
        h
    }

    fn check(a: &Authenticator, headers: &HeaderMap, body: &[u8]) -> Result<Principal, AuthError> {
        let Presented::Signed(s) = a.present(headers)? else {
            panic!("not a signed request")
        };
        let uri: Uri = "/v2/demo/graphs".parse().unwrap();
        a.verify_signed(&s, &Method::POST, &uri, headers, body)
    }

    #[test]
    fn the_sdk_signature_is_accepted() {
        let p = check(
            &auth(DATE_MS + 60_000),
            &sdk_request(SDK_SIGNATURE),
            br#"{"graph": {"name": "signed"}}"#,
        )
        .unwrap();
        assert!(p.covers("demo") && !p.covers("other"));
        assert_eq!(p.credential, Credential::AccessKey(AK.into()));
    }

    #[test]
    fn another_body_a_wrong_signature_or_a_stale_date_is_refused() {
        let a = auth(DATE_MS);
        let h = sdk_request(SDK_SIGNATURE);
        assert_eq!(
            check(&a, &h, br#"{"graph": {"name": "other"}}"#).unwrap_err(),
            AuthError::BadSignature
        );
        let wrong = sdk_request(&SDK_SIGNATURE.replace('e', "f"));
        assert_eq!(
            check(&a, &wrong, br#"{"graph": {"name": "signed"}}"#).unwrap_err(),
            AuthError::BadSignature
        );
        assert_eq!(
            check(
                &auth(DATE_MS + 901_000),
                &h,
                br#"{"graph": {"name": "signed"}}"#
            )
            .unwrap_err(),
            AuthError::Stale { max_skew_secs: 900 }
        );
    }

    #[test]
    fn tokens_are_checked_and_malformed_headers_refused() {
        let a = auth(DATE_MS);
        let mut h = HeaderMap::new();
        assert!(matches!(a.present(&h), Err(AuthError::Missing)));
        h.insert("x-auth-token", HeaderValue::from_static("demo-token"));
        assert!(matches!(a.present(&h), Ok(Presented::Token(p)) if p.covers("demo")));
        h.insert("x-auth-token", HeaderValue::from_static("demo-tokeN"));
        assert!(matches!(a.present(&h), Err(AuthError::BadToken)));
        for bad in [
            "SDK-HMAC-SHA256",
            "SDK-HMAC-SHA256 Access=A",
            "SDK-HMAC-SHA256 Access=A, SignedHeaders=host, Signature=00",
            "SDK-HMAC-SHA256 Access=A, SignedHeaders=Host;x-sdk-date, Signature=00",
            "SDK-HMAC-SHA256 Access=A, Access=B, SignedHeaders=x-sdk-date, Signature=00",
            "SDK-HMAC-SHA256 Access=A, SignedHeaders=x-sdk-date, Signature=zz",
            "Bearer abc",
            &format!(
                "SDK-HMAC-SHA256 Access={AK}, SignedHeaders=host;x-sdk-date{}, Signature={}",
                ";x-a".repeat(63),
                "0".repeat(64)
            ),
        ] {
            let mut h = HeaderMap::new();
            h.insert("authorization", HeaderValue::from_str(bad).unwrap());
            assert!(
                matches!(a.present(&h), Err(AuthError::Malformed(_))),
                "{bad} was not refused as malformed"
            );
        }
    }

    /// The canonical request as it was built before it was written out
    /// piece by piece: whole strings, joined.
    fn canonical_request_joined(
        method: &str,
        path: &str,
        query: &str,
        signed_headers: &[(&str, std::borrow::Cow<'_, str>)],
        body: &[u8],
    ) -> String {
        let uri = {
            let mut out = decode_lossy(path)
                .split('/')
                .map(|seg| utf8_percent_encode(seg, ENCODE).to_string())
                .collect::<Vec<_>>()
                .join("/");
            if !out.ends_with('/') {
                out.push('/');
            }
            out
        };
        let query = {
            let mut pairs: Vec<(String, String)> = query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode_lossy(k), decode_lossy(v))
                })
                .collect();
            pairs.sort();
            pairs
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}={}",
                        utf8_percent_encode(k, ENCODE),
                        utf8_percent_encode(v, ENCODE)
                    )
                })
                .collect::<Vec<_>>()
                .join("&")
        };
        let mut headers = String::new();
        for (name, value) in signed_headers {
            headers.push_str(name);
            headers.push(':');
            headers.push_str(value.trim());
            headers.push('\n');
        }
        let names = signed_headers
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(";");
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            method.to_ascii_uppercase(),
            uri,
            query,
            headers,
            names,
            hex::encode(sha256(body))
        )
    }

    #[test]
    fn the_canonical_request_written_in_pieces_is_the_joined_one() {
        let headers: Vec<(&str, std::borrow::Cow<'_, str>)> = vec![
            ("content-type", " application/json ".into()),
            ("host", "ges.example.test".into()),
            ("x-sdk-date", "20240501T120000Z".into()),
        ];
        for method in ["GET", "post", "BREW"] {
            for path in [
                "",
                "/",
                "//",
                "/v2/demo/graphs",
                "/v2/demo/graphs/",
                "/v2/a%20b/x:y/",
                "/v2/%E2%98%83/%ZZ/%2F",
                "/v2/\u{e9}t\u{e9}",
                "/v2/a.b~c-d_E9/..//x",
                "/v2/a+b/c=d",
            ] {
                for query in [
                    "",
                    "b=2&a&a=1",
                    "status=success&limit=5&graph_name=a%20b",
                    "&&x",
                ] {
                    for body in [&b""[..], b"{}", br#"{"graph": {"name": "signed"}}"#] {
                        for signed in [&headers[..], &headers[..1], &[][..]] {
                            let joined =
                                canonical_request_joined(method, path, query, signed, body);
                            assert_eq!(
                                canonical_request(method, path, query, signed, body),
                                joined,
                                "{method} {path:?} {query:?}"
                            );
                            let mut hash = [0u8; 64];
                            let mut digest = Sha256::new();
                            write_canonical_request(
                                method,
                                path,
                                query,
                                signed,
                                hex_sha256(body, &mut hash),
                                &mut |p| digest.update(p.as_bytes()),
                            );
                            assert_eq!(
                                <[u8; 32]>::from(digest.finalize()),
                                sha256(joined.as_bytes())
                            );
                        }
                    }
                }
            }
        }
        assert_eq!(
            string_to_sign("20240501T120000Z", "x"),
            format!(
                "SDK-HMAC-SHA256\n20240501T120000Z\n{}",
                hex::encode(sha256(b"x"))
            )
        );
    }

    #[test]
    fn sdk_dates_read_directly_are_read_as_the_time_crate_reads_them() {
        const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
            time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
        let by_time = |s: &str| {
            time::PrimitiveDateTime::parse(s, FORMAT)
                .ok()
                .and_then(|dt| u64::try_from(dt.assume_utc().unix_timestamp()).ok())
                .and_then(|secs| secs.checked_mul(1_000))
        };
        for s in [
            "20240501T120000Z",
            "19700101T000000Z",
            "19691231T235959Z",
            "20240229T235959Z",
            "20230229T000000Z",
            "20241301T000000Z",
            "20240001T000000Z",
            "20240500T000000Z",
            "20240431T000000Z",
            "20240501T240000Z",
            "20240501T126000Z",
            "20240501T120060Z",
            "99991231T235959Z",
            "00000101T000000Z",
            "+20240501T120000Z",
            "2024050lT120000Z",
            "20240501t120000Z",
            "20240501T120000z",
            "20240501T120000",
            "20240501T120000ZZ",
            "2024-05-01T12:00:00Z",
            "",
        ] {
            assert_eq!(parse_sdk_date(s), by_time(s), "{s:?}");
        }
    }

    #[test]
    fn hex_is_decoded_as_the_hex_crate_decodes_it() {
        for s in ["", "00", "0aFf", "e0f49a6e42c0d461", "0", "zz", "0g", "ä0"] {
            assert_eq!(decode_hex(s), hex::decode(s).ok(), "{s:?}");
        }
    }

    #[test]
    fn canonical_forms_follow_the_sdk() {
        assert_eq!(canonical_uri("/v2/demo/graphs"), "/v2/demo/graphs/");
        assert_eq!(canonical_uri("/v2/a%20b/x:y/"), "/v2/a%20b/x%3Ay/");
        assert_eq!(
            canonical_query("status=success&limit=5&graph_name=a%20b&offset=0"),
            "graph_name=a%20b&limit=5&offset=0&status=success"
        );
        assert_eq!(canonical_query(""), "");
        assert_eq!(canonical_query("b=2&a&a=1"), "a=&a=1&b=2");
    }
}
