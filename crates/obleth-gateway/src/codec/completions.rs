//! `POST /v1/completions` (legacy text completions).

use bytes::Bytes;
use serde_json::{Map, Value};

use super::{Codec, Parsed, choice_texts, parse_json};
use crate::Route;
use crate::error::ApiError;
use crate::estimate::{self, Encoding, RequestKind};

pub struct Completions;

impl Codec for Completions {
    fn route(&self) -> Route {
        Route::Completions
    }

    fn parse(&'static self, body: Bytes) -> Result<Parsed, ApiError> {
        parse_json(self, RequestKind::Completion, body)
    }

    fn prompt_tokens(&self, encoding: Encoding, request: &Map<String, Value>) -> u64 {
        estimate::input_tokens(encoding, RequestKind::Completion, request)
    }

    fn answer_tokens(&self, encoding: Encoding, body: &[u8]) -> u64 {
        choice_texts(encoding, body, |c| c.get("text"))
    }
}
