//! OpenAI wire types: the tolerant request shapes the mock reads and the response, chunk and
//! embedding shapes it writes.
//!
//! Requests keep only the fields the mock acts on; serde ignores everything else, so any
//! real client's request parses. Fields whose shape varies (`content`, `prompt`, `input`) are
//! read as `serde_json::Value` and interpreted by hand, which keeps odd-but-valid payloads
//! (e.g. image parts, `null` content) from being rejected.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ApiError;
use crate::tokens::{self, Fnv};

// === requests ===

#[derive(Debug, Deserialize)]
pub(crate) struct ChatRequest {
    pub(crate) model: Option<String>,
    pub(crate) messages: Option<Vec<Message>>,
    pub(crate) stream: Option<bool>,
    pub(crate) stream_options: Option<StreamOptions>,
    pub(crate) max_tokens: Option<u32>,
    pub(crate) max_completion_tokens: Option<u32>,
    pub(crate) n: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Message {
    pub(crate) role: Option<String>,
    pub(crate) content: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct StreamOptions {
    pub(crate) include_usage: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CompletionRequest {
    pub(crate) model: Option<String>,
    pub(crate) prompt: Option<Value>,
    pub(crate) stream: Option<bool>,
    pub(crate) stream_options: Option<StreamOptions>,
    pub(crate) max_tokens: Option<u32>,
    pub(crate) n: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct EmbeddingRequest {
    pub(crate) model: Option<String>,
    pub(crate) input: Option<Value>,
    pub(crate) dimensions: Option<usize>,
    pub(crate) encoding_format: Option<String>,
}

/// Parses a JSON body, mapping any serde failure to a 400 in the OpenAI shape.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("invalid JSON body: {e}"), None))
}

/// `model` is the one field every endpoint requires.
pub(crate) fn require_model(model: Option<String>) -> Result<String, ApiError> {
    model.ok_or_else(|| ApiError::bad("you must provide a model parameter", Some("model")))
}

/// One prompt, reduced to what the mock needs: its token count and a hash for output text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prompt {
    pub(crate) tokens: u32,
    pub(crate) hash: u64,
}

impl ChatRequest {
    /// Applies the chat counting rule (see [`crate::tokens`]) to `messages`.
    pub(crate) fn prompt(&self, seed: u64) -> Result<Prompt, ApiError> {
        let messages = self
            .messages
            .as_deref()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| ApiError::bad("messages must be a non-empty array", Some("messages")))?;
        let mut hash = Fnv::new(seed);
        let mut tokens: u32 = 3;
        for m in messages {
            hash.write_str(m.role.as_deref().unwrap_or(""));
            tokens = tokens.saturating_add(3);
            match &m.content {
                Some(Value::String(s)) => {
                    tokens = tokens.saturating_add(tokens::words(s));
                    hash.write_str(s);
                }
                Some(Value::Array(parts)) => {
                    for text in parts.iter().filter_map(text_part) {
                        tokens = tokens.saturating_add(tokens::words(text));
                        hash.write_str(text);
                    }
                }
                _ => {}
            }
        }
        Ok(Prompt { tokens, hash: hash.finish() })
    }
}

/// The text of a `{"type":"text","text":...}` content part; other part types carry none.
fn text_part(part: &Value) -> Option<&str> {
    (part.get("type").and_then(Value::as_str) == Some("text"))
        .then(|| part.get("text").and_then(Value::as_str))
        .flatten()
}

/// Interprets a completions `prompt` or embeddings `input`: a string, an array of strings,
/// an array of token ids, or an array of token-id arrays. Returns one [`Prompt`] per item.
pub(crate) fn prompts(value: Option<&Value>, seed: u64, param: &'static str) -> Result<Vec<Prompt>, ApiError> {
    let invalid = || {
        ApiError::bad(format!("{param} must be a string, an array of strings, or an array of token ids"), Some(param))
    };
    let text = |s: &str| {
        let mut h = Fnv::new(seed);
        h.write_str(s);
        Prompt { tokens: tokens::words(s), hash: h.finish() }
    };
    let ids = |ids: &[Value]| -> Option<Prompt> {
        let mut h = Fnv::new(seed);
        h.write(b"ids");
        for id in ids {
            h.write(&id.as_u64()?.to_le_bytes());
        }
        Some(Prompt { tokens: tokens::saturate(ids.len()), hash: h.finish() })
    };
    match value {
        Some(Value::String(s)) => Ok(vec![text(s)]),
        Some(Value::Array(items)) if items.is_empty() => Err(invalid()),
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => {
            ids(items).map(|p| vec![p]).ok_or_else(invalid)
        }
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Some(text(s)),
                Value::Array(inner) => ids(inner),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(invalid),
        _ => Err(invalid()),
    }
}

// === responses ===

#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Usage {
    pub(crate) prompt_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) completion_tokens: Option<u64>,
    pub(crate) total_tokens: u64,
}

