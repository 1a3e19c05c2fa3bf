//! The routes of the GES management API and their handlers: each one
//! parses the request, makes one call on the [`Engine`], and renders the
//! answer. The engine's calls are synchronous and never block (they take
//! a graph's lock for microseconds and never wait on the host), so the
//! handlers call them directly on the async runtime's threads.
//!
//! | method and path | engine call |
//! |---|---|
//! | `POST /v2/{p}/graphs` | [`Engine::create_graph`] |
//! | `GET /v2/{p}/graphs` | [`Engine::graphs`] |
//! | `GET /v2/{p}/graphs/{g}` | [`Engine::graph_info`] |
//! | `DELETE /v2/{p}/graphs/{g}` | [`Engine::remove_graph`] |
//! | `POST /v2/{p}/graphs/{g}/start` | [`Engine::start_with`] |
//! | `POST /v2/{p}/graphs/{g}/stop` | [`Engine::stop`] |
//! | `POST /v2/{p}/graphs/{g}/restart` | [`Engine::force_restart`] |
//! | `POST /v2/{p}/graphs/{g}/import-graph` | [`Engine::import`] |
//! | `POST /v2/{p}/graphs/{g}/export-graph` | [`Engine::export`] |
//! | `POST /v2/{p}/graphs/{g}/clear-graph` | [`Engine::clear`] |
//! | `GET /v2/{p}/graphs/{g}/jobs/{j}/status` | [`Engine::task`] |
//! | `GET /v2/{p}/graphs/jobs` | [`Engine::project_tasks`], or [`Engine::tasks`] with `graph_name` |
//! | `GET /v2/{p}/events` | [`Engine::subscribe`], once per server ([`crate::events`]) |
//! | `GET /v2/{p}/cluster` | the cluster node's status and owners ([`crate::cluster`]) |
//!
//! Backups are in [`crate::backup`]; schemas and quotas in
//! [`crate::catalog`].
//!
//! The service plane's routes (`/ges/v1.0/...`) are in [`crate::service`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{FromRequestParts, RawPathParams, State};
use axum::http::Request;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use graph_lifecycle::{
    Clock, Engine, GraphId, GraphKey, IdSource, JobId, Op, Payload, ProjectId, RequestId,
    StatusSet, TaskQuery,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::Service;

use crate::auth::Authenticator;
use crate::error::ApiError;
use crate::gate::{Printable, RequestBody};
use crate::wire;

/// Names a graph cannot take: they are path segments of other GES
/// resources under `/v2/{project_id}/graphs/`.
pub const RESERVED_GRAPH_NAMES: [&str; 6] = [
    "jobs",
    "metadatas",
    "metadata",
    "backups",
    "quotas",
    "scenes",
];

/// Default page size of the graph list and the task center (GES's).
pub const DEFAULT_LIMIT: usize = 10;
/// Largest page size accepted.
pub const MAX_LIMIT: usize = 1_000;

/// Request limits the gate enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// How long a body may take to arrive.
    pub body_timeout: Duration,
    /// Most bytes of request bodies read, across all connections, before
    /// their signature is checked (signed requests only: a token is
    /// checked before the body is read).
    pub max_unverified_body_bytes: usize,
}

/// What the handlers share: the engine, the authenticator, the limits.
#[derive(Debug)]
pub struct ApiState {
    /// The lifecycle core.
    pub engine: Engine,
    /// Checks credentials.
    pub auth: Authenticator,
    /// Body limits.
    pub limits: Limits,
    /// Most live jobs a project may run at once, if bounded.
    pub max_live_jobs_per_project: Option<usize>,
    /// Where requests and refusals are counted, if anywhere.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Bytes of bodies being read ahead of their signature check.
    pub(crate) unverified: crate::gate::BodyBudget,
    /// The real engine's graph data, for the service plane (none with the
    /// simulated host or an embedder's engine).
    pub(crate) store: Option<Arc<crate::host::Inner>>,
    /// The event streams' hub ([`crate::events`]).
    pub events: crate::events::EventHub,
    /// The cluster node the API writes through and reads behind a barrier
    /// from, if the server is one ([`crate::cluster`]).
    pub(crate) cluster: Option<crate::cluster::ClusterApi>,
}

