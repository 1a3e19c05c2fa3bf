//! AK/SK signed requests over real HTTP. The test signs with its own
//! implementation of the canonical request (written from the wire
//! contract, not taken from the server), checked first against two
//! signatures the official Python SDK's signer produced for the same
//! requests; then it checks that the server accepts those requests and
//! refuses the altered ones with the right status and body.

mod common;

use common::sign::{authorization, sign};
use graph_lifecycle::{ManualClock, Timestamp};
use serde_json::Value;

const AK: &str = "GESTESTAK0000EXAMPLE";
const SK: &str = "GesTestSecretKey0000000000000000000EXAMPLE";
const OTHER_AK: &str = "OTHERAK0000000EXAMPLE";
const OTHER_SK: &str = "OtherSecretKey000000000000000000000EXAMPLE";
const HOST: &str = "ges.example.test";
const USER_AGENT: &str = "huaweicloud-usdk-python/3.0";
/// 2024-05-01T12:00:00Z, as X-Sdk-Date and in milliseconds.
const DATE: &str = "20240501T120000Z";
const DATE_MS: u64 = 1_714_564_800_000;

const CREATE_BODY: &str = r#"{"graph": {"name": "signed"}}"#;
/// The official SDK's signature of `POST /v2/demo/graphs` with
/// [`CREATE_BODY`], and of `GET /v2/demo/graphs/jobs` with
/// `limit=5, graph_name=signed, offset=0, status=success`, both signing
/// content-type, host, user-agent, x-project-id and x-sdk-date.
const SDK_CREATE_SIGNATURE: &str =
    "e0f49a6e42c0d461b4ec5b7d3a64b206c3451e1f0fd562354d9c3d6e07d6ca17";
const SDK_LIST_SIGNATURE: &str = "bae4503d425b433976a51446cc81c0dbbc3a5f858eff0e03c4444dca05a9d835";
const SIGNED: &str = "content-type;host;user-agent;x-project-id;x-sdk-date";

fn sdk_headers(project: &str, date: &'static str) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".to_owned()),
        ("host", HOST.to_owned()),
        ("user-agent", USER_AGENT.to_owned()),
        ("x-project-id", project.to_owned()),
        ("x-sdk-date", date.to_owned()),
    ]
}

