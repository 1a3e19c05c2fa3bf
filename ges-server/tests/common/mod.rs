//! What the integration tests share: a server on 127.0.0.1 port 0 with a
//! fast simulated host (or the real engine, [`config_real`]), and a small
//! JSON client over `ureq`.
#![allow(dead_code)]

pub mod cluster;
pub mod sign;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ges_server::{Config, Server, ServerHandle};
use serde_json::Value;

/// The demo project's token.
pub const TOKEN: &str = "demo-token";
/// A token of another project.
pub const OTHER_TOKEN: &str = "other-token";

/// A configuration for tests: loopback, port 0, two tokens, fast jobs
/// (import slow enough to be caught in the middle).
pub fn config(extra: &str) -> Config {
    let text = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        shutdown_grace_ms = 5000

        [storage]
        in_memory = true

        [[auth.tokens]]
        token = "{TOKEN}"
        projects = ["demo"]

        [[auth.tokens]]
        token = "{OTHER_TOKEN}"
        projects = ["other"]

        {extra}
        "#
    );
    let mut cfg = Config::from_toml_str(&text).expect("test configuration");
    // These tests drive the lifecycle with the simulated host; the real
    // engine's tests (`engine.rs`) configure their own.
    let sim = &mut cfg.simulation;
    sim.enabled = true;
    sim.poll_ms = 2;
    sim.start = ges_server::config::JobTiming::new(60, 2);
    sim.stop = ges_server::config::JobTiming::new(40, 2);
    sim.restart = ges_server::config::JobTiming::new(90, 3);
    sim.import = ges_server::config::JobTiming::new(3_000, 30);
    sim.export = ges_server::config::JobTiming::new(60, 2);
    sim.clear = ges_server::config::JobTiming::new(60, 2);
    cfg
}

/// A server with [`config`], on its own thread.
pub fn start(extra: &str) -> ServerHandle {
    Server::new(config(extra))
        .bind()
        .expect("bind 127.0.0.1:0")
        .spawn()
        .expect("spawn the server")
}

/// A JSON client for one server and one token.
#[derive(Clone)]
pub struct Client {
    pub agent: ureq::Agent,
    pub base: String,
    pub token: Option<String>,
    /// Headers sent with every request.
    pub extra: Vec<(String, String)>,
}

/// A response: status and JSON body (`Value::Null` if not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// The body's `error_code`, if any.
    pub fn code(&self) -> &str {
        self.body["error_code"].as_str().unwrap_or("")
    }

    /// Asserts an error status and code, and that the message is there.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "unexpected reply {self:?}"
        );
        assert!(
            self.body["error_msg"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "no error_msg in {self:?}"
        );
    }

    /// Asserts 200 and returns the body.
    #[track_caller]
    pub fn ok(self) -> Value {
        assert_eq!(self.status, 200, "unexpected reply {self:?}");
        self.body
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

/// A certificate for `127.0.0.1` and `localhost`, made for one test, and
/// its key, in PEM files in a directory of their own.
pub struct TestCert {
    pub dir: tempfile::TempDir,
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
}

impl TestCert {
    pub fn new() -> TestCert {
        let made = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .expect("a self-signed certificate");
        let dir = tempfile::tempdir().unwrap();
        let cert_pem = made.cert.pem();
        std::fs::write(dir.path().join("cert.pem"), &cert_pem).unwrap();
        std::fs::write(dir.path().join("key.pem"), made.signing_key.serialize_pem()).unwrap();
        TestCert {
            cert_der: made.cert.der().to_vec(),
            cert_pem,
            dir,
        }
    }

    /// The `[server.tls]` section serving this certificate.
    pub fn section(&self) -> String {
        let path = |name: &str| {
            toml::Value::String(self.dir.path().join(name).display().to_string()).to_string()
        };
        format!(
            "[server.tls]\ncert = {}\nkey = {}\n",
            path("cert.pem"),
            path("key.pem")
        )
    }

    /// An agent that trusts this certificate and nothing else.
    pub fn agent(&self) -> ureq::Agent {
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::new_with_certs(&[
                ureq::tls::Certificate::from_der(&self.cert_der).to_owned(),
            ]))
            .build();
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            .tls_config(tls)
            .build()
            .into()
    }
}

/// How the tests reach a server: plain HTTP, or HTTPS with a certificate
/// made for the test.
pub enum Transport {
    Http,
    Tls(TestCert),
}

impl Transport {
    pub fn tls() -> Transport {
        Transport::Tls(TestCert::new())
    }

    /// A server with [`config`] and `extra`, serving this transport.
    pub fn start(&self, extra: &str) -> ServerHandle {
        match self {
            Transport::Http => start(extra),
            Transport::Tls(cert) => start(&format!("{extra}\n{}", cert.section())),
        }
    }

    /// A client of `server` over this transport.
    pub fn client(&self, server: &ServerHandle, token: &str) -> Client {
        match self {
            Transport::Http => Client::new(server, token),
            Transport::Tls(cert) => Client {
                agent: cert.agent(),
                base: format!("https://{}", server.local_addr()),
                token: Some(token.to_owned()),
                extra: Vec::new(),
            },
        }
    }
}

