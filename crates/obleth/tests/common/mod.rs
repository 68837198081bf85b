//! Helpers shared by the tests that run `obleth` as child processes ("pods").

#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use obleth::client::{AdminConn, call};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const ADMIN_TOKEN: &str = "ledger-test-admin-token-0123456789abcdef";

/// `obleth serve` as a child process, restartable on the same ports and directories.
pub struct Gateway {
    pub child: Option<Child>,
    pub data: SocketAddr,
    pub admin: AdminConn,
    pub env: Vec<(String, String)>,
    pub dir: tempfile::TempDir,
    pub starts: u32,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Gateway {
    /// A pod in front of `mock`, with its own control-plane file and embedded ledger in
    /// its directory; `extra` adds or overrides variables.
    pub fn new<K: AsRef<str>, V: AsRef<str>>(mock: SocketAddr, extra: &[(K, V)]) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let (data, admin, metrics) = (free_port(), free_port(), free_port());
        let mut env: Vec<(String, String)> = [
            ("OBLETH_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
            ("OBLETH_DATABASE_URL", format!("sqlite://{}", dir.path().join("cp.db").display())),
            ("OBLETH_UPSTREAM_BASE_URL", format!("http://{mock}/v1")),
            ("OBLETH_LISTEN_DATA", format!("127.0.0.1:{data}")),
            ("OBLETH_LISTEN_ADMIN", format!("127.0.0.1:{admin}")),
            ("OBLETH_LISTEN_METRICS", format!("127.0.0.1:{metrics}")),
            ("OBLETH_LISTEN_DATA_THREADS", "2".to_owned()),
            ("OBLETH_LEDGER_SQLITE_URL", format!("sqlite://{}", dir.path().join("usage.db").display())),
            ("OBLETH_LEDGER_WAL_DIR", dir.path().join("wal").display().to_string()),
            ("OBLETH_LEDGER_FLUSH_INTERVAL", "20ms".to_owned()),
            ("OBLETH_LEDGER_INSERT_INTERVAL", "50ms".to_owned()),
            ("OBLETH_LOG_LEVEL", "info".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(extra.iter().map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned())));
        Gateway {
            child: None,
            data: SocketAddr::from(([127, 0, 0, 1], data)),
            admin: AdminConn { admin_url: format!("http://127.0.0.1:{admin}"), admin_token: ADMIN_TOKEN.into() },
            env,
            dir,
            starts: 0,
        }
    }

    /// Starts the process and waits until it is ready.
    pub async fn start(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path(self.starts)).unwrap();
        let log2 = log.try_clone().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_obleth"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(self.dir.path())
            .stdout(log2)
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("obleth exited at start ({status}):\n{}", self.log(self.starts));
            }
            if call(&self.admin, "GET", "/api/v1/ledger", None).await.is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "obleth did not become ready:\n{}", self.log(self.starts));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_path(&self, n: u32) -> std::path::PathBuf {
        self.dir.path().join(format!("obleth-{n}.log"))
    }

    pub fn log(&self, n: u32) -> String {
        std::fs::read_to_string(self.log_path(n)).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, and waits for the graceful exit (which flushes the ledger).
    pub fn stop(&mut self) {
        let mut child = self.child.take().unwrap();
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "obleth exited with {status}:\n{}", self.log(self.starts));
                return;
            }
            assert!(Instant::now() < deadline, "obleth did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub async fn ledger(&self) -> Value {
        call(&self.admin, "GET", "/api/v1/ledger", None).await.unwrap()
    }

    /// Waits until `pred` holds for the ledger's status.
    pub async fn wait_ledger(&self, what: &str, pred: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = self.ledger().await;
            if pred(&status) {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: {status}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The mock backend, in this process.
pub async fn mock(shutdown: &CancellationToken) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = obleth_mock::MockConfig {
        ttft: Duration::from_millis(1),
        itl: Duration::from_millis(1),
        ..obleth_mock::MockConfig::default()
    };
    tokio::spawn(obleth_mock::serve(listener, config, shutdown.clone().cancelled_owned()));
    addr
}

/// Registers a tenant, the model and a key (kept in the control-plane file, so they
/// survive restarts); returns the key.
pub async fn seed(gw: &Gateway) -> String {
    call(&gw.admin, "POST", "/api/v1/tenants", Some(json!({"name": "t1"}))).await.unwrap();
    call(
        &gw.admin,
        "POST",
        "/api/v1/models",
        Some(json!({"model_name": "mock-model", "input_cost_per_token": 0.001, "output_cost_per_token": 0.002})),
    )
    .await
    .unwrap();
    let key = call(&gw.admin, "POST", "/api/v1/tenants/t1/keys", Some(json!({}))).await.unwrap();
    key["secret"].as_str().unwrap().to_owned()
}

/// Sends `n` chat requests, 8 at a time; returns how many were answered (any status:
/// every answered request has a row). All are expected to succeed here.
pub async fn send(gw: &Gateway, key: &str, n: usize) -> u64 {
    let http: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let body = json!({"model": "mock-model", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]});
    let mut answered = 0;
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..n {
        let req = Request::post(format!("http://{}/v1/chat/completions", gw.data))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {key}"))
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let http = http.clone();
        pending.spawn(async move {
            let res = http.request(req).await.unwrap();
            let status = res.status();
            res.into_body().collect().await.unwrap();
            status
        });
        if i % 8 == 7 || i + 1 == n {
            while let Some(status) = pending.join_next().await {
                assert_eq!(status.unwrap(), 200);
                answered += 1;
            }
        }
    }
    answered
}

