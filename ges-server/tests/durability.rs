//! The server process on a data directory, stopped and started again, or
//! killed with SIGKILL and started again, driven over HTTP: what was
//! acknowledged before is there after; jobs that were running fail as
//! interrupted, their graphs are Abnormal, and a forced restart brings
//! them back.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Client, TOKEN, agent, wait_for};
use serde_json::{Value, json};

const P: &str = "/v2/demo/graphs";

/// A configuration file for the process: one token, a short start, an
/// import long enough to be running when the process dies.
fn write_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("ges.toml");
    std::fs::write(
        &path,
        format!(
            r#"
            [server]
            listen = "127.0.0.1:0"
            shutdown_grace_ms = 2000

            [[auth.tokens]]
            token = "{TOKEN}"
            projects = ["demo"]

            [simulation]
            enabled = true
            poll_ms = 5
            start = {{ duration_ms = 50, steps = 2 }}
            restart = {{ duration_ms = 80, steps = 2 }}
            import = {{ duration_ms = 600000, steps = 100 }}
            "#
        ),
    )
    .unwrap();
    path
}

/// A running `ges-server` process, its address, and what it logged.
struct Process {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Process {
    /// Starts the server binary on `data` and waits until it listens.
    fn start(config: &Path, data: &Path) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ges-server"))
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(data)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server binary starts");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let kept = log.clone();
        // Reads every line, so the process never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(addr.parse::<SocketAddr>());
                }
                kept.lock().unwrap().push_str(&line);
                kept.lock().unwrap().push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(addr)) => addr,
            other => {
                let _ = child.kill();
                panic!(
                    "the server did not say where it listens ({other:?}):\n{}",
                    log.lock().unwrap()
                );
            }
        };
        Process { child, addr, log }
    }

    fn client(&self) -> Client {
        Client {
            agent: agent(),
            base: format!("http://{}", self.addr),
            token: Some(TOKEN.to_owned()),
            extra: Vec::new(),
        }
    }

    /// SIGKILL: no drain, no final sync.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, and the process's exit.
    fn terminate(mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success());
        self.child.wait().unwrap()
    }

    fn logged(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn job_id(v: &Value) -> String {
    v["job_id"].as_str().expect("job_id").to_owned()
}

/// Each graph's name and status code, by name.
type Graphs = Vec<(String, String)>;
/// Each job of the task center by id.
type Jobs = Vec<(String, Value)>;

/// What the server shows of a project: each graph's status, and every job
/// of the task center by id.
fn view(c: &Client) -> (Graphs, Jobs) {
    let mut graphs: Graphs = c.get(P).ok()["graphs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let name = g["name"].as_str().unwrap().to_owned();
            let status = c.get(&format!("{P}/{name}")).ok()["graph"]["status"]
                .as_str()
                .unwrap()
                .to_owned();
            (name, status)
        })
        .collect();
    graphs.sort();
    let mut jobs: Jobs = c.get(&format!("{P}/jobs")).ok()["job_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["job_id"].as_str().unwrap().to_owned(), j.clone()))
        .collect();
    jobs.sort_by(|a, b| a.0.cmp(&b.0));
    (graphs, jobs)
}

#[test]
fn a_sigkilled_server_comes_back_with_what_it_acknowledged_and_fails_the_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let data = dir.path().join("data");

    let first = Process::start(&config, &data);
    let c = first.client();
    c.running_graph("demo", "ready");
    c.post(P, json!({"graph": {"name": "idle"}})).ok();
    c.running_graph("demo", "busy");
    let import = job_id(
        &c.post(
            &format!("{P}/busy/import-graph"),
            json!({"edgeset_path": "obs://b/e.csv"}),
        )
        .ok(),
    );
    c.wait_job("demo", "busy", &import, "running");
    // A call answered under an idempotency key: its answer survives too.
    let keyed = c.with_header("Idempotency-Key", "create-keyed-1");
    let first_answer = keyed.post(P, json!({"graph": {"name": "keyed"}}));
    assert_eq!(first_answer.status, 200);
    let (graphs_before, jobs_before) = view(&c);
    first.kill();

    let second = Process::start(&config, &data);
    let c = second.client();
    let (graphs_after, jobs_after) = view(&c);
    // Every graph is there; the one that was importing is Abnormal.
    let expected: Graphs = graphs_before
        .iter()
        .map(|(name, status)| {
            let status = if name == "busy" { "300" } else { status };
            (name.clone(), status.to_owned())
        })
        .collect();
    assert_eq!(graphs_after, expected);
    // Every job is there; the import, running at the kill, failed as
    // interrupted; the others are as they were.
    assert_eq!(
        jobs_after.iter().map(|j| &j.0).collect::<Vec<_>>(),
        jobs_before.iter().map(|j| &j.0).collect::<Vec<_>>()
    );
    for ((id, before), (_, after)) in jobs_before.iter().zip(&jobs_after) {
        if *id == import {
            assert_eq!(after["status"], "failed", "{after}");
            assert_eq!(after["fail_reason"], "interrupted", "{after}");
            assert!(after.get("end_time").is_some());
        } else {
            assert_eq!(before, after);
        }
    }
    let log = second.logged();
    assert!(
        log.contains("journal opened") && log.contains("interrupted=1"),
        "{log}"
    );
    // The retried call gets its first answer, and changes nothing.
    let retried = keyed
        .with_base(&c)
        .post(P, json!({"graph": {"name": "keyed"}}));
    assert_eq!(
        (retried.status, &retried.body),
        (first_answer.status, &first_answer.body)
    );
    // The Abnormal graph restarts by force and runs again; new job ids do
    // not collide with the recovered ones.
    let restart = job_id(&c.post(&format!("{P}/busy/restart"), json!({})).ok());
    assert!(jobs_before.iter().all(|(id, _)| *id != restart));
    c.wait_job("demo", "busy", &restart, "success");
    c.wait_graph("demo", "busy", "200");
}

#[test]
fn a_stopped_and_restarted_server_keeps_its_graphs_and_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let data = dir.path().join("data");

    let first = Process::start(&config, &data);
    let c = first.client();
    c.running_graph("demo", "a");
    c.running_graph("demo", "b");
    let stop = job_id(&c.post_empty(&format!("{P}/b/stop")).ok());
    c.wait_job("demo", "b", &stop, "success");
    c.post(P, json!({"graph": {"name": "c"}})).ok();
    c.delete(&format!("{P}/c")).ok();
    let before = view(&c);
    let status = first.terminate();
    assert!(status.success(), "{status:?}");

    let second = Process::start(&config, &data);
    let c = second.client();
    assert_eq!(view(&c), before);
    assert_eq!(
        before.0,
        [("a".into(), "200".into()), ("b".into(), "700".into())]
    );
    // And the graphs go on: b starts again.
    let start = job_id(&c.post_empty(&format!("{P}/b/start")).ok());
    c.wait_job("demo", "b", &start, "success");
    wait_for(|| (c.get(&format!("{P}/b")).ok()["graph"]["status"] == "200").then_some(()));
}
