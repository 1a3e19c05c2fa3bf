//! What the server logs: one access line per request, a warning per
//! authentication failure with the client's address, and never a
//! credential or a signature.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{Client, TOKEN, raw, start};
use serde_json::{Value, json};

const P: &str = "/v2/demo/graphs";
const SECRET_TOKEN_GUESS: &str = "guessed-token-0123456789";
const SIGNATURE: &str = "5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e";

/// Every line the server logs, as JSON, kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON log line"))
            .collect()
    }
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[test]
fn requests_and_auth_failures_are_logged_without_secrets() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .init();

    let server = start(
        "[[auth.access_keys]]\nak = \"KNOWNKEY\"\nsk = \"the-secret-key\"\nprojects = [\"demo\"]\n",
    );
    let c = Client::new(&server, TOKEN);
    c.post(P, json!({"graph": {"name": "logged"}})).ok();
    c.get(&format!("{P}/logged?x=1")).ok();
    Client::new(&server, SECRET_TOKEN_GUESS)
        .get(P)
        .assert_error(401, "GES.8007");
    let signed = raw(
        server.local_addr(),
        format!(
            "GET {P} HTTP/1.1\r\nHost: ges\r\nX-Sdk-Date: 20240501T120000Z\r\n\
             Authorization: SDK-HMAC-SHA256 Access=KNOWNKEY, SignedHeaders=host;x-sdk-date, \
             Signature={SIGNATURE}\r\n\r\n"
        )
        .as_bytes(),
    );
    assert!(signed.starts_with("HTTP/1.1 401 "), "{signed}");
    server.shutdown().unwrap();

    let lines = captured.lines();
    let access: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "ges_server::access")
        .collect();
    assert_eq!(access.len(), 4, "{}", captured.text());
    let fields = |i: usize| &access[i]["fields"];
    assert_eq!(fields(0)["method"], "POST");
    assert_eq!(fields(0)["path"], P);
    assert_eq!(fields(0)["project"], "demo");
    assert_eq!(fields(0)["status"], 200);
    assert_eq!(fields(1)["path"], format!("{P}/logged"));
    assert_eq!(fields(2)["status"], 401);
    assert_eq!(fields(3)["status"], 401);
    for a in &access {
        let f = &a["fields"];
        assert!(f["latency_us"].is_u64(), "{f}");
        assert_eq!(f["request_id"].as_str().map(str::len), Some(36), "{f}");
        assert!(
            f["client"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{f}"
        );
    }

    let auth: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "ges_server::auth")
        .collect();
    assert_eq!(auth.len(), 2, "{}", captured.text());
    for (a, reason) in auth.iter().zip(["bad_token", "bad_signature"]) {
        assert_eq!(a["level"], "WARN");
        assert_eq!(a["fields"]["reason"], reason);
        assert!(
            a["fields"]["client"]
                .as_str()
                .unwrap()
                .starts_with("127.0.0.1:")
        );
    }

    // No credential, key or signature, of anyone, anywhere in the log.
    let text = captured.text();
    for secret in [
        TOKEN,
        SECRET_TOKEN_GUESS,
        SIGNATURE,
        "the-secret-key",
        "SDK-HMAC",
    ] {
        assert!(!text.contains(secret), "{secret} logged:\n{text}");
    }
}