impl ApiState {
    /// A state with no job quota and no metrics.
    pub fn new(engine: Engine, auth: Authenticator, limits: Limits) -> Self {
        Self {
            events: crate::events::EventHub::new(engine.clone(), Default::default()),
            engine,
            auth,
            limits,
            max_live_jobs_per_project: None,
            metrics: None,
            unverified: crate::gate::BodyBudget::new(limits.max_unverified_body_bytes),
            store: None,
            cluster: None,
        }
    }

    /// Registers a host task (an algorithm run, a backup) with the
    /// request's `Idempotency-Key`, if any. Returns the task's id, and its
    /// ticket when a worker should take it: a retry gets the first
    /// registration's task back, already with a worker or ended unless it
    /// still waits (a worker that finds it started already drops it, since
    /// the core refuses a second `Started`).
    pub(crate) fn register_host_task(
        &self,
        key: &GraphKey,
        retry: Option<RequestId>,
        spec: graph_lifecycle::TaskSpec,
    ) -> Result<(JobId, Option<graph_lifecycle::Job>), ApiError> {
        let ticket = self.engine.request(retry).register_task(key, spec)?;
        let id = ticket.id();
        let waits = self
            .engine
            .task(key, id)
            .is_ok_and(|t| t.status == graph_lifecycle::TaskStatus::Pending);
        Ok((id, waits.then_some(ticket)))
    }

    /// A request refused 401: logged with the client's address (never its
    /// credential), and counted.
    pub(crate) fn auth_failed(&self, parts: &Parts, e: &crate::auth::AuthError) {
        let client = parts
            .extensions
            .get::<crate::conn::ClientAddr>()
            .map(|a| a.0.to_string());
        let reason = e.reason();
        tracing::warn!(
            target: "ges_server::auth",
            client = client.as_deref().unwrap_or("-"),
            method = %parts.method,
            path = %Printable(parts.uri.path()),
            reason,
            "authentication failed"
        );
        if let Some(m) = &self.metrics {
            m.auth_failure(reason);
        }
    }

    /// Refuses a job-starting call of a project that runs as many live
    /// jobs as its quota allows.
    pub(crate) fn job_quota(&self, project: &ProjectId) -> Result<(), ApiError> {
        let Some(quota) = self.max_live_jobs_per_project else {
            return Ok(());
        };
        let live: usize = self
            .engine
            .graphs(project, 0, usize::MAX)
            .items
            .iter()
            .map(|g| g.live_tasks)
            .sum();
        if live >= quota {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                crate::error::codes::PROJECT_QUOTA,
                format!(
                    "project {project} runs {live} jobs, its quota is {quota}: wait for one to end"
                ),
            ));
        }
        Ok(())
    }
}

/// The whole API as an axum router: routes, the gate in front of them,
/// the GES error body for unknown routes and methods, and a panic guard
/// that answers 500 ([`service`], behind a router of no routes of its
/// own, for an application that nests or merges it into its own).
pub fn router(state: ApiState) -> Router {
    Router::new().fallback_service(service(state))
}

/// The whole API as one service: what the server serves.
///
/// What every request goes through besides its route (the access log, the
/// metrics, the request id, the service plane's error form, the panic
/// guard and the gate) is this one service in front of the routes, not a
/// stack of middleware layers: each of axum's layers boxes a clone of its
/// service and its future for every request, and a layer added with
/// `Router::layer` is added to every route.
pub fn service(state: ApiState) -> ApiService {
    let state = Arc::new(state);
    let graphs = "/v2/{project_id}/graphs";
    let graph = "/v2/{project_id}/graphs/{graph_id}";
    let routes = Router::new()
        .route(graphs, get(list_graphs).post(create_graph))
        .route(&format!("{graphs}/jobs"), get(list_jobs))
        .route(graph, get(show_graph).delete(delete_graph))
        .route(&format!("{graph}/start"), post(start_graph))
        .route(&format!("{graph}/stop"), post(stop_graph))
        .route(&format!("{graph}/restart"), post(restart_graph))
        .route(&format!("{graph}/import-graph"), post(import_graph))
        .route(&format!("{graph}/export-graph"), post(export_graph))
        .route(&format!("{graph}/clear-graph"), post(clear_graph))
        .route(&format!("{graph}/jobs/{{job_id}}/status"), get(show_job))
        .route("/v2/{project_id}/events", get(crate::events::stream))
        .route("/v2/{project_id}/cluster", get(crate::cluster::status))
        .merge(crate::service::routes())
        .merge(crate::backup::routes())
        .merge(crate::catalog::routes())
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    ApiService { st: state, routes }
}

