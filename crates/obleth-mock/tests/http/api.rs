//! Response shapes, token counting and determinism of the happy paths.

use http::StatusCode;
use serde_json::{Value, json};

use crate::support::{Mock, chat, fast, with};

fn words(s: &str) -> usize {
    s.split_whitespace().count()
}

#[tokio::test]
async fn chat_non_streaming_usage_follows_the_rule() {
    let mock = Mock::start(fast()).await;
    let body = json!({
        "model": "any-model-name",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "Say hello to the world"}]},
        ],
        "max_tokens": 5,
        "some_unknown_field": {"nested": true},
    });
    let (status, v) = mock.post("/v1/chat/completions", body.clone(), &[]).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "any-model-name");
    // 3 + 5 words, + 3 per message × 2, + 3.
    assert_eq!(v["usage"], json!({"prompt_tokens": 17, "completion_tokens": 5, "total_tokens": 22}));
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "length");
    assert_eq!(choice["message"]["role"], "assistant");
    let content = choice["message"]["content"].as_str().unwrap();
    assert_eq!(words(content), 5);

    // Same request, same text.
    let (_, again) = mock.post("/v1/chat/completions", body, &[]).await;
    assert_eq!(again["choices"][0]["message"]["content"], content);

    // No max_tokens: the default length and a natural stop.
    let (_, v) = mock.post("/v1/chat/completions", chat("hi"), &[]).await;
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 16);
    assert_eq!(v["usage"]["prompt_tokens"], 1 + 3 + 3);

    let s = mock.stats().await;
    assert_eq!((s.requests_total, s.completed), (3, 3));
    assert_eq!(s.prompt_tokens_total, 17 + 17 + 7);
    assert_eq!(s.completion_tokens_total, 5 + 5 + 16);
    assert_eq!((s.running, s.waiting), (0, 0));
}

#[tokio::test]
async fn max_completion_tokens_wins_and_n_multiplies() {
    let mock = Mock::start(fast()).await;
    let body = with(chat("one two"), json!({"max_tokens": 9, "max_completion_tokens": 3, "n": 2}));
    let (_, v) = mock.post("/v1/chat/completions", body, &[]).await;
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert_eq!(choices[1]["index"], 1);
    assert_ne!(choices[0]["message"]["content"], choices[1]["message"]["content"]);
    assert_eq!(v["usage"]["completion_tokens"], 6);
    assert_eq!(mock.stats().await.peak_running, 2, "each choice is one sequence");
}

#[tokio::test]
async fn chat_streaming_with_include_usage() {
    let mock = Mock::start(fast()).await;
    let body = with(
        chat("tell me a story"),
        json!({"max_tokens": 4, "stream": true,
        "stream_options": {"include_usage": true}}),
    );
    let s = mock.stream("/v1/chat/completions", body.clone(), &[]).await;
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(s.headers["content-type"], "text/event-stream");
    assert!(s.done && !s.cut);
    // role chunk + 4 content chunks + usage chunk
    assert_eq!(s.events.len(), 6, "{:#?}", s.events);
    for e in &s.events {
        assert_eq!(e["object"], "chat.completion.chunk");
        assert_eq!(e["model"], "test-model");
        assert_eq!(e["id"], s.events[0]["id"]);
    }
    assert_eq!(s.events[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    let content: String = s.events[1..5]
        .iter()
        .map(|e| {
            assert_eq!(e["usage"], Value::Null);
            assert!(e.as_object().unwrap().contains_key("usage"), "usage: null must be present");
            e["choices"][0]["delta"]["content"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(words(&content), 4);
    assert_eq!(s.events[3]["choices"][0]["finish_reason"], Value::Null);
    assert_eq!(s.events[4]["choices"][0]["finish_reason"], "length");
    let last = &s.events[5];
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"], json!({"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}));

    // Streamed text equals the non-streamed text for the same request.
    let (_, v) = mock.post("/v1/chat/completions", with(body, json!({"stream": false})), &[]).await;
    assert_eq!(v["choices"][0]["message"]["content"], content.as_str());
    let stats = mock.stats().await;
    assert_eq!(stats.completed, 2);
    assert_eq!(stats.completion_tokens_total, 8);
}

#[tokio::test]
async fn chat_streaming_without_include_usage_has_no_usage() {
    let mock = Mock::start(fast()).await;
    let body = with(chat("hi"), json!({"max_tokens": 3, "stream": true}));
    let s = mock.stream("/v1/chat/completions", body, &[]).await;
    assert!(s.done);
    assert_eq!(s.events.len(), 4);
    for e in &s.events {
        assert!(!e.as_object().unwrap().contains_key("usage"), "{e}");
        assert_eq!(e["choices"].as_array().unwrap().len(), 1);
    }
    // Usage is still counted in the stats.
    assert_eq!(mock.stats().await.completion_tokens_total, 3);
}

#[tokio::test]
async fn completions_shapes() {
    let mock = Mock::start(fast()).await;
    let (status, v) =
        mock.post("/v1/completions", json!({"model": "m", "prompt": "a b c", "max_tokens": 3}), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["object"], "text_completion");
    assert_eq!(words(v["choices"][0]["text"].as_str().unwrap()), 3);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"], json!({"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}));

    // A batch of prompts (text and token ids) gives one choice per prompt.
    let (_, v) =
        mock.post("/v1/completions", json!({"model": "m", "prompt": ["x y", [1, 2, 3]], "max_tokens": 2}), &[]).await;
    assert_eq!(v["choices"].as_array().unwrap().len(), 2);
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["usage"]["completion_tokens"], 4);

    let s = mock
        .stream(
            "/v1/completions",
            json!({"model": "m", "prompt": "a", "max_tokens": 2, "stream": true,
                   "stream_options": {"include_usage": true}}),
            &[],
        )
        .await;
    assert!(s.done);
    assert_eq!(s.events.len(), 3, "2 tokens + usage, no role chunk: {:#?}", s.events);
    assert!(s.events.iter().all(|e| e["object"] == "text_completion"));
    assert_eq!(s.events[1]["choices"][0]["finish_reason"], "length");
    assert_eq!(s.events[2]["usage"]["total_tokens"], 3);
}

