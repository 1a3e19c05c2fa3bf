//! The GES service plane: queries and algorithms on a graph's data, on
//! `/ges/v1.0/{project_id}/graphs/{graph_name}/...`, behind the same gate
//! (authentication, limits, metrics, access log) as the management plane.
//!
//! | method and path | what |
//! |---|---|
//! | `GET .../vertices/detail?vertexIds=a,b` | vertices by id, with label and properties |
//! | `POST .../action?action_id=execute-algorithm` | `pagerank`, `connected_component` (asynchronous host tasks), `k_hop`, `shortest_path` (synchronous with `"executionMode": "sync"`, else asynchronous) |
//! | `GET .../jobs/{job_id}/status?offset&limit` | a job's status, and an algorithm's result paged |
//! | `GET .../jobs/status?offset&limit` | the graph's jobs |
//!
//! Every call first asks the core whether the graph serves queries: the
//! graph handle's lock-free state read ([`GraphHandle::serves_queries`]).
//! A graph that does not (stopped, starting, clearing, restarting, ...)
//! answers 409 `GES.9016`, naming its state. Error bodies on these paths
//! are GES's service-plane form, `{"errorCode", "errorMessage"}`.
//!
//! [`GraphHandle::serves_queries`]: graph_lifecycle::GraphHandle::serves_queries

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use graph_lifecycle::{GraphKey, HostKind, JobId, TaskQuery, TaskSpec, TaskStatus};
use graph_lifecycle_store::algo::{self, PageRankParams};
use graph_lifecycle_store::error::quote;
use graph_lifecycle_store::value::format_date;
use graph_lifecycle_store::{Control, GraphData, NoControl, StoreError, Value};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use crate::api::{ApiState, Idempotency, Query, ReqBody, json_response, path_param, raw_params};
use crate::error::{ApiError, codes};
use crate::host::Inner;

/// Most ids one vertex-detail request may name.
pub const MAX_VERTEX_IDS: usize = 1_000;
/// Largest `k` of a k-hop query.
pub const MAX_K: u32 = 10;
/// Most sources of a k-hop query.
pub const MAX_SOURCES: usize = 100;
/// Default page size of results.
pub const DEFAULT_RESULT_LIMIT: usize = 100;
/// Largest page size of results.
pub const MAX_RESULT_LIMIT: usize = 10_000;
/// Most PageRank iterations a request may ask for.
pub const MAX_ITERATIONS: u32 = 10_000;

/// The service plane's routes (merged into [`crate::api::router`]).
pub(crate) fn routes() -> Router<Arc<ApiState>> {
    let g = "/ges/v1.0/{project_id}/graphs/{graph_name}";
    Router::new()
        .route(&format!("{g}/vertices/detail"), get(vertex_detail))
        .route(&format!("{g}/action"), post(action))
        .route(&format!("{g}/jobs/status"), get(job_list))
        .route(&format!("{g}/jobs/{{job_id}}/status"), get(job_status))
}

/// The validated `{project_id}` and `{graph_name}`.
struct ServicePath(GraphKey);

impl<S: Send + Sync> FromRequestParts<S> for ServicePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let params = raw_params(parts).await?;
        Ok(ServicePath(crate::api::path_key(&params, "graph_name")?))
    }
}

/// The graph key and `{job_id}`.
struct ServiceJobPath(GraphKey, JobId);

impl<S: Send + Sync> FromRequestParts<S> for ServiceJobPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let params = raw_params(parts).await?;
        let key = crate::api::path_key(&params, "graph_name")?;
        Ok(ServiceJobPath(
            key,
            JobId::parse(path_param(&params, "job_id")?)?,
        ))
    }
}

fn no_engine() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        codes::ENGINE_UNAVAILABLE,
        "this server runs no graph engine (the simulated host has no data)",
    )
}

/// The host and the data of a graph that serves queries.
fn serving(st: &ApiState, key: &GraphKey) -> Result<(Arc<Inner>, Arc<GraphData>), ApiError> {
    let host = st.store.clone().ok_or_else(no_engine)?;
    let handle = st.engine.graph(key)?;
    if !handle.serves_queries() {
        let state = handle.state().map_or("removed", |s| s.name());
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            codes::NOT_SERVING,
            format!("graph {key} is {state}: it does not serve queries"),
        ));
    }
    let data = host.data(key).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::ENGINE_UNAVAILABLE,
            format!("the data of graph {key} is not loaded; a restart loads it"),
        )
    })?;
    Ok((host, data))
}

