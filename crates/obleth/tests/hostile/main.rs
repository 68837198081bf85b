//! The gateway against a hostile upstream and hostile clients, through the real binary
//! (`obleth serve` as a child process). Each test asserts the bounded outcome and that
//! nothing leaked: admission slots, budget reservations, memory, other requests' latency.

#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;
mod upstream;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use obleth::client::call;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::Gateway;
use upstream::Upstream;

type Http = Client<HttpConnector, Full<Bytes>>;

const MODELS: [&str; 8] = [
    "honest",
    "absurd-usage",
    "negative-usage",
    "float-usage",
    "overflow-usage",
    "unterminated",
    "firehose",
    "leaky-error",
];

struct Setup {
    gw: Gateway,
    key: String,
    http: Http,
    upstream: Upstream,
}

/// A gateway in front of the hostile upstream, with a tenant `t1` that has a monthly
/// budget and an in-flight cap (so that its reservations are tracked), and one model per
/// misbehaviour.
async fn setup(env: &[(&str, &str)]) -> Setup {
    let upstream = Upstream::start().await;
    let mut gw = Gateway::new(upstream.addr, env);
    gw.start().await;
    let quota = json!({"monthly_budget": 10.0, "max_in_flight": 100});
    call(&gw.admin, "POST", "/api/v1/tenants", Some(json!({"name": "t1", "quota": quota}))).await.unwrap();
    for m in MODELS {
        let model = json!({"model_name": m, "input_cost_per_token": 0.001, "output_cost_per_token": 0.002});
        call(&gw.admin, "POST", "/api/v1/models", Some(model)).await.unwrap();
    }
    let key = call(&gw.admin, "POST", "/api/v1/tenants/t1/keys", Some(json!({}))).await.unwrap();
    let key = key["secret"].as_str().unwrap().to_owned();
    Setup { gw, key, http: Client::builder(TokioExecutor::new()).build_http(), upstream }
}

impl Setup {
    fn chat_request(&self, body: Value) -> Request<Full<Bytes>> {
        Request::post(format!("http://{}/v1/chat/completions", self.gw.data))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", self.key))
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap()
    }

    async fn chat(&self, model: &str, stream: bool) -> (StatusCode, HeaderMap, Bytes) {
        let body = json!({"model": model, "stream": stream, "max_tokens": 50, "messages": [{"role": "user", "content": "hello there"}]});
        self.send(body).await
    }

    async fn send(&self, body: Value) -> (StatusCode, HeaderMap, Bytes) {
        let res = self.http.request(self.chat_request(body)).await.unwrap();
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        (parts.status, parts.headers, bytes)
    }

    async fn metrics(&self) -> String {
        let addr = env_of(&self.gw, "OBLETH_LISTEN_METRICS");
        common::get_status(&self.http, &format!("http://{addr}/metrics")).await.1
    }

    async fn slots_used(&self) -> u64 {
        call(&self.gw.admin, "GET", "/api/v1/scheduler", None).await.unwrap()["slots_used"].as_u64().unwrap()
    }

    async fn tenant_usage(&self) -> Value {
        call(&self.gw.admin, "GET", "/api/v1/tenants/t1/usage", None).await.unwrap()["usage"].clone()
    }

