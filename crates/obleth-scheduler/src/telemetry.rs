//! Scheduler metrics, read from a snapshot when Prometheus scrapes (so the hot path pays
//! nothing for them).
//!
//! The pool-wide gauges go through the `metrics` registry ([`publish`]). The per-group
//! and per-tenant families are rendered here, straight from the snapshot, and appended
//! to the exporter's text ([`render`]): the registry keeps every series it was ever
//! given, so a tenant that left the scheduler would stay in `/metrics` until restart,
//! and 10,000 tenants would make every scrape megabytes long. Rendered from the
//! snapshot, a series lives exactly as long as its tenant or group does here, and only
//! the most active ones get series of their own: the rest are summed into one series
//! labelled `other`, so a family has at most `limit + 1` series whatever the number of
//! tenants.

use metrics::gauge;

use crate::core::{GroupView, Snapshot, TenantView};

pub mod names {
    pub const SLOTS: &str = "obleth_scheduler_slots";
    pub const QUEUED: &str = "obleth_scheduler_queued";
    /// Per group, by `state`: `cap` (expected split), `used`, `reserved`, `max`.
    pub const GROUP_SLOTS: &str = "obleth_scheduler_group_slots";
    pub const GROUP_QUEUED: &str = "obleth_scheduler_group_queued";
    pub const TENANT_QUEUED: &str = "obleth_scheduler_tenant_queued";
    pub const TENANT_IN_FLIGHT: &str = "obleth_scheduler_tenant_in_flight";
    pub const TENANT_SHARE_SCORE: &str = "obleth_scheduler_tenant_share_score";
    pub const TENANT_SHARE: &str = "obleth_scheduler_tenant_share";
    pub const GROUP_SHARE: &str = "obleth_scheduler_group_share";
    /// Jain's index over the backlogged tenants (see [`super::fairness_index`]).
    pub const FAIRNESS_INDEX: &str = "obleth_scheduler_fairness_index";
}

pub use obleth_core::prom::OTHER;
use obleth_core::prom::{family, sample, split};

/// How many tenants and groups get series of their own (the others are summed into
/// `other`); 0: only `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesLimits {
    pub tenants: usize,
    pub groups: usize,
}

impl Default for SeriesLimits {
    fn default() -> Self {
        SeriesLimits { tenants: 100, groups: 100 }
    }
}

/// Sets the pool-wide gauges from `s` (a fixed set of series).
pub fn publish(s: &Snapshot) {
    gauge!(names::SLOTS, "state" => "used").set(s.slots_used as f64);
    gauge!(names::SLOTS, "state" => "total").set(s.slots_total as f64);
    gauge!(names::QUEUED).set(s.queued as f64);
}