fn signature_of(
    sk: &str,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    headers: &[(&'static str, String)],
    body: &[u8],
) -> String {
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let date = h
        .iter()
        .find(|(k, _)| *k == "x-sdk-date")
        .map_or("", |(_, v)| *v);
    sign(sk, date, method, path, query, &h, body)
}

struct Signed {
    agent: ureq::Agent,
    base: String,
}

impl Signed {
    /// Sends a request with these headers and this Authorization.
    fn send(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&'static str, String)],
        auth: &str,
        body: &[u8],
    ) -> (u16, Value) {
        let url = format!("{}{path_and_query}", self.base);
        let mut req = ureq::http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req
            .header("authorization", auth)
            .body(body.to_vec())
            .unwrap();
        let mut res = self.agent.run(req).unwrap();
        let status = res.status().as_u16();
        let body = res.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }
}

#[test]
fn this_tests_signer_reproduces_the_sdks_signatures() {
    let h = sdk_headers("demo", DATE);
    assert_eq!(
        signature_of(
            SK,
            "POST",
            "/v2/demo/graphs",
            &[],
            &h,
            CREATE_BODY.as_bytes()
        ),
        SDK_CREATE_SIGNATURE
    );
    let q = [
        ("limit", "5"),
        ("graph_name", "signed"),
        ("offset", "0"),
        ("status", "success"),
    ];
    assert_eq!(
        signature_of(SK, "GET", "/v2/demo/graphs/jobs", &q, &h, b""),
        SDK_LIST_SIGNATURE
    );
}

#[test]
fn signed_requests_are_accepted_and_altered_ones_refused() {
    let extra = format!(
        r#"
        [[auth.access_keys]]
        ak = "{AK}"
        sk = "{SK}"
        projects = ["demo"]

        [[auth.access_keys]]
        ak = "{OTHER_AK}"
        sk = "{OTHER_SK}"
        projects = ["other"]
        "#
    );
    // The server's clock: 30 s after the requests' date.
    let server = ges_server::Server::new(common::config(&extra))
        .auth_clock(ManualClock::new(Timestamp::from_millis(DATE_MS + 30_000)))
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    let c = Signed {
        agent: common::agent(),
        base: format!("http://{}", server.local_addr()),
    };
    let h = sdk_headers("demo", DATE);

    // The SDK's own signatures are accepted.
    let (status, body) = c.send(
        "POST",
        "/v2/demo/graphs",
        &h,
        &authorization(AK, SIGNED, SDK_CREATE_SIGNATURE),
        CREATE_BODY.as_bytes(),
    );
    assert_eq!(
        (status, &body),
        (200, &serde_json::json!({"id": "signed", "name": "signed"}))
    );
    // The query's order on the wire does not matter: the server sorts it.
    let (status, body) = c.send(
        "GET",
        "/v2/demo/graphs/jobs?status=success&offset=0&graph_name=signed&limit=5",
        &h,
        &authorization(AK, SIGNED, SDK_LIST_SIGNATURE),
        b"",
    );
    assert_eq!(
        (status, &body),
        (200, &serde_json::json!({"job_count": 0, "job_list": []}))
    );

    let refused = |(status, body): (u16, Value), want: u16, code: &str, says: &str| {
        assert_eq!(status, want, "{body}");
        assert_eq!(body["error_code"], code, "{body}");
        let msg = body["error_msg"].as_str().unwrap_or("");
        assert!(msg.contains(says), "{msg:?} does not say {says:?}");
    };

    // A wrong signature.
    let mut wrong = SDK_CREATE_SIGNATURE.to_owned();
    wrong.replace_range(0..1, "f");
    refused(
        c.send(
            "POST",
            "/v2/demo/graphs",
            &h,
            &authorization(AK, SIGNED, &wrong),
            CREATE_BODY.as_bytes(),
        ),
        401,
        "GES.8007",
        "signature",
    );
    // A signature of another body.
    let other_body = br#"{"graph": {"name": "forged"}}"#;
    refused(
        c.send(
            "POST",
            "/v2/demo/graphs",
            &h,
            &authorization(AK, SIGNED, SDK_CREATE_SIGNATURE),
            other_body,
        ),
        401,
        "GES.8007",
        "signature",
    );
    // A tampered query.
    refused(
        c.send(
            "GET",
            "/v2/demo/graphs/jobs?status=success&offset=0&graph_name=signed&limit=6",
            &h,
            &authorization(AK, SIGNED, SDK_LIST_SIGNATURE),
            b"",
        ),
        401,
        "GES.8007",
        "signature",
    );
    // A stale date, correctly signed: 16 minutes before the server's clock.
    let stale = sdk_headers("demo", "20240501T114430Z");
    let sig = signature_of(SK, "GET", "/v2/demo/graphs", &[], &stale, b"");
    refused(
        c.send(
            "GET",
            "/v2/demo/graphs",
            &stale,
            &authorization(AK, SIGNED, &sig),
            b"",
        ),
        401,
        "GES.8007",
        "X-Sdk-Date",
    );
    // A date in the future beyond the skew, too.
    let ahead = sdk_headers("demo", "20240501T121600Z");
    let sig = signature_of(SK, "GET", "/v2/demo/graphs", &[], &ahead, b"");
    refused(
        c.send(
            "GET",
            "/v2/demo/graphs",
            &ahead,
            &authorization(AK, SIGNED, &sig),
            b"",
        ),
        401,
        "GES.8007",
        "X-Sdk-Date",
    );
    // Within the skew (14 minutes), the same request is accepted.
    let fresh = sdk_headers("demo", "20240501T114630Z");
    let sig = signature_of(SK, "GET", "/v2/demo/graphs", &[], &fresh, b"");
    let (status, body) = c.send(
        "GET",
        "/v2/demo/graphs",
        &fresh,
        &authorization(AK, SIGNED, &sig),
        b"",
    );
    assert_eq!((status, body["graph_count"].as_u64()), (200, Some(1)));

    // Another project's credential, correctly signed: forbidden.
    let sig = signature_of(OTHER_SK, "GET", "/v2/demo/graphs", &[], &h, b"");
    refused(
        c.send(
            "GET",
            "/v2/demo/graphs",
            &h,
            &authorization(OTHER_AK, SIGNED, &sig),
            b"",
        ),
        403,
        "GES.8006",
        "demo",
    );
    // A graph of another project, looked up under one's own project: not
    // found.
    let h_other = sdk_headers("other", DATE);
    let sig = signature_of(
        OTHER_SK,
        "GET",
        "/v2/other/graphs/signed",
        &[],
        &h_other,
        b"",
    );
    refused(
        c.send(
            "GET",
            "/v2/other/graphs/signed",
            &h_other,
            &authorization(OTHER_AK, SIGNED, &sig),
            b"",
        ),
        404,
        "GES.8011",
        "not found",
    );
    // X-Project-Id must agree with the path.
    let sig = signature_of(SK, "GET", "/v2/demo/graphs", &[], &h_other, b"");
    refused(
        c.send(
            "GET",
            "/v2/demo/graphs",
            &h_other,
            &authorization(AK, SIGNED, &sig),
            b"",
        ),
        403,
        "GES.8006",
        "X-Project-Id",
    );
    // An unknown access key, a secret key that is not the access key's.
    let sig = signature_of(SK, "GET", "/v2/demo/graphs", &[], &h, b"");
    refused(
        c.send(
            "GET",
            "/v2/demo/graphs",
            &h,
            &authorization("NOSUCHAK", SIGNED, &sig),
            b"",
        ),
        401,
        "GES.8007",
        "access key",
    );
    let sig = signature_of(OTHER_SK, "GET", "/v2/demo/graphs", &[], &h, b"");
    refused(
        c.send(
            "GET",
            "/v2/demo/graphs",
            &h,
            &authorization(AK, SIGNED, &sig),
            b"",
        ),
        401,
        "GES.8007",
        "signature",
    );
    // The date must be signed; a malformed header is refused.
    let unsigned_date = [h[1].clone(), h[4].clone()];
    let sig = sign(
        SK,
        DATE,
        "GET",
        "/v2/demo/graphs",
        &[],
        &[("host", HOST)],
        b"",
    );
    refused(
        c.send(
            "GET",
            "/v2/demo/graphs",
            &unsigned_date,
            &authorization(AK, "host", &sig),
            b"",
        ),
        401,
        "GES.8007",
        "x-sdk-date",
    );
    for garbage in [
        "SDK-HMAC-SHA256 Access=",
        "SDK-HMAC-SHA256 Access=A, SignedHeaders=x-sdk-date, Signature=nothex",
        "SDK-HMAC-SHA256Access=A",
        "Basic Zm9vOmJhcg==",
    ] {
        refused(
            c.send("GET", "/v2/demo/graphs", &h, garbage, b""),
            401,
            "GES.8007",
            "",
        );
    }

    server.shutdown().unwrap();
}

/// A server that knows `AK` and runs on a clock 30 s after the requests'
/// date.
fn signing_server() -> (ges_server::ServerHandle, Signed) {
    let extra = format!(
        r#"
        [[auth.access_keys]]
        ak = "{AK}"
        sk = "{SK}"
        projects = ["demo"]
        "#
    );
    let server = ges_server::Server::new(common::config(&extra))
        .auth_clock(ManualClock::new(Timestamp::from_millis(DATE_MS + 30_000)))
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    let c = Signed {
        agent: common::agent(),
        base: format!("http://{}", server.local_addr()),
    };
    (server, c)
}

/// A signature that does not cover `host` could be replayed against any
/// host name the key is valid for: it is refused.
#[test]
fn a_signature_must_cover_the_host_header() {
    let (_server, c) = signing_server();
    let h: Vec<(&'static str, String)> = sdk_headers("demo", DATE)
        .into_iter()
        .filter(|(k, _)| *k != "host")
        .collect();
    let names = "content-type;user-agent;x-project-id;x-sdk-date";
    let sig = signature_of(SK, "GET", "/v2/demo/graphs", &[], &h, b"");
    let (status, body) = c.send(
        "GET",
        "/v2/demo/graphs",
        &h,
        &authorization(AK, names, &sig),
        b"",
    );
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error_msg"]
            .as_str()
            .is_some_and(|m| m.contains("host")),
        "{body}"
    );
}

/// One credential per request: a token beside a signature is refused,
/// whether the token is valid or not, rather than one of them ignored.
#[test]
fn a_token_beside_a_signature_is_refused_valid_or_not() {
    let (_server, c) = signing_server();
    let h = sdk_headers("demo", DATE);
    let sig = signature_of(SK, "GET", "/v2/demo/graphs", &[], &h, b"");
    let auth = authorization(AK, SIGNED, &sig);
    let (status, _) = c.send("GET", "/v2/demo/graphs", &h, &auth, b"");
    assert_eq!(status, 200, "the signature alone is valid");
    for token in [common::TOKEN, "not-a-token"] {
        let mut with_token = h.clone();
        with_token.push(("x-auth-token", token.to_owned()));
        let (status, body) = c.send("GET", "/v2/demo/graphs", &with_token, &auth, b"");
        assert_eq!(status, 401, "{token}: {body}");
        assert_eq!(body["error_code"], "GES.8007");
    }
}

/// A client cannot tell from the 401 whether an access key exists: an
/// unknown key and a known key with a wrong signature get the same
/// message.
#[test]
fn an_unknown_access_key_and_a_wrong_signature_get_the_same_refusal() {
    let (_server, c) = signing_server();
    let h = sdk_headers("demo", DATE);
    let sig = signature_of(SK, "GET", "/v2/demo/graphs", &[], &h, b"");
    let mut wrong = sig.clone();
    wrong.replace_range(0..1, if wrong.starts_with('0') { "1" } else { "0" });
    let unknown = c.send(
        "GET",
        "/v2/demo/graphs",
        &h,
        &authorization("NOBODY", SIGNED, &sig),
        b"",
    );
    let bad = c.send(
        "GET",
        "/v2/demo/graphs",
        &h,
        &authorization(AK, SIGNED, &wrong),
        b"",
    );
    assert_eq!(unknown.0, 401);
    assert_eq!(unknown, bad);
}
