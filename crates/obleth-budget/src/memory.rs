//! The in-process budget store: the embedded default, and each pod's local share while
//! Redis is unreachable.
//!
//! One mutex over all counters makes every reserve atomic; it is held for a few hundred
//! nanoseconds and never across an await. Counters live as long as the process: spend
//! starts from zero at each start (the ledger is the durable record of spend).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use obleth_core::UnixMillis;

use crate::bucket::Bucket;
use crate::{
    Actual, BudgetError, BudgetStore, Clock, Decision, Denial, LimitKind, Limits, Nanos, RateStatus, Reservation,
    Reserve, TenantUsage, Window, calendar, from_nanos,
};

/// How long an expired, unreconciled reservation is remembered, so that a late
/// reconcile still charges the request's actual use.
const EXPIRED_GRACE_MS: i64 = 3_600_000;

/// Suggested retry delay when the in-flight cap refuses (no way to know when a slot frees).
pub(crate) const IN_FLIGHT_RETRY_MS: u64 = 1_000;

pub struct MemoryBudget {
    clock: Arc<dyn Clock>,
    ttl_ms: i64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    tenants: HashMap<String, TenantState>,
    reservations: HashMap<String, Record>,
    /// `absorb` batches already applied, with when they may be forgotten.
    absorbed: HashMap<String, UnixMillis>,
}

#[derive(Default)]
struct TenantState {
    tpm: Option<Bucket>,
    rpm: Option<Bucket>,
    in_flight: u64,
    month: String,
    monthly: Nanos,
    lifetime: Nanos,
    expired: u64,
    /// Reservations still holding a slot, by deadline.
    deadlines: BTreeSet<(UnixMillis, String)>,
}

struct Record {
    tenant: String,
    tokens: u64,
    cost: Nanos,
    month: String,
    deadline: UnixMillis,
    expired: bool,
}

