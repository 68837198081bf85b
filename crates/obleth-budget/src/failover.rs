//! Redis trouble must not stop traffic: a circuit breaker in front of the shared store
//! and a local share of every limit behind it.
//!
//! While the shared store answers, every decision is its own. When calls fail (the
//! store times out, refuses connections or errors) `breaker_failures` times in a row,
//! the breaker opens: for `breaker_cooldown` no call goes to the shared store, and this
//! pod decides alone on its [`MemoryBudget`] with `local_share` of each limit (e.g. 1/3
//! with three pods), so that the pods together stay near the limit. After the cooldown
//! one request probes the shared store; if it answers, the breaker closes.
//!
//! Nothing decided alone is lost: use reconciled locally is journalled per tenant and
//! *absorbed* into the shared store (idempotently, per batch) once it answers again,
//! and reconciles of shared reservations that failed are retried then.
//!
//! Per limit, while the shared store is unreachable:
//! - tokens and requests per minute, in flight: **open**, on the local share;
//! - spend budgets: **open** on the local share of what was left at the last answer the
//!   pod saw for that tenant (the whole budget's share if it never saw one), or
//!   **closed** (503) for tenants with `fail_closed`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::{
    Actual, BudgetError, BudgetStore, Decision, Limits, MemoryBudget, Nanos, RateStatus, Reservation, Reserve,
    SystemClock, TenantUsage,
};

const DEGRADED_METRIC: &str = "obleth_budget_degraded_decisions_total";
const BREAKER_METRIC: &str = "obleth_budget_breaker_open";
const PENDING_METRIC: &str = "obleth_budget_pending_reconciles";
const DROPPED_METRIC: &str = "obleth_budget_reconciles_dropped_total";

/// Failover settings.
#[derive(Debug, Clone)]
pub struct FailoverConfig {
    /// Fraction of each limit a pod may use on its own (1 / the number of pods).
    pub local_share: f64,
    /// Consecutive failures that open the breaker.
    pub breaker_failures: u32,
    /// How long the breaker stays open before a probe.
    pub breaker_cooldown: Duration,
    /// TTL of local reservations.
    pub reservation_ttl: Duration,
    /// Shared reconciles kept for retry; beyond this they are dropped (and counted) and
    /// their reservations expire in the shared store.
    pub max_pending: usize,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            local_share: 1.0,
            breaker_failures: 3,
            breaker_cooldown: Duration::from_secs(1),
            reservation_ttl: Duration::from_secs(900),
            max_pending: 100_000,
        }
    }
}

/// A shared store with a local fallback.
pub struct Failover {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<dyn BudgetStore>,
    local: MemoryBudget,
    config: FailoverConfig,
    breaker: Mutex<Breaker>,
    state: Mutex<State>,
    /// Distinguishes this pod's absorb batches from every other pod's.
    pod: String,
    batch: AtomicU64,
    /// A catch-up task is running.
    catching_up: AtomicBool,
}

impl Failover {
    pub fn new(shared: Arc<dyn BudgetStore>, config: FailoverConfig) -> Failover {
        // At 0 from the start, so that alerts and `increase()` see the first change.
        metrics::gauge!(BREAKER_METRIC).set(0.0);
        metrics::counter!(DEGRADED_METRIC).increment(0);
        Failover {
            inner: Arc::new(Inner {
                shared,
                local: MemoryBudget::new(Arc::new(SystemClock), config.reservation_ttl),
                config,
                breaker: Mutex::new(Breaker::Closed { failures: 0 }),
                state: Mutex::new(State::default()),
                pod: obleth_core::new_id("pod_"),
                batch: AtomicU64::new(0),
                catching_up: AtomicBool::new(false),
            }),
        }
    }

    /// Whether decisions are currently made without the shared store.
    pub fn degraded(&self) -> bool {
        matches!(*self.inner.breaker.lock().unwrap_or_else(|p| p.into_inner()), Breaker::Open { .. })
    }

    /// Batches of local use and reconciles waiting for the shared store.
    pub fn pending(&self) -> (usize, usize) {
        let s = self.inner.state();
        (s.journal.len() + s.in_doubt.len(), s.pending.len())
    }

    /// Records a shared call's outcome (`None`: it succeeded) and, after a success, starts
    /// catching up on what waits for the shared store. Every shared call ends here, so
    /// that work left from an outage drains on the next call of any kind (a usage read
    /// included), not only on the next request.
    fn shared_outcome(&self, error: Option<&BudgetError>) {
        let back = self.inner.outcome(error);
        if error.is_none() && (back || self.inner.needs_catch_up()) {
            self.spawn_catch_up();
        }
    }

