//! The one error table of obleth's HTTP edges, and the error they answer with.
//!
//! Every error code the data plane, the admin API and the metrics endpoint can answer
//! is a variant of [`ErrorCode`], and the table below gives each its HTTP status, its
//! OpenAI `type`, its `code` (what clients match on and the ledger's `error_type`), its
//! metric label, its source and whether retrying the same request may succeed. Sites
//! that refuse a request pick a variant and write a message; they never choose a status
//! or a type, so the two cannot disagree. [`ApiError`] renders the OpenAI shape
//! `{"error":{"message","type","param","code"}}` on every listener.
//!
//! `retryable` is what a fallback may act on: the refusal says nothing about the
//! request itself (capacity, an upstream that failed or timed out), so the same request
//! sent again, later or elsewhere, may succeed.

use std::borrow::Cow;
use std::time::Duration;

use axum_core::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Serialize;

/// Who caused an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The request or its caller (bad input, bad key, a limit the tenant reached).
    Client,
    /// The model backend (unreachable, failed, too slow, refused the request).
    Upstream,
    /// The gateway itself or a dependency of it (capacity, stores, the ledger).
    Internal,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Client => "client",
            Source::Upstream => "upstream",
            Source::Internal => "internal",
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub status: u16,
    /// OpenAI's error `type`.
    pub kind: &'static str,
    /// The `code` field, matched on by clients and recorded in the ledger.
    pub code: &'static str,
    /// The metric label (unique per variant; the `code` is shared where two variants
    /// answer the same code with different statuses).
    pub label: &'static str,
    pub source: Source,
    pub retryable: bool,
}

