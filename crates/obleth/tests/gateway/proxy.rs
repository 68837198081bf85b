//! The happy paths: every route, streamed and not, with usage reconciled into exactly
//! one record per request.

use obleth_core::AdmissionClass;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn chat_non_streaming_maps_the_model_and_records_usage() {
    let h = Harness::start(fast_mock()).await;
    let (status, headers, body) = h.post("/v1/chat/completions", chat(false, 5)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-obleth-admission"], "fast");
    let request_id = headers["x-request-id"].to_str().unwrap().to_owned();
    // The upstream saw the registry's upstream_model (the mock echoes it).
    assert_eq!(body["model"], "upstream-name");
    assert_eq!(body["usage"]["completion_tokens"], 5);
    let prompt = body["usage"]["prompt_tokens"].as_u64().unwrap();

    let [r] = h.records(1).await.try_into().unwrap();
    assert_eq!(r.request_id, request_id);
    assert_eq!(r.status, 200);
    assert_eq!(r.route, "chat_completions");
    assert_eq!(r.requested_model.as_deref(), Some("mock-model"));
    assert_eq!(r.upstream_model.as_deref(), Some("upstream-name"));
    assert_eq!(r.admission_class, AdmissionClass::Fast);
    let u = r.usage.unwrap();
    assert_eq!((u.input_tokens, u.output_tokens), (prompt, 5));
    assert!(!r.tokens_estimated);
    assert!((r.cost - (prompt as f64 * 0.001 + 5.0 * 0.002)).abs() < 1e-9);
    assert!(r.key_prefix.as_deref().unwrap().starts_with("obl_"));
    assert!(!r.streamed && !r.client_disconnected);
}

#[tokio::test]
async fn streaming_hides_the_usage_chunk_the_client_did_not_ask_for() {
    let h = Harness::start(fast_mock()).await;
    let (status, headers, body) =
        h.send(h.request("/v1/chat/completions", Some(&h.key), chat(true, 6).to_string())).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream");
    let (events, done) = sse_events(&body);
    assert!(done, "the stream ends with [DONE]");
    assert!(events.iter().all(|e| e["usage"].is_null()), "no usage reached the client");
    let text: String = events.iter().filter_map(|e| e["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text.split_whitespace().count(), 6);

    // ...but the gateway asked for it and reconciled it.
    let [r] = h.records(1).await.try_into().unwrap();
    assert!(r.streamed);
    assert_eq!(r.usage.unwrap().output_tokens, 6);
    assert!(!r.tokens_estimated);
    assert!(r.first_token_at.is_some());
}

#[tokio::test]
async fn streaming_passes_usage_through_when_asked() {
    let h = Harness::start(fast_mock()).await;
    let mut body = chat(true, 4);
    body["stream_options"] = json!({"include_usage": true});
    let (_, _, bytes) = h.send(h.request("/v1/chat/completions", Some(&h.key), body.to_string())).await;
    let (events, done) = sse_events(&bytes);
    assert!(done);
    let last = events.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 4);
    let [r] = h.records(1).await.try_into().unwrap();
    assert_eq!(r.usage.unwrap().output_tokens, 4);
}

#[tokio::test]
async fn completions_and_embeddings() {
    let h = Harness::start(fast_mock()).await;
    let (status, _, body) =
        h.post("/v1/completions", json!({"model": "mock-model", "prompt": "say hi", "max_tokens": 3})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usage"]["completion_tokens"], 3);
    assert!(body["choices"][0]["text"].as_str().unwrap().split_whitespace().count() == 3);

    let (status, _, body) = h.post("/v1/embeddings", json!({"model": "mock-model", "input": ["a b c", "d e"]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(body["usage"]["prompt_tokens"], 5);

    let records = h.records(2).await;
    assert_eq!(records[0].route, "completions");
    assert_eq!(records[1].route, "embeddings");
    assert_eq!(records[1].usage.unwrap().input_tokens, 5);
}

#[tokio::test]
async fn models_lists_what_the_tenant_may_use() {
    let h = Harness::start(fast_mock()).await;
    obleth::client::call(&h.admin, "POST", "/api/v1/models", Some(json!({"model_name": "other"}))).await.unwrap();
    obleth::client::call(&h.admin, "POST", "/api/v1/models", Some(json!({"model_name": "off", "enabled": false})))
        .await
        .unwrap();
    assert_eq!(list_models(&h).await, ["mock-model", "other"]);
    obleth::client::call(&h.admin, "PATCH", "/api/v1/tenants/t1", Some(json!({"allowed_models": ["other"]})))
        .await
        .unwrap();
    assert_eq!(list_models(&h).await, ["other"]);
}

async fn list_models(h: &Harness) -> Vec<String> {
    let req = http::Request::get(format!("http://{}/v1/models", h.data))
        .header("authorization", format!("Bearer {}", h.key))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let (status, _, body) = h.send(req).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut ids: Vec<String> =
        v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids
}
