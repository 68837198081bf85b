//! rmcp's Streamable HTTP client transport over the gateway's own HTTP client.
//!
//! rmcp has no HTTP stack of its own (its reqwest one is a feature we leave off): it
//! asks a [`StreamableHttpClient`] to send each message. Ours sends through the
//! [`UpstreamHttp`] seam, which the binary fills with the data plane's pooled client, so
//! upstream MCP servers get the same connection pool, TLS provider and connect-time
//! address policy as model upstreams.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use rmcp::model::{ClientJsonRpcMessage, JsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use sse_stream::{Sse, SseStream};

use crate::BoxError;

/// The body of an upstream's answer. Its error is concrete: a boxed `dyn Error` here
/// trips the compiler's higher-ranked `Send` checks in rmcp's async trait methods.
pub type UpstreamBody = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

/// Sends one HTTP request upstream (the binary's pooled client).
#[async_trait::async_trait]
pub trait UpstreamHttp: Send + Sync + 'static {
    async fn send(&self, request: Request<Full<Bytes>>) -> Result<http::Response<UpstreamBody>, BoxError>;
}

const SESSION_ID: &str = "mcp-session-id";
const LAST_EVENT_ID: &str = "last-event-id";
const JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream";

/// The transport's HTTP client for one upstream server: the shared sender and the
/// server's credential header, if any (rmcp's own `auth_header` is always a bearer; ours
/// may be any header the operator named).
#[derive(Clone)]
pub struct McpHttp {
    pub http: Arc<dyn UpstreamHttp>,
    pub credential: Option<(HeaderName, HeaderValue)>,
}

/// Failures of [`McpHttp`], carried inside rmcp's `StreamableHttpError::Client`.
#[derive(Debug, thiserror::Error)]
pub enum McpHttpError {
    #[error("{0}")]
    Send(BoxError),
    #[error("invalid request: {0}")]
    Request(#[from] http::Error),
    #[error("reading the answer: {0}")]
    Body(String),
}

type Failure = StreamableHttpError<McpHttpError>;

impl McpHttp {
    fn request(&self, method: Method, uri: &str, session: Option<&str>) -> http::request::Builder {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some((name, value)) = &self.credential {
            builder = builder.header(name, value);
        }
        if let Some(session) = session {
            builder = builder.header(SESSION_ID, session);
        }
        builder
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> Result<http::Response<UpstreamBody>, Failure> {
        self.http.send(request).await.map_err(|e| StreamableHttpError::Client(McpHttpError::Send(e)))
    }
}

fn with_headers(
    mut builder: http::request::Builder,
    headers: HashMap<HeaderName, HeaderValue>,
) -> http::request::Builder {
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    builder
}

/// An error answered without an id (allowed on an HTTP refusal: the server may not have
/// read the request) is the answer to the request sent: without its id rmcp could match
/// it to nothing, and the call would wait until its timeout.
fn answering(answer: ServerJsonRpcMessage, sent: &ClientJsonRpcMessage) -> ServerJsonRpcMessage {
    match (answer, sent) {
        (JsonRpcMessage::Error(mut error), JsonRpcMessage::Request(request)) if error.id.is_none() => {
            error.id = Some(request.id.clone());
            JsonRpcMessage::Error(error)
        }
        (answer, _) => answer,
    }
}

fn media_type_is(value: Option<&HeaderValue>, want: &str) -> bool {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(want))
}

fn session_of(response: &http::Response<UpstreamBody>) -> Option<String> {
    response.headers().get(SESSION_ID).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// At most `max` bytes of `body`; more is an error, not a truncation.
async fn read(body: UpstreamBody, max: usize) -> Result<Bytes, Failure> {
    let collected = Limited::new(body, max).collect().await;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(StreamableHttpError::ResponseBodyTooLarge { max_size: max })
        }
        Err(e) => Err(StreamableHttpError::Client(McpHttpError::Body(e.to_string()))),
    }
}