impl Usage {
    pub(crate) fn new(prompt_tokens: u32, completion_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens: Some(completion_tokens),
            total_tokens: u64::from(prompt_tokens) + completion_tokens,
        }
    }

    /// Embeddings usage has no `completion_tokens` field.
    pub(crate) fn prompt_only(prompt_tokens: u32) -> Self {
        Self { prompt_tokens, completion_tokens: None, total_tokens: u64::from(prompt_tokens) }
    }
}

/// Fields shared by every completion object and chunk.
#[derive(Debug, Serialize)]
pub(crate) struct Head<'a> {
    pub(crate) id: &'a str,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) model: &'a str,
}

#[derive(Debug, Serialize)]
pub(crate) struct Completion<'a, C> {
    #[serde(flatten)]
    pub(crate) head: &'a Head<'a>,
    pub(crate) choices: C,
    /// Absent when usage is omitted; `Some(None)` serialises as `"usage": null`, which is how
    /// OpenAI marks non-final chunks when `include_usage` is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) usage: Option<Option<Usage>>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ChatChoice {
    pub(crate) index: u32,
    pub(crate) message: AssistantMessage,
    pub(crate) logprobs: Option<()>,
    pub(crate) finish_reason: &'static str,
}

#[derive(Debug, Serialize)]
pub(crate) struct AssistantMessage {
    pub(crate) role: &'static str,
    pub(crate) content: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct TextChoice<'a> {
    pub(crate) index: u32,
    pub(crate) text: &'a str,
    pub(crate) logprobs: Option<()>,
    pub(crate) finish_reason: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ChunkChoice<'a> {
    pub(crate) index: u32,
    pub(crate) delta: Delta<'a>,
    pub(crate) logprobs: Option<()>,
    pub(crate) finish_reason: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) role: Option<&'static str>,
    pub(crate) content: &'a str,
}

#[derive(Debug, Serialize)]
pub(crate) struct EmbeddingList<'a> {
    pub(crate) object: &'static str,
    pub(crate) data: Vec<Embedding>,
    pub(crate) model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) usage: Option<Usage>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Embedding {
    pub(crate) object: &'static str,
    pub(crate) index: u32,
    pub(crate) embedding: EmbeddingData,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum EmbeddingData {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Serialize)]
pub(crate) struct ModelList<'a> {
    pub(crate) object: &'static str,
    pub(crate) data: Vec<ModelCard<'a>>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ModelCard<'a> {
    pub(crate) id: &'a str,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) owned_by: &'static str,
}

/// Serialises one SSE event: `data: {json}\n\n`.
pub(crate) fn sse<T: Serialize>(value: &T) -> bytes::Bytes {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(b"data: ");
    // Writing plain structs of strings and numbers into a Vec cannot fail; should it ever,
    // the event degrades to an empty object rather than panicking on the request path.
    if serde_json::to_writer(&mut buf, value).is_err() {
        buf.truncate(6);
        buf.extend_from_slice(b"{}");
    }
    buf.extend_from_slice(b"\n\n");
    buf.into()
}

/// The terminating SSE event.
pub(crate) const DONE: &[u8] = b"data: [DONE]\n\n";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat(v: Value) -> Result<u32, ApiError> {
        let req: ChatRequest = parse(v.to_string().as_bytes())?;
        req.prompt(0).map(|p| p.tokens)
    }

    #[test]
    fn chat_counting_rule() {
        let body = json!({"model":"m","messages":[
            {"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"hello there world"},
                                      {"type":"image_url","image_url":{"url":"x"}}]},
            {"role":"assistant","content":null,"tool_calls":[]}
        ]});
        // words 2 + 3 + 0, plus 3 × 3 messages, plus 3.
        assert_eq!(chat(body).ok(), Some(5 + 9 + 3));
        assert!(matches!(
            chat(json!({"model":"m","messages":[]})),
            Err(ApiError::BadRequest { param: Some("messages"), .. })
        ));
    }

    #[test]
    fn prompt_shapes() {
        let count = |v: Value| prompts(Some(&v), 0, "prompt").map(|ps| ps.iter().map(|p| p.tokens).collect::<Vec<_>>());
        assert_eq!(count(json!("a b c")).ok(), Some(vec![3]));
        assert_eq!(count(json!(["a b", "c"])).ok(), Some(vec![2, 1]));
        assert_eq!(count(json!([1, 2, 3, 4])).ok(), Some(vec![4]));
        assert_eq!(count(json!([[1, 2], [3]])).ok(), Some(vec![2, 1]));
        assert!(count(json!([])).is_err());
        assert!(count(json!({"x": 1})).is_err());
        assert!(count(json!([1, "a"])).is_err());
        assert!(prompts(None, 0, "prompt").is_err());
    }

    #[test]
    fn usage_null_versus_absent() {
        let head = Head { id: "x", object: "o", created: 0, model: "m" };
        let chunk = |usage| serde_json::to_value(Completion::<[u8; 0]> { head: &head, choices: [], usage }).ok();
        assert_eq!(chunk(None).and_then(|v| v.get("usage").cloned()), None);
        assert_eq!(chunk(Some(None)).and_then(|v| v.get("usage").cloned()), Some(Value::Null));
    }
}
