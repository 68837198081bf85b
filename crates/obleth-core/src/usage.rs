//! The usage record seam: one row per request, handed to the ledger.

use serde::{Deserialize, Serialize};

use crate::{UnixMillis, admission::AdmissionClass};

/// Token counts of one request as reported by the upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Prompt tokens served from the upstream's prefix cache, where reported.
    pub cached_tokens: u64,
}

/// Everything the ledger keeps about one request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UsageRecord {
    pub request_id: String,
    pub received_at: UnixMillis,
    pub admitted_at: Option<UnixMillis>,
    pub first_token_at: Option<UnixMillis>,
    pub finished_at: UnixMillis,
    pub tenant_id: Option<String>,
    pub key_prefix: Option<String>,
    pub group: Option<String>,
    pub route: &'static str,
    pub requested_model: Option<String>,
    /// The registered model the request was routed to (differs from the requested one
    /// for `model: auto`).
    pub model: Option<String>,
    pub upstream_model: Option<String>,
    pub usage: Option<Usage>,
    /// True when the counts were not reported by the upstream.
    pub tokens_estimated: bool,
    pub cost: f64,
    pub queue_wait_ms: u64,
    pub admission_class: AdmissionClass,
    pub status: u16,
    pub error_type: Option<String>,
    pub streamed: bool,
    pub client_disconnected: bool,
    /// What the ledger keeps of an MCP tool call; `None` for every other request.
    #[serde(default)]
    pub tool: Option<ToolCallUsage>,
}

/// The tool-call columns of an MCP tool call's row (the tool's names are in `model`
/// and `upstream_model`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ToolCallUsage {
    /// The MCP server's name.
    pub server: String,
    /// `sha256:` and the hex digest of the call's arguments as canonical JSON (keys
    /// sorted, no whitespace; `{}` when absent): equal calls are recognisable without
    /// the ledger holding what they said.
    pub args_sha256: String,
    /// Bytes of the upstream's result, serialized; 0 when there was none.
    pub result_bytes: u64,
    /// Why the upstream failed (the call never got a result): scrubbed of internal
    /// addresses, at most [`MAX_UPSTREAM_ERROR_BYTES`]; empty if it did not.
    pub upstream_error: String,
    /// `{"arguments":…,"result":…}` with the server's redacted fields replaced, cut to
    /// at most [`MAX_CAPTURE_BYTES`] (a capture that does not parse was cut); empty
    /// unless the server captures calls.
    pub capture: String,
}

/// The most of an upstream's error a tool call's row keeps.
pub const MAX_UPSTREAM_ERROR_BYTES: usize = 512;

/// The most of a captured call a row keeps: a row must stay small next to its
/// neighbours in the ledger's log and its database's parts.
pub const MAX_CAPTURE_BYTES: usize = 16 * 1024;

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn truncate_to_bytes(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// Where finished requests go. Must never block or await: the request path calls it.
pub trait UsageSink: Send + Sync + 'static {
    fn record(&self, record: UsageRecord);

    /// False while the sink cannot keep new records and is configured to refuse the
    /// requests that would make them (a full ledger log with `on_full = "reject"`).
    fn accepting(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_whole_characters() {
        let mut s = "aé€😀".to_owned(); // 1 + 2 + 3 + 4 bytes
        truncate_to_bytes(&mut s, 20);
        assert_eq!(s, "aé€😀");
        for (max, want) in [(9, "aé€"), (6, "aé€"), (5, "aé"), (1, "a"), (0, "")] {
            let mut s = "aé€😀".to_owned();
            truncate_to_bytes(&mut s, max);
            assert_eq!(s, want, "max {max}");
        }
    }

    /// A record as an older gateway serialized it (no tool columns) still reads.
    #[test]
    fn records_without_the_tool_columns_read() {
        // `route` is a `&'static str`: read from static text.
        let old = r#"{"request_id":"r1","received_at":1,"admitted_at":null,"first_token_at":null,"finished_at":2,
            "tenant_id":null,"key_prefix":null,"group":null,"route":"chat","requested_model":null,"model":null,
            "upstream_model":null,"usage":null,"tokens_estimated":false,"cost":0.0,"queue_wait_ms":0,
            "admission_class":"fast","status":200,"error_type":null,"streamed":false,"client_disconnected":false}"#;
        let r: UsageRecord = serde_json::from_str(old).expect("an old record");
        assert_eq!(r.tool, None);
        let partial: ToolCallUsage = serde_json::from_str(r#"{"server":"fs"}"#).expect("partial");
        assert_eq!(partial, ToolCallUsage { server: "fs".into(), ..ToolCallUsage::default() });
    }
}