    /// The ledger's rows, newest first, once `n` are there.
    async fn rows(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = call(&self.gw.admin, "GET", "/api/v1/usage/recent?limit=1000", None).await.unwrap();
            let rows = v["data"].as_array().unwrap().clone();
            if rows.len() >= n {
                return rows;
            }
            assert!(Instant::now() < deadline, "expected {n} ledger rows, have {}", rows.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (bounded) until nothing holds a slot or a reservation.
    async fn assert_nothing_held(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let slots = self.slots_used().await;
            let in_flight = self.tenant_usage().await["in_flight"].as_u64().unwrap();
            if slots == 0 && in_flight == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "still held after {within:?}: {slots} slots, {in_flight} in flight");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn rss_kib(&self) -> u64 {
        let pid = self.gw.child.as_ref().unwrap().id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

fn env_of(gw: &Gateway, var: &str) -> String {
    gw.env.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone()).unwrap()
}

/// The value of a Prometheus sample whose line starts with `prefix` (0 if absent).
fn sample(metrics: &str, prefix: &str) -> f64 {
    metrics.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

fn sse_error_code(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    text.split("\n\n").filter_map(|e| e.strip_prefix("data: ")).find_map(|d| {
        let v: Value = serde_json::from_str(d).ok()?;
        v["error"]["code"].as_str().map(str::to_owned)
    })
}

// === a hostile upstream ===

#[tokio::test]
async fn implausible_usage_is_never_billed() {
    let s = setup(&[]).await;
    let bad = ["absurd-usage", "negative-usage", "float-usage", "overflow-usage"];
    for model in bad {
        for stream in [false, true] {
            let (status, _, body) = s.chat(model, stream).await;
            assert_eq!(status, 200, "{model} stream={stream}: {}", String::from_utf8_lossy(&body));
        }
    }
    let rows = s.rows(8).await;
    for row in &rows {
        let (input, output) = (row["input_tokens"].as_u64().unwrap(), row["output_tokens"].as_u64().unwrap());
        assert!(input < 100 && output < 100, "billed the gateway's own count, not the upstream's: {row}");
        assert_eq!(row["tokens_estimated"], 1, "marked estimated: {row}");
        assert!(row["cost"].as_f64().unwrap() < 1.0, "{row}");
    }
    let usage = s.tenant_usage().await;
    assert!(usage["monthly_spend"].as_f64().unwrap() < 1.0, "spend stays small: {usage}");
    assert!(sample(&s.metrics().await, "obleth_upstream_usage_rejected_total") >= 8.0);

    // The tenant is not locked out, now or after a restart (spend is re-seeded from the
    // ledger, which holds no absurd row).
    let (status, _, _) = s.chat("honest", false).await;
    assert_eq!(status, 200);
    let mut s = s;
    s.gw.stop();
    s.gw.start().await;
    let (status, _, _) = s.chat("honest", true).await;
    assert_eq!(status, 200);
    assert!(s.tenant_usage().await["monthly_spend"].as_f64().unwrap() < 1.0);
    s.assert_nothing_held(Duration::from_secs(5)).await;
}

/// Latencies of `n` honest requests one after another, sorted.
async fn honest_latencies(s: &Setup, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let (status, _, _) = s.chat("honest", false).await;
        assert_eq!(status, 200);
        out.push(started.elapsed());
    }
    out.sort();
    out
}

#[tokio::test]
async fn an_unterminated_event_is_cut_at_its_limit_and_harms_no_one_else() {
    let s = setup(&[]).await;
    // Warm up: tokenizer, pools, the first streams.
    for _ in 0..5 {
        s.chat("honest", true).await;
    }
    let baseline = honest_latencies(&s, 20).await;
    let rss_before = s.rss_kib();

    let floods: Vec<_> = (0..4)
        .map(|_| {
            let req = s.chat_request(
                json!({"model": "unterminated", "stream": true, "messages": [{"role": "user", "content": "x"}]}),
            );
            let http = s.http.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let res = http.request(req).await.unwrap();
                let body = res.into_body().collect().await.unwrap().to_bytes();
                (started.elapsed(), body)
            })
        })
        .collect();
    let during = honest_latencies(&s, 20).await;
    for flood in floods {
        let (took, body) = flood.await.unwrap();
        assert_eq!(sse_error_code(&body).as_deref(), Some("upstream_event_too_large"), "ends with an error event");
        assert!(body.len() < 2 << 20, "at most the 1 MiB limit reached the client: {} bytes", body.len());
        assert!(took < Duration::from_secs(20), "cut quickly, took {took:?}");
    }
    let rss_after = s.rss_kib();
    let streamed = s.upstream.streamed_bytes();
    let median = |v: &[Duration]| v[v.len() / 2];
    println!(
        "honest p50 {:?} before, {:?} during 4 floods; RSS {} -> {} KiB; the upstream got {} MiB out",
        median(&baseline),
        median(&during),
        rss_before,
        rss_after,
        streamed >> 20
    );
    // The upstream stopped once the gateway let go (its 4 x 300 MiB never went out).
    assert!(streamed < 200 << 20, "the gateway stopped reading the floods: {streamed} bytes");
    // Other requests: the same order of magnitude (they took 2.4-7 s before the fix).
    assert!(
        median(&during) < median(&baseline) * 10 + Duration::from_millis(100),
        "honest p50 {:?} during floods vs {:?} before",
        median(&during),
        median(&baseline)
    );
    assert!(rss_after < rss_before + 12 * 1024, "memory grew from {rss_before} to {rss_after} KiB");
    let metrics = s.metrics().await;
    assert!(sample(&metrics, "obleth_sse_events_too_large_total") >= 4.0);
    assert_eq!(sample(&metrics, "obleth_store_outages_total"), 0.0, "the store never looked down");
    s.assert_nothing_held(Duration::from_secs(5)).await;
    let rows = s.rows(4 + 5 + 40).await;
    let cut = rows.iter().filter(|r| r["error_type"] == "upstream_event_too_large").count();
    assert_eq!(cut, 4, "one row per flood, with its error");
}

#[tokio::test]
async fn a_response_larger_than_the_limit_ends_with_an_error() {
    let s = setup(&[("OBLETH_LIMITS_MAX_RESPONSE_BYTES", "2097152")]).await;
    let (status, _, body) = s.chat("firehose", true).await;
    assert_eq!(status, 200);
    assert_eq!(
        sse_error_code(&body).as_deref(),
        Some("upstream_response_too_large"),
        "{} bytes, ending {:?}",
        body.len(),
        String::from_utf8_lossy(&body[body.len().saturating_sub(300)..])
    );
    assert!(body.len() <= (2 << 20) + (128 << 10), "{} bytes reached the client", body.len());
    let (status, _, body) = s.chat("firehose", false).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["error"]["code"], "upstream_response_too_large");
    s.assert_nothing_held(Duration::from_secs(5)).await;
    let rows = s.rows(2).await;
    assert!(rows.iter().all(|r| r["error_type"] == "upstream_response_too_large"), "{rows:?}");
    assert_eq!(sample(&s.metrics().await, "obleth_upstream_responses_too_large_total"), 2.0);
}

