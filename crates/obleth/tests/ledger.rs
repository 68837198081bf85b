//! The usage ledger through the real binary: `obleth serve` as a child process in front
//! of the bundled mock, recording to a real ClickHouse server of the test's own. The
//! faults are real too: ClickHouse killed and restarted, the gateway killed with SIGKILL
//! while it spills to its log and while it replays it.
//!
//! Every test ends with the ledger's invariant, counted by ClickHouse itself without
//! `FINAL`: `count() == uniqExact(request_id) ==` the number of requests answered.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use obleth::client::{AdminConn, call};
use obleth_testkit::OwnClickHouse;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The pod's variables for the ClickHouse ledger, plus `extra`.
fn clickhouse_env(ch: &OwnClickHouse, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("OBLETH_LEDGER_BACKEND", "clickhouse".to_owned()),
        ("OBLETH_LEDGER_CLICKHOUSE_URL", ch.http_url()),
        ("OBLETH_LEDGER_CLICKHOUSE_DATABASE", "obleth".to_owned()),
        ("OBLETH_LEDGER_CLICKHOUSE_TIMEOUT", "2s".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    env
}

/// `count()` and `uniqExact(request_id)` of the ledger table, without `FINAL`.
fn counts(ch: &OwnClickHouse) -> (u64, u64) {
    let out = ch.query("SELECT count(), uniqExact(request_id) FROM obleth.obleth_usage");
    let v: Vec<u64> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
    (v[0], v[1])
}

fn wal_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("wal")).map(|d| d.count()).unwrap_or(0)
}

/// Rows land in ClickHouse and match the requests: one per request, with its tenant,
/// model, tokens and cost; answered through the admin API's usage queries too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_land_in_clickhouse_and_match_the_requests() {
    let shutdown = CancellationToken::new();
    let ch = OwnClickHouse::start();
    let mut gw = Gateway::new(mock(&shutdown).await, &clickhouse_env(&ch, &[]));
    gw.start().await;
    let key = seed(&gw).await;
    let sent = send(&gw, &key, 40).await;
    gw.wait_ledger("rows written", |s| s["rows_written"] == sent).await;
    assert_eq!(counts(&ch), (sent, sent));
    let tenant = call(&gw.admin, "GET", "/api/v1/tenants/t1", None).await.unwrap();
    let per_row = ch.query(&format!(
        "SELECT count(), sum(input_tokens > 0), sum(output_tokens), min(status), max(status), uniqExact(model) \
         FROM obleth.obleth_usage WHERE tenant_id = '{}' AND model = 'mock-model' AND admission_class = 'fast' AND route = 'chat_completions'",
        tenant["id"].as_str().unwrap()
    ));
    assert_eq!(
        per_row.split_whitespace().collect::<Vec<_>>(),
        vec![&*sent.to_string(), &*sent.to_string(), &*(3 * sent).to_string(), "200", "200", "1"]
    );

    let totals = call(&gw.admin, "GET", "/api/v1/usage/totals?group_by=tenant", None).await.unwrap();
    let t = &totals["data"][0];
    assert_eq!(t["tenant"], "t1");
    assert_eq!(t["requests"], sent);
    assert_eq!(t["output_tokens"], 3 * sent);
    let expected_cost = t["input_tokens"].as_f64().unwrap() * 0.001 + t["output_tokens"].as_f64().unwrap() * 0.002;
    assert!((t["cost"].as_f64().unwrap() - expected_cost).abs() < 1e-9, "{t}");
    let recent = call(&gw.admin, "GET", "/api/v1/usage/recent?tenant=t1&limit=5", None).await.unwrap();
    assert_eq!(recent["data"].as_array().unwrap().len(), 5);
    let series = call(&gw.admin, "GET", "/api/v1/usage/series?bucket=minute&from=1h", None).await.unwrap();
    assert_eq!(series["data"].as_array().unwrap().iter().map(|p| p["requests"].as_u64().unwrap()).sum::<u64>(), sent);
    gw.stop();
}