/// The API ([`service`]): the routes, and in front of them, for every
/// request, in this order:
/// the request id and the start time; the gate ([`crate::gate`]) and the
/// route, under a panic guard (a panic is answered 500 with GES's error
/// body); the access-log line and the metrics; the request id in
/// `X-Request-Id`; and, on the service plane's paths, an error body in
/// that plane's form ([`crate::service`]).
///
/// The access-log line holds the method, the path (not the query), the
/// project, the status, the latency, the request id and the client's
/// address; never a header's value, so never a credential or a signature.
#[derive(Debug, Clone)]
pub struct ApiService {
    st: Arc<ApiState>,
    routes: Router,
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

impl tower::Service<axum::extract::Request> for ApiService {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: axum::extract::Request) -> Self::Future {
        let (parts, body) = req.into_parts();
        Box::pin(serve(self.st.clone(), self.routes.clone(), parts, body))
    }
}

/// The future of every request ([`ApiService`] says what it does).
///
/// It is kept small, under a kilobyte in a release build, so that it comes
/// from the allocator's per-thread cache: a larger block costs the
/// allocator more work on every request. So the request travels as its
/// parts, which the gate borrows; the gate's and the route's futures,
/// awaited one after the other, share their place; the request id is kept
/// as its 16 bytes until it is written out.
#[allow(
    clippy::manual_async_fn,
    reason = "an `async fn` keeps its arguments twice in its future"
)]
fn serve(
    st: Arc<ApiState>,
    mut routes: Router,
    mut parts: Parts,
    body: axum::body::Body,
) -> impl Future<Output = Result<Response, Infallible>> + Send {
    // A block rather than an `async fn`: an `async fn` keeps its arguments
    // twice in its future.
    async move {
        let started = Instant::now();
        // Kept as the 16 bytes of the id until it is written out.
        let request_id = graph_lifecycle::UuidV7Ids.next_id(graph_lifecycle::SystemClock.now());
        let method = parts.method.clone();
        // The URI's bytes are shared with the request's: no copy.
        let uri = parts.uri.clone();
        let client = parts
            .extensions
            .get::<crate::conn::ClientAddr>()
            .map(|a| a.0);
        let mut response = {
            let handled = std::pin::pin!(async {
                // The console's pages carry no data and need no credential
                // ([`crate::console`]); its calls are API calls.
                if let Some(page) = crate::console::respond(&parts) {
                    return page;
                }
                match crate::gate::admit(&st, &mut parts, body).await {
                    // A router is always ready (its `poll_ready` does
                    // nothing).
                    Ok(body) => {
                        // A cluster node reads behind a barrier
                        // ([`crate::cluster`]).
                        if parts.method == Method::GET
                            && let Some(c) = &st.cluster
                            && let Err(e) = c.read_barrier(&parts.headers).await
                        {
                            return e.into_response();
                        }
                        // Scoped, so that the request's place is not kept
                        // beside the route's future.
                        let answer = {
                            let parts =
                                std::mem::replace(&mut parts, Request::new(()).into_parts().0);
                            routes.call(Request::from_parts(parts, body))
                        };
                        match answer.await {
                            Ok(r) => r,
                            Err(never) => match never {},
                        }
                    }
                    Err(e) => e.into_response(),
                }
            });
            caught(handled).await.unwrap_or_else(on_panic)
        };
        let took = started.elapsed();
        let request_id = RequestIdText::new(request_id);
        let status = response.status().as_u16();
        let path = uri.path();
        // The fields are formatted only if the line is logged.
        tracing::info!(
            target: "ges_server::access",
            method = %method,
            path = %Printable(path),
            project = crate::gate::path_project(path)
                .as_deref()
                .map(|p| Printable(p).text())
                .as_deref()
                .unwrap_or("-"),
            status,
            latency_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            request_id = %request_id.as_str(),
            client = client
                .map(|a| StackText::<64>::of(&a))
                .as_ref()
                .map_or("-", StackText::as_str),
            "request"
        );
        if let Some(m) = &st.metrics {
            m.path_request(path, &method, status, took);
        }
        if let Ok(v) = HeaderValue::from_str(request_id.as_str()) {
            response.headers_mut().insert(X_REQUEST_ID, v);
        }
        if path.starts_with("/ges/") && status >= 400 {
            // Boxed: the rewrite is rare, and its future would otherwise
            // make every request's bigger.
            response = Box::pin(crate::service::service_error_body(response)).await;
        }
        Ok(response)
    }
}

