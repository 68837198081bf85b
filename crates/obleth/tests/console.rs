//! The console's server side through the real binary (`obleth serve` as a child process,
//! SQLite ledger): sign-in and sessions, roles checked on the server, CSRF, a tenant's
//! own view probed across tenants, the scheduler lens stream, the traffic stats, CSV
//! exports and the embedded page with its headers. The browser tests (console/tests)
//! drive the same through Chromium.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use obleth::client::call;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const VIEWER_TOKEN: &str = "viewer-token-abcdefghijklmnopqrstuvwxyz0123";

struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

/// One request: `auth` is a bearer token, `cookie` a session id, `csrf` its header.
#[derive(Default, Clone, Copy)]
struct With<'a> {
    bearer: Option<&'a str>,
    cookie: Option<&'a str>,
    csrf: Option<&'a str>,
    origin: Option<&'a str>,
}

impl Http {
    async fn send(
        &self,
        method: &str,
        path: &str,
        with: With<'_>,
        body: Option<Value>,
    ) -> (StatusCode, HeaderMap, Bytes) {
        let mut req = Request::builder().method(method).uri(format!("{}{path}", self.base));
        if let Some(t) = with.bearer {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(c) = with.cookie {
            req = req.header("cookie", format!("other=1; obleth_session={c}"));
        }
        if let Some(c) = with.csrf {
            req = req.header("x-csrf-token", c);
        }
        if let Some(o) = with.origin {
            req = req.header("origin", o);
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let res =
            tokio::time::timeout(Duration::from_secs(10), self.client.request(req.body(Full::new(body)).unwrap()))
                .await
                .expect("answered in time")
                .unwrap();
        let (parts, body) = res.into_parts();
        (parts.status, parts.headers, body.collect().await.unwrap().to_bytes())
    }

    async fn json(&self, method: &str, path: &str, with: With<'_>, body: Option<Value>) -> (StatusCode, Value) {
        let (s, _, b) = self.send(method, path, with, body).await;
        (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }

    /// Signs in; returns the session id (from Set-Cookie) and the answer.
    async fn sign_in(&self, token: &str, name: Option<&str>) -> (String, Value) {
        let mut body = json!({ "token": token });
        if let Some(n) = name {
            body["name"] = json!(n);
        }
        let (s, h, b) = self.send("POST", "/api/v1/session", With::default(), Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{}", String::from_utf8_lossy(&b));
        let cookie = h["set-cookie"].to_str().unwrap().to_owned();
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
            assert!(cookie.contains(attr), "{cookie} lacks {attr}");
        }
        assert!(!cookie.contains("Secure"), "no TLS here: {cookie}");
        assert_eq!(h["cache-control"], "no-store");
        let id = cookie.strip_prefix("obleth_session=").unwrap().split(';').next().unwrap().to_owned();
        (id, serde_json::from_slice(&b).unwrap())
    }
}

async fn start() -> (Gateway, Http, CancellationToken) {
    let stop = CancellationToken::new();
    let mock = mock(&stop).await;
    let mut gw = Gateway::new(
        mock,
        &[
            ("OBLETH_VIEWER_TOKENS", VIEWER_TOKEN),
            ("OBLETH_ADMISSION_MAX_IN_FLIGHT", "2"),
            ("OBLETH_LOG_LEVEL", "debug"),
        ],
    );
    gw.start().await;
    let http = Http { client: Client::builder(TokioExecutor::new()).build_http(), base: gw.admin.admin_url.clone() };
    (gw, http, stop)
}

#[tokio::test]
async fn an_admin_session_changes_only_with_its_csrf_value_and_is_audited_by_name() {
    let (gw, http, _stop) = start().await;
    let (id, session) = http.sign_in(ADMIN_TOKEN, Some("alice")).await;
    assert_eq!((session["role"].as_str(), session["actor"].as_str()), (Some("admin"), Some("alice")));
    let csrf = session["csrf"].as_str().unwrap().to_owned();
    assert_eq!(csrf.len(), 64);
    assert!(!session.to_string().contains(ADMIN_TOKEN) && !session.to_string().contains(&id));

    // Reads need only the cookie; a reload finds the same CSRF value.
    let cookie = With { cookie: Some(&id), ..With::default() };
    assert_eq!(http.json("GET", "/api/v1/tenants", cookie, None).await.0, StatusCode::OK);
    let (s, again) = http.json("GET", "/api/v1/session", cookie, None).await;
    assert_eq!((s, again["csrf"].as_str()), (StatusCode::OK, Some(csrf.as_str())));

    // A change without the CSRF header, with a wrong one, or from another origin: refused,
    // and nothing is created.
    let new = json!({ "name": "made-by-console", "weight": 2 });
    for with in [
        cookie,
        With { csrf: Some("0".repeat(64).as_str()), ..cookie },
        With { csrf: Some(&csrf), origin: Some("http://evil.example"), ..cookie },
    ] {
        let (s, body) = http.json("POST", "/api/v1/tenants", with, Some(new.clone())).await;
        assert_eq!((s, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("csrf_failed")), "{body}");
    }
    assert_eq!(http.json("GET", "/api/v1/tenants/made-by-console", cookie, None).await.0, StatusCode::NOT_FOUND);

    // With it (and this host as the origin), the change is made and audited as alice.
    let host = http.base.strip_prefix("http://").unwrap().to_owned();
    let origin = format!("http://{host}");
    let with = With { csrf: Some(&csrf), origin: Some(&origin), ..cookie };
    let (s, tenant) = http.json("POST", "/api/v1/tenants", with, Some(new)).await;
    assert_eq!(s, StatusCode::CREATED, "{tenant}");
    let audit = call(&gw.admin, "GET", "/api/v1/audit?resource=tenant", None).await.unwrap();
    assert_eq!(audit["data"][0]["actor"], "alice");
    assert_eq!(audit["data"][0]["resource_id"], tenant["id"]);
    // A session's actor is its own: the header cannot rename it.
    let mut req = Request::post(format!("{}/api/v1/tenants", http.base))
        .header("cookie", format!("obleth_session={id}"))
        .header("x-csrf-token", &csrf)
        .header("x-obleth-actor", "mallory")
        .header("content-type", "application/json");
    req = req.header("x-extra", "1");
    let res = http.client.request(req.body(Full::new(Bytes::from(r#"{"name":"second"}"#))).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let audit = call(&gw.admin, "GET", "/api/v1/audit?resource=tenant", None).await.unwrap();
    assert_eq!(audit["data"][0]["actor"], "alice");

    // Logout ends the session on the server: the same cookie opens nothing afterwards.
    let (s, h, _) = http.send("DELETE", "/api/v1/session", With { csrf: Some(&csrf), ..cookie }, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(h["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    for path in ["/api/v1/tenants", "/api/v1/session"] {
        let (s, body) = http.json("GET", path, cookie, None).await;
        assert_eq!((s, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("session_required")));
    }
    // The token itself never reached the log.
    assert!(!gw.log(1).contains(ADMIN_TOKEN));
}

#[tokio::test]
async fn a_viewer_reads_everything_and_changes_nothing() {
    let (gw, http, _stop) = start().await;
    seed(&gw).await;
    let (id, session) = http.sign_in(VIEWER_TOKEN, None).await;
    assert_eq!((session["role"].as_str(), session["actor"].as_str()), (Some("viewer"), Some("viewer")));
    let csrf = session["csrf"].as_str().unwrap().to_owned();
    let by_cookie = With { cookie: Some(&id), csrf: Some(&csrf), ..With::default() };
    let by_token = With { bearer: Some(VIEWER_TOKEN), ..With::default() };
    for with in [by_cookie, by_token] {
        for path in ["/api/v1/tenants", "/api/v1/models", "/api/v1/scheduler", "/api/v1/audit", "/api/v1/stats"] {
            assert_eq!(http.json("GET", path, with, None).await.0, StatusCode::OK, "{path}");
        }
        for (method, path, body) in [
            ("POST", "/api/v1/tenants", Some(json!({"name": "nope"}))),
            ("PATCH", "/api/v1/tenants/t1", Some(json!({"weight": 9}))),
            ("DELETE", "/api/v1/tenants/t1", None),
            ("POST", "/api/v1/tenants/t1/keys", None),
            ("PUT", "/api/v1/groups/g", Some(json!({"weight": 2}))),
        ] {
            let (s, b) = http.json(method, path, with, body).await;
            assert_eq!((s, b["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("read_only")), "{method} {path}");
        }
        // The tenant's own view is not a viewer's.
        assert_eq!(http.json("GET", "/api/v1/me", with, None).await.0, StatusCode::FORBIDDEN);
    }
    let t1 = call(&gw.admin, "GET", "/api/v1/tenants/t1", None).await.unwrap();
    assert_eq!(t1["weight"], 1, "nothing changed");
    // Unknown tokens and junk sign-ins are refused alike, in the OpenAI shape.
    for token in ["", "nope", "obl_not-a-real-key-000000000000000000000", &"x".repeat(10_000)] {
        let (s, b) = http.json("POST", "/api/v1/session", With::default(), Some(json!({"token": token}))).await;
        assert_eq!((s, b["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_credentials")));
    }
    let (s, b) = http.json("POST", "/api/v1/session", With::default(), Some(json!({"tok": 1}))).await;
    assert_eq!((s, b["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("tok")), "{b}");
}

/// Seeds a tenant with a key; returns the key.
async fn tenant_with_key(gw: &Gateway, name: &str) -> String {
    call(&gw.admin, "POST", "/api/v1/tenants", Some(json!({"name": name, "weight": 1}))).await.unwrap();
    let key = call(&gw.admin, "POST", &format!("/api/v1/tenants/{name}/keys"), Some(json!({}))).await.unwrap();
    key["secret"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_tenant_sees_only_itself_and_its_session_ends_with_its_key() {
    let (gw, http, _stop) = start().await;
    seed(&gw).await;
    let alpha = tenant_with_key(&gw, "alpha").await;
    let beta = tenant_with_key(&gw, "beta").await;
    assert_eq!(send(&gw, &alpha, 3).await, 3);
    assert_eq!(send(&gw, &beta, 2).await, 2);
    gw.wait_ledger("5 rows", |l| l["rows_written"].as_u64().unwrap_or(0) >= 5).await;

    let (id, session) = http.sign_in(&alpha, Some("ignored")).await;
    assert_eq!(session["role"], "tenant");
    assert_eq!(session["tenant"]["name"], "alpha");
    assert!(!session.to_string().contains(&alpha), "the key is not echoed");
    let me = With { cookie: Some(&id), ..With::default() };
    let (s, body) = http.json("GET", "/api/v1/me", me, None).await;
    assert_eq!((s, body["tenant"]["name"].as_str()), (StatusCode::OK, Some("alpha")));
    let (_, rows) = http.json("GET", "/api/v1/me/usage/recent?limit=100", me, None).await;
    let rows = rows["data"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 3, "alpha's rows only");
    assert!(rows.iter().all(|r| r["tenant_id"] == body["tenant"]["id"]));
    let (_, totals) = http.json("GET", "/api/v1/me/usage/totals", me, None).await;
    assert_eq!(totals["data"][0]["requests"], 3);
    let (s, own) = http.json("GET", "/api/v1/me/scheduler", me, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!own.to_string().contains("beta"), "{own}");

    // Every way to reach another tenant is refused.
    let beta_id =
        call(&gw.admin, "GET", "/api/v1/tenants/beta", None).await.unwrap()["id"].as_str().unwrap().to_owned();
    let bearer = With { bearer: Some(&alpha), ..With::default() };
    for with in [me, bearer] {
        for path in [
            "/api/v1/tenants".to_owned(),
            "/api/v1/tenants/beta".to_owned(),
            "/api/v1/tenants/beta/usage".to_owned(),
            format!("/api/v1/usage/recent?tenant={beta_id}"),
            "/api/v1/scheduler".to_owned(),
            "/api/v1/scheduler/stream".to_owned(),
            "/api/v1/keys".to_owned(),
            "/api/v1/audit".to_owned(),
        ] {
            let (s, b) = http.json("GET", &path, with, None).await;
            assert_eq!((s, b["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{path}");
        }
        for path in ["/api/v1/me/usage/recent?tenant=beta", &format!("/api/v1/me/usage/totals?tenant={beta_id}")] {
            let (s, b) = http.json("GET", path, with, None).await;
            assert_eq!((s, b["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("tenant")), "{path}");
        }
    }

    // Revoking the key ends its sessions at once, and a bearer use of it too.
    let keys = call(&gw.admin, "GET", "/api/v1/keys?tenant=alpha", None).await.unwrap();
    let key_id = keys["data"][0]["id"].as_str().unwrap().to_owned();
    call(&gw.admin, "POST", &format!("/api/v1/keys/{key_id}/revoke"), None).await.unwrap();
    let (s, b) = http.json("GET", "/api/v1/me", me, None).await;
    assert_eq!((s, b["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("session_required")));
    assert_eq!(http.json("GET", "/api/v1/me", bearer, None).await.0, StatusCode::UNAUTHORIZED);
}

/// The first `n` lens events of a stream (bounded in time).
async fn lens_events(http: &Http, query: &str, n: usize) -> Vec<Value> {
    let req = Request::get(format!("{}/api/v1/scheduler/stream{query}", http.base))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = http.client.request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.into_body();
    let (mut text, mut events) = (String::new(), vec![]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while events.len() < n {
        let frame = tokio::time::timeout_at(deadline.into(), body.frame()).await.expect("events in time");
        let data = frame.unwrap().unwrap().into_data().unwrap();
        text.push_str(std::str::from_utf8(&data).unwrap());
        while let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            assert!(event.starts_with("event: lens\ndata: "), "{event}");
            events.push(serde_json::from_str(event.trim_end().strip_prefix("event: lens\ndata: ").unwrap()).unwrap());
        }
    }
    events
}

#[tokio::test]
async fn the_lens_streams_the_top_tenants_every_second_and_the_stats_count_requests() {
    let (gw, http, _stop) = start().await;
    seed(&gw).await;
    let keys = [tenant_with_key(&gw, "busy-a").await, tenant_with_key(&gw, "busy-b").await];
    let quiet = tenant_with_key(&gw, "quiet").await;
    assert_eq!(send(&gw, &quiet, 1).await, 1);
    // Two slots, six clients in a loop: both busy tenants hold and queue.
    let stop = CancellationToken::new();
    for key in keys.iter().chain(keys.iter()).chain(keys.iter()) {
        obleth::traffic::spawn(
            gw.data,
            "mock-model",
            obleth::traffic::Load { key: key.clone(), concurrency: 1, max_tokens: 40, pause: Duration::ZERO },
            stop.clone(),
        );
    }
    let started = Instant::now();
    let events = lens_events(&http, "?top=1", 4).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "4 events in {took:?}");
    let last = events.last().unwrap();
    assert_eq!(last["slots_total"], 2);
    assert_eq!(last["tenants"].as_array().unwrap().len(), 1, "top=1");
    let shown = last["tenants"][0]["name"].as_str().unwrap();
    assert!(shown.starts_with("busy-"), "the most active is shown first: {last}");
    assert_eq!(last["tenant_count"].as_u64().unwrap(), last["others"]["tenants"].as_u64().unwrap() + 1);
    let busy = events.iter().any(|e| e["slots_used"] == 2 && e["queued"].as_u64().unwrap_or(0) > 0);
    assert!(busy, "the pool filled and a queue formed: {events:?}");
    let picked = events.iter().filter_map(|e| e["next"]["tenant"].as_str()).collect::<Vec<_>>();
    assert!(picked.iter().all(|t| t.starts_with("busy-")), "{picked:?}");
    assert!(!picked.is_empty(), "a next pick was named while requests waited");
    assert!(last["models"].as_array().unwrap().iter().any(|m| m["name"] == "mock-model"));
    // Bad parameters are refused before the stream starts.
    let (s, b) = http
        .json("GET", "/api/v1/scheduler/stream?top=0", With { bearer: Some(ADMIN_TOKEN), ..With::default() }, None)
        .await;
    assert_eq!((s, b["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("top")));
    stop.cancel();

    let admin = With { bearer: Some(ADMIN_TOKEN), ..With::default() };
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, stats) = http.json("GET", "/api/v1/stats?window=60", admin, None).await;
    assert_eq!(s, StatusCode::OK);
    let points = stats["points"].as_array().unwrap();
    assert_eq!(points.len(), 60);
    let requests: u64 = points.iter().map(|p| p["requests"].as_u64().unwrap()).sum();
    let queued: u64 = points.iter().map(|p| p["queued"].as_u64().unwrap()).sum();
    let tokens: u64 = points.iter().map(|p| p["output_tokens"].as_u64().unwrap()).sum();
    assert!(requests >= 3 && queued >= 1 && tokens > 0, "{requests} requests, {queued} queued, {tokens} tokens");
    assert!(points.iter().any(|p| p["latency_ms"]["p50"].as_f64().is_some()));
    let (s, b) = http.json("GET", "/api/v1/stats?window=5", admin, None).await;
    assert_eq!((s, b["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("window")));
    let (_, cluster) = http.json("GET", "/api/v1/cluster", admin, None).await;
    assert_eq!(cluster, json!({ "enabled": false }));
}

#[tokio::test]
async fn usage_exports_as_csv_and_every_query_is_bounded() {
    let (gw, http, _stop) = start().await;
    let key = seed(&gw).await;
    assert_eq!(send(&gw, &key, 2).await, 2);
    gw.wait_ledger("2 rows", |l| l["rows_written"].as_u64().unwrap_or(0) >= 2).await;
    let admin = With { bearer: Some(ADMIN_TOKEN), ..With::default() };
    let (s, h, body) = http.send("GET", "/api/v1/usage/recent?format=csv&limit=10", admin, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["content-type"], "text/csv; charset=utf-8");
    assert!(h["content-disposition"].to_str().unwrap().starts_with("attachment;"));
    let text = String::from_utf8(body.to_vec()).unwrap();
    let lines: Vec<&str> = text.trim_end().split("\r\n").collect();
    assert_eq!(lines.len(), 3, "a header and two rows: {text}");
    assert!(lines[0].split(',').any(|c| c == "request_id") && lines[0].split(',').any(|c| c == "cost"));
    let (s, _, body) = http.send("GET", "/api/v1/usage/totals?format=csv&group_by=tenant", admin, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("t1"));
    for (path, param) in [
        ("/api/v1/usage/totals?from=400d", "from"),
        ("/api/v1/usage/recent?limit=1001", "limit"),
        ("/api/v1/usage/series?from=30d&bucket=minute", "bucket"),
        ("/api/v1/usage/recent?format=xml", "format"),
        ("/api/v1/usage/series?group_by=tenant&top=0", "top"),
        ("/api/v1/usage/series?group_by=tenant&top=101", "top"),
        ("/api/v1/usage/totals?top=3", "top"),
    ] {
        let (s, b) = http.json("GET", path, admin, None).await;
        assert_eq!((s, b["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some(param)), "{path}");
    }
}

/// A grouped series keeps its `top` keys by tokens and sums the others per bucket, so a
/// chart of a few tenants and "others" is not sent every tenant's every bucket.
#[tokio::test]
async fn a_series_keeps_its_top_keys_and_sums_the_others() {
    let (gw, http, _stop) = start().await;
    let t1 = seed(&gw).await;
    let (t2, t3) = (tenant_with_key(&gw, "t2").await, tenant_with_key(&gw, "t3").await);
    let mut sent = 0;
    for (key, n) in [(&t1, 6), (&t2, 3), (&t3, 2)] {
        sent += send(&gw, key, n).await;
    }
    gw.wait_ledger("11 rows", |l| l["rows_written"].as_u64() == Some(sent)).await;
    let admin = With { bearer: Some(ADMIN_TOKEN), ..With::default() };
    let path = "/api/v1/usage/series?group_by=tenant&bucket=minute&from=1h";
    let (_, all) = http.json("GET", path, admin, None).await;
    let (s, top) = http.json("GET", &format!("{path}&top=1"), admin, None).await;
    assert_eq!(s, StatusCode::OK, "{top}");
    let rows = |v: &Value| v["data"].as_array().unwrap().clone();
    let sum = |rows: &[Value], f: &str| rows.iter().map(|r| r[f].as_f64().unwrap()).sum::<f64>();
    let (own, others): (Vec<Value>, Vec<Value>) = rows(&top).into_iter().partition(|r| r["other"].is_null());
    assert!(own.iter().all(|r| r["tenant"] == "t1"), "the tenant with the most tokens keeps its rows: {top}");
    assert_eq!(sum(&own, "requests"), 6.0);
    assert!(others.iter().all(|r| r["key"] == "" && r["other"] == true), "{top}");
    assert_eq!(sum(&others, "requests"), 5.0, "t2 and t3 summed");
    assert!((sum(&rows(&top), "cost") - sum(&rows(&all), "cost")).abs() < 1e-9, "spend adds up to the whole");
    assert!(rows(&all).iter().all(|r| r["other"].is_null()), "no top: every key");
}

#[tokio::test]
async fn the_console_is_served_with_a_strict_policy_and_routes_to_its_page() {
    let (_gw, http, _stop) = start().await;
    // console/dist is committed, so every build embeds it: the page must be there.
    let none = With::default();
    let (s, h, index) = http.send("GET", "/ui/", none, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    let csp = h["content-security-policy"].to_str().unwrap();
    for directive in ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "connect-src 'self'"] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let page = String::from_utf8_lossy(&index).to_string();
    assert!(!page.contains("<script>") && !page.contains("style=\""), "no inline script or style");
    // A route of the page loads the page; its scripts are served, hashed and immutable.
    let (s, _, deep) = http.send("GET", "/ui/tenants/t1", none, None).await;
    assert_eq!((s, deep), (StatusCode::OK, index));
    let script = page.split("src=\"/ui/").nth(1).unwrap().split('"').next().unwrap();
    let (s, h, _) = http.send("GET", &format!("/ui/{script}"), none, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(h["cache-control"].to_str().unwrap().contains("immutable"));
    assert_eq!(http.send("GET", "/ui/assets/missing-123.js", none, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(http.send("GET", "/ui", none, None).await.0, StatusCode::PERMANENT_REDIRECT);
}
