//! obleth's data plane: the OpenAI-compatible surface on `:8080`.
//!
//! [`router`] builds the axum router over a [`Gateway`], which holds the shared pieces
//! of the hot path: identity and model caches, the admission policy, the upstream
//! client and the usage sink. The binary constructs a `Gateway` from concrete
//! implementations; nothing here chooses one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use obleth_budget::Budget;
use obleth_core::{Admission, UsageRecord, UsageSink};
use secrecy::SecretString;
use serde_json::json;

mod answer;
mod charge;
pub mod codec;
pub mod error;
pub mod estimate;
pub mod identity;
pub mod limits;
pub mod listener;
mod pipeline;
mod proxy;
pub mod registry;
pub mod sse;
mod stream;
pub mod telemetry;
mod tracker;
pub mod upstream;
pub mod usage;

pub use error::{ApiError, ErrorCode};
pub use identity::{Identity, IdentityConfig};
pub use registry::Registry;

/// Response header telling the client how its request was admitted.
pub const ADMISSION_HEADER: &str = "x-obleth-admission";
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The proxied OpenAI routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    ChatCompletions,
    Completions,
    Embeddings,
}

impl Route {
    /// Metric and ledger label.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::ChatCompletions => "chat_completions",
            Route::Completions => "completions",
            Route::Embeddings => "embeddings",
        }
    }

    /// How the route's requests are read and its answers counted.
    pub fn codec(self) -> &'static dyn codec::Codec {
        match self {
            Route::ChatCompletions => &codec::CHAT,
            Route::Completions => &codec::COMPLETIONS,
            Route::Embeddings => &codec::EMBEDDINGS,
        }
    }

    /// Path below the upstream's `/v1`.
    pub fn upstream_path(self) -> &'static str {
        match self {
            Route::ChatCompletions => "/chat/completions",
            Route::Completions => "/completions",
            Route::Embeddings => "/embeddings",
        }
    }
}

/// Data-plane settings (validated by the binary's config loader).
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Upstream for models whose registry entry has no `api_base`.
    pub default_upstream: Option<obleth_core::upstream::ApiBase>,
    /// Credential for the default upstream, sent when the model has no `api_key` of its
    /// own and its requests go to `default_upstream` (never to another model's `api_base`).
    pub upstream_api_key: Option<SecretString>,
    /// Where requests may go (checked before sending and at every connection).
    pub upstream_policy: Arc<obleth_core::upstream::UpstreamPolicy>,
    /// Forward the client's own `Authorization` when no upstream credential is set.
    pub forward_client_authorization: bool,
    /// Time allowed until the upstream's response headers (and, for non-streamed
    /// responses, the whole body).
    pub response_timeout: Duration,
    /// Longest silence tolerated inside a streamed response.
    pub stream_idle_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_response_bytes: usize,
    /// Longest server-sent event of a streamed response (`limits.max_sse_event_bytes`).
    pub max_sse_event_bytes: usize,
    /// Tokenizer for models whose upstream name does not tell (`Encoding::for_model`).
    pub default_encoding: estimate::Encoding,
    /// Output tokens assumed at admission when a request sets no `max_tokens`.
    pub default_output_tokens: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            default_upstream: None,
            upstream_api_key: None,
            upstream_policy: Arc::default(),
            forward_client_authorization: false,
            response_timeout: Duration::from_secs(600),
            stream_idle_timeout: Duration::from_secs(120),
            max_body_bytes: 4 * 1024 * 1024,
            max_response_bytes: 64 * 1024 * 1024,
            max_sse_event_bytes: sse::DEFAULT_MAX_EVENT,
            default_encoding: estimate::Encoding::Cl100kBase,
            default_output_tokens: 512,
        }
    }
}

/// Shared state of the hot path.
pub struct Gateway {
    pub config: GatewayConfig,
    pub identity: Arc<Identity>,
    pub registry: Arc<Registry>,
    pub admission: Arc<dyn Admission>,
    pub budget: Arc<Budget>,
    pub sink: Arc<dyn UsageSink>,
    pub client: upstream::HttpClient,
}

