//! Metrics in Prometheus's text exposition format, on a listener of their
//! own (`[metrics] listen`).
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `ges_graphs` | gauge | `state` | graphs in each state, read at scrape time |
//! | `ges_jobs_started_total` | counter | `kind` | jobs and host tasks created |
//! | `ges_jobs_ended_total` | counter | `kind`, `outcome` | jobs ended: `succeeded`, `failed`, `cancelled`, `timed_out`, `force_restarted`, `superseded`, `interrupted` |
//! | `ges_job_duration_seconds` | histogram | `kind`, `outcome` | from a job's creation to its end |
//! | `ges_forced_restarts_total` | counter | | forced restarts applied |
//! | `ges_tasks_failed_by_restart_total` | counter | | live tasks a forced restart failed |
//! | `ges_http_requests_total` | counter | `route`, `method`, `status` | requests answered (`method` is `other` for a method outside HTTP's usual seven) |
//! | `ges_http_request_duration_seconds` | histogram | `route` | from the request's head to its answer |
//! | `ges_auth_failures_total` | counter | `reason` | requests refused 401 |
//! | `ges_events_missed_total` | counter | | engine events the metrics missed (a lag of their reader) |
//!
//! Job metrics come from the engine's events: every job, whoever started or
//! ended it (a request, a worker, a deadline, a forced restart, recovery),
//! is counted once. `route` is the route's template
//! (`/v2/:project_id/graphs/:graph_id/start`), never the path itself,
//! so a client cannot make the label set grow.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use graph_lifecycle::{
    Change, Engine, EventError, FailReason, GraphState, JobId, TaskKind, TaskStatus, Timestamp,
};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    graphs: IntGaugeVec,
    jobs_started: IntCounterVec,
    jobs_ended: IntCounterVec,
    job_duration: HistogramVec,
    forced_restarts: IntCounter,
    failed_by_restart: IntCounter,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    auth_failures: IntCounterVec,
    events_missed: IntCounter,
    /// The request metrics' children, looked up once per label set.
    http_handles: HttpHandles,
}

/// The children of the request metrics, each found (and so created) the
/// first time a request of its label set is answered, then kept: counting
/// a request hashes no label and formats nothing. Statuses outside
/// [`STATUSES`] are looked up by label every time.
struct HttpHandles {
    /// Per route (the index in [`ROUTES`]).
    durations: Box<[OnceLock<Histogram>]>,
    /// Per route, method (the index in [`METHODS`]) and status (the index
    /// in [`STATUSES`]).
    requests: Box<[OnceLock<IntCounter>]>,
}

impl HttpHandles {
    fn new() -> Self {
        fn slots<T>(n: usize) -> Box<[OnceLock<T>]> {
            (0..n).map(|_| OnceLock::new()).collect()
        }
        Self {
            durations: slots(ROUTES.len()),
            requests: slots(ROUTES.len() * METHODS.len() * STATUSES.len()),
        }
    }
}

/// The `method` label values: HTTP's usual seven, and `other`.
const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "other",
];

/// The statuses the server answers, whose counters are kept at hand.
const STATUSES: [u16; 18] = [
    200, 400, 401, 403, 404, 405, 408, 409, 413, 414, 415, 429, 431, 500, 501, 502, 503, 504,
];

/// The index in [`METHODS`] of a method's label.
fn method_index(method: &str) -> usize {
    METHODS[..7]
        .iter()
        .position(|m| *m == method)
        .unwrap_or(METHODS.len() - 1)
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric")
}

fn histogram(name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("a valid metric")
}