#[tokio::test]
async fn embeddings_shapes() {
    let mock = Mock::start(fast()).await;
    let (status, v) = mock.post("/v1/embeddings", json!({"model": "emb", "input": ["hello world", "x"]}), &[]).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "emb");
    assert_eq!(v["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["object"], "embedding");
    assert_eq!(data[1]["index"], 1);
    assert_eq!(data[0]["embedding"].as_array().unwrap().len(), 16);

    let (_, v) = mock
        .post(
            "/v1/embeddings",
            json!({"model": "emb", "input": [5, 6, 7], "dimensions": 8, "encoding_format": "base64"}),
            &[],
        )
        .await;
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    // 8 floats = 32 bytes = 44 base64 characters with padding.
    assert_eq!(v["data"][0]["embedding"].as_str().unwrap().len(), 44);
    assert_eq!(mock.stats().await.prompt_tokens_total, 6);
}

#[tokio::test]
async fn models_health_stats_and_reset() {
    let mock = Mock::start(obleth_mock::MockConfig { models: vec!["a".into(), "b".into()], ..fast() }).await;
    let (status, body) = mock.get("/v1/models").await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["object"], "list");
    let ids: Vec<_> = v["data"].as_array().unwrap().iter().map(|m| m["id"].clone()).collect();
    assert_eq!(ids, [json!("a"), json!("b")]);
    assert_eq!(v["data"][0]["object"], "model");

    assert_eq!(mock.get("/health").await, (StatusCode::OK, "ok".into()));

    mock.post("/v1/chat/completions", chat("x"), &[]).await;
    assert_eq!(mock.stats().await.completed, 1);
    let (status, _) = mock.post("/mock/reset", json!({}), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mock.stats().await, obleth_mock::StatsSnapshot::default());
}

#[tokio::test]
async fn bad_requests_get_openai_errors() {
    let mock = Mock::start(fast()).await;
    let (status, _, body) = mock.send("POST", "/v1/chat/completions", "{not json".into(), &[]).await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    for key in ["message", "param", "code"] {
        assert!(v["error"].as_object().unwrap().contains_key(key), "{v}");
    }

    let (status, v) =
        mock.post("/v1/chat/completions", json!({"messages": [{"role": "user", "content": "x"}]}), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["param"], "model");

    for (path, body) in [
        ("/v1/completions", json!({"model": "m"})),
        ("/v1/embeddings", json!({"model": "m", "input": {"x": 1}})),
        ("/v1/chat/completions", with(chat("x"), json!({"max_tokens": -1}))),
        ("/v1/chat/completions", with(chat("x"), json!({"n": 0}))),
    ] {
        let (status, v) = mock.post(path, body.clone(), &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }

    for header in [("x-mock-fault", "explode"), ("x-mock-ttft-ms", "soon")] {
        let (status, _) = mock.post("/v1/chat/completions", chat("x"), &[header]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{header:?}");
    }

    let (status, _) = mock.get("/v1/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(mock.stats().await.completed, 0);
}

#[tokio::test]
async fn zero_latency_streams_complete() {
    let mock = Mock::start(obleth_mock::MockConfig {
        ttft: std::time::Duration::ZERO,
        itl: std::time::Duration::ZERO,
        ..fast()
    })
    .await;
    let body = with(chat("hi"), json!({"max_tokens": 50, "stream": true}));
    let s = mock.stream("/v1/chat/completions", body, &[]).await;
    assert!(s.done);
    assert_eq!(s.events.len(), 51);
}

#[tokio::test]
async fn timing_headers_override_config() {
    // Configured latencies are an hour: the request can only finish if the headers win.
    let mock = Mock::start(obleth_mock::MockConfig {
        ttft: std::time::Duration::from_secs(3600),
        itl: std::time::Duration::from_secs(3600),
        ..fast()
    })
    .await;
    let body = with(chat("hi"), json!({"max_tokens": 3}));
    let headers = [("x-mock-ttft-ms", "1"), ("x-mock-itl-ms", "0")];
    let (status, v) = mock.post("/v1/chat/completions", body, &headers).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["usage"]["completion_tokens"], 3);
}
