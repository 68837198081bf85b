//! Capacity, queueing, injected faults and client disconnects.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use obleth_mock::MockConfig;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Mock, chat, fast, with};

fn streamed(max_tokens: u32) -> serde_json::Value {
    with(
        chat("hello"),
        json!({"max_tokens": max_tokens, "stream": true,
        "stream_options": {"include_usage": true}}),
    )
}

#[tokio::test]
async fn capacity_caps_running_sequences() {
    let mock = Arc::new(Mock::start(MockConfig { max_num_seqs: 2, ttft: Duration::from_millis(50), ..fast() }).await);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let mock = Arc::clone(&mock);
        tasks.spawn(async move {
            let body = with(chat("x"), json!({"max_tokens": 2}));
            mock.post("/v1/chat/completions", body, &[]).await.0
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    let s = mock.stats().await;
    assert_eq!(s.peak_running, 2);
    assert_eq!(s.completed, 6);
    assert_eq!((s.running, s.waiting), (0, 0));
}

#[tokio::test]
async fn queue_beyond_max_waiting_is_rejected_and_disconnects_free_slots() {
    let mock = Mock::start(MockConfig { max_num_seqs: 1, max_waiting: 1, ..fast() }).await;
    // Streams send their headers before being scheduled, so both of these return at once
    // and then sit: one on the GPU for an hour, one in the queue behind it.
    let hour = [("x-mock-ttft-ms", "3600000")];
    let (status, first) = mock.open("/v1/chat/completions", streamed(5), &hour).await;
    assert_eq!(status, StatusCode::OK);
    mock.wait_for("first running", |s| s.running == 1).await;
    let (_, second) = mock.open("/v1/chat/completions", streamed(5), &hour).await;
    mock.wait_for("second waiting", |s| s.waiting == 1).await;

    let (status, v) = mock.post("/v1/chat/completions", chat("x"), &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["error"]["code"], "queue_full");
    assert_eq!(mock.stats().await.rejected, 1);

    // Hanging up the running stream hands its slot to the queued one.
    drop(first);
    mock.wait_for("slot handover", |s| s.client_disconnects == 1 && s.running == 1 && s.waiting == 0).await;
    drop(second);
    let s = mock.wait_for("all gone", |s| s.client_disconnects == 2).await;
    assert_eq!((s.running, s.waiting, s.completed), (0, 0, 0));
}

#[tokio::test]
async fn client_disconnect_mid_stream_frees_the_slot() {
    let mock = Mock::start(MockConfig { max_num_seqs: 1, itl: Duration::from_millis(20), ..fast() }).await;
    let body = streamed(10_000).to_string();
    let mut sock = TcpStream::connect(mock.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: mock\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    // Read until the role chunk and at least one token chunk have arrived.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while String::from_utf8_lossy(&seen).matches("data: ").count() < 2 {
        let n = sock.read(&mut buf).await.unwrap();
        assert!(n > 0, "server closed early");
        seen.extend_from_slice(&buf[..n]);
    }
    assert_eq!(mock.stats().await.running, 1);
    drop(sock);
    let s = mock.wait_for("disconnect", |s| s.client_disconnects == 1 && s.running == 0).await;
    assert_eq!(s.completed, 0);

    // The only slot is free again: a new request completes.
    let (status, _) = mock.post("/v1/chat/completions", with(chat("x"), json!({"max_tokens": 2})), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mock.stats().await.completed, 1);
}

#[tokio::test]
async fn client_disconnect_during_non_streamed_request_is_counted() {
    let mock = Mock::start(fast()).await;
    let body = chat("x").to_string();
    let mut sock = TcpStream::connect(mock.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: mock\r\ncontent-type: application/json\r\n\
         x-mock-ttft-ms: 3600000\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    mock.wait_for("running", |s| s.running == 1).await;
    drop(sock);
    mock.wait_for("disconnect", |s| s.client_disconnects == 1 && s.running == 0).await;
}

#[tokio::test]
async fn each_sse_event_is_its_own_chunk() {
    let mock = Mock::start(fast()).await;
    let body = streamed(5).to_string();
    let mut sock = TcpStream::connect(mock.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: mock\r\nconnection: close\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    sock.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, mut rest) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{head}");
    let mut chunks = Vec::new();
    loop {
        let (size, after) = rest.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size, 16).unwrap();
        if size == 0 {
            break;
        }
        chunks.push(&after[..size]);
        rest = &after[size + 2..];
    }
    // role + 5 tokens + usage + [DONE], one event per chunk.
    assert_eq!(chunks.len(), 8, "{chunks:#?}");
    for c in &chunks {
        assert!(c.starts_with("data: ") && c.ends_with("\n\n"), "{c:?}");
        assert_eq!(c.matches("data: ").count(), 1, "{c:?}");
    }
    assert_eq!(chunks[7], "data: [DONE]\n\n");
}

#[tokio::test]
async fn fault_error() {
    let mock = Mock::start(fast()).await;
    for body in [chat("x"), streamed(3)] {
        let (status, v) = mock.post("/v1/chat/completions", body, &[("x-mock-fault", "error")]).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(v["error"]["type"], "server_error");
        assert_eq!(v["error"]["code"], "mock_injected_error");
    }
    let s = mock.stats().await;
    assert_eq!((s.errors_injected, s.completed, s.peak_running), (2, 0, 0));
}

#[tokio::test]
async fn fault_stall() {
    let mock = Mock::start(fast()).await;
    let s = mock.stream("/v1/chat/completions", streamed(3), &[("x-mock-fault", "stall")]).await;
    assert_eq!(s.status, StatusCode::OK, "headers are sent before the stall");
    assert_eq!(s.headers["content-type"], "text/event-stream");
    assert!(s.events.is_empty() && s.cut && !s.done, "{s:?}");

    let r = mock
        .send(
            "POST",
            "/v1/completions",
            json!({"model": "m", "prompt": "x"}).to_string().into(),
            &[("x-mock-fault", "stall")],
        )
        .await;
    assert!(r.is_err(), "a stalled non-stream ends with a closed connection: {r:?}");

    let s = mock.stats().await;
    assert_eq!((s.stalls_injected, s.completed, s.client_disconnects), (2, 0, 0));
    assert_eq!(s.peak_running, 0, "stalls hold no sequence slot");
}

#[tokio::test]
async fn fault_abort() {
    let mock = Mock::start(fast()).await;
    let s = mock.stream("/v1/chat/completions", streamed(10), &[("x-mock-fault", "abort")]).await;
    assert!(s.cut && !s.done, "{s:?}");
    // The role chunk and the first half of the tokens.
    assert_eq!(s.events.len(), 1 + 5, "{:#?}", s.events);
    assert!(s.events.iter().all(|e| e["choices"][0]["finish_reason"].is_null()));

    let r = mock.send("POST", "/v1/chat/completions", chat("x").to_string().into(), &[("x-mock-fault", "abort")]).await;
    assert!(r.is_err(), "{r:?}");

    let s = mock.stats().await;
    assert_eq!((s.aborts_injected, s.completed, s.running), (2, 0, 0));
    assert_eq!((s.client_disconnects, s.completion_tokens_total), (0, 0));
}

#[tokio::test]
async fn fault_no_usage() {
    let mock = Mock::start(fast()).await;
    let no_usage = [("x-mock-fault", "no-usage")];
    let (status, v) = mock.post("/v1/chat/completions", with(chat("x"), json!({"max_tokens": 2})), &no_usage).await;
    assert_eq!(status, StatusCode::OK);
    assert!(v.get("usage").is_none(), "{v}");

    let s = mock.stream("/v1/chat/completions", streamed(2), &no_usage).await;
    assert!(s.done);
    assert_eq!(s.events.len(), 3, "role + 2 tokens, no usage chunk");
    assert!(s.events.iter().all(|e| e.get("usage").is_none()));

    let (_, v) = mock.post("/v1/embeddings", json!({"model": "e", "input": "a b"}), &no_usage).await;
    assert!(v.get("usage").is_none(), "{v}");

    let s = mock.stats().await;
    assert_eq!(s.completed, 3);
    assert_eq!(s.prompt_tokens_total, 7 + 7 + 2, "omitted usage is still counted");
    assert_eq!(s.completion_tokens_total, 4);
}

#[tokio::test]
async fn random_faults_follow_rates_and_headers_override_them() {
    let mock = Mock::start(MockConfig { error_rate: 1.0, omit_usage: true, ..fast() }).await;
    for _ in 0..3 {
        let (status, _) = mock.post("/v1/chat/completions", chat("x"), &[]).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    // An explicit header replaces the random draw.
    let (status, v) = mock.post("/v1/chat/completions", chat("x"), &[("x-mock-fault", "")]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(v.get("usage").is_none(), "omit_usage from the config still applies");
    assert_eq!(mock.stats().await.errors_injected, 3);

    let mock = Mock::start(MockConfig { abort_rate: 1.0, ..fast() }).await;
    let s = mock.stream("/v1/chat/completions", streamed(4), &[]).await;
    assert!(s.cut && !s.done);
    assert_eq!(mock.stats().await.aborts_injected, 1);
}

#[tokio::test]
async fn shutdown_ends_injected_stalls() {
    // The default stall lasts five minutes; shutdown must not wait for it.
    let mock = Mock::start(MockConfig { stall_duration: Duration::from_secs(300), ..fast() }).await;
    let (status, mut body) = mock.open("/v1/chat/completions", streamed(3), &[("x-mock-fault", "stall")]).await;
    assert_eq!(status, StatusCode::OK);
    mock.wait_for("stall", |s| s.stalls_injected == 1).await;
    let reader = tokio::spawn(async move {
        use http_body_util::BodyExt;
        while let Some(Ok(_)) = body.frame().await {}
    });
    tokio::time::timeout(Duration::from_secs(60), mock.shutdown())
        .await
        .expect("shutdown hung on a stalled stream")
        .unwrap();
    reader.await.unwrap();
}
