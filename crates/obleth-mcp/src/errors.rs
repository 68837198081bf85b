//! How the MCP gateway refuses: JSON-RPC errors inside the protocol, and the HTTP edge's
//! refusals (from the one error table of `obleth-core`) rendered as JSON-RPC bodies.
//!
//! Implementation-defined JSON-RPC codes stay within -32000..-32019, as the 2026-07-28
//! specification asks.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use obleth_core::{ApiError, ErrorCode};
use rmcp::ErrorData;
use rmcp::model::ErrorCode as RpcCode;
use serde_json::json;

/// No tool (or prompt, or resource) is granted to the caller.
pub const NO_GRANTS: RpcCode = RpcCode(-32010);
/// The grants could not be loaded: retry later.
pub const GRANTS_UNAVAILABLE: RpcCode = RpcCode(-32013);

/// An unknown tool, one not granted and one quarantined get the same answer: a caller
/// cannot tell which tools exist that it may not call.
pub fn unknown(kind: &str, name: &str) -> ErrorData {
    ErrorData::invalid_params(format!("unknown {kind}: {name}"), None)
}

pub fn grants_unavailable() -> ErrorData {
    ErrorData::new(
        GRANTS_UNAVAILABLE,
        "the MCP grants could not be loaded; nothing is allowed until they are (retry later)",
        Some(json!({"retryable": true})),
    )
}

/// A limit of the caller's tenant on tool calls (per minute or in flight): retryable.
pub const RATE_LIMITED: RpcCode = RpcCode(-32011);

pub fn limit_refusal(refusal: &crate::limits::Refusal) -> ErrorData {
    use crate::limits::Limit;
    let message = match refusal.limit {
        Limit::PerMinute => format!("the tenant's limit of {} MCP tool calls per minute is reached", refusal.cap),
        Limit::InFlight => format!("the tenant already has its limit of {} MCP tool calls in flight", refusal.cap),
    };
    let retry_after_ms = u64::try_from(refusal.retry_after.as_millis()).unwrap_or(u64::MAX);
    let data = json!({"retryable": true, "retry_after_ms": retry_after_ms, "limit": refusal.limit.field()});
    ErrorData::new(RATE_LIMITED, message, Some(data))
}

/// The server's fair queue is full, or the call waited too long in it: retryable.
pub const BUSY: RpcCode = RpcCode(-32012);

pub fn queue_refusal(rejection: &obleth_core::admission::Rejection) -> ErrorData {
    use obleth_core::admission::Rejection;
    let (message, after) = match rejection {
        Rejection::QueueFull { retry_after } => ("the MCP server's queue is full", Some(*retry_after)),
        Rejection::QueueTimeout { retry_after } => ("the call waited too long for the MCP server", Some(*retry_after)),
        Rejection::ShuttingDown => ("the gateway is shutting down", None),
    };
    let retry_after_ms = after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    ErrorData::new(BUSY, message, Some(json!({"retryable": true, "retry_after_ms": retry_after_ms})))
}

/// A caller with nothing to list is told why instead of getting an empty list (a model
/// given no tools would guess).
pub fn nothing_granted(kind: &str, key_prefix: &str, tenant: &str, unavailable: &[String]) -> ErrorData {
    let message = if unavailable.is_empty() {
        format!("no MCP {kind} are granted to key {key_prefix}… of tenant '{tenant}'")
    } else {
        format!(
            "no MCP {kind} are available to key {key_prefix}… of tenant '{tenant}': the granted servers {} did not answer",
            unavailable.join(", ")
        )
    };
    ErrorData::new(NO_GRANTS, message, Some(json!({"unavailable": unavailable})))
}

/// The JSON-RPC code of an HTTP refusal.
fn rpc_code(code: ErrorCode) -> i32 {
    match code {
        ErrorCode::InvalidJson => -32700,
        c if c.status().is_server_error() => -32603,
        _ => -32600,
    }
}

/// An HTTP refusal with a JSON-RPC error body (what MCP clients parse), keeping the
/// table's status, `type` and `code`; `id` is the refused request's, when it was read.
pub fn response(error: &ApiError, id: Option<serde_json::Value>) -> http::Response<Bytes> {
    let spec = error.code.spec();
    let body = json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": rpc_code(error.code),
            "message": error.message,
            "data": {"type": spec.kind, "code": spec.code},
        },
    });
    let mut response = http::Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = error.status();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(after) = error.retry_after {
        let secs = after.as_secs().max(1);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    response
}

/// What a plain-text refusal of rmcp's transport means in the error table.
/// `declared_json`: the request said its body is JSON.
pub fn transport_refusal(status: StatusCode, text: &str, declared_json: bool) -> ApiError {
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::RequestTooLarge,
        // rmcp answers 415 both to a body that is not JSON-RPC and to a wrong
        // Content-Type; with a JSON Content-Type it was the body.
        StatusCode::UNSUPPORTED_MEDIA_TYPE if declared_json => ErrorCode::InvalidJson,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::InvalidContentType,
        StatusCode::NOT_ACCEPTABLE => ErrorCode::NotAcceptable,
        StatusCode::NOT_FOUND => ErrorCode::McpSessionNotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::InvalidValue,
    };
    let message: String = text.chars().take(512).collect();
    ApiError::new(code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_refusals_become_jsonrpc_errors_of_the_table() {
        let bad_json = transport_refusal(StatusCode::UNSUPPORTED_MEDIA_TYPE, "fail to deserialize request body", true);
        assert_eq!(bad_json.code, ErrorCode::InvalidJson);
        let body: serde_json::Value = serde_json::from_slice(response(&bad_json, None).body()).expect("a JSON body");
        assert_eq!((body["error"]["code"].as_i64(), body["id"].is_null()), (Some(-32700), true), "{body}");
        assert_eq!(response(&bad_json, None).status(), StatusCode::BAD_REQUEST);
        let wrong_type = transport_refusal(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type", false);
        assert_eq!(wrong_type.code, ErrorCode::InvalidContentType);
        let too_large = transport_refusal(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large", true);
        assert_eq!(response(&too_large, None).status(), StatusCode::PAYLOAD_TOO_LARGE);
        let unknown = transport_refusal(StatusCode::NOT_FOUND, "Not Found: Session not found", true);
        assert_eq!(response(&unknown, None).status(), StatusCode::NOT_FOUND);
    }
}
