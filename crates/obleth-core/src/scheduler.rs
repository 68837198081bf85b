//! The scheduler's state as its readers see it: the admin API (`GET /api/v1/scheduler`),
//! the metrics endpoint and the operator console.
//!
//! Defined here, not in `obleth-scheduler`, because it is the seam: readers depend on
//! this shape, not on the scheduler that fills it. The admin API renders it through
//! `serde_json::Value`, whose objects sort their keys, so the endpoint's keys come out
//! in alphabetical order whatever the order of the fields below.

use serde::{Deserialize, Serialize};

/// How tenants compete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// All tenants compete globally on their counters.
    Weighted,
    /// Slots are split between groups first, then tenants compete within a group.
    Hierarchical,
}

/// Scheduler state for `GET /api/v1/scheduler`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulerSnapshot {
    pub mode: Mode,
    pub slots_total: u32,
    pub slots_used: u32,
    pub queued: usize,
    pub groups: Vec<GroupView>,
    pub tenants: Vec<TenantView>,
    pub admissions: AdmissionCounts,
    /// Who gets the next slot and why (`None` while no request waits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<NextPick>,
    /// Each model the scheduler knows: its cap, in flight and queued.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelView>,
}

/// The request the scheduler admits when a slot is free, found by the rule it admits by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NextPick {
    pub tenant: String,
    pub group: String,
    /// `holds_no_slot`, `below_reservation` or `lowest_share_score`.
    pub rule: String,
    /// The rule in words, for the console.
    pub reason: String,
}

/// One model in a [`SchedulerSnapshot`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelView {
    pub name: String,
    /// The model's own slot cap in this pool, if any.
    pub cap: Option<u32>,
    pub in_flight: u32,
    pub queued: usize,
}

/// One fairshare group in a [`SchedulerSnapshot`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupView {
    pub name: String,
    pub weight: f64,
    /// Reserved slots as configured (for the whole cluster when the pool is shared).
    pub reserved_slots: Option<u32>,
    /// The in-flight cap as configured (for the whole cluster when the pool is shared).
    pub max_slots: Option<u32>,
    /// The reservation in this pool (scaled to this pod's share of a cluster's cap).
    pub pool_reserved_slots: Option<u32>,
    /// The in-flight cap in this pool (scaled like `pool_reserved_slots`).
    pub pool_max_slots: Option<u32>,
    /// The group's expected split of the slots while it is active: its weighted share,
    /// within its reserved and max slots (hierarchical mode).
    pub cap: u32,
    pub in_flight: u32,
    pub queued: usize,
    pub share_score: f64,
    pub target_share: f64,
    pub actual_share: f64,
}

/// One tenant in a [`SchedulerSnapshot`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantView {
    pub name: String,
    pub group: String,
    pub weight: f64,
    pub queued: usize,
    pub in_flight: u32,
    /// Weighted served work (lower goes first).
    pub share_score: f64,
    /// Cumulative served cost (tokens, weighted as configured).
    pub served_tokens: f64,
    /// Share of the pool this tenant is entitled to among the active tenants.
    pub target_share: f64,
    /// Share of recent service (exponentially decayed) it actually received.
    pub actual_share: f64,
}

/// Admission counts by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionCounts {
    pub fast: u64,
    pub queued: u64,
    pub brownout: u64,
    pub refused_queue_full: u64,
    pub cancelled: u64,
}

/// A scheduler's slot pool, as what shares one cap between pods sees it
/// (`obleth-cluster`'s slot heartbeat).
pub trait SlotPool: Send + Sync + 'static {
    /// Resizes the pool (live); waiting requests are admitted into new room at once, and
    /// a smaller pool interrupts nothing running.
    fn set_slots(&self, slots: u32);

    /// Slots in use now.
    fn in_flight(&self) -> u32;
}

