//! The connection layer, below the routes: accepting, TLS, what a
//! connection may cost before it is authenticated, the HTTP layer's own
//! refusals in GES's error format, and the drain at shutdown.
//!
//! Per connection, before any handler runs:
//!
//! - at most [`ConnLimits::max_connections`] connections are served at
//!   once; one past it is answered `503` and closed;
//! - on a TLS listener, the first byte must begin a TLS handshake (a plain
//!   HTTP request is answered `400` in plain HTTP and closed), and the
//!   handshake must end within the header timeout;
//! - a request's head (request line and headers) must arrive whole within
//!   [`ConnLimits::header_timeout`], and a keep-alive connection may wait
//!   that long for its next request: a connection that stalls or idles
//!   longer is closed;
//! - the head may hold at most [`ConnLimits::max_head_bytes`]; past it the
//!   HTTP layer answers `431` (or `414` for a request line too long);
//!
//! so a connection that never authenticates holds at most a head's worth
//! of memory, for at most the header timeout. The HTTP layer's own
//! refusals (`400`, `414`, `431`) are rewritten on their way out with GES's
//! error body (`GES.9014`), like every other refusal.
//!
//! At shutdown the listener stops accepting, and the connections already
//! waiting in its backlog are accepted and answered `503` (`GES.9007`),
//! never reset. Connections with a request in flight get the grace period
//! to finish; idle ones and ones stalled in the middle of a head are
//! closed at once.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use crate::error::{ApiError, codes};

/// What a connection may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// How long a request head, a TLS handshake, or the wait for the next
    /// request on a keep-alive connection may take.
    pub header_timeout: Duration,
    /// Most bytes of a request head (at least 8 KiB).
    pub max_head_bytes: usize,
    /// Most connections served at once.
    pub max_connections: usize,
}

/// The address of the client, in each request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// Serves `app` on `listener` until `shutdown` completes, then drains.
/// Returns whether every connection was done within `grace`.
///
/// This is the loop [`crate::server`] serves the API with; it is public so
/// that another router can be served on the same connection stack (the
/// REST benchmark serves a bare handler on it, to compare against).
/// `tls`: serve HTTPS only, with this acceptor.
pub async fn serve<A>(
    listener: TcpListener,
    app: A,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> bool
where
    A: App,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let open = Arc::new(AtomicUsize::new(0));
    let all_closed = Arc::new(tokio::sync::Notify::new());
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let spawn = |stream: TcpStream, peer: SocketAddr, refuse: bool| {
        let conn = Conn {
            app: app.clone(),
            tls: tls.clone(),
            limits,
            stop: stop_rx.clone(),
            open: open.clone(),
            all_closed: all_closed.clone(),
        };
        open.fetch_add(1, Ordering::AcqRel);
        let permit = permits.clone().try_acquire_owned().ok();
        tokio::spawn(async move {
            conn.run(stream, peer, refuse || permit.is_none()).await;
            drop(permit);
        });
    };
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => spawn(stream, peer, false),
                // A connection that failed between the kernel and here, or
                // out of descriptors for a moment: go on.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
        }
    }
    // The backlog: connections the kernel accepted before the listener
    // closes are answered, not reset. The kernel's queue is read directly,
    // without waiting for the runtime to report the socket readable.
    if let Ok(std_listener) = listener.into_std() {
        while let Ok((stream, peer)) = std_listener.accept() {
            let stream = stream
                .set_nonblocking(true)
                .and_then(|()| TcpStream::from_std(stream));
            if let Ok(stream) = stream {
                spawn(stream, peer, true);
            }
        }
    }
    let _ = stop_tx.send(true);
    let drained = async {
        while open.load(Ordering::Acquire) > 0 {
            let notified = all_closed.notified();
            if open.load(Ordering::Acquire) == 0 {
                break;
            }
            notified.await;
        }
    };
    tokio::time::timeout(grace, drained).await.is_ok()
}

/// What [`serve`] serves: an axum [`Router`](axum::Router), or any other
/// service of requests that is always ready and never fails (the API's
/// [`ApiService`](crate::api::ApiService)).
pub trait App:
    tower::Service<
        Request<Body>,
        Response = Response<Body>,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<A> App for A where
    A: tower::Service<
            Request<Body>,
            Response = Response<Body>,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// One connection's task.
struct Conn<A> {
    app: A,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: ConnLimits,
    stop: watch::Receiver<bool>,
    open: Arc<AtomicUsize>,
    all_closed: Arc<tokio::sync::Notify>,
}

impl<A> Drop for Conn<A> {
    fn drop(&mut self) {
        if self.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.all_closed.notify_waiters();
        }
    }
}

impl<A: App> Conn<A> {
    /// `refuse`: answer every request `503` (the server is shutting down,
    /// or serves as many connections as it may).
    async fn run(self, stream: TcpStream, peer: SocketAddr, refuse: bool) {
        let _ = stream.set_nodelay(true);
        let timeout = self.limits.header_timeout;
        match &self.tls {
            None => self.http(stream, peer, refuse).await,
            Some(acceptor) => {
                let mut first = [0u8; 1];
                let peeked = tokio::time::timeout(timeout, stream.peek(&mut first)).await;
                match peeked {
                    // A TLS record of the handshake begins with 0x16.
                    Ok(Ok(1)) if first[0] == 0x16 => {}
                    Ok(Ok(1)) => return plain_refusal(stream).await,
                    _ => return,
                }
                let acceptor = acceptor.clone();
                let handshake = tokio::time::timeout(timeout, acceptor.accept(stream)).await;
                // A handshake that fails or stalls ends the connection.
                if let Ok(Ok(tls)) = handshake {
                    self.http(tls, peer, refuse).await;
                }
            }
        }
    }

