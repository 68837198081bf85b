//! The demo's contention: a noisy batch tenant and a light interactive one sending chat
//! requests through the gateway's data plane, as clients would, so that a newcomer sees
//! the scheduler share a full pool within a minute of `obleth demo`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// One tenant's load.
#[derive(Debug, Clone)]
pub struct Load {
    pub key: String,
    /// Requests kept in flight (or waiting) at once.
    pub concurrency: usize,
    pub max_tokens: u32,
    /// Think time between a response and the next request of one client.
    pub pause: Duration,
}

/// Runs `load` against the data plane at `data` until `stop` is cancelled.
pub fn spawn(data: SocketAddr, model: &str, load: Load, stop: CancellationToken) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let url = format!("http://{data}/v1/chat/completions");
    let body = Bytes::from(
        json!({
            "model": model,
            "stream": true,
            "max_tokens": load.max_tokens,
            "messages": [{"role": "user", "content": "Summarise the quarterly report in a few sentences."}],
        })
        .to_string(),
    );
    for _ in 0..load.concurrency {
        let (client, url, body, key, stop) =
            (client.clone(), url.clone(), body.clone(), load.key.clone(), stop.clone());
        let pause = load.pause;
        tokio::spawn(async move {
            loop {
                let one = async {
                    let req = http::Request::post(&url)
                        .header(http::header::AUTHORIZATION, format!("Bearer {key}"))
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .body(Full::new(body.clone()))
                        .ok()?;
                    let resp = client.request(req).await.ok()?;
                    resp.into_body().collect().await.ok()
                };
                let ok = tokio::select! {
                    r = one => r.is_some(),
                    _ = stop.cancelled() => return,
                };
                // A refused or failed request backs off a little more, without a storm.
                let wait = if ok { pause } else { pause.max(Duration::from_millis(500)) };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => return,
                }
            }
        });
    }
}
