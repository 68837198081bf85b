//! The MCP gateway through the real binary, driven by the official Rust SDK (rmcp) as
//! the client, with the bundled mock's MCP server (rmcp too) as the upstream.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Gateway, Plain, mcp_client, mock};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use obleth::client::call;
use obleth_mcp::upstream::http::McpHttp;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// An MCP client session with `gw`'s `/mcp` as `key`.
async fn client(gw: &Gateway, key: &str) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
    mcp_client(gw.data, key).await
}

/// A gateway (with `env`) in front of the in-process mock, whose MCP server is registered
/// as `mock` (with `settings` added); the token stops the mock.
async fn gateway_with_mock(env: &[(&str, &str)], settings: Value) -> (CancellationToken, Gateway) {
    let shutdown = CancellationToken::new();
    let upstream = mock(&shutdown).await;
    let mut gw = Gateway::new(upstream, env);
    gw.start().await;
    let mut server = json!({"name": "mock", "url": format!("http://{upstream}/mcp")});
    server.as_object_mut().unwrap().extend(settings.as_object().unwrap().clone());
    call(&gw.admin, "POST", "/api/v1/mcp/servers", Some(server)).await.unwrap();
    (shutdown, gw)
}

/// Creates a tenant of `weight` with a key; returns the key.
async fn tenant(gw: &Gateway, name: &str, weight: u32) -> String {
    call(&gw.admin, "POST", "/api/v1/tenants", Some(json!({"name": name, "weight": weight}))).await.unwrap();
    let key = call(&gw.admin, "POST", &format!("/api/v1/tenants/{name}/keys"), Some(json!({}))).await.unwrap();
    key["secret"].as_str().unwrap().to_owned()
}

fn sleep_call(ms: u64) -> CallToolRequestParams {
    let mut params = CallToolRequestParams::new("mock__sleep");
    params.arguments = Some(json!({"ms": ms}).as_object().cloned().unwrap());
    params
}

/// Two tenants at weights 3:1 keep a server with a concurrency cap of 2 saturated (eight
/// callers each, 40 ms calls): the server's call time is shared 75/25, ± 5 points
/// (fair queues; first come, first served would give 50/50).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_server_is_shared_by_weight() {
    let (shutdown, mut gw) =
        gateway_with_mock(&[("OBLETH_ADMISSION_QUEUE_TIMEOUT", "60s")], json!({"max_concurrency": 2})).await;
    let keys = [("heavy", tenant(&gw, "heavy", 3).await), ("light", tenant(&gw, "light", 1).await)];
    for (name, _) in &keys {
        call(&gw.admin, "POST", "/api/v1/mcp/grants", Some(json!({"tenant": name, "server": "mock"}))).await.unwrap();
    }

    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut served: HashMap<&str, Arc<AtomicU64>> = HashMap::new();
    let mut callers = tokio::task::JoinSet::new();
    for (name, key) in &keys {
        let count = served.entry(name).or_default().clone();
        for _ in 0..8 {
            let session = client(&gw, key).await;
            let (count, measuring, stop) = (count.clone(), measuring.clone(), stop.clone());
            callers.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let result = session.call_tool(sleep_call(40)).await.expect("a tool call");
                    assert_ne!(result.is_error, Some(true), "{result:?}");
                    if measuring.load(Ordering::Relaxed) {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
                session.cancel().await.ok();
            });
        }
    }
    // Warm up (sessions, the scheduler's history), then measure while both are backlogged.
    tokio::time::sleep(Duration::from_secs(2)).await;
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(10)).await;
    // While both wait: the server's fair queue in /metrics, each tenant's entitled share.
    let metrics = scrape(&gw).await;
    let target = |tenant: &str| -> f64 {
        let line = format!("obleth_mcp_tenant_share{{server=\"mock\",tenant=\"{tenant}\",kind=\"target\"}} ");
        let value = metrics.lines().find_map(|l| l.strip_prefix(line.as_str()));
        value.unwrap_or_else(|| panic!("no {line} in:\n{metrics}")).parse().unwrap()
    };
    assert!((target("heavy") - 0.75).abs() < 1e-9 && (target("light") - 0.25).abs() < 1e-9, "{metrics}");
    assert!(metrics.contains("obleth_mcp_tenant_queued{server=\"mock\",tenant=\"heavy\"}"), "{metrics}");
    measuring.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    while let Some(done) = callers.join_next().await {
        done.unwrap();
    }
    // Every call takes the same 40 ms upstream, so shares of calls are shares of time.
    let heavy = served["heavy"].load(Ordering::Relaxed) as f64;
    let light = served["light"].load(Ordering::Relaxed) as f64;
    let share = heavy / (heavy + light);
    println!("calls answered in 10 s: heavy {heavy}, light {light}; heavy's share {share:.3}");
    assert!((share - 0.75).abs() <= 0.05, "heavy's share of the server's call time is {share:.3}, not 0.75 ± 0.05");
    gw.stop();
    shutdown.cancel();
}

