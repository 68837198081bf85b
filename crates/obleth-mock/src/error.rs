//! The mock's one error type, rendered in the OpenAI error shape.
//!
//! Every non-2xx answer the mock gives goes through [`ApiError`], so clients (and the gateway
//! under test) always see `{"error":{"message","type","param","code"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Why a request to the mock was not served.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body was not valid JSON, had a field of the wrong type, or lacked a required field.
    #[error("{message}")]
    BadRequest {
        /// Human-readable explanation.
        message: String,
        /// The offending request field, when one can be named.
        param: Option<&'static str>,
    },
    /// The body exceeded the size limit or could not be read.
    #[error("{message}")]
    Body {
        /// Status chosen by axum's body extractor (413, 400, ...).
        status: StatusCode,
        /// Explanation from the extractor.
        message: String,
    },
    /// All sequence slots are busy and `max_waiting` requests are already queued.
    #[error("the mock backend is overloaded: {waiting} requests already waiting")]
    QueueFull {
        /// Queue length at the time of rejection.
        waiting: u64,
    },
    /// A 500 deliberately injected by `error_rate` or `x-mock-fault: error`.
    #[error("injected mock failure")]
    Injected,
    /// No route matched.
    #[error("unknown path {0}")]
    NotFound(String),
}

impl ApiError {
    /// Shorthand for a 400 naming the offending field.
    pub(crate) fn bad(message: impl Into<String>, param: Option<&'static str>) -> Self {
        Self::BadRequest { message: message.into(), param }
    }

    /// Status, OpenAI `type` and `code` for this error; the single table the HTTP edge uses.
    fn parts(&self) -> (StatusCode, &'static str, Option<&'static str>) {
        match self {
            Self::BadRequest { .. } => (StatusCode::BAD_REQUEST, "invalid_request_error", None),
            Self::Body { status, .. } => (*status, "invalid_request_error", None),
            Self::QueueFull { .. } => (StatusCode::SERVICE_UNAVAILABLE, "server_error", Some("queue_full")),
            Self::Injected => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", Some("mock_injected_error")),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "invalid_request_error", Some("not_found")),
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    message: String,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, code) = self.parts();
        let param = match &self {
            Self::BadRequest { param, .. } => *param,
            _ => None,
        };
        let body = Envelope { error: Detail { message: self.to_string(), kind, param, code } };
        (status, Json(body)).into_response()
    }
}