impl MemoryBudget {
    /// A store whose reservations expire after `ttl` if never reconciled.
    pub fn new(clock: Arc<dyn Clock>, ttl: Duration) -> MemoryBudget {
        MemoryBudget { clock, ttl_ms: ttl.as_millis() as i64, state: Mutex::new(State::default()) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets a tenant's spend this month and over its lifetime (as recorded in the usage
    /// ledger) when this process starts: in-process counts would otherwise begin at zero
    /// at every restart. Never lowers what was already charged.
    pub fn seed(&self, tenant: &str, monthly: Nanos, lifetime: Nanos) {
        let month = calendar::month_key(self.clock.now());
        let mut state = self.lock();
        let ts = state.tenants.entry(tenant.to_owned()).or_default();
        ts.roll_month(&month);
        ts.monthly = ts.monthly.max(monthly);
        ts.lifetime = ts.lifetime.max(lifetime);
    }

    /// Expires dangling reservations of every tenant and forgets old records; returns
    /// how many expired. The stores also expire a tenant's reservations on its next
    /// reserve, so this only keeps idle tenants' counts honest.
    pub fn sweep(&self) -> u64 {
        let now = self.clock.now();
        let mut state = self.lock();
        let State { tenants, reservations, absorbed } = &mut *state;
        let mut expired = 0;
        for ts in tenants.values_mut() {
            expired += expire(ts, reservations, now);
        }
        reservations.retain(|_, r| !(r.expired && r.deadline + EXPIRED_GRACE_MS < now));
        absorbed.retain(|_, until| *until > now);
        expired
    }
}

/// Frees an emptied set's node: a `BTreeSet` keeps its root node (~0.4 KiB here) when its
/// last element leaves, and every tenant that ever made a request has one (4 MiB for
/// 10,000 idle tenants).
fn release_if_empty(deadlines: &mut BTreeSet<(UnixMillis, String)>) {
    if deadlines.is_empty() {
        *deadlines = BTreeSet::new();
    }
}

/// Frees the slots of a tenant's reservations past their deadline.
fn expire(ts: &mut TenantState, reservations: &mut HashMap<String, Record>, now: UnixMillis) -> u64 {
    let mut n = 0;
    while let Some((deadline, _)) = ts.deadlines.first() {
        if *deadline > now {
            break;
        }
        let Some((_, id)) = ts.deadlines.pop_first() else { break };
        if let Some(r) = reservations.get_mut(&id) {
            r.expired = true;
        }
        ts.in_flight = ts.in_flight.saturating_sub(1);
        ts.expired += 1;
        n += 1;
    }
    release_if_empty(&mut ts.deadlines);
    if n > 0 {
        metrics::counter!(crate::layer::EXPIRED_METRIC).increment(n);
        tracing::warn!(expired = n, "budget reservations expired without a reconcile");
    }
    n
}

impl TenantState {
    fn roll_month(&mut self, month: &str) {
        if self.month != month {
            self.month = month.to_owned();
            self.monthly = 0;
        }
    }

    fn bucket(slot: &mut Option<Bucket>, cap: u64, now: UnixMillis) -> Bucket {
        let b = slot.map(|b| b.refilled(cap, now)).unwrap_or_else(|| Bucket::full(cap, now));
        *slot = Some(b);
        b
    }

    fn status(&self, limits: &Limits) -> RateStatus {
        let window = |b: Option<Bucket>, cap: Option<u64>| {
            let cap = cap?;
            let b = b?;
            Some(Window { limit: cap, remaining: b.remaining(), reset_ms: b.reset_ms(cap) })
        };
        RateStatus {
            requests: window(self.rpm, limits.rpm),
            tokens: window(self.tpm, limits.tpm),
            monthly_spent: self.monthly,
            lifetime_spent: self.lifetime,
        }
    }
}

/// The reserve decision over one tenant's counters (`redis/reserve.lua` mirrors it).
fn decide(ts: &mut TenantState, r: &Reserve<'_>, now: UnixMillis) -> Option<Denial> {
    let l = r.limits;
    let rpm = l.rpm.map(|cap| (cap, TenantState::bucket(&mut ts.rpm, cap, now)));
    let tpm = l.tpm.map(|cap| (cap, TenantState::bucket(&mut ts.tpm, cap, now)));
    // Spend first: it is the hard stop, and no wait helps a rate limit while it holds.
    if let Some(budget) = l.monthly_budget
        && ts.monthly.saturating_add(r.cost) > budget
    {
        return Some(spend_denial(LimitKind::MonthlyBudget, r.cost > budget, Some(calendar::next_month_start(now))));
    }
    if let Some(budget) = l.lifetime_budget
        && ts.lifetime.saturating_add(r.cost) > budget
    {
        return Some(spend_denial(LimitKind::LifetimeBudget, r.cost > budget, None));
    }
    let mut denied: Option<(LimitKind, Option<u64>, bool)> = None;
    let mut deny = |kind, wait: Option<u64>| {
        let too_large = wait.is_none();
        match &mut denied {
            None => denied = Some((kind, wait, too_large)),
            Some((_, w, big)) => {
                // Retry when every failing limit passes.
                *w = match (*w, wait) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
                *big |= too_large;
            }
        }
    };
    if let Some(cap) = l.max_in_flight
        && ts.in_flight >= cap
    {
        deny(LimitKind::InFlight, Some(IN_FLIGHT_RETRY_MS));
    }
    if let Some((cap, b)) = rpm
        && b.level < 1.0
    {
        deny(LimitKind::Rpm, b.wait_ms(1, cap));
    }
    if let Some((cap, b)) = tpm
        && b.level < r.tokens as f64
    {
        deny(LimitKind::Tpm, b.wait_ms(r.tokens, cap));
    }
    denied.map(|(limit, retry_after_ms, too_large)| Denial {
        limit,
        retry_after_ms,
        resets_at: None,
        too_large,
        status: RateStatus::default(),
    })
}

/// A spend refusal; the caller fills in the retry delay from its clock.
fn spend_denial(limit: LimitKind, too_large: bool, resets_at: Option<UnixMillis>) -> Denial {
    Denial { limit, retry_after_ms: None, resets_at, too_large, status: RateStatus::default() }
}

#[async_trait]
impl BudgetStore for MemoryBudget {
    async fn reserve(&self, r: &Reserve<'_>) -> Result<Decision, BudgetError> {
        let now = self.clock.now();
        let month = calendar::month_key(now);
        let mut state = self.lock();
        let State { tenants, reservations, .. } = &mut *state;
        let ts = tenants.entry(r.tenant.to_owned()).or_default();
        expire(ts, reservations, now);
        ts.roll_month(&month);
        if reservations.contains_key(r.request_id) {
            // A repeated reserve: it was granted the first time.
            return Ok(Decision::Allowed(ts.status(r.limits)));
        }
        if let Some(mut denial) = decide(ts, r, now) {
            if let Some(at) = denial.resets_at {
                denial.retry_after_ms = Some((at - now).max(0) as u64);
            }
            denial.status = ts.status(r.limits);
            return Ok(Decision::Denied(denial));
        }
        if let (Some(cap), Some(b)) = (r.limits.rpm, ts.rpm.as_mut()) {
            *b = b.credit(-1.0, cap);
        }
        if let (Some(cap), Some(b)) = (r.limits.tpm, ts.tpm.as_mut()) {
            *b = b.credit(-(r.tokens as f64), cap);
        }
        ts.in_flight += 1;
        ts.monthly = ts.monthly.saturating_add(r.cost);
        ts.lifetime = ts.lifetime.saturating_add(r.cost);
        let deadline = now + self.ttl_ms;
        ts.deadlines.insert((deadline, r.request_id.to_owned()));
        reservations.insert(
            r.request_id.to_owned(),
            Record { tenant: r.tenant.to_owned(), tokens: r.tokens, cost: r.cost, month, deadline, expired: false },
        );
        Ok(Decision::Allowed(ts.status(r.limits)))
    }

    async fn reconcile(&self, res: &Reservation, actual: Actual) -> Result<(), BudgetError> {
        let now = self.clock.now();
        let mut state = self.lock();
        let State { tenants, reservations, .. } = &mut *state;
        // No record: reconciled already (or forgotten long after it expired).
        let Some(rec) = reservations.remove(&res.request_id) else {
            return Ok(());
        };
        let ts = tenants.entry(rec.tenant.clone()).or_default();
        if !rec.expired {
            ts.deadlines.remove(&(rec.deadline, res.request_id.clone()));
            release_if_empty(&mut ts.deadlines);
            ts.in_flight = ts.in_flight.saturating_sub(1);
        }
        if let (Some(cap), Some(b)) = (res.limits.tpm, ts.tpm.as_mut()) {
            *b = b.refilled(cap, now).credit(rec.tokens as f64 - actual.tokens as f64, cap);
        }
        let delta = actual.cost - rec.cost;
        if ts.month == rec.month {
            ts.monthly = ts.monthly.saturating_add(delta);
        }
        ts.lifetime = ts.lifetime.saturating_add(delta);
        Ok(())
    }

    async fn absorb(&self, batch_id: &str, tenant: &str, limits: &Limits, used: Actual) -> Result<(), BudgetError> {
        let now = self.clock.now();
        let month = calendar::month_key(now);
        let mut state = self.lock();
        if state.absorbed.contains_key(batch_id) {
            return Ok(());
        }
        state.absorbed.insert(batch_id.to_owned(), now + EXPIRED_GRACE_MS);
        let ts = state.tenants.entry(tenant.to_owned()).or_default();
        ts.roll_month(&month);
        if let Some(cap) = limits.tpm {
            let b = TenantState::bucket(&mut ts.tpm, cap, now);
            ts.tpm = Some(b.credit(-(used.tokens as f64), cap));
        }
        ts.monthly = ts.monthly.saturating_add(used.cost);
        ts.lifetime = ts.lifetime.saturating_add(used.cost);
        Ok(())
    }

    async fn usage(&self, tenant: &str, limits: &Limits) -> Result<TenantUsage, BudgetError> {
        let now = self.clock.now();
        let month = calendar::month_key(now);
        let mut state = self.lock();
        let State { tenants, reservations, .. } = &mut *state;
        let ts = tenants.entry(tenant.to_owned()).or_default();
        expire(ts, reservations, now);
        ts.roll_month(&month);
        let window = |b: Option<Bucket>, cap: Option<u64>| {
            let cap = cap?;
            let b = b.map(|b| b.refilled(cap, now)).unwrap_or_else(|| Bucket::full(cap, now));
            Some(Window { limit: cap, remaining: b.remaining(), reset_ms: b.reset_ms(cap) })
        };
        Ok(TenantUsage {
            tokens_per_minute: window(ts.tpm, limits.tpm),
            requests_per_minute: window(ts.rpm, limits.rpm),
            in_flight: ts.in_flight,
            max_in_flight: limits.max_in_flight,
            month,
            monthly_spend: from_nanos(ts.monthly),
            monthly_budget: limits.monthly_budget.map(from_nanos),
            monthly_resets_at: calendar::next_month_start(now),
            lifetime_spend: from_nanos(ts.lifetime),
            lifetime_budget: limits.lifetime_budget.map(from_nanos),
            expired_reservations: ts.expired,
        })
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}
