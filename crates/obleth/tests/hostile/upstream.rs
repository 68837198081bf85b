//! A hostile (or just buggy) OpenAI-compatible backend. The model a request names picks
//! the misbehaviour, so one server plays every part:
//!
//! | upstream model   | answer                                                              |
//! |------------------|---------------------------------------------------------------------|
//! | `honest`         | a short completion with true usage (streamed or not)                |
//! | `absurd-usage`   | the same text, `completion_tokens: 10^15`                           |
//! | `negative-usage` | `prompt_tokens: -5`                                                 |
//! | `float-usage`    | `completion_tokens: 2.5`                                            |
//! | `overflow-usage` | `prompt_tokens: 2^63 + 5`                                           |
//! | `unterminated`   | one SSE event that never ends, 64 KiB frames at full speed (≤ 300 MiB) |
//! | `firehose`       | valid chunks of 1 KiB of text at full speed (≤ 256 MiB), then usage |
//! | `leaky-error`    | a 400 whose message quotes the backend's internal URL               |

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// What the server has seen and sent.
#[derive(Default)]
pub struct Counters {
    pub requests: AtomicU64,
    /// Bytes of streamed bodies the gateway accepted from us.
    pub streamed_bytes: AtomicU64,
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
}

/// The backend's internal address, as a leaky error message quotes it.
pub const INTERNAL_URL: &str = "http://10.20.30.40:8000/v1/chat/completions";

impl Upstream {
    pub async fn start() -> Upstream {
        let counters = Arc::new(Counters::default());
        let app = Router::new().fallback(handle).with_state(counters.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Upstream { addr, counters }
    }

    pub fn requests(&self) -> u64 {
        self.counters.requests.load(Ordering::Relaxed)
    }

    pub fn streamed_bytes(&self) -> u64 {
        self.counters.streamed_bytes.load(Ordering::Relaxed)
    }
}

async fn handle(State(counters): State<Arc<Counters>>, body: Bytes) -> Response {
    counters.requests.fetch_add(1, Ordering::Relaxed);
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = req["model"].as_str().unwrap_or("honest").to_owned();
    let stream = req["stream"].as_bool().unwrap_or(false);
    match model.as_str() {
        "unterminated" => unterminated(counters),
        "firehose" => firehose(counters, stream),
        "leaky-error" => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {"message": format!("context too long for {INTERNAL_URL} (pod vllm-7 at 10.20.30.40:8000)"), "type": "invalid_request_error"}})),
        )
            .into_response(),
        _ => {
            let usage = usage_for(&model);
            if stream { sse(&streamed_chunks(&usage)) } else { whole(&usage) }
        }
    }
}

/// The usage object each misbehaving model reports, as raw JSON text (so that it can
/// hold numbers no JSON library would write).
fn usage_for(model: &str) -> String {
    match model {
        "absurd-usage" => {
            r#"{"prompt_tokens":10,"completion_tokens":1000000000000000,"total_tokens":1000000000000010}"#
        }
        "negative-usage" => r#"{"prompt_tokens":-5,"completion_tokens":3,"total_tokens":-2}"#,
        "float-usage" => r#"{"prompt_tokens":10,"completion_tokens":2.5,"total_tokens":12.5}"#,
        "overflow-usage" => r#"{"prompt_tokens":9223372036854775813,"completion_tokens":3,"total_tokens":3}"#,
        _ => r#"{"prompt_tokens":10,"completion_tokens":3,"total_tokens":13}"#,
    }
    .to_owned()
}

fn whole(usage: &str) -> Response {
    let body = format!(
        r#"{{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{{"index":0,"message":{{"role":"assistant","content":"one two three"}},"finish_reason":"stop"}}],"usage":{usage}}}"#
    );
    ([("content-type", "application/json")], body).into_response()
}

fn chunk(content: &str) -> String {
    format!(
        "data: {{\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{}}}}}]}}\n\n",
        Value::String(content.to_owned())
    )
}

fn usage_chunk(usage: &str) -> String {
    format!(
        "data: {{\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{usage}}}\n\n"
    )
}

fn streamed_chunks(usage: &str) -> Vec<String> {
    vec![chunk("one"), chunk(" two"), chunk(" three"), usage_chunk(usage), "data: [DONE]\n\n".to_owned()]
}

fn sse(chunks: &[String]) -> Response {
    let body: String = chunks.concat();
    ([("content-type", "text/event-stream")], body).into_response()
}

/// Streams `frames` produced by `next` until it returns `None`, counting the bytes.
fn streaming(counters: Arc<Counters>, next: impl FnMut(u64) -> Option<Bytes> + Send + 'static) -> Response {
    let stream = futures_util::stream::unfold((0u64, next, counters), |(i, mut next, counters)| async move {
        let frame = next(i)?;
        counters.streamed_bytes.fetch_add(frame.len() as u64, Ordering::Relaxed);
        // Let the runtime breathe between frames, but never wait.
        tokio::task::yield_now().await;
        Some((Ok::<_, std::io::Error>(frame), (i + 1, next, counters)))
    });
    ([("content-type", "text/event-stream")], Body::from_stream(stream)).into_response()
}

const FLOOD_FRAME: usize = 64 * 1024;

fn unterminated(counters: Arc<Counters>) -> Response {
    let junk = Bytes::from(vec![b'x'; FLOOD_FRAME]);
    let frames = (300 << 20) / FLOOD_FRAME as u64;
    streaming(counters, move |i| match i {
        0 => Some(Bytes::from_static(b"data: {\"choices\":[{\"delta\":{\"content\":\"")),
        i if i <= frames => Some(junk.clone()),
        _ => None,
    })
}

fn firehose(counters: Arc<Counters>, stream: bool) -> Response {
    let text = "y".repeat(1000);
    if !stream {
        // 80 MiB of JSON in one answer.
        let body = format!(
            r#"{{"choices":[{{"index":0,"message":{{"role":"assistant","content":"{}"}}}}],"usage":{{"prompt_tokens":1,"completion_tokens":1}}}}"#,
            "z".repeat(80 << 20)
        );
        return ([("content-type", "application/json")], body).into_response();
    }
    // 64 chunks of ~1 KiB per frame.
    let frame = Bytes::from(chunk(&text).repeat(64));
    let frames = (256 << 20) / frame.len() as u64;
    let tail = Bytes::from(format!("{}data: [DONE]\n\n", usage_chunk(&usage_for("honest"))));
    streaming(counters, move |i| match i {
        i if i < frames => Some(frame.clone()),
        i if i == frames => Some(tail.clone()),
        _ => None,
    })
}
