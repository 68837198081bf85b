//! `POST /v1/chat/completions`.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::{Codec, Parsed, choice_texts, parse_json};
use crate::Route;
use crate::error::ApiError;
use crate::estimate::{self, Encoding, RequestKind};

pub struct Chat;

impl Codec for Chat {
    fn route(&self) -> Route {
        Route::ChatCompletions
    }

    fn parse(&'static self, body: Bytes) -> Result<Parsed, ApiError> {
        parse_json(self, RequestKind::Chat, body)
    }

    fn prompt_tokens(&self, encoding: Encoding, request: &Map<String, Value>) -> u64 {
        estimate::input_tokens(encoding, RequestKind::Chat, request)
    }

    fn answer_tokens(&self, encoding: Encoding, body: &[u8]) -> u64 {
        choice_texts(encoding, body, |c| c.pointer("/message/content"))
    }
}
