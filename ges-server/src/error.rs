//! Failed requests: an HTTP status and the GES error body
//! `{"error_code": "GES.NNNN", "error_msg": "..."}`.
//!
//! A core [`Error`] keeps the HTTP status the core gives it
//! ([`Error::http_status`]) and gets the GES code of [`ges_code`]; the
//! message is the core's, which names the graph, job and state involved.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use graph_lifecycle::Error;

use crate::wire::ErrorBody;

/// The GES error codes this server answers with.
///
/// Codes taken from the GES reference keep its meaning; the `GES.9xxx`
/// codes are this server's own, for conditions GES has no code for.
pub mod codes {
    /// A malformed project, graph or job id, or query parameter (GES
    /// "Incorrect parameter").
    pub const INVALID_PARAMETER: &str = "GES.0001";
    /// No such route (GES "Resource not found").
    pub const RESOURCE_NOT_FOUND: &str = "GES.0016";
    /// No worker takes jobs (GES "The underlying service of the graph
    /// engine is unavailable").
    pub const ENGINE_UNAVAILABLE: &str = "GES.7005";
    /// An internal fault (GES "An internal error occurs in the underlying
    /// service of the graph engine").
    pub const INTERNAL: &str = "GES.7006";
    /// No such job on this graph (GES "The job does not exist").
    pub const JOB_NOT_FOUND: &str = "GES.7007";
    /// The job has ended already (GES "The job is stopped").
    pub const JOB_ENDED: &str = "GES.7008";
    /// The job cannot be stopped (GES "The job operation is not
    /// supported").
    pub const JOB_NOT_STOPPABLE: &str = "GES.7009";
    /// A request the graph's state refuses, a malformed body or argument
    /// ("The request is invalid", as on the restart page).
    pub const INVALID_REQUEST: &str = "GES.7016";
    /// A credential used on a project it does not cover (GES "Invalid
    /// resource access").
    pub const FORBIDDEN: &str = "GES.8006";
    /// A missing, malformed or wrong credential (GES "Invalid token").
    pub const UNAUTHORIZED: &str = "GES.8007";
    /// No such graph in this project.
    pub const GRAPH_NOT_FOUND: &str = "GES.8011";
    /// A graph of this name exists already.
    pub const GRAPH_EXISTS: &str = "GES.9001";
    /// A report about a job a forced restart voided.
    pub const STALE_EPOCH: &str = "GES.9002";
    /// A report that does not fit the job's status.
    pub const REPORT_REFUSED: &str = "GES.9003";
    /// A progress report that goes backwards or past 100.
    pub const BAD_PROGRESS: &str = "GES.9004";
    /// The engine holds as many graphs as it may.
    pub const TOO_MANY_GRAPHS: &str = "GES.9005";
    /// The graph has as many live jobs as it may.
    pub const TOO_MANY_TASKS: &str = "GES.9006";
    /// The server is shutting down and takes no new jobs.
    pub const SHUTTING_DOWN: &str = "GES.9007";
    /// The request body is over the configured limit.
    pub const BODY_TOO_LARGE: &str = "GES.9008";
    /// The request body did not arrive in time.
    pub const REQUEST_TIMEOUT: &str = "GES.9009";
    /// The route exists, the method does not.
    pub const METHOD_NOT_ALLOWED: &str = "GES.9010";
    /// An `Idempotency-Key` reused for another request (409).
    pub const REQUEST_REUSED: &str = "GES.9011";
    /// The engine's commit log cannot take a command (503).
    pub const COMMIT_LOG_FAILED: &str = "GES.9012";
    /// The project holds as many graphs, or live jobs, as its quota
    /// allows (429).
    pub const PROJECT_QUOTA: &str = "GES.9013";
    /// The request line or header block is too long or malformed, refused
    /// by the HTTP layer before any route (400, 414, 431).
    pub const BAD_HTTP: &str = "GES.9014";
    /// The server reads as many request bodies ahead of their signature
    /// check as its budget allows (503; retry).
    pub const SERVER_BUSY: &str = "GES.9015";
    /// A service-plane query on a graph whose state does not serve
    /// queries (stopped, starting, clearing, restarting, ...) (409).
    pub const NOT_SERVING: &str = "GES.9016";
}

