//! Per-tenant limits on MCP tool calls: calls per minute (`Quota.tool_calls_per_minute`,
//! a token bucket) and calls in flight (`Quota.tool_calls_in_flight`, across every MCP
//! server).
//!
//! They are checked after a call is resolved and allowed, before it joins its server's
//! fair queue: a call waiting in that queue holds its in-flight slot, as the data plane's
//! `max_in_flight` counts queued requests too. The quota is read from the caller's tenant
//! on every call, so a changed quota applies to the next call (a lowered per-minute limit
//! caps what is left in the bucket; a new in-flight limit counts calls started after it).
//!
//! Per pod: each pod keeps its own buckets and counters, so in a cluster of n pods a
//! tenant may make up to n times its limits (the documented per-pod approximation of the
//! MCP gateway; the data plane's budgets share theirs through Redis, these do not yet).
//!
//! [`Table`] is the pure part: every decision at a time given as an argument, never the
//! clock. [`ToolLimits`] holds it for the pod with a monotonic clock and hands out
//! [`Slot`]s, whose drop gives the in-flight slot back on every path (answered, failed,
//! refused by the queue, or the client gone and the handler's future dropped).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use obleth_budget::bucket::Bucket;
use obleth_core::{Quota, UnixMillis};

/// A minute, in the bucket's milliseconds.
const MINUTE_MS: UnixMillis = 60_000;

/// What a caller refused for want of an in-flight slot is told to wait: a slot frees when
/// one of its calls ends, which this pod cannot foresee.
pub const IN_FLIGHT_RETRY: Duration = Duration::from_secs(1);

/// Which limit refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    PerMinute,
    InFlight,
}

impl Limit {
    /// The quota field, as a refusal names it.
    pub fn field(self) -> &'static str {
        match self {
            Limit::PerMinute => "tool_calls_per_minute",
            Limit::InFlight => "tool_calls_in_flight",
        }
    }
}

/// A call refused by one of its tenant's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub limit: Limit,
    /// The limit's value.
    pub cap: u64,
    /// When a retry may pass: exact for the per-minute limit, a hint for the other.
    pub retry_after: Duration,
}

/// One tenant's state on this pod.
#[derive(Debug, Default)]
struct TenantState {
    /// `None` without a per-minute limit (a missing bucket is a full one).
    bucket: Option<Bucket>,
    /// Calls counted against the in-flight limit and not yet released.
    in_flight: u32,
}

impl TenantState {
    /// Whether forgetting this state changes no decision: no call to release, and a
    /// bucket untouched for a minute, which is full again at any capacity (its level is
    /// never below zero: a call only takes a whole token that is there).
    fn forgettable(&self, now: UnixMillis) -> bool {
        self.in_flight == 0 && self.bucket.is_none_or(|b| now.saturating_sub(b.at) >= MINUTE_MS)
    }
}

/// Every tenant's buckets and counters on this pod: pure, time given to each call.
///
/// Bounded: a tenant's entry is dropped once forgetting it changes nothing (see
/// [`TenantState::forgettable`]), in a sweep at most once a minute, so it holds the
/// tenants that called in the last two minutes or have calls in flight.
#[derive(Debug, Default)]
pub struct Table {
    tenants: HashMap<String, TenantState>,
    swept_at: UnixMillis,
}