/// Appends the per-group and per-tenant families of `s` to `out`, in the Prometheus text
/// format (each family once, with its `HELP` and `TYPE`).
///
/// Which get series of their own: the `limits` most active (requests in flight plus
/// queued, then the share of recent service, then by name). The `other` series of a
/// family holds, for the rest: the sum of their counts (slots, queued, in flight) and
/// of their target and actual shares (so shares still add up to 1 over a family), and
/// for `share_score` the lowest score among those with requests queued or in flight
/// (the one that would be served first), 0 when none has any.
pub fn render(s: &Snapshot, limits: SeriesLimits, out: &mut String) {
    family(
        out,
        names::FAIRNESS_INDEX,
        "Jain's fairness index of actual over target share among tenants with requests queued (1: each gets its share)",
    );
    sample(out, names::FAIRNESS_INDEX, &[], fairness_index(&s.tenants));

    let groups = split(
        &s.groups,
        limits.groups,
        |g| g.name.as_str(),
        |g| (g.in_flight as u64 + g.queued as u64, g.actual_share),
    );
    let tenants = split(
        &s.tenants,
        limits.tenants,
        |t| t.name.as_str(),
        |t| (t.in_flight as u64 + t.queued as u64, t.actual_share),
    );

    // A group's `max` is the whole pool when it has no cap of its own.
    let max = |g: &GroupView| g.pool_max_slots.unwrap_or(s.slots_total) as f64;
    let reserved = |g: &GroupView| g.pool_reserved_slots.unwrap_or(0) as f64;
    family(
        out,
        names::GROUP_SLOTS,
        "Slots of each fairshare group by state: cap (its expected split), used, reserved and max (this pod's figures)",
    );
    for (state, value) in [
        ("cap", &(|g: &GroupView| g.cap as f64) as &dyn Fn(&GroupView) -> f64),
        ("used", &|g: &GroupView| g.in_flight as f64),
        ("reserved", &reserved),
        ("max", &max),
    ] {
        for g in &groups.own {
            sample(out, names::GROUP_SLOTS, &[("group", &g.name), ("state", state)], value(g));
        }
        sample(out, names::GROUP_SLOTS, &[("group", OTHER), ("state", state)], groups.sum(value));
    }
    family(out, names::GROUP_QUEUED, "Requests waiting, per fairshare group");
    for g in &groups.own {
        sample(out, names::GROUP_QUEUED, &[("group", &g.name)], g.queued as f64);
    }
    sample(out, names::GROUP_QUEUED, &[("group", OTHER)], groups.sum(|g| g.queued as f64));

    family(out, names::GROUP_SHARE, "Share of the pool per group: target (entitled) and actual (recent service)");
    for (kind, value) in [
        ("target", &(|g: &GroupView| g.target_share) as &dyn Fn(&GroupView) -> f64),
        ("actual", &|g: &GroupView| g.actual_share),
    ] {
        for g in &groups.own {
            sample(out, names::GROUP_SHARE, &[("group", &g.name), ("kind", kind)], value(g));
        }
        sample(out, names::GROUP_SHARE, &[("group", OTHER), ("kind", kind)], groups.sum(value));
    }

    family(out, names::TENANT_QUEUED, "Requests waiting, per tenant");
    for t in &tenants.own {
        sample(out, names::TENANT_QUEUED, &[("tenant", &t.name)], t.queued as f64);
    }
    sample(out, names::TENANT_QUEUED, &[("tenant", OTHER)], tenants.sum(|t| t.queued as f64));

    family(out, names::TENANT_IN_FLIGHT, "Requests in flight, per tenant");
    for t in &tenants.own {
        sample(out, names::TENANT_IN_FLIGHT, &[("tenant", &t.name)], t.in_flight as f64);
    }
    sample(out, names::TENANT_IN_FLIGHT, &[("tenant", OTHER)], tenants.sum(|t| t.in_flight as f64));

    family(out, names::TENANT_SHARE_SCORE, "Weighted work served, per tenant (the lowest is served next)");
    for t in &tenants.own {
        sample(out, names::TENANT_SHARE_SCORE, &[("tenant", &t.name)], t.share_score);
    }
    let busy_score = tenants
        .rest
        .iter()
        .filter(|t| t.queued > 0 || t.in_flight > 0)
        .map(|t| t.share_score)
        .min_by(f64::total_cmp)
        .unwrap_or(0.0);
    sample(out, names::TENANT_SHARE_SCORE, &[("tenant", OTHER)], busy_score);

    family(out, names::TENANT_SHARE, "Share of the pool per tenant: target (entitled) and actual (recent service)");
    for (kind, value) in [
        ("target", &(|t: &TenantView| t.target_share) as &dyn Fn(&TenantView) -> f64),
        ("actual", &|t: &TenantView| t.actual_share),
    ] {
        for t in &tenants.own {
            sample(out, names::TENANT_SHARE, &[("tenant", &t.name), ("kind", kind)], value(t));
        }
        sample(out, names::TENANT_SHARE, &[("tenant", OTHER), ("kind", kind)], tenants.sum(value));
    }
}

/// Jain's fairness index, `(Σx)² / (n·Σx²)`, of `x = actual / target` share over the
/// tenants with requests queued: 1 when each backlogged tenant gets service in
/// proportion to its weight, down to `1/n` when one of `n` gets it all. Only backlogged
/// tenants count, because an idle tenant below its share is not wronged. It is 1 when
/// fewer than two are backlogged or none has been served yet (nobody is ahead).
pub fn fairness_index(tenants: &[TenantView]) -> f64 {
    let (mut n, mut sum, mut squares) = (0usize, 0.0, 0.0);
    for t in tenants.iter().filter(|t| t.queued > 0 && t.target_share > 0.0) {
        let x = t.actual_share / t.target_share;
        n += 1;
        sum += x;
        squares += x * x;
    }
    if n < 2 || squares <= 0.0 { 1.0 } else { sum * sum / (n as f64 * squares) }
}

#[cfg(test)]
#[path = "telemetry_tests.rs"]
mod tests;
