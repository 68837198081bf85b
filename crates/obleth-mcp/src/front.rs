//! `/mcp`: what runs before and after rmcp's Streamable HTTP server.
//!
//! `auth -> session check -> size check -> rmcp -> bind the new session -> errors as
//! JSON-RPC`. rmcp's own refusals are plain text; MCP clients parse JSON-RPC, so they
//! are rewritten through the error table.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, header};
use http_body_util::BodyExt;
use obleth_core::{ApiError, ErrorCode};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::handler::McpFront;
use crate::hub::Hub;
use crate::sessions::{Bindings, Check, Owner};
use crate::{Authenticate, McpCaller, errors, telemetry};

const SESSION_ID: &str = "mcp-session-id";
const PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// The stateless protocol version: no sessions, an `Mcp-Session-Id` is ignored.
const STATELESS: &str = "2026-07-28";

/// The `/mcp` endpoint's state, shared by every data-plane thread.
pub struct McpGateway {
    pub hub: Arc<Hub>,
    auth: Arc<dyn Authenticate>,
    service: StreamableHttpService<McpFront, LocalSessionManager>,
    bindings: Bindings,
}

impl McpGateway {
    pub fn new(hub: Arc<Hub>, auth: Arc<dyn Authenticate>, shutdown: CancellationToken) -> Arc<McpGateway> {
        let config = &hub.config;
        let mut server = StreamableHttpServerConfig::default()
            .with_json_response(true)
            .with_max_request_body_bytes(config.max_body_bytes)
            .with_cancellation_token(shutdown);
        server = if config.allowed_hosts.is_empty() {
            server.disable_allowed_hosts()
        } else {
            server.with_allowed_hosts(config.allowed_hosts.clone())
        };
        server = server.with_allowed_origins(config.allowed_origins.clone()).enforce_origin_validation();
        let mut sessions = LocalSessionManager::default();
        sessions.session_config.keep_alive = Some(config.session_idle_timeout);
        let front = McpFront { hub: hub.clone() };
        let service = StreamableHttpService::new(move || Ok(front.clone()), Arc::new(sessions), server);
        let bindings = Bindings::new(config.session_idle_timeout, config.max_sessions);
        Arc::new(McpGateway { hub, auth, service, bindings })
    }

    /// Refuses before rmcp sees the request, answering with the request's own id when
    /// its body is small enough to read (clients match answers to requests by id; the
    /// official Rust SDK waits forever for an answer to a request without one).
    async fn admit(&self, request: Request<Body>) -> Result<(Request<Body>, McpCaller, Option<String>), Response> {
        // The head alone across the awaits: a body is not `Sync`.
        let (parts, body) = request.into_parts();
        let checked = async {
            let caller = self.authenticate(&parts.headers).await?;
            let session = self.check_session(&parts.headers, &caller)?;
            self.check_size(&parts.headers)?;
            Ok::<_, ApiError>((caller, session))
        };
        let outcome = checked.await;
        let request = Request::from_parts(parts, body);
        match outcome {
            Ok((caller, session)) => Ok((request, caller, session)),
            Err(error) => {
                let id = request_id(request).await;
                Err(refusal(&error, id))
            }
        }
    }

    /// The client sessions bound now (idle ones expired first), for `/metrics`.
    pub fn sessions(&self) -> u64 {
        self.bindings.len()
    }

    async fn serve(&self, request: Request<Body>) -> Result<Response, ApiError> {
        let (mut request, caller, session) = match self.admit(request).await {
            Ok(admitted) => admitted,
            Err(refused) => return Ok(refused),
        };
        let deleting = request.method() == Method::DELETE;
        let declared_json = content_type_is_json(request.headers());
        request.extensions_mut().insert(caller.clone());
        let response = self.service.handle(request).await;
        let status = response.status();
        match (&session, response.headers().get(SESSION_ID).and_then(|v| v.to_str().ok())) {
            (None, Some(created)) if status.is_success() => {
                self.bindings.bind(
                    created,
                    Owner { tenant_id: caller.tenant.id.as_str().into(), key_id: caller.key_id.clone() },
                );
            }
            (Some(id), _) if deleting && status.is_success() => self.bindings.unbind(id),
            _ => {}
        }
        if deleting && status == http::StatusCode::ACCEPTED {
            // rmcp answers a session's end with 202; clients expect 200 or 204.
            let (mut parts, body) = response.into_parts();
            parts.status = http::StatusCode::NO_CONTENT;
            drop(body);
            return Ok(Response::from_parts(parts, Body::empty()));
        }
        if !status.is_success() && is_plain_text(response.headers()) {
            let text = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            return Err(errors::transport_refusal(status, &String::from_utf8_lossy(&text), declared_json));
        }
        Ok(response.map(Body::new))
    }

    async fn authenticate(&self, headers: &HeaderMap) -> Result<McpCaller, ApiError> {
        let value = headers.get(header::AUTHORIZATION).ok_or_else(ApiError::missing_key)?;
        let secret = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or_else(ApiError::invalid_key)?;
        self.auth.authenticate(secret).await
    }

    /// The session the request names, if any, after checking it is the caller's.
    fn check_session(&self, headers: &HeaderMap, caller: &McpCaller) -> Result<Option<String>, ApiError> {
        let stateless = headers.get(PROTOCOL_VERSION).is_some_and(|v| v == STATELESS);
        let Some(id) = headers.get(SESSION_ID).filter(|_| !stateless) else { return Ok(None) };
        let id = id.to_str().map_err(|_| not_found())?;
        match self.bindings.check(id, &caller.tenant.id, &caller.key_id) {
            Check::Ok => Ok(Some(id.to_owned())),
            Check::NotFound => {
                telemetry::session_rejected();
                Err(not_found())
            }
        }
    }

    /// Refuses a declared body over the limit before reading it (rmcp also counts the
    /// bytes of a chunked one as they arrive).
    fn check_size(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        match declared {
            Some(n) if n > self.hub.config.max_body_bytes => Err(ApiError::new(
                ErrorCode::RequestTooLarge,
                format!("the body is {n} bytes; at most {} are accepted", self.hub.config.max_body_bytes),
            )),
            _ => Ok(()),
        }
    }
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::McpSessionNotFound, "no such MCP session: initialize a new one")
}

fn content_type_is_json(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
}

fn is_plain_text(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_none_or(|v| v.as_bytes().starts_with(b"text/plain"))
}

/// The largest body read to find the id of a request refused before rmcp.
const ID_READ_LIMIT: usize = 64 * 1024;

/// The JSON-RPC id of a refused request, if its body is a small JSON object with one.
async fn request_id(request: Request<Body>) -> Option<serde_json::Value> {
    let small = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|n| n <= ID_READ_LIMIT);
    if !small {
        return None;
    }
    let body = http_body_util::Limited::new(request.into_body(), ID_READ_LIMIT).collect().await.ok()?.to_bytes();
    let value: serde_json::Value = serde_json::from_slice(&body).ok()?;
    value.get("id").filter(|id| id.is_string() || id.is_number()).cloned()
}

fn refusal(error: &ApiError, id: Option<serde_json::Value>) -> Response {
    let (parts, body): (_, Bytes) = errors::response(error, id).into_parts();
    Response::from_parts(parts, Body::from(body)).into_response()
}

/// The `/mcp` route's handler.
pub async fn handle(State(gateway): State<Arc<McpGateway>>, request: Request<Body>) -> Response {
    match gateway.serve(request).await {
        Ok(response) => response,
        Err(error) => refusal(&error, None),
    }
}
