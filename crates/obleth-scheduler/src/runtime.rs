//! The async face of the scheduler: implements the gateway's [`Admission`] seam.
//!
//! One `std::sync::Mutex` guards the core; it is held only for a core call (a few
//! microseconds) and never across an await. A request that must wait parks on a oneshot
//! receiver; whoever frees a slot (a [`Permit`] being dropped) runs the core's dispatch
//! and hands the next permits out through those channels.
//!
//! No slot can leak:
//! - a permit releases its slot when dropped, wherever it is, including inside a
//!   channel whose receiver was dropped;
//! - a waiter that gives up (client gone, queue timeout) cancels its ticket; if it was
//!   granted at that very moment, the permit is already in its channel and is released
//!   with it;
//! - a permit that cannot be delivered (waiter gone) is released on the spot.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use obleth_core::{
    Admission, AdmissionClass, AdmissionRequest, Admitted, ChangeEvent, ChangeNotifier, Rejection, SchedulerSnapshot,
    ServedWork, SlotPermit, SlotPool, Tenant,
};
use tokio::sync::oneshot;

use crate::core::{Class, Config, Grant, GroupLimits, Request, Scheduler, Submitted, TenantSpec, Ticket, Tokens};

/// Settings of the fairshare admission.
#[derive(Debug, Clone)]
pub struct FairshareConfig {
    pub core: Config,
    /// A request that waited this long is refused with 503 and `Retry-After`.
    pub queue_timeout: Duration,
}

/// Fairshare admission for the gateway.
#[derive(Clone)]
pub struct Fairshare {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    epoch: Instant,
    queue_timeout: Duration,
}

struct State {
    core: Scheduler,
    waiters: HashMap<Ticket, oneshot::Sender<Permit>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the core half-updated in a way
        // that matters more than stopping admission altogether would.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }
}

impl Fairshare {
    pub fn new(config: FairshareConfig) -> Fairshare {
        Fairshare {
            shared: Arc::new(Shared {
                state: Mutex::new(State { core: Scheduler::new(config.core), waiters: HashMap::new() }),
                epoch: Instant::now(),
                queue_timeout: config.queue_timeout,
            }),
        }
    }

    /// The scheduler's state.
    pub fn state(&self) -> crate::core::Snapshot {
        let now = self.shared.now();
        self.shared.lock().core.snapshot(now)
    }

    /// Resizes the slot pool (live); waiting requests are admitted into new room at once.
    pub fn set_slots(&self, slots: u32) {
        let mut state = self.shared.lock();
        let now = self.shared.now();
        let grants = state.core.set_slots(now, slots);
        deliver(&self.shared, &mut state, now, grants);
    }

    /// Slots in use now.
    pub fn in_flight(&self) -> u32 {
        self.shared.lock().core.used()
    }

    /// Work completed here since the last call, per tenant (see
    /// [`Scheduler::take_served`](crate::core::Scheduler::take_served)).
    pub fn take_served(&self) -> Vec<(Arc<str>, f64)> {
        self.shared.lock().core.take_served()
    }

    /// Tenants with requests queued or in flight here.
    pub fn active_tenants(&self) -> Vec<Arc<str>> {
        self.shared.lock().core.active_tenants()
    }

    /// Charges work the cluster's other pods served (see
    /// [`Scheduler::charge_remote`](crate::core::Scheduler::charge_remote)).
    pub fn charge_remote(&self, charges: &[(Arc<str>, f64)]) {
        let mut state = self.shared.lock();
        for (tenant, cost) in charges {
            state.core.charge_remote(tenant, *cost);
        }
    }

    /// Sets a group's weight (live).
    pub fn set_group_weight(&self, group: &str, weight: u32) {
        self.shared.lock().core.set_group_weight(group, weight);
    }

    /// Sets a group's reserved and max slots (live), for the pool this scheduler was
    /// created with (`admission.max_in_flight`; scaled to this pod's share in a cluster).
    pub fn set_group_limits(&self, group: &str, limits: GroupLimits) {
        let mut state = self.shared.lock();
        let now = self.shared.now();
        let grants = state.core.set_group_limits(now, group, limits);
        deliver(&self.shared, &mut state, now, grants);
    }

