//! `POST /v1/embeddings`: never streamed, generates no output tokens.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::{Codec, Parsed, parse_json};
use crate::Route;
use crate::error::ApiError;
use crate::estimate::{self, Encoding, RequestKind};

pub struct Embeddings;

impl Codec for Embeddings {
    fn route(&self) -> Route {
        Route::Embeddings
    }

    fn parse(&'static self, body: Bytes) -> Result<Parsed, ApiError> {
        parse_json(self, RequestKind::Embedding, body)
    }

    fn prompt_tokens(&self, encoding: Encoding, request: &Map<String, Value>) -> u64 {
        estimate::input_tokens(encoding, RequestKind::Embedding, request)
    }

    fn answer_tokens(&self, _: Encoding, _: &[u8]) -> u64 {
        0
    }
}
