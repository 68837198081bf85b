//! obleth's data plane: the OpenAI-compatible surface on `:8080`.
//!
//! [`router`] builds the axum router over a [`Gateway`], which holds the shared pieces
//! of the hot path: identity and model caches, the admission policy, the upstream
//! client and the usage sink. The binary constructs a `Gateway` from concrete
//! implementations; nothing here chooses one.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use obleth_budget::Budget;
use obleth_core::{Admission, UsageRecord, UsageSink};
use secrecy::SecretString;
use serde_json::json;

pub mod error;
pub mod estimate;
pub mod identity;
pub mod limits;
mod proxy;
pub mod registry;
pub mod sse;
pub mod telemetry;
mod tracker;
pub mod upstream;

pub use error::ApiError;
pub use identity::{Identity, IdentityConfig};
pub use proxy::{ADMISSION_HEADER, REQUEST_ID_HEADER};
pub use registry::Registry;

/// The proxied OpenAI routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    ChatCompletions,
    Completions,
    Embeddings,
}

impl Route {
    /// What the tokenizer counts in the request body.
    pub fn request_kind(self) -> estimate::RequestKind {
        match self {
            Route::ChatCompletions => estimate::RequestKind::Chat,
            Route::Completions => estimate::RequestKind::Completion,
            Route::Embeddings => estimate::RequestKind::Embedding,
        }
    }

    /// Metric and ledger label.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::ChatCompletions => "chat_completions",
            Route::Completions => "completions",
            Route::Embeddings => "embeddings",
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
    pub default_upstream: Option<String>,
    /// Credential for upstreams whose model entry has no `api_key`.
    pub upstream_api_key: Option<SecretString>,
    /// Forward the client's own `Authorization` when no upstream credential is set.
    pub forward_client_authorization: bool,
    /// Time allowed until the upstream's response headers (and, for non-streamed
    /// responses, the whole body).
    pub response_timeout: Duration,
    /// Longest silence tolerated inside a streamed response.
    pub stream_idle_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_response_bytes: usize,
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
            forward_client_authorization: false,
            response_timeout: Duration::from_secs(600),
            stream_idle_timeout: Duration::from_secs(120),
            max_body_bytes: 4 * 1024 * 1024,
            max_response_bytes: 64 * 1024 * 1024,
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

/// The data-plane router.
pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route(
            "/v1/chat/completions",
            post(|s: State<Arc<Gateway>>, r: Request| proxy::handle(s, Route::ChatCompletions, r)),
        )
        .route("/v1/completions", post(|s: State<Arc<Gateway>>, r: Request| proxy::handle(s, Route::Completions, r)))
        .route("/v1/embeddings", post(|s: State<Arc<Gateway>>, r: Request| proxy::handle(s, Route::Embeddings, r)))
        .route("/v1/models", get(list_models))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|req: Request| async move { ApiError::not_found_route(req.uri().path()).into_response() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed().into_response() })
        .with_state(gateway)
}

/// `GET /v1/models`: the enabled models the caller's tenant may use.
async fn list_models(State(gw): State<Arc<Gateway>>, headers: http::HeaderMap) -> Response {
    let result = async {
        let caller = proxy::authenticate(&gw, &headers).await?;
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

/// Serves `router` on `listener` (TCP_NODELAY on every connection) until `shutdown`
/// resolves, then drains open connections.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        // Without it, small SSE chunks wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
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