/// Runs `fut`, catching a panic in any of its polls.
fn caught<F: Future>(
    mut fut: Pin<&mut F>,
) -> impl Future<Output = std::thread::Result<F::Output>> + '_ {
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    })
}

/// A request id as a hyphenated UUID, `JobId`'s `Display`, written
/// without the formatting machinery.
struct RequestIdText([u8; 36]);

impl RequestIdText {
    fn new(id: JobId) -> Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let bytes = id.as_uuid().as_u128().to_be_bytes();
        let mut out = [b'-'; 36];
        let mut at = 0;
        for (i, b) in bytes.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                at += 1;
            }
            out[at] = DIGITS[usize::from(b >> 4)];
            out[at + 1] = DIGITS[usize::from(b & 0xf)];
            at += 2;
        }
        Self(out)
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Text of at most `N` bytes, formatted on the stack.
struct StackText<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackText<N> {
    /// `value` as `Display` writes it, cut at `N` bytes (on a character
    /// boundary).
    fn of(value: &impl fmt::Display) -> Self {
        use fmt::Write;
        let mut t = Self {
            buf: [0; N],
            len: 0,
        };
        let _ = write!(t, "{value}");
        t
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl<const N: usize> fmt::Write for StackText<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = N - self.len;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        if take < s.len() {
            Err(fmt::Error)
        } else {
            Ok(())
        }
    }
}

/// The metrics listener's one route: `GET /metrics`.
pub fn metrics_router(engine: Engine, metrics: Arc<crate::metrics::Metrics>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let text = metrics.render(&engine);
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    text,
                )
            }
        }),
    )
}

type ApiResult = Result<Response, ApiError>;

/// A JSON response with this status.
pub(crate) fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    // Room for a job or a graph without growing.
    let mut bytes = Vec::with_capacity(512);
    match serde_json::to_writer(&mut bytes, body) {
        Ok(()) => {
            let mut r = (status, bytes).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"error_code":"GES.7006","error_msg":"the response could not be serialized"}"#,
        )
            .into_response(),
    }
}

fn ok<T: Serialize>(body: &T) -> ApiResult {
    Ok(json_response(StatusCode::OK, body))
}

fn job_started(job: JobId) -> ApiResult {
    ok(&wire::JobIdView { job_id: &job })
}

// ---- extractors -----------------------------------------------------------

pub(crate) fn path_param<'a>(params: &'a RawPathParams, name: &str) -> Result<&'a str, ApiError> {
    params
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .ok_or_else(|| ApiError::internal(format!("the route has no {name} parameter")))
}

/// The validated graph key of the path: `{project_id}` and the graph
/// parameter `graph` (`graph_id` on the management plane, `graph_name` on
/// the service plane).
pub(crate) fn path_key(params: &RawPathParams, graph: &str) -> Result<GraphKey, ApiError> {
    Ok(GraphKey::parse(
        path_param(params, "project_id")?,
        path_param(params, graph)?,
    )?)
}

pub(crate) async fn raw_params(parts: &mut Parts) -> Result<RawPathParams, ApiError> {
    RawPathParams::from_request_parts(parts, &())
        .await
        .map_err(|_| ApiError::invalid_parameter("a path parameter is not valid UTF-8"))
}

/// The validated `{project_id}` of the path.
pub struct ProjectPath(pub ProjectId);

impl<S: Send + Sync> FromRequestParts<S> for ProjectPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let params = raw_params(parts).await?;
        Ok(ProjectPath(ProjectId::new(path_param(
            &params,
            "project_id",
        )?)?))
    }
}

/// The validated `{project_id}` and `{graph_id}` of the path.
pub struct GraphPath(pub GraphKey);

impl<S: Send + Sync> FromRequestParts<S> for GraphPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let params = raw_params(parts).await?;
        let key = path_key(&params, "graph_id")?;
        Ok(GraphPath(key))
    }
}

/// The validated graph key and `{job_id}` of the path.
pub struct JobPath(pub GraphKey, pub JobId);

impl<S: Send + Sync> FromRequestParts<S> for JobPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let params = raw_params(parts).await?;
        let key = path_key(&params, "graph_id")?;
        let job = JobId::parse(path_param(&params, "job_id")?)?;
        Ok(JobPath(key, job))
    }
}

