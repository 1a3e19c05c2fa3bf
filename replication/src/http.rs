//! Node-to-node RPC over HTTP/1.1 (hyper), on a listener of its own,
//! between machines over mutual TLS (rustls, certificates from PEM files,
//! as etcd's peer TLS).
//!
//! # The wire
//!
//! Every call is `POST /raft` with the headers `x-cluster-key` (the
//! cluster key) and `x-cluster-fingerprint` (the configuration
//! fingerprint, [`ClusterConfig::fingerprint`]), and a body of at most
//! [`RpcLimits::max_body`] bytes: a `postcard`-encoded [`Request`]. The
//! answer is `200` with a `postcard`-encoded [`Reply`].
//!
//! # Refusals
//!
//! A refused call is answered with a status and a JSON body
//! `{"error_code": "CLUSTER.NNNN", "error_msg": "..."}`:
//!
//! | status | code | when |
//! |---|---|---|
//! | 400 | `CLUSTER.0400` | another method or path, or a body that is not a request |
//! | 401 | `CLUSTER.0401` | no cluster key, or another one |
//! | 409 | `CLUSTER.0409` | another configuration fingerprint |
//! | 413 | `CLUSTER.0413` | a body longer than the limit |
//! | 503 | `CLUSTER.0503` | the listener serves as many connections as it may |
//!
//! # What a connection may cost before it is authenticated
//!
//! - at most [`RpcLimits::max_connections`] connections at once (one past
//!   it gets `503` and is closed);
//! - a TLS handshake, and each request head, must arrive within
//!   [`RpcLimits::header_timeout`], and a head holds at most 16 KiB;
//! - the key and the fingerprint are checked on the head, before a byte of
//!   the body is read (keys compared in constant time);
//! - a body is read only after that, up to [`RpcLimits::max_body`], within
//!   [`RpcLimits::body_timeout`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use subtle::ConstantTimeEq;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::config::ClusterConfig;
use crate::node::Node;
use crate::rpc::{CallFuture, NetError, Reply, Request, Transport};
use crate::types::{NodeAddr, NodeId};

/// The header carrying the cluster key.
pub const KEY_HEADER: &str = "x-cluster-key";
/// The header carrying the configuration fingerprint.
pub const FINGERPRINT_HEADER: &str = "x-cluster-fingerprint";
/// The one path.
pub const PATH: &str = "/raft";

/// What a connection to the node-to-node listener may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcLimits {
    /// Most connections served at once (default 256).
    pub max_connections: usize,
    /// How long a TLS handshake or a request head may take (default 5 s).
    pub header_timeout: Duration,
    /// Most bytes of a request body, once authenticated (default 256 MiB:
    /// a whole snapshot travels in one call).
    pub max_body: usize,
    /// How long reading a body may take (default 60 s).
    pub body_timeout: Duration,
}

impl Default for RpcLimits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            header_timeout: Duration::from_secs(5),
            max_body: 256 << 20,
            body_timeout: Duration::from_secs(60),
        }
    }
}

/// Why the listener or the transport cannot be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// A certificate, key or CA file cannot be used.
    #[error("cluster TLS: {0}")]
    Tls(String),
    /// The listener cannot bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Mutual TLS between nodes: each node's certificate and key, and the CA
/// that signs every node's certificate (PEM files, as etcd's
/// `--peer-cert-file`, `--peer-key-file`, `--peer-trusted-ca-file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTls {
    /// This node's certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The CA every peer's certificate must chain to.
    pub ca: PathBuf,
}