macro_rules! error_table {
    ($( $(#[$doc:meta])* $variant:ident = ($status:literal, $kind:literal, $code:literal, $label:literal, $source:ident, $retry:literal), )*) => {
        /// Every error code obleth's listeners answer with (see the module docs).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $( $(#[$doc])* $variant, )* }

        impl ErrorCode {
            /// Every variant, in table order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The variant's row of the table.
            pub const fn spec(self) -> Spec {
                match self {
                    $(ErrorCode::$variant => Spec {
                        status: $status,
                        kind: $kind,
                        code: $code,
                        label: $label,
                        source: Source::$source,
                        retryable: $retry,
                    },)*
                }
            }
        }
    };
}

error_table! {
    // === the caller ===
    /// No `Authorization` header.
    MissingApiKey = (401, "invalid_request_error", "missing_api_key", "missing_api_key", Client, false),
    /// Unknown, revoked or expired key (or its tenant was deleted).
    InvalidApiKey = (401, "invalid_request_error", "invalid_api_key", "invalid_api_key", Client, false),
    /// The admin API's bearer token is missing or wrong.
    InvalidAdminToken = (401, "authentication_error", "invalid_admin_token", "invalid_admin_token", Client, false),
    /// The metrics endpoint's bearer token is missing or wrong.
    InvalidMetricsToken = (401, "authentication_error", "invalid_metrics_token", "invalid_metrics_token", Client, false),
    /// A console sign-in with a token that is no admin, viewer or API key.
    InvalidCredentials = (401, "authentication_error", "invalid_credentials", "invalid_credentials", Client, false),
    /// No live console session (none, expired or logged out) and no bearer token.
    SessionRequired = (401, "authentication_error", "session_required", "session_required", Client, false),
    /// A change made with the session cookie without its `X-CSRF-Token`.
    CsrfFailed = (403, "permission_error", "csrf_failed", "csrf_failed", Client, false),
    /// A viewer tried to change something.
    ReadOnly = (403, "permission_error", "read_only", "read_only", Client, false),
    /// A tenant's own session asked for more than its tenant.
    Forbidden = (403, "permission_error", "forbidden", "forbidden", Client, false),
    TenantDisabled = (403, "permission_error", "tenant_disabled", "tenant_disabled", Client, false),
    /// The model is not on the tenant's allowlist.
    ModelNotAllowed = (403, "permission_error", "model_not_allowed", "model_not_allowed", Client, false),
    /// No such model in the registry, or it is disabled.
    ModelNotFound = (404, "invalid_request_error", "model_not_found", "model_not_found", Client, false),

    // === the request ===
    InvalidJson = (400, "invalid_request_error", "invalid_json", "invalid_json", Client, false),
    MissingModel = (400, "invalid_request_error", "missing_model", "missing_model", Client, false),
    InvalidModel = (400, "invalid_request_error", "invalid_model", "invalid_model", Client, false),
    InvalidStream = (400, "invalid_request_error", "invalid_stream", "invalid_stream", Client, false),
    /// A field is out of range or of the wrong type (`param` names it).
    InvalidValue = (400, "invalid_request_error", "invalid_value", "invalid_value", Client, false),
    /// The body could not be read (broken chunking, reset).
    UnreadableBody = (400, "invalid_request_error", "unreadable_body", "unreadable_body", Client, false),
    /// The admin API could not read the body.
    InvalidBody = (400, "invalid_request_error", "invalid_body", "invalid_body", Client, false),
    InvalidContentType = (400, "invalid_request_error", "invalid_content_type", "invalid_content_type", Client, false),
    /// The `Accept` header admits none of the answer's media types (MCP's endpoint).
    NotAcceptable = (406, "invalid_request_error", "not_acceptable", "not_acceptable", Client, false),
    /// An MCP session id that is unknown, expired, or another key's (the same answer).
    McpSessionNotFound = (404, "invalid_request_error", "mcp_session_not_found", "mcp_session_not_found", Client, false),
    InvalidPath = (400, "invalid_request_error", "invalid_path", "invalid_path", Client, false),
    InvalidQuery = (400, "invalid_request_error", "invalid_query", "invalid_query", Client, false),
    /// An HTTP/1.1 request without `Host`.
    MissingHost = (400, "invalid_request_error", "missing_host", "missing_host", Client, false),
    /// A model registered with an `api_base` the upstream policy refuses.
    ApiBaseForbidden = (400, "invalid_request_error", "upstream_forbidden", "api_base_forbidden", Client, false),
    /// The body is over the listener's size limit.
    RequestTooLarge = (413, "invalid_request_error", "request_too_large", "request_too_large", Client, false),
    /// The body did not arrive within `limits.body_read_timeout`.
    RequestTimeout = (408, "invalid_request_error", "request_timeout", "request_timeout", Client, false),
    UnknownUrl = (404, "invalid_request_error", "unknown_url", "unknown_url", Client, false),
    /// An admin resource that does not exist.
    NotFound = (404, "invalid_request_error", "not_found", "not_found", Client, false),
    MethodNotAllowed = (405, "invalid_request_error", "method_not_allowed", "method_not_allowed", Client, false),
    /// An admin change that conflicts with the store's state (a name taken).
    Conflict = (409, "invalid_request_error", "conflict", "conflict", Client, false),

    // === the tenant's budgets ===
    TokensPerMinuteExceeded = (429, "rate_limit_error", "tokens_per_minute_exceeded", "tokens_per_minute_exceeded", Client, true),
    RequestsPerMinuteExceeded = (429, "rate_limit_error", "requests_per_minute_exceeded", "requests_per_minute_exceeded", Client, true),
    InFlightLimitExceeded = (429, "rate_limit_error", "in_flight_limit_exceeded", "in_flight_limit_exceeded", Client, true),
    /// One request may use more tokens than the tenant's whole per-minute limit.
    RequestExceedsTpm = (429, "rate_limit_error", "request_too_large", "request_exceeds_tpm", Client, false),
    MonthlyBudgetExceeded = (429, "insufficient_quota", "monthly_budget_exceeded", "monthly_budget_exceeded", Client, false),
    LifetimeBudgetExceeded = (429, "insufficient_quota", "lifetime_budget_exceeded", "lifetime_budget_exceeded", Client, false),

    // === the gateway's capacity and dependencies ===
    /// The tenant's queue or the gateway's is full (429, so clients back off).
    QueueFull = (429, "rate_limit_error", "queue_full", "queue_full", Internal, true),
    QueueTimeout = (503, "server_error", "queue_timeout", "queue_timeout", Internal, true),
    ShuttingDown = (503, "server_error", "shutting_down", "shutting_down", Internal, true),
    /// The ledger refuses requests it could not record, or the process keeps none.
    LedgerUnavailable = (503, "server_error", "ledger_unavailable", "ledger_unavailable", Internal, true),
    BudgetUnavailable = (503, "server_error", "budget_unavailable", "budget_unavailable", Internal, true),
    /// The data plane cannot resolve a key while the store is down.
    ControlPlaneUnavailable = (503, "server_error", "control_plane_unavailable", "control_plane_unavailable", Internal, true),
    /// The admin API's store is down.
    StoreUnavailable = (503, "server_error", "store_unavailable", "store_unavailable", Internal, true),
    StoreError = (500, "server_error", "store_error", "store_error", Internal, false),
    Internal = (500, "server_error", "internal_error", "internal_error", Internal, false),

    // === the model backend ===
    UpstreamUnreachable = (502, "server_error", "upstream_unreachable", "upstream_unreachable", Upstream, true),
    /// The upstream policy refuses the model's backend address.
    UpstreamForbidden = (502, "server_error", "upstream_forbidden", "upstream_forbidden", Upstream, false),
    /// The backend failed (5xx, refused the gateway's credentials, broke off).
    UpstreamError = (502, "server_error", "upstream_error", "upstream_error", Upstream, true),
    UpstreamTimeout = (504, "server_error", "upstream_timeout", "upstream_timeout", Upstream, true),
    UpstreamResponseTooLarge = (502, "server_error", "upstream_response_too_large", "upstream_response_too_large", Upstream, false),
    UpstreamEventTooLarge = (502, "server_error", "upstream_event_too_large", "upstream_event_too_large", Upstream, false),
    /// The backend refused the request itself; its answer is relayed with its status.
    UpstreamBadRequest = (400, "invalid_request_error", "upstream_rejected", "upstream_rejected_400", Upstream, false),
    UpstreamNotFound = (404, "invalid_request_error", "upstream_rejected", "upstream_rejected_404", Upstream, false),
    UpstreamPayloadTooLarge = (413, "invalid_request_error", "upstream_rejected", "upstream_rejected_413", Upstream, false),
    UpstreamUnprocessable = (422, "invalid_request_error", "upstream_rejected", "upstream_rejected_422", Upstream, false),
    UpstreamRateLimited = (429, "rate_limit_error", "upstream_rejected", "upstream_rejected_429", Upstream, true),
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        StatusCode::from_u16(self.spec().status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn as_str(self) -> &'static str {
        self.spec().code
    }

    pub fn retryable(self) -> bool {
        self.spec().retryable
    }

    pub fn source(self) -> Source {
        self.spec().source
    }
}

/// An error answered as `{"error":{"message","type","param","code"}}`. Messages never
/// contain a key or an upstream credential.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} {}: {message}", .code.spec().status, .code.as_str())]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: Cow<'static, str>,
    /// The request field the error is about.
    pub param: Option<Cow<'static, str>>,
    /// Sent as `Retry-After` (whole seconds, at least 1).
    pub retry_after: Option<Duration>,
    /// Further headers of the answer (the budget step's `x-ratelimit-*`, `Connection`);
    /// boxed, as most errors have none and results carry errors by value.
    pub headers: Option<Box<HeaderMap>>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError { code, message: message.into(), param: None, retry_after: None, headers: None }
    }

    pub fn with_param(mut self, param: impl Into<Cow<'static, str>>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    pub fn with_headers(mut self, headers: HeaderMap) -> Self {
        self.headers.get_or_insert_default().extend(headers);
        self
    }

    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.get_or_insert_default().insert(name, value);
        self
    }

    /// A `400 invalid_value` about `field`: "invalid {field}: {message}".
    pub fn invalid(field: &str, message: &str) -> Self {
        Self::invalid_with(ErrorCode::InvalidValue, field, message)
    }

    /// A refusal of `field` with another code ("invalid {field}: {message}").
    pub fn invalid_with(code: ErrorCode, field: &str, message: &str) -> Self {
        ApiError::new(code, format!("invalid {field}: {message}")).with_param(field.to_owned())
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
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
        let spec = self.code.spec();
        let inner = Inner { message: &self.message, kind: spec.kind, param: self.param.as_deref(), code: spec.code };
        serde_json::to_vec(&Envelope { error: inner }).unwrap_or_default()
    }

    // === the data plane's common refusals ===

    pub fn missing_key() -> Self {
        Self::new(ErrorCode::MissingApiKey, "You didn't provide an API key. Send it as 'Authorization: Bearer obl_…'.")
    }

    pub fn invalid_key() -> Self {
        Self::new(ErrorCode::InvalidApiKey, "Incorrect API key provided, or the key was revoked or has expired.")
    }

    pub fn tenant_disabled() -> Self {
        Self::new(ErrorCode::TenantDisabled, "The tenant this key belongs to is disabled.")
    }

    pub fn model_not_found(model: &str) -> Self {
        Self::new(ErrorCode::ModelNotFound, format!("The model '{model}' does not exist or is not available."))
            .with_param("model")
    }

    /// The store cannot say whether a key or model exists (it is down).
    pub fn store_unavailable() -> Self {
        Self::new(ErrorCode::ControlPlaneUnavailable, "The gateway cannot verify this key right now; retry shortly.")
            .with_retry_after(Duration::from_secs(1))
    }

    pub fn internal(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    pub fn upstream_error(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::UpstreamError, message)
    }

    pub fn upstream_timeout(after: Duration) -> Self {
        Self::new(
            ErrorCode::UpstreamTimeout,
            format!("The model backend did not answer within {} ms.", after.as_millis()),
        )
    }

    pub fn not_found_route(path: &str) -> Self {
        Self::new(ErrorCode::UnknownUrl, format!("Unknown request URL: {path}."))
    }

    pub fn method_not_allowed() -> Self {
        Self::new(ErrorCode::MethodNotAllowed, "This method is not allowed on this URL.")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status(), self.body()).into_response();
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(after) = self.retry_after {
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(headers) = self.headers {
            h.extend(*headers);
        }
        res
    }
}