impl Table {
    /// Admits a call of `tenant_id` under `quota` at `now`, or says which limit refuses
    /// it. `Ok(true)`: the call holds an in-flight slot, to [`release`](Self::release)
    /// when it ends. A refused call spends nothing.
    pub fn admit(&mut self, tenant_id: &str, quota: &Quota, now: UnixMillis) -> Result<bool, Refusal> {
        if now.saturating_sub(self.swept_at) >= MINUTE_MS {
            self.sweep(now);
        }
        let (rate, slots) = (quota.tool_calls_per_minute, quota.tool_calls_in_flight);
        if rate.is_none() && slots.is_none() {
            return Ok(false);
        }
        // Looked up before inserting, so that the common case allocates no key.
        if !self.tenants.contains_key(tenant_id) {
            self.tenants.insert(tenant_id.to_owned(), TenantState::default());
        }
        let Some(state) = self.tenants.get_mut(tenant_id) else { return Ok(false) };

        let bucket = match rate {
            Some(cap) => {
                let bucket = state.bucket.map_or_else(|| Bucket::full(cap, now), |b| b.refilled(cap, now));
                if bucket.level < 1.0 {
                    state.bucket = Some(bucket);
                    // `None` only for a zero limit, which the store refuses: then never.
                    let wait = bucket.wait_ms(1, cap).unwrap_or(u64::try_from(MINUTE_MS).unwrap_or(u64::MAX));
                    return Err(Refusal { limit: Limit::PerMinute, cap, retry_after: Duration::from_millis(wait) });
                }
                Some(bucket.credit(-1.0, cap))
            }
            None => None,
        };
        if let Some(cap) = slots
            && state.in_flight >= cap
        {
            return Err(Refusal { limit: Limit::InFlight, cap: u64::from(cap), retry_after: IN_FLIGHT_RETRY });
        }
        state.bucket = bucket;
        let counted = slots.is_some();
        if counted {
            state.in_flight = state.in_flight.saturating_add(1);
        }
        Ok(counted)
    }

    /// A call admitted with a slot ended.
    pub fn release(&mut self, tenant_id: &str, now: UnixMillis) {
        if let Some(state) = self.tenants.get_mut(tenant_id) {
            state.in_flight = state.in_flight.saturating_sub(1);
            if state.forgettable(now) {
                self.tenants.remove(tenant_id);
            }
        }
    }

    /// Calls of `tenant_id` holding a slot now.
    pub fn in_flight(&self, tenant_id: &str) -> u32 {
        self.tenants.get(tenant_id).map_or(0, |s| s.in_flight)
    }

    /// Tenants with state kept.
    pub fn len(&self) -> usize {
        self.tenants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    fn sweep(&mut self, now: UnixMillis) {
        self.tenants.retain(|_, state| !state.forgettable(now));
        self.swept_at = now;
    }
}

/// The pod's [`Table`] with a monotonic clock (a wall clock set back would refill
/// nothing, one set forward would refill early; this one does neither).
pub struct ToolLimits {
    table: Arc<Mutex<Table>>,
    epoch: Instant,
}

impl Default for ToolLimits {
    fn default() -> Self {
        ToolLimits { table: Arc::default(), epoch: Instant::now() }
    }
}

impl ToolLimits {
    /// Admits a call of `tenant` under its current quota.
    pub fn admit(&self, tenant: &obleth_core::Tenant) -> Result<Slot, Refusal> {
        let counted = lock(&self.table).admit(&tenant.id, &tenant.quota, self.now())?;
        let held = counted.then(|| (self.table.clone(), tenant.id.clone(), self.epoch));
        Ok(Slot { held })
    }

    /// Calls of `tenant_id` holding a slot on this pod.
    pub fn in_flight(&self, tenant_id: &str) -> u32 {
        lock(&self.table).in_flight(tenant_id)
    }

    fn now(&self) -> UnixMillis {
        elapsed_ms(self.epoch)
    }
}

/// An admitted call's in-flight slot, given back when dropped: keep it for the whole call.
#[must_use = "dropping the slot ends the call's hold on its tenant's in-flight limit"]
pub struct Slot {
    held: Option<(Arc<Mutex<Table>>, String, Instant)>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((table, tenant_id, epoch)) = self.held.take() {
            lock(&table).release(&tenant_id, elapsed_ms(epoch));
        }
    }
}

fn elapsed_ms(epoch: Instant) -> UnixMillis {
    UnixMillis::try_from(epoch.elapsed().as_millis()).unwrap_or(UnixMillis::MAX)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The table stays consistent between statements: a panic elsewhere cannot leave it
    // half-written, so a poisoned lock is still good.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