/// One small chat request with `key` through `gw`; its status.
pub async fn chat_status(gw: &Gateway, key: &str) -> u16 {
    let http: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let body = json!({"model": "mock-model", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]});
    let req = Request::post(format!("http://{}/v1/chat/completions", gw.data))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let res = http.request(req).await.unwrap();
    let status = res.status().as_u16();
    res.into_body().collect().await.unwrap();
    status
}

/// GETs `url`; returns the status and body.
pub async fn get_status(http: &Client<HttpConnector, Full<Bytes>>, url: &str) -> (u16, String) {
    let res = http.request(Request::get(url).body(Full::new(Bytes::new())).unwrap()).await.unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A database of the test's own on the machine's Postgres (127.0.0.1:5432, or
/// `OBLETH_TEST_POSTGRES_URL`'s server), dropped with the guard.
pub struct PgDb {
    pub name: String,
    admin_url: String,
}

impl PgDb {
    pub fn create() -> PgDb {
        let admin_url = std::env::var("OBLETH_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let name = format!("obleth_pods_{}", obleth_core::new_id("").to_lowercase());
        let out = Command::new("psql").arg(&admin_url).args(["-c", &format!("CREATE DATABASE {name}")]).output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!("cannot create a Postgres database at {admin_url}: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => panic!("psql is needed to create the test database: {e}"),
        }
        PgDb { name, admin_url }
    }

    /// The URL pods use.
    pub fn url(&self) -> String {
        match self.admin_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{}", self.name),
            None => panic!("OBLETH_TEST_POSTGRES_URL must end with /database"),
        }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(&self.admin_url)
            .args(["-c", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)])
            .output();
    }
}

/// A plain HTTP client for rmcp's client transport (the test's own, not the gateway's).
pub struct Plain(pub Client<HttpConnector, Full<Bytes>>);

#[async_trait::async_trait]
impl obleth_mcp::upstream::http::UpstreamHttp for Plain {
    async fn send(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<obleth_mcp::upstream::http::UpstreamBody>, obleth_mcp::BoxError> {
        let response = self.0.request(request).await?;
        Ok(response.map(|b| b.map_err(std::io::Error::other).boxed_unsync()))
    }
}

/// An MCP client session (the official Rust SDK) with the `/mcp` of the data plane at
/// `data`, as `key`.
pub async fn mcp_client(data: SocketAddr, key: &str) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
    use rmcp::ServiceExt;
    let http = Plain(Client::builder(TokioExecutor::new()).build_http());
    let auth = (http::header::AUTHORIZATION, http::HeaderValue::from_str(&format!("Bearer {key}")).unwrap());
    let transport = rmcp::transport::StreamableHttpClientTransport::with_client(
        obleth_mcp::upstream::http::McpHttp { http: std::sync::Arc::new(http), credential: Some(auth) },
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(format!(
            "http://{data}/mcp"
        )),
    );
    ().serve(transport).await.expect("an MCP session with the gateway")
}