/// The header a client may send with any call that changes something, to
/// make it safe to retry: a retry with the same key gets the first call's
/// answer (success or error) and changes nothing (`docs/REST.md`,
/// "Retries").
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// The request's `Idempotency-Key`, as the core's request id: at most one,
/// 1 to 256 bytes of printable ASCII.
pub struct Idempotency(pub Option<RequestId>);

impl<S: Send + Sync> FromRequestParts<S> for Idempotency {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        const NAME: HeaderName = HeaderName::from_static(IDEMPOTENCY_HEADER);
        let mut values = parts.headers.get_all(NAME).iter();
        let Some(value) = values.next() else {
            return Ok(Idempotency(None));
        };
        if values.next().is_some() {
            return Err(ApiError::invalid_parameter(
                "the Idempotency-Key header is repeated",
            ));
        }
        let text = value.to_str().map_err(|_| {
            ApiError::invalid_parameter("the Idempotency-Key header is not printable ASCII")
        })?;
        Ok(Idempotency(Some(RequestId::new(text)?)))
    }
}

/// The request body the gate read (empty if the request had none).
pub struct ReqBody(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequestParts<S> for ReqBody {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(ReqBody(
            parts
                .extensions
                .get::<RequestBody>()
                .map(|b| b.0.clone())
                .unwrap_or_default(),
        ))
    }
}

impl ReqBody {
    /// Whether the body says nothing: empty, blank, or `null`.
    fn is_blank(&self) -> bool {
        let t = self.0.trim_ascii();
        t.is_empty() || t == b"null"
    }

    /// The body as `T`: 400 for anything that is not a JSON object of
    /// that shape.
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if !self.0.trim_ascii().starts_with(b"{") {
            return Err(ApiError::invalid_request(
                "the request body must be a JSON object",
            ));
        }
        serde_json::from_slice(&self.0)
            .map_err(|e| ApiError::invalid_request(format!("malformed request body: {e}")))
    }

    /// The body as `T`, or `T::default()` when blank.
    fn json_or_default<T: DeserializeOwned + Default>(&self) -> Result<T, ApiError> {
        if self.is_blank() {
            Ok(T::default())
        } else {
            self.json()
        }
    }
}

/// Most query parameters a request may carry: GES's calls take at most
/// eight.
pub const MAX_QUERY_PARAMS: usize = 32;

/// The decoded query parameters; a repeated parameter is refused, and so
/// is a query of more than [`MAX_QUERY_PARAMS`] parameters.
pub struct Query(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Query::parse(parts.uri.query().unwrap_or(""))
    }
}

impl Query {
    /// Linear in the query's length: each parameter is decoded once and
    /// looked up once.
    fn parse(raw: &str) -> Result<Query, ApiError> {
        let mut pairs: HashMap<String, String> = HashMap::new();
        for (i, piece) in raw.split('&').filter(|p| !p.is_empty()).enumerate() {
            if i == MAX_QUERY_PARAMS {
                return Err(ApiError::invalid_parameter(format!(
                    "the query has more than {MAX_QUERY_PARAMS} parameters"
                )));
            }
            let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| {
                        ApiError::invalid_parameter("a query parameter is not valid UTF-8")
                    })
            };
            let (k, v) = (decode(k)?, decode(v)?);
            match pairs.entry(k) {
                std::collections::hash_map::Entry::Occupied(e) => {
                    return Err(ApiError::invalid_parameter(format!(
                        "query parameter {} is repeated",
                        wire_quote(e.key())
                    )));
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(v);
                }
            }
        }
        Ok(Query(pairs))
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub(crate) fn usize(&self, name: &str, default: usize, max: usize) -> Result<usize, ApiError> {
        let Some(v) = self.get(name) else {
            return Ok(default);
        };
        v.parse::<usize>()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| {
                ApiError::invalid_parameter(format!(
                    "{name} must be an integer from 0 to {max}, not {}",
                    wire_quote(v)
                ))
            })
    }

    fn bool(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(ApiError::invalid_parameter(format!(
                "{name} must be true or false, not {}",
                wire_quote(v)
            ))),
        }
    }
}

/// Client input, escaped and shortened, for a message.
fn wire_quote(s: &str) -> String {
    let mut out: String = s.chars().take(32).flat_map(char::escape_default).collect();
    if s.chars().nth(32).is_some() {
        out.push('…');
    }
    format!("\"{out}\"")
}

