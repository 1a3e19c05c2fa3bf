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
//!
//! The service plane's routes (`/ges/v1.0/...`) are in [`crate::service`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, RawPathParams, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use graph_lifecycle::{
    Clock, Engine, GraphId, GraphKey, IdSource, JobId, Payload, ProjectId, RequestId, StatusSet,
    TaskQuery,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::Authenticator;
use crate::error::ApiError;
use crate::gate::RequestBody;
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
}

impl ApiState {
    /// A state with no job quota and no metrics.
    pub fn new(engine: Engine, auth: Authenticator, limits: Limits) -> Self {
        Self {
            engine,
            auth,
            limits,
            max_live_jobs_per_project: None,
            metrics: None,
            unverified: crate::gate::BodyBudget::new(limits.max_unverified_body_bytes),
            store: None,
        }
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
            path = %crate::gate::printable(parts.uri.path()),
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

/// The whole API: routes, the gate in front of them, the GES error body
/// for unknown routes and methods, and a panic guard that answers 500.
pub fn router(state: ApiState) -> Router {
    let state = Arc::new(state);
    let graphs = "/v2/{project_id}/graphs";
    let graph = "/v2/{project_id}/graphs/{graph_id}";
    Router::new()
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
        .merge(crate::service::routes())
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::gate::gate,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(on_panic))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .layer(axum::middleware::from_fn(crate::service::service_errors))
        .with_state(state)
}

/// Every request's access-log line and metrics, and its request id in
/// `X-Request-Id`. The line holds the method, the path (not the query),
/// the project, the status, the latency, the request id and the client's
/// address; never a header's value, so never a credential or a signature.
async fn observe(
    State(st): State<Arc<ApiState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let request_id = graph_lifecycle::UuidV7Ids
        .next_id(graph_lifecycle::SystemClock.now())
        .to_string();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let client = req
        .extensions()
        .get::<crate::conn::ClientAddr>()
        .map(|a| a.0.to_string());
    let mut response = next.run(req).await;
    let took = started.elapsed();
    let status = response.status().as_u16();
    let project = crate::gate::path_project(&path);
    tracing::info!(
        target: "ges_server::access",
        method = %method,
        path = %crate::gate::printable(&path),
        project = project.as_deref().map(crate::gate::printable).as_deref().unwrap_or("-"),
        status,
        latency_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
        request_id = %request_id,
        client = client.as_deref().unwrap_or("-"),
        "request"
    );
    if let Some(m) = &st.metrics {
        m.request(
            crate::metrics::route_of(&path),
            method.as_str(),
            status,
            took,
        );
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
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
    match serde_json::to_vec(body) {
        Ok(bytes) => {
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
    ok(&wire::JobIdResponse {
        job_id: job.to_string(),
    })
}

// ---- extractors -----------------------------------------------------------

pub(crate) fn path_param<'a>(params: &'a RawPathParams, name: &str) -> Result<&'a str, ApiError> {
    params
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .ok_or_else(|| ApiError::internal(format!("the route has no {name} parameter")))
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
        let key = GraphKey::parse(
            path_param(&params, "project_id")?,
            path_param(&params, "graph_id")?,
        )?;
        Ok(GraphPath(key))
    }
}

/// The validated graph key and `{job_id}` of the path.
pub struct JobPath(pub GraphKey, pub JobId);

impl<S: Send + Sync> FromRequestParts<S> for JobPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let params = raw_params(parts).await?;
        let key = GraphKey::parse(
            path_param(&params, "project_id")?,
            path_param(&params, "graph_id")?,
        )?;
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
        let mut values = parts.headers.get_all(IDEMPOTENCY_HEADER).iter();
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

/// The request body the gate read.
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
    st.engine.request(retry).create_graph(&key)?;
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
    // Cloud-only options: checked for form, then ignored.
    q.bool("keep_backup")?;
    q.bool("delete_eip")?;
    st.engine.request(req).remove_graph(&key)?;
    if let Some(store) = &st.store {
        store.forget(&key);
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
    let payload = if req.graph_backup_id.is_some() {
        Payload::new(body.0.to_vec())
    } else {
        Payload::EMPTY
    };
    st.job_quota(&key.project)?;
    job_started(st.engine.request(retry).start_with(&key, payload)?)
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
    job_started(st.engine.request(req).stop(&key)?)
}

async fn restart_graph(
    State(st): State<Arc<ApiState>>,
    GraphPath(key): GraphPath,
    Idempotency(req): Idempotency,
    body: ReqBody,
) -> ApiResult {
    no_body_expected(&body)?;
    job_started(st.engine.request(req).force_restart(&key)?.job)
}

async fn import_graph(
    State(st): State<Arc<ApiState>>,
    GraphPath(key): GraphPath,
    Idempotency(req): Idempotency,
    body: ReqBody,
) -> ApiResult {
    body.json::<wire::ImportGraphRequest>()?;
    st.job_quota(&key.project)?;
    job_started(st.engine.request(req).import(&key, body.0.to_vec())?)
}

async fn export_graph(
    State(st): State<Arc<ApiState>>,
    GraphPath(key): GraphPath,
    Idempotency(req): Idempotency,
    body: ReqBody,
) -> ApiResult {
    body.json::<wire::ExportGraphRequest>()?;
    st.job_quota(&key.project)?;
    job_started(st.engine.request(req).export(&key, body.0.to_vec())?)
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
    job_started(st.engine.request(req).clear(&key, clear_metadata)?)
}

async fn show_job(State(st): State<Arc<ApiState>>, JobPath(key, job): JobPath) -> ApiResult {
    let task = st.engine.task(&key, job)?;
    ok(&wire::Job::from_task(&task))
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
    ok(&wire::ListJobsResponse {
        job_count: page.total,
        job_list: page.items.iter().map(wire::Job::from_task).collect(),
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