/// ClickHouse stopped for a while under steady load, then restarted: nothing lost,
/// nothing doubled, and the requests never noticed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_down_under_load() {
    let shutdown = CancellationToken::new();
    let mut ch = OwnClickHouse::start();
    let mut gw = Gateway::new(mock(&shutdown).await, &clickhouse_env(&ch, &[]));
    gw.start().await;
    let key = seed(&gw).await;
    let mut sent = send(&gw, &key, 50).await;
    gw.wait_ledger("first rows written", |s| s["rows_written"] == sent).await;
    ch.kill();
    sent += send(&gw, &key, 150).await;
    gw.wait_ledger("the outage noticed, rows kept in the log", |s| {
        s["backend_up"] == false && s["pending_batches"].as_u64().unwrap() > 0 && s["rows_appended"] == sent
    })
    .await;
    ch.restart();
    sent += send(&gw, &key, 50).await;
    gw.wait_ledger("the log replayed", |s| s["pending_batches"] == 0 && s["rows_written"] == sent).await;
    assert_eq!(gw.ledger().await["rows_dropped"], 0);
    gw.stop();
    assert_eq!(counts(&ch), (sent, sent));
}

/// The gateway killed with SIGKILL while it spills (ClickHouse down): the log survives;
/// the next process replays it once ClickHouse is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_killed_while_spilling() {
    let shutdown = CancellationToken::new();
    let mut ch = OwnClickHouse::start();
    let mut gw = Gateway::new(mock(&shutdown).await, &clickhouse_env(&ch, &[]));
    gw.start().await;
    let key = seed(&gw).await;
    let mut sent = send(&gw, &key, 30).await;
    gw.wait_ledger("first rows written", |s| s["rows_written"] == sent).await;
    ch.kill();
    sent += send(&gw, &key, 200).await;
    gw.wait_ledger("rows in the log", |s| s["rows_appended"] == sent).await;
    gw.kill();
    assert!(wal_files(gw.dir.path()) > 0);

    // Restarted while ClickHouse is still down: it starts (no crash loop) and serves.
    gw.start().await;
    sent += send(&gw, &key, 20).await;
    ch.restart();
    gw.wait_ledger("the log replayed", |s| s["pending_batches"] == 0 && s["backend_up"] == true).await;
    gw.stop();
    assert_eq!(counts(&ch), (sent, sent));
}

/// The gateway killed with SIGKILL in the middle of replaying a long log: the next
/// process finishes the replay, inserting only what is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_killed_while_replaying() {
    let shutdown = CancellationToken::new();
    let mut ch = OwnClickHouse::start();
    // Small batches and small inserts, so that the replay takes many inserts.
    let mut gw = Gateway::new(
        mock(&shutdown).await,
        &clickhouse_env(&ch, &[("OBLETH_LEDGER_BATCH_ROWS", "5"), ("OBLETH_LEDGER_INSERT_MAX_BYTES", "4096")]),
    );
    gw.start().await;
    let key = seed(&gw).await;
    ch.kill();
    let mut sent = send(&gw, &key, 600).await;
    gw.wait_ledger("rows in the log", |s| s["rows_appended"] == sent).await;
    ch.restart();
    gw.wait_ledger("replay under way", |s| s["rows_written"].as_u64().unwrap() > 0).await;
    let status = gw.ledger().await;
    gw.kill();
    assert!(status["pending_batches"].as_u64().unwrap() > 0, "killed mid-replay: {status}");
    let (landed, _) = counts(&ch);
    assert!(landed < sent, "part of the log was replayed: {landed} of {sent}");

    gw.start().await;
    gw.wait_ledger("the replay finished", |s| s["pending_batches"] == 0).await;
    sent += send(&gw, &key, 10).await;
    gw.stop();
    assert_eq!(counts(&ch), (sent, sent));
    assert!(gw.log(2).contains("replaying"), "the second process replayed:\n{}", gw.log(2));
}