// ---- handlers -------------------------------------------------------------

async fn create_graph(
    State(st): State<Arc<ApiState>>,
    ProjectPath(project): ProjectPath,
    Idempotency(retry): Idempotency,
    body: ReqBody,
) -> ApiResult {
    let req: wire::CreateGraphRequest = body.json()?;
    let name = req.graph.name;
    if RESERVED_GRAPH_NAMES.contains(&name.as_str()) {
        return Err(ApiError::invalid_parameter(format!(
            "graph name \"{name}\" is reserved"
        )));
    }
    let key = GraphKey::new(project, GraphId::new(&name)?);
    match &st.cluster {
        Some(c) => c.plain(&key, retry, Op::Create).await?,
        None => drop(st.engine.request(retry).create_graph(&key)?),
    }
    ok(&wire::CreateGraphResponse {
        id: name.clone(),
        name,
    })
}

async fn list_graphs(
    State(st): State<Arc<ApiState>>,
    ProjectPath(project): ProjectPath,
    q: Query,
) -> ApiResult {
    let offset = q.usize("offset", 0, usize::MAX)?;
    let limit = q.usize("limit", DEFAULT_LIMIT, MAX_LIMIT)?;
    let page = st.engine.graphs(&project, offset, limit);
    ok(&wire::ListGraphsResponse {
        graph_count: page.total,
        graphs: page.items.iter().map(wire::Graph::from_info).collect(),
    })
}

async fn show_graph(State(st): State<Arc<ApiState>>, GraphPath(key): GraphPath) -> ApiResult {
    let info = st.engine.graph_info(&key)?;
    ok(&wire::ShowGraphResponse {
        graph: wire::Graph::from_info(&info),
    })
}

async fn delete_graph(
    State(st): State<Arc<ApiState>>,
    GraphPath(key): GraphPath,
    Idempotency(req): Idempotency,
    q: Query,
) -> ApiResult {
    // A cloud-only option: checked for form, then ignored.
    q.bool("delete_eip")?;
    let keep_backup = q.bool("keep_backup")?;
    match &st.cluster {
        Some(c) => c.plain(&key, req, Op::Remove).await?,
        None => st.engine.request(req).remove_graph(&key)?,
    }
    if let Some(store) = &st.store {
        store.forget(&key);
        if !keep_backup {
            store.drop_backups(&key);
        }
    }
    ok(&wire::JobIdResponse {
        job_id: String::new(),
    })
}

async fn start_graph(
    State(st): State<Arc<ApiState>>,
    GraphPath(key): GraphPath,
    Idempotency(retry): Idempotency,
    body: ReqBody,
) -> ApiResult {
    let req: wire::StartGraphRequest = body.json_or_default()?;
    if let Some(id) = &req.graph_backup_id {
        crate::backup::check_restore(&st, &key, id).await?;
    }
    let payload = if req.graph_backup_id.is_some() {
        Payload::new(body.0.to_vec())
    } else {
        Payload::EMPTY
    };
    st.job_quota(&key.project)?;
    job_started(match &st.cluster {
        Some(c) => c.job(&key, retry, |job| Op::Start { job, payload }).await?,
        None => st.engine.request(retry).start_with(&key, payload)?,
    })
}

/// An optional body that must be blank or a JSON object.
fn no_body_expected(body: &ReqBody) -> Result<(), ApiError> {
    body.json_or_default::<serde_json::Map<String, serde_json::Value>>()
        .map(drop)
}

async fn stop_graph(
    State(st): State<Arc<ApiState>>,
    GraphPath(key): GraphPath,
    Idempotency(req): Idempotency,
    body: ReqBody,
) -> ApiResult {
    no_body_expected(&body)?;
    st.job_quota(&key.project)?;
    job_started(match &st.cluster {
        Some(c) => c.job(&key, req, |job| Op::Stop { job }).await?,
        None => st.engine.request(req).stop(&key)?,
    })
}

async fn restart_graph(
    State(st): State<Arc<ApiState>>,
    GraphPath(key): GraphPath,
    Idempotency(req): Idempotency,
    body: ReqBody,
) -> ApiResult {
    no_body_expected(&body)?;
    job_started(match &st.cluster {
        Some(c) => c.job(&key, req, |job| Op::ForceRestart { job }).await?,
        None => st.engine.request(req).force_restart(&key)?.job,
    })
}

