//! The node-to-node listener as an attacker reads it: each limit and each
//! refusal, with raw sockets; and mutual TLS with certificates made here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use graph_lifecycle_journal::MemStorage;
use graph_lifecycle_raft::http::{self, HttpTransport, Listener, PeerTls, RpcLimits};
use graph_lifecycle_raft::{
    ClusterConfig, Disk, Env, Flush, MemMeta, NetError, Node, NodeAddr, Reply, Request, Transport,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "listener-test-cluster-key";

fn limits() -> RpcLimits {
    RpcLimits {
        max_connections: 4,
        header_timeout: Duration::from_millis(400),
        max_body: 64 << 10,
        body_timeout: Duration::from_millis(800),
    }
}

/// A one-node cluster behind a listener; returns the node, its config and
/// the listener's address.
async fn one_node(tls: Option<&PeerTls>) -> (Node, ClusterConfig, std::net::SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let peers: BTreeMap<u64, NodeAddr> = [(1, NodeAddr::new(format!("127.0.0.1:{port}")))].into();
    let cfg = ClusterConfig::new(1, peers, KEY);
    let connector = tls.map(|t| t.connector().unwrap());
    let transport = Arc::new(HttpTransport::new(&cfg, connector));
    let disk = Disk {
        log: Box::new(MemStorage::new()),
        meta: Arc::new(MemMeta::new()),
    };
    let env = Env {
        flush: Flush::Inline,
        ..Env::default()
    };
    let (node, _jobs, _) = Node::start(cfg.clone(), disk, Arc::new(transport), env)
        .await
        .unwrap();
    let acceptor = tls.map(|t| t.acceptor().unwrap());
    let addr = http::listen(
        &cfg.addr().rpc,
        Listener::new(node.clone(), acceptor, limits()),
        std::future::pending(),
    )
    .await
    .unwrap();
    node.bootstrap().await.unwrap();
    // Up: after its "node up", a node with no graph proposes nothing.
    for _ in 0..200 {
        if node.local().dispatching() && node.serving() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(node.local().dispatching(), "the node came up");
    (node, cfg, addr)
}

/// Sends raw bytes and reads what comes back until the peer closes or
/// `wait` passes.
async fn raw(addr: std::net::SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn head(key: &str, fp: &str, len: usize) -> String {
    format!(
        "POST /raft HTTP/1.1\r\nhost: x\r\nx-cluster-key: {key}\r\nx-cluster-fingerprint: {fp}\r\ncontent-length: {len}\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_without_the_key_or_with_another_configuration_is_refused_before_its_body_is_read()
{
    let (_node, cfg, addr) = one_node(None).await;
    let fp = cfg.fingerprint();
    // A huge declared body that never comes: the refusal comes at once.
    let wait = Duration::from_secs(2);
    let r = raw(
        addr,
        head("wrong-key-of-the-same-size", &fp, 1 << 30).as_bytes(),
        wait,
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    assert!(r.contains("\"error_code\":\"CLUSTER.0401\""), "{r}");
    let no_key = format!(
        "POST /raft HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        1 << 30
    );
    assert!(
        raw(addr, no_key.as_bytes(), wait)
            .await
            .starts_with("HTTP/1.1 401")
    );
    let r = raw(
        addr,
        head(KEY, "0000000000000000", 1 << 30).as_bytes(),
        wait,
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 409"), "{r}");
    assert!(r.contains("CLUSTER.0409"), "{r}");
    // Through the transport, as another node would call.
    let other = Arc::new(HttpTransport::with_credentials(
        KEY,
        "ffffffffffffffff",
        None,
    ));
    let e = other
        .call(1, &cfg.addr(), Request::Status, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(
        matches!(e, NetError::Refused { ref code, .. } if code == "CLUSTER.0409"),
        "{e}"
    );
    let other = Arc::new(HttpTransport::with_credentials(
        "another-cluster-key",
        &fp,
        None,
    ));
    let e = other
        .call(1, &cfg.addr(), Request::Status, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(
        matches!(e, NetError::Refused { ref code, .. } if code == "CLUSTER.0401"),
        "{e}"
    );
    // The right credentials get an answer.
    let ok = Arc::new(HttpTransport::new(&cfg, None));
    let r = ok
        .call(1, &cfg.addr(), Request::Status, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(matches!(r, Reply::Status(s) if s.node == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticated_body_past_the_limit_is_refused_and_a_hostile_one_changes_nothing() {
    let (node, cfg, addr) = one_node(None).await;
    let fp = cfg.fingerprint();
    let wait = Duration::from_secs(2);
    let r = raw(addr, head(KEY, &fp, (64 << 10) + 1).as_bytes(), wait).await;
    assert!(
        r.starts_with("HTTP/1.1 413") && r.contains("CLUSTER.0413"),
        "{r}"
    );
    // A chunked body that runs past the limit.
    let mut chunked = format!(
        "POST /raft HTTP/1.1\r\nhost: x\r\nx-cluster-key: {KEY}\r\nx-cluster-fingerprint: {fp}\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..20 {
        chunked.extend_from_slice(format!("{:x}\r\n", 8 << 10).as_bytes());
        chunked.extend_from_slice(&vec![b'a'; 8 << 10]);
        chunked.extend_from_slice(b"\r\n");
    }
    let r = raw(addr, &chunked, wait).await;
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    // Bodies that are not requests: garbage, a truncated request, and a
    // request's bytes imitating the log's own framing.
    let applied = node.machine().last_applied();
    let good = postcard::to_allocvec(&Request::Status).unwrap();
    let mut forged = b"GLJSEG\0\x02".to_vec();
    forged.extend_from_slice(&[0xff, 0xff, 0xff, 0x80, 0, 0, 0, 0]);
    for body in [vec![0xffu8; 100], good[..0].to_vec(), forged] {
        let mut req = head(KEY, &fp, body.len()).into_bytes();
        req.extend_from_slice(&body);
        let r = raw(addr, &req, wait).await;
        assert!(
            r.starts_with("HTTP/1.1 400") && r.contains("CLUSTER.0400"),
            "{r}"
        );
    }
    assert_eq!(node.machine().last_applied(), applied);
    // Another path or method.
    let r = raw(addr, b"GET /raft HTTP/1.1\r\nhost: x\r\n\r\n", wait).await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_head_is_closed_after_the_header_timeout_and_connections_are_capped() {
    let (_node, cfg, addr) = one_node(None).await;
    // A head that never ends: closed after the header timeout, not held.
    let started = std::time::Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /raft HTTP/1.1\r\nx-cluster-key: ")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the stalled connection was held open");
    assert!(started.elapsed() < Duration::from_secs(10));
    // A head past 16 KiB is refused.
    let big = format!(
        "POST /raft HTTP/1.1\r\nhost: x\r\nx-junk: {}\r\n\r\n",
        "a".repeat(64 << 10)
    );
    let r = raw(addr, big.as_bytes(), Duration::from_secs(2)).await;
    assert!(r.is_empty() || r.starts_with("HTTP/1.1 431"), "{r}");
    // Four connections held idle: the fifth is answered 503 and closed.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = raw(
        addr,
        head(KEY, &cfg.fingerprint(), 0).as_bytes(),
        Duration::from_secs(2),
    )
    .await;
    assert!(
        r.starts_with("HTTP/1.1 503") && r.contains("CLUSTER.0503"),
        "{r}"
    );
    drop(held);
}

fn certs(dir: &std::path::Path) -> (PeerTls, PeerTls) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let write = |name: &str, pem: String| {
        let p = dir.join(name);
        std::fs::write(&p, pem).unwrap();
        p
    };
    let make_ca = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let path = write(&format!("{name}-ca.pem"), cert.pem());
        (params, key, path)
    };
    let leaf = |name: &str, ca: &(CertificateParams, KeyPair, std::path::PathBuf)| {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let issuer = rcgen::Issuer::from_params(&ca.0, &ca.1);
        let cert = params.signed_by(&key, &issuer).unwrap();
        PeerTls {
            cert: write(&format!("{name}.pem"), cert.pem()),
            key: write(&format!("{name}-key.pem"), key.serialize_pem()),
            ca: ca.2.clone(),
        }
    };
    let ours = make_ca("cluster");
    let theirs = make_ca("other");
    (leaf("node", &ours), leaf("stranger", &theirs))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_mutual_tls_a_peer_needs_a_certificate_of_the_clusters_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (node_tls, stranger) = certs(dir.path());
    let (_node, cfg, addr) = one_node(Some(&node_tls)).await;
    // A peer with a certificate of the cluster's CA is answered.
    let peer = Arc::new(HttpTransport::new(
        &cfg,
        Some(node_tls.connector().unwrap()),
    ));
    let r = peer
        .call(1, &cfg.addr(), Request::Status, Duration::from_secs(3))
        .await
        .unwrap();
    assert!(matches!(r, Reply::Status(_)));
    // One whose certificate another CA signed is refused in the handshake
    // (and it does not trust the node's either).
    let mixed = PeerTls {
        ca: node_tls.ca.clone(),
        ..stranger
    };
    let other = Arc::new(HttpTransport::new(&cfg, Some(mixed.connector().unwrap())));
    let e = other
        .call(1, &cfg.addr(), Request::Status, Duration::from_secs(3))
        .await
        .unwrap_err();
    assert!(matches!(e, NetError::Unreachable { .. }), "{e}");
    // Plain HTTP on the TLS listener gets nothing.
    let r = raw(
        addr,
        head(KEY, &cfg.fingerprint(), 0).as_bytes(),
        Duration::from_secs(2),
    )
    .await;
    assert!(!r.starts_with("HTTP/1.1 200"), "{r}");
}
