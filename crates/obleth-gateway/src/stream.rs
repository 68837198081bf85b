//! The stream step: a streamed answer forwarded frame by frame.
//!
//! [`ProxyStream`] is the response body. It passes upstream frames on as they come, reads
//! the usage on the side (`sse.rs`), bounds the answer, enforces the idle timeout, and
//! carries the request's [`Charge`] until the stream ends or is dropped (client gone). The
//! drop also drops the upstream body, which cancels the upstream request.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures_util::Stream;
use http::{HeaderValue, header};
use http_body::Body as _;
use hyper::body::Incoming;
use tokio::time::Sleep;

use crate::answer::{Answer, Prompt, response_too_large};
use crate::charge::Charge;
use crate::error::{ApiError, ErrorCode};
use crate::sse::SseScanner;
use crate::usage::{self, Bounds, Checked};
use crate::{GatewayConfig, Route, estimate, telemetry};

/// The client's streamed response.
pub(crate) fn respond(answer: Answer, mut charge: Charge, config: &GatewayConfig) -> Response {
    charge.streamed();
    let Answer { upstream, prompt, bounds, headers, hide_usage, .. } = answer;
    let body = ProxyStream {
        body: upstream.response.into_body(),
        scanner: SseScanner::new(hide_usage, config.max_sse_event_bytes),
        charge,
        prompt,
        bounds,
        idle: Box::pin(tokio::time::sleep(config.stream_idle_timeout)),
        idle_timeout: config.stream_idle_timeout,
        received: 0,
        max_response_bytes: config.max_response_bytes,
        sent: upstream.sent,
        first_chunk_seen: false,
        done: false,
    };
    let mut response = Response::new(Body::from_stream(body));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.extend(headers);
    response
}

struct ProxyStream {
    body: Incoming,
    scanner: SseScanner,
    charge: Charge,
    prompt: Prompt,
    /// What the request allowed (the response's size is added at the end).
    bounds: Bounds,
    idle: Pin<Box<Sleep>>,
    idle_timeout: Duration,
    /// Bytes received from the upstream so far, bounded by `max_response_bytes`.
    received: usize,
    max_response_bytes: usize,
    sent: Instant,
    first_chunk_seen: bool,
    done: bool,
}

impl ProxyStream {
    fn route(&self) -> Route {
        self.prompt.codec.route()
    }

    /// The usage to bill: what the upstream reported where it is plausible, the
    /// gateway's own count where it is not (or was not reported). The prompt is counted
    /// only if the reported input is not believed.
    fn checked_usage(&mut self) -> Checked {
        let bounds = self.bounds.with_response_bytes(self.received);
        let encoding = self.prompt.encoding;
        let (prompt, text) = (&mut self.prompt, &self.scanner.text);
        usage::check(self.scanner.usage, &bounds, || prompt.counted(), || estimate::count_text(encoding, text))
    }

    /// A stream that ends early (error, or client gone) cost what it streamed so far.
    fn spent_so_far(&mut self) {
        let usage = self.checked_usage().usage;
        self.charge.spent(usage);
    }

    fn end_with_error(&mut self, error: ApiError) -> Option<Result<Bytes, std::io::Error>> {
        self.done = true;
        self.spent_so_far();
        // An event the client got part of is closed; one held back is dropped.
        let mut out = self.scanner.close().to_vec();
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&error.body());
        out.extend_from_slice(b"\n\n");
        self.charge.failed(&error);
        Some(Ok(Bytes::from(out)))
    }

    /// The upstream's stream ended: bill it and send what is left.
    fn complete(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        self.done = true;
        let rest = self.scanner.finish();
        if self.scanner.upstream_error {
            self.charge.failed(&ApiError::upstream_error("The model backend reported an error in the stream."));
            self.spent_so_far();
        } else {
            let checked = self.checked_usage();
            self.charge.succeeded(200, checked);
        }
        (!rest.is_empty()).then_some(Ok(rest))
    }

    /// One frame from the upstream: bounded, scanned, and what to send on.
    fn frame(&mut self, data: Bytes) -> Result<Bytes, ApiError> {
        if !self.first_chunk_seen {
            self.first_chunk_seen = true;
            self.charge.first_token();
            telemetry::upstream_first_chunk(self.route().as_str(), self.sent.elapsed());
        }
        self.received = self.received.saturating_add(data.len());
        if self.received > self.max_response_bytes {
            telemetry::response_too_large(self.route().as_str());
            return Err(response_too_large(self.max_response_bytes));
        }
        let out = self.scanner.push(data);
        if self.scanner.overflowed {
            let limit = self.scanner.max_event();
            let message =
                format!("The model backend sent a stream event longer than the gateway's limit of {limit} bytes.");
            return Err(ApiError::new(ErrorCode::UpstreamEventTooLarge, message));
        }
        Ok(out)
    }
}

impl Drop for ProxyStream {
    fn drop(&mut self) {
        if !self.done {
            self.spent_so_far();
        }
    }
}

impl Stream for ProxyStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    let deadline = tokio::time::Instant::now() + this.idle_timeout;
                    this.idle.as_mut().reset(deadline);
                    match this.frame(data) {
                        Ok(out) if out.is_empty() => continue,
                        Ok(out) => return Poll::Ready(Some(Ok(out))),
                        Err(e) => return Poll::Ready(this.end_with_error(e)),
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let err = ApiError::upstream_error(format!("The model backend's stream broke off: {e}"));
                    return Poll::Ready(this.end_with_error(err));
                }
                Poll::Ready(None) => return Poll::Ready(this.complete()),
                Poll::Pending => {
                    ready!(this.idle.as_mut().poll(cx));
                    let err = ApiError::upstream_timeout(this.idle_timeout);
                    return Poll::Ready(this.end_with_error(err));
                }
            }
        }
    }
}
