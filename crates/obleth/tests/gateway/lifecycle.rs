//! What a request holds and releases: slots, upstream connections, credentials.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use obleth::client::call;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_and_frees_the_slot() {
    let mock = obleth_mock::MockConfig { itl: Duration::from_millis(20), ..fast_mock() };
    let h = Harness::with_env(mock, &[("OBLETH_ADMISSION_MAX_IN_FLIGHT", "1")]).await;
    let res =
        h.http.request(h.request("/v1/chat/completions", Some(&h.key), chat(true, 500).to_string())).await.unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    // Read a couple of chunks, then go away.
    for _ in 0..2 {
        body.frame().await.unwrap().unwrap();
    }
    drop(body);

    let mut stats = h.mock_stats().await;
    for _ in 0..300 {
        if stats.client_disconnects == 1 && stats.running == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        stats = h.mock_stats().await;
    }
    assert_eq!(stats.client_disconnects, 1, "the upstream request was cancelled: {stats:?}");
    assert_eq!(stats.running, 0);
    let [r] = h.records(1).await.try_into().unwrap();
    assert!(r.client_disconnected);
    assert_eq!(r.status, 499);

    // The only slot is free again: the next request is admitted without waiting.
    let (s, headers, _) = h.post("/v1/chat/completions", chat(false, 1)).await;
    assert_eq!(s, 200);
    assert_eq!(headers["x-obleth-admission"], "fast");
}

#[tokio::test]
async fn the_global_cap_bounds_upstream_concurrency() {
    let mock = obleth_mock::MockConfig { ttft: Duration::from_millis(30), ..fast_mock() };
    let h = Arc::new(Harness::with_env(mock, &[("OBLETH_ADMISSION_MAX_IN_FLIGHT", "2")]).await);
    let mut tasks = vec![];
    for i in 0..8 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move { h.post("/v1/chat/completions", chat(i % 2 == 0, 3)).await }));
    }
    let mut classes = vec![];
    for t in tasks {
        let (s, headers, _) = t.await.unwrap();
        assert_eq!(s, 200);
        classes.push(headers["x-obleth-admission"].to_str().unwrap().to_owned());
    }
    let stats = h.mock_stats().await;
    assert_eq!(stats.completed, 8);
    assert_eq!(stats.peak_running, 2, "never more than the cap upstream");
    assert!(classes.iter().any(|c| c == "queued"), "{classes:?}");
    assert_eq!(h.records(8).await.len(), 8);
}

#[tokio::test]
async fn missing_upstream_usage_is_estimated_and_marked() {
    let h = Harness::start(obleth_mock::MockConfig { omit_usage: true, ..fast_mock() }).await;
    let (s, _, _) = h.post("/v1/chat/completions", chat(true, 7)).await;
    assert_eq!(s, 200);
    let [r] = h.records(1).await.try_into().unwrap();
    assert!(r.tokens_estimated);
    let u = r.usage.unwrap();
    assert_eq!(u.output_tokens, 7, "one text chunk per token: {u:?}");
    assert!(u.input_tokens > 0);
}

/// A one-route upstream that remembers the Authorization header it was sent.
async fn recording_upstream() -> (String, Arc<Mutex<Vec<Option<String>>>>) {
    let seen = Arc::new(Mutex::new(vec![]));
    let seen2 = seen.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |headers: http::HeaderMap| {
            let seen = seen2.clone();
            async move {
                let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_owned());
                seen.lock().unwrap().push(auth);
                axum::Json(json!({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn the_client_key_never_reaches_the_upstream() {
    let (base, seen) = recording_upstream().await;
    let h = Harness::start(fast_mock()).await;
    call(
        &h.admin,
        "POST",
        "/api/v1/models",
        Some(json!({"model_name": "keyed", "api_base": base, "api_key": "sk-upstream"})),
    )
    .await
    .unwrap();
    call(&h.admin, "POST", "/api/v1/models", Some(json!({"model_name": "bare", "api_base": base}))).await.unwrap();
    for model in ["keyed", "bare"] {
        let (s, _, _) = h.post("/v1/chat/completions", json!({"model": model, "messages": []})).await;
        assert_eq!(s, 200);
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, [Some("Bearer sk-upstream".to_owned()), None]);
}

#[tokio::test]
async fn the_client_key_is_forwarded_only_when_configured() {
    let (base, seen) = recording_upstream().await;
    let h = Harness::with_env(fast_mock(), &[("OBLETH_UPSTREAM_FORWARD_CLIENT_AUTHORIZATION", "true")]).await;
    call(&h.admin, "POST", "/api/v1/models", Some(json!({"model_name": "bare", "api_base": base}))).await.unwrap();
    let (s, _, _) = h.post("/v1/chat/completions", json!({"model": "bare", "messages": []})).await;
    assert_eq!(s, 200);
    assert_eq!(seen.lock().unwrap().clone(), [Some(format!("Bearer {}", h.key))]);
}
