//! Serving a router on a listener with every connection bounded.
//!
//! `axum::serve` holds a connection for as long as the client likes: headers sent a byte
//! a second, a body never finished, an idle keep-alive socket, a response nobody reads,
//! and as many of them as the process has file descriptors. Each of those ties up memory
//! and, for a response nobody reads, an admission slot that fairness depends on. Here
//! every connection of a listener is bounded:
//!
//! - **open connections**: at most `max_connections` per listener (shared by the
//!   data-plane threads); one more is accepted and closed at once, as Envoy does past
//!   its connection limit, so a load balancer retries elsewhere instead of queueing;
//! - **idle keep-alive**: a connection waiting for its next request is closed after
//!   `idle_timeout`;
//! - **request head**: once the first byte of a request arrives, the whole head must
//!   arrive within `header_read_timeout` (slowloris);
//! - **request body**: the whole body must arrive within `body_read_timeout` of the head;
//!   the handler sees a [`BodyReadTimeout`] error and answers 408;
//! - **slow readers**: a response the client does not read for `client_stall_timeout`
//!   (the socket's send buffer stays full) ends the connection, which drops the response
//!   body and with it the request's slot and reservation (they settle on drop).
//!
//! The timers live in the connection's I/O wrapper ([`GuardedIo`]) and are polled only
//! while the socket would block, so a connection that moves pays nothing for them. Every
//! cut is counted (`obleth_connections_cut_total{listener,reason}`). HTTP/1.1 requests
//! without `Host` are answered 400 here, before any router sees them.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http::{Request, Version, header};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::error::{ApiError, ErrorCode};
use crate::telemetry;

/// The bounds of one listener's connections.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Metric label: `data`, `admin` or `metrics`.
    pub listener: &'static str,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub client_stall_timeout: Duration,
    /// Answer with an `x-request-id` header (the data plane does).
    pub request_ids: bool,
}

impl ConnectionLimits {
    /// The defaults for `listener` (see the README's table of limits).
    pub fn new(listener: &'static str) -> ConnectionLimits {
        ConnectionLimits {
            listener,
            max_connections: 8192,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(75),
            client_stall_timeout: Duration::from_secs(30),
            request_ids: false,
        }
    }
}

/// Why a connection was cut (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    OverCapacity,
    IdleTimeout,
    HeaderTimeout,
    BodyTimeout,
    ClientStalled,
}

impl Cut {
    pub fn as_str(self) -> &'static str {
        match self {
            Cut::OverCapacity => "over_capacity",
            Cut::IdleTimeout => "idle_timeout",
            Cut::HeaderTimeout => "header_timeout",
            Cut::BodyTimeout => "body_timeout",
            Cut::ClientStalled => "client_stalled",
        }
    }
}

/// One listener's connections: its limits and how many are open. Shared by the
/// data-plane threads, which serve one address.
#[derive(Debug)]
pub struct Connections {
    limits: ConnectionLimits,
    open: AtomicUsize,
    accepted: AtomicU64,
}