/// A scheduler's record of the work it served per tenant, as what orders every pod's
/// queues by the cluster's service sees it (`obleth-cluster`'s served-work exchange).
/// Tenants are named as the scheduler names them (their names).
pub trait ServedWork: Send + Sync + 'static {
    /// Work completed here since the last call, per tenant.
    fn take_served(&self) -> Vec<(std::sync::Arc<str>, f64)>;

    /// Tenants with requests queued or in flight here.
    fn active_tenants(&self) -> Vec<std::sync::Arc<str>>;

    /// Charges work the cluster's other pods served to this scheduler's counters.
    fn charge_remote(&self, charges: &[(std::sync::Arc<str>, f64)]);
}

/// A pod's view of the cluster's slot pool, for the admin API and the console.
#[async_trait::async_trait]
pub trait ClusterView: Send + Sync + 'static {
    fn status(&self) -> ClusterStatus;

    /// Every live pod and the slots it claims, read from the shared store (bounded by a
    /// short timeout: a store that is away makes this an error, not a hang).
    async fn pods(&self) -> Result<Vec<PodSlots>, String>;
}

/// What a pod knows of its share without asking the shared store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub pod: String,
    /// The cluster-wide cap (`admission.max_in_flight`).
    pub cluster_slots: u32,
    /// This pod's share of it now.
    pub slots: u32,
    pub pods: u32,
    /// Whether the last heartbeat reached the shared store.
    pub connected: bool,
}

/// One pod and the slots it claims.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodSlots {
    pub pod: String,
    pub slots: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire format of `GET /api/v1/scheduler`, which the admin API renders through
    /// `Value` (keys sorted): what its clients read, held here so that a change to these
    /// types is a visible change to the API.
    #[test]
    fn the_snapshot_renders_as_the_admin_api_always_did() {
        let snapshot = SchedulerSnapshot {
            mode: Mode::Hierarchical,
            slots_total: 4,
            slots_used: 1,
            queued: 2,
            groups: vec![GroupView {
                name: "g".into(),
                weight: 2.0,
                reserved_slots: Some(1),
                max_slots: None,
                pool_reserved_slots: Some(1),
                pool_max_slots: None,
                cap: 4,
                in_flight: 1,
                queued: 2,
                share_score: 10.5,
                target_share: 1.0,
                actual_share: 0.25,
            }],
            tenants: vec![TenantView {
                name: "t".into(),
                group: "g".into(),
                weight: 1.0,
                queued: 2,
                in_flight: 1,
                share_score: 10.5,
                served_tokens: 42.0,
                target_share: 1.0,
                actual_share: 0.25,
            }],
            admissions: AdmissionCounts { fast: 1, queued: 2, brownout: 3, refused_queue_full: 4, cancelled: 5 },
            // Added with the console: absent while empty, so the shape above is unchanged.
            next: None,
            models: vec![],
        };
        let json = serde_json::to_value(Some(snapshot)).unwrap_or_default().to_string();
        assert_eq!(
            json,
            concat!(
                r#"{"admissions":{"brownout":3,"cancelled":5,"fast":1,"queued":2,"refused_queue_full":4},"#,
                r#""groups":[{"actual_share":0.25,"cap":4,"in_flight":1,"max_slots":null,"name":"g","#,
                r#""pool_max_slots":null,"pool_reserved_slots":1,"queued":2,"reserved_slots":1,"#,
                r#""share_score":10.5,"target_share":1.0,"weight":2.0}],"mode":"hierarchical","queued":2,"#,
                r#""slots_total":4,"slots_used":1,"tenants":[{"actual_share":0.25,"group":"g","in_flight":1,"#,
                r#""name":"t","queued":2,"served_tokens":42.0,"share_score":10.5,"target_share":1.0,"#,
                r#""weight":1.0}]}"#
            )
        );
        assert_eq!(serde_json::to_value(None::<SchedulerSnapshot>).unwrap_or_default().to_string(), "null");
    }
}