impl Metrics {
    /// Every metric, registered.
    pub fn new() -> Arc<Self> {
        let m = Metrics {
            registry: Registry::new(),
            graphs: IntGaugeVec::new(Opts::new("ges_graphs", "Graphs in each state."), &["state"])
                .expect("a valid metric"),
            jobs_started: counter(
                "ges_jobs_started_total",
                "Jobs and host tasks created, by kind.",
                &["kind"],
            ),
            jobs_ended: counter(
                "ges_jobs_ended_total",
                "Jobs and host tasks ended, by kind and outcome.",
                &["kind", "outcome"],
            ),
            job_duration: histogram(
                "ges_job_duration_seconds",
                "From a job's creation to its end.",
                &["kind", "outcome"],
                prometheus::exponential_buckets(0.01, 4.0, 10).expect("valid buckets"),
            ),
            forced_restarts: IntCounter::new(
                "ges_forced_restarts_total",
                "Forced restarts applied.",
            )
            .expect("a valid metric"),
            failed_by_restart: IntCounter::new(
                "ges_tasks_failed_by_restart_total",
                "Live tasks failed by a forced restart.",
            )
            .expect("a valid metric"),
            http_requests: counter(
                "ges_http_requests_total",
                "Requests answered, by route template, method and status.",
                &["route", "method", "status"],
            ),
            http_duration: histogram(
                "ges_http_request_duration_seconds",
                "From a request's head to its answer, by route template.",
                &["route"],
                prometheus::exponential_buckets(0.0001, 4.0, 10).expect("valid buckets"),
            ),
            auth_failures: counter(
                "ges_auth_failures_total",
                "Requests refused 401, by reason.",
                &["reason"],
            ),
            events_missed: IntCounter::new(
                "ges_events_missed_total",
                "Engine events the metrics did not see, because their reader fell behind.",
            )
            .expect("a valid metric"),
            http_handles: HttpHandles::new(),
        };
        let r = &m.registry;
        let register = |c: Box<dyn prometheus::core::Collector>| {
            r.register(c).expect("metric names are unique");
        };
        register(Box::new(m.graphs.clone()));
        register(Box::new(m.jobs_started.clone()));
        register(Box::new(m.jobs_ended.clone()));
        register(Box::new(m.job_duration.clone()));
        register(Box::new(m.forced_restarts.clone()));
        register(Box::new(m.failed_by_restart.clone()));
        register(Box::new(m.http_requests.clone()));
        register(Box::new(m.http_duration.clone()));
        register(Box::new(m.auth_failures.clone()));
        register(Box::new(m.events_missed.clone()));
        Arc::new(m)
    }

    /// A request answered. Methods other than the API's own are counted
    /// as `other`, so a client cannot make the label set grow.
    pub fn request(&self, route: &str, method: &str, status: u16, took: Duration) {
        match ROUTES.iter().position(|r| *r == route) {
            Some(route) => self.route_request(route, method_index(method), status, took),
            None => {
                let method = METHODS[method_index(method)];
                self.http_requests
                    .with_label_values(&[route, method, status.to_string().as_str()])
                    .inc();
                self.http_duration
                    .with_label_values(&[route])
                    .observe(took.as_secs_f64());
            }
        }
    }

    /// A request answered on the route of index `route` in [`ROUTES`]
    /// ([`route_index`]), with the method of index `method` in
    /// [`METHODS`].
    fn route_request(&self, route: usize, method: usize, status: u16, took: Duration) {
        let h = &self.http_handles;
        let label = ROUTES[route];
        match STATUSES.iter().position(|s| *s == status) {
            Some(s) => h.requests[(route * METHODS.len() + method) * STATUSES.len() + s]
                .get_or_init(|| {
                    self.http_requests.with_label_values(&[
                        label,
                        METHODS[method],
                        status.to_string().as_str(),
                    ])
                })
                .inc(),
            None => self
                .http_requests
                .with_label_values(&[label, METHODS[method], status.to_string().as_str()])
                .inc(),
        }
        h.durations[route]
            .get_or_init(|| self.http_duration.with_label_values(&[label]))
            .observe(took.as_secs_f64());
    }

    /// A request to `path` answered: [`request`](Self::request) with the
    /// path's route template, found without allocating.
    pub(crate) fn path_request(
        &self,
        path: &str,
        method: &axum::http::Method,
        status: u16,
        took: Duration,
    ) {
        self.route_request(
            route_index(path),
            method_index(method.as_str()),
            status,
            took,
        );
    }

    /// A request refused 401.
    pub fn auth_failure(&self, reason: &str) {
        self.auth_failures.with_label_values(&[reason]).inc();
    }