impl Connections {
    pub fn new(limits: ConnectionLimits) -> Arc<Connections> {
        Arc::new(Connections { limits, open: AtomicUsize::new(0), accepted: AtomicU64::new(0) })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Sets the gauges of this listener (called when Prometheus scrapes).
    pub fn publish(&self) {
        telemetry::connections(self.limits.listener, self.open(), self.accepted.load(Ordering::Relaxed));
    }

    fn try_open(self: &Arc<Self>) -> Option<OpenSlot> {
        let max = self.limits.max_connections;
        self.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok()?;
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Some(OpenSlot(self.clone()))
    }
}

/// One open connection, counted until dropped.
struct OpenSlot(Arc<Connections>);

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and
/// lets open connections finish their current request.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    connections: Arc<Connections>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
    let tracker = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(error = %e, listener = connections.limits.listener, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = connections.try_open() else {
            telemetry::connection_cut(connections.limits.listener, Cut::OverCapacity.as_str());
            drop(stream);
            continue;
        };
        // Without it, small SSE chunks wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        tracker.spawn(serve_connection(stream, router.clone(), slot, drain_rx.clone()));
    }
    drop(listener);
    let _ = drain_tx.send(true);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    slot: OpenSlot,
    mut drain: tokio::sync::watch::Receiver<bool>,
) {
    let conn = Arc::new(ConnState::new(slot.0.clone()));
    let io = TokioIo::new(GuardedIo::new(stream, conn.clone()));
    let service = ConnService { router, conn, _slot: slot };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The head timeout is ours (it must not count the idle time before a request).
    builder.timer(TokioTimer::new()).header_read_timeout(None);
    let connection = builder.serve_connection(io, hyper::service::service_fn(move |req| service.call(req)));
    tokio::pin!(connection);
    let result = tokio::select! {
        r = connection.as_mut() => r,
        _ = async { drain.wait_for(|d| *d).await.is_ok() } => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

// === per-connection state ===

/// What a connection is doing, as its I/O wrapper and its requests see it.
#[derive(Debug)]
pub struct ConnState {
    /// The listener's connections, and its limits.
    connections: Arc<Connections>,
    phase: AtomicU8,
    /// When the current phase began, in ms since `epoch`.
    since_ms: AtomicU64,
    epoch: Instant,
    /// The connection was cut because its client did not read.
    stalled: AtomicBool,
    /// The reader waiting without a deadline while a request is busy: woken when the
    /// connection goes idle, so that the idle timer starts.
    read_waker: AtomicWaker,
}

const IDLE: u8 = 0;
const HEAD: u8 = 1;
const BUSY: u8 = 2;

impl ConnState {
    fn new(connections: Arc<Connections>) -> ConnState {
        ConnState {
            connections,
            phase: AtomicU8::new(IDLE),
            since_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            stalled: AtomicBool::new(false),
            read_waker: AtomicWaker::new(),
        }
    }

    /// Whether the connection this request came on was cut for not reading.
    pub fn stalled(&self) -> bool {
        self.stalled.load(Ordering::Relaxed)
    }

    fn set_phase(&self, phase: u8) {
        self.since_ms.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.phase.store(phase, Ordering::Release);
    }

    fn since(&self) -> Instant {
        self.epoch + Duration::from_millis(self.since_ms.load(Ordering::Relaxed))
    }

    fn limits(&self) -> &ConnectionLimits {
        &self.connections.limits
    }

    /// Counts a cut, and the error that ends the connection for it.
    fn cut(&self, why: Cut) -> io::Error {
        if why == Cut::ClientStalled {
            self.stalled.store(true, Ordering::Relaxed);
        }
        telemetry::connection_cut(self.limits().listener, why.as_str());
        io::Error::new(io::ErrorKind::TimedOut, why.as_str())
    }
}

/// The request extension through which a handler sees its connection.
#[derive(Debug, Clone)]
pub struct Connection(pub Arc<ConnState>);

// === the service ===

struct ConnService {
    router: Router,
    conn: Arc<ConnState>,
    /// Counts the connection as open for as long as hyper holds the service.
    _slot: OpenSlot,
}

impl ConnService {
    fn call(&self, req: Request<Incoming>) -> impl Future<Output = Result<Response<DoneBody>, Infallible>> + use<> {
        self.conn.set_phase(BUSY);
        let done = RequestDone(self.conn.clone());
        let missing_host = req.version() == Version::HTTP_11 && !req.headers().contains_key(header::HOST);
        let limits = self.conn.limits();
        let deadline = Instant::now() + limits.body_read_timeout;
        let mut req = req.map(|b| Body::new(TimeoutBody::new(b, deadline, self.conn.clone())));
        req.extensions_mut().insert(Connection(self.conn.clone()));
        // The data plane's request id is made here, at the edge, so that every answer
        // carries it (unknown URLs and refusals before any router included).
        let id = limits.request_ids.then(crate::new_request_id);
        if let Some(id) = &id {
            req.extensions_mut().insert(crate::RequestId(id.clone()));
        }
        let router = self.router.clone();
        async move {
            let mut res = if missing_host {
                let mut res = ApiError::new(ErrorCode::MissingHost, "An HTTP/1.1 request must have a Host header.")
                    .with_param("Host")
                    .into_response();
                res.headers_mut().insert(header::CONNECTION, http::HeaderValue::from_static("close"));
                res
            } else {
                match router.oneshot(req).await {
                    Ok(res) => res,
                    Err(never) => match never {},
                }
            };
            if let Some(id) = &id {
                crate::set_request_id(&mut res, id);
            }
            Ok(res.map(|b| DoneBody { inner: b, _done: done }))
        }
    }
}

/// Marks the connection idle again when the response body is finished or dropped.
struct RequestDone(Arc<ConnState>);

impl Drop for RequestDone {
    fn drop(&mut self) {
        self.0.set_phase(IDLE);
        self.0.read_waker.wake();
    }
}

pin_project_lite::pin_project! {
    struct DoneBody {
        #[pin]
        inner: Body,
        _done: RequestDone,
    }
}

impl HttpBody for DoneBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// === the request body ===

pub use obleth_core::BodyReadTimeout;

pin_project_lite::pin_project! {
    /// A request body that fails once its deadline passes.
    struct TimeoutBody {
        #[pin]
        inner: Incoming,
        deadline: Instant,
        // Made only when the body would block: most bodies arrive with their head.
        sleep: Option<Pin<Box<Sleep>>>,
        conn: Arc<ConnState>,
    }
}

impl TimeoutBody {
    fn new(inner: Incoming, deadline: Instant, conn: Arc<ConnState>) -> TimeoutBody {
        TimeoutBody { inner, deadline, sleep: None, conn }
    }
}

impl HttpBody for TimeoutBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let deadline = *this.deadline;
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                ready!(sleep.as_mut().poll(cx));
                let _ = this.conn.cut(Cut::BodyTimeout);
                Poll::Ready(Some(Err(Box::new(BodyReadTimeout))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// === the socket ===

/// The connection's socket, with the idle, head and stall timers.
struct GuardedIo {
    inner: TcpStream,
    conn: Arc<ConnState>,
    /// The read timer and the deadline it is set to (made when a read first blocks).
    read_timer: Option<(Pin<Box<Sleep>>, Instant)>,
    /// The stall timer (made when a write first blocks).
    write_timer: Option<(Pin<Box<Sleep>>, Instant)>,
    /// Since when writes block: the client stopped reading and its buffers are full.
    blocked_since: Option<Instant>,
}

impl GuardedIo {
    fn new(inner: TcpStream, conn: Arc<ConnState>) -> GuardedIo {
        conn.set_phase(IDLE);
        GuardedIo { inner, conn, read_timer: None, write_timer: None, blocked_since: None }
    }

    /// The deadline for the client's next bytes, if it has one now.
    fn read_deadline(&self) -> Option<(Instant, Cut)> {
        match self.conn.phase.load(Ordering::Acquire) {
            IDLE => Some((self.conn.since() + self.conn.limits().idle_timeout, Cut::IdleTimeout)),
            HEAD => Some((self.conn.since() + self.conn.limits().header_read_timeout, Cut::HeaderTimeout)),
            // Reading a body is bounded by the body's own timer; other reads while busy
            // only look for the client closing.
            _ => None,
        }
    }
}

/// Polls a timer set to `deadline`, making or moving it first.
fn timer_fired(timer: &mut Option<(Pin<Box<Sleep>>, Instant)>, deadline: Instant, cx: &mut Context<'_>) -> bool {
    match timer {
        Some((sleep, at)) if *at == deadline => sleep.as_mut().poll(cx).is_ready(),
        Some((sleep, at)) => {
            sleep.as_mut().reset(deadline);
            *at = deadline;
            sleep.as_mut().poll(cx).is_ready()
        }
        None => {
            let mut sleep = Box::pin(tokio::time::sleep_until(deadline));
            let fired = sleep.as_mut().poll(cx).is_ready();
            *timer = Some((sleep, deadline));
            fired
        }
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before && this.conn.phase.load(Ordering::Acquire) == IDLE {
                    this.conn.set_phase(HEAD);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some((deadline, why)) = this.read_deadline() else {
                    this.conn.read_waker.register(cx.waker());
                    return Poll::Pending;
                };
                if !timer_fired(&mut this.read_timer, deadline, cx) {
                    return Poll::Pending;
                }
                let error = this.conn.cut(why);
                // Closing an idle keep-alive connection is an orderly end: EOF.
                Poll::Ready(if why == Cut::IdleTimeout { Ok(()) } else { Err(error) })
            }
        }
    }
}

impl GuardedIo {
    /// Maps a write's result: progress clears the stall, blocking starts or checks it.
    fn written<T>(&mut self, res: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if res.is_ready() {
            self.blocked_since = None;
            return res;
        }
        let since = *self.blocked_since.get_or_insert_with(Instant::now);
        if timer_fired(&mut self.write_timer, since + self.conn.limits().client_stall_timeout, cx) {
            return Poll::Ready(Err(self.conn.cut(Cut::ClientStalled)));
        }
        Poll::Pending
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.written(res, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.written(res, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A socket's flush is immediate: only bytes written are progress.
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