    /// Catches up with the shared store in the background: after an outage there may be
    /// many reconciles to retry, and no request should wait for them.
    fn spawn_catch_up(&self) {
        if self.inner.catching_up.swap(true, Ordering::SeqCst) {
            return;
        }
        let inner = self.inner.clone();
        let run = async move {
            inner.catch_up().await;
            inner.catching_up.store(false, Ordering::SeqCst);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(run);
            }
            Err(_) => self.inner.catching_up.store(false, Ordering::SeqCst),
        }
    }
}

#[derive(Default)]
struct State {
    /// Requests reserved on the local share (their reconcile goes there).
    local_ids: HashSet<String>,
    /// Use decided locally, not yet absorbed by the shared store: tenant → (limits, use).
    journal: HashMap<String, (Limits, Actual)>,
    /// Batches whose absorb failed: retried with the same id and amounts, so that one
    /// that did land before its call failed is not counted twice.
    in_doubt: VecDeque<Batch>,
    /// Shared reconciles that failed, to retry.
    pending: VecDeque<(Reservation, Actual)>,
    /// Each tenant's spend at the shared store's last answer.
    spent: HashMap<String, (Nanos, Nanos)>,
}

struct Batch {
    id: String,
    tenant: String,
    limits: Limits,
    used: Actual,
}

#[derive(Debug)]
enum Breaker {
    Closed { failures: u32 },
    Open { until: Instant },
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a call may go to the shared store now. An open breaker lets one probe
    /// through per cooldown.
    fn try_shared(&self) -> bool {
        let mut b = self.breaker.lock().unwrap_or_else(|p| p.into_inner());
        match *b {
            Breaker::Closed { .. } => true,
            Breaker::Open { until } if Instant::now() >= until => {
                *b = Breaker::Open { until: Instant::now() + self.config.breaker_cooldown };
                true
            }
            Breaker::Open { .. } => false,
        }
    }

    /// Records a shared call's outcome (`None`: it succeeded); returns true when the store
    /// just came back.
    fn outcome(&self, error: Option<&BudgetError>) -> bool {
        let ok = error.is_none();
        let mut b = self.breaker.lock().unwrap_or_else(|p| p.into_inner());
        match (&mut *b, ok) {
            (Breaker::Closed { failures }, true) => {
                *failures = 0;
                false
            }
            (Breaker::Open { .. }, true) => {
                *b = Breaker::Closed { failures: 0 };
                metrics::gauge!(BREAKER_METRIC).set(0.0);
                tracing::info!("the shared budget store answers again; closing the breaker");
                true
            }
            (Breaker::Closed { failures }, false) => {
                *failures += 1;
                if *failures >= self.config.breaker_failures {
                    *b = Breaker::Open { until: Instant::now() + self.config.breaker_cooldown };
                    metrics::gauge!(BREAKER_METRIC).set(1.0);
                    let error = error.map(ToString::to_string).unwrap_or_default();
                    tracing::warn!(%error, "the shared budget store is failing; deciding on this pod's local share");
                }
                false
            }
            (Breaker::Open { .. }, false) => false,
        }
    }

    async fn reserve_locally(&self, r: &Reserve<'_>) -> Result<Decision, BudgetError> {
        metrics::counter!(DEGRADED_METRIC).increment(1);
        if r.limits.fail_closed && r.limits.has_spend_budget() {
            return Err(BudgetError::Unavailable(
                "the shared budget store is unreachable and this tenant's spend budget fails closed".into(),
            ));
        }
        let mut local = r.limits.share(self.config.local_share);
        let spent = self.state().spent.get(r.tenant).copied();
        if let Some((monthly, lifetime)) = spent {
            // A share of what was left, not of the whole budget.
            let left =
                |budget: Nanos, spent: Nanos| ((budget - spent).max(0) as f64 * self.config.local_share) as Nanos;
            local.monthly_budget = r.limits.monthly_budget.map(|b| left(b, monthly));
            local.lifetime_budget = r.limits.lifetime_budget.map(|b| left(b, lifetime));
        }
        let decision = self.local.reserve(&Reserve { limits: &local, ..*r }).await?;
        if matches!(decision, Decision::Allowed(_)) {
            self.state().local_ids.insert(r.request_id.to_owned());
        }
        Ok(decision)
    }

    /// Sends what was decided alone, and the failed reconciles, to the shared store.
    async fn catch_up(&self) {
        {
            let mut s = self.state();
            let journal = std::mem::take(&mut s.journal);
            for (tenant, (limits, used)) in journal {
                let id = format!("{}-{}", self.pod, self.batch.fetch_add(1, Ordering::Relaxed));
                s.in_doubt.push_back(Batch { id, tenant, limits, used });
            }
        }
        loop {
            let Some(b) = self.state().in_doubt.pop_front() else {
                break;
            };
            if let Err(e) = self.shared.absorb(&b.id, &b.tenant, &b.limits, b.used).await {
                tracing::warn!(error = %e, "absorbing local budget use failed; will retry");
                self.state().in_doubt.push_front(b);
                self.outcome(Some(&e));
                return;
            }
        }
        loop {
            let Some((reservation, actual)) = self.state().pending.pop_front() else {
                break;
            };
            if let Err(e) = self.shared.reconcile(&reservation, actual).await {
                tracing::warn!(error = %e, "retrying a budget reconcile failed; will retry");
                self.state().pending.push_front((reservation, actual));
                self.outcome(Some(&e));
                break;
            }
        }
        metrics::gauge!(PENDING_METRIC).set(self.state().pending.len() as f64);
    }

