//! The metrics endpoint scraped after a scripted lifecycle, parsed by a
//! Prometheus text parser, and its values checked.

mod common;

use std::collections::BTreeSet;

use common::{Client, TOKEN, agent, raw, start, wait_for};
use prometheus_parse::{Sample, Scrape, Value};
use serde_json::json;

const P: &str = "/v2/demo/graphs";

fn scrape(server: &ges_server::ServerHandle) -> Scrape {
    let addr = server.metrics_addr().expect("a metrics listener");
    let mut res = agent()
        .get(format!("http://{addr}/metrics"))
        .call()
        .expect("the metrics endpoint answers");
    assert_eq!(res.status(), 200);
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"));
    let text = res.body_mut().read_to_string().unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("the text exposition format")
}

/// The value of the sample named `metric` with exactly `labels`, or 0.
fn value(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let matches = |x: &&Sample| {
        x.metric == metric
            && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v))
            && x.labels.len() == labels.len()
    };
    s.samples
        .iter()
        .find(matches)
        .map_or(0.0, |x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{metric} is not a number: {other:?}"),
        })
}

fn job(v: &serde_json::Value) -> String {
    v["job_id"].as_str().unwrap().to_owned()
}

#[test]
fn a_scripted_lifecycle_shows_in_the_metrics() {
    let server = start("[metrics]\nlisten = \"127.0.0.1:0\"");
    let c = Client::new(&server, TOKEN);

    // Two graphs run; one imports, is restarted by force in the middle of
    // it, and runs again; a third is created and left stopped.
    c.running_graph("demo", "a");
    c.running_graph("demo", "b");
    c.post(P, json!({"graph": {"name": "c"}})).ok();
    let import = job(&c
        .post(&format!("{P}/b/import-graph"), json!({"edgeset_path": "e"}))
        .ok());
    c.wait_job("demo", "b", &import, "running");
    let restart = job(&c.post(&format!("{P}/b/restart"), json!({})).ok());
    c.wait_job("demo", "b", &restart, "success");
    c.wait_graph("demo", "b", "200");
    // Refusals: a wrong token, an unknown access key, a graph that does
    // not exist.
    Client::new(&server, "wrong")
        .get(P)
        .assert_error(401, "GES.8007");
    let unknown_key = raw(
        server.local_addr(),
        format!(
            "GET {P} HTTP/1.1\r\nHost: ges\r\nX-Sdk-Date: 20261129T000000Z\r\nAuthorization: SDK-HMAC-SHA256 Access=NOSUCHKEY, SignedHeaders=host;x-sdk-date, Signature={}\r\n\r\n",
            "0".repeat(64)
        )
        .as_bytes(),
    );
    assert!(unknown_key.starts_with("HTTP/1.1 401 "), "{unknown_key}");
    c.get(&format!("{P}/nosuch")).assert_error(404, "GES.8011");
    // Methods of a client's own invention do not become label values.
    for i in 0..20 {
        let _ = raw(
            server.local_addr(),
            format!("INVENTED{i} {P} HTTP/1.1\r\nHost: ges\r\nX-Auth-Token: {TOKEN}\r\n\r\n")
                .as_bytes(),
        );
    }

    // Job metrics come from the engine's events, counted on a thread of
    // their own: wait until the last of them is in.
    let s = wait_for(|| {
        let s = scrape(&server);
        let restarts = value(
            &s,
            "ges_jobs_ended_total",
            &[("kind", "restart"), ("outcome", "succeeded")],
        );
        (restarts == 1.0).then_some(s)
    });

    for (state, n) in [("running", 2.0), ("stopped", 1.0), ("abnormal", 0.0)] {
        assert_eq!(value(&s, "ges_graphs", &[("state", state)]), n, "{state}");
    }
    for (kind, n) in [("start", 2.0), ("import", 1.0), ("restart", 1.0)] {
        assert_eq!(
            value(&s, "ges_jobs_started_total", &[("kind", kind)]),
            n,
            "{kind}"
        );
    }
    let ended = |kind, outcome| {
        value(
            &s,
            "ges_jobs_ended_total",
            &[("kind", kind), ("outcome", outcome)],
        )
    };
    assert_eq!(ended("start", "succeeded"), 2.0);
    assert_eq!(ended("import", "force_restarted"), 1.0);
    assert_eq!(ended("import", "succeeded"), 0.0);
    assert_eq!(value(&s, "ges_forced_restarts_total", &[]), 1.0);
    assert_eq!(value(&s, "ges_tasks_failed_by_restart_total", &[]), 1.0);
    // One duration observed for each job that ended.
    let durations = |kind, outcome| {
        value(
            &s,
            "ges_job_duration_seconds_count",
            &[("kind", kind), ("outcome", outcome)],
        )
    };
    assert_eq!(durations("start", "succeeded"), 2.0);
    assert_eq!(durations("import", "force_restarted"), 1.0);
    assert_eq!(durations("restart", "succeeded"), 1.0);

    // HTTP: by route template, method and status.
    let graphs = "/v2/:project_id/graphs";
    let requests = |route, method, status| {
        value(
            &s,
            "ges_http_requests_total",
            &[("route", route), ("method", method), ("status", status)],
        )
    };
    assert_eq!(requests(graphs, "POST", "200"), 3.0);
    assert_eq!(requests(graphs, "GET", "401"), 2.0);
    assert_eq!(
        requests("/v2/:project_id/graphs/:graph_id/restart", "POST", "200"),
        1.0
    );
    assert_eq!(
        requests("/v2/:project_id/graphs/:graph_id", "GET", "404"),
        1.0
    );
    let all_requests: f64 = s
        .samples
        .iter()
        .filter(|x| x.metric == "ges_http_requests_total")
        .map(|x| match x.value {
            Value::Counter(v) => v,
            _ => 0.0,
        })
        .sum();
    let all_timed: f64 = s
        .samples
        .iter()
        .filter(|x| x.metric == "ges_http_request_duration_seconds_count")
        .map(|x| match x.value {
            Value::Counter(v) | Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum();
    assert!(all_requests > 20.0);
    assert_eq!(all_requests, all_timed);
    let methods: BTreeSet<&str> = s
        .samples
        .iter()
        .filter_map(|x| x.labels.get("method"))
        .collect();
    assert!(
        methods.iter().all(|m| ["GET", "POST", "other"].contains(m)),
        "{methods:?}"
    );
    assert_eq!(requests(graphs, "other", "405"), 20.0);

    // Authentication failures, by reason.
    let auth = |reason| value(&s, "ges_auth_failures_total", &[("reason", reason)]);
    assert_eq!(auth("bad_token"), 1.0);
    assert_eq!(auth("unknown_access_key"), 1.0);
    server.shutdown().unwrap();
}
