//! The harness: a mock backend, a gateway wired by `obleth::server::start`, an admin
//! client, and helpers to send requests and read streams.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use obleth::client::{AdminConn, call};
use obleth::config::Config;
use obleth::server::{Listeners, Running, start};
use obleth_gateway::MemorySink;
use obleth_mock::{MockConfig, StatsSnapshot};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdefXYZ";

pub struct Harness {
    pub data: SocketAddr,
    pub admin: AdminConn,
    pub mock: SocketAddr,
    pub sink: Arc<MemorySink>,
    pub key: String,
    pub http: Client<HttpConnector, Full<Bytes>>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
    _running: Running,
}

/// Mock timings small enough for fast tests.
pub fn fast_mock() -> MockConfig {
    MockConfig {
        ttft: Duration::from_millis(2),
        itl: Duration::from_millis(1),
        stall_duration: Duration::from_secs(30),
        ..MockConfig::default()
    }
}

impl Harness {
    pub async fn start(mock: MockConfig) -> Harness {
        Self::with_env(mock, &[]).await
    }

    /// Starts a mock and a gateway configured by `env` (on top of test defaults), and
    /// seeds a tenant `t1`, the model `mock-model` and a key.
    pub async fn with_env(mock: MockConfig, env: &[(&str, &str)]) -> Harness {
        Self::with_config(mock, "", env).await
    }

    /// As [`Harness::with_env`], with a configuration file's text under the variables.
    pub async fn with_config(mock: MockConfig, toml: &str, env: &[(&str, &str)]) -> Harness {
        let shutdown = CancellationToken::new();
        let mock_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mock_addr = mock_listener.local_addr().unwrap();
        tokio::spawn(obleth_mock::serve(mock_listener, mock, shutdown.clone().cancelled_owned()));

        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("cp.db").display());
        let upstream = format!("http://{mock_addr}/v1");
        let mut vars: Vec<(String, String)> = vec![
            ("OBLETH_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
            ("OBLETH_DATABASE_URL".into(), db),
            ("OBLETH_UPSTREAM_BASE_URL".into(), upstream),
        ];
        vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let config = Config::from_parts(toml, "test", vars).unwrap();
        let listeners = Listeners {
            // Two data-plane threads, as on a small production machine.
            data: obleth::server::bind_data("127.0.0.1:0".parse().unwrap(), 2).unwrap(),
            admin: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            metrics: None,
        };
        let sink = Arc::new(MemorySink::default());
        let running = start(&config, listeners, Some(sink.clone()), shutdown.clone()).await.unwrap();
        let admin = AdminConn { admin_url: format!("http://{}", running.admin_addr), admin_token: ADMIN_TOKEN.into() };
        call(&admin, "POST", "/api/v1/tenants", Some(json!({"name": "t1", "weight": 3}))).await.unwrap();
        call(
            &admin,
            "POST",
            "/api/v1/models",
            Some(json!({"model_name": "mock-model", "upstream_model": "upstream-name", "input_cost_per_token": 0.001, "output_cost_per_token": 0.002})),
        )
        .await
        .unwrap();
        let key = call(&admin, "POST", "/api/v1/tenants/t1/keys", Some(json!({}))).await.unwrap();
        Harness {
            data: running.data_addr,
            admin,
            mock: mock_addr,
            sink,
            key: key["secret"].as_str().unwrap().to_owned(),
            http: Client::builder(TokioExecutor::new()).build_http(),
            shutdown,
            _dir: dir,
            _running: running,
        }
    }

    pub fn request(&self, path: &str, key: Option<&str>, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
        let mut req = Request::post(format!("http://{}{path}", self.data)).header("content-type", "application/json");
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        req.body(Full::new(body.into())).unwrap()
    }

    /// Sends a request and reads the whole answer.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, Bytes) {
        let res = self.http.request(req).await.unwrap();
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        (parts.status, parts.headers, bytes)
    }

    /// POSTs JSON to `path` with the harness key.
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, HeaderMap, Value) {
        let (status, headers, bytes) = self.send(self.request(path, Some(&self.key), body.to_string())).await;
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, v)
    }

    /// The control-plane store itself, for rows the admin API would not write.
    pub fn store(&self) -> Arc<dyn obleth_store::ControlPlaneStore> {
        self._running.store.clone()
    }

    pub async fn mock_stats(&self) -> StatsSnapshot {
        let req = Request::get(format!("http://{}/mock/stats", self.mock)).body(Full::new(Bytes::new())).unwrap();
        let res = self.http.request(req).await.unwrap();
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap()
    }

    /// Waits (bounded) until `n` usage records have been emitted.
    pub async fn records(&self, n: usize) -> Vec<obleth_core::UsageRecord> {
        for _ in 0..500 {
            if self.sink.len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let records = self.sink.take();
        assert_eq!(records.len(), n, "expected exactly {n} usage records: {records:#?}");
        records
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Splits an SSE body into the JSON of its `data:` events (without `[DONE]`).
pub fn sse_events(body: &[u8]) -> (Vec<Value>, bool) {
    let text = String::from_utf8_lossy(body);
    let mut events = vec![];
    let mut done = false;
    for event in text.split("\n\n") {
        for line in event.lines() {
            if let Some(data) = line.strip_prefix("data: ") {
                if data == "[DONE]" {
                    done = true;
                } else {
                    events.push(serde_json::from_str(data).unwrap());
                }
            }
        }
    }
    (events, done)
}

pub fn chat(stream: bool, max_tokens: u32) -> Value {
    json!({"model": "mock-model", "stream": stream, "max_tokens": max_tokens,
           "messages": [{"role": "user", "content": "one two three four"}]})
}

/// One call of the harness's admin API with the admin token and, when given, an
/// `X-Obleth-Actor`; returns the status and the raw body.
pub async fn admin_request(
    h: &Harness,
    method: &str,
    path: &str,
    body: Option<Value>,
    actor: Option<&str>,
) -> (StatusCode, Bytes) {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("{}{path}", h.admin.admin_url))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"));
    if let Some(a) = actor {
        req = req.header("x-obleth-actor", a);
    }
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Bytes::from(b.to_string())
        }
        None => Bytes::new(),
    };
    let res = h.http.request(req.body(Full::new(body)).unwrap()).await.unwrap();
    let status = res.status();
    (status, res.into_body().collect().await.unwrap().to_bytes())
}