    async fn http<S>(mut self, stream: S, peer: SocketAddr, refuse: bool)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let service = {
            let app = self.app.clone();
            let in_flight = in_flight.clone();
            hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let app = app.clone();
                let in_flight = in_flight.clone();
                in_flight.fetch_add(1, Ordering::AcqRel);
                req.extensions_mut().insert(ClientAddr(peer));
                async move {
                    let response = if refuse {
                        shutting_down()
                    } else {
                        match app.oneshot(req.map(Body::new)).await {
                            Ok(r) => r,
                            Err(never) => match never {},
                        }
                    };
                    in_flight.fetch_sub(1, Ordering::AcqRel);
                    Ok::<_, std::convert::Infallible>(response)
                }
            })
        };
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .max_buf_size(self.limits.max_head_bytes.max(8 << 10))
            .keep_alive(!refuse);
        let conn = builder.serve_connection(TokioIo::new(GesErrors::new(stream)), service);
        let mut conn = std::pin::pin!(conn);
        if refuse {
            // One answer and the connection closes; the header timeout
            // bounds how long the client may take to ask. Not cut short by
            // the drain: answering is the point.
            let _ = conn.await;
            return;
        }
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = self.stop.wait_for(|stop| *stop) => {}
        }
        conn.as_mut().graceful_shutdown();
        if in_flight.load(Ordering::Acquire) == 0 {
            // Idle, or stalled in the middle of a head: nothing to finish.
            return;
        }
        let _ = conn.await;
    }
}

/// The answer of a connection the server does not serve.
fn shutting_down() -> Response<Body> {
    let mut r: Response<Body> = axum::response::IntoResponse::into_response(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        codes::SHUTTING_DOWN,
        "the server is shutting down or at its connection limit; retry",
    ));
    r.headers_mut().insert(
        header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    r
}

/// A plain HTTP request sent to a TLS listener: answered in plain HTTP,
/// in GES's format, and closed.
async fn plain_refusal(mut stream: TcpStream) {
    let body = ges_body(
        codes::BAD_HTTP,
        "this port speaks HTTPS: send the request over TLS",
    );
    let head = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn ges_body(code: &str, message: &str) -> String {
    serde_json::json!({ "error_code": code, "error_msg": message }).to_string()
}

/// The statuses the HTTP layer answers by itself, with an empty body,
/// before any route runs: the status line it writes, and what GES's body
/// says.
const OWN_REFUSALS: [(&[u8], &str); 3] = [
    (
        b"HTTP/1.1 400 Bad Request\r\n",
        "the request is not valid HTTP/1.1",
    ),
    (
        b"HTTP/1.1 414 URI Too Long\r\n",
        "the request line is too long",
    ),
    (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
        "the request's headers are too large",
    ),
];

/// A stream that passes everything through but the HTTP layer's own
/// bodiless refusals, which it replaces with the same status and GES's
/// error body. Every response of the routes has a body, so a `400`, `414`
/// or `431` head with `content-length: 0` is the HTTP layer's. It claims
/// no vectored writes, so the HTTP layer writes each response head in one
/// buffer.
struct GesErrors<S> {
    inner: S,
    /// A replacement being written: its bytes, how many are written, and
    /// the length of the write it stands for.
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl<S> GesErrors<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            pending: None,
        }
    }

    /// The replacement for `buf`, if it is one of the HTTP layer's own
    /// refusals.
    fn replacement(buf: &[u8]) -> Option<Vec<u8>> {
        let (line, message) = OWN_REFUSALS.iter().find(|(l, _)| buf.starts_with(l))?;
        let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        if !head.contains("\r\ncontent-length: 0") {
            return None;
        }
        let body = ges_body(codes::BAD_HTTP, message);
        let mut out = line.to_vec();
        out.extend_from_slice(
            format!(
                "content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(body.as_bytes());
        Some(out)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GesErrors<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> GesErrors<S> {
    /// Writes what is left of a replacement; ready with the length of the
    /// write it stands for once it is all written.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<usize>>> {
        while let Some((bytes, written, stands_for)) = &mut self.pending {
            if *written == bytes.len() {
                let n = *stands_for;
                self.pending = None;
                return Poll::Ready(Ok(Some(n)));
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(None))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GesErrors<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.pending.is_none()
            && let Some(out) = Self::replacement(buf)
        {
            this.pending = Some((out, 0, buf.len()));
        }
        match this.poll_pending(cx) {
            Poll::Ready(Ok(Some(n))) => Poll::Ready(Ok(n)),
            Poll::Ready(Ok(None)) => Pin::new(&mut this.inner).poll_write(cx, buf),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.poll_pending(cx) {
            Poll::Ready(Ok(_)) => Pin::new(&mut this.inner).poll_flush(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.poll_pending(cx) {
            Poll::Ready(Ok(_)) => Pin::new(&mut this.inner).poll_shutdown(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_http_layers_bodiless_refusals_are_replaced() {
        let own =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let out = GesErrors::<()>::replacement(own).expect("replaced");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 431 "));
        assert!(text.contains("\"error_code\":\"GES.9014\""), "{text}");
        let ours =
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 52\r\n\r\n{\"error_code\":\"GES.7016\"}";
        assert!(GesErrors::<()>::replacement(ours).is_none());
        assert!(
            GesErrors::<()>::replacement(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none()
        );
    }
}