    fn permit(&self, grant: Grant) -> Permit {
        Permit { shared: self.shared.clone(), grant, actual: None, armed: true }
    }
}

// === the cluster's seams ===

impl SlotPool for Fairshare {
    fn set_slots(&self, slots: u32) {
        Fairshare::set_slots(self, slots);
    }

    fn in_flight(&self) -> u32 {
        Fairshare::in_flight(self)
    }
}

impl ServedWork for Fairshare {
    fn take_served(&self) -> Vec<(Arc<str>, f64)> {
        Fairshare::take_served(self)
    }

    fn active_tenants(&self) -> Vec<Arc<str>> {
        Fairshare::active_tenants(self)
    }

    fn charge_remote(&self, charges: &[(Arc<str>, f64)]) {
        Fairshare::charge_remote(self, charges);
    }
}

/// Hands grants to their waiters; releases those nobody waits for any more.
fn deliver(shared: &Arc<Shared>, state: &mut State, now: Duration, mut grants: Vec<Grant>) {
    while let Some(grant) = grants.pop() {
        let permit = Permit { shared: shared.clone(), grant, actual: None, armed: true };
        let undelivered = match state.waiters.remove(&grant.ticket) {
            Some(tx) => tx.send(permit).err(),
            None => Some(permit),
        };
        if let Some(mut permit) = undelivered {
            // Released here, under the lock we hold, not by its Drop (which would lock).
            permit.armed = false;
            grants.extend(state.core.complete(now, grant.ticket, None));
        }
    }
}

fn class(c: Class) -> AdmissionClass {
    match c {
        Class::Fast => AdmissionClass::Fast,
        Class::Queued => AdmissionClass::Queued,
        Class::Brownout => AdmissionClass::Brownout,
    }
}

fn admitted(permit: Permit) -> Admitted {
    Admitted {
        class: class(permit.grant.class),
        waited: permit.grant.waited,
        max_tokens_cap: permit.grant.max_tokens_cap,
        permit: Box::new(permit),
    }
}

/// The one mapping of a store tenant to what the scheduler knows of it, for requests and
/// change notifications alike. Borrows: a request for a tenant the core already holds
/// copies no string.
impl<'a> From<&'a Tenant> for TenantSpec<'a> {
    fn from(t: &'a Tenant) -> TenantSpec<'a> {
        TenantSpec {
            name: Cow::Borrowed(&t.name),
            // An empty id is an unknown one (a tenant that never came from the store).
            id: (!t.id.is_empty()).then_some(Cow::Borrowed(&t.id)),
            weight: t.weight,
            group: Cow::Borrowed(&t.group),
            max_in_flight: t.quota.max_in_flight,
            never_degrade: t.never_degrade,
        }
    }
}

fn to_request(r: &AdmissionRequest) -> Request<'_> {
    Request {
        tenant: TenantSpec::from(&*r.tenant),
        model: Cow::Borrowed(&r.model.model_name),
        model_weight: r.model.admission_weight,
        model_slots: r.model.max_in_flight,
        estimate: Tokens { input: r.estimate.input, output: r.estimate.output },
    }
}

