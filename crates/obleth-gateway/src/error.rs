//! The data plane's one error type, rendered in the OpenAI error shape.
//!
//! Every refusal a client can see is built here, so that status, `type`, `code` and the
//! metric label always agree. Messages never contain a key or an upstream credential.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

/// An error answered to the client as `{"error":{"message","type","param","code"}}`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    /// OpenAI's error `type` (e.g. `invalid_request_error`).
    pub kind: &'static str,
    /// Machine-readable code; also the `error_type` in the ledger.
    pub code: &'static str,
    pub message: String,
    pub param: Option<&'static str>,
    pub retry_after: Option<Duration>,
    /// The tenant's rate-limit windows, sent as `x-ratelimit-*` headers.
    pub rate_limits: Option<Box<obleth_budget::RateStatus>>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, kind, code, message: message.into(), param: None, retry_after: None, rate_limits: None }
    }

    pub fn with_param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    // === client errors ===

    pub fn missing_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "missing_api_key",
            "You didn't provide an API key. Send it as 'Authorization: Bearer obl_…'.",
        )
    }

    pub fn invalid_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            "Incorrect API key provided, or the key was revoked or has expired.",
        )
    }

    pub fn tenant_disabled() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "tenant_disabled",
            "The tenant this key belongs to is disabled.",
        )
    }

    pub fn model_not_allowed(model: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "model_not_allowed",
            format!("This key's tenant may not use the model '{model}'."),
        )
        .with_param("model")
    }

    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            format!("The model '{model}' does not exist or is not available."),
        )
        .with_param("model")
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", code, message)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request_too_large",
            format!("The request body exceeds the limit of {limit} bytes."),
        )
    }

    /// The request body did not arrive within `limits.body_read_timeout`.
    pub fn request_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            "request_timeout",
            "The request body did not arrive in time.",
        )
    }

    pub fn not_found_route(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unknown_url",
            format!("Unknown request URL: {path}."),
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
            "This method is not allowed on this URL.",
        )
    }

    // === capacity ===

    pub fn overloaded(code: &'static str, message: impl Into<String>, retry_after: Duration) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", code, message);
        e.retry_after = Some(retry_after);
        e
    }

    /// The tenant's (or the gateway's) queue is full: 429, so clients back off.
    pub fn queue_full(retry_after: Duration) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "queue_full",
            "Too many requests are waiting for this tenant or the gateway; retry later.",
        );
        e.retry_after = Some(retry_after);
        e
    }

    /// A budget refused the request (429; `kind` is `rate_limit_error` or, for an
    /// exhausted spend budget, `insufficient_quota` as OpenAI answers).
    pub fn rate_limited(kind: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, kind, code, message)
    }

    pub fn store_unavailable() -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "control_plane_unavailable",
            "The gateway cannot verify this key right now; retry shortly.",
        );
        e.retry_after = Some(Duration::from_secs(1));
        e
    }

    // === upstream ===

    /// The backend could not be reached. The message names no address (the gateway's
    /// internal network is not the client's business); the log does.
    pub fn upstream_unreachable() -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "server_error",
            "upstream_unreachable",
            "The model backend could not be reached.",
        )
    }

    /// The upstream policy refused the model's destination (the log says which rule).
    pub fn upstream_forbidden() -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "server_error",
            "upstream_forbidden",
            "The gateway's upstream policy does not allow this model's backend address.",
        )
    }

    pub fn upstream_error(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "server_error", "upstream_error", message)
    }

    pub fn upstream_response_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "server_error",
            "upstream_response_too_large",
            format!("The model backend's response exceeded the gateway's limit of {limit} bytes."),
        )
    }

    pub fn upstream_event_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "server_error",
            "upstream_event_too_large",
            format!("The model backend sent a stream event longer than the gateway's limit of {limit} bytes."),
        )
    }

    pub fn upstream_timeout(after: Duration) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "server_error",
            "upstream_timeout",
            format!("The model backend did not answer within {} ms.", after.as_millis()),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal_error", message)
    }

    /// The JSON body, also used as an SSE `data:` payload when a stream fails midway.
    pub fn body(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Envelope<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            message: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
            param: Option<&'a str>,
            code: &'a str,
        }
        serde_json::to_vec(&Envelope {
            error: Inner { message: &self.message, kind: self.kind, param: self.param, code: self.code },
        })
        .unwrap_or_default()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, self.body()).into_response();
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(after) = self.retry_after {
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                h.insert(header::RETRY_AFTER, v);
            }
        }
        if let Some(status) = &self.rate_limits {
            crate::limits::write_headers(h, status);
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_openai_shape() {
        let e = ApiError::model_not_found("gpt-x");
        let v: serde_json::Value = serde_json::from_slice(&e.body()).expect("json");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["param"], "model");
        assert!(v["error"]["message"].as_str().expect("message").contains("gpt-x"));
        let v: serde_json::Value = serde_json::from_slice(&ApiError::invalid_key().body()).expect("json");
        assert!(v["error"]["param"].is_null());
    }

    #[test]
    fn retry_after_is_whole_seconds() {
        let res = ApiError::overloaded("queue_full", "full", Duration::from_millis(1200)).into_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "2");
    }
}