fn json_value(v: &Value) -> Json {
    match v {
        Value::Text(s) => Json::from(s.as_str()),
        Value::Int(i) => Json::from(*i),
        Value::Long(l) => Json::from(*l),
        Value::Float(f) => {
            serde_json::Number::from_f64(f64::from(*f)).map_or(Json::Null, Json::Number)
        }
        Value::Double(d) => serde_json::Number::from_f64(*d).map_or(Json::Null, Json::Number),
        Value::Bool(b) => Json::from(*b),
        Value::Date(s) => Json::from(format_date(*s)),
    }
}

fn vertex_json(g: &GraphData, id: &str) -> Option<Json> {
    let v = g.vertex(id)?;
    let props: Map<String, Json> = v
        .properties
        .iter()
        .map(|(name, values)| {
            (
                (*name).to_owned(),
                Json::Array(values.iter().map(json_value).collect()),
            )
        })
        .collect();
    Some(json!({"id": v.id, "label": v.label, "properties": props}))
}

async fn vertex_detail(
    State(st): State<Arc<ApiState>>,
    ServicePath(key): ServicePath,
    q: Query,
) -> Result<Response, ApiError> {
    let ids = q
        .get("vertexIds")
        .ok_or_else(|| ApiError::invalid_parameter("vertexIds is required"))?;
    let ids: Vec<&str> = ids.split(',').filter(|s| !s.is_empty()).collect();
    if ids.is_empty() || ids.len() > MAX_VERTEX_IDS {
        return Err(ApiError::invalid_parameter(format!(
            "vertexIds must name 1 to {MAX_VERTEX_IDS} vertices"
        )));
    }
    let (_, g) = serving(&st, &key)?;
    let vertices: Vec<Json> = ids.iter().filter_map(|id| vertex_json(&g, id)).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"data": {"vertices": vertices}}),
    ))
}

/// The body of `action?action_id=execute-algorithm`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AlgorithmRequest {
    algorithm_name: String,
    #[serde(default)]
    parameters: Map<String, Json>,
    #[serde(default)]
    execution_mode: Option<String>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::invalid_request(message)
}

fn param_f64(p: &Map<String, Json>, name: &str, default: f64) -> Result<f64, ApiError> {
    match p.get(name) {
        None | Some(Json::Null) => Ok(default),
        Some(Json::Number(n)) => n
            .as_f64()
            .ok_or_else(|| bad(format!("{name} is not a number"))),
        Some(Json::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| bad(format!("{name} is not a number"))),
        Some(_) => Err(bad(format!("{name} is not a number"))),
    }
}

