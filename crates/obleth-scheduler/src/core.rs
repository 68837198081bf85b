//! The scheduler core: who gets the next slot. Pure: no I/O, no clock, no locks.
//!
//! # Model
//! A pool of `slots` bounds the requests in flight. A request that finds a free slot and
//! is eligible is admitted at once (`fast`); otherwise it waits in its tenant's FIFO
//! queue, and whenever a slot frees the core picks the next request (`queued`, or
//! `brownout` if it waited past the threshold).
//!
//! # Fairness: virtual token counters
//! Every tenant has a counter of the work it was served, divided by its weight (the
//! Virtual Token Counter of Sheng et al., OSDI 2024). Work is measured in tokens:
//!
//! ```text
//! cost = (input_tokens + output_weight × output_tokens) × model.admission_weight
//! tenant.counter += cost / tenant.weight
//! ```
//!
//! At admission an *estimated* cost is charged: the prompt, plus the output the tenant's
//! recent requests actually produced (an exponential average, never more than the
//! request's `max_tokens`). A tenant without history is predicted by the whole pool's
//! average, and before anything has completed at all by `cold_start_output`. At
//! completion the estimate is replaced by the actual usage. The next slot goes to the
//! eligible tenant with the lowest counter (its `share_score`). Charging a prediction
//! rather than `max_tokens` keeps the counters close to the truth while requests are in
//! flight, which is what the ordering decisions see.
//!
//! No banking: a tenant that becomes active again (nothing queued or in flight before)
//! is lifted to the lowest counter among the active tenants of its group (as VTC does),
//! so idling earns no credit to later take the pool with.
//!
//! # Hierarchical mode
//! Tenants belong to groups, and groups have weights. When a slot frees, an active group
//! that holds no slot at all goes first (every active group keeps at least one slot, so
//! a group with a tiny weight queues but never vanishes); otherwise the groups compete on
//! a group-level counter (the same formula with group weights), and inside the chosen
//! group its tenants compete on their counters. Shares between groups are therefore
//! token shares, like shares between tenants. The *cap* shown per group is its weighted
//! split of the slots (at least one each: 8 slots at 500:50 → 7 and 1); with requests of
//! similar size it is also the slot split the counters converge to. Capacity a group does
//! not use goes to the others (work conservation).
//!
//! # Group limits: reserved and max slots
//! A group may have `max_slots`, a hard cap on its requests in flight: a group at its cap
//! is not eligible even when slots are free (its requests keep waiting, under the usual
//! queue timeout and brownout). And it may have `reserved_slots`: while it has requests
//! waiting and holds fewer than that, a freed slot goes to it before the counters are
//! consulted. A slot is therefore picked in this order:
//!
//! 1. a backlogged group holding no slot at all (every active group keeps one, even
//!    against reservations, so no group starves);
//! 2. a backlogged group below its reservation; if several are, the one with the lowest
//!    `in_flight / reserved_slots` (the furthest behind in proportion), ties by counter;
//! 3. the group with the lowest counter.
//!
//! Groups at their `max_slots` take part in none of these. A reservation is a floor
//! under the weighted share, not an addition to it: reserved service is charged to the
//! group's counter like any other, so a group gets the larger of its reservation and its
//! weighted share. Reservations are never held idle: a group with nothing waiting
//! claims nothing, and its reserved slots serve the others (work conservation).
//! Reservations may add up to more than the pool: the pool is never exceeded, and
//! oversubscribed reservations are filled in proportion to their sizes (rule 2), after
//! every backlogged group holds one slot (rule 1).
//!
//! The limits are set for the pool the scheduler was created with (`Config::slots`, in
//! a cluster the cluster-wide cap). When the pool is resized to a pod's share
//! ([`Scheduler::set_slots`]), each limit is scaled by the same proportion and rounded
//! (a `max_slots` stays at least 1), so that the pods together hold about the
//! configured figure. A change of limits levels the group's counter with the
//! least-served active group, so that service it was held back from (or given) by the
//! old limits earns it no burst (or debt) afterwards. Limits apply in hierarchical mode;
//! in weighted mode there are no groups.
//!
//! # Eligibility
//! A tenant is eligible when its queue is non-empty and it is below its own in-flight
//! cap; its head request additionally needs room under its model's slot cap.
//!
//! Invariant (checked by property tests): after every operation, either all slots are
//! used or no eligible request waits.
//!
//! # Forgetting
//! The core holds only what is in use, so that its size follows the live control plane
//! and not its history. A deleted tenant ([`Scheduler::remove_tenant`], by id) leaves
//! at once if it has nothing queued or in flight; otherwise it is marked, its queued
//! requests are still served in their turn and its running ones finish normally, and it
//! leaves when the last one is done. A group leaves when it has no tenants and nothing
//! queued or in flight (its configured weight and limits are kept by name, so a group
//! that comes back gets them again). A model's state (its cap and in-flight count) is
//! dropped when a change to it is announced ([`Scheduler::forget_model`]) and it has no
//! request queued or in flight, or when its last one ends; the next request rebuilds it.
//! Tenants, groups and models live in slabs: an entry's index never changes while it
//! lives, so the indexes held by queues, sets and in-flight records need no fix-up, and
//! an entry leaves only when nothing refers to it. A tenant that comes back after it
//! left starts afresh: its counter is lifted to its group's floor as for any returning
//! tenant (no banking), so forgetting it costs no fairness. A tenant created under the
//! name of a deleted one that still has work shares that entry (names are the key)
//! until all of it is done; the entry then leaves, and the next request starts afresh.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use slab::Slab;

// The snapshot's types are the seam's (`obleth-core`), under the names the core has
// always used for them.
pub use obleth_core::scheduler::{
    AdmissionCounts as Counts, GroupView, Mode, ModelView, NextPick, SchedulerSnapshot as Snapshot, TenantView,
};

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    /// Global cap on requests in flight.
    pub slots: u32,
    /// Weight of an output token relative to an input token in the cost.
    pub output_weight: f64,
    /// Requests that waited longer are admitted degraded (`None`: never).
    pub brownout_after: Option<Duration>,
    /// `max_tokens` cap applied to degraded requests.
    pub brownout_max_tokens: u32,
    /// Weight of the newest completion in the output predictions (0 disables prediction:
    /// reservations use `max_tokens`).
    pub prediction_alpha: f64,
    /// Output predicted before any request has completed (capped by `max_tokens`).
    pub cold_start_output: u64,
    /// Most requests one tenant may have waiting.
    pub max_queue_per_tenant: usize,
    /// Most requests waiting in total.
    pub max_queue: usize,
    /// Half-life of the decayed service used for the "actual share" figures.
    pub share_half_life: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: Mode::Hierarchical,
            slots: 64,
            output_weight: 2.0,
            brownout_after: Some(Duration::from_secs(10)),
            brownout_max_tokens: 256,
            prediction_alpha: 0.2,
            cold_start_output: 256,
            max_queue_per_tenant: 1_000,
            max_queue: 10_000,
            share_half_life: Duration::from_secs(30),
        }
    }
}

