//! The ledger's row: a flat [`UsageRecord`] with the derived durations, in the shape
//! both backends store (and the write-ahead log keeps, one JSON object per line).

use crate::UsageRecord;
use serde::{Deserialize, Serialize};

/// One request, as the ledger stores it. Absent strings are empty, absent times `None`.
///
/// The tool-call columns (`mcp_server` to `capture`) came later: empty and zero for
/// every other request, and defaulted when a line of the write-ahead log written before
/// them is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerRow {
    pub request_id: String,
    /// Seconds since the epoch (ClickHouse's `DateTime`: the partition and sort key).
    /// Optional when reading: ClickHouse answers it as text; it is `received_at_ms / 1000`.
    #[serde(default)]
    pub received_at: u64,
    pub received_at_ms: u64,
    pub admitted_at_ms: Option<u64>,
    pub first_token_at_ms: Option<u64>,
    pub finished_at_ms: u64,
    pub tenant_id: String,
    pub key_prefix: String,
    pub group_name: String,
    pub route: String,
    pub requested_model: String,
    pub model: String,
    pub upstream_model: String,
    /// Token counts are `u32` (4.29 billion a request, far past any context window;
    /// the gateway bills at most 2^24): a type every backend's integer column holds
    /// whole, so nothing wraps on the way in or out.
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub cached_tokens: u32,
    #[serde(with = "flag")]
    pub tokens_estimated: bool,
    pub cost: f64,
    pub queue_wait_ms: u64,
    /// From arrival to the first token streamed.
    pub ttft_ms: Option<u64>,
    /// From arrival to the end of the response.
    pub duration_ms: u64,
    pub admission_class: String,
    pub status: u16,
    pub error_type: String,
    #[serde(with = "flag")]
    pub streamed: bool,
    #[serde(with = "flag")]
    pub client_disconnected: bool,
    /// The MCP server of a tool call.
    #[serde(default)]
    pub mcp_server: String,
    /// `sha256:…` of a tool call's arguments as canonical JSON.
    #[serde(default)]
    pub args_sha256: String,
    /// Bytes of a tool call's result.
    #[serde(default)]
    pub result_bytes: u64,
    /// Why a tool call's upstream failed.
    #[serde(default)]
    pub upstream_error: String,
    /// A tool call's redacted arguments and result, where its server captures them.
    #[serde(default)]
    pub capture: String,
}

impl From<UsageRecord> for LedgerRow {
    fn from(r: UsageRecord) -> Self {
        let ms = |t: i64| t.max(0) as u64;
        let received = ms(r.received_at);
        let finished = ms(r.finished_at).max(received);
        let usage = r.usage.unwrap_or_default();
        let mut tool = r.tool.unwrap_or_default();
        // The producer bounds both; bounded again here so no row can outgrow them.
        crate::truncate_to_bytes(&mut tool.upstream_error, crate::MAX_UPSTREAM_ERROR_BYTES);
        crate::truncate_to_bytes(&mut tool.capture, crate::MAX_CAPTURE_BYTES);
        LedgerRow {
            request_id: r.request_id,
            received_at: received / 1000,
            received_at_ms: received,
            admitted_at_ms: r.admitted_at.map(ms),
            first_token_at_ms: r.first_token_at.map(ms),
            finished_at_ms: finished,
            tenant_id: r.tenant_id.unwrap_or_default(),
            key_prefix: r.key_prefix.unwrap_or_default(),
            group_name: r.group.unwrap_or_default(),
            route: r.route.to_owned(),
            requested_model: r.requested_model.unwrap_or_default(),
            model: r.model.unwrap_or_default(),
            upstream_model: r.upstream_model.unwrap_or_default(),
            input_tokens: tokens(usage.input_tokens),
            output_tokens: tokens(usage.output_tokens),
            cached_tokens: tokens(usage.cached_tokens),
            tokens_estimated: r.tokens_estimated,
            cost: crate::bounded_cost(r.cost),
            queue_wait_ms: r.queue_wait_ms,
            ttft_ms: r.first_token_at.map(|t| ms(t).saturating_sub(received)),
            duration_ms: finished - received,
            admission_class: r.admission_class.as_str().to_owned(),
            status: r.status,
            error_type: r.error_type.unwrap_or_default(),
            streamed: r.streamed,
            client_disconnected: r.client_disconnected,
            mcp_server: tool.server,
            args_sha256: tool.args_sha256,
            // SQLite's integers are signed: kept in their range, like the token counts.
            result_bytes: tool.result_bytes.min(i64::MAX as u64),
            upstream_error: tool.upstream_error,
            capture: tool.capture,
        }
    }
}

/// A count as the ledger stores it (saturating; the gateway's counts are far below).
fn tokens(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl LedgerRow {
    /// Appends the row as one JSON line.
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        // Serializing plain fields into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, self);
        out.push(b'\n');
    }

    /// Parses JSON lines; lines that do not parse are counted, not fatal.
    pub fn parse_json_lines(payload: &[u8]) -> (Vec<LedgerRow>, usize) {
        let mut rows = Vec::new();
        let mut bad = 0;
        for line in Self::json_lines(payload) {
            match line {
                Ok(row) => rows.push(row),
                Err(_) => bad += 1,
            }
        }
        (rows, bad)
    }

    /// The rows of a payload of JSON lines one at a time, for a caller that does
    /// something between them.
    pub fn json_lines(payload: &[u8]) -> impl Iterator<Item = serde_json::Result<LedgerRow>> + '_ {
        payload.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(serde_json::from_slice)
    }
}

/// Booleans as 0/1: ClickHouse's `UInt8` on old servers reads no `true`.
mod flag {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &bool, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(u8::from(*v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Flag {
            Int(u8),
            Bool(bool),
        }
        Ok(match Flag::deserialize(d)? {
            Flag::Int(i) => i != 0,
            Flag::Bool(b) => b,
        })
    }
}
