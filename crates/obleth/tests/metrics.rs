//! The metrics listener as `obleth serve` wires it: its bearer token, and per-tenant
//! series that are bounded and leave with their tenant. The body is checked with
//! `promtool check metrics` (Debian/Ubuntu: `apt-get install prometheus`), which this
//! test requires.

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use metrics_exporter_prometheus::PrometheusHandle;
use obleth::client::{AdminConn, call};
use obleth::config::Config;
use obleth::server::{Listeners, Running, start};
use obleth_core::{Admission, AdmissionRequest, Model, Tenant, TokenEstimate};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const ADMIN_TOKEN: &str = "metrics-test-admin-Tq8vLx2Np5Wz9Kc4Hj7R";
const METRICS_TOKEN: &str = "scrape-token-Mv3Qx8Lw2Nz7Pk5Rj9Tb4Hy6";

/// The process-wide recorder (there is one per process; nextest runs each test in its own).
fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| obleth::telemetry::install_recorder().unwrap()).clone()
}

struct Gateway {
    running: Running,
    admin: AdminConn,
    metrics: SocketAddr,
    http: Client<HttpConnector, Full<Bytes>>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Gateway {
    async fn start(env: &[(&str, &str)]) -> Gateway {
        let shutdown = CancellationToken::new();
        let mock_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mock = mock_listener.local_addr().unwrap();
        let mock_config = obleth_mock::MockConfig {
            ttft: Duration::from_millis(1),
            itl: Duration::from_millis(1),
            ..obleth_mock::MockConfig::default()
        };
        tokio::spawn(obleth_mock::serve(mock_listener, mock_config, shutdown.clone().cancelled_owned()));
        let dir = tempfile::tempdir().unwrap();
        let mut vars: Vec<(String, String)> = vec![
            ("OBLETH_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
            ("OBLETH_DATABASE_URL".into(), format!("sqlite://{}", dir.path().join("cp.db").display())),
            ("OBLETH_UPSTREAM_BASE_URL".into(), format!("http://{mock}/v1")),
        ];
        vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let config = Config::from_parts("", "test", vars).unwrap();
        let listeners = Listeners {
            data: obleth::server::bind_data("127.0.0.1:0".parse().unwrap(), 1).unwrap(),
            admin: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            metrics: Some((TcpListener::bind("127.0.0.1:0").await.unwrap(), recorder())),
        };
        let sink = Arc::new(obleth_gateway::MemorySink::default());
        let running = start(&config, listeners, Some(sink), shutdown.clone()).await.unwrap();
        let admin = AdminConn { admin_url: format!("http://{}", running.admin_addr), admin_token: ADMIN_TOKEN.into() };
        Gateway {
            metrics: running.metrics_addr.unwrap(),
            running,
            admin,
            http: Client::builder(TokioExecutor::new()).build_http(),
            shutdown,
            _dir: dir,
        }
    }

    /// `GET /metrics` with an optional `Authorization` value.
    async fn scrape(&self, authorization: Option<&str>) -> (StatusCode, http::HeaderMap, String) {
        let mut req = Request::get(format!("http://{}/metrics", self.metrics));
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        let res = self.http.request(req.body(Full::new(Bytes::new())).unwrap()).await.unwrap();
        let (parts, body) = res.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, String::from_utf8(body.to_vec()).unwrap())
    }

    async fn metrics(&self) -> String {
        let (status, _, body) = self.scrape(None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// One chat completion with `key`.
    async fn chat(&self, key: &str) {
        let body = json!({"model": "mock-model", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]});
        let req = Request::post(format!("http://{}/v1/chat/completions", self.running.data_addr))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {key}"))
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let res = self.http.request(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&bytes));
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[tokio::test]
async fn metrics_answer_only_the_bearer_of_the_token() {
    let gw = Gateway::start(&[("OBLETH_METRICS_TOKEN", METRICS_TOKEN)]).await;
    let wrong = format!("Bearer {}x", &METRICS_TOKEN[..METRICS_TOKEN.len() - 1]);
    let basic = format!("Basic {METRICS_TOKEN}");
    for authorization in [None, Some("Bearer "), Some(wrong.as_str()), Some(basic.as_str())] {
        let (status, headers, body) = gw.scrape(authorization).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization:?}: {body}");
        assert_eq!(headers.get("www-authenticate").map(|v| v.to_str().unwrap()), Some("Bearer"));
        let v: Value = serde_json::from_str(&body).unwrap();
        let error = v["error"].as_object().unwrap();
        let mut fields: Vec<&str> = error.keys().map(String::as_str).collect();
        fields.sort();
        assert_eq!(fields, ["code", "message", "param", "type"], "{body}");
        assert_eq!(
            (v["error"]["code"].as_str(), v["error"]["type"].as_str()),
            (Some("invalid_metrics_token"), Some("authentication_error"))
        );
        assert!(!body.contains(METRICS_TOKEN), "the token is never echoed");
    }
    let (status, _, body) = gw.scrape(Some(&format!("Bearer {METRICS_TOKEN}"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("# TYPE obleth_scheduler_tenant_queued gauge"), "{body}");
    // Without a token configured, anyone may scrape.
    let open = Gateway::start(&[]).await;
    assert!(open.metrics().await.contains("obleth_scheduler_tenant_queued{tenant=\"other\"} 0"));
}

#[tokio::test]
async fn tenant_series_are_bounded_and_leave_with_their_tenant() {
    let gw = Gateway::start(&[("OBLETH_METRICS_TENANT_SERIES", "100"), ("OBLETH_METRICS_GROUP_SERIES", "20")]).await;
    call(&gw.admin, "POST", "/api/v1/models", Some(json!({"model_name": "mock-model"}))).await.unwrap();
    for name in ["doomed", "stays"] {
        call(&gw.admin, "POST", "/api/v1/tenants", Some(json!({"name": name, "group": format!("{name}-group")})))
            .await
            .unwrap();
        let key = call(&gw.admin, "POST", &format!("/api/v1/tenants/{name}/keys"), Some(json!({}))).await.unwrap();
        gw.chat(key["secret"].as_str().unwrap()).await;
    }
    let body = gw.metrics().await;
    assert!(body.contains(r#"obleth_scheduler_tenant_in_flight{tenant="doomed"} 0"#), "{body}");
    assert!(body.contains(r#"obleth_scheduler_group_queued{group="doomed-group"} 0"#), "{body}");
    check_exposition(&body);

    // Deleted through the admin API: its series and its group's are gone at the next scrape.
    call(&gw.admin, "DELETE", "/api/v1/tenants/doomed", None).await.unwrap();
    let body = gw.metrics().await;
    assert!(!body.contains("doomed"), "{body}");
    assert!(body.contains(r#"obleth_scheduler_tenant_in_flight{tenant="stays"} 0"#), "{body}");
    let scheduler = call(&gw.admin, "GET", "/api/v1/scheduler", None).await.unwrap();
    assert!(!scheduler.to_string().contains("doomed"), "{scheduler}");

    // 10,000 tenants in 500 groups (admitted straight through the scheduler: the store and
    // the data plane are not what is measured); 30 of them keep a request in flight.
    let mut held = Vec::new();
    let model = Arc::new(mock_model());
    for i in 0..10_000 {
        let admitted = gw
            .running
            .scheduler
            .admit(AdmissionRequest {
                tenant: Arc::new(tenant(
                    &format!("tenant-{i:05}"),
                    &format!("ten_{i:05}"),
                    &format!("group-{:03}", i % 500),
                )),
                model: model.clone(),
                estimate: TokenEstimate { input: 10, output: 10 },
            })
            .await
            .unwrap();
        if i % 333 == 0 {
            held.push(admitted);
        }
    }
    let body = gw.metrics().await;
    check_exposition(&body);
    promtool(&body);
    let counts = series_per_family(&body);
    for family in
        ["obleth_scheduler_tenant_queued", "obleth_scheduler_tenant_in_flight", "obleth_scheduler_tenant_share_score"]
    {
        assert_eq!(counts.get(family), Some(&101), "{family}");
    }
    assert_eq!(counts.get("obleth_scheduler_tenant_share"), Some(&(2 * 101)));
    assert_eq!(counts.get("obleth_scheduler_group_queued"), Some(&21));
    assert_eq!(counts.get("obleth_scheduler_group_slots"), Some(&(4 * 21)));
    let tenant_series: usize = counts.iter().filter(|(f, _)| f.contains("_tenant_")).map(|(_, n)| n).sum();
    println!("10,000 tenants: /metrics is {} bytes, {} tenant series", body.len(), tenant_series);
    assert!(body.len() < 64 * 1024, "{} bytes", body.len());
    // The busy tenants are the ones shown; the rest is summed.
    assert!(body.contains(r#"obleth_scheduler_tenant_in_flight{tenant="tenant-09990"} 1"#), "{body}");
    assert!(body.contains(r#"obleth_scheduler_tenant_in_flight{tenant="other"} 0"#), "{body}");
    drop(held);
}

/// Samples per family (the name before the labels).
fn series_per_family(text: &str) -> HashMap<&str, usize> {
    let mut counts = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        *counts.entry(line.split(['{', ' ']).next().unwrap()).or_default() += 1;
    }
    counts
}

/// What the text format requires of the whole body (the exporter's part and ours): a
/// family's HELP and TYPE at most once and before its samples, its samples in one block,
/// and no series twice.
fn check_exposition(text: &str) {
    let mut typed = HashSet::new();
    let mut helped = HashSet::new();
    let mut finished = HashSet::new();
    let mut current: Option<String> = None;
    let mut seen = HashSet::new();
    // Histograms' and summaries' samples carry suffixes of their family's name.
    let family_of = |typed: &HashSet<String>, sample: &str| -> String {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = sample.strip_suffix(suffix)
                && typed.contains(base)
            {
                return base.to_owned();
            }
        }
        sample.to_owned()
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split(' ');
        let (name, is_help) = match (words.next(), words.next(), words.next()) {
            (Some("#"), Some("HELP"), Some(name)) => (name.to_owned(), true),
            (Some("#"), Some("TYPE"), Some(name)) => (name.to_owned(), false),
            _ => {
                let sample = line.split(['{', ' ']).next().unwrap();
                let family = family_of(&typed, sample);
                assert!(!finished.contains(&family), "family {family} split: {line}");
                if current.as_deref() != Some(family.as_str())
                    && let Some(c) = current.replace(family.clone())
                {
                    finished.insert(c);
                }
                let series = line.rsplit_once(' ').unwrap().0;
                assert!(seen.insert(series.to_owned()), "series twice: {series}");
                continue;
            }
        };
        assert!(!finished.contains(&name), "family {name} announced after its samples");
        let first = if is_help { helped.insert(name.clone()) } else { typed.insert(name.clone()) };
        assert!(first, "family {name} announced twice: {line}");
        if current.as_deref() != Some(name.as_str())
            && let Some(c) = current.replace(name)
        {
            finished.insert(c);
        }
    }
}

/// `promtool check metrics`: the body must parse; the families rendered from the
/// scheduler must also pass its lint (the exporter's own gauges carry no HELP text,
/// which it reports and which is not this test's concern).
fn promtool(body: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => panic!(
            "this test needs promtool to validate the /metrics body ({e}); install it with \
             `apt-get install prometheus` (Debian/Ubuntu) or put Prometheus' promtool on PATH"
        ),
    };
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // 0: clean; 3: lint problems only; anything else: the body does not parse.
    assert!(matches!(out.status.code(), Some(0 | 3)), "promtool rejects /metrics ({}):\n{report}", out.status);
    for family in ["obleth_scheduler_group_", "obleth_scheduler_tenant_"] {
        assert!(!report.contains(family), "promtool's lint on the rendered families:\n{report}");
    }
}

/// The checks above reject what they are there to reject.
#[test]
fn the_body_checks_catch_broken_bodies() {
    let good = "# HELP a x\n# TYPE a gauge\na{t=\"1\"} 1\na{t=\"2\"} 2\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n";
    check_exposition(good);
    promtool(good);
    let broken = [
        "# HELP a x\n# TYPE a gauge\na{t=\"1\"} 1\na{t=\"1\"} 2\n",
        "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{t=\"2\"} 1\n",
        "# HELP a x\n# TYPE a gauge\na 1\n# HELP a x\n",
    ];
    for body in broken {
        assert!(std::panic::catch_unwind(|| check_exposition(body)).is_err(), "accepted:\n{body}");
    }
    for body in ["# HELP a x\n# TYPE a gauge\na{t=\"1} 1\n", "# HELP a x\n# TYPE a gauge\na 1\n# HELP a y\na 2\n"] {
        assert!(std::panic::catch_unwind(|| promtool(body)).is_err(), "promtool accepted:\n{body}");
    }
}

/// A tenant as the store would hand it to the scheduler (weight 1, no limits).
fn tenant(name: &str, id: &str, group: &str) -> Tenant {
    Tenant::named(id, name, group)
}

/// `mock-model` as the scheduler sees it (admission weight 1, no cap of its own).
fn mock_model() -> Model {
    Model::named("mock-model")
}
