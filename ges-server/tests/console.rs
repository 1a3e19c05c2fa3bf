//! The web console in a real browser: headless Chromium driven over
//! WebDriver (`chromedriver`). It signs in, creates and starts a graph,
//! imports into it, force-restarts it in the middle of the import, and
//! sees, without reloading the page, the import fail with the restart's
//! id and the graph come back to running; a fail reason full of markup is
//! shown as text, and the nodes panel stays hidden on a standalone
//! server. A screenshot of the page is written to `target/console.png`.
//!
//! A second test starts three servers as the nodes of one cluster, signs
//! in on a follower's console and sees the nodes panel: three nodes up,
//! one leading, this node marked, and the owner of a graph created from
//! the console listing it (screenshot: `target/console-cluster.png`).
//!
//! Without `chromium` and `chromedriver` the test says why and passes,
//! unless `CONSOLE_BROWSER=required` (as in `.ci/run`, which installs
//! them). `CHROMIUM` and `CHROMEDRIVER` name other binaries.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use ges_server::config::JobTiming;
use ges_server::{Server, ServerHandle};
use serde_json::{Value, json};

/// How long any one thing may take to show before the test gives up: a
/// guard against hanging, not a measure of speed.
const PATIENCE: Duration = Duration::from_secs(90);

/// A binary from an environment variable, or the first of `names` found
/// on the `PATH`.
fn binary(var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

/// The chromedriver process, ended when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// One browser at a time: the tests share a small machine with the
/// servers they drive.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

/// Headless Chromium behind a chromedriver of its own.
struct Browser {
    chromium: PathBuf,
    port: u16,
    profile: tempfile::TempDir,
    _driver: Driver,
}

impl Browser {
    /// The browser, or `None` (after saying why) when it is not
    /// installed and not required.
    fn start() -> Option<Browser> {
        let required = std::env::var("CONSOLE_BROWSER").is_ok_and(|v| v == "required");
        let chromium = binary(
            "CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        );
        let driver = binary("CHROMEDRIVER", &["chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            let why = "chromium or chromedriver is not installed (Debian: apt-get install chromium chromium-driver)";
            assert!(!required, "CONSOLE_BROWSER=required, but {why}");
            eprintln!("the browser test is skipped: {why}");
            return None;
        };
        let port = free_port();
        let profile = tempfile::tempdir().unwrap();
        let driver = Driver(
            Command::new(&driver)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver starts"),
        );
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < PATIENCE, "chromedriver never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Browser {
            chromium,
            port,
            profile,
            _driver: driver,
        })
    }

    /// Runs `scenario` in a fresh WebDriver session, then closes it.
    fn run<T>(&self, scenario: impl AsyncFnOnce(&Client) -> T) -> T {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut caps = serde_json::Map::new();
            caps.insert(
                "goog:chromeOptions".into(),
                json!({
                    "binary": self.chromium,
                    "args": [
                        "--headless",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-dev-shm-usage",
                        "--no-first-run",
                        "--no-default-browser-check",
                        "--disable-background-networking",
                        "--disable-component-update",
                        "--disable-sync",
                        "--window-size=1360,1000",
                        format!("--user-data-dir={}", self.profile.path().display()),
                    ],
                }),
            );
            let client =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps)
                    .connect(&format!("http://127.0.0.1:{}", self.port))
                    .await
                    .expect("a WebDriver session");
            let out = scenario(&client).await;
            let _ = client.close().await;
            out
        })
    }
}

#[test]
fn the_console_shows_a_forced_restart_live_in_a_real_browser() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(browser) = Browser::start() else {
        return;
    };

    // The simulated host, with an import slow enough to be caught in the
    // middle (the restart fails it long before it would end).
    let mut cfg = common::config("");
    cfg.simulation.import = JobTiming::new(600_000, 100);
    let server = Server::new(cfg).bind().unwrap().spawn().unwrap();
    let base = format!("http://{}", server.local_addr());

    // The console's answers carry the policy.
    let page = common::agent()
        .get(format!("{base}/console/"))
        .call()
        .unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"));

    let shot = browser.run(async |client| drive(client, &base, &server).await);
    let out = target_dir().join("console.png");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, shot).unwrap();
    eprintln!("the console's screenshot is in {}", out.display());
    server.shutdown().unwrap();
}