#[async_trait]
impl Admission for Fairshare {
    async fn admit(&self, request: AdmissionRequest) -> Result<Admitted, Rejection> {
        let (ticket, mut rx) = {
            let mut state = self.shared.lock();
            let now = self.shared.now();
            let (submitted, others) = state.core.submit(now, to_request(&request));
            deliver(&self.shared, &mut state, now, others);
            match submitted {
                Submitted::Admitted(grant) => return Ok(admitted(self.permit(grant))),
                Submitted::Refused(_) => {
                    return Err(Rejection::QueueFull { retry_after: Duration::from_secs(1) });
                }
                Submitted::Queued(ticket) => {
                    let (tx, rx) = oneshot::channel();
                    state.waiters.insert(ticket, tx);
                    (ticket, rx)
                }
            }
        };
        let mut guard = CancelOnDrop { shared: self.shared.clone(), ticket, armed: true };
        let outcome = tokio::time::timeout(self.shared.queue_timeout, &mut rx).await;
        guard.armed = false;
        match outcome {
            Ok(Ok(permit)) => Ok(admitted(permit)),
            Ok(Err(_)) => Err(Rejection::ShuttingDown),
            Err(_elapsed) => {
                let cancelled = cancel(&self.shared, ticket);
                if cancelled {
                    Err(Rejection::QueueTimeout { retry_after: Duration::from_secs(1) })
                } else {
                    // Granted in the instant the timer fired: the permit is in the channel.
                    rx.try_recv()
                        .map(admitted)
                        .map_err(|_| Rejection::QueueTimeout { retry_after: Duration::from_secs(1) })
                }
            }
        }
    }

    fn snapshot(&self) -> Option<SchedulerSnapshot> {
        Some(self.state())
    }
}

/// Cancels a waiting ticket; returns whether it was still waiting.
fn cancel(shared: &Arc<Shared>, ticket: Ticket) -> bool {
    let mut state = shared.lock();
    let now = shared.now();
    let (cancelled, grants) = state.core.cancel(now, ticket);
    if cancelled {
        state.waiters.remove(&ticket);
    }
    deliver(shared, &mut state, now, grants);
    cancelled
}

/// Gives up a place in line when the waiting future is dropped (client gone).
struct CancelOnDrop {
    shared: Arc<Shared>,
    ticket: Ticket,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            cancel(&self.shared, self.ticket);
        }
    }
}

/// A held slot.
pub struct Permit {
    shared: Arc<Shared>,
    grant: Grant,
    actual: Option<Tokens>,
    armed: bool,
}

impl SlotPermit for Permit {
    fn settle(&mut self, input_tokens: u64, output_tokens: u64) {
        self.actual = Some(Tokens { input: input_tokens, output: output_tokens });
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut state = self.shared.lock();
        let now = self.shared.now();
        let grants = state.core.complete(now, self.grant.ticket, self.actual);
        deliver(&self.shared, &mut state, now, grants);
    }
}

/// Live changes: a tenant's weight, group, caps or name, and a group's weight and slot
/// limits, apply to the next pick without waiting for the tenant's next request; a
/// deleted group returns to the default weight and loses its limits. Deleted tenants and
/// changed models leave the scheduler (once their requests are done; see the core's
/// module doc), so they leave its snapshot and metrics too.
impl ChangeNotifier for Fairshare {
    fn notify(&self, event: ChangeEvent) {
        match event {
            ChangeEvent::Tenant { tenant: Some(t), .. } => {
                let mut state = self.shared.lock();
                let now = self.shared.now();
                let grants = state.core.update_tenant(now, &TenantSpec::from(&*t));
                deliver(&self.shared, &mut state, now, grants);
            }
            ChangeEvent::Tenant { id, tenant: None } => self.shared.lock().core.remove_tenant(&id),
            ChangeEvent::Group { name, weight: Some(weight), reserved_slots, max_slots } => {
                self.set_group_weight(&name, weight);
                self.set_group_limits(&name, GroupLimits { reserved_slots, max_slots });
            }
            ChangeEvent::Group { name, weight: None, .. } => {
                let mut state = self.shared.lock();
                let now = self.shared.now();
                let grants = state.core.reset_group(now, &name);
                deliver(&self.shared, &mut state, now, grants);
            }
            ChangeEvent::Model { name } => self.shared.lock().core.forget_model(&name),
            // Deletions may have been missed: idle tenants are forgotten (and rebuilt
            // from their next request).
            ChangeEvent::Resync => self.shared.lock().core.forget_idle_tenants(),
            ChangeEvent::Key { .. }
            | ChangeEvent::McpServer { .. }
            | ChangeEvent::McpGrants
            | ChangeEvent::McpPin { .. } => {}
        }
    }
}

#[cfg(test)]
#[path = "runtime_tests.rs"]
mod tests;
