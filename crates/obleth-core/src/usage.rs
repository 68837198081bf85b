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
