//! The JSON routes (`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`): one
//! codec type, one value per route; they differ in what the tokenizer counts in a request
//! and in an answer, and embeddings never stream.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::{Codec, Parsed, Rewrite};
use crate::Route;
use crate::error::{ApiError, ErrorCode};
use crate::estimate::{self, Encoding, OutputRequest, RequestKind};

/// A JSON route's codec.
pub struct JsonCodec {
    route: Route,
    kind: RequestKind,
    /// Where a choice of an answer holds its text; `None`: the route generates none.
    answer_text: Option<fn(&Value) -> Option<&Value>>,
}

pub static CHAT: JsonCodec =
    JsonCodec { route: Route::ChatCompletions, kind: RequestKind::Chat, answer_text: Some(message_content) };

pub static COMPLETIONS: JsonCodec =
    JsonCodec { route: Route::Completions, kind: RequestKind::Completion, answer_text: Some(choice_text) };

pub static EMBEDDINGS: JsonCodec =
    JsonCodec { route: Route::Embeddings, kind: RequestKind::Embedding, answer_text: None };

fn message_content(choice: &Value) -> Option<&Value> {
    choice.pointer("/message/content")
}

fn choice_text(choice: &Value) -> Option<&Value> {
    choice.get("text")
}

impl Codec for JsonCodec {
    fn route(&self) -> Route {
        self.route
    }

    fn parse(&'static self, body: Bytes) -> Result<Parsed, ApiError> {
        parse_json(self, self.kind, body)
    }

    fn prompt_tokens(&self, encoding: Encoding, request: &Map<String, Value>) -> u64 {
        estimate::input_tokens(encoding, self.kind, request)
    }

    fn answer_tokens(&self, encoding: Encoding, body: &[u8]) -> u64 {
        self.answer_text.map_or(0, |text_at| choice_texts(encoding, body, text_at))
    }

    fn upstream_body(&self, request: &mut Parsed, rewrite: &Rewrite<'_>) -> Result<Bytes, ApiError> {
        json_upstream_body(request, rewrite)
    }
}

/// The JSON routes' parsing: an object with a non-empty `model`, a boolean `stream` where
/// the route streams, and output fields in range.
fn parse_json(codec: &'static dyn Codec, kind: RequestKind, body: Bytes) -> Result<Parsed, ApiError> {
    let json = match serde_json::from_slice(&body) {
        Ok(Value::Object(obj)) => obj,
        Ok(_) => return Err(ApiError::new(ErrorCode::InvalidJson, "The request body must be a JSON object.")),
        Err(e) => {
            return Err(ApiError::new(ErrorCode::InvalidJson, format!("The request body is not valid JSON: {e}.")));
        }
    };
    let model = match json.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(_) => {
            return Err(
                ApiError::new(ErrorCode::InvalidModel, "'model' must be a non-empty string.").with_param("model")
            );
        }
        None => return Err(ApiError::new(ErrorCode::MissingModel, "'model' is required.").with_param("model")),
    };
    let stream = match (kind, json.get("stream")) {
        (RequestKind::Embedding, _) | (_, None | Some(Value::Null)) => false,
        (_, Some(Value::Bool(b))) => *b,
        (_, Some(_)) => {
            return Err(ApiError::new(ErrorCode::InvalidStream, "'stream' must be a boolean.").with_param("stream"));
        }
    };
    let output = OutputRequest::parse(kind, &json)
        .map_err(|e| ApiError::new(ErrorCode::InvalidValue, e.message).with_param(e.field))?;
    let wants_usage = stream && include_usage(&json);
    Ok(Parsed { codec, raw: body, json, model, stream, wants_usage, output })
}

fn include_usage(obj: &Map<String, Value>) -> bool {
    obj.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false)
}

/// The upstream body of a JSON route: the JSON with `model` renamed, the usage chunk
/// asked for (a stream's usage is how it is billed) and `max_tokens` capped.
fn json_upstream_body(request: &mut Parsed, rewrite: &Rewrite<'_>) -> Result<Bytes, ApiError> {
    let add_usage = request.stream && !request.wants_usage;
    let obj = &mut request.json;
    obj.insert("model".into(), Value::String(rewrite.upstream_model.to_owned()));
    if add_usage {
        let opts = obj.entry("stream_options").or_insert_with(|| Value::Object(Map::new()));
        if !opts.is_object() {
            *opts = Value::Object(Map::new());
        }
        if let Value::Object(o) = opts {
            o.insert("include_usage".into(), Value::Bool(true));
        }
    }
    if let Some(cap) = rewrite.max_tokens_cap {
        let field = if obj.contains_key("max_completion_tokens") { "max_completion_tokens" } else { "max_tokens" };
        let current = obj.get(field).and_then(Value::as_u64).unwrap_or(u64::MAX);
        obj.insert(field.into(), Value::from(current.min(u64::from(cap))));
    }
    serde_json::to_vec(obj)
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(format!("re-encoding the request failed: {e}")))
}

/// The output tokens of the texts of an answer's choices.
fn choice_texts(encoding: Encoding, body: &[u8], text_at: fn(&Value) -> Option<&Value>) -> u64 {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return 0;
    };
    let choices = v.get("choices").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    choices.iter().filter_map(|c| text_at(c).and_then(Value::as_str)).map(|t| estimate::count_text(encoding, t)).sum()
}