/// Waits until `script` (a function body returning a value) returns
/// something truthy, and returns it.
async fn until(client: &Client, script: &str, what: &str) -> Value {
    let started = Instant::now();
    loop {
        let v = client
            .execute(script, Vec::new())
            .await
            .unwrap_or(Value::Null);
        let truthy = match &v {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::String(s) => !s.is_empty(),
            _ => true,
        };
        if truthy {
            return v;
        }
        if started.elapsed() > PATIENCE {
            let page = client.source().await.unwrap_or_default();
            panic!("gave up waiting for {what}; the page:\n{page}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn click(client: &Client, css: &str) {
    client
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
}

async fn type_into(client: &Client, css: &str, text: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .send_keys(text)
        .await
        .unwrap();
}

/// Opens the console at `base` and signs in to the demo project; returns
/// once the event stream is live.
async fn sign_in(client: &Client, base: &str) {
    client.goto(&format!("{base}/console/")).await.unwrap();
    type_into(client, "#project", "demo").await;
    type_into(client, "#token", common::TOKEN).await;
    click(client, "#sign-in-button").await;
    until(
        client,
        "return document.getElementById('live').textContent.startsWith('Live')",
        "the event stream",
    )
    .await;
}

/// The scenario; returns the screenshot.
async fn drive(client: &Client, base: &str, server: &ServerHandle) -> Vec<u8> {
    sign_in(client, base).await;
    // A standalone server: the nodes panel stays hidden once the console
    // has read the cluster view.
    until(
        client,
        "return document.getElementById('nodes-panel').dataset.mode",
        "the cluster view",
    )
    .await;
    let panel = client
        .execute(
            "const p = document.getElementById('nodes-panel'); \
             return [p.dataset.mode, p.hidden, document.querySelectorAll('#node-rows tr').length]",
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(panel, json!(["standalone", true, 0]));
    // The token is in this tab's session storage, never in the URL.
    let url = client.current_url().await.unwrap();
    assert!(!url.as_str().contains(common::TOKEN), "{url}");
    // Gone if the page reloads.
    client
        .execute("document.body.dataset.probe = 'kept'", Vec::new())
        .await
        .unwrap();

    type_into(client, "#new-graph", "movies").await;
    click(client, "#create-button").await;
    let row = "tr[data-graph='movies']";
    until(
        client,
        &format!("return document.querySelector(\"{row}[data-state='stopped']\") !== null"),
        "the new graph, stopped",
    )
    .await;
    click(client, &format!("{row} button[aria-label='Start movies']")).await;
    until(
        client,
        &format!("return document.querySelector(\"{row}[data-state='running']\") !== null"),
        "the graph running",
    )
    .await;

    click(
        client,
        &format!("{row} button[aria-label='Import… movies']"),
    )
    .await;
    type_into(client, "#import-edges", "movies/edges.csv").await;
    click(client, "#import-go").await;
    let import = until(
        client,
        &format!(
            "const j = document.querySelector(\"{row}[data-state='importing'] .job\"); \
             return j && j.dataset.job"
        ),
        "the import, live in the graph's row",
    )
    .await;
    let import = import.as_str().unwrap().to_owned();

    // The forced restart, confirmed: the confirmation names the live
    // import it will fail.
    click(
        client,
        &format!("{row} button[aria-label='Force restart… movies']"),
    )
    .await;
    let listed = until(
        client,
        "const d = document.getElementById('confirm-dialog'); \
         return d.open && document.getElementById('confirm-list').textContent",
        "the restart's confirmation",
    )
    .await;
    assert!(
        listed.as_str().unwrap().contains(&import),
        "the confirmation lists {listed}, not the import {import}"
    );
    click(client, "#confirm-go").await;
    let restart = until(
        client,
        "return document.getElementById('notice').dataset.restartJob",
        "the restart's job id",
    )
    .await;
    let restart = restart.as_str().unwrap().to_owned();

    // The import fails with the restart's id, and the graph runs again
    // (epoch 1), all from the event stream.
    let reason = until(
        client,
        &format!(
            "const r = document.querySelector(\"#task-rows tr[data-job='{import}'][data-status='failed'] .reason\"); \
             return r && r.textContent"
        ),
        "the import failed in the task center",
    )
    .await;
    assert_eq!(
        reason.as_str().unwrap(),
        format!("force-restarted by job {restart}")
    );
    until(
        client,
        &format!(
            "const r = document.querySelector(\"{row}[data-state='running']\"); \
             return r && r.children[2].textContent === '1'"
        ),
        "the graph running again, epoch 1",
    )
    .await;
    until(
        client,
        &format!(
            "return document.querySelector(\"#task-rows tr[data-job='{restart}'][data-status='success']\") !== null"
        ),
        "the restart succeeded in the task center",
    )
    .await;
    let kept = client
        .execute("return document.body.dataset.probe", Vec::new())
        .await
        .unwrap();
    assert_eq!(kept, json!("kept"), "the page was reloaded");
    let shot = client.screenshot().await.unwrap();

    // A fail reason full of markup is shown as text.
    let hostile = r#"<img src=x onerror="document.body.dataset.pwned='1'"><b>bold</b>"#;
    let api = common::Client::new(server, common::TOKEN);
    let export = api
        .post(
            "/v2/demo/graphs/movies/export-graph",
            json!({"graph_export_path": "out", "simulate_failure": hostile}),
        )
        .ok();
    let export = export["job_id"].as_str().unwrap().to_owned();
    let cell = format!("#task-rows tr[data-job='{export}'][data-status='failed'] .reason");
    let shown = until(
        client,
        &format!("const r = document.querySelector(\"{cell}\"); return r && r.textContent"),
        "the export failed in the task center",
    )
    .await;
    assert_eq!(shown.as_str().unwrap(), hostile);
    let markup = client
        .execute(
            &format!(
                "return [document.querySelector(\"{cell}\").children.length, \
                 document.querySelectorAll('img, b').length, \
                 document.body.dataset.pwned || null]"
            ),
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(markup, json!([0, 0, null]), "the fail reason was parsed");
    shot
}

#[test]
fn the_console_shows_the_cluster_nodes_in_a_real_browser() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(browser) = Browser::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("a scratch directory");
    let servers = common::cluster::start(3, dir.path(), |_, _| {});
    let leader = common::cluster::agreed_leader(&servers);
    let me = *servers.keys().find(|id| **id != leader).unwrap();
    let base = format!("http://{}", servers[&me].local_addr());

    let owner = browser.run(async |client| {
        sign_in(client, &base).await;
        // Three nodes, each up, one of them leading; this one marked.
        let seen = until(
            client,
            "const p = document.getElementById('nodes-panel'); \
             const rows = [...document.querySelectorAll('#node-rows tr')]; \
             if (p.hidden || rows.length !== 3) return null; \
             if (!rows.every((r) => r.dataset.live === 'true')) return null; \
             const leaders = rows.filter((r) => r.dataset.leader === 'true'); \
             if (leaders.length !== 1) return null; \
             return { node: p.dataset.node, leader: leaders[0].dataset.node, \
                      role: leaders[0].children[2].textContent, \
                      health: rows.map((r) => r.children[3].textContent), \
                      current: document.querySelector('#node-rows tr[aria-current=true]').dataset.node, \
                      marked: document.querySelector('#node-rows tr[aria-current=true] th').textContent, \
                      status: document.getElementById('nodes-status').textContent }",
            "three nodes up, one leading",
        )
        .await;
        assert_eq!(seen["node"], json!(me.to_string()), "{seen}");
        assert_eq!(seen["current"], json!(me.to_string()), "{seen}");
        assert_eq!(seen["marked"], json!(format!("Node {me} (this node)")), "{seen}");
        assert_eq!(seen["role"], json!("leader"), "{seen}");
        assert_eq!(seen["health"], json!(["up", "up", "up"]), "{seen}");
        assert!(
            seen["status"]
                .as_str()
                .unwrap()
                .starts_with(&format!("This node: {me};")),
            "{seen}"
        );

        // A graph created from the console: its owner lists it, no other
        // node does.
        type_into(client, "#new-graph", "movies").await;
        click(client, "#create-button").await;
        let owner = until(
            client,
            "const rows = [...document.querySelectorAll('#node-rows tr')] \
               .filter((r) => r.querySelector('.node-graphs').textContent === 'movies'); \
             return rows.length === 1 && rows[0].dataset.node",
            "the graph's owner listing it",
        )
        .await;
        let others = client
            .execute(
                "return [...document.querySelectorAll('#node-rows .node-graphs')] \
                   .map((c) => c.textContent).filter((t) => t !== 'movies')",
                Vec::new(),
            )
            .await
            .unwrap();
        assert_eq!(others, json!(["none", "none"]));
        let shot = client.screenshot().await.unwrap();
        (owner.as_str().unwrap().parse::<u64>().unwrap(), shot)
    });
    let (owner, shot) = owner;
    let out = target_dir().join("console-cluster.png");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, shot).unwrap();

    // The owner the console showed is the one the API names.
    let view = common::Client::new(&servers[&me], common::TOKEN)
        .get("/v2/demo/cluster")
        .ok();
    let owners: Vec<&Value> = view["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|n| n["graphs"] == json!(["movies"]))
        .map(|n| &n["id"])
        .collect();
    assert_eq!(owners, vec![&json!(owner)], "{view}");
    for (_, server) in servers {
        server.shutdown().expect("a clean stop");
    }
}