async fn import_graph(
    State(st): State<Arc<ApiState>>,
    GraphPath(key): GraphPath,
    Idempotency(req): Idempotency,
    body: ReqBody,
) -> ApiResult {
    body.json::<wire::ImportGraphRequest>()?;
    st.job_quota(&key.project)?;
    let payload = Payload::new(body.0.to_vec());
    job_started(match &st.cluster {
        Some(c) => c.job(&key, req, |job| Op::Import { job, payload }).await?,
        None => st.engine.request(req).import(&key, payload)?,
    })
}

async fn export_graph(
    State(st): State<Arc<ApiState>>,
    GraphPath(key): GraphPath,
    Idempotency(req): Idempotency,
    body: ReqBody,
) -> ApiResult {
    body.json::<wire::ExportGraphRequest>()?;
    st.job_quota(&key.project)?;
    let payload = Payload::new(body.0.to_vec());
    job_started(match &st.cluster {
        Some(c) => c.job(&key, req, |job| Op::Export { job, payload }).await?,
        None => st.engine.request(req).export(&key, payload)?,
    })
}

async fn clear_graph(
    State(st): State<Arc<ApiState>>,
    GraphPath(key): GraphPath,
    Idempotency(req): Idempotency,
    q: Query,
    body: ReqBody,
) -> ApiResult {
    no_body_expected(&body)?;
    let clear_metadata = q.bool("clear_metadata")?;
    st.job_quota(&key.project)?;
    job_started(match &st.cluster {
        Some(c) => {
            c.job(&key, req, |job| Op::Clear {
                job,
                clear_metadata,
            })
            .await?
        }
        None => st.engine.request(req).clear(&key, clear_metadata)?,
    })
}

async fn show_job(State(st): State<Arc<ApiState>>, JobPath(key, job): JobPath) -> ApiResult {
    let task = st.engine.task(&key, job)?;
    ok(&wire::JobView(&task))
}

async fn list_jobs(
    State(st): State<Arc<ApiState>>,
    ProjectPath(project): ProjectPath,
    q: Query,
) -> ApiResult {
    let mut query = TaskQuery::new()
        .offset(q.usize("offset", 0, usize::MAX)?)
        .limit(q.usize("limit", DEFAULT_LIMIT, MAX_LIMIT)?);
    if let Some(status) = q.get("status") {
        let statuses = wire::status_filter(status).ok_or_else(|| {
            ApiError::invalid_parameter(format!(
                "status must be pending, waiting, running, success or failed, not {}",
                wire_quote(status)
            ))
        })?;
        query = query.statuses(statuses.iter().copied().collect::<StatusSet>());
    }
    let bound = |name: &str| -> Result<Option<wire::TimeBound>, ApiError> {
        q.get(name)
            .map(|v| {
                wire::parse_time_bound(v).ok_or_else(|| {
                    ApiError::invalid_parameter(format!(
                        "{name} must be yyyy-MM-dd or yyyy-MM-ddTHH:mm:ss, not {}",
                        wire_quote(v)
                    ))
                })
            })
            .transpose()
    };
    if let Some(b) = bound("start_time")? {
        query = query.since(b.start);
    }
    if let Some(b) = bound("end_time")? {
        query = query.until(b.end);
    }
    let page = match q.get("graph_name") {
        None => st.engine.project_tasks(&project, &query),
        Some(name) => {
            let key = GraphKey::new(project, GraphId::new(name)?);
            match st.engine.tasks(&key, &query) {
                Ok(page) => page,
                // An unknown graph has no jobs.
                Err(graph_lifecycle::Error::GraphNotFound { .. }) => graph_lifecycle::Page {
                    total: 0,
                    items: Vec::new(),
                },
                Err(e) => return Err(e.into()),
            }
        }
    };
    ok(&wire::ListJobsView {
        job_count: page.total,
        job_list: page.items.iter().map(wire::JobView).collect(),
    })
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::no_route(method.as_str(), uri.path())
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::method_not_allowed(method.as_str())
}

