//! Every metric of the MCP gateway.

use std::time::Duration;

/// A granted server left out of a listing (down or too slow).
pub fn list_partial(server: &str) {
    metrics::counter!("obleth_mcp_list_partial_total", "server" => server.to_owned()).increment(1);
}

/// One tool call's outcome: `ok`, `tool_error`, `upstream_error`, `timeout`, `denied`.
pub fn tool_call(server: &str, outcome: &'static str, took: Duration) {
    metrics::counter!("obleth_mcp_tool_calls_total", "server" => server.to_owned(), "outcome" => outcome).increment(1);
    metrics::histogram!("obleth_mcp_tool_call_duration_seconds", "server" => server.to_owned())
        .record(took.as_secs_f64());
}

/// A tool's definition moved away from its pin (quarantined) or back.
pub fn quarantined(server: &str) {
    metrics::counter!("obleth_mcp_tools_quarantined_total", "server" => server.to_owned()).increment(1);
}

/// A request refused before the protocol: `unknown` or `foreign` session ids are both
/// answered 404; the label says which, for operators only.
pub fn session_rejected(reason: &'static str) {
    metrics::counter!("obleth_mcp_session_rejected_total", "reason" => reason).increment(1);
}

/// The sessions bound now.
pub fn sessions(count: u64) {
    metrics::gauge!("obleth_mcp_sessions").set(count as f64);
}
