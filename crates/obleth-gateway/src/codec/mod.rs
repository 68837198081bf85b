//! Request codecs: a route's body, parsed once into a typed [`Parsed`] request.
//!
//! Every proxied route has one [`Codec`]. It turns the body into a [`Parsed`] request
//! (the raw bytes kept, the JSON, the stream flags, what the budget reads), counts its
//! prompt and, for an answer that reported no usage, its output; and it writes the body
//! sent upstream. The pipeline only talks to the trait, so a new route (multipart audio,
//! images, responses) is a new file here, not a branch in the pipeline.

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::Route;
use crate::error::{ApiError, ErrorCode};
use crate::estimate::{Encoding, OutputRequest, RequestKind};

mod chat;
mod completions;
mod embeddings;

pub use chat::Chat;
pub use completions::Completions;
pub use embeddings::Embeddings;

/// How one route reads its requests and answers.
pub trait Codec: Send + Sync + 'static {
    fn route(&self) -> Route;

    /// Parses a body (read whole, under the size limit).
    fn parse(&'static self, body: Bytes) -> Result<Parsed, ApiError>;

    /// The prompt's tokens, counted with the tokenizer.
    fn prompt_tokens(&self, encoding: Encoding, request: &Map<String, Value>) -> u64;

    /// The output tokens of a whole answer that reported no usage.
    fn answer_tokens(&self, encoding: Encoding, body: &[u8]) -> u64;

    /// The body sent upstream.
    fn upstream_body(&self, request: &mut Parsed, rewrite: &Rewrite<'_>) -> Result<Bytes, ApiError> {
        json_upstream_body(request, rewrite)
    }
}

/// A request body, parsed once.
pub struct Parsed {
    pub codec: &'static dyn Codec,
    /// The body as received (what a byte estimate and a cache key read). It is never
    /// sent upstream as it is: a body with a key twice (`"model"`) may be read differently
    /// by the backend than by the gateway, so what goes upstream is written from `json`.
    pub raw: Bytes,
    pub json: Map<String, Value>,
    /// The model the client asked for (the registry's public name).
    pub model: String,
    pub stream: bool,
    /// The client asked for the usage chunk of a stream itself.
    pub wants_usage: bool,
    /// What the budget reserves output for.
    pub output: OutputRequest,
}

/// What the gateway changes in a request before sending it upstream.
pub struct Rewrite<'a> {
    /// The backend's name of the model.
    pub upstream_model: &'a str,
    /// Brownout: the most output tokens per choice.
    pub max_tokens_cap: Option<u32>,
}

impl Parsed {
    /// `max_tokens` as sent upstream (after a brownout cap).
    pub fn max_tokens(&self, cap: Option<u32>) -> Option<u64> {
        match cap {
            Some(cap) => Some(self.output.max_tokens.map_or(u64::from(cap), |m| m.min(u64::from(cap)))),
            None => self.output.max_tokens,
        }
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

/// The output tokens of the texts at `pointer` (or `field`) of each choice of an answer.
fn choice_texts(encoding: Encoding, body: &[u8], text_at: fn(&Value) -> Option<&Value>) -> u64 {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return 0;
    };
    let choices = v.get("choices").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    choices
        .iter()
        .filter_map(|c| text_at(c).and_then(Value::as_str))
        .map(|t| crate::estimate::count_text(encoding, t))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(codec: &'static dyn Codec, body: &str) -> Result<Parsed, ApiError> {
        codec.parse(Bytes::from(body.to_owned()))
    }

    #[test]
    fn parses_once_into_what_the_pipeline_reads() {
        let p = parse(&Chat, r#"{"model":"m","stream":true,"max_tokens":7,"n":2,"messages":[]}"#).expect("parses");
        assert_eq!(p.model, "m");
        assert!(p.stream && !p.wants_usage);
        assert_eq!(p.output.max_tokens, Some(7));
        assert_eq!(p.output.choices, 2);
        assert_eq!(p.max_tokens(Some(5)), Some(5));
        assert_eq!(p.max_tokens(None), Some(7));
        let e =
            parse(&Embeddings, r#"{"model":"e","stream":"yes","input":["a","b"]}"#).expect("embeddings never stream");
        assert!(!e.stream);
        assert_eq!(e.output.prompts, 2);
    }

    #[test]
    fn refusals_name_the_field() {
        for (body, code, param) in [
            ("[1]", ErrorCode::InvalidJson, None),
            ("{", ErrorCode::InvalidJson, None),
            (r#"{"stream":true}"#, ErrorCode::MissingModel, Some("model")),
            (r#"{"model":""}"#, ErrorCode::InvalidModel, Some("model")),
            (r#"{"model":"m","stream":1}"#, ErrorCode::InvalidStream, Some("stream")),
            (r#"{"model":"m","max_tokens":-1}"#, ErrorCode::InvalidValue, Some("max_tokens")),
        ] {
            let e = parse(&Completions, body).err().unwrap_or_else(|| panic!("{body} must be refused"));
            assert_eq!(e.code, code, "{body}");
            assert_eq!(e.param.as_deref(), param, "{body}");
        }
    }

    #[test]
    fn upstream_reads_what_the_gateway_read() {
        // A key given twice: the backend must not see the one the gateway ignored.
        let body = r#"{"model":"other","model":"m","messages":[]}"#;
        let mut p = parse(&Chat, body).expect("parses");
        assert_eq!(p.model, "m");
        let same = Rewrite { upstream_model: "m", max_tokens_cap: None };
        let sent = Chat.upstream_body(&mut p, &same).expect("body");
        assert_eq!(&sent[..], br#"{"messages":[],"model":"m"}"#);
        let renamed = Rewrite { upstream_model: "backend/m", max_tokens_cap: Some(3) };
        let sent: Value = serde_json::from_slice(&Chat.upstream_body(&mut p, &renamed).expect("body")).expect("json");
        assert_eq!(sent["model"], "backend/m");
        assert_eq!(sent["max_tokens"], 3);
    }

    #[test]
    fn a_stream_always_asks_for_its_usage() {
        let mut p = parse(&Chat, r#"{"model":"m","stream":true,"stream_options":7}"#).expect("parses");
        let sent = Chat.upstream_body(&mut p, &Rewrite { upstream_model: "m", max_tokens_cap: None }).expect("body");
        let sent: Value = serde_json::from_slice(&sent).expect("json");
        assert_eq!(sent["stream_options"]["include_usage"], true);
        let cap = Rewrite { upstream_model: "m", max_tokens_cap: Some(10) };
        let mut p = parse(&Completions, r#"{"model":"m","max_completion_tokens":50}"#).expect("parses");
        let sent: Value =
            serde_json::from_slice(&Completions.upstream_body(&mut p, &cap).expect("body")).expect("json");
        assert_eq!(sent["max_completion_tokens"], 10);
        assert!(sent.get("max_tokens").is_none());
    }
}