fn on_panic(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal("the request failed inside the server").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthConfig, TokenEntry};
    use tower::ServiceExt;

    /// A front service over `routes`, with one token for `demo` and the
    /// metrics on.
    fn front(routes: Router) -> (ApiService, Arc<crate::metrics::Metrics>, Engine) {
        let (engine, _jobs) = Engine::builder().build();
        let auth = AuthConfig {
            tokens: vec![TokenEntry {
                token: "t".into(),
                projects: vec!["demo".into()],
            }],
            ..AuthConfig::default()
        };
        let limits = Limits {
            max_body_bytes: 1 << 20,
            body_timeout: Duration::from_secs(30),
            max_unverified_body_bytes: 1 << 20,
        };
        let mut st = ApiState::new(engine.clone(), Authenticator::new(&auth), limits);
        let metrics = crate::metrics::Metrics::new();
        st.metrics = Some(metrics.clone());
        let front = ApiService {
            st: Arc::new(st),
            routes,
        };
        (front, metrics, engine)
    }

    fn request(path: &str) -> axum::extract::Request {
        axum::http::Request::builder()
            .uri(path)
            .header("host", "ges.test")
            .header("x-auth-token", "t")
            .body(axum::body::Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn a_panic_is_answered_500_with_the_error_body_and_counted() {
        let routes = Router::new().route(
            "/v2/{project_id}/graphs",
            get(|| async {
                if true {
                    panic!("a handler's bug");
                }
            }),
        );
        let (front, metrics, engine) = front(routes);
        let res = front.oneshot(request("/v2/demo/graphs")).await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(res.headers().get("x-request-id").map(|v| v.len()), Some(36));
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error_code"], crate::error::codes::INTERNAL);
        let text = metrics.render(&engine);
        let line = r#"ges_http_requests_total{method="GET",route="/v2/:project_id/graphs",status="500"} 1"#;
        assert!(text.contains(line), "{text}");
    }

    #[tokio::test]
    async fn the_gate_runs_before_the_routes_and_service_plane_errors_take_its_form() {
        let routes = Router::new().route(
            "/ges/v1.0/{project_id}/graphs/{graph_name}/action",
            get(|| async { ApiError::invalid_request("refused by the route") }),
        );
        let (front, _, _) = front(routes);
        let refused = front
            .clone()
            .oneshot(request("/v2/other/graphs"))
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        let res = front
            .oneshot(request("/ges/v1.0/demo/graphs/g/action"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert!(res.headers().contains_key("x-request-id"));
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["errorMessage"], "refused by the route", "{body}");
    }

    #[test]
    fn request_ids_are_written_as_job_ids_display() {
        let ids = graph_lifecycle::UuidV7Ids;
        for i in 0..1_000u64 {
            let id = ids.next_id(graph_lifecycle::Timestamp::from_millis(i * 7_919));
            assert_eq!(RequestIdText::new(id).as_str(), id.to_string());
        }
        let max = JobId::parse("ffffffff-ffff-7fff-bfff-ffffffffffff").unwrap();
        assert_eq!(RequestIdText::new(max).as_str(), max.to_string());
    }

    #[test]
    fn stack_text_cuts_on_a_character_boundary() {
        assert_eq!(StackText::<8>::of(&"abc").as_str(), "abc");
        assert_eq!(StackText::<4>::of(&"abcdef").as_str(), "abcd");
        assert_eq!(StackText::<4>::of(&"abcé").as_str(), "abc");
        let addr: std::net::SocketAddr =
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535"
                .parse()
                .unwrap_or_else(|_| {
                    "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
                        .parse()
                        .unwrap()
                });
        assert_eq!(StackText::<64>::of(&addr).as_str(), addr.to_string());
    }

    #[test]
    fn query_parameters_are_decoded_and_checked() {
        let q = Query::parse("limit=5&graph_name=a%2Db&flag=TRUE&x").unwrap();
        assert_eq!(q.get("graph_name"), Some("a-b"));
        assert_eq!(q.get("x"), Some(""));
        assert_eq!(q.usize("limit", 10, 100).unwrap(), 5);
        assert_eq!(q.usize("offset", 0, 100).unwrap(), 0);
        assert!(q.bool("flag").unwrap());
        assert!(!q.bool("absent").unwrap());
        assert!(q.usize("graph_name", 0, 100).is_err());
        assert!(Query::parse("limit=1&limit=2").is_err());
        assert!(Query::parse("a=%FF").is_err());
        let big = Query::parse("limit=1001&offset=-1").unwrap();
        assert!(big.usize("limit", 10, MAX_LIMIT).is_err());
        assert!(big.usize("offset", 0, usize::MAX).is_err());
    }
}
