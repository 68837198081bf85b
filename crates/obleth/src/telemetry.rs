//! Logging and the Prometheus endpoint (`:9091/metrics`), optionally behind a bearer token.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use obleth_gateway::telemetry::names;
use obleth_gateway::{ApiError, ErrorCode};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// Installs the log subscriber. `level` is an `EnvFilter` directive; `RUST_LOG` wins.
pub fn init_logging(level: &str) {
    let directives = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| level.to_owned());
    let filter = tracing_subscriber::EnvFilter::new(quiet_sdk(&directives));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).try_init();
}

/// `directives` with the MCP SDK at `error` unless they name it: at `warn` it logs every
/// JSON-RPC error it answers (a client asking for unknown tools floods the log), at
/// `info` every session it opens, and at `debug` every message whole, tool arguments
/// and results (which may hold an upstream's secrets or a user's data) included.
fn quiet_sdk(directives: &str) -> String {
    if directives.contains("rmcp") { directives.to_owned() } else { format!("{directives},rmcp=error") }
}

/// Installs the global metrics recorder and returns the handle that renders it.
pub fn install_recorder() -> anyhow::Result<PrometheusHandle> {
    // Latency buckets from 100 µs to 5 min: gateway overhead lives at the low end,
    // queue waits and long generations at the high end.
    const BUCKETS: &[f64] = &[
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        60.0, 120.0, 300.0,
    ];
    let mut builder = PrometheusBuilder::new();
    // The ledger's insert time too: a histogram (not a summary) adds up across pods.
    let others = ["obleth_ledger_insert_duration_seconds"].iter().chain(obleth_mcp::telemetry::HISTOGRAMS);
    for name in names::HISTOGRAMS.iter().chain(others) {
        builder = builder.set_buckets_for_metric(Matcher::Full((*name).to_owned()), BUCKETS)?;
    }
    let handle = builder.install_recorder()?;
    // Histograms are drained into their buckets by upkeep; do it off the request path.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// The metrics router: `GET /metrics` answers `render()`. With a `token`, only requests
/// that present it (`Authorization: Bearer <token>`, compared in constant time) get an
/// answer; the others get 401 in the OpenAI error shape.
pub fn router(render: impl Fn() -> String + Clone + Send + Sync + 'static, token: Option<SecretString>) -> Router {
    Router::new()
        .fallback(
            |req: axum::extract::Request| async move { ApiError::not_found_route(req.uri().path()).into_response() },
        )
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed().into_response() })
        .route(
            "/metrics",
            get(move |headers: HeaderMap| {
                let render = render.clone();
                let token = token.clone();
                async move {
                    if let Some(token) = &token
                        && !presents(&headers, token)
                    {
                        return unauthorized();
                    }
                    render().into_response()
                }
            }),
        )
}

/// Whether the request carries `Authorization: Bearer <token>` (as the admin API checks
/// its token).
fn presents(headers: &HeaderMap, token: &SecretString) -> bool {
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    !presented.is_empty() && bool::from(presented.as_bytes().ct_eq(token.expose_secret().as_bytes()))
}

fn unauthorized() -> Response {
    let message = "A valid metrics bearer token is required (metrics.token).";
    let mut res = ApiError::new(ErrorCode::InvalidMetricsToken, message).into_response();
    res.headers_mut().insert(http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}

/// Logs where a listener ended up.
pub fn announce(what: &str, addr: SocketAddr) {
    tracing::info!(%addr, "{what} listening");
}

#[cfg(test)]
mod tests {
    use super::quiet_sdk;

    #[test]
    fn the_mcp_sdk_logs_errors_only_unless_named() {
        assert_eq!(quiet_sdk("debug"), "debug,rmcp=error");
        assert_eq!(quiet_sdk("info,obleth=debug"), "info,obleth=debug,rmcp=error");
        assert_eq!(quiet_sdk("debug,rmcp=trace"), "debug,rmcp=trace", "an operator who names it gets it");
    }
}