// === hostile clients ===

#[tokio::test]
async fn a_client_that_never_reads_gives_its_slot_back() {
    let s = setup(&[("OBLETH_LIMITS_CLIENT_STALL_TIMEOUT", "1s"), ("OBLETH_LIMITS_MAX_RESPONSE_BYTES", "1073741824")])
        .await;
    let body = json!({"model": "firehose", "stream": true, "messages": [{"role": "user", "content": "x"}]}).to_string();
    let mut sock = TcpStream::connect(s.gw.data).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        s.key,
        body.len()
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(body.as_bytes()).await.unwrap();
    // The client now reads nothing. The stream fills the socket buffers, then the
    // gateway waits for the client; after the stall timeout it lets go.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(30);
    while s.slots_used().await == 0 {
        assert!(Instant::now() < deadline, "the request never took a slot");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.assert_nothing_held(Duration::from_secs(30)).await;
    println!("slot back {:?} after the request was sent", started.elapsed());
    let rows = s.rows(1).await;
    assert_eq!(rows[0]["error_type"], "client_stalled", "{}", rows[0]);
    assert_eq!(rows[0]["status"], 499);
    assert!(
        sample(&s.metrics().await, "obleth_connections_cut_total{listener=\"data\",reason=\"client_stalled\"}") >= 1.0
    );
    // The upstream's work was cancelled: it stopped short of its 256 MiB.
    assert!(s.upstream.streamed_bytes() < 200 << 20);
    drop(sock);
}

/// Reads until the server closes the connection (or `within` passes); returns what was
/// read and whether the server closed it.
async fn read_until_closed(sock: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, sock.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
}

#[tokio::test]
async fn slow_idle_and_half_sent_requests_are_cut() {
    let s = setup(&[
        ("OBLETH_LIMITS_HEADER_READ_TIMEOUT", "1s"),
        ("OBLETH_LIMITS_BODY_READ_TIMEOUT", "1s"),
        ("OBLETH_LIMITS_IDLE_TIMEOUT", "1s"),
    ])
    .await;

    // Slowloris: a header a byte at a time, forever.
    let mut slow = TcpStream::connect(s.gw.data).await.unwrap();
    let started = Instant::now();
    let dribble = async {
        for b in b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nX-Slow: ".iter().cycle() {
            if slow.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            if started.elapsed() > Duration::from_secs(10) {
                break;
            }
        }
    };
    dribble.await;
    let slowloris_cut = started.elapsed();
    assert!(slowloris_cut < Duration::from_secs(8), "a dribbled head was cut after {slowloris_cut:?}");

    // An idle socket.
    let mut idle = TcpStream::connect(s.gw.data).await.unwrap();
    let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(8)).await;
    assert!(closed, "an idle connection is closed");

    // Idle after a request (keep-alive): closed too, after its answer.
    let mut kept = TcpStream::connect(s.gw.data).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n").await.unwrap();
    let (answer, closed) = read_until_closed(&mut kept, Duration::from_secs(8)).await;
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    assert!(closed, "an idle keep-alive connection is closed");

    // A body that stops halfway: 408 in the OpenAI shape, then the connection closes.
    let mut half = TcpStream::connect(s.gw.data).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"model\":",
        s.key
    );
    half.write_all(head.as_bytes()).await.unwrap();
    let (answer, closed) = read_until_closed(&mut half, Duration::from_secs(8)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
    assert!(answer.contains("x-request-id"), "{answer}");
    assert!(closed);

    // The admin listener is bounded the same way.
    let admin_addr = s.gw.admin.admin_url.trim_start_matches("http://").to_owned();
    let mut half = TcpStream::connect(&admin_addr).await.unwrap();
    let head = format!(
        "POST /api/v1/tenants HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":",
        common::ADMIN_TOKEN
    );
    half.write_all(head.as_bytes()).await.unwrap();
    let (answer, closed) = read_until_closed(&mut half, Duration::from_secs(8)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
    assert!(closed);
    let mut admin_idle = TcpStream::connect(&admin_addr).await.unwrap();
    let (_, closed) = read_until_closed(&mut admin_idle, Duration::from_secs(8)).await;
    assert!(closed, "an idle admin connection is closed");

    let metrics = s.metrics().await;
    for reason in ["header_timeout", "idle_timeout", "body_timeout"] {
        let cut = sample(&metrics, &format!("obleth_connections_cut_total{{listener=\"data\",reason=\"{reason}\"}}"));
        assert!(cut >= 1.0, "{reason} counted: {metrics}");
    }
    assert!(sample(&metrics, "obleth_connections_cut_total{listener=\"admin\",reason=\"idle_timeout\"}") >= 1.0);
    s.assert_nothing_held(Duration::from_secs(5)).await;
    assert_eq!(s.upstream.requests(), 0, "nothing half-sent reached the upstream");
}

#[tokio::test]
async fn connections_past_the_cap_are_refused_at_once() {
    let s = setup(&[("OBLETH_LIMITS_MAX_CONNECTIONS", "50"), ("OBLETH_LIMITS_IDLE_TIMEOUT", "10s")]).await;
    let mut socks = Vec::new();
    for _ in 0..300 {
        socks.push(TcpStream::connect(s.gw.data).await.unwrap());
    }
    // Let the gateway accept them all.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Those past the cap are closed at once; those within it stay open until idle.
    let mut closed = 0;
    for sock in &mut socks {
        let mut b = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(20), sock.read(&mut b)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 250, "{closed} of 300 refused with a cap of 50 (the rest are held)");
    // The metrics listener has its own cap: it answers while the data plane is full.
    let metrics = s.metrics().await;
    assert!(sample(&metrics, "obleth_connections_cut_total{listener=\"data\",reason=\"over_capacity\"}") >= 250.0);
    assert!(sample(&metrics, "obleth_connections_open{listener=\"data\"}") <= 50.0);
    // Idle connections time out, and the gateway serves again.
    drop(socks);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _, _) = s.chat("honest", false).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn output_fields_must_be_integers_in_range() {
    let s = setup(&[]).await;
    for (body, field) in [
        (json!({"model": "honest", "max_tokens": 5000.0, "messages": []}), "max_tokens"),
        (json!({"model": "honest", "max_tokens": "5000", "messages": []}), "max_tokens"),
        (json!({"model": "honest", "max_completion_tokens": -1, "messages": []}), "max_completion_tokens"),
        (json!({"model": "honest", "max_tokens": 10, "n": "2", "messages": []}), "n"),
        (json!({"model": "honest", "max_tokens": 10, "n": 1000, "messages": []}), "n"),
    ] {
        let (status, headers, bytes) = s.send(body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["error"]["param"], field, "{v}");
        assert_eq!(v["error"]["code"], "invalid_value", "{v}");
        assert!(headers.contains_key("x-request-id"));
    }
    assert_eq!(s.upstream.requests(), 0, "none went upstream");
    s.assert_nothing_held(Duration::from_secs(5)).await;
    let usage = s.tenant_usage().await;
    assert_eq!(usage["monthly_spend"].as_f64(), Some(0.0), "nothing reserved or spent: {usage}");
}

#[tokio::test]
async fn every_answer_has_a_request_id_and_http11_needs_a_host() {
    let s = setup(&[]).await;
    for (method, path) in [("GET", "/v1/models"), ("GET", "/nope"), ("DELETE", "/v1/chat/completions")] {
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", s.gw.data))
            .header("authorization", format!("Bearer {}", s.key))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let res = s.http.request(req).await.unwrap();
        assert!(res.headers().contains_key("x-request-id"), "{method} {path}: {:?}", res.headers());
    }
    let mut sock = TcpStream::connect(s.gw.data).await.unwrap();
    sock.write_all(b"GET /v1/models HTTP/1.1\r\nAuthorization: Bearer x\r\n\r\n").await.unwrap();
    let (answer, _) = read_until_closed(&mut sock, Duration::from_secs(5)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"param\":\"Host\""), "{answer}");
    assert!(answer.contains("x-request-id"), "{answer}");
    // The metrics listener answers unknown URLs in the same shape.
    let metrics = env_of(&s.gw, "OBLETH_LISTEN_METRICS");
    let (status, body) = common::get_status(&s.http, &format!("http://{metrics}/nope")).await;
    assert_eq!(status, 404);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"]["code"], "unknown_url", "{body}");
    // HTTP/1.0 has no Host requirement.
    let mut sock = TcpStream::connect(s.gw.data).await.unwrap();
    sock.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").await.unwrap();
    let (answer, _) = read_until_closed(&mut sock, Duration::from_secs(5)).await;
    assert!(answer.starts_with(b"HTTP/1.0 200"), "{}", String::from_utf8_lossy(&answer));
}

