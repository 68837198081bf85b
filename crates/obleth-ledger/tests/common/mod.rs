//! Helpers shared by the ledger's integration tests.

use obleth_core::{AdmissionClass, Usage, UsageRecord};

/// A finished request of `tenant`; `n` makes its id unique and its output length.
pub fn record(n: u64, tenant: &str) -> UsageRecord {
    UsageRecord {
        request_id: format!("req-{tenant}-{n}"),
        received_at: obleth_core::now_millis(),
        finished_at: obleth_core::now_millis(),
        tenant_id: Some(tenant.into()),
        route: "chat",
        model: Some("m".into()),
        usage: Some(Usage { input_tokens: 10, output_tokens: n, cached_tokens: 0 }),
        cost: 0.25,
        admission_class: AdmissionClass::Fast,
        status: 200,
        ..UsageRecord::default()
    }
}