/// Token counts of a request (estimated or actual).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
}

/// Who is asking, as the scheduler sees it. Sent with every request, so that weight or
/// group changes apply from the next request on even without a change notification.
///
/// Its strings are borrowed where the caller can lend them (the gateway lends its cached
/// tenant's): the core copies a name only when it meets it for the first time or it
/// changed, so a request for a tenant already held allocates nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantSpec<'a> {
    pub name: Cow<'a, str>,
    /// The tenant's id in the store, if known: deletions name tenants by id, and a
    /// tenant that shows up under a new name (renamed) is the same tenant.
    pub id: Option<Cow<'a, str>>,
    pub weight: u32,
    pub group: Cow<'a, str>,
    pub max_in_flight: Option<u32>,
    pub never_degrade: bool,
}

impl TenantSpec<'_> {
    /// The same spec, lending its strings (for a caller that keeps specs of its own and
    /// submits many requests with each).
    pub fn borrowed(&self) -> TenantSpec<'_> {
        TenantSpec {
            name: Cow::Borrowed(&self.name),
            id: self.id.as_deref().map(Cow::Borrowed),
            weight: self.weight,
            group: Cow::Borrowed(&self.group),
            max_in_flight: self.max_in_flight,
            never_degrade: self.never_degrade,
        }
    }
}

/// What is asked for.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub tenant: TenantSpec<'a>,
    pub model: Cow<'a, str>,
    pub model_weight: f64,
    /// The model's own slot cap, if it has one.
    pub model_slots: Option<u32>,
    pub estimate: Tokens,
}

/// Slot limits of a fairshare group, for the pool the scheduler was created with (see the
/// module doc on how they scale when the pool is resized).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupLimits {
    /// Slots guaranteed while the group has requests waiting.
    pub reserved_slots: Option<u32>,
    /// Most requests the group may have in flight.
    pub max_slots: Option<u32>,
}

/// Identifies a request from submission to completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// How a request got its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Fast,
    Queued,
    Brownout,
}

/// A granted slot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grant {
    pub ticket: Ticket,
    pub class: Class,
    pub waited: Duration,
    pub max_tokens_cap: Option<u32>,
}

/// Why a request was refused at submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TenantQueueFull,
    QueueFull,
}

/// The outcome of [`Scheduler::submit`].
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    Admitted(Grant),
    Queued(Ticket),
    Refused(Refusal),
}

// === internals ===

/// An `f64` as a totally ordered key (for the ordered indexes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key(u64);

impl Key {
    fn of(x: f64) -> Key {
        let bits = x.to_bits();
        Key(if bits >> 63 == 1 { !bits } else { bits | (1 << 63) })
    }
}

#[derive(Debug)]
struct Waiting {
    ticket: Ticket,
    enqueued_at: Duration,
    estimate: Tokens,
    model: usize,
    model_weight: f64,
}

#[derive(Debug)]
struct Tenant {
    name: Arc<str>,
    id: Option<Arc<str>>,
    /// Deleted from the store: leaves once nothing is queued or in flight.
    deleted: bool,
    /// The group name as configured (in weighted mode all tenants share group 0).
    group_name: Arc<str>,
    weight: f64,
    group: usize,
    max_in_flight: Option<u32>,
    never_degrade: bool,
    counter: f64,
    queue: VecDeque<Waiting>,
    in_flight: u32,
    ready_key: Option<Key>,
    active_key: Option<Key>,
    served: f64,
    /// Work completed here and not yet handed to [`Scheduler::take_served`].
    unsynced: f64,
    recent: f64,
    recent_at: Duration,
    /// Exponential average of the output tokens of this tenant's completed requests.
    output_prediction: Option<f64>,
}

#[derive(Debug)]
struct Group {
    name: Arc<str>,
    weight: f64,
    /// Tenants whose group this is (a group leaves when it has none and is idle).
    members: usize,
    /// As configured.
    limits: GroupLimits,
    /// The reservation in this pool (scaled; 0: none).
    reserved: u32,
    /// The in-flight cap in this pool (scaled).
    max: Option<u32>,
    counter: f64,
    in_flight: u32,
    queued: usize,
    cap: u32,
    /// Eligible tenants by counter.
    ready: BTreeSet<(Key, usize)>,
    /// Active tenants (queued or in flight) by counter, for lifting.
    active: BTreeSet<(Key, usize)>,
    ready_key: Option<Key>,
    recent: f64,
    recent_at: Duration,
}

impl Group {
    fn new(name: Arc<str>, weight: f64) -> Group {
        Group {
            name,
            weight,
            members: 0,
            limits: GroupLimits::default(),
            reserved: 0,
            max: None,
            counter: 0.0,
            in_flight: 0,
            queued: 0,
            cap: 0,
            ready: BTreeSet::new(),
            active: BTreeSet::new(),
            ready_key: None,
            recent: 0.0,
            recent_at: Duration::ZERO,
        }
    }

    fn is_active(&self) -> bool {
        self.queued > 0 || self.in_flight > 0
    }

    /// Below its `max_slots` (if any).
    fn is_open(&self) -> bool {
        self.max.is_none_or(|max| self.in_flight < max)
    }

    /// Holding fewer slots than reserved (picks ask this of backlogged groups only).
    fn is_under_reservation(&self) -> bool {
        self.in_flight < self.reserved
    }

    /// Scales the configured limits to a pool of `slots` out of `reference` (see the
    /// module doc).
    fn scale_limits(&mut self, slots: u32, reference: u32) {
        let scale = |v: u32| {
            if slots == reference || reference == 0 {
                v
            } else {
                (v as f64 * slots as f64 / reference as f64).round() as u32
            }
        };
        self.max = self.limits.max_slots.map(|m| scale(m).max(1));
        let reserved = self.limits.reserved_slots.map_or(0, scale);
        self.reserved = self.max.map_or(reserved, |m| reserved.min(m));
    }
}

#[derive(Debug)]
struct Model {
    name: Arc<str>,
    cap: Option<u32>,
    in_flight: u32,
    /// Requests waiting for this model.
    queued: usize,
    /// A change was announced: leaves once nothing is queued or in flight.
    retired: bool,
}