#[tokio::test]
async fn a_second_gateway_cannot_share_the_data_port() {
    let s = setup(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let metrics = common::free_port();
    let admin = common::free_port();
    let out = tokio::task::spawn_blocking({
        let data = env_of(&s.gw, "OBLETH_LISTEN_DATA");
        let dir = dir.path().to_owned();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_obleth"))
                .arg("serve")
                .env_clear()
                .env("OBLETH_ADMIN_TOKEN", common::ADMIN_TOKEN)
                .env("OBLETH_DATABASE_URL", format!("sqlite://{}", dir.join("cp.db").display()))
                .env("OBLETH_LISTEN_DATA", data)
                .env("OBLETH_LISTEN_ADMIN", format!("127.0.0.1:{admin}"))
                .env("OBLETH_LISTEN_METRICS", format!("127.0.0.1:{metrics}"))
                .env("OBLETH_LEDGER_SQLITE_URL", format!("sqlite://{}", dir.join("usage.db").display()))
                .env("OBLETH_LEDGER_WAL_DIR", dir.join("wal"))
                .current_dir(&dir)
                .output()
                .unwrap()
        }
    });
    let out = tokio::time::timeout(Duration::from_secs(30), out).await.expect("exits").unwrap();
    assert!(!out.status.success(), "the second gateway must not start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already in use"), "{stderr}");
    // The first one still serves all of its traffic.
    let (status, _, _) = s.chat("honest", false).await;
    assert_eq!(status, 200);
}