/// Each tool call is one ledger row: the route, the tool's two names, the status.
#[tokio::test]
async fn every_tool_call_is_one_ledger_row() {
    let (shutdown, mut gw) = gateway_with_mock(&[], json!({})).await;
    let key = tenant(&gw, "t1", 1).await;
    call(&gw.admin, "POST", "/api/v1/mcp/grants", Some(json!({"tenant": "t1", "server": "mock", "tool": "add"})))
        .await
        .unwrap();
    let session = client(&gw, &key).await;
    let mut add = CallToolRequestParams::new("mock__add");
    add.arguments = Some(json!({"a": 2, "b": 3}).as_object().cloned().unwrap());
    let result = session.call_tool(add).await.unwrap();
    assert_eq!(serde_json::to_value(&result.content).unwrap()[0]["text"], "5");
    let denied = session.call_tool(sleep_call(1)).await.expect_err("sleep is not granted");
    assert!(denied.to_string().contains("unknown tool"), "{denied}");
    session.cancel().await.ok();

    let calls = tool_call_rows(&gw, 2).await;
    let ok = calls.iter().find(|r| r["status"] == 200).expect("the answered call");
    assert_eq!((ok["model"].as_str(), ok["upstream_model"].as_str()), (Some("mock__add"), Some("add")), "{ok}");
    let refused = calls.iter().find(|r| r["status"] == 404).expect("the refused call");
    assert_eq!(refused["error_type"], "unknown_tool", "{refused}");

    // The server's health as this pod sees it, and its series in /metrics.
    let health = call(&gw.admin, "GET", "/api/v1/mcp/servers/mock/health", None).await.unwrap();
    assert_eq!((health["up"].as_bool(), health["tools"].as_u64()), (Some(true), Some(4)), "{health}");
    // The mock speaks 2026-07-28, which the gateway prefers upstream (no session to keep).
    assert_eq!(health["protocol_version"], "2026-07-28", "{health}");
    let metrics = scrape(&gw).await;
    for series in [
        r#"obleth_mcp_tool_calls_total{server="mock",tool="add",outcome="ok"} 1"#,
        r#"obleth_mcp_tool_calls_refused_total{outcome="unknown_tool"} 1"#,
        r#"obleth_mcp_upstream_up{server="mock"} 1"#,
        r#"obleth_mcp_tool_calls_in_flight{server="mock"} 0"#,
    ] {
        assert!(metrics.contains(series), "no {series} in:\n{metrics}");
    }
    gw.stop();
    shutdown.cancel();
}

