//! Budgets: per-tenant limits that are a hard stop.
//!
//! Saturation is the scheduler's business (requests wait); a budget is different: a
//! tenant over its tokens per minute, requests per minute, requests in flight or spend
//! is refused. Every request with limits goes through three steps:
//!
//! 1. **estimate** (the data plane counts prompt tokens and the output it may produce),
//! 2. **reserve**: one atomic step checks *every* limit of the request and, only if all
//!    pass, takes the estimate from all of them, so that concurrent requests can never
//!    together pass a limit (no check-then-increment);
//! 3. **reconcile**: when the request ends (finished, failed, cancelled), the reservation
//!    is replaced by what the request actually used. Reservations left dangling (a pod
//!    that died mid-request) expire after a TTL, are counted, and free their slot.
//!
//! [`BudgetStore`] is that contract; [`MemoryBudget`] (one process) and [`RedisBudget`]
//! (every pod sees the same counters) implement it, and [`conformance::run`] is the
//! behavioural suite both pass. [`Failover`] puts a local share of every limit behind
//! Redis for when Redis is unreachable, and [`Budget`] is what the gateway holds: it
//! skips tenants without limits, and its [`Held`] guard reconciles on drop.
//!
//! # Limits
//! - tokens and requests per minute are token buckets (capacity = the per-minute limit,
//!   refilled continuously); a reconcile returns the unused part of the estimate to the
//!   bucket, or takes the excess (the bucket may go into debt);
//! - in flight counts reservations not yet reconciled;
//! - spend is counted in nano-units of the registry's currency ([`Nanos`]), per calendar
//!   month (UTC) and over the tenant's life; a request is refused if its *estimated*
//!   cost would take the tenant over, so that an exhausted budget is overspent by no
//!   more than the estimation error.

use std::time::Duration;

use async_trait::async_trait;
use obleth_core::{Quota, UnixMillis};
use serde::Serialize;

pub mod bucket;
pub mod calendar;
pub mod conformance;
mod failover;
mod layer;
mod memory;
mod redis;

// What the admin API reads is the seam's (`obleth-core`).
pub use failover::{Failover, FailoverConfig};
pub use layer::{Budget, Held, Refusal};
pub use memory::MemoryBudget;
pub use obleth_core::budget::{TenantUsage, Window};
pub use redis::{RedisBudget, RedisConfig};

/// Money in nano-units (10⁻⁹) of the registry's currency: integer, so that Redis and the
/// in-process store add it exactly.
pub type Nanos = i64;

/// Converts an amount of money to [`Nanos`].
pub fn to_nanos(amount: f64) -> Nanos {
    if !amount.is_finite() {
        return if amount > 0.0 { Nanos::MAX } else { 0 };
    }
    (amount * 1e9).round().clamp(i64::MIN as f64, i64::MAX as f64) as Nanos
}

/// Converts [`Nanos`] back to an amount of money.
pub fn from_nanos(n: Nanos) -> f64 {
    n as f64 / 1e9
}

/// The wall clock a store reads. Injected so that the suite can move time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> UnixMillis;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixMillis {
        obleth_core::now_millis()
    }
}

/// A clock that moves only when told (tests).
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    pub fn new(start: UnixMillis) -> Self {
        ManualClock(std::sync::atomic::AtomicI64::new(start))
    }

    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as i64, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn set(&self, to: UnixMillis) {
        self.0.store(to, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixMillis {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The limits that apply to one request. `None` is "no limit".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub tpm: Option<u64>,
    pub rpm: Option<u64>,
    pub max_in_flight: Option<u64>,
    pub monthly_budget: Option<Nanos>,
    pub lifetime_budget: Option<Nanos>,
    /// Refuse (503) rather than admit on a local share while the shared store is
    /// unreachable. Applies to tenants with a spend budget.
    pub fail_closed: bool,
}

impl Limits {
    pub fn from_quota(q: &Quota) -> Limits {
        Limits {
            tpm: q.tpm,
            rpm: q.rpm,
            max_in_flight: q.max_in_flight.map(u64::from),
            monthly_budget: q.monthly_budget.map(to_nanos),
            lifetime_budget: q.lifetime_budget.map(to_nanos),
            fail_closed: q.fail_closed,
        }
    }

    /// No limit at all: the request needs no reservation.
    pub fn is_unlimited(&self) -> bool {
        self.tpm.is_none()
            && self.rpm.is_none()
            && self.max_in_flight.is_none()
            && self.monthly_budget.is_none()
            && self.lifetime_budget.is_none()
    }

    /// A limit counted in tokens or money: the request's tokens must be counted exactly.
    pub fn needs_tokens(&self) -> bool {
        self.tpm.is_some() || self.has_spend_budget()
    }

    pub fn has_spend_budget(&self) -> bool {
        self.monthly_budget.is_some() || self.lifetime_budget.is_some()
    }

    /// A share of every limit (at least 1 of each), for a pod deciding alone.
    pub fn share(&self, fraction: f64) -> Limits {
        let count = |v: u64| ((v as f64 * fraction).floor() as u64).max(1);
        let money = |v: Nanos| (v as f64 * fraction).floor() as Nanos;
        Limits {
            tpm: self.tpm.map(count),
            rpm: self.rpm.map(count),
            max_in_flight: self.max_in_flight.map(count),
            monthly_budget: self.monthly_budget.map(money),
            lifetime_budget: self.lifetime_budget.map(money),
            fail_closed: self.fail_closed,
        }
    }
}

/// One request's reservation, as asked for.
#[derive(Debug, Clone, Copy)]
pub struct Reserve<'a> {
    /// The tenant's id (the counters' key).
    pub tenant: &'a str,
    /// Unique per request: a repeated reserve or reconcile with the same id counts once.
    pub request_id: &'a str,
    pub limits: &'a Limits,
    /// Estimated tokens (input + output it may produce).
    pub tokens: u64,
    /// Estimated cost.
    pub cost: Nanos,
}

/// A reservation that was granted and must be reconciled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub tenant: String,
    pub request_id: String,
    pub limits: Limits,
    pub tokens: u64,
    pub cost: Nanos,
}

