//! Bad input and failing upstreams: each gets the right status in the OpenAI error
//! shape, and still leaves exactly one usage record.

use std::time::Duration;

use http::StatusCode;
use obleth::client::call;
use serde_json::{Value, json};

use crate::support::*;

fn assert_openai_error(body: &[u8], code: &str) -> Value {
    let v: Value =
        serde_json::from_slice(body).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(body)));
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e["type"].is_string(), "{v}");
    assert!(e.get("param").is_some(), "{v}");
    assert_eq!(e["code"], code, "{v}");
    v
}

#[tokio::test]
async fn authentication_and_policy_errors() {
    let h = Harness::start(fast_mock()).await;
    let body = chat(false, 2).to_string();

    let (s, _, b) = h.send(h.request("/v1/chat/completions", None, body.clone())).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_openai_error(&b, "missing_api_key");

    let (s, _, b) = h.send(h.request("/v1/chat/completions", Some("obl_unknown"), body.clone())).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let v = assert_openai_error(&b, "invalid_api_key");
    assert!(!v.to_string().contains("obl_unknown"), "the presented key is never echoed");

    let long = "x".repeat(10_000);
    let (s, _, _) = h.send(h.request("/v1/chat/completions", Some(&long), body.clone())).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let (s, _, b) = h.post("/v1/chat/completions", json!({"model": "nope", "messages": []})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(b["error"]["code"], "model_not_found");
    assert_eq!(b["error"]["param"], "model");

    call(&h.admin, "POST", "/api/v1/models", Some(json!({"model_name": "secret-model"}))).await.unwrap();
    call(&h.admin, "PATCH", "/api/v1/tenants/t1", Some(json!({"allowed_models": ["mock-model"]}))).await.unwrap();
    let (s, _, b) = h.post("/v1/chat/completions", json!({"model": "secret-model", "messages": []})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(b["error"]["code"], "model_not_allowed");

    // A disabled model is as good as absent.
    call(&h.admin, "PATCH", "/api/v1/models/mock-model", Some(json!({"enabled": false}))).await.unwrap();
    let (s, _, _) = h.post("/v1/chat/completions", chat(false, 1)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let records = h.records(6).await;
    let statuses: Vec<u16> = records.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401, 401, 401, 404, 403, 404]);
    assert_eq!(records[0].error_type.as_deref(), Some("missing_api_key"));
    assert!(records[0].tenant_id.is_none());
    assert!(records[3].tenant_id.is_some());
}

#[tokio::test]
async fn revocation_and_disable_take_effect_at_once() {
    let h = Harness::start(fast_mock()).await;
    let (s, _, _) = h.post("/v1/chat/completions", chat(false, 1)).await;
    assert_eq!(s, 200);
    // The key is now cached; the admin change must still apply on the next request.
    call(&h.admin, "PATCH", "/api/v1/tenants/t1", Some(json!({"disabled": true}))).await.unwrap();
    let (s, _, b) = h.post("/v1/chat/completions", chat(false, 1)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(b["error"]["code"], "tenant_disabled");
    call(&h.admin, "PATCH", "/api/v1/tenants/t1", Some(json!({"disabled": false}))).await.unwrap();
    let (s, _, _) = h.post("/v1/chat/completions", chat(false, 1)).await;
    assert_eq!(s, 200);

    let keys = call(&h.admin, "GET", "/api/v1/keys?tenant=t1", None).await.unwrap();
    let id = keys["data"][0]["id"].as_str().unwrap().to_owned();
    call(&h.admin, "POST", &format!("/api/v1/keys/{id}/revoke"), None).await.unwrap();
    let (s, _, b) = h.post("/v1/chat/completions", chat(false, 1)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(b["error"]["code"], "invalid_api_key");

    // Deleting the tenant kills its other keys too.
    let second = call(&h.admin, "POST", "/api/v1/tenants/t1/keys", Some(json!({}))).await.unwrap();
    let second = second["secret"].as_str().unwrap().to_owned();
    let (s, _, _) = h.send(h.request("/v1/chat/completions", Some(&second), chat(false, 1).to_string())).await;
    assert_eq!(s, 200);
    call(&h.admin, "DELETE", "/api/v1/tenants/t1", None).await.unwrap();
    let (s, _, _) = h.send(h.request("/v1/chat/completions", Some(&second), chat(false, 1).to_string())).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn malformed_and_oversized_bodies() {
    let h = Harness::with_env(fast_mock(), &[("OBLETH_LIMITS_MAX_BODY_BYTES", "2048")]).await;
    for (body, code) in [
        ("{not json".to_owned(), "invalid_json"),
        ("[1,2]".to_owned(), "invalid_json"),
        ("{}".to_owned(), "missing_model"),
        (r#"{"model": 5}"#.to_owned(), "invalid_model"),
        (r#"{"model": "mock-model", "stream": "yes"}"#.to_owned(), "invalid_stream"),
    ] {
        let (s, _, b) = h.send(h.request("/v1/chat/completions", Some(&h.key), body.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert_openai_error(&b, code);
    }
    let big = json!({"model": "mock-model", "messages": [{"role": "user", "content": "x".repeat(4096)}]});
    let (s, _, b) = h.send(h.request("/v1/chat/completions", Some(&h.key), big.to_string())).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_openai_error(&b, "request_too_large");
    // Unknown routes and methods answer in the same shape.
    let (s, _, b) = h.send(h.request("/v1/nope", Some(&h.key), "{}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_openai_error(&b, "unknown_url");
    let stats = h.mock_stats().await;
    assert_eq!(stats.requests_total, 0, "nothing malformed reached the upstream");
}

#[tokio::test]
async fn unreachable_upstream_is_502() {
    // A port that was free a moment ago: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let base = format!("http://{closed}");
    let h = Harness::start(fast_mock()).await;
    call(&h.admin, "POST", "/api/v1/models", Some(json!({"model_name": "gone", "api_base": base}))).await.unwrap();
    let (s, _, b) = h.post("/v1/chat/completions", json!({"model": "gone", "messages": []})).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    assert_eq!(b["error"]["code"], "upstream_unreachable");
    let [r] = h.records(1).await.try_into().unwrap();
    assert_eq!(r.status, 502);
}

#[tokio::test]
async fn upstream_errors_become_502() {
    let h = Harness::start(obleth_mock::MockConfig { error_rate: 1.0, ..fast_mock() }).await;
    let (s, _, b) = h.post("/v1/chat/completions", chat(false, 2)).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    assert_eq!(b["error"]["code"], "upstream_error");
    let (s, _, _) = h.post("/v1/chat/completions", chat(true, 2)).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    let records = h.records(2).await;
    assert!(records.iter().all(|r| r.status == 502 && r.error_type.as_deref() == Some("upstream_error")));
}

#[tokio::test]
async fn slow_upstream_times_out_with_504() {
    let h = Harness::with_env(
        obleth_mock::MockConfig { stall_rate: 1.0, ..fast_mock() },
        &[("OBLETH_UPSTREAM_RESPONSE_TIMEOUT", "300ms"), ("OBLETH_UPSTREAM_STREAM_IDLE_TIMEOUT", "300ms")],
    )
    .await;
    let (s, _, b) = h.post("/v1/chat/completions", chat(false, 2)).await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(b["error"]["code"], "upstream_timeout");

    // A stream that goes silent ends with an error event instead of hanging.
    let (s, _, bytes) = h.send(h.request("/v1/chat/completions", Some(&h.key), chat(true, 2).to_string())).await;
    assert_eq!(s, 200, "headers were already sent when the stall began");
    let (events, done) = sse_events(&bytes);
    assert!(!done);
    assert_eq!(events.last().unwrap()["error"]["code"], "upstream_timeout");
    let records = h.records(2).await;
    assert_eq!(records.iter().map(|r| r.status).collect::<Vec<_>>(), [504, 504]);
    // The gateway hung up on the stalled upstream requests.
    for _ in 0..200 {
        if h.mock_stats().await.client_disconnects == 2 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the stalled upstream requests were not cancelled: {:?}", h.mock_stats().await);
}

#[tokio::test]
async fn a_stream_cut_by_the_upstream_ends_with_an_error_event() {
    let h = Harness::start(obleth_mock::MockConfig { abort_rate: 1.0, ..fast_mock() }).await;
    let (s, _, bytes) = h.send(h.request("/v1/chat/completions", Some(&h.key), chat(true, 10).to_string())).await;
    assert_eq!(s, 200);
    let (events, done) = sse_events(&bytes);
    assert!(!done);
    assert!(events.iter().any(|e| e["choices"][0]["delta"]["content"].is_string()), "the first half arrived");
    assert_eq!(events.last().unwrap()["error"]["code"], "upstream_error");
    let [r] = h.records(1).await.try_into().unwrap();
    assert_eq!(r.status, 502);
}

#[tokio::test]
async fn admin_api_requires_the_token() {
    let h = Harness::start(fast_mock()).await;
    let wrong = obleth::client::AdminConn { admin_url: h.admin.admin_url.clone(), admin_token: "wrong".into() };
    let err = call(&wrong, "GET", "/api/v1/tenants", None).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    // Validation errors name the field.
    let err = call(&h.admin, "POST", "/api/v1/tenants", Some(json!({"name": "x", "weight": 0}))).await.unwrap_err();
    assert!(err.to_string().contains("weight"), "{err}");
    let err = call(&h.admin, "POST", "/api/v1/tenants", Some(json!({"name": "x", "wieght": 2}))).await.unwrap_err();
    assert!(err.to_string().contains("wieght"), "{err}");
    // Model credentials are write-only.
    let m = call(&h.admin, "POST", "/api/v1/models", Some(json!({"model_name": "k", "api_key": "sk-hidden"})))
        .await
        .unwrap();
    assert_eq!(m["has_api_key"], true);
    assert!(!m.to_string().contains("sk-hidden"));
    let listed = call(&h.admin, "GET", "/api/v1/models", None).await.unwrap();
    assert!(!listed.to_string().contains("sk-hidden"));
}
