//! Request codecs: a route's body, parsed once into a typed [`Parsed`] request.
//!
//! Every proxied route has one [`Codec`]. It turns the body into a [`Parsed`] request
//! (the raw bytes kept, the JSON, the stream flags, what the budget reads), counts its
//! prompt and, for an answer that reported no usage, its output; and it writes the body
//! sent upstream. The pipeline only talks to the trait, so a new route (multipart audio,
//! images, responses) is a new file here, not a branch in the pipeline. The three JSON
//! routes differ only in data (what they count), so they share one type (`json.rs`).

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::Route;
use crate::error::ApiError;
use crate::estimate::{Encoding, OutputRequest};

mod json;

pub use json::{CHAT, COMPLETIONS, EMBEDDINGS, JsonCodec};

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
    fn upstream_body(&self, request: &mut Parsed, rewrite: &Rewrite<'_>) -> Result<Bytes, ApiError>;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn parse(codec: &'static dyn Codec, body: &str) -> Result<Parsed, ApiError> {
        codec.parse(Bytes::from(body.to_owned()))
    }

    #[test]
    fn parses_once_into_what_the_pipeline_reads() {
        let p = parse(&CHAT, r#"{"model":"m","stream":true,"max_tokens":7,"n":2,"messages":[]}"#).expect("parses");
        assert_eq!(p.model, "m");
        assert!(p.stream && !p.wants_usage);
        assert_eq!(p.output.max_tokens, Some(7));
        assert_eq!(p.output.choices, 2);
        assert_eq!(p.max_tokens(Some(5)), Some(5));
        assert_eq!(p.max_tokens(None), Some(7));
        let e =
            parse(&EMBEDDINGS, r#"{"model":"e","stream":"yes","input":["a","b"]}"#).expect("embeddings never stream");
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
            let e = parse(&COMPLETIONS, body).err().unwrap_or_else(|| panic!("{body} must be refused"));
            assert_eq!(e.code, code, "{body}");
            assert_eq!(e.param.as_deref(), param, "{body}");
        }
    }

    #[test]
    fn upstream_reads_what_the_gateway_read() {
        // A key given twice: the backend must not see the one the gateway ignored.
        let body = r#"{"model":"other","model":"m","messages":[]}"#;
        let mut p = parse(&CHAT, body).expect("parses");
        assert_eq!(p.model, "m");
        let same = Rewrite { upstream_model: "m", max_tokens_cap: None };
        let sent = CHAT.upstream_body(&mut p, &same).expect("body");
        assert_eq!(&sent[..], br#"{"messages":[],"model":"m"}"#);
        let renamed = Rewrite { upstream_model: "backend/m", max_tokens_cap: Some(3) };
        let sent: Value = serde_json::from_slice(&CHAT.upstream_body(&mut p, &renamed).expect("body")).expect("json");
        assert_eq!(sent["model"], "backend/m");
        assert_eq!(sent["max_tokens"], 3);
    }

    #[test]
    fn a_stream_always_asks_for_its_usage() {
        let mut p = parse(&CHAT, r#"{"model":"m","stream":true,"stream_options":7}"#).expect("parses");
        let sent = CHAT.upstream_body(&mut p, &Rewrite { upstream_model: "m", max_tokens_cap: None }).expect("body");
        let sent: Value = serde_json::from_slice(&sent).expect("json");
        assert_eq!(sent["stream_options"]["include_usage"], true);
        let cap = Rewrite { upstream_model: "m", max_tokens_cap: Some(10) };
        let mut p = parse(&COMPLETIONS, r#"{"model":"m","max_completion_tokens":50}"#).expect("parses");
        let sent: Value =
            serde_json::from_slice(&COMPLETIONS.upstream_body(&mut p, &cap).expect("body")).expect("json");
        assert_eq!(sent["max_completion_tokens"], 10);
        assert!(sent.get("max_tokens").is_none());
    }
}
