//! The admission seam: who gets an upstream slot, and when.
//!
//! The data plane asks an [`Admission`] implementation for a slot before it sends any
//! work upstream, and holds the returned [`Admitted`] until the response has finished
//! streaming, the client has gone, or the upstream failed. Dropping it frees the slot,
//! so a slot cannot be leaked by an early return or a cancelled future.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::scheduler::SchedulerSnapshot;
use crate::{Model, Tenant};

/// How a request got its slot; recorded in the ledger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdmissionClass {
    /// A slot was free and nothing was queued.
    Fast,
    /// The request waited for a slot.
    Queued,
    /// The request waited past the brownout threshold and was admitted degraded.
    Brownout,
    /// Answered from the response cache, never admitted.
    CacheHit,
    /// Refused before admission (also the class of a request until it is admitted).
    #[default]
    Rejected,
}

impl AdmissionClass {
    pub fn as_str(self) -> &'static str {
        match self {
            AdmissionClass::Fast => "fast",
            AdmissionClass::Queued => "queued",
            AdmissionClass::Brownout => "brownout",
            AdmissionClass::CacheHit => "cache_hit",
            AdmissionClass::Rejected => "rejected",
        }
    }
}

/// What the scheduler needs to know about a request: who asks (the tenant as the store
/// has it: its name, id, weight, group and caps), for which model (its admission weight
/// and cap) and how much work it is expected to be. Shared, not copied: the data plane
/// already holds both entries in its caches.
#[derive(Debug, Clone)]
pub struct AdmissionRequest {
    pub tenant: Arc<Tenant>,
    pub model: Arc<Model>,
    pub estimate: TokenEstimate,
}

/// The tokens a request is expected to take before it has run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenEstimate {
    /// Prompt tokens (counted or estimated from the body).
    pub input: u64,
    /// Output tokens the request may produce (`max_tokens` × `n`, or a default).
    pub output: u64,
}

/// A held slot. Dropping it releases the slot; [`SlotPermit::settle`] first reports the
/// actual usage so that the scheduler can replace its estimate.
pub trait SlotPermit: Send + Sync {
    /// Reports the request's tokens so far; the last call before the drop counts.
    fn settle(&mut self, _input_tokens: u64, _output_tokens: u64) {}
}

/// A slot that needs no release (no admission control).
impl SlotPermit for () {}

/// A granted slot. Dropping it releases the slot.
pub struct Admitted {
    pub class: AdmissionClass,
    pub waited: Duration,
    /// If set, the request's `max_tokens` must be capped to this (brownout).
    pub max_tokens_cap: Option<u32>,
    pub permit: Box<dyn SlotPermit>,
}

impl std::fmt::Debug for Admitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admitted")
            .field("class", &self.class)
            .field("waited", &self.waited)
            .field("max_tokens_cap", &self.max_tokens_cap)
            .finish_non_exhaustive()
    }
}

/// Why a request was not admitted. These are expected outcomes, not errors.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    /// The tenant's queue (or the global queue) is full.
    QueueFull { retry_after: Duration },
    /// The request waited past the hard queue timeout.
    QueueTimeout { retry_after: Duration },
    /// The gateway is shutting down.
    ShuttingDown,
}

/// Decides when a request may go upstream.
#[async_trait]
pub trait Admission: Send + Sync + 'static {
    /// Waits for a slot. Cancel-safe: dropping the future gives up the place in line.
    async fn admit(&self, request: AdmissionRequest) -> Result<Admitted, Rejection>;

    /// The scheduler's state for the admin API (`GET /api/v1/scheduler`); `None` (shown
    /// as `null`) for an admission without one.
    fn snapshot(&self) -> Option<SchedulerSnapshot> {
        None
    }
}
