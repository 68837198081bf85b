//! obleth's bundled mock LLM backend: an OpenAI-compatible server that models a saturating
//! GPU pool, for development, demos, tests and benchmarks.
//!
//! The mock serves `POST /v1/chat/completions`, `POST /v1/completions`,
//! `POST /v1/embeddings`, `GET /v1/models`, `GET /health`, `GET /mock/stats` and
//! `POST /mock/reset`. Its timing (queueing for `max_num_seqs` slots, time to first token,
//! inter-token latency) is what fairness and overhead benchmarks measure the gateway against,
//! so it is kept faithful: see the `engine` module for the schedule and `tokens` for how prompts are
//! counted and output is generated.
//!
//! Per-request headers make faults and timings deterministic for tests:
//! `x-mock-fault: error | stall | abort | no-usage` (comma-separated, overrides the random
//! fault rates for that request), `x-mock-ttft-ms`, `x-mock-itl-ms`.
//!
//! Token counting is deterministic and whitespace-based (the full rule heads `tokens.rs`):
//! a chat prompt counts the words of every message's text, plus 3 per message, plus 3; a
//! completions prompt or embeddings input counts its words, or the length of a token-id
//! array; every output token is exactly one word. `GET /mock/stats` returns a
//! [`StatsSnapshot`].
//!
//! Choices beyond the first (`n > 1`, or several completion prompts) are supported: each is
//! one sequence (one slot), has its own text, and `completion_tokens = choices × length`.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio_util::sync::CancellationToken;

mod engine;
mod error;
mod handlers;
mod mcp;
mod openai;
mod pool;
mod tokens;

pub use error::ApiError;
pub use handlers::{FAULT_HEADER, ITL_HEADER, TTFT_HEADER};
pub use pool::StatsSnapshot;

/// Request bodies up to this size are accepted; long-context benchmark prompts exceed axum's
/// 2 MiB default.
const BODY_LIMIT: usize = 64 << 20;

/// How the mock behaves. Every field has a default suited to local development.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Concurrent sequences "on the GPU"; 0 = unlimited.
    pub max_num_seqs: usize,
    /// Requests allowed to wait beyond capacity (0 = unbounded); more get a 503.
    pub max_waiting: usize,
    /// Base time to first token after the request gets its sequence slot.
    pub ttft: Duration,
    /// Added to `ttft` per prompt token.
    pub prefill_per_token: Duration,
    /// Decode time per output token.
    pub itl: Duration,
    /// Output length when the request sets neither `max_tokens` nor `max_completion_tokens`.
    pub default_output_tokens: u32,
    /// Embedding length when the request does not set `dimensions`.
    pub embedding_dims: usize,
    /// Models listed by `GET /v1/models`; requests may name any model and get it echoed back.
    pub models: Vec<String>,
    /// Probability that a request gets an injected 500.
    pub error_rate: f64,
    /// Probability that a request stalls (headers only, for streams) for `stall_duration`.
    pub stall_rate: f64,
    /// Probability that a response is cut off about halfway.
    pub abort_rate: f64,
    /// Never report usage.
    pub omit_usage: bool,
    /// How long a stall lasts before the connection is closed.
    pub stall_duration: Duration,
    /// Seeds the fault RNG and the output text.
    pub seed: u64,
    /// How long the MCP server takes to answer each of its lists (`tools/list`, …): a
    /// slow upstream for the MCP gateway's listing benchmark.
    pub mcp_list_delay: Duration,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            max_num_seqs: 64,
            max_waiting: 0,
            ttft: Duration::from_millis(20),
            prefill_per_token: Duration::ZERO,
            itl: Duration::from_millis(10),
            default_output_tokens: 16,
            embedding_dims: 16,
            models: vec!["mock-model".to_owned()],
            error_rate: 0.0,
            stall_rate: 0.0,
            abort_rate: 0.0,
            omit_usage: false,
            stall_duration: Duration::from_secs(300),
            seed: 0,
            mcp_list_delay: Duration::ZERO,
        }
    }
}

/// State shared by all requests of one mock instance.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: MockConfig,
    pub(crate) pool: pool::Pool,
    pub(crate) stats: Arc<pool::Stats>,
    pub(crate) rng: Mutex<StdRng>,
    pub(crate) next_id: AtomicU64,
    /// Unix time the mock started; the `created` of every listed model.
    pub(crate) started: u64,
    /// Cancelled on shutdown so that injected stalls end early.
    pub(crate) shutdown: CancellationToken,
}

/// The mock's router, with its state (pool, counters, RNG) inside. Each call makes an
/// independent mock.
pub fn router(config: MockConfig) -> Router {
    build(config, CancellationToken::new())
}

fn build(config: MockConfig, shutdown: CancellationToken) -> Router {
    let stats = Arc::new(pool::Stats::default());
    let shared = Arc::new(Shared {
        pool: pool::Pool::new(config.max_num_seqs, config.max_waiting, Arc::clone(&stats)),
        rng: Mutex::new(StdRng::seed_from_u64(config.seed)),
        next_id: AtomicU64::new(1),
        started: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        stats,
        config,
        shutdown,
    });
    Router::new()
        .route("/v1/chat/completions", post(handlers::chat))
        .route("/v1/completions", post(handlers::completions))
        .route("/v1/embeddings", post(handlers::embeddings))
        .route("/v1/models", get(handlers::models))
        .route("/health", get(handlers::health))
        .route("/mock/stats", get(handlers::stats))
        .route("/mock/reset", post(handlers::reset))
        .route_service("/mcp", mcp::service(shared.config.mcp_list_delay, shared.shutdown.clone()))
        .fallback(handlers::not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared)
}

/// Serves the mock on `listener` until `shutdown` completes, then drains in-flight requests
/// (injected stalls end at once; token streams run to their end).
///
/// Every accepted socket gets `TCP_NODELAY`: SSE events are small writes, and Nagle's
/// algorithm would hold each one back behind the previous one's ACK, distorting the very
/// inter-token timing the mock exists to reproduce.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: MockConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let token = CancellationToken::new();
    let app = build(config, token.clone());
    let listener = listener.tap_io(|tcp| {
        // Failure leaves the socket usable, only slower; not worth dropping the connection.
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            token.cancel();
        })
        .await
}
