//! The budgets' read side: what the admin API asks of whichever budget layer the binary
//! configures (`obleth-budget`: in-process, or Redis with its failover), and the shape of
//! the answer.

use async_trait::async_trait;
use serde::Serialize;

use crate::{Quota, UnixMillis};

/// Where a tenant stands in one per-minute bucket, for `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Window {
    pub limit: u64,
    pub remaining: u64,
    /// Until the bucket is full again.
    pub reset_ms: u64,
}

/// A tenant's use of its limits (the admin API's usage endpoint).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TenantUsage {
    pub tokens_per_minute: Option<Window>,
    pub requests_per_minute: Option<Window>,
    pub in_flight: u64,
    pub max_in_flight: Option<u64>,
    /// `YYYY-MM` (UTC) of `monthly_spend`.
    pub month: String,
    pub monthly_spend: f64,
    pub monthly_budget: Option<f64>,
    pub monthly_resets_at: UnixMillis,
    pub lifetime_spend: f64,
    pub lifetime_budget: Option<f64>,
    /// Reservations that were never reconciled and expired.
    pub expired_reservations: u64,
}

/// The budget store failed to answer; the message says why (it is shown to the admin).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BudgetUnavailable(pub String);

/// What a reader may ask of the budget layer.
#[async_trait]
pub trait BudgetView: Send + Sync + 'static {
    /// The store that decides (`memory` or `redis`).
    fn kind(&self) -> &'static str;

    /// Whether decisions are being made on a local share (the shared store unreachable).
    fn degraded(&self) -> bool;

    /// The use tenant `tenant_id` makes of the limits of `quota` now.
    async fn usage(&self, tenant_id: &str, quota: &Quota) -> Result<TenantUsage, BudgetUnavailable>;
}