#[derive(Debug)]
struct InFlight {
    tenant: usize,
    group: usize,
    model: usize,
    model_weight: f64,
    estimate: Tokens,
    reserved_tenant: f64,
    reserved_group: f64,
}

/// The scheduler state.
#[derive(Debug)]
pub struct Scheduler {
    config: Config,
    tenants: Slab<Tenant>,
    tenant_index: HashMap<Arc<str>, usize>,
    /// Tenants by store id (those whose requests carried one and are not deleted).
    tenant_ids: HashMap<Arc<str>, usize>,
    groups: Slab<Group>,
    group_index: HashMap<Arc<str>, usize>,
    /// Weights of groups set by the operator; others weigh [`DEFAULT_GROUP_WEIGHT`].
    group_weights: HashMap<Arc<str>, u32>,
    /// Slot limits of groups set by the operator.
    group_limits: HashMap<Arc<str>, GroupLimits>,
    /// Whether any group has a reservation (else picks skip looking for one).
    any_reservation: bool,
    /// The pool the group limits are set for: `config.slots` at creation.
    reference_slots: u32,
    models: Slab<Model>,
    model_index: HashMap<Arc<str>, usize>,
    /// Groups with an eligible tenant, by group counter.
    ready_groups: BTreeSet<(Key, usize)>,
    in_flight: HashMap<Ticket, InFlight>,
    waiting: HashMap<Ticket, usize>,
    used: u32,
    queued: usize,
    next_ticket: u64,
    counts: Counts,
    /// Exponential average of the output tokens of all completed requests.
    output_prediction: Option<f64>,
    /// Tenants with `unsynced` work; tracked once [`Scheduler::take_served`] was called.
    unsynced: Option<Vec<usize>>,
}

/// The rule a pick was made by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    HoldsNoSlot,
    BelowReservation,
    LowestShareScore,
}

/// Weight of a group the operator has not configured.
pub const DEFAULT_GROUP_WEIGHT: u32 = 1;

/// The group every tenant joins in weighted mode.
const ALL: &str = "*";

