//! Scheduler gauges, published from a snapshot when Prometheus scrapes (so the hot path
//! pays nothing for them).

use metrics::gauge;

use crate::core::Snapshot;

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
}

/// Sets every scheduler gauge from `s`.
pub fn publish(s: &Snapshot) {
    gauge!(names::SLOTS, "state" => "used").set(s.slots_used as f64);
    gauge!(names::SLOTS, "state" => "total").set(s.slots_total as f64);
    gauge!(names::QUEUED).set(s.queued as f64);
    for g in &s.groups {
        gauge!(names::GROUP_SLOTS, "group" => g.name.clone(), "state" => "cap").set(g.cap as f64);
        gauge!(names::GROUP_SLOTS, "group" => g.name.clone(), "state" => "used").set(g.in_flight as f64);
        // The limits in this pool: 0 reserved when none, the whole pool when uncapped.
        gauge!(names::GROUP_SLOTS, "group" => g.name.clone(), "state" => "reserved")
            .set(g.pool_reserved_slots.unwrap_or(0) as f64);
        gauge!(names::GROUP_SLOTS, "group" => g.name.clone(), "state" => "max")
            .set(g.pool_max_slots.unwrap_or(s.slots_total) as f64);
        gauge!(names::GROUP_QUEUED, "group" => g.name.clone()).set(g.queued as f64);
    }
    for t in &s.tenants {
        gauge!(names::TENANT_QUEUED, "tenant" => t.name.clone()).set(t.queued as f64);
        gauge!(names::TENANT_IN_FLIGHT, "tenant" => t.name.clone()).set(t.in_flight as f64);
        gauge!(names::TENANT_SHARE_SCORE, "tenant" => t.name.clone()).set(t.share_score);
        gauge!(names::TENANT_SHARE, "tenant" => t.name.clone(), "kind" => "target").set(t.target_share);
        gauge!(names::TENANT_SHARE, "tenant" => t.name.clone(), "kind" => "actual").set(t.actual_share);
    }
}