fn param_u32(p: &Map<String, Json>, name: &str, default: u32, max: u32) -> Result<u32, ApiError> {
    let v = match p.get(name) {
        None | Some(Json::Null) => return Ok(default),
        Some(Json::Number(n)) => n.as_u64(),
        Some(Json::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    };
    v.and_then(|v| u32::try_from(v).ok())
        .filter(|v| (1..=max).contains(v))
        .ok_or_else(|| bad(format!("{name} must be an integer from 1 to {max}")))
}

fn param_bool(p: &Map<String, Json>, name: &str, default: bool) -> Result<bool, ApiError> {
    match p.get(name) {
        None | Some(Json::Null) => Ok(default),
        Some(Json::Bool(b)) => Ok(*b),
        Some(Json::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Json::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(bad(format!("{name} must be true or false"))),
    }
}

/// A vertex id parameter, resolved to its node index.
fn param_vertex(g: &GraphData, p: &Map<String, Json>, name: &str) -> Result<u32, ApiError> {
    let id = match p.get(name) {
        Some(Json::String(s)) => s.as_str(),
        _ => return Err(bad(format!("{name} must be a vertex id"))),
    };
    g.index_of(id)
        .ok_or_else(|| bad(format!("{name}: vertex {} is not in the graph", quote(id))))
}

/// A list of vertex ids: a JSON array of strings, or one string with
/// commas between the ids.
fn param_vertices(g: &GraphData, p: &Map<String, Json>, name: &str) -> Result<Vec<u32>, ApiError> {
    let ids: Vec<&str> = match p.get(name) {
        Some(Json::String(s)) => s.split(',').filter(|s| !s.is_empty()).collect(),
        Some(Json::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| bad(format!("{name} must hold vertex ids")))
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(bad(format!("{name} must be a list of vertex ids"))),
    };
    if ids.is_empty() || ids.len() > MAX_SOURCES {
        return Err(bad(format!("{name} must name 1 to {MAX_SOURCES} vertices")));
    }
    ids.iter()
        .map(|id| {
            g.index_of(id)
                .ok_or_else(|| bad(format!("{name}: vertex {} is not in the graph", quote(id))))
        })
        .collect()
}

/// An algorithm run, its parameters checked and its vertices resolved.
#[derive(Debug, Clone)]
pub(crate) enum AlgoRun {
    PageRank(PageRankParams),
    Components,
    KHop {
        sources: Vec<u32>,
        k: u32,
        directed: bool,
    },
    Path {
        source: u32,
        target: u32,
        directed: bool,
    },
}

impl AlgoRun {
    fn parse(name: &str, p: &Map<String, Json>, g: &GraphData) -> Result<AlgoRun, ApiError> {
        Ok(match name {
            "pagerank" => {
                let d = PageRankParams::default();
                let params = PageRankParams {
                    alpha: param_f64(p, "alpha", d.alpha)?,
                    convergence: param_f64(p, "convergence", d.convergence)?,
                    max_iterations: param_u32(
                        p,
                        "max_iterations",
                        d.max_iterations,
                        MAX_ITERATIONS,
                    )?,
                    directed: param_bool(p, "directed", d.directed)?,
                };
                if !(0.0..=1.0).contains(&params.alpha)
                    || !params.convergence.is_finite()
                    || params.convergence < 0.0
                {
                    return Err(bad(
                        "alpha must be in 0..=1, convergence a number of at least 0",
                    ));
                }
                AlgoRun::PageRank(params)
            }
            "connected_component" => AlgoRun::Components,
            "k_hop" => AlgoRun::KHop {
                sources: param_vertices(g, p, "sources")?,
                k: param_u32(p, "k", 1, MAX_K)?,
                directed: param_bool(p, "directed", true)?,
            },
            "shortest_path" => AlgoRun::Path {
                source: param_vertex(g, p, "source")?,
                target: param_vertex(g, p, "target")?,
                directed: param_bool(p, "directed", true)?,
            },
            other => {
                return Err(bad(format!(
                    "algorithmName {} is not one of pagerank, connected_component, k_hop, shortest_path",
                    quote(other)
                )));
            }
        })
    }

    /// The algorithm's name, as GES names it (and as the task's kind).
    fn name(&self) -> &'static str {
        match self {
            AlgoRun::PageRank(_) => "pagerank",
            AlgoRun::Components => "connected_component",
            AlgoRun::KHop { .. } => "k_hop",
            AlgoRun::Path { .. } => "shortest_path",
        }
    }

    /// Runs on `g`, under `control`.
    pub(crate) fn execute(
        &self,
        g: &GraphData,
        control: &dyn Control,
    ) -> Result<Output, StoreError> {
        let id = |i: u32| -> Box<str> { g.vertex_id(i).unwrap_or_default().into() };
        Ok(match self {
            AlgoRun::PageRank(p) => {
                let r = algo::pagerank(g, p, control)?;
                let mut rows: Vec<(Box<str>, f64)> = r
                    .ranks
                    .iter()
                    .enumerate()
                    .map(|(i, &s)| (id(i as u32), s))
                    .collect();
                rows.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                Output::Ranks {
                    iterations: r.iterations,
                    converged: r.converged,
                    rows,
                }
            }
            AlgoRun::Components => {
                let c = algo::connected_components(g, control)?;
                let count = c
                    .iter()
                    .enumerate()
                    .filter(|(i, r)| *i as u32 == **r)
                    .count();
                Output::Components {
                    count,
                    rows: c
                        .iter()
                        .enumerate()
                        .map(|(i, &r)| (id(i as u32), id(r)))
                        .collect(),
                }
            }
            AlgoRun::KHop {
                sources,
                k,
                directed,
            } => Output::KHop {
                rows: algo::k_hop(g, sources, *k, *directed, control)?
                    .into_iter()
                    .map(|(v, d)| (id(v), d))
                    .collect(),
            },
            AlgoRun::Path {
                source,
                target,
                directed,
            } => Output::Path {
                path: algo::shortest_path(g, *source, *target, *directed, control)?
                    .map(|p| p.into_iter().map(id).collect()),
            },
        })
    }
}

/// An algorithm's result, kept for paging.
#[derive(Debug)]
pub(crate) enum Output {
    Ranks {
        iterations: u32,
        converged: bool,
        rows: Vec<(Box<str>, f64)>,
    },
    Components {
        count: usize,
        rows: Vec<(Box<str>, Box<str>)>,
    },
    KHop {
        rows: Vec<(Box<str>, u32)>,
    },
    Path {
        path: Option<Vec<Box<str>>>,
    },
}

impl Output {
    /// Roughly the memory it holds.
    pub(crate) fn approx_bytes(&self) -> usize {
        match self {
            Output::Ranks { rows, .. } => rows.iter().map(|r| r.0.len() + 32).sum(),
            Output::Components { rows, .. } => {
                rows.iter().map(|r| r.0.len() + r.1.len() + 32).sum()
            }
            Output::KHop { rows } => rows.iter().map(|r| r.0.len() + 24).sum(),
            Output::Path { path } => path.iter().flatten().map(|p| p.len() + 16).sum(),
        }
    }

    /// The `data` object of one page: `outputs`, and the page's size,
    /// offset and the total.
    fn page(&self, offset: usize, limit: usize) -> Json {
        fn slice<T>(rows: &[T], offset: usize, limit: usize) -> &[T] {
            let start = offset.min(rows.len());
            &rows[start..start.saturating_add(limit).min(rows.len())]
        }
        let (outputs, returned, total) = match self {
            Output::Ranks {
                iterations,
                converged,
                rows,
            } => {
                let page = slice(rows, offset, limit);
                (
                    json!({
                        "algorithm": "pagerank",
                        "iterations": iterations,
                        "converged": converged,
                        "pagerank": page.iter().map(|(id, s)| json!({"id": id, "score": s})).collect::<Vec<_>>(),
                    }),
                    page.len(),
                    rows.len(),
                )
            }
            Output::Components { count, rows } => {
                let page = slice(rows, offset, limit);
                (
                    json!({
                        "algorithm": "connected_component",
                        "component_count": count,
                        "community": page.iter().map(|(id, c)| json!({"id": id, "component": c})).collect::<Vec<_>>(),
                    }),
                    page.len(),
                    rows.len(),
                )
            }
            Output::KHop { rows } => {
                let page = slice(rows, offset, limit);
                (
                    json!({
                        "algorithm": "k_hop",
                        "k_hop": page.iter().map(|(id, d)| json!({"id": id, "depth": d})).collect::<Vec<_>>(),
                    }),
                    page.len(),
                    rows.len(),
                )
            }
            Output::Path { path } => {
                let n = path.as_ref().map_or(0, Vec::len);
                (
                    json!({
                        "algorithm": "shortest_path",
                        "path": path,
                        "length": path.as_ref().map(|p| p.len() - 1),
                    }),
                    n,
                    n,
                )
            }
        };
        json!({
            "outputs": outputs,
            "data_return_size": returned,
            "data_offset": offset,
            "data_total_size": total,
        })
    }
}

fn page_params(q: &Query) -> Result<(usize, usize), ApiError> {
    Ok((
        q.usize("offset", 0, usize::MAX)?,
        q.usize("limit", DEFAULT_RESULT_LIMIT, MAX_RESULT_LIMIT)?,
    ))
}

async fn action(
    State(st): State<Arc<ApiState>>,
    ServicePath(key): ServicePath,
    Idempotency(retry): Idempotency,
    q: Query,
    body: ReqBody,
) -> Result<Response, ApiError> {
    match q.get("action_id") {
        Some("execute-algorithm") => {}
        Some(other) => {
            return Err(ApiError::invalid_parameter(format!(
                "action_id {} is not supported (execute-algorithm is)",
                quote(other)
            )));
        }
        None => return Err(ApiError::invalid_parameter("action_id is required")),
    }
    let (offset, limit) = page_params(&q)?;
    let req: AlgorithmRequest = body.json()?;
    let (host, g) = serving(&st, &key)?;
    let run = AlgoRun::parse(&req.algorithm_name, &req.parameters, &g)?;
    let sync = match req.execution_mode.as_deref() {
        None | Some("async") => false,
        Some("sync") => true,
        Some(other) => {
            return Err(bad(format!(
                "executionMode {} is not sync or async",
                quote(other)
            )));
        }
    };
    if sync {
        if matches!(run, AlgoRun::PageRank(_) | AlgoRun::Components) {
            return Err(bad(format!(
                "{} runs asynchronously: leave executionMode out",
                run.name()
            )));
        }
        let _permit = host
            .sync_queries
            .acquire()
            .await
            .map_err(|_| ApiError::internal("the query gate is closed"))?;
        let out = tokio::task::spawn_blocking(move || run.execute(&g, &NoControl))
            .await
            .map_err(|_| ApiError::internal("the query failed inside the server"))?
            .map_err(|e| bad(e.to_string()))?;
        return Ok(json_response(
            StatusCode::OK,
            &json!({"data": out.page(offset, limit)}),
        ));
    }
    st.job_quota(&key.project)?;
    let kind = HostKind::new(run.name())?;
    let (id, ticket) =
        st.register_host_task(&key, retry, TaskSpec::new(kind).payload(body.0.to_vec()))?;
    if let Some(ticket) = ticket
        && let Err(ticket) = host.submit(ticket, run, g)
    {
        let _ = st.engine.report(
            &ticket.task,
            graph_lifecycle::Report::Failed("the server is stopping".into()),
        );
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::SHUTTING_DOWN,
            "the server is stopping",
        ));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"jobId": id.to_string(), "jobType": 1}),
    ))
}

