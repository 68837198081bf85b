//! Logging and the Prometheus endpoint (`:9091/metrics`).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use obleth_gateway::telemetry::names;

/// Installs the log subscriber. `level` is an `EnvFilter` directive; `RUST_LOG` wins.
pub fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).try_init();
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
    for name in names::HISTOGRAMS {
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

/// The metrics router. `before_render` refreshes gauges that are sampled, not counted.
pub fn router(handle: PrometheusHandle, before_render: impl Fn() + Clone + Send + Sync + 'static) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            let before_render = before_render.clone();
            async move {
                before_render();
                handle.render()
            }
        }),
    )
}

/// Logs where a listener ended up.
pub fn announce(what: &str, addr: SocketAddr) {
    tracing::info!(%addr, "{what} listening");
}