    fn queue_reconcile(&self, reservation: Reservation, actual: Actual) {
        let mut s = self.state();
        if s.pending.len() < self.config.max_pending {
            s.pending.push_back((reservation, actual));
        } else {
            metrics::counter!(DROPPED_METRIC).increment(1);
        }
        metrics::gauge!(PENDING_METRIC).set(s.pending.len() as f64);
    }

    fn journal(&self, tenant: &str, limits: &Limits, used: Actual) {
        let mut s = self.state();
        let entry = s.journal.entry(tenant.to_owned()).or_insert_with(|| (limits.clone(), Actual::default()));
        entry.0 = limits.clone();
        entry.1.tokens += used.tokens;
        entry.1.cost += used.cost;
    }

    fn remember(&self, tenant: &str, status: &RateStatus) {
        let mut s = self.state();
        match s.spent.get_mut(tenant) {
            Some(v) => *v = (status.monthly_spent, status.lifetime_spent),
            None => {
                s.spent.insert(tenant.to_owned(), (status.monthly_spent, status.lifetime_spent));
            }
        }
    }

    fn needs_catch_up(&self) -> bool {
        let s = self.state();
        !s.journal.is_empty() || !s.in_doubt.is_empty() || !s.pending.is_empty()
    }
}

#[async_trait]
impl BudgetStore for Failover {
    async fn reserve(&self, r: &Reserve<'_>) -> Result<Decision, BudgetError> {
        if !self.inner.try_shared() {
            return self.inner.reserve_locally(r).await;
        }
        match self.inner.shared.reserve(r).await {
            Ok(decision) => {
                let status = match &decision {
                    Decision::Allowed(s) => s,
                    Decision::Denied(d) => &d.status,
                };
                self.inner.remember(r.tenant, status);
                self.shared_outcome(None);
                Ok(decision)
            }
            Err(e) => {
                tracing::debug!(error = %e, "shared budget store failed a reserve");
                self.shared_outcome(Some(&e));
                // The reserve may have run before the call failed: release it (a reconcile
                // of a reservation that does not exist changes nothing).
                let orphan = Reservation {
                    tenant: r.tenant.to_owned(),
                    request_id: r.request_id.to_owned(),
                    limits: r.limits.clone(),
                    tokens: r.tokens,
                    cost: r.cost,
                };
                self.inner.queue_reconcile(orphan, Actual::default());
                self.inner.reserve_locally(r).await
            }
        }
    }

    async fn reconcile(&self, reservation: &Reservation, actual: Actual) -> Result<(), BudgetError> {
        let local = self.inner.state().local_ids.remove(&reservation.request_id);
        if local {
            let mut shared_limits = reservation.clone();
            shared_limits.limits = reservation.limits.share(self.inner.config.local_share);
            self.inner.local.reconcile(&shared_limits, actual).await?;
            self.inner.journal(&reservation.tenant, &reservation.limits, actual);
            return Ok(());
        }
        let result = if self.inner.try_shared() {
            let r = self.inner.shared.reconcile(reservation, actual).await;
            self.shared_outcome(r.as_ref().err());
            r
        } else {
            Err(BudgetError::Unavailable("breaker open".into()))
        };
        if result.is_err() {
            self.inner.queue_reconcile(reservation.clone(), actual);
        }
        // Kept for retry: not an error to the caller.
        Ok(())
    }

    async fn absorb(&self, batch_id: &str, tenant: &str, limits: &Limits, used: Actual) -> Result<(), BudgetError> {
        self.inner.shared.absorb(batch_id, tenant, limits, used).await
    }

    async fn usage(&self, tenant: &str, limits: &Limits) -> Result<TenantUsage, BudgetError> {
        if self.inner.try_shared() {
            let r = self.inner.shared.usage(tenant, limits).await;
            self.shared_outcome(r.as_ref().err());
            if r.is_ok() {
                return r;
            }
        }
        // The pod's own view while the shared store is unreachable.
        self.inner.local.usage(tenant, &limits.share(self.inner.config.local_share)).await
    }

    fn kind(&self) -> &'static str {
        self.inner.shared.kind()
    }

    fn degraded(&self) -> bool {
        Failover::degraded(self)
    }
}