/// The GES code of a core error (the table is in `docs/REST.md`).
///
/// ```
/// use ges_server::error::ges_code;
/// use graph_lifecycle::{Error, GraphKey};
/// let key = GraphKey::parse("demo", "movies").unwrap();
/// assert_eq!(ges_code(&Error::GraphNotFound { key }), "GES.8011");
/// ```
pub fn ges_code(e: &Error) -> &'static str {
    use codes::*;
    match e {
        Error::InvalidId { .. } => INVALID_PARAMETER,
        Error::InvalidArgument { .. } | Error::TransitionRefused { .. } => INVALID_REQUEST,
        Error::GraphNotFound { .. } => GRAPH_NOT_FOUND,
        Error::GraphExists { .. } => GRAPH_EXISTS,
        Error::TaskNotFound { .. } => JOB_NOT_FOUND,
        Error::TaskTerminal { .. } => JOB_ENDED,
        Error::StaleEpoch { .. } => STALE_EPOCH,
        Error::ReportRefused { .. } => REPORT_REFUSED,
        Error::BadProgress { .. } => BAD_PROGRESS,
        Error::NotStoppable { .. } => JOB_NOT_STOPPABLE,
        Error::TooManyGraphs { .. } => TOO_MANY_GRAPHS,
        Error::TooManyTasks { .. } => TOO_MANY_TASKS,
        Error::NoJobReceiver { .. } => ENGINE_UNAVAILABLE,
        Error::ShutDown { .. } => SHUTTING_DOWN,
        Error::RequestReused { .. } => REQUEST_REUSED,
        Error::CommitLog { .. } => COMMIT_LOG_FAILED,
        Error::ProjectFull { .. } => PROJECT_QUOTA,
        // Duplicate job ids, and any error a later core adds.
        _ => INTERNAL,
    }
}

/// Longest `error_msg`, in bytes: messages may quote client input.
const MAX_MESSAGE: usize = 512;

/// A failed request: HTTP status, GES code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// An error with this status, code and message (cut to 512 bytes).
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        Self {
            status,
            code,
            message,
        }
    }

    /// 400 `GES.7016`: a malformed body or argument.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, codes::INVALID_REQUEST, message)
    }

    /// 400 `GES.0001`: a malformed id or query parameter.
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, codes::INVALID_PARAMETER, message)
    }

    /// 401 `GES.8007`: a missing, malformed or wrong credential.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, codes::UNAUTHORIZED, message)
    }

    /// 403 `GES.8006`: a valid credential on a project it does not cover.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, codes::FORBIDDEN, message)
    }

    /// 404 `GES.0016`: no such route.
    pub fn no_route(method: &str, path: &str) -> Self {
        let shown: String = path.chars().take(128).collect();
        Self::new(
            StatusCode::NOT_FOUND,
            codes::RESOURCE_NOT_FOUND,
            format!("no such resource: {method} {shown}"),
        )
    }

    /// 405 `GES.9010`: the route exists, the method does not.
    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            codes::METHOD_NOT_ALLOWED,
            format!("method {method} is not allowed on this resource"),
        )
    }

    /// 413 `GES.9008`: the body is over `limit` bytes.
    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::BODY_TOO_LARGE,
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// 503 `GES.9015`: the budget of bodies read before their signature is
    /// checked is spent.
    pub fn busy() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::SERVER_BUSY,
            "the server is reading as many unauthenticated request bodies as it may; retry",
        )
    }

    /// 408 `GES.9009`: the body did not arrive in time.
    pub fn body_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            codes::REQUEST_TIMEOUT,
            "the request body did not arrive in time",
        )
    }

    /// 500 `GES.7006`: an internal fault.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL, message)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The GES code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::new(status, ges_code(&e), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error_code: self.code.to_owned(),
            error_msg: self.message,
        };
        let mut response = crate::api::json_response(self.status, &body);
        if self.status == StatusCode::PAYLOAD_TOO_LARGE
            || self.status == StatusCode::REQUEST_TIMEOUT
        {
            // The rest of the body may still be on its way: do not reuse
            // the connection.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
