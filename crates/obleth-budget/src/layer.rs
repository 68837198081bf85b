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
    /// Each tenant's standing after its last decision, by name, for the metrics endpoint.
    last: Mutex<HashMap<String, RateStatus>>,
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
                metrics::counter!(DECISIONS_METRIC, "decision" => "allowed", "limit" => "").increment(1);
                self.remember(name, status);
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
                self.remember(name, denial.status);
                Err(Refusal::Denied(denial))
            }
            Err(e) => {
                metrics::counter!(DECISIONS_METRIC, "decision" => "unavailable", "limit" => "").increment(1);
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

    /// Publishes each tenant's last-seen windows as gauges (called at scrape time).
    pub fn publish(&self) {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        for (tenant, status) in last.iter() {
            for (window, w) in [("tokens", status.tokens), ("requests", status.requests)] {
                if let Some(w) = w {
                    let labels = [("tenant", tenant.clone()), ("window", window.to_owned())];
                    metrics::gauge!("obleth_budget_limit", &labels).set(w.limit as f64);
                    metrics::gauge!("obleth_budget_remaining", &labels).set(w.remaining as f64);
                }
            }
            let labels = [("tenant", tenant.clone())];
            metrics::gauge!("obleth_budget_monthly_spend", &labels).set(crate::from_nanos(status.monthly_spent));
            metrics::gauge!("obleth_budget_lifetime_spend", &labels).set(crate::from_nanos(status.lifetime_spent));
        }
    }

    fn remember(&self, tenant: &str, status: RateStatus) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match last.get_mut(tenant) {
            Some(s) => *s = status,
            None => {
                last.insert(tenant.to_owned(), status);
            }
        }
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