fn certs(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, HttpError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| HttpError::Tls(format!("cannot read {}: {e}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| {
            HttpError::Tls(format!(
                "{} holds a damaged certificate: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(HttpError::Tls(format!(
            "{} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl PeerTls {
    fn roots(&self) -> Result<Arc<rustls::RootCertStore>, HttpError> {
        let mut roots = rustls::RootCertStore::empty();
        for c in certs(&self.ca)? {
            roots
                .add(c)
                .map_err(|e| HttpError::Tls(format!("{}: {e}", self.ca.display())))?;
        }
        Ok(Arc::new(roots))
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>, HttpError> {
        PrivateKeyDer::from_pem_file(&self.key).map_err(|e| {
            HttpError::Tls(format!(
                "cannot read a key from {}: {e}",
                self.key.display()
            ))
        })
    }

    /// The listener's side: a certificate of the cluster's CA is required
    /// of every client.
    ///
    /// # Errors
    ///
    /// [`HttpError::Tls`] naming the file that cannot be used.
    pub fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, HttpError> {
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(self.roots()?, provider())
                .build()
                .map_err(|e| HttpError::Tls(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| HttpError::Tls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs(&self.cert)?, self.key()?)
            .map_err(|e| HttpError::Tls(format!("the key does not fit the certificate: {e}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }

    /// The caller's side: the peer's certificate must chain to the CA,
    /// and this node shows its own.
    ///
    /// # Errors
    ///
    /// [`HttpError::Tls`] naming the file that cannot be used.
    pub fn connector(&self) -> Result<tokio_rustls::TlsConnector, HttpError> {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| HttpError::Tls(e.to_string()))?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(certs(&self.cert)?, self.key()?)
            .map_err(|e| HttpError::Tls(format!("the key does not fit the certificate: {e}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }
}

// ---- the listener --------------------------------------------------------------

fn refusal(status: StatusCode, code: &str, msg: &str) -> hyper::Response<Full<Bytes>> {
    #[derive(serde::Serialize)]
    struct Body<'a> {
        error_code: &'a str,
        error_msg: &'a str,
    }
    let body = serde_json::to_vec(&Body {
        error_code: code,
        error_msg: msg,
    })
    .unwrap_or_default();
    let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// The node-to-node listener: checks each call's key and fingerprint,
/// then hands it to the node.
#[derive(Clone)]
pub struct Listener {
    node: Node,
    key: Arc<[u8]>,
    fingerprint: Arc<str>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: RpcLimits,
}

impl Listener {
    /// A listener for `node`, with the node's cluster key and fingerprint.
    pub fn new(node: Node, tls: Option<tokio_rustls::TlsAcceptor>, limits: RpcLimits) -> Self {
        let cfg: &ClusterConfig = node.config();
        Self {
            key: Arc::from(cfg.key.as_bytes()),
            fingerprint: Arc::from(cfg.fingerprint()),
            node,
            tls,
            limits,
        }
    }

    /// Serves connections accepted on `listener` until `shutdown`
    /// completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let permits = Arc::new(Semaphore::new(self.limits.max_connections.max(1)));
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let permit = permits.clone().try_acquire_owned().ok();
                        let this = self.clone();
                        tokio::spawn(async move {
                            this.connection(stream, peer, permit.is_none()).await;
                            drop(permit);
                        });
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                },
            }
        }
    }

    async fn connection(self, stream: TcpStream, _peer: SocketAddr, full: bool) {
        let _ = stream.set_nodelay(true);
        match self.tls.clone() {
            None => self.http(stream, full).await,
            Some(acceptor) => {
                let handshake =
                    tokio::time::timeout(self.limits.header_timeout, acceptor.accept(stream)).await;
                if let Ok(Ok(tls)) = handshake {
                    self.http(tls, full).await;
                }
            }
        }
    }

    async fn http<S>(self, stream: S, full: bool)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let this = self.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let this = this.clone();
            async move {
                let r = if full {
                    let mut r = refusal(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "CLUSTER.0503",
                        "the listener serves as many connections as it may; retry",
                    );
                    r.headers_mut().insert(
                        hyper::header::CONNECTION,
                        hyper::header::HeaderValue::from_static("close"),
                    );
                    r
                } else {
                    this.answer(req).await
                };
                Ok::<_, std::convert::Infallible>(r)
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .max_buf_size(16 << 10)
            .keep_alive(!full);
        let _ = builder
            .serve_connection(TokioIo::new(stream), service)
            .await;
    }

    async fn answer(&self, req: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
        if req.method() != Method::POST || req.uri().path() != PATH {
            return refusal(
                StatusCode::BAD_REQUEST,
                "CLUSTER.0400",
                "the node-to-node listener takes POST /raft only",
            );
        }
        let h = req.headers();
        let key = h.get(KEY_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
        if !bool::from(key.ct_eq(&self.key)) {
            return refusal(
                StatusCode::UNAUTHORIZED,
                "CLUSTER.0401",
                "no cluster key, or another cluster's",
            );
        }
        let fp = h
            .get(FINGERPRINT_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if fp != self.fingerprint.as_bytes() {
            return refusal(
                StatusCode::CONFLICT,
                "CLUSTER.0409",
                &format!(
                    "another configuration: this node's fingerprint is {} (the engine's caps, retention, timeouts and windows, and the cluster's timeouts must be the same on every node)",
                    self.fingerprint
                ),
            );
        }
        let declared = h
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let too_long = || {
            refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                "CLUSTER.0413",
                "the body is longer than the listener takes",
            )
        };
        if declared.is_some_and(|n| n > self.limits.max_body as u64) {
            return too_long();
        }
        let body = Limited::new(req.into_body(), self.limits.max_body);
        let bytes = match tokio::time::timeout(self.limits.body_timeout, body.collect()).await {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return too_long(),
            _ => {
                return refusal(
                    StatusCode::BAD_REQUEST,
                    "CLUSTER.0400",
                    "the body did not arrive whole in time",
                );
            }
        };
        let request: Request = match postcard::from_bytes(&bytes) {
            Ok(r) => r,
            Err(e) => {
                return refusal(
                    StatusCode::BAD_REQUEST,
                    "CLUSTER.0400",
                    &format!("the body is not a request: {e}"),
                );
            }
        };
        let reply = self.node.handle(request).await;
        match postcard::to_allocvec(&reply) {
            Ok(b) => hyper::Response::new(Full::new(Bytes::from(b))),
            Err(e) => refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "CLUSTER.0500",
                &format!("the reply does not encode: {e}"),
            ),
        }
    }
}

/// Binds the node-to-node listener on `addr` and serves it on a task of
/// its own until `shutdown`; returns the bound address.
///
/// # Errors
///
/// [`HttpError::Bind`] if the address cannot be bound.
pub async fn listen(
    addr: &str,
    listener: Listener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<SocketAddr, HttpError> {
    let tcp = TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind {
            addr: addr.to_owned(),
            source,
        })?;
    let local = tcp.local_addr().map_err(|source| HttpError::Bind {
        addr: addr.to_owned(),
        source,
    })?;
    tokio::spawn(listener.serve(tcp, shutdown));
    Ok(local)
}

// ---- the transport ---------------------------------------------------------------

/// The caller's side: calls peers over HTTP (or mutual TLS), keeping
/// idle connections for reuse.
pub struct HttpTransport {
    key: String,
    fingerprint: String,
    tls: Option<tokio_rustls::TlsConnector>,
    max_reply: usize,
    idle: Mutex<HashMap<NodeId, Vec<SendRequest<Full<Bytes>>>>>,
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport")
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl HttpTransport {
    /// A transport presenting `config`'s key and fingerprint, over TLS if
    /// `tls` is given.
    pub fn new(config: &ClusterConfig, tls: Option<tokio_rustls::TlsConnector>) -> Self {
        Self {
            key: config.key.clone(),
            fingerprint: config.fingerprint(),
            tls,
            max_reply: RpcLimits::default().max_body,
            idle: Mutex::new(HashMap::new()),
        }
    }

    /// A transport that presents another key and fingerprint: for tests
    /// of the listener's refusals.
    pub fn with_credentials(
        key: &str,
        fingerprint: &str,
        tls: Option<tokio_rustls::TlsConnector>,
    ) -> Self {
        Self {
            key: key.to_owned(),
            fingerprint: fingerprint.to_owned(),
            tls,
            max_reply: RpcLimits::default().max_body,
            idle: Mutex::new(HashMap::new()),
        }
    }

    async fn connect(
        &self,
        to: NodeId,
        addr: &NodeAddr,
    ) -> Result<SendRequest<Full<Bytes>>, NetError> {
        let unreachable = |why: String| NetError::Unreachable { node: to, why };
        let tcp = TcpStream::connect(&addr.rpc)
            .await
            .map_err(|e| unreachable(format!("cannot connect to {}: {e}", addr.rpc)))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => {
                let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
                tokio::spawn(conn);
                Ok(send)
            }
            Some(connector) => {
                let host = addr
                    .rpc
                    .rsplit_once(':')
                    .map_or(addr.rpc.as_str(), |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = ServerName::try_from(host.to_owned())
                    .map_err(|e| unreachable(format!("{host} is not a server name: {e}")))?;
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| unreachable(format!("TLS with {}: {e}", addr.rpc)))?;
                let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
                tokio::spawn(conn);
                Ok(send)
            }
        }
    }

    async fn once(
        self: Arc<Self>,
        to: NodeId,
        addr: NodeAddr,
        body: Bytes,
        reused: &mut bool,
    ) -> Result<Reply, NetError> {
        let pooled = {
            let mut idle = self.idle.lock();
            let list = idle.entry(to).or_default();
            let mut found = None;
            while let Some(s) = list.pop() {
                if !s.is_closed() {
                    found = Some(s);
                    break;
                }
            }
            found
        };
        *reused = pooled.is_some();
        let mut send = match pooled {
            Some(s) => s,
            None => self.connect(to, &addr).await?,
        };
        let broken = |e: String| NetError::Unreachable { node: to, why: e };
        send.ready().await.map_err(|e| broken(e.to_string()))?;
        let req = hyper::Request::post(PATH)
            .header(hyper::header::HOST, addr.rpc.as_str())
            .header(KEY_HEADER, self.key.as_str())
            .header(FINGERPRINT_HEADER, self.fingerprint.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/octet-stream")
            .body(Full::new(body))
            .map_err(|e| broken(e.to_string()))?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| broken(e.to_string()))?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), self.max_reply)
            .collect()
            .await
            .map_err(|e| NetError::BadReply {
                node: to,
                why: e.to_string(),
            })?
            .to_bytes();
        self.idle.lock().entry(to).or_default().push(send);
        if status != StatusCode::OK {
            #[derive(serde::Deserialize)]
            struct Refused {
                error_code: String,
                error_msg: String,
            }
            let r: Refused = serde_json::from_slice(&bytes).map_err(|_| NetError::BadReply {
                node: to,
                why: format!("status {status} with an unreadable body"),
            })?;
            return Err(NetError::Refused {
                node: to,
                code: r.error_code,
                message: r.error_msg,
            });
        }
        postcard::from_bytes(&bytes).map_err(|e| NetError::BadReply {
            node: to,
            why: e.to_string(),
        })
    }
}

/// A shared transport is a transport.
impl Transport for Arc<HttpTransport> {
    fn call(&self, to: NodeId, addr: &NodeAddr, req: Request, timeout: Duration) -> CallFuture {
        let this = self.clone();
        let addr = addr.clone();
        Box::pin(async move {
            let body = match postcard::to_allocvec(&req) {
                Ok(b) => Bytes::from(b),
                Err(e) => {
                    return Err(NetError::BadReply {
                        node: to,
                        why: format!("the request does not encode: {e}"),
                    });
                }
            };
            let run = async {
                // A pooled connection the peer closed meanwhile is tried
                // once more on a new one.
                let mut reused = false;
                match this
                    .clone()
                    .once(to, addr.clone(), body.clone(), &mut reused)
                    .await
                {
                    Err(NetError::Unreachable { .. }) if reused => {
                        this.once(to, addr, body, &mut false).await
                    }
                    other => other,
                }
            };
            match tokio::time::timeout(timeout, run).await {
                Ok(r) => r,
                Err(_) => Err(NetError::Timeout {
                    node: to,
                    ms: timeout.as_millis() as u64,
                }),
            }
        })
    }
}