impl Scheduler {
    pub fn new(config: Config) -> Scheduler {
        let reference_slots = config.slots;
        let mut s = Scheduler {
            config,
            tenants: Slab::new(),
            tenant_index: HashMap::new(),
            tenant_ids: HashMap::new(),
            groups: Slab::new(),
            group_index: HashMap::new(),
            group_weights: HashMap::new(),
            group_limits: HashMap::new(),
            any_reservation: false,
            reference_slots,
            models: Slab::new(),
            model_index: HashMap::new(),
            ready_groups: BTreeSet::new(),
            in_flight: HashMap::new(),
            waiting: HashMap::new(),
            used: 0,
            queued: 0,
            next_ticket: 1,
            counts: Counts::default(),
            output_prediction: None,
            unsynced: None,
        };
        if s.config.mode == Mode::Weighted {
            s.group_idx(ALL);
        }
        s
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Slots in use.
    pub fn used(&self) -> u32 {
        self.used
    }

    /// Requests waiting.
    pub fn queued(&self) -> usize {
        self.queued
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// The virtual cost of `tokens` on a model of weight `model_weight`.
    pub fn cost(&self, tokens: Tokens, model_weight: f64) -> f64 {
        (tokens.input as f64 + self.config.output_weight * tokens.output as f64) * model_weight
    }

    // === operations ===

    /// A request arrives at `now`. Returns its outcome and any other requests that the
    /// submission let through (rare: only when caps changed).
    pub fn submit(&mut self, now: Duration, request: Request) -> (Submitted, Vec<Grant>) {
        let t = self.upsert_tenant(&request.tenant);
        let model = self.upsert_model(&request.model, request.model_slots);
        if self.tenants[t].queue.len() >= self.config.max_queue_per_tenant {
            self.counts.refused_queue_full += 1;
            return (Submitted::Refused(Refusal::TenantQueueFull), vec![]);
        }
        if self.queued >= self.config.max_queue {
            self.counts.refused_queue_full += 1;
            return (Submitted::Refused(Refusal::QueueFull), vec![]);
        }
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        let g = self.tenants[t].group;
        if !self.groups[g].is_active() {
            self.lift_group(g);
        }
        if self.tenant_is_inactive(t) {
            self.lift_tenant(t);
        }
        self.tenants[t].queue.push_back(Waiting {
            ticket,
            enqueued_at: now,
            estimate: request.estimate,
            model,
            model_weight: request.model_weight,
        });
        self.waiting.insert(ticket, t);
        self.queued += 1;
        self.groups[g].queued += 1;
        self.models[model].queued += 1;
        self.refresh_tenant(t);
        self.refresh_caps_if_needed(g, false);

        let mut grants = Vec::new();
        self.dispatch(now, &mut grants);
        match grants.iter().position(|gr| gr.ticket == ticket) {
            Some(i) => {
                let mut grant = grants.swap_remove(i);
                // Admitted in the same step as it arrived: it never waited.
                if grant.class == Class::Queued {
                    self.counts.queued -= 1;
                    self.counts.fast += 1;
                    grant.class = Class::Fast;
                }
                (Submitted::Admitted(grant), grants)
            }
            None => (Submitted::Queued(ticket), grants),
        }
    }

    /// A waiting request gave up (client gone, or queue timeout). Returns whether it was
    /// still waiting (false: it was already admitted or never existed).
    pub fn cancel(&mut self, now: Duration, ticket: Ticket) -> (bool, Vec<Grant>) {
        let Some(t) = self.waiting.remove(&ticket) else {
            return (false, vec![]);
        };
        let pos = self.tenants[t].queue.iter().position(|w| w.ticket == ticket);
        let model = pos.and_then(|pos| self.tenants[t].queue.remove(pos)).map(|w| w.model);
        self.queued -= 1;
        let g = self.tenants[t].group;
        self.groups[g].queued -= 1;
        self.counts.cancelled += 1;
        self.refresh_tenant(t);
        self.refresh_caps_if_needed(g, true);
        if let Some(m) = model {
            self.models[m].queued -= 1;
            self.forget_model_if_done(m);
        }
        self.forget_tenant_if_done(t);
        let mut grants = Vec::new();
        self.dispatch(now, &mut grants);
        (true, grants)
    }

    /// An admitted request finished (or failed, or its client left). `actual` is its
    /// real usage if known; without it the estimate stands. Returns the requests admitted
    /// into the freed slot. Idempotent.
    pub fn complete(&mut self, now: Duration, ticket: Ticket, actual: Option<Tokens>) -> Vec<Grant> {
        let Some(f) = self.in_flight.remove(&ticket) else {
            return vec![];
        };
        self.used -= 1;
        self.models[f.model].in_flight -= 1;
        let cost = self.cost(actual.unwrap_or(f.estimate), f.model_weight);
        let half_life = self.config.share_half_life;

        let tenant = &mut self.tenants[f.tenant];
        tenant.in_flight -= 1;
        tenant.counter += cost / tenant.weight - f.reserved_tenant;
        tenant.served += cost;
        if let Some(unsynced) = &mut self.unsynced
            && cost > 0.0
        {
            // Listed exactly while it has unsynced work (free work would list it twice).
            if tenant.unsynced == 0.0 {
                unsynced.push(f.tenant);
            }
            tenant.unsynced += cost;
        }
        decay(&mut tenant.recent, &mut tenant.recent_at, now, half_life);
        tenant.recent += cost;
        let alpha = self.config.prediction_alpha;
        if let Some(actual) = actual
            && alpha > 0.0
        {
            let out = actual.output as f64;
            let blend = |p: Option<f64>| Some(p.map_or(out, |p| (1.0 - alpha) * p + alpha * out));
            tenant.output_prediction = blend(tenant.output_prediction);
            self.output_prediction = blend(self.output_prediction);
        }

        let group = &mut self.groups[f.group];
        group.in_flight -= 1;
        group.counter += cost / group.weight - f.reserved_group;
        decay(&mut group.recent, &mut group.recent_at, now, half_life);
        group.recent += cost;

        self.refresh_tenant(f.tenant);
        self.refresh_group_ready(f.group);
        self.refresh_caps_if_needed(f.group, true);
        // The request may have been the last thing keeping any of them.
        self.forget_tenant_if_done(f.tenant);
        self.forget_group_if_done(f.group);
        self.forget_model_if_done(f.model);
        let mut grants = Vec::new();
        self.dispatch(now, &mut grants);
        grants
    }

    /// Work completed here since the last call, per tenant name, in cost units (for the
    /// cluster's exchange of served work). Tracking starts with the first call.
    pub fn take_served(&mut self) -> Vec<(Arc<str>, f64)> {
        let Some(unsynced) = self.unsynced.as_mut().map(std::mem::take) else {
            self.unsynced = Some(Vec::new());
            return Vec::new();
        };
        unsynced
            .into_iter()
            .map(|t| {
                let tenant = &mut self.tenants[t];
                (tenant.name.clone(), std::mem::take(&mut tenant.unsynced))
            })
            .collect()
    }

    /// Tenants with requests queued or in flight here.
    pub fn active_tenants(&self) -> Vec<Arc<str>> {
        self.tenants
            .iter()
            .filter(|(_, t)| !t.queue.is_empty() || t.in_flight > 0)
            .map(|(_, t)| t.name.clone())
            .collect()
    }

    /// Work served to `tenant` elsewhere (by the cluster's other pods), in cost units:
    /// charged to its counter and its group's as if served here, so that a tenant whose
    /// traffic lands on several pods is not ahead in every pod's queue. A tenant this
    /// pod does not know is skipped (when it becomes active it is lifted to the lowest
    /// active counter anyway).
    pub fn charge_remote(&mut self, tenant: &str, cost: f64) {
        let Some(&t) = self.tenant_index.get(tenant) else { return };
        if !(cost.is_finite() && cost > 0.0) {
            return;
        }
        let tenant = &mut self.tenants[t];
        tenant.counter += cost / tenant.weight;
        let g = tenant.group;
        self.groups[g].counter += cost / self.groups[g].weight;
        self.refresh_tenant(t);
    }

    /// Sets a group's weight (live: applies from the next pick).
    pub fn set_group_weight(&mut self, group: &str, weight: u32) {
        let weight = weight.max(1);
        self.group_weights.insert(Arc::from(group), weight);
        if let Some(&g) = self.group_index.get(group)
            && self.config.mode == Mode::Hierarchical
        {
            self.groups[g].weight = weight as f64;
            self.recompute_caps();
        }
    }

    /// Sets a group's reserved and max slots (live: waiting requests that a raised limit
    /// lets through are admitted at once). The limits are for the pool the scheduler was
    /// created with; see the module doc for how they scale with [`Scheduler::set_slots`].
    pub fn set_group_limits(&mut self, now: Duration, group: &str, limits: GroupLimits) -> Vec<Grant> {
        let mut grants = Vec::new();
        let previous = if limits == GroupLimits::default() {
            self.group_limits.remove(group)
        } else {
            self.group_limits.insert(Arc::from(group), limits)
        };
        if previous.unwrap_or_default() == limits {
            return grants;
        }
        self.any_reservation = self.group_limits.values().any(|l| l.reserved_slots.is_some());
        if let Some(&g) = self.group_index.get(group)
            && self.config.mode == Mode::Hierarchical
        {
            self.groups[g].limits = limits;
            self.groups[g].scale_limits(self.config.slots, self.reference_slots);
            // No burst for service the old limits held back, no debt for service they gave.
            if self.groups[g].is_active()
                && let Some(floor) = self.group_floor(g)
            {
                self.groups[g].counter = floor;
            }
            self.refresh_group_ready(g);
            self.recompute_caps();
            self.dispatch(now, &mut grants);
        }
        grants
    }

    /// The store forgot a group's settings (the group was deleted): it weighs
    /// [`DEFAULT_GROUP_WEIGHT`] again and has no limits. Its tenants keep it (they name
    /// it until they are changed).
    pub fn reset_group(&mut self, now: Duration, group: &str) -> Vec<Grant> {
        self.group_weights.remove(group);
        if let Some(&g) = self.group_index.get(group)
            && self.config.mode == Mode::Hierarchical
        {
            self.groups[g].weight = DEFAULT_GROUP_WEIGHT as f64;
            self.recompute_caps();
        }
        self.set_group_limits(now, group, GroupLimits::default())
    }

    /// Applies a tenant change (weight, group, caps, name) now, not at its next request.
    /// A tenant this scheduler does not hold is not added.
    pub fn update_tenant(&mut self, now: Duration, spec: &TenantSpec) -> Vec<Grant> {
        if self.find_tenant(spec).is_some() {
            self.upsert_tenant(spec);
        }
        let mut grants = Vec::new();
        self.dispatch(now, &mut grants);
        grants
    }

    /// A tenant was deleted from the store. It leaves now if it has nothing queued or in
    /// flight; otherwise its requests are served and finish as usual and it leaves after
    /// the last one (see the module doc). Removing it frees no slot, so nothing is
    /// admitted by this call.
    pub fn remove_tenant(&mut self, id: &str) {
        let Some(t) = self.tenant_ids.remove(id) else { return };
        self.tenants[t].deleted = true;
        self.forget_tenant_if_done(t);
    }

    /// Forgets every tenant with nothing queued, in flight or still to report to the
    /// other pods. Called when changes may have been missed (a pod's change channel
    /// reconnected): a tenant deleted meanwhile must not stay. Nothing is lost for the
    /// others: a tenant that comes back is rebuilt from its next request, and a returning
    /// tenant is lifted to its group's floor anyway (no banked credit).
    pub fn forget_idle_tenants(&mut self) {
        let idle: Vec<usize> = self
            .tenants
            .iter()
            .filter(|(_, t)| t.queue.is_empty() && t.in_flight == 0 && t.unsynced == 0.0)
            .map(|(t, _)| t)
            .collect();
        for t in idle {
            // Idle, so this removes it now (and its id's index entry with it).
            self.tenants[t].deleted = true;
            self.forget_tenant_if_done(t);
        }
    }

    /// A model was changed or deleted in the registry: its state here (cap, counts) is
    /// dropped once it has nothing queued or in flight, and rebuilt from the next request
    /// for it.
    pub fn forget_model(&mut self, name: &str) {
        let Some(&m) = self.model_index.get(name) else { return };
        self.models[m].retired = true;
        self.forget_model_if_done(m);
    }

    /// Resizes the pool (a pod's share of a cluster-wide cap changes as pods come and go).
    /// Lowering it below the slots in use admits nothing until enough are released;
    /// nothing running is interrupted.
    pub fn set_slots(&mut self, now: Duration, slots: u32) -> Vec<Grant> {
        self.config.slots = slots;
        let groups: Vec<usize> = self.groups.iter().map(|(g, _)| g).collect();
        for g in groups {
            self.groups[g].scale_limits(slots, self.reference_slots);
            self.refresh_group_ready(g);
        }
        self.recompute_caps();
        let mut grants = Vec::new();
        self.dispatch(now, &mut grants);
        grants
    }

    /// Sets a model's own slot cap.
    pub fn set_model_slots(&mut self, now: Duration, model: &str, slots: Option<u32>) -> Vec<Grant> {
        self.upsert_model(model, slots);
        let mut grants = Vec::new();
        self.dispatch(now, &mut grants);
        grants
    }

    // === picking ===

    fn dispatch(&mut self, now: Duration, out: &mut Vec<Grant>) {
        while self.used < self.config.slots {
            let Some(t) = self.pick() else { break };
            out.push(self.admit_head(now, t));
        }
    }

    /// The tenant whose head request goes next, if any may.
    fn pick(&self) -> Option<usize> {
        self.pick_why().map(|(t, _)| t)
    }

    /// [`Scheduler::pick`] and the rule that chose it (the console shows it).
    fn pick_why(&self) -> Option<(usize, Rule)> {
        if self.config.mode == Mode::Weighted {
            return self.pick_in_group(0).map(|t| (t, Rule::LowestShareScore));
        }
        // `ready_groups` holds only groups below their max_slots, by counter. A backlogged
        // group holding no slot first (everyone keeps one); then one below its reservation;
        // then by group counter.
        let holding_none = self
            .ready_groups
            .iter()
            .filter(|(_, g)| self.groups[*g].in_flight == 0)
            .find_map(|(_, g)| self.pick_in_group(*g));
        (holding_none.map(|t| (t, Rule::HoldsNoSlot)))
            .or_else(|| self.pick_reserved().map(|t| (t, Rule::BelowReservation)))
            .or_else(|| {
                self.ready_groups.iter().find_map(|(_, g)| self.pick_in_group(*g)).map(|t| (t, Rule::LowestShareScore))
            })
    }

    /// Among the backlogged groups below their reservation, the one with the lowest
    /// `in_flight / reserved` (ties: the lowest counter, as `ready_groups` is ordered).
    fn pick_reserved(&self) -> Option<usize> {
        if !self.any_reservation {
            return None;
        }
        let mut best: Option<(usize, usize)> = None;
        for &(_, g) in &self.ready_groups {
            let group = &self.groups[g];
            if !group.is_under_reservation() {
                continue;
            }
            // in_flight / reserved < best.in_flight / best.reserved, without division.
            let behind = |b: &Group| {
                (group.in_flight as u64) * (b.reserved as u64) < (b.in_flight as u64) * (group.reserved as u64)
            };
            if best.is_some_and(|(bg, _)| !behind(&self.groups[bg])) {
                continue;
            }
            if let Some(t) = self.pick_in_group(g) {
                best = Some((g, t));
            }
        }
        best.map(|(_, t)| t)
    }

    /// The next pick as the snapshot shows it.
    fn next_pick(&self) -> Option<NextPick> {
        let (t, rule) = self.pick_why()?;
        let tenant = &self.tenants[t];
        let group = &self.groups[tenant.group];
        let (rule, reason) = match (rule, self.config.mode) {
            (Rule::HoldsNoSlot, _) => (
                "holds_no_slot",
                format!("group {} is waiting and holds no slot: every backlogged group keeps one", group.name),
            ),
            (Rule::BelowReservation, _) => {
                ("below_reservation", format!("group {} is below its {} reserved slots", group.name, group.reserved))
            }
            (Rule::LowestShareScore, Mode::Weighted) => (
                "lowest_share_score",
                format!(
                    "lowest share score among waiting tenants ({:.0}): most behind its weighted share",
                    tenant.counter
                ),
            ),
            (Rule::LowestShareScore, Mode::Hierarchical) => (
                "lowest_share_score",
                format!(
                    "group {} has the lowest group score ({:.0}), and within it the tenant the lowest share score ({:.0})",
                    group.name, group.counter, tenant.counter
                ),
            ),
        };
        Some(NextPick {
            tenant: tenant.name.to_string(),
            group: tenant.group_name.to_string(),
            rule: rule.to_owned(),
            reason,
        })
    }

    fn pick_in_group(&self, g: usize) -> Option<usize> {
        self.groups[g].ready.iter().map(|(_, t)| *t).find(|&t| {
            let head = &self.tenants[t].queue[0];
            let m = &self.models[head.model];
            m.cap.is_none_or(|cap| m.in_flight < cap)
        })
    }

    fn admit_head(&mut self, now: Duration, t: usize) -> Grant {
        let Some(w) = self.tenants[t].queue.pop_front() else {
            unreachable!("pick returns tenants with a non-empty queue")
        };
        if self.tenants[t].queue.is_empty() {
            // An emptied queue keeps its buffer: ~0.2 KiB for every tenant that ever
            // waited, 2 MiB with 10,000 tenants. Waiting is the exception; give it back.
            self.tenants[t].queue = VecDeque::new();
        }
        self.waiting.remove(&w.ticket);
        let waited = now.saturating_sub(w.enqueued_at);
        let degraded = !self.tenants[t].never_degrade && self.config.brownout_after.is_some_and(|after| waited > after);
        // What this request is expected to cost: its prompt, and the output it is likely to
        // produce (never more than it may produce, capped further when degraded).
        let mut estimate = w.estimate;
        if self.config.prediction_alpha > 0.0 {
            let predicted = match self.tenants[t].output_prediction.or(self.output_prediction) {
                Some(p) => p.ceil() as u64,
                None => self.config.cold_start_output,
            };
            estimate.output = estimate.output.min(predicted);
        }
        if degraded {
            estimate.output = estimate.output.min(self.config.brownout_max_tokens as u64);
        }
        let cost = self.cost(estimate, w.model_weight);
        let g = self.tenants[t].group;

        let tenant = &mut self.tenants[t];
        let reserved_tenant = cost / tenant.weight;
        tenant.counter += reserved_tenant;
        tenant.in_flight += 1;

        let group = &mut self.groups[g];
        let reserved_group = cost / group.weight;
        group.counter += reserved_group;
        group.in_flight += 1;
        group.queued -= 1;

        self.models[w.model].in_flight += 1;
        self.models[w.model].queued -= 1;
        self.used += 1;
        self.queued -= 1;
        self.in_flight.insert(
            w.ticket,
            InFlight {
                tenant: t,
                group: g,
                model: w.model,
                model_weight: w.model_weight,
                estimate,
                reserved_tenant,
                reserved_group,
            },
        );
        self.refresh_tenant(t);
        self.refresh_group_ready(g);

        let class = if degraded {
            self.counts.brownout += 1;
            Class::Brownout
        } else {
            self.counts.queued += 1;
            Class::Queued
        };
        Grant { ticket: w.ticket, class, waited, max_tokens_cap: degraded.then_some(self.config.brownout_max_tokens) }
    }

    // === bookkeeping ===

    fn tenant_is_inactive(&self, t: usize) -> bool {
        self.tenants[t].queue.is_empty() && self.tenants[t].in_flight == 0
    }

    /// No banking: lift a returning tenant to the lowest counter of its group's active
    /// tenants.
    fn lift_tenant(&mut self, t: usize) {
        let g = self.tenants[t].group;
        if let Some(&(_, j)) = self.groups[g].active.iter().find(|(_, j)| *j != t) {
            let floor = self.tenants[j].counter;
            let tenant = &mut self.tenants[t];
            tenant.counter = tenant.counter.max(floor);
        }
    }

    fn lift_group(&mut self, g: usize) {
        if let Some(floor) = self.group_floor(g) {
            self.groups[g].counter = self.groups[g].counter.max(floor);
        }
    }

    /// The lowest counter among the other active groups.
    fn group_floor(&self, g: usize) -> Option<f64> {
        self.groups
            .iter()
            .filter(|(i, other)| *i != g && other.is_active())
            .map(|(_, other)| other.counter)
            .min_by(f64::total_cmp)
    }

    /// Re-indexes tenant `t` after its counter, queue or in-flight count changed.
    fn refresh_tenant(&mut self, t: usize) {
        let tenant = &self.tenants[t];
        let g = tenant.group;
        let ready = !tenant.queue.is_empty() && tenant.max_in_flight.is_none_or(|cap| tenant.in_flight < cap);
        let ready_key = ready.then(|| Key::of(tenant.counter));
        let active = !tenant.queue.is_empty() || tenant.in_flight > 0;
        let active_key = active.then(|| Key::of(tenant.counter));
        let (old_ready, old_active) = (tenant.ready_key, tenant.active_key);
        let group = &mut self.groups[g];
        if old_ready != ready_key {
            if let Some(k) = old_ready {
                group.ready.remove(&(k, t));
            }
            if let Some(k) = ready_key {
                group.ready.insert((k, t));
            }
        }
        if old_active != active_key {
            if let Some(k) = old_active {
                group.active.remove(&(k, t));
            }
            if let Some(k) = active_key {
                group.active.insert((k, t));
            }
        }
        let tenant = &mut self.tenants[t];
        tenant.ready_key = ready_key;
        tenant.active_key = active_key;
        self.refresh_group_ready(g);
    }

    fn refresh_group_ready(&mut self, g: usize) {
        let group = &self.groups[g];
        let key = (!group.ready.is_empty() && group.is_open()).then(|| Key::of(group.counter));
        if key != group.ready_key {
            if let Some(k) = group.ready_key {
                self.ready_groups.remove(&(k, g));
            }
            if let Some(k) = key {
                self.ready_groups.insert((k, g));
            }
            self.groups[g].ready_key = key;
        }
    }

    /// Group caps depend on which groups are active; recompute when `g` may have
    /// changed state (`leaving`: it may have become inactive).
    fn refresh_caps_if_needed(&mut self, g: usize, leaving: bool) {
        if self.config.mode != Mode::Hierarchical {
            return;
        }
        let group = &self.groups[g];
        let became_active = !leaving && group.cap == 0 && group.is_active();
        let became_inactive = leaving && group.cap > 0 && !group.is_active();
        if became_active || became_inactive {
            self.recompute_caps();
        }
    }

    /// Splits the slots among active groups by weight, within each group's reserved and
    /// max slots (largest remainder), then makes sure every active group has at least
    /// one, taken from the largest cap. With every group backlogged and requests of
    /// similar size, this is the split the picking rules converge to.
    fn recompute_caps(&mut self) {
        let active: Vec<usize> = self.groups.iter().filter(|(_, g)| g.is_active()).map(|(g, _)| g).collect();
        for (_, group) in self.groups.iter_mut() {
            group.cap = 0;
        }
        if active.is_empty() {
            return;
        }
        let slots = self.config.slots;
        let floor = |g: &Group| g.reserved;
        let ceiling = |g: &Group| g.max.unwrap_or(u32::MAX);
        let reserved: u64 = active.iter().map(|&g| floor(&self.groups[g]) as u64).sum();
        if reserved >= slots as u64 {
            // Oversubscribed reservations: filled in proportion to their sizes.
            let weights: Vec<(usize, f64)> = active.iter().map(|&g| (g, floor(&self.groups[g]) as f64)).collect();
            self.split(slots, &weights);
        } else {
            // Water-filling: split by weight; a group whose share falls outside its bounds is
            // pinned at the bound (the side with the larger total violation first), and the
            // rest is split again among the others.
            let mut free = active.clone();
            let mut left = slots as f64;
            loop {
                let total: f64 = free.iter().map(|&g| self.groups[g].weight).sum();
                let share = |g: usize| left * self.groups[g].weight / total;
                let (mut over, mut under) = (0.0, 0.0);
                for &g in &free {
                    let (x, group) = (share(g), &self.groups[g]);
                    over += (x - ceiling(group) as f64).max(0.0);
                    under += (floor(group) as f64 - x).max(0.0);
                }
                if over == 0.0 && under == 0.0 {
                    break;
                }
                let pin: Vec<usize> = free
                    .iter()
                    .copied()
                    .filter(|&g| {
                        let group = &self.groups[g];
                        if over >= under { share(g) > ceiling(group) as f64 } else { share(g) < floor(group) as f64 }
                    })
                    .collect();
                for &g in &pin {
                    let group = &mut self.groups[g];
                    group.cap = if over >= under { ceiling(group) } else { floor(group) };
                    left -= group.cap as f64;
                }
                free.retain(|g| !pin.contains(g));
                if free.is_empty() {
                    break;
                }
            }
            let weights: Vec<(usize, f64)> = free.iter().map(|&g| (g, self.groups[g].weight)).collect();
            self.split(left.max(0.0) as u32, &weights);
        }
        for &g in &active {
            if self.groups[g].cap == 0 {
                self.groups[g].cap = 1;
                let donor =
                    active.iter().copied().filter(|&d| self.groups[d].cap > 1).max_by_key(|&d| self.groups[d].cap);
                if let Some(d) = donor {
                    self.groups[d].cap -= 1;
                }
            }
        }
    }

    /// Adds `slots` split in proportion to `weights` (largest remainder) to the groups' caps.
    fn split(&mut self, slots: u32, weights: &[(usize, f64)]) {
        let total: f64 = weights.iter().map(|(_, w)| w).sum();
        if weights.is_empty() || total <= 0.0 {
            return;
        }
        let mut remainders = Vec::with_capacity(weights.len());
        let mut assigned = 0u32;
        for &(g, w) in weights {
            let exact = slots as f64 * w / total;
            let floor = exact.floor() as u32;
            self.groups[g].cap += floor;
            assigned += floor;
            remainders.push((exact - floor as f64, g));
        }
        remainders.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for &(_, g) in remainders.iter().take((slots - assigned.min(slots)) as usize) {
            self.groups[g].cap += 1;
        }
    }

    fn group_idx(&mut self, name: &str) -> usize {
        if let Some(&g) = self.group_index.get(name) {
            return g;
        }
        let name: Arc<str> = name.into();
        let weight = self.group_weights.get(&name).copied().unwrap_or(DEFAULT_GROUP_WEIGHT);
        let mut group = Group::new(name.clone(), weight as f64);
        if self.config.mode == Mode::Hierarchical {
            group.limits = self.group_limits.get(&name).copied().unwrap_or_default();
            group.scale_limits(self.config.slots, self.reference_slots);
        }
        let g = self.groups.insert(group);
        self.group_index.insert(name, g);
        g
    }

    fn upsert_model(&mut self, name: &str, cap: Option<u32>) -> usize {
        match self.model_index.get(name) {
            Some(&m) => {
                self.models[m].cap = cap;
                m
            }
            None => {
                let name: Arc<str> = name.into();
                let m = self.models.insert(Model { name: name.clone(), cap, in_flight: 0, queued: 0, retired: false });
                self.model_index.insert(name, m);
                m
            }
        }
    }

    /// The tenant `spec` describes, if held: by name, or by id under an earlier name (a
    /// renamed tenant, which is renamed here too).
    fn find_tenant(&mut self, spec: &TenantSpec) -> Option<usize> {
        if let Some(&t) = self.tenant_index.get(&*spec.name) {
            return Some(t);
        }
        let &t = self.tenant_ids.get(spec.id.as_deref()?)?;
        let name: Arc<str> = spec.name.as_ref().into();
        let old = std::mem::replace(&mut self.tenants[t].name, name.clone());
        self.tenant_index.remove(&old);
        self.tenant_index.insert(name, t);
        Some(t)
    }

    fn upsert_tenant(&mut self, spec: &TenantSpec) -> usize {
        let group_name: &str = if self.config.mode == Mode::Weighted { ALL } else { &spec.group };
        let weight = spec.weight.max(1) as f64;
        let Some(t) = self.find_tenant(spec) else {
            let g = self.group_idx(group_name);
            self.groups[g].members += 1;
            let name: Arc<str> = spec.name.as_ref().into();
            let t = self.tenants.insert(Tenant {
                name: name.clone(),
                id: spec.id.as_deref().map(Arc::from),
                deleted: false,
                group_name: spec.group.as_ref().into(),
                weight,
                group: g,
                max_in_flight: spec.max_in_flight,
                never_degrade: spec.never_degrade,
                counter: 0.0,
                queue: VecDeque::new(),
                in_flight: 0,
                ready_key: None,
                active_key: None,
                served: 0.0,
                unsynced: 0.0,
                recent: 0.0,
                recent_at: Duration::ZERO,
                output_prediction: None,
            });
            self.tenant_index.insert(name, t);
            self.index_id(t);
            return t;
        };
        if let Some(id) = spec.id.as_deref()
            && self.tenants[t].id.as_deref() != Some(id)
        {
            // The name now belongs to another tenant of the store (the old one was
            // renamed or deleted and the name reused): the entry follows the new id.
            if let Some(old) = self.tenants[t].id.replace(id.into())
                && self.tenant_ids.get(&old) == Some(&t)
            {
                self.tenant_ids.remove(&old);
            }
            // May retire another entry, and with it its group: groups are looked up after.
            self.index_id(t);
        }
        let g = self.group_idx(group_name);
        let tenant = &mut self.tenants[t];
        tenant.weight = weight;
        tenant.max_in_flight = spec.max_in_flight;
        tenant.never_degrade = spec.never_degrade;
        // Copied only when it changed: this runs for every request.
        if *tenant.group_name != *spec.group {
            tenant.group_name = spec.group.as_ref().into();
        }
        if tenant.group != g {
            self.move_tenant(t, g);
        }
        self.refresh_tenant(t);
        t
    }

    /// Indexes tenant `t` by its id. Another entry indexed by the same id is a name the
    /// tenant had before (it was renamed): that entry is retired like a deleted tenant.
    fn index_id(&mut self, t: usize) {
        let Some(id) = self.tenants[t].id.clone() else { return };
        if self.tenants[t].deleted {
            return;
        }
        if let Some(other) = self.tenant_ids.insert(id, t)
            && other != t
        {
            self.tenants[other].deleted = true;
            self.forget_tenant_if_done(other);
        }
    }

    /// Moves a tenant to another group. Its requests in flight stay accounted to the old
    /// group until they finish.
    fn move_tenant(&mut self, t: usize, to: usize) {
        let from = self.tenants[t].group;
        let queued = self.tenants[t].queue.len();
        if let Some(k) = self.tenants[t].ready_key.take() {
            self.groups[from].ready.remove(&(k, t));
        }
        if let Some(k) = self.tenants[t].active_key.take() {
            self.groups[from].active.remove(&(k, t));
        }
        self.groups[from].queued -= queued;
        self.groups[from].members -= 1;
        self.refresh_group_ready(from);
        let was_active = self.groups[to].is_active();
        self.tenants[t].group = to;
        self.groups[to].queued += queued;
        self.groups[to].members += 1;
        if !was_active && queued > 0 {
            self.lift_group(to);
        }
        self.recompute_caps();
        self.forget_group_if_done(from);
    }

    // === forgetting ===

    /// Removes tenant `t` if it was deleted and nothing of it is queued or in flight. By
    /// then it is in no ready or active set (those hold tenants with work), no queue and
    /// no in-flight record refers to it, so only the name and id indexes, the unsynced
    /// list and its group's membership do.
    fn forget_tenant_if_done(&mut self, t: usize) {
        let Some(tenant) = self.tenants.get(t) else { return };
        if !tenant.deleted || !tenant.queue.is_empty() || tenant.in_flight > 0 {
            return;
        }
        let tenant = self.tenants.remove(t);
        debug_assert!(tenant.ready_key.is_none() && tenant.active_key.is_none());
        if self.tenant_index.get(&tenant.name) == Some(&t) {
            self.tenant_index.remove(&tenant.name);
        }
        if let Some(id) = &tenant.id
            && self.tenant_ids.get(id) == Some(&t)
        {
            self.tenant_ids.remove(id);
        }
        if let Some(unsynced) = &mut self.unsynced {
            // Its slot may be reused: its work must not be reported under another name.
            unsynced.retain(|&u| u != t);
        }
        self.groups[tenant.group].members -= 1;
        self.forget_group_if_done(tenant.group);
    }

    /// Removes group `g` if it has no tenants and nothing queued or in flight (its
    /// configured weight and limits stay in `group_weights` and `group_limits`). The one
    /// group of weighted mode stays.
    fn forget_group_if_done(&mut self, g: usize) {
        if self.config.mode == Mode::Weighted {
            return;
        }
        let Some(group) = self.groups.get(g) else { return };
        if group.members > 0 || group.is_active() {
            return;
        }
        let group = self.groups.remove(g);
        if let Some(k) = group.ready_key {
            self.ready_groups.remove(&(k, g));
        }
        self.group_index.remove(&group.name);
        if group.cap > 0 {
            self.recompute_caps();
        }
    }

    /// Removes model `m` if a change to it was announced and nothing is queued or in
    /// flight for it.
    fn forget_model_if_done(&mut self, m: usize) {
        let Some(model) = self.models.get(m) else { return };
        if !model.retired || model.queued > 0 || model.in_flight > 0 {
            return;
        }
        let model = self.models.remove(m);
        self.model_index.remove(&model.name);
    }

    // === introspection ===

    /// The state for the admin API and metrics.
    pub fn snapshot(&self, now: Duration) -> Snapshot {
        let half_life = self.config.share_half_life;
        let decayed = |recent: f64, at: Duration| recent * decay_factor(now.saturating_sub(at), half_life);
        let total_recent: f64 = self.tenants.iter().map(|(_, t)| decayed(t.recent, t.recent_at)).sum();
        let group_recent: f64 = self.groups.iter().map(|(_, g)| decayed(g.recent, g.recent_at)).sum();
        let active_group_weight: f64 = self.groups.iter().filter(|(_, g)| g.is_active()).map(|(_, g)| g.weight).sum();
        // Indexed by group slot (slots of groups that left are unused).
        let mut active_tenant_weight = vec![0.0; self.groups.iter().map(|(g, _)| g + 1).max().unwrap_or(0)];
        for (_, t) in &self.tenants {
            if t.ready_key.is_some() || t.in_flight > 0 || !t.queue.is_empty() {
                active_tenant_weight[t.group] += t.weight;
            }
        }
        let share = |x: f64, total: f64| if total > 0.0 { x / total } else { 0.0 };
        let groups = self
            .groups
            .iter()
            .map(|(_, g)| GroupView {
                name: g.name.to_string(),
                weight: g.weight,
                reserved_slots: g.limits.reserved_slots,
                max_slots: g.limits.max_slots,
                pool_reserved_slots: g.limits.reserved_slots.map(|_| g.reserved),
                pool_max_slots: g.max,
                cap: g.cap,
                in_flight: g.in_flight,
                queued: g.queued,
                share_score: g.counter,
                target_share: if g.is_active() { share(g.weight, active_group_weight) } else { 0.0 },
                actual_share: share(decayed(g.recent, g.recent_at), group_recent),
            })
            .collect();
        let tenants = self
            .tenants
            .iter()
            .map(|(_, t)| {
                let active = !t.queue.is_empty() || t.in_flight > 0;
                let group = &self.groups[t.group];
                let group_share = match self.config.mode {
                    Mode::Weighted => 1.0,
                    Mode::Hierarchical => share(group.weight, active_group_weight),
                };
                TenantView {
                    name: t.name.to_string(),
                    group: t.group_name.to_string(),
                    weight: t.weight,
                    queued: t.queue.len(),
                    in_flight: t.in_flight,
                    share_score: t.counter,
                    served_tokens: t.served,
                    target_share: if active {
                        group_share * share(t.weight, active_tenant_weight[t.group])
                    } else {
                        0.0
                    },
                    actual_share: share(decayed(t.recent, t.recent_at), total_recent),
                }
            })
            .collect();
        Snapshot {
            mode: self.config.mode,
            slots_total: self.config.slots,
            slots_used: self.used,
            queued: self.queued,
            groups,
            tenants,
            admissions: self.counts,
            next: self.next_pick(),
            models: self
                .models
                .iter()
                .map(|(_, m)| ModelView {
                    name: m.name.to_string(),
                    cap: m.cap,
                    in_flight: m.in_flight,
                    queued: m.queued,
                })
                .collect(),
        }
    }
}

fn decay_factor(elapsed: Duration, half_life: Duration) -> f64 {
    if half_life.is_zero() {
        return 1.0;
    }
    (-(elapsed.as_secs_f64() / half_life.as_secs_f64()) * std::f64::consts::LN_2).exp()
}

fn decay(value: &mut f64, at: &mut Duration, now: Duration, half_life: Duration) {
    *value *= decay_factor(now.saturating_sub(*at), half_life);
    *at = now;
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
