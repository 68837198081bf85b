//! What the data plane holds: [`Budget`] in front of a store, and the [`Held`] guard that
//! reconciles a reservation whatever way the request ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::task::TaskTracker;

use crate::{
    Actual, BudgetError, BudgetStore, Decision, Denial, Limits, Nanos, RateStatus, Reservation, Reserve, TenantUsage,
};

pub(crate) const EXPIRED_METRIC: &str = "obleth_budget_reservations_expired_total";
const DECISIONS_METRIC: &str = "obleth_budget_decisions_total";
const RECONCILE_ERRORS_METRIC: &str = "obleth_budget_reconcile_errors_total";
const LIMIT_METRIC: &str = "obleth_budget_limit";
const REMAINING_METRIC: &str = "obleth_budget_remaining";
const MONTHLY_METRIC: &str = "obleth_budget_monthly_spend";
const LIFETIME_METRIC: &str = "obleth_budget_lifetime_spend";

/// Why a request was not granted its budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A limit refused it.
    Denied(Denial),
    /// The store could not decide (and the tenant fails closed, or no fallback exists).
    Unavailable(String),
}

/// The budget layer of the gateway.
pub struct Budget {
    store: Arc<dyn BudgetStore>,
    /// Reconciles spawned by dropped guards; drained at shutdown.
    tasks: TaskTracker,
    /// Each tenant's name and standing after its last decision, by tenant id, for the
    /// metrics endpoint (forgotten when the tenant is deleted).
    last: Mutex<HashMap<String, (String, RateStatus)>>,
}

impl Budget {
    pub fn new(store: Arc<dyn BudgetStore>) -> Budget {
        Budget { store, tasks: TaskTracker::new(), last: Mutex::new(HashMap::new()) }
    }

    /// `memory` or `redis`.
    pub fn kind(&self) -> &'static str {
        self.store.kind()
    }

    /// Whether decisions are being made on a local share (Redis unreachable).
    pub fn degraded(&self) -> bool {
        self.store.degraded()
    }

    /// Reserves `tokens` and `cost` against `limits` for one request of `tenant` (its
    /// id, the counters' key; `name` labels its metrics, as the scheduler's). A tenant
    /// without limits costs nothing here: no store is asked.
    pub async fn reserve(
        &self,
        tenant: &str,
        name: &str,
        request_id: &str,
        limits: &Limits,
        tokens: u64,
        cost: Nanos,
    ) -> Result<Held, Refusal> {
        if limits.is_unlimited() {
            return Ok(Held::none());
        }
        let request = Reserve { tenant, request_id, limits, tokens, cost };
        match self.store.reserve(&request).await {
            Ok(Decision::Allowed(status)) => {
                metrics::counter!(DECISIONS_METRIC, "decision" => "allowed", "limit" => "none").increment(1);
                self.remember(tenant, name, status);
                Ok(Held {
                    inner: Some(Inner {
                        reservation: Reservation {
                            tenant: tenant.to_owned(),
                            request_id: request_id.to_owned(),
                            limits: limits.clone(),
                            tokens,
                            cost,
                        },
                        store: self.store.clone(),
                        tasks: self.tasks.clone(),
                    }),
                    status,
                    actual: Actual::default(),
                })
            }
            Ok(Decision::Denied(denial)) => {
                metrics::counter!(DECISIONS_METRIC, "decision" => "denied", "limit" => denial.limit.as_str())
                    .increment(1);
                self.remember(tenant, name, denial.status);
                Err(Refusal::Denied(denial))
            }
            Err(e) => {
                metrics::counter!(DECISIONS_METRIC, "decision" => "unavailable", "limit" => "none").increment(1);
                Err(Refusal::Unavailable(e.to_string()))
            }
        }
    }

    /// The tenant's current use of its limits.
    pub async fn usage(&self, tenant: &str, limits: &Limits) -> Result<TenantUsage, BudgetError> {
        self.store.usage(tenant, limits).await
    }

    /// Waits (up to `timeout`) for the reconciles of requests that already ended. Call it
    /// on each runtime that served requests before the runtime stops.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.tasks.close();
        let drained = tokio::time::timeout(timeout, self.tasks.wait()).await.is_ok();
        self.tasks.reopen();
        drained
    }

    /// Appends each tenant's last-seen windows and spend to `out` in the Prometheus text
    /// format (called at scrape time): the `limit` tenants with the highest monthly spend
    /// get series of their own, the others are summed as `tenant="other"`.
    pub fn render(&self, limit: usize, out: &mut String) {
        use obleth_core::prom::{OTHER, family, sample, split};
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let entries: Vec<(&str, &RateStatus)> = last.values().map(|(name, status)| (name.as_str(), status)).collect();
        let tenants = split(&entries, limit, |e| e.0, |e| (e.1.monthly_spent.max(0) as u64, 0.0));
        type Window = fn(&RateStatus) -> Option<crate::Window>;
        let windows: [(&str, Window); 2] = [("tokens", |s| s.tokens), ("requests", |s| s.requests)];
        for (name, help, value) in [
            (LIMIT_METRIC, "A tenant's limit per minute, by window", (|w: crate::Window| w.limit) as fn(_) -> u64),
            (REMAINING_METRIC, "What a tenant has left of its limit this minute, by window", |w| w.remaining),
        ] {
            family(out, name, help);
            for (window, of) in windows {
                for (tenant, status) in &tenants.own {
                    if let Some(w) = of(status) {
                        sample(out, name, &[("tenant", tenant), ("window", window)], value(w) as f64);
                    }
                }
                let rest = tenants.sum(|(_, s)| of(s).map_or(0.0, |w| value(w) as f64));
                sample(out, name, &[("tenant", OTHER), ("window", window)], rest);
            }
        }
        for (name, help, spent) in [
            (MONTHLY_METRIC, "A tenant's spend this month", (|s: &RateStatus| s.monthly_spent) as fn(_) -> Nanos),
            (LIFETIME_METRIC, "A tenant's spend over its life", |s| s.lifetime_spent),
        ] {
            family(out, name, help);
            for (tenant, status) in &tenants.own {
                sample(out, name, &[("tenant", tenant)], crate::from_nanos(spent(status)));
            }
            sample(out, name, &[("tenant", OTHER)], tenants.sum(|(_, s)| crate::from_nanos(spent(s))));
        }
    }

    fn remember(&self, id: &str, name: &str, status: RateStatus) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match last.get_mut(id) {
            Some(entry) => {
                if entry.0 != name {
                    entry.0 = name.to_owned();
                }
                entry.1 = status;
            }
            None => {
                last.insert(id.to_owned(), (name.to_owned(), status));
            }
        }
    }
}