/// What a request actually used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Actual {
    pub tokens: u64,
    pub cost: Nanos,
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    Tpm,
    Rpm,
    InFlight,
    MonthlyBudget,
    LifetimeBudget,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Tpm => "tpm",
            LimitKind::Rpm => "rpm",
            LimitKind::InFlight => "in_flight",
            LimitKind::MonthlyBudget => "monthly_budget",
            LimitKind::LifetimeBudget => "lifetime_budget",
        }
    }

    /// A spend budget, as opposed to a rate limit.
    pub fn is_spend(self) -> bool {
        matches!(self, LimitKind::MonthlyBudget | LimitKind::LifetimeBudget)
    }
}

/// The tenant's standing after a decision: its rate-limit windows (for the
/// `x-ratelimit-*` headers) and its spend so far (what a pod falls back on when the
/// shared store becomes unreachable).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RateStatus {
    pub requests: Option<Window>,
    pub tokens: Option<Window>,
    /// Spend this calendar month, including reservations.
    pub monthly_spent: Nanos,
    /// Spend over the tenant's life, including reservations.
    pub lifetime_spent: Nanos,
}

/// A refusal by a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub limit: LimitKind,
    /// When a retry can pass, if it ever can without a change of limits or a new month.
    pub retry_after_ms: Option<u64>,
    /// When a spend budget resets (the next calendar month), if it does.
    pub resets_at: Option<UnixMillis>,
    /// The request alone is larger than the limit: no wait helps.
    pub too_large: bool,
    pub status: RateStatus,
}

/// The outcome of [`BudgetStore::reserve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed(RateStatus),
    Denied(Denial),
}

/// A budget store failed.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    /// The store could not be reached in time (or its circuit breaker is open).
    #[error("budget store unavailable: {0}")]
    Unavailable(String),
    /// The store answered something unexpected.
    #[error("budget store error: {0}")]
    Backend(String),
}

/// The budget contract (see the crate documentation). Implementations must make
/// `reserve` atomic over all limits, and both `reserve` and `reconcile` idempotent per
/// request id.
#[async_trait]
pub trait BudgetStore: Send + Sync + 'static {
    /// Checks every limit of the request and, if all pass, reserves the estimate.
    async fn reserve(&self, request: &Reserve<'_>) -> Result<Decision, BudgetError>;

    /// Replaces the reservation by the actual use and frees its in-flight slot. A
    /// reservation that already expired is charged its actual use without freeing a
    /// slot twice.
    async fn reconcile(&self, reservation: &Reservation, actual: Actual) -> Result<(), BudgetError>;

    /// Charges use that was decided elsewhere (a pod's local share while this store
    /// was unreachable). Idempotent per `batch_id`.
    async fn absorb(&self, batch_id: &str, tenant: &str, limits: &Limits, used: Actual) -> Result<(), BudgetError>;

    /// The tenant's current use of `limits`.
    async fn usage(&self, tenant: &str, limits: &Limits) -> Result<TenantUsage, BudgetError>;

    /// `memory` or `redis`, for the admin API and logs.
    fn kind(&self) -> &'static str;

    /// Whether decisions are being made without the shared store (a pod's local share
    /// while Redis is unreachable), for readiness.
    fn degraded(&self) -> bool {
        false
    }
}