    /// The text exposition of every metric, graphs counted in `engine` now.
    pub fn render(&self, engine: &Engine) -> String {
        let mut counts: HashMap<GraphState, i64> = HashMap::new();
        for key in engine.keys() {
            if let Ok(state) = engine.state(&key) {
                *counts.entry(state).or_default() += 1;
            }
        }
        for state in GraphState::ALL {
            self.graphs
                .with_label_values(&[state.name()])
                .set(counts.get(&state).copied().unwrap_or(0));
        }
        let mut out = Vec::new();
        // Encoding into memory does not fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Counts the engine's job events on a thread of its own, until
    /// `stop` is set or the engine is gone.
    ///
    /// # Errors
    ///
    /// The thread could not start.
    pub fn watch(
        self: &Arc<Self>,
        engine: &Engine,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<JoinHandle<()>> {
        let metrics = self.clone();
        let weak = engine.downgrade();
        let mut events = engine.subscribe();
        std::thread::Builder::new()
            .name("ges-metrics".to_owned())
            .spawn(move || {
                let mut created: HashMap<JobId, Timestamp> = HashMap::new();
                while !stop.load(Ordering::Acquire) {
                    match events.recv_timeout(Duration::from_millis(100)) {
                        Ok(ev) => {
                            if let Change::Task {
                                job,
                                kind,
                                status,
                                reason,
                                ..
                            } = &ev.change
                            {
                                metrics.task(
                                    &mut created,
                                    *job,
                                    kind,
                                    *status,
                                    reason.as_ref(),
                                    ev.at,
                                );
                            }
                        }
                        Err(EventError::Empty) => {}
                        Err(EventError::Lagged { .. }) => {
                            metrics.events_missed.inc();
                            let Some(engine) = weak.upgrade() else {
                                return;
                            };
                            events = engine.subscribe();
                            created.clear();
                        }
                        Err(EventError::Closed) => return,
                    }
                }
            })
    }

    fn task(
        &self,
        created: &mut HashMap<JobId, Timestamp>,
        job: JobId,
        kind: &TaskKind,
        status: TaskStatus,
        reason: Option<&FailReason>,
        at: Timestamp,
    ) {
        let kind_name = match kind {
            TaskKind::Host(_) => "host",
            other => other.lifecycle().map_or("host", |k| k.name()),
        };
        if status == TaskStatus::Pending && !created.contains_key(&job) {
            created.insert(job, at);
            self.jobs_started.with_label_values(&[kind_name]).inc();
            if *kind == TaskKind::Restart {
                self.forced_restarts.inc();
            }
            return;
        }
        if !status.is_terminal() {
            return;
        }
        let outcome = match (status, reason) {
            (TaskStatus::Succeeded, _) => "succeeded",
            (TaskStatus::Cancelled, _) | (_, Some(FailReason::Cancelled)) => "cancelled",
            (_, Some(FailReason::TimedOut)) => "timed_out",
            (_, Some(FailReason::ForceRestarted(_))) => "force_restarted",
            (_, Some(FailReason::Superseded(_))) => "superseded",
            (_, Some(FailReason::Interrupted)) => "interrupted",
            _ => "failed",
        };
        if outcome == "force_restarted" || outcome == "superseded" {
            self.failed_by_restart.inc();
        }
        self.jobs_ended
            .with_label_values(&[kind_name, outcome])
            .inc();
        if let Some(begun) = created.remove(&job) {
            self.job_duration
                .with_label_values(&[kind_name, outcome])
                .observe(at.saturating_since(begun).as_secs_f64());
        }
    }
}

/// The `route` label values: GES's route templates, and `other`.
const ROUTES: [&str; 15] = [
    "/v2/:project_id/graphs",
    "/v2/:project_id/graphs/jobs",
    "/v2/:project_id/graphs/:graph_id",
    "/v2/:project_id/graphs/:graph_id/start",
    "/v2/:project_id/graphs/:graph_id/stop",
    "/v2/:project_id/graphs/:graph_id/restart",
    "/v2/:project_id/graphs/:graph_id/import-graph",
    "/v2/:project_id/graphs/:graph_id/export-graph",
    "/v2/:project_id/graphs/:graph_id/clear-graph",
    "/v2/:project_id/graphs/:graph_id/jobs/:job_id/status",
    "/ges/v1.0/:project_id/graphs/:graph_name/vertices/detail",
    "/ges/v1.0/:project_id/graphs/:graph_name/action",
    "/ges/v1.0/:project_id/graphs/:graph_name/jobs/status",
    "/ges/v1.0/:project_id/graphs/:graph_name/jobs/:job_id/status",
    "other",
];

/// The route template of a request path, for labels: GES's routes, or
/// `other`.
pub fn route_of(path: &str) -> &'static str {
    ROUTES[route_index(path)]
}

/// The index in [`ROUTES`] of a path's route template: one pass over the
/// path's segments, nothing allocated.
fn route_index(path: &str) -> usize {
    const OTHER: usize = ROUTES.len() - 1;
    // Every template has at most 9 segments (the first one empty).
    let mut segs = [""; 9];
    let mut n = 0;
    for seg in path.trim_end_matches('/').split('/') {
        if n == segs.len() {
            return OTHER;
        }
        segs[n] = seg;
        n += 1;
    }
    match &segs[..n] {
        ["", "v2", _, "graphs"] => 0,
        ["", "v2", _, "graphs", "jobs"] => 1,
        ["", "v2", _, "graphs", _] => 2,
        ["", "v2", _, "graphs", _, "start"] => 3,
        ["", "v2", _, "graphs", _, "stop"] => 4,
        ["", "v2", _, "graphs", _, "restart"] => 5,
        ["", "v2", _, "graphs", _, "import-graph"] => 6,
        ["", "v2", _, "graphs", _, "export-graph"] => 7,
        ["", "v2", _, "graphs", _, "clear-graph"] => 8,
        ["", "v2", _, "graphs", _, "jobs", _, "status"] => 9,
        ["", "ges", "v1.0", _, "graphs", _, "vertices", "detail"] => 10,
        ["", "ges", "v1.0", _, "graphs", _, "action"] => 11,
        ["", "ges", "v1.0", _, "graphs", _, "jobs", "status"] => 12,
        ["", "ges", "v1.0", _, "graphs", _, "jobs", _, "status"] => 13,
        _ => OTHER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_their_route_templates_and_nothing_else_grows_the_labels() {
        assert_eq!(route_of("/v2/demo/graphs"), "/v2/:project_id/graphs");
        assert_eq!(
            route_of("/v2/demo/graphs/g/jobs/abc/status"),
            "/v2/:project_id/graphs/:graph_id/jobs/:job_id/status"
        );
        assert_eq!(
            route_of("/v2/demo/graphs/jobs"),
            "/v2/:project_id/graphs/jobs"
        );
        assert_eq!(route_of("/../../etc/passwd"), "other");
        assert_eq!(route_of("/v2/x/graphs/g/whatever"), "other");
        assert_eq!(
            route_of("/ges/v1.0/demo/graphs/g/jobs/abc/status"),
            "/ges/v1.0/:project_id/graphs/:graph_name/jobs/:job_id/status"
        );
        assert_eq!(route_of("/ges/v1.0/demo/graphs/g/whatever"), "other");
    }

    /// The route templates as they were found before `route_index`: the
    /// path's segments collected and matched.
    fn route_of_collected(path: &str) -> &'static str {
        let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        match segs.as_slice() {
            ["", "v2", _, "graphs"] => "/v2/:project_id/graphs",
            ["", "v2", _, "graphs", "jobs"] => "/v2/:project_id/graphs/jobs",
            ["", "v2", _, "graphs", _] => "/v2/:project_id/graphs/:graph_id",
            ["", "v2", _, "graphs", _, "start"] => "/v2/:project_id/graphs/:graph_id/start",
            ["", "v2", _, "graphs", _, "stop"] => "/v2/:project_id/graphs/:graph_id/stop",
            ["", "v2", _, "graphs", _, "restart"] => "/v2/:project_id/graphs/:graph_id/restart",
            ["", "v2", _, "graphs", _, "import-graph"] => {
                "/v2/:project_id/graphs/:graph_id/import-graph"
            }
            ["", "v2", _, "graphs", _, "export-graph"] => {
                "/v2/:project_id/graphs/:graph_id/export-graph"
            }
            ["", "v2", _, "graphs", _, "clear-graph"] => {
                "/v2/:project_id/graphs/:graph_id/clear-graph"
            }
            ["", "v2", _, "graphs", _, "jobs", _, "status"] => {
                "/v2/:project_id/graphs/:graph_id/jobs/:job_id/status"
            }
            ["", "ges", "v1.0", _, "graphs", _, "vertices", "detail"] => {
                "/ges/v1.0/:project_id/graphs/:graph_name/vertices/detail"
            }
            ["", "ges", "v1.0", _, "graphs", _, "action"] => {
                "/ges/v1.0/:project_id/graphs/:graph_name/action"
            }
            ["", "ges", "v1.0", _, "graphs", _, "jobs", "status"] => {
                "/ges/v1.0/:project_id/graphs/:graph_name/jobs/status"
            }
            ["", "ges", "v1.0", _, "graphs", _, "jobs", _, "status"] => {
                "/ges/v1.0/:project_id/graphs/:graph_name/jobs/:job_id/status"
            }
            _ => "other",
        }
    }

    #[test]
    fn route_templates_are_found_as_by_collecting_the_segments() {
        let mut paths = vec![
            String::new(),
            "/".to_owned(),
            "//".to_owned(),
            "/v2".to_owned(),
            "/v2/".to_owned(),
            "/v2//graphs".to_owned(),
            "/v2/demo/graphs//".to_owned(),
            "/v2/demo/graphs/g/jobs/j/status/".to_owned(),
            "/v2/demo/graphs/g/jobs/j/status/x".to_owned(),
            "/v2/demo/graphs/g/jobs/j/status/x/y/z".to_owned(),
            "/ges/v1.0/demo/graphs/g/jobs/j/status".to_owned(),
            "/ges/v1.0/demo/graphs/g/jobs/j/status/more".to_owned(),
            "v2/demo/graphs".to_owned(),
            "/v2/de%2Fmo/graphs/%2e%2e/start".to_owned(),
        ];
        let prefixes = [
            "/v2/demo/graphs",
            "/v2/demo/graphs/g",
            "/ges/v1.0/demo/graphs/g",
        ];
        let tails = [
            "",
            "/",
            "/jobs",
            "/start",
            "/stop",
            "/restart",
            "/import-graph",
            "/export-graph",
            "/clear-graph",
            "/jobs/j/status",
            "/vertices/detail",
            "/action",
            "/jobs/status",
            "/a/b/c/d/e/f/g",
        ];
        for p in prefixes {
            for t in tails {
                paths.push(format!("{p}{t}"));
            }
        }
        for p in &paths {
            assert_eq!(route_of(p), route_of_collected(p), "{p:?}");
        }
    }

    #[test]
    fn kept_handles_count_what_label_lookups_count() {
        let m = Metrics::new();
        let (engine, _jobs) = Engine::builder().build();
        let ms = Duration::from_millis(1);
        let status_route = "/v2/:project_id/graphs/:graph_id/jobs/:job_id/status";
        m.path_request(
            "/v2/demo/graphs/g/jobs/j/status",
            &axum::http::Method::GET,
            200,
            ms,
        );
        m.request(status_route, "GET", 200, ms);
        let brew = axum::http::Method::from_bytes(b"BREW").unwrap();
        m.path_request("/v2/demo/graphs", &brew, 405, ms);
        m.path_request("/nowhere", &axum::http::Method::GET, 418, ms);
        m.path_request("/nowhere", &axum::http::Method::GET, 418, ms);
        m.request("/not/a/template", "BREW", 200, ms);
        let text = m.render(&engine);
        let line = |labels: &str, value: u32| {
            let l = format!("ges_http_requests_total{{{labels}}} {value}\n");
            assert!(text.contains(&l), "no {l:?} in\n{text}");
        };
        line(
            &format!(r#"method="GET",route="{status_route}",status="200""#),
            2,
        );
        line(
            r#"method="other",route="/v2/:project_id/graphs",status="405""#,
            1,
        );
        line(r#"method="GET",route="other",status="418""#, 2);
        line(r#"method="other",route="/not/a/template",status="200""#, 1);
        let count = |route: &str, value: u32| {
            let l =
                format!("ges_http_request_duration_seconds_count{{route=\"{route}\"}} {value}\n");
            assert!(text.contains(&l), "no {l:?} in\n{text}");
        };
        count(status_route, 2);
        count("other", 2);
        count("/v2/:project_id/graphs", 1);
        // Nothing is shown for a label set no request had.
        assert!(!text.contains("/start"), "{text}");
    }
}
