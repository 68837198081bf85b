//! Upstream URLs as a policy, through the real wiring: what registration refuses, what the
//! data plane refuses at connect time, where credentials go, and what of an upstream's
//! errors reaches a client.
//!
//! Every destination here is on this machine: refused ones are never connected to, and
//! the allowed ones are the mock or a recording upstream on 127.0.0.1.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use obleth::client::call;
use obleth_store::NewModel;
use serde_json::{Value, json};

use crate::support::*;

async fn admin(h: &Harness, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(format!("{}{path}", h.admin.admin_url))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let res = h.http.request(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn admin_port(h: &Harness) -> u16 {
    h.admin.admin_url.rsplit(':').next().unwrap().parse().unwrap()
}

/// One request the recording upstream saw: path and Authorization.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// An upstream on 127.0.0.1 that records what it is sent and answers `status` with `body`.
async fn recording_upstream(status: StatusCode, body: Value) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (seen, body) = (seen2.clone(), body.clone());
        async move {
            let auth = req.headers().get("authorization").map(|v| v.to_str().unwrap().to_owned());
            seen.lock().unwrap().push((req.uri().to_string(), auth));
            (status, axum::Json(body))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

fn ok_body() -> Value {
    json!({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
}

fn chat_to(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn registration_refuses_forbidden_upstreams_and_says_why() {
    let h = Harness::start(fast_mock()).await;
    let (admin_port, data_port) = (admin_port(&h), h.data.port());
    let cases = [
        ("http://169.254.169.254/".to_owned(), "metadata"),
        ("http://2852039166/".to_owned(), "metadata"),
        ("http://0251.0376.0251.0376/latest/".to_owned(), "metadata"),
        ("http://0xA9FEA9FE/".to_owned(), "metadata"),
        ("http://169.254.43518/".to_owned(), "metadata"),
        ("http://[::ffff:169.254.169.254]/".to_owned(), "metadata"),
        ("http://100.100.100.200/".to_owned(), "metadata"),
        ("http://169.254.7.7:8000/v1".to_owned(), "link-local"),
        (format!("http://127.0.0.1:{admin_port}/"), "own listeners"),
        (format!("http://0.0.0.0:{admin_port}"), "own listeners"),
        (format!("http://[::1]:{admin_port}"), "own listeners"),
        (format!("http://127.0.0.1:{data_port}/v1"), "own listeners"),
        (format!("http://localhost:{admin_port}/v1"), "own listeners"),
        ("http://alice:s3cret@host.example/".to_owned(), "api_key"),
        ("http://host.example/v1?".to_owned(), "query"),
        ("http://host.example/v1#".to_owned(), "fragment"),
        ("ftp://host.example/".to_owned(), "http"),
    ];
    for (base, rule) in &cases {
        let (s, v) = admin(&h, "POST", "/api/v1/models", json!({"model_name": "bad", "api_base": base})).await;
        assert_eq!((s, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("api_base")), "{base}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(rule), "{base}: the message names the rule: {message}");
        assert!(!message.contains("s3cret"), "the URL is not echoed: {message}");
        let (s, v) = admin(&h, "PATCH", "/api/v1/models/mock-model", json!({"api_base": base})).await;
        assert_eq!((s, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("api_base")), "{base}: {v}");
    }
    let (s, v) = admin(&h, "GET", "/api/v1/models/bad", json!(null)).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let m = call(&h.admin, "GET", "/api/v1/models/mock-model", None).await.unwrap();
    assert!(m["api_base"].is_null(), "the refused patches changed nothing: {m}");

    // Loopback on a port that is none of the gateway's (the mock, here) is fine, and
    // stored normalised.
    let upper = format!("HTTP://LOCALHOST:{}/v1/", h.mock.port());
    let m = call(&h.admin, "POST", "/api/v1/models", Some(json!({"model_name": "local", "api_base": upper})))
        .await
        .unwrap();
    assert_eq!(m["api_base"], format!("http://localhost:{}/v1", h.mock.port()));
    let (s, _, _) = h.post("/v1/chat/completions", chat_to("local")).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn a_row_the_admin_api_would_refuse_is_refused_at_connect() {
    let h = Harness::start(fast_mock()).await;
    let admin_port = admin_port(&h);
    // Written straight into the store, as a row from before these checks (or one whose
    // name resolved elsewhere when it was registered) would be.
    let store = h.store();
    for (name, base) in [
        ("to-admin-by-name", format!("http://localhost:{admin_port}/v1")),
        ("to-admin-by-address", format!("http://127.0.0.1:{admin_port}/v1")),
        ("to-metadata", "http://2852039166/".to_owned()),
    ] {
        let new: NewModel = serde_json::from_value(json!({"model_name": name, "api_base": base})).unwrap();
        store.create_model(new).await.unwrap();
        let (s, _, v) = h.post("/v1/chat/completions", chat_to(name)).await;
        assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::BAD_GATEWAY, Some("upstream_forbidden")), "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(!message.contains(&admin_port.to_string()) && !message.contains("169.254"), "{message}");
    }
    // Had the admin API been reached, its 404 would have come back as a relayed 404.
    let records = h.records(3).await;
    assert!(records.iter().all(|r| r.status == 502 && r.error_type.as_deref() == Some("upstream_forbidden")));
}

#[tokio::test]
async fn an_allowlist_refuses_other_hosts_at_registration_and_at_connect() {
    let (other, seen) = recording_upstream(StatusCode::OK, ok_body()).await;
    let other_port: u16 = other.rsplit(':').next().unwrap().parse().unwrap();
    let h =
        Harness::with_env(fast_mock(), &[("OBLETH_UPSTREAM_ALLOWED_HOSTS", "10.0.0.0/8,*.backends.internal")]).await;
    // The default upstream (the mock, 127.0.0.1) needs no entry: the operator configured it.
    let (s, _, _) = h.post("/v1/chat/completions", chat(false, 1)).await;
    assert_eq!(s, StatusCode::OK);

    for base in [other.clone(), format!("http://localhost:{other_port}"), "http://127.0.0.2:8000".to_owned()] {
        let (s, v) = admin(&h, "POST", "/api/v1/models", json!({"model_name": "elsewhere", "api_base": base})).await;
        assert_eq!((s, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("api_base")), "{base}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("upstream.allowed_hosts"), "{v}");
    }
    // The mock's host on another port is not the default upstream either.
    let (s, _) = admin(
        &h,
        "POST",
        "/api/v1/models",
        json!({"model_name": "x", "api_base": format!("http://127.0.0.1:{other_port}")}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // A listed network registers (nothing connects to it here; names would need DNS).
    let (s, v) =
        admin(&h, "POST", "/api/v1/models", json!({"model_name": "in-net", "api_base": "http://10.1.2.3:8000/v1"}))
            .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    // A name the allowlist does not hold, resolving outside its networks: refused after
    // DNS, before anything is sent.
    let store = h.store();
    let new: NewModel =
        serde_json::from_value(json!({"model_name": "drifted", "api_base": format!("http://localhost:{other_port}")}))
            .unwrap();
    store.create_model(new).await.unwrap();
    let (s, _, v) = h.post("/v1/chat/completions", chat_to("drifted")).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::BAD_GATEWAY, Some("upstream_forbidden")), "{v}");
    assert!(seen.lock().unwrap().is_empty(), "the refused upstream saw nothing");
}

#[tokio::test]
async fn the_global_upstream_key_goes_only_to_the_default_upstream() {
    let (default, default_seen) = recording_upstream(StatusCode::OK, ok_body()).await;
    let (other, other_seen) = recording_upstream(StatusCode::OK, ok_body()).await;
    let h = Harness::with_env(
        fast_mock(),
        &[("OBLETH_UPSTREAM_BASE_URL", &format!("{default}/v1")), ("OBLETH_UPSTREAM_API_KEY", "sk-global-7f1c")],
    )
    .await;
    let models = [
        json!({"model_name": "own-base", "api_base": other}),
        json!({"model_name": "own-base-own-key", "api_base": other, "api_key": "sk-own-22ab"}),
        // The default upstream spelt differently is still the default upstream.
        json!({"model_name": "default-spelt-out", "api_base": format!("{}/", default.to_uppercase())}),
    ];
    for m in models {
        call(&h.admin, "POST", "/api/v1/models", Some(m)).await.unwrap();
    }
    for model in ["mock-model", "default-spelt-out", "own-base", "own-base-own-key"] {
        let (s, _, v) = h.post("/v1/chat/completions", chat_to(model)).await;
        assert_eq!(s, StatusCode::OK, "{model}: {v}");
    }
    let auth = |seen: &Seen| seen.lock().unwrap().iter().map(|(_, a)| a.clone()).collect::<Vec<_>>();
    let global = Some("Bearer sk-global-7f1c".to_owned());
    assert_eq!(auth(&default_seen), [global.clone(), global]);
    assert_eq!(auth(&other_seen), [None, Some("Bearer sk-own-22ab".to_owned())], "a model's api_base never gets it");
}

#[tokio::test]
async fn relayed_errors_name_no_internal_address() {
    let leak = json!({"error": {"message": "no model m at http://10.9.8.7:8000/v1/chat/completions (router vllm-0.vllm.svc:8000, peer 10.9.8.7:8000)", "type": "invalid_request_error"}});
    let (upstream, _) = recording_upstream(StatusCode::NOT_FOUND, leak).await;
    let h = Harness::start(fast_mock()).await;
    call(&h.admin, "POST", "/api/v1/models", Some(json!({"model_name": "leaky", "api_base": upstream}))).await.unwrap();
    let (s, _, v) = h.post("/v1/chat/completions", chat_to("leaky")).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("upstream_rejected")), "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("no model m at [url]"), "the rest of the message stays: {message}");
    for internal in ["10.9.8.7", "http://", "vllm-0", &upstream[7..]] {
        assert!(!message.contains(internal), "{internal} leaked: {message}");
    }

    // A long message is bounded.
    let long = json!({"error": {"message": "x".repeat(10_000)}});
    let (upstream, _) = recording_upstream(StatusCode::BAD_REQUEST, long).await;
    call(&h.admin, "POST", "/api/v1/models", Some(json!({"model_name": "chatty", "api_base": upstream})))
        .await
        .unwrap();
    let (s, _, v) = h.post("/v1/chat/completions", chat_to("chatty")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"]["message"].as_str().unwrap().chars().count() <= 513, "{v}");
}

#[tokio::test]
async fn a_connect_error_names_no_address() {
    // A port that was free a moment ago: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let h = Harness::start(fast_mock()).await;
    let base = format!("http://{closed}");
    call(&h.admin, "POST", "/api/v1/models", Some(json!({"model_name": "gone", "api_base": base}))).await.unwrap();
    let (s, _, v) = h.post("/v1/chat/completions", chat_to("gone")).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::BAD_GATEWAY, Some("upstream_unreachable")), "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(!message.contains("127.0.0.1") && !message.contains(&closed.port().to_string()), "{message}");
}