/// With `on_full = "reject"`, a log nearly full (ClickHouse away too long) takes the pod
/// out of rotation and refuses requests with 503 `ledger_unavailable` rather than serve
/// them unrecorded; it serves again once ClickHouse is back. Every answered request is
/// either a row or a counted drop. Served requests' rows fit in the last 10 % of the log
/// (about 100 MB of a default log); this test's 16 KiB log leaves room for three, so on a
/// loaded machine a served request's row may be dropped (and counted) before the refusals
/// start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_log_refuses_requests_when_asked_to() {
    let shutdown = CancellationToken::new();
    let mut ch = OwnClickHouse::start();
    let mut gw = Gateway::new(
        mock(&shutdown).await,
        &clickhouse_env(
            &ch,
            &[
                ("OBLETH_LEDGER_ON_FULL", "reject"),
                ("OBLETH_LEDGER_WAL_MAX_BYTES", "16384"),
                ("OBLETH_LEDGER_WAL_SEGMENT_BYTES", "4096"),
                ("OBLETH_LEDGER_BATCH_ROWS", "1"),
            ],
        ),
    );
    gw.start().await;
    let key = seed(&gw).await;
    ch.kill();
    let http: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let body = json!({"model": "mock-model", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]});
    let (mut served, mut refused) = (0u64, 0u64);
    let mut refusal = Value::Null;
    for _ in 0..200 {
        let req = Request::post(format!("http://{}/v1/chat/completions", gw.data))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {key}"))
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let res = http.request(req).await.unwrap();
        let status = res.status().as_u16();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        match status {
            200 => served += 1,
            503 => {
                refused += 1;
                refusal = serde_json::from_slice(&bytes).unwrap();
            }
            other => panic!("unexpected {other}: {}", String::from_utf8_lossy(&bytes)),
        }
        // Let the appender catch up, so that the refusals start where the log fills.
        tokio::time::sleep(Duration::from_millis(5)).await;
        if refused >= 10 {
            break;
        }
    }
    assert!(served > 5 && refused >= 10, "served {served}, refused {refused}");
    assert_eq!(refusal["error"]["code"], "ledger_unavailable", "{refusal}");
    let ready = get_status(&http, &format!("{}/readyz", gw.admin.admin_url)).await;
    assert_eq!(ready.0, 503, "out of rotation: {}", ready.1);
    assert!(ready.1.contains("\"ledger\":\"full\""), "{}", ready.1);

    ch.restart();
    gw.wait_ledger("the log drained", |s| s["pending_batches"] == 0 && s["refusing"] == false).await;
    let ready = get_status(&http, &format!("{}/readyz", gw.admin.admin_url)).await;
    assert_eq!(ready.0, 200, "{}", ready.1);
    served += send(&gw, &key, 5).await;
    let status = gw.ledger().await;
    gw.stop();
    let (rows, unique) = counts(&ch);
    assert_eq!(rows, unique);
    let served_rows: u64 =
        ch.query("SELECT count() FROM obleth.obleth_usage WHERE status = 200").trim().parse().unwrap();
    let dropped = status["rows_dropped"].as_u64().unwrap();
    // A request admitted just before the appender marks the log nearly full can find it
    // full when its row is appended: that row is dropped and counted, like a refusal's.
    // (Sequential requests with a pause make it rare; a loaded machine makes it happen.)
    assert!(served_rows <= served && served - served_rows <= dropped, "served {served}, rows {served_rows}: {status}");
    assert_eq!(rows + dropped, served + refused, "rows and counted drops account for every answer: {status}");
}

/// In-process budgets are seeded from the ledger at start: a restart does not hand out
/// a spent budget again. On the embedded (SQLite) ledger, as a single-node install runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_spend_survives_a_restart() {
    let shutdown = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("usage.db").display());
    let mut gw = Gateway::new(mock(&shutdown).await, &[("OBLETH_LEDGER_SQLITE_URL", sqlite.as_str())]);
    gw.start().await;
    let key = seed(&gw).await;
    call(
        &gw.admin,
        "PATCH",
        "/api/v1/tenants/t1",
        Some(json!({"quota": {"lifetime_budget": 10.0, "monthly_budget": 10.0}})),
    )
    .await
    .unwrap();
    send(&gw, &key, 12).await;
    let spent = |usage: &Value| {
        (usage["usage"]["lifetime_spend"].as_f64().unwrap(), usage["usage"]["monthly_spend"].as_f64().unwrap())
    };
    let before = call(&gw.admin, "GET", "/api/v1/tenants/t1/usage", None).await.unwrap();
    let (lifetime, monthly) = spent(&before);
    assert!(lifetime > 0.0 && (lifetime - monthly).abs() < 1e-9, "{before}");
    gw.stop();

    gw.start().await;
    let after = call(&gw.admin, "GET", "/api/v1/tenants/t1/usage", None).await.unwrap();
    let (l2, m2) = spent(&after);
    assert!((l2 - lifetime).abs() < 1e-9 && (m2 - monthly).abs() < 1e-9, "before {before}\nafter {after}");
    // And it is enforced: a budget equal to what was spent refuses the next request.
    call(&gw.admin, "PATCH", "/api/v1/tenants/t1", Some(json!({"quota": {"lifetime_budget": lifetime}})))
        .await
        .unwrap();
    let http: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = Request::post(format!("http://{}/v1/chat/completions", gw.data))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(Full::new(Bytes::from(
            json!({"model": "mock-model", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]})
                .to_string(),
        )))
        .unwrap();
    let res = http.request(req).await.unwrap();
    assert_eq!(res.status(), 429);
    let body: Value = serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"]["code"], "lifetime_budget_exceeded", "{body}");
    gw.stop();
    assert!(gw.log(2).contains("seeded from the usage ledger"), "{}", gw.log(2));
}