/// The data plane's routes. The router is built from this table and [`openapi`]
/// documents it (a test keeps the two equal).
fn routes() -> Vec<(&'static str, MethodRouter<Arc<Gateway>>)> {
    vec![
        (
            "/v1/chat/completions",
            post(|s: State<Arc<Gateway>>, r: Request| pipeline::handle(s, Route::ChatCompletions, r)),
        ),
        ("/v1/completions", post(|s: State<Arc<Gateway>>, r: Request| pipeline::handle(s, Route::Completions, r))),
        ("/v1/embeddings", post(|s: State<Arc<Gateway>>, r: Request| pipeline::handle(s, Route::Embeddings, r))),
        ("/v1/models", get(list_models)),
        ("/v1/openapi.json", get(|| async { axum::Json(openapi()) })),
        ("/healthz", get(|| async { "ok" })),
    ]
}

/// Every path the data-plane router serves.
pub fn route_paths() -> Vec<&'static str> {
    routes().into_iter().map(|(p, _)| p).collect()
}

/// The data-plane router.
pub fn router(gateway: Arc<Gateway>) -> Router {
    let mut router = Router::new();
    for (path, route) in routes() {
        router = router.route(path, route);
    }
    router
        .fallback(|req: Request| async move { ApiError::not_found_route(req.uri().path()).into_response() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed().into_response() })
        .with_state(gateway)
}

/// The id of a data-plane request: made at the edge (the listener, see
/// [`listener::ConnectionLimits::request_ids`]), carried in the request's extensions to the
/// ledger row, and sent back as `x-request-id` on every answer (unknown URLs and refusals
/// included).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// A new request id (a UUIDv7: ordered by time).
pub fn new_request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Sets `x-request-id` on a response.
pub fn set_request_id(res: &mut Response, id: &str) {
    if let Ok(v) = http::HeaderValue::from_str(id) {
        res.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
}

/// The OpenAPI 3 document of the data plane, served at `GET /v1/openapi.json`.
pub fn openapi() -> serde_json::Value {
    let error = json!({ "$ref": "#/components/responses/Error" });
    let errors = |codes: &[&str]| -> serde_json::Map<String, serde_json::Value> {
        codes.iter().map(|c| ((*c).to_owned(), error.clone())).collect()
    };
    let proxied = |summary: &str, id: &str, streams: bool| {
        let mut responses = errors(&["400", "401", "403", "404", "413", "429", "499", "502", "503", "504"]);
        let mut content = json!({ "application/json": { "schema": { "type": "object" } } });
        if streams {
            content["text/event-stream"] = json!({ "schema": { "type": "string", "description": "Server-sent events, ending with data: [DONE]" } });
        }
        responses.insert("200".into(), json!({ "description": "The upstream's answer", "content": content }));
        json!({ "post": {
            "summary": summary,
            "operationId": id,
            "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ProxiedRequest" } } } },
            "responses": responses,
            "security": [{ "api_key": [] }],
        }})
    };
    let mut models_responses = errors(&["401", "403", "503"]);
    models_responses.insert(
        "200".into(),
        json!({ "description": "The enabled models the caller's tenant may use", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ModelList" } } } }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "obleth data plane (OpenAI-compatible)",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Requests are forwarded to the model's upstream after authentication (an obleth key as a \
                bearer token), budget checks and fairshare admission. Errors are \
                `{\"error\":{\"message\",\"type\",\"param\",\"code\"}}`.",
        },
        "paths": {
            "/v1/chat/completions": proxied("Chat completion (streamed with \"stream\": true)", "createChatCompletion", true),
            "/v1/completions": proxied("Text completion (streamed with \"stream\": true)", "createCompletion", true),
            "/v1/embeddings": proxied("Embeddings", "createEmbedding", false),
            "/v1/models": { "get": {
                "summary": "List models", "operationId": "listModels",
                "responses": models_responses, "security": [{ "api_key": [] }],
            }},
            "/v1/openapi.json": { "get": {
                "summary": "This document", "operationId": "openapi", "security": [],
                "responses": { "200": { "description": "An OpenAPI 3 document", "content": { "application/json": { "schema": { "type": "object" } } } } },
            }},
            "/healthz": { "get": {
                "summary": "Liveness", "operationId": "healthz", "security": [],
                "responses": { "200": { "description": "ok", "content": { "text/plain": { "schema": { "type": "string" } } } } },
            }},
        },
        "components": {
            "schemas": {
                "ProxiedRequest": {
                    "type": "object", "required": ["model"], "additionalProperties": true,
                    "description": "An OpenAI request body; model is the registry's public name, the rest is forwarded.",
                    "properties": {
                        "model": { "type": "string" },
                        "stream": { "type": "boolean" },
                        "max_tokens": { "type": "integer", "description": "Bounds the output tokens reserved at admission" },
                    },
                },
                "ModelList": {
                    "type": "object", "required": ["object", "data"],
                    "properties": {
                        "object": { "type": "string", "enum": ["list"] },
                        "data": { "type": "array", "items": {
                            "type": "object", "required": ["id", "object", "created", "owned_by"],
                            "properties": {
                                "id": { "type": "string" }, "object": { "type": "string" },
                                "created": { "type": "integer" }, "owned_by": { "type": "string" },
                            },
                        }},
                    },
                },
                "Error": {
                    "type": "object", "required": ["error"],
                    "properties": { "error": {
                        "type": "object", "required": ["message", "type", "param", "code"],
                        "properties": {
                            "message": { "type": "string" }, "type": { "type": "string" },
                            "param": { "type": ["string", "null"] }, "code": { "type": ["string", "null"] },
                        },
                    }},
                },
            },
            "responses": { "Error": {
                "description": "An error in the OpenAI shape",
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
            }},
            "securitySchemes": { "api_key": { "type": "http", "scheme": "bearer", "description": "An obleth key (obl_...)" } },
        },
    })
}