/// A deleted tenant leaves the metrics; a renamed one is shown under its new name.
impl obleth_core::ChangeNotifier for Budget {
    fn notify(&self, event: obleth_core::ChangeEvent) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let (id, tenant) = match event {
            obleth_core::ChangeEvent::Tenant { id, tenant } => (id, tenant),
            // Deletions may have been missed: the next decisions fill the map again.
            obleth_core::ChangeEvent::Resync => {
                last.clear();
                return;
            }
            _ => return,
        };
        match tenant {
            None => {
                last.remove(&id);
            }
            Some(t) => {
                if let Some(entry) = last.get_mut(&id) {
                    entry.0 = t.name.clone();
                }
            }
        }
    }
}

/// The read side the admin API holds (usage per tenant, readiness).
#[async_trait::async_trait]
impl obleth_core::budget::BudgetView for Budget {
    fn kind(&self) -> &'static str {
        Budget::kind(self)
    }

    fn degraded(&self) -> bool {
        Budget::degraded(self)
    }

    async fn usage(
        &self,
        tenant_id: &str,
        quota: &obleth_core::Quota,
    ) -> Result<TenantUsage, obleth_core::budget::BudgetUnavailable> {
        Budget::usage(self, tenant_id, &Limits::from_quota(quota))
            .await
            .map_err(|e| obleth_core::budget::BudgetUnavailable(e.to_string()))
    }
}

/// A granted reservation. [`Held::settle`] reports what the request used so far; when the
/// guard is dropped (response finished, failed, or the client left) the last figures
/// settled are reconciled in the background.
pub struct Held {
    inner: Option<Inner>,
    /// The tenant's rate-limit windows when the reservation was made.
    pub status: RateStatus,
    actual: Actual,
}

struct Inner {
    reservation: Reservation,
    store: Arc<dyn BudgetStore>,
    tasks: TaskTracker,
}

impl Held {
    /// A guard holding nothing (no limits apply).
    pub fn none() -> Held {
        Held { inner: None, status: RateStatus::default(), actual: Actual::default() }
    }

    /// Reports the request's use so far; the last call before the drop counts.
    pub fn settle(&mut self, tokens: u64, cost: Nanos) {
        self.actual = Actual { tokens, cost };
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(Inner { reservation, store, tasks }) = self.inner.take() else {
            return;
        };
        let actual = self.actual;
        let reconcile = async move {
            if let Err(e) = store.reconcile(&reservation, actual).await {
                // The reservation expires after its TTL; the store counts that.
                metrics::counter!(RECONCILE_ERRORS_METRIC).increment(1);
                tracing::warn!(request_id = %reservation.request_id, error = %e, "budget reconcile failed");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(tasks.track_future(reconcile));
            }
            Err(_) => {
                metrics::counter!(RECONCILE_ERRORS_METRIC).increment(1);
                tracing::error!("a budget reservation was dropped outside a runtime; it will expire");
            }
        }
    }
}
