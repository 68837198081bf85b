//! Test harness: runs a mock on 127.0.0.1:0 and talks to it over real HTTP.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use obleth_mock::{MockConfig, StatsSnapshot};
use serde_json::Value;
use tokio::sync::oneshot;

/// A running mock; shut down when dropped.
pub struct Mock {
    pub addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// A config with small, test-friendly latencies.
pub fn fast() -> MockConfig {
    MockConfig {
        ttft: Duration::from_millis(2),
        itl: Duration::from_millis(1),
        stall_duration: Duration::from_millis(100),
        ..MockConfig::default()
    }
}

/// What a streamed request produced.
#[derive(Debug)]
pub struct Streamed {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The JSON of each `data:` event, in order, excluding `[DONE]`.
    pub events: Vec<Value>,
    pub done: bool,
    /// The body ended with an error (connection cut).
    pub cut: bool,
}

impl Mock {
    pub async fn start(config: MockConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(obleth_mock::serve(listener, config, async {
            let _ = stopped.await;
        }));
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self { addr, client, stop, server }
    }

    /// Triggers graceful shutdown and waits for `serve` to return.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.stop.send(());
        self.server.await.unwrap()
    }

    fn request(&self, method: &str, path: &str, body: Bytes, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(Full::new(body)).unwrap()
    }

    /// Sends a request and reads the whole body. Errors (connection cut) are returned.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Bytes,
        headers: &[(&str, &str)],
    ) -> Result<(StatusCode, HeaderMap, Bytes), String> {
        let resp = self
            .client
            .request(self.request(method, path, body, headers))
            .await
            .map_err(|e| format!("request: {e:?}"))?;
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.map_err(|e| format!("body: {e:?}"))?.to_bytes();
        Ok((parts.status, parts.headers, bytes))
    }

    pub async fn post(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> (StatusCode, Value) {
        let (status, _, bytes) = self.send("POST", path, Bytes::from(body.to_string()), headers).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Bytes) {
        let (status, _, bytes) = self.send("GET", path, Bytes::new(), &[]).await.unwrap();
        (status, bytes)
    }

    /// Sends a request and returns as soon as the response head arrives, leaving the body
    /// unread; dropping the body hangs up.
    pub async fn open(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> (StatusCode, Incoming) {
        let resp =
            self.client.request(self.request("POST", path, Bytes::from(body.to_string()), headers)).await.unwrap();
        (resp.status(), resp.into_body())
    }

    /// Sends a streamed request and parses the SSE events until the end or a cut.
    pub async fn stream(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> Streamed {
        let resp =
            self.client.request(self.request("POST", path, Bytes::from(body.to_string()), headers)).await.unwrap();
        let (parts, mut body) = resp.into_parts();
        let mut raw = Vec::new();
        let mut cut = false;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => raw.extend_from_slice(f.data_ref().map_or(&[][..], |d| d.as_ref())),
                Err(_) => {
                    cut = true;
                    break;
                }
            }
        }
        let text = String::from_utf8(raw).unwrap();
        let mut events = Vec::new();
        let mut done = false;
        for event in text.split_terminator("\n\n") {
            let data = event.strip_prefix("data: ").unwrap_or_else(|| panic!("bad event {event:?}"));
            assert!(!done, "event after [DONE]");
            if data == "[DONE]" {
                done = true;
            } else {
                events.push(serde_json::from_str(data).unwrap());
            }
        }
        Streamed { status: parts.status, headers: parts.headers, events, done, cut }
    }

    pub async fn stats(&self) -> StatsSnapshot {
        let (status, bytes) = self.get("/mock/stats").await;
        assert_eq!(status, StatusCode::OK);
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Polls `/mock/stats` until `pred` holds; panics after a generous bound. This waits for
    /// an event, it does not assert on how long the event took.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&StatsSnapshot) -> bool) -> StatsSnapshot {
        for _ in 0..1000 {
            let s = self.stats().await;
            if pred(&s) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}: {:?}", self.stats().await);
    }
}

/// A chat request body with one user message.
pub fn chat(content: &str) -> Value {
    serde_json::json!({
        "model": "test-model",
        "messages": [{"role": "user", "content": content}],
    })
}

/// Merges `extra`'s fields into `base`.
pub fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}