/// `GET /v1/models`: the enabled models the caller's tenant may use.
async fn list_models(State(gw): State<Arc<Gateway>>, headers: http::HeaderMap) -> Response {
    let result = async {
        let caller = pipeline::authenticate(&gw.identity, &headers).await?;
        let models = gw.registry.list_enabled().await?;
        let data: Vec<_> = models
            .iter()
            .filter(|m| caller.tenant.may_use(&m.model_name))
            .map(|m| json!({"id": m.model_name, "object": "model", "created": m.created_at / 1000, "owned_by": "obleth"}))
            .collect();
        Ok::<_, ApiError>(axum::Json(json!({"object": "list", "data": data})))
    };
    match result.await {
        Ok(body) => body.into_response(),
        Err(e) => e.into_response(),
    }
}

// === usage sinks ===

/// Logs each usage record at debug level (the default until a ledger is configured).
pub struct TracingSink;

impl UsageSink for TracingSink {
    fn record(&self, r: UsageRecord) {
        tracing::debug!(
            target: "obleth::usage",
            request_id = %r.request_id,
            tenant = r.tenant_id.as_deref().unwrap_or("-"),
            model = r.requested_model.as_deref().unwrap_or("-"),
            status = r.status,
            class = r.admission_class.as_str(),
            input_tokens = r.usage.map(|u| u.input_tokens).unwrap_or(0),
            output_tokens = r.usage.map(|u| u.output_tokens).unwrap_or(0),
            "request finished"
        );
    }
}

/// Keeps records in memory; for tests and the demo's summary.
#[derive(Default)]
pub struct MemorySink {
    records: Mutex<Vec<UsageRecord>>,
}

impl MemorySink {
    pub fn take(&self) -> Vec<UsageRecord> {
        std::mem::take(&mut *self.records.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn len(&self) -> usize {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl UsageSink for MemorySink {
    fn record(&self, record: UsageRecord) {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).push(record);
    }
}