/// The table as markdown rows, for `docs/errors.md` (a test holds the two equal).
pub fn markdown_rows() -> String {
    let mut out =
        String::from("| status | `type` | `code` | metric label | source | retryable |\n|---|---|---|---|---|---|\n");
    for c in ErrorCode::ALL {
        let s = c.spec();
        let retry = if s.retryable { "yes" } else { "no" };
        out.push_str(&format!(
            "| {} | `{}` | `{}` | `{}` | {} | {retry} |\n",
            s.status,
            s.kind,
            s.code,
            s.label,
            s.source.as_str()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn renders_openai_shape() {
        let e = ApiError::new(ErrorCode::ModelNotFound, "no gpt-x").with_param("model");
        let v: serde_json::Value = serde_json::from_slice(&e.body()).expect("json");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["param"], "model");
        assert_eq!(v["error"]["message"], "no gpt-x");
        let v: serde_json::Value = serde_json::from_slice(&ApiError::invalid_key().body()).expect("json");
        assert!(v["error"]["param"].is_null());
    }

    #[test]
    fn retry_after_is_whole_seconds() {
        let res = ApiError::new(ErrorCode::QueueTimeout, "late").with_retry_after(Duration::from_millis(1200));
        let res = res.into_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "2");
    }

    #[test]
    fn the_docs_hold_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/errors.md");
        let doc = std::fs::read_to_string(path).expect("docs/errors.md");
        let rows = markdown_rows();
        assert!(doc.contains(&rows), "docs/errors.md must hold the table as markdown_rows() prints it:\n{rows}");
    }

    #[test]
    fn the_table_is_consistent() {
        let mut labels = HashMap::new();
        let mut codes: HashMap<&str, ErrorCode> = HashMap::new();
        for &c in ErrorCode::ALL {
            let s = c.spec();
            assert!(StatusCode::from_u16(s.status).is_ok_and(|st| st.is_client_error() || st.is_server_error()));
            assert!(labels.insert(s.label, c).is_none(), "label {} is used twice", s.label);
            // The type follows the status the way OpenAI's API uses them.
            match s.status {
                500.. => assert_eq!(s.kind, "server_error", "{c:?}"),
                429 => assert!(matches!(s.kind, "rate_limit_error" | "insufficient_quota"), "{c:?}"),
                401 => assert!(matches!(s.kind, "invalid_request_error" | "authentication_error"), "{c:?}"),
                403 => assert_eq!(s.kind, "permission_error", "{c:?}"),
                _ => assert_eq!(s.kind, "invalid_request_error", "{c:?}"),
            }
            // Only server errors and 429s are worth retrying as they are.
            if s.retryable {
                assert!(s.status >= 500 || s.status == 429, "{c:?} is retryable with {}", s.status);
            }
            // A shared code means the same thing: only the status may differ.
            if let Some(other) = codes.insert(s.code, c) {
                let o = other.spec();
                assert!(
                    s.code == "upstream_rejected" || s.code == "request_too_large" || s.code == "upstream_forbidden",
                    "{c:?} and {other:?} share the code {}",
                    s.code
                );
                assert_ne!(o.status, s.status, "{c:?} and {other:?} are the same error");
            }
        }
    }
}