/// `obleth demo` (the README's first command) records to the embedded ledger in its data
/// directory, with no external service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_records_to_the_embedded_ledger() {
    // Without its contention: this test counts the demo's rows.
    let mut gw = demo(&["--no-traffic"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let key = loop {
        if let Some(line) = demo_output(&gw).lines().find(|l| l.trim_start().starts_with("export OPENAI_API_KEY=")) {
            break line.trim().trim_start_matches("export OPENAI_API_KEY=").to_owned();
        }
        assert!(gw.child.as_mut().unwrap().try_wait().unwrap().is_none(), "the demo exited:\n{}", demo_output(&gw));
        assert!(Instant::now() < deadline, "the demo printed no key:\n{}", demo_output(&gw));
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let body = json!({"model": "mock-model", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]});
    let http: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    for _ in 0..3 {
        let req = Request::post(format!("http://{}/v1/chat/completions", gw.data))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {key}"))
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        assert_eq!(http.request(req).await.unwrap().status(), 200);
    }
    gw.wait_ledger("the demo's rows written", |s| s["backend"] == "sqlite" && s["rows_written"] == 3).await;
    let totals = call(&gw.admin, "GET", "/api/v1/usage/totals?group_by=tenant", None).await.unwrap();
    assert_eq!(totals["data"][0]["tenant"], "demo", "{totals}");
    assert_eq!(totals["data"][0]["requests"], 3, "{totals}");
    assert!(gw.dir.path().join("obleth-data/usage.db").exists(), "the ledger is in the demo's data directory");
    assert!(gw.dir.path().join("obleth-data/wal").is_dir());
}

/// `obleth demo` drives its contention by default: a noisy batch tenant keeps a queue on
/// a pool of 8 slots while the light interactive one is served, as the console shows.
#[tokio::test]
async fn the_demo_drives_contention_by_default() {
    let gw = demo(&[]);
    let printed = || demo_output(&gw);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = call(&gw.admin, "GET", "/api/v1/scheduler", None).await.unwrap_or_default();
        let tenant = |name: &str| s["tenants"].as_array().and_then(|ts| ts.iter().find(|t| t["name"] == name).cloned());
        let batch_waits = tenant("batch").is_some_and(|t| t["queued"].as_u64().unwrap_or(0) > 0);
        if s["slots_total"] == 8 && s["slots_used"] == 8 && batch_waits && tenant("interactive").is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "no contention within 30 s: {s}\n{}", printed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let text = printed();
    assert!(text.contains(&format!("{}/ui/", gw.admin.admin_url)), "the console's URL is printed:\n{text}");
    assert!(text.contains("Demo traffic is running"), "{text}");
}

/// `obleth demo` with `args` as a child process on free ports, in a directory of its own;
/// its output goes to `demo.out` there (see [`demo_output`]).
fn demo(args: &[&str]) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let (data, admin, metrics) = (free_port(), free_port(), free_port());
    let out = std::fs::File::create(dir.path().join("demo.out")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_obleth"))
        .arg("demo")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("OBLETH_LISTEN_DATA", format!("127.0.0.1:{data}"))
        .env("OBLETH_LISTEN_ADMIN", format!("127.0.0.1:{admin}"))
        .env("OBLETH_LISTEN_METRICS", format!("127.0.0.1:{metrics}"))
        .env("OBLETH_ADMIN_TOKEN", ADMIN_TOKEN)
        .current_dir(dir.path())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    Gateway {
        child: Some(child),
        data: SocketAddr::from(([127, 0, 0, 1], data)),
        admin: AdminConn { admin_url: format!("http://127.0.0.1:{admin}"), admin_token: ADMIN_TOKEN.into() },
        env: vec![],
        dir,
        starts: 0,
    }
}

fn demo_output(gw: &Gateway) -> String {
    std::fs::read_to_string(gw.dir.path().join("demo.out")).unwrap_or_default()
}