fn sse(body: UpstreamBody) -> BoxStream<'static, Result<Sse, SseError>> {
    SseStream::new(body).boxed()
}

impl StreamableHttpClient for McpHttp {
    type Error = McpHttpError;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, Failure> {
        let limits = StreamableHttpResponseLimits::default();
        self.post_message_with_response_limits(uri, message, session_id, auth_header, custom_headers, limits).await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, Failure> {
        let body = serde_json::to_vec(&message)?;
        let builder = self
            .request(Method::POST, &uri, session_id.as_deref())
            .header(header::CONTENT_TYPE, JSON)
            .header(header::ACCEPT, "application/json, text/event-stream");
        let request = with_headers(builder, custom_headers)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| StreamableHttpError::Client(e.into()))?;
        let response = self.send(request).await?;
        let status = response.status();
        if matches!(status, StatusCode::ACCEPTED | StatusCode::NO_CONTENT) {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        // 404 is the spec's answer to a session the server no longer has; some servers
        // (server-everything's express wrapper) answer 400. Either way: initialize again.
        if session_id.is_some() && matches!(status, StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST) {
            return Err(StreamableHttpError::SessionExpired);
        }
        let session = session_of(&response);
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let awaits_nothing = !matches!(message, JsonRpcMessage::Request(_));
        if status.is_success() && media_type_is(content_type.as_ref(), EVENT_STREAM) {
            return Ok(StreamableHttpPostResponse::Sse(sse(response.into_body()), session));
        }
        let max = if status.is_success() { limits.max_json_response_size } else { limits.max_error_response_size };
        let body = read(response.into_body(), max).await?;
        if media_type_is(content_type.as_ref(), JSON) {
            match serde_json::from_slice::<ServerJsonRpcMessage>(&body) {
                Ok(parsed) => return Ok(StreamableHttpPostResponse::Json(answering(parsed, &message), session)),
                Err(_) if awaits_nothing && status.is_success() => return Ok(StreamableHttpPostResponse::Accepted),
                Err(_) => {}
            }
        } else if awaits_nothing && status.is_success() {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        let preview = String::from_utf8_lossy(&body[..body.len().min(256)]).into_owned();
        Err(StreamableHttpError::UnexpectedServerResponse(Cow::Owned(format!("HTTP {status}: {preview}"))))
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), Failure> {
        let builder = self.request(Method::DELETE, &uri, Some(&session_id));
        let request = with_headers(builder, custom_headers)
            .body(Full::new(Bytes::new()))
            .map_err(|e| StreamableHttpError::Client(e.into()))?;
        let response = self.send(request).await?;
        match response.status() {
            StatusCode::METHOD_NOT_ALLOWED => Err(StreamableHttpError::ServerDoesNotSupportDeleteSession),
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            s => Err(StreamableHttpError::UnexpectedServerResponse(Cow::Owned(format!("HTTP {s} on DELETE")))),
        }
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Failure> {
        let mut builder = self.request(Method::GET, &uri, session_id.as_deref()).header(header::ACCEPT, EVENT_STREAM);
        if let Some(id) = last_event_id {
            builder = builder.header(LAST_EVENT_ID, id);
        }
        let request = with_headers(builder, custom_headers)
            .body(Full::new(Bytes::new()))
            .map_err(|e| StreamableHttpError::Client(e.into()))?;
        let response = self.send(request).await?;
        let status = response.status();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            return Err(StreamableHttpError::ServerDoesNotSupportSse);
        }
        if session_id.is_some() && matches!(status, StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST) {
            return Err(StreamableHttpError::SessionExpired);
        }
        if !status.is_success() || !media_type_is(response.headers().get(header::CONTENT_TYPE), EVENT_STREAM) {
            return Err(StreamableHttpError::UnexpectedServerResponse(Cow::Owned(format!(
                "HTTP {status} on the event stream"
            ))));
        }
        Ok(sse(response.into_body()))
    }
}