/// The ledger's tool-call rows, once there are `n` of them (waits up to 30 s).
async fn tool_call_rows(gw: &Gateway, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let recent = call(&gw.admin, "GET", "/api/v1/usage/recent?limit=100", None).await.unwrap();
        let rows: Vec<Value> =
            recent["data"].as_array().unwrap().iter().filter(|r| r["route"] == "mcp_tools_call").cloned().collect();
        if rows.len() >= n {
            assert_eq!(rows.len(), n, "{rows:?}");
            return rows;
        }
        assert!(Instant::now() < deadline, "{} tool-call rows, not {n}: {rows:?}", rows.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An MCP session of the 2026-07-28 protocol (no initialize, no session).
async fn stateless_client(gw: &Gateway, key: &str) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
    let http = Plain(Client::builder(TokioExecutor::new()).build_http());
    let auth = (http::header::AUTHORIZATION, http::HeaderValue::from_str(&format!("Bearer {key}")).unwrap());
    let transport = StreamableHttpClientTransport::with_client(
        McpHttp { http: Arc::new(http), credential: Some(auth) },
        StreamableHttpClientTransportConfig::with_uri(format!("http://{}/mcp", gw.data)),
    );
    let lifecycle = rmcp::service::ClientLifecycleMode::Discover {
        preferred_versions: vec![rmcp::model::ProtocolVersion::V_2026_07_28],
    };
    use rmcp::service::ClientServiceExt;
    ().serve_with_lifecycle(transport, lifecycle).await.expect("a 2026-07-28 MCP client")
}

async fn tool_list(session: &rmcp::service::RunningService<rmcp::RoleClient, ()>) -> Vec<String> {
    session.list_all_tools().await.unwrap().into_iter().map(|t| t.name.to_string()).collect()
}

/// A server that changes a tool's definition (the mock's `mutate` rewrites `echo`'s
/// description) gets that tool quarantined at once: a 2026-07-28 listener is told, the
/// tool is neither listed nor callable, until an operator approves the definition they
/// reviewed, by its hash.
#[tokio::test]
async fn a_changed_tool_is_quarantined_until_approved() {
    let (shutdown, mut gw) = gateway_with_mock(&[], json!({})).await;
    let key = tenant(&gw, "t1", 1).await;
    call(&gw.admin, "POST", "/api/v1/mcp/grants", Some(json!({"tenant": "t1", "server": "mock"}))).await.unwrap();

    let listener = stateless_client(&gw, &key).await;
    assert!(tool_list(&listener).await.contains(&"mock__echo".to_owned()));
    let filter = rmcp::model::SubscriptionFilter::builder().tools_list_changed().build();
    let mut subscription = listener.listen(filter).await.expect("subscriptions/listen");

    let caller = client(&gw, &key).await;
    let mutated = caller.call_tool(CallToolRequestParams::new("mock__mutate")).await.unwrap();
    assert_ne!(mutated.is_error, Some(true), "{mutated:?}");
    let told = tokio::time::timeout(Duration::from_secs(10), subscription.next()).await;
    assert!(
        matches!(told, Ok(Ok(Some(rmcp::model::ServerNotification::ToolListChangedNotification(_))))),
        "no list_changed on the listen stream: {told:?}"
    );
    let tools = tool_list(&listener).await;
    assert!(!tools.contains(&"mock__echo".to_owned()) && tools.contains(&"mock__add".to_owned()), "{tools:?}");
    let mut echo = CallToolRequestParams::new("mock__echo");
    echo.arguments = Some(json!({"text": "hi"}).as_object().cloned().unwrap());
    let refused = caller.call_tool(echo.clone()).await.expect_err("a quarantined tool is not callable");
    assert!(refused.to_string().contains("unknown tool"), "{refused}");

    let pins = call(&gw.admin, "GET", "/api/v1/mcp/servers/mock/tools", None).await.unwrap();
    let pin = pins["data"].as_array().unwrap().iter().find(|p| p["tool"] == "echo").cloned().unwrap();
    assert_eq!(pin["state"], "quarantined", "{pin}");
    let stale = call(
        &gw.admin,
        "POST",
        "/api/v1/mcp/servers/mock/tools/echo/approve",
        Some(json!({"hash": pin["approved_hash"]})),
    )
    .await;
    assert!(stale.is_err(), "approving a hash other than the pending one: {stale:?}");
    call(&gw.admin, "POST", "/api/v1/mcp/servers/mock/tools/echo/approve", Some(json!({"hash": pin["pending_hash"]})))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !tool_list(&listener).await.contains(&"mock__echo".to_owned()) {
        assert!(Instant::now() < deadline, "the approved tool is not listed again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answered = caller.call_tool(echo).await.unwrap();
    assert_eq!(serde_json::to_value(&answered.content).unwrap()[0]["text"], "hi");
    drop(subscription);
    caller.cancel().await.ok();
    listener.cancel().await.ok();
    gw.stop();
    shutdown.cancel();
}

/// The gateway's /metrics text.
async fn scrape(gw: &Gateway) -> String {
    let addr = gw.env.iter().find(|(k, _)| k == "OBLETH_LISTEN_METRICS").map(|(_, v)| v.clone()).unwrap();
    let http: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = http::Request::get(format!("http://{addr}/metrics")).body(Full::new(Bytes::new())).unwrap();
    let response = http.request(request).await.unwrap();
    String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// Creates a tenant with `quota` and a key; returns its id and the key.
async fn limited_tenant(gw: &Gateway, name: &str, quota: Value) -> (String, String) {
    let tenant = call(&gw.admin, "POST", "/api/v1/tenants", Some(json!({"name": name, "quota": quota}))).await.unwrap();
    let key = call(&gw.admin, "POST", &format!("/api/v1/tenants/{name}/keys"), Some(json!({}))).await.unwrap();
    call(&gw.admin, "POST", "/api/v1/mcp/grants", Some(json!({"tenant": name, "server": "mock"}))).await.unwrap();
    (tenant["id"].as_str().unwrap().to_owned(), key["secret"].as_str().unwrap().to_owned())
}

/// The JSON-RPC error of a refused call, if it was refused by a tenant's limit.
fn limit_refusal(outcome: &Result<rmcp::model::CallToolResult, rmcp::ServiceError>) -> Option<Value> {
    match outcome {
        Err(rmcp::ServiceError::McpError(e)) if e.code.0 == -32011 => e.data.clone(),
        _ => None,
    }
}

/// A tenant's limits on tool calls: its fourth call within a minute of a limit of 3 is
/// refused with -32011 (and its ledger row says 429); of two concurrent calls under a
/// limit of 1 in flight one is refused, and once the other is answered the next passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_tool_call_limits_refuse_with_32011() {
    let (shutdown, mut gw) = gateway_with_mock(&[], json!({})).await;
    let (rate_id, rate_key) = limited_tenant(&gw, "rate", json!({"tool_calls_per_minute": 3})).await;
    let (slots_id, slots_key) = limited_tenant(&gw, "slots", json!({"tool_calls_in_flight": 1})).await;

    let session = client(&gw, &rate_key).await;
    for _ in 0..3 {
        let answered = session.call_tool(sleep_call(1)).await.unwrap();
        assert_ne!(answered.is_error, Some(true), "{answered:?}");
    }
    let fourth = session.call_tool(sleep_call(1)).await;
    let data = limit_refusal(&fourth).unwrap_or_else(|| panic!("the fourth call in a minute: {fourth:?}"));
    assert_eq!((data["limit"].as_str(), data["retryable"].as_bool()), (Some("tool_calls_per_minute"), Some(true)));
    let after = data["retry_after_ms"].as_u64().unwrap();
    assert!(after > 0 && after <= 20_000, "one call refills in 20 s: {data}");
    session.cancel().await.ok();

    let session = client(&gw, &slots_key).await;
    let (a, b) = tokio::join!(session.call_tool(sleep_call(300)), session.call_tool(sleep_call(300)));
    let refused: Vec<Value> = [&a, &b].into_iter().filter_map(limit_refusal).collect();
    assert_eq!(refused.len(), 1, "one of two concurrent calls is refused: {a:?} {b:?}");
    assert_eq!(refused[0]["limit"], "tool_calls_in_flight", "{refused:?}");
    let answered = if limit_refusal(&a).is_some() { b } else { a };
    assert_ne!(answered.unwrap().is_error, Some(true));
    let next = session.call_tool(sleep_call(1)).await.unwrap();
    assert_ne!(next.is_error, Some(true), "the slot was given back: {next:?}");
    session.cancel().await.ok();

    let rows = tool_call_rows(&gw, 7).await;
    let of = |id: &str| rows.iter().filter(|r| r["tenant_id"] == id).cloned().collect::<Vec<_>>();
    for (id, calls) in [(&rate_id, 4), (&slots_id, 3)] {
        let rows = of(id);
        assert_eq!(rows.len(), calls, "{rows:?}");
        let limited: Vec<&Value> = rows.iter().filter(|r| r["status"] == 429).collect();
        assert_eq!(limited.len(), 1, "{rows:?}");
        assert_eq!(limited[0]["error_type"], "rate_limited", "{rows:?}");
        assert_eq!(limited[0]["upstream_model"], "sleep", "the refused call was routed: {rows:?}");
    }
    gw.stop();
    shutdown.cancel();
}