async fn job_status(
    State(st): State<Arc<ApiState>>,
    ServiceJobPath(key, job): ServiceJobPath,
    q: Query,
) -> Result<Response, ApiError> {
    let (offset, limit) = page_params(&q)?;
    let task = st.engine.task(&key, job)?;
    let wire = crate::wire::Job::from_task(&task);
    let mut body = json!({
        "jobId": wire.job_id,
        "status": wire.status,
        "jobType": wire.job_type,
        "progress": wire.job_progress,
    });
    if let Some(r) = wire.fail_reason {
        body["failReason"] = Json::from(r);
    }
    if task.status == TaskStatus::Succeeded
        && let Some(host) = &st.store
        && let Some(out) = host.result(job)
    {
        body["data"] = out.page(offset, limit);
    }
    Ok(json_response(StatusCode::OK, &body))
}

async fn job_list(
    State(st): State<Arc<ApiState>>,
    ServicePath(key): ServicePath,
    q: Query,
) -> Result<Response, ApiError> {
    let query = TaskQuery::new()
        .offset(q.usize("offset", 0, usize::MAX)?)
        .limit(q.usize("limit", crate::api::DEFAULT_LIMIT, crate::api::MAX_LIMIT)?);
    let page = st.engine.tasks(&key, &query)?;
    let jobs: Vec<Json> = page
        .items
        .iter()
        .map(|t| {
            let bytes = t.payload.as_bytes();
            let request = serde_json::from_slice::<Json>(bytes)
                .unwrap_or_else(|_| Json::from(String::from_utf8_lossy(bytes).into_owned()));
            json!({
                "job_id": t.id.to_string(),
                "status": crate::wire::job_status(t.status),
                "job_type": crate::wire::job_type(&t.kind),
                "request": request,
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"jobs": jobs, "totalCount": page.total}),
    ))
}

/// Largest error body rewritten into the service plane's form.
const MAX_ERROR_BODY: usize = 64 << 10;

/// An error answered on a `/ges/` path, with its body in GES's
/// service-plane form: `{"errorCode", "errorMessage"}` instead of the
/// management plane's `{"error_code", "error_msg"}`, whoever refused the
/// request (the gate, a handler, the router). The API's front service
/// calls it for every answer of 400 or more on those paths.
pub(crate) async fn service_error_body(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ERROR_BODY).await else {
        return (parts.status, "").into_response();
    };
    let rewritten = serde_json::from_slice::<crate::wire::ErrorBody>(&bytes)
        .ok()
        .and_then(|e| {
            serde_json::to_vec(&json!({"errorCode": e.error_code, "errorMessage": e.error_msg}))
                .ok()
        });
    match rewritten {
        Some(b) => {
            parts.headers.remove(axum::http::header::CONTENT_LENGTH);
            Response::from_parts(parts, axum::body::Body::from(b))
        }
        None => Response::from_parts(parts, axum::body::Body::from(bytes)),
    }
}
