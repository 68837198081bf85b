//! The admission seam: who gets an upstream slot, and when.
//!
//! The data plane asks an [`Admission`] implementation for a slot before it sends any
//! work upstream, and holds the returned [`Admitted`] until the response has finished
//! streaming, the client has gone, or the upstream failed. Dropping it frees the slot,
//! so a slot cannot be leaked by an early return or a cancelled future.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// How a request got its slot; recorded in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Refused before admission.
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

/// What the scheduler needs to know about a request.
#[derive(Debug, Clone)]
pub struct AdmissionRequest {
    pub tenant_id: String,
    pub group: String,
    pub tenant_weight: u32,
    pub model: String,
    pub model_admission_weight: f64,
    /// Estimated tokens (input + weighted output) the request will cost.
    pub estimated_tokens: u64,
    pub never_degrade: bool,
}

/// A granted slot. Dropping it releases the slot.
pub struct Admitted {
    pub class: AdmissionClass,
    pub waited: Duration,
    /// If set, the request's `max_tokens` must be capped to this (brownout).
    pub max_tokens_cap: Option<u32>,
    /// Held for its `Drop`; the concrete type is the scheduler's business.
    pub permit: Box<dyn Send + Sync>,
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
}