impl Client {
    pub fn new(server: &ServerHandle, token: &str) -> Client {
        Client {
            agent: agent(),
            base: format!("http://{}", server.local_addr()),
            token: Some(token.to_owned()),
            extra: Vec::new(),
        }
    }

    /// The same client (token, headers), sending to `other`'s server.
    pub fn with_base(&self, other: &Client) -> Client {
        let mut c = self.clone();
        c.base.clone_from(&other.base);
        c.agent = other.agent.clone();
        c
    }

    /// The same client, sending `name: value` with every request.
    pub fn with_header(&self, name: &str, value: &str) -> Client {
        let mut c = self.clone();
        c.extra.push((name.to_owned(), value.to_owned()));
        c
    }

    fn headers<B>(&self, mut req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        if let Some(t) = &self.token {
            req = req.header("X-Auth-Token", t);
        }
        for (k, v) in &self.extra {
            req = req.header(k, v);
        }
        req
    }

    fn finish(res: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
        let mut res = res.expect("the request reached the server");
        let status = res.status().as_u16();
        let text = res.body_mut().read_to_string().unwrap_or_default();
        Reply {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        let req = self.headers(self.agent.get(format!("{}{path}", self.base)));
        Self::finish(req.call())
    }

    pub fn delete(&self, path: &str) -> Reply {
        let req = self.headers(self.agent.delete(format!("{}{path}", self.base)));
        Self::finish(req.call())
    }

    pub fn post_raw(&self, path: &str, body: &[u8]) -> Reply {
        let req = self.headers(
            self.agent
                .post(format!("{}{path}", self.base))
                .header("Content-Type", "application/json"),
        );
        Self::finish(req.send(body))
    }

    pub fn post(&self, path: &str, body: Value) -> Reply {
        self.post_raw(path, body.to_string().as_bytes())
    }

    /// POST with no body at all.
    pub fn post_empty(&self, path: &str) -> Reply {
        let req = self.headers(self.agent.post(format!("{}{path}", self.base)));
        Self::finish(req.send_empty())
    }

    /// Creates and starts a graph and waits until it runs.
    pub fn running_graph(&self, project: &str, name: &str) {
        self.post(
            &format!("/v2/{project}/graphs"),
            serde_json::json!({"graph": {"name": name}}),
        )
        .ok();
        let job = self
            .post_empty(&format!("/v2/{project}/graphs/{name}/start"))
            .ok();
        let job = job["job_id"].as_str().expect("job_id").to_owned();
        self.wait_job(project, name, &job, "success");
    }

    /// Polls a job until its status is `status`.
    #[track_caller]
    pub fn wait_job(&self, project: &str, graph: &str, job: &str, status: &str) -> Value {
        let path = format!("/v2/{project}/graphs/{graph}/jobs/{job}/status");
        wait_for(|| {
            let j = self.get(&path).ok();
            (j["status"] == status).then_some(j)
        })
    }

    /// Polls a graph until its status code is `code`.
    #[track_caller]
    pub fn wait_graph(&self, project: &str, graph: &str, code: &str) -> Value {
        let path = format!("/v2/{project}/graphs/{graph}");
        wait_for(|| {
            let g = self.get(&path).ok();
            (g["graph"]["status"] == code).then_some(g["graph"].clone())
        })
    }
}

/// Polls `f` every 5 ms for at most 10 s.
#[track_caller]
pub fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends raw bytes on a new connection and reads one response (or until
/// the server closes, or 5 s pass).
pub fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = conn.write_all(bytes);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        if out.windows(4).any(|w| w == b"\r\n\r\n") && response_complete(&out) {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn response_complete(out: &[u8]) -> bool {
    let text = String::from_utf8_lossy(out);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let len = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("content-length:")
            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
    });
    len.is_some_and(|n| body.len() >= n)
}

/// A configuration for the real engine: loopback, port 0, the two tokens,
/// graph data and the journal in `data` (unsynced: the tests need no
/// power-cut safety), imports from `import_root`, exports to
/// `export_root`.
pub fn config_real(
    data: &std::path::Path,
    import_root: &std::path::Path,
    export_root: &std::path::Path,
) -> Config {
    let path = |p: &std::path::Path| toml::Value::String(p.display().to_string()).to_string();
    let text = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        shutdown_grace_ms = 5000

        [storage]
        dir = {}
        durability = "none"

        [store]
        import_root = {}
        export_root = {}

        [[auth.tokens]]
        token = "{TOKEN}"
        projects = ["demo"]

        [[auth.tokens]]
        token = "{OTHER_TOKEN}"
        projects = ["other"]
        "#,
        path(data),
        path(import_root),
        path(export_root)
    );
    Config::from_toml_str(&text).expect("test configuration")
}

/// Polls `f` every 10 ms for at most `secs` seconds.
#[track_caller]
pub fn wait_long<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting");
        std::thread::sleep(Duration::from_millis(10));
    }
}
