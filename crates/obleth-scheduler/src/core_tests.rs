//! Decision tests of the scheduler core, and property tests of its invariants.

use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn cfg(mode: Mode, slots: u32) -> Config {
    Config {
        mode,
        slots,
        output_weight: 1.0,
        brownout_after: Some(Duration::from_secs(10)),
        brownout_max_tokens: 64,
        prediction_alpha: 0.0,
        cold_start_output: 256,
        max_queue_per_tenant: 100,
        max_queue: 1_000,
        share_half_life: Duration::from_secs(30),
    }
}

fn spec(name: &str, weight: u32, group: &str) -> TenantSpec<'static> {
    TenantSpec {
        name: name.to_owned().into(),
        id: Some(format!("id-{name}").into()),
        weight,
        group: group.to_owned().into(),
        max_in_flight: None,
        never_degrade: false,
    }
}

fn req(tenant: TenantSpec<'_>, cost: u64) -> Request<'_> {
    Request {
        tenant,
        model: "m".into(),
        model_weight: 1.0,
        model_slots: None,
        estimate: Tokens { input: cost, output: 0 },
    }
}

const T0: Duration = Duration::ZERO;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn admitted(s: Submitted) -> Grant {
    match s {
        Submitted::Admitted(g) => g,
        other => panic!("expected admission, got {other:?}"),
    }
}

fn queued(s: Submitted) -> Ticket {
    match s {
        Submitted::Queued(t) => t,
        other => panic!("expected queueing, got {other:?}"),
    }
}

#[test]
fn fast_path_then_queue_then_dispatch_on_release() {
    let mut s = Scheduler::new(cfg(Mode::Weighted, 1));
    let a = admitted(s.submit(T0, req(spec("a", 1, "g"), 10)).0);
    assert_eq!(a.class, Class::Fast);
    let b = queued(s.submit(T0, req(spec("b", 1, "g"), 10)).0);
    assert_eq!((s.used(), s.queued()), (1, 1));
    let grants = s.complete(secs(1), a.ticket, None);
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].ticket, b);
    assert_eq!(grants[0].class, Class::Queued);
    assert_eq!(grants[0].waited, secs(1));
    assert!(s.complete(secs(1), a.ticket, None).is_empty(), "completion is idempotent");
}

/// Runs a saturated pool in a closed loop: every tenant keeps `slots + 2` requests
/// outstanding (so it is always backlogged), and requests complete in the order they
/// were admitted (every slot turns over at the same pace).
/// Returns how many grants each tenant got after the initial fill.
fn saturated(s: &mut Scheduler, tenants: &[(TenantSpec<'_>, u64)], grants: usize) -> Vec<usize> {
    saturated_checked(s, tenants, grants, |_| {})
}

/// `saturated`, calling `check` after every step.
fn saturated_checked(
    s: &mut Scheduler,
    tenants: &[(TenantSpec<'_>, u64)],
    grants: usize,
    check: impl Fn(&Scheduler),
) -> Vec<usize> {
    let per_tenant = s.config.slots as usize + 2;
    let mut counts = vec![0; tenants.len()];
    let index: HashMap<Arc<str>, usize> =
        tenants.iter().enumerate().map(|(i, (t, _))| (Arc::from(&*t.name), i)).collect();
    let mut now = 1u64;
    for (spec, cost) in tenants {
        let waiting =
            s.tenant_index.get(&*spec.name).map(|&t| s.tenants[t].queue.len() + s.tenants[t].in_flight as usize);
        for _ in waiting.unwrap_or(0)..per_tenant {
            if let Submitted::Refused(r) = s.submit(Duration::from_millis(now), req(spec.clone(), *cost)).0 {
                panic!("{r:?}");
            }
        }
    }
    let mut order: std::collections::VecDeque<Ticket> = {
        let mut v: Vec<Ticket> = s.in_flight.keys().copied().collect();
        v.sort();
        v.into()
    };
    while counts.iter().sum::<usize>() < grants {
        now += 1;
        let oldest = order.pop_front().expect("something in flight");
        let done = s.in_flight[&oldest].tenant;
        let name = s.tenants[done].name.clone();
        for g in s.complete(Duration::from_millis(now), oldest, None) {
            let t = s.in_flight[&g.ticket].tenant;
            counts[index[&s.tenants[t].name]] += 1;
            order.push_back(g.ticket);
        }
        // The client whose request finished sends the next one.
        let i = index[&name];
        s.submit(Duration::from_millis(now), req(tenants[i].0.clone(), tenants[i].1));
        check(s);
    }
    counts
}

#[test]
fn weighted_mode_shares_by_weight_in_tokens() {
    let mut s = Scheduler::new(cfg(Mode::Weighted, 4));
    // b's requests cost twice as much: with weights 2:1 and costs 1:2, a gets 4x b's grants.
    let counts = saturated(&mut s, &[(spec("a", 2, "g"), 100), (spec("b", 1, "g"), 200)], 1000);
    let ratio = counts[0] as f64 / counts[1] as f64;
    assert!((ratio - 4.0).abs() < 0.1, "{counts:?}");
}

#[test]
fn hierarchical_caps_follow_the_product_example() {
    let mut s = Scheduler::new(cfg(Mode::Hierarchical, 8));
    s.set_group_weight("chatbot", 500);
    s.set_group_weight("api", 50);
    for _ in 0..20 {
        s.submit(T0, req(spec("chatbot", 500, "chatbot"), 10));
        s.submit(T0, req(spec("api-batch", 50, "api"), 10));
    }
    let snap = s.snapshot(T0);
    let caps: Vec<(String, u32, u32)> = snap.groups.iter().map(|g| (g.name.clone(), g.cap, g.in_flight)).collect();
    // The first 8 arrivals alternate, so both groups start with in-flight work; caps are 7 and 1.
    assert_eq!(caps.iter().find(|g| g.0 == "chatbot").map(|g| g.1), Some(7));
    assert_eq!(caps.iter().find(|g| g.0 == "api").map(|g| g.1), Some(1));
    // In steady state the split converges to the caps.
    let counts = saturated(&mut s, &[(spec("chatbot", 500, "chatbot"), 10), (spec("api-batch", 50, "api"), 10)], 800);
    let api_share = counts[1] as f64 / counts.iter().sum::<usize>() as f64;
    assert!((api_share - 1.0 / 8.0).abs() < 0.02, "{counts:?}");
}

#[test]
fn an_idle_group_leaves_no_slot_unused() {
    let mut s = Scheduler::new(cfg(Mode::Hierarchical, 4));
    s.set_group_weight("big", 3);
    s.set_group_weight("small", 1);
    for _ in 0..10 {
        s.submit(T0, req(spec("x", 1, "small"), 10));
    }
    assert_eq!(s.used(), 4, "the only active group uses every slot");
}

#[test]
fn a_returning_tenant_banks_no_credit() {
    let mut s = Scheduler::new(cfg(Mode::Weighted, 1));
    // a is served alone for a long time.
    let mut t = admitted(s.submit(T0, req(spec("a", 1, "g"), 10)).0).ticket;
    for i in 0..100 {
        let next = queued(s.submit(secs(i), req(spec("a", 1, "g"), 10)).0);
        let g = s.complete(secs(i), t, None);
        assert_eq!(g[0].ticket, next);
        t = next;
    }
    // b arrives; a keeps a backlog. b must not get 100 grants in a row.
    let mut owners = vec![];
    let mut pending: HashMap<Ticket, &str> = HashMap::new();
    for _ in 0..5 {
        pending.insert(queued(s.submit(secs(200), req(spec("b", 1, "g"), 10)).0), "b");
        pending.insert(queued(s.submit(secs(200), req(spec("a", 1, "g"), 10)).0), "a");
    }
    for _ in 0..8 {
        let g = s.complete(secs(201), t, None);
        t = g[0].ticket;
        owners.push(pending[&t]);
    }
    // b starts level with a (lifted to a's counter), not 1000 tokens behind: they alternate.
    assert_eq!(owners.iter().filter(|o| **o == "b").count(), 4, "{owners:?}");
    assert!(owners.windows(2).all(|w| w[0] != w[1]), "{owners:?}");
}

#[test]
fn brownout_degrades_long_waiters_unless_exempt() {
    let mut s = Scheduler::new(cfg(Mode::Weighted, 1));
    let a = admitted(s.submit(T0, req(spec("a", 1, "g"), 10)).0);
    queued(s.submit(T0, req(spec("b", 1, "g"), 10)).0);
    let mut vip = spec("vip", 1, "g");
    vip.never_degrade = true;
    queued(s.submit(T0, req(vip, 10)).0);
    let g = s.complete(secs(11), a.ticket, None);
    assert_eq!(g[0].class, Class::Brownout);
    assert_eq!(g[0].max_tokens_cap, Some(64));
    let g = s.complete(secs(12), g[0].ticket, None);
    assert_eq!(g[0].class, Class::Queued, "never_degrade tenants wait but are not capped");
    assert_eq!(g[0].max_tokens_cap, None);
    assert_eq!(s.counts().brownout, 1);
}

#[test]
fn queues_are_bounded() {
    let mut c = cfg(Mode::Weighted, 1);
    c.max_queue_per_tenant = 2;
    c.max_queue = 3;
    let mut s = Scheduler::new(c);
    admitted(s.submit(T0, req(spec("a", 1, "g"), 1)).0);
    queued(s.submit(T0, req(spec("a", 1, "g"), 1)).0);
    queued(s.submit(T0, req(spec("a", 1, "g"), 1)).0);
    assert_eq!(s.submit(T0, req(spec("a", 1, "g"), 1)).0, Submitted::Refused(Refusal::TenantQueueFull));
    queued(s.submit(T0, req(spec("b", 1, "g"), 1)).0);
    assert_eq!(s.submit(T0, req(spec("c", 1, "g"), 1)).0, Submitted::Refused(Refusal::QueueFull));
}

#[test]
fn cancel_removes_a_waiter() {
    let mut s = Scheduler::new(cfg(Mode::Weighted, 1));
    let a = admitted(s.submit(T0, req(spec("a", 1, "g"), 1)).0);
    let b = queued(s.submit(T0, req(spec("b", 1, "g"), 1)).0);
    assert!(s.cancel(T0, b).0);
    assert!(!s.cancel(T0, b).0);
    assert!(s.complete(T0, a.ticket, None).is_empty());
    assert_eq!((s.used(), s.queued()), (0, 0));
}

#[test]
fn model_and_tenant_caps_hold_without_blocking_others() {
    let mut s = Scheduler::new(cfg(Mode::Weighted, 8));
    let mut big = req(spec("a", 1, "g"), 1);
    big.model = "70b".into();
    big.model_slots = Some(1);
    admitted(s.submit(T0, big.clone()).0);
    queued(s.submit(T0, big).0);
    // Another model still gets slots.
    admitted(s.submit(T0, req(spec("b", 1, "g"), 1)).0);
    let mut capped = spec("c", 1, "g");
    capped.max_in_flight = Some(1);
    admitted(s.submit(T0, req(capped.clone(), 1)).0);
    queued(s.submit(T0, req(capped, 1)).0);
    assert_eq!((s.used(), s.queued()), (3, 2));
}

#[test]
fn completion_replaces_the_estimate() {
    let mut s = Scheduler::new(cfg(Mode::Weighted, 1));
    let mut r = req(spec("a", 1, "g"), 0);
    r.estimate = Tokens { input: 10, output: 1000 };
    let g = admitted(s.submit(T0, r).0);
    assert_eq!(s.snapshot(T0).tenants[0].share_score, 1010.0);
    s.complete(T0, g.ticket, Some(Tokens { input: 10, output: 5 }));
    let t = &s.snapshot(T0).tenants[0];
    assert_eq!(t.share_score, 15.0);
    assert_eq!(t.served_tokens, 15.0);
}

#[test]
fn model_admission_weight_multiplies_the_cost() {
    let mut s = Scheduler::new(cfg(Mode::Weighted, 1));
    let mut r = req(spec("a", 2, "g"), 100);
    r.model_weight = 4.0;
    let g = admitted(s.submit(T0, r).0);
    s.complete(T0, g.ticket, None);
    assert_eq!(s.snapshot(T0).tenants[0].share_score, 100.0 * 4.0 / 2.0);
}

#[test]
fn weight_changes_apply_to_the_next_pick() {
    let mut s = Scheduler::new(cfg(Mode::Weighted, 2));
    let counts = saturated(&mut s, &[(spec("a", 1, "g"), 10), (spec("b", 1, "g"), 10)], 200);
    assert!((counts[0] as i64 - counts[1] as i64).abs() <= 2, "{counts:?}");
    s.update_tenant(T0, &spec("a", 9, "g"));
    let counts = saturated(&mut s, &[(spec("a", 9, "g"), 10), (spec("b", 1, "g"), 10)], 1000);
    // counts include the first run's queue; the new split dominates.
    let share = counts[0] as f64 / counts.iter().sum::<usize>() as f64;
    assert!(share > 0.85, "{counts:?}");
}

// === group limits ===

fn limits(reserved: Option<u32>, max: Option<u32>) -> GroupLimits {
    GroupLimits { reserved_slots: reserved, max_slots: max }
}

fn group_in_flight(s: &Scheduler, group: &str) -> u32 {
    s.group_index.get(group).map_or(0, |&g| s.groups[g].in_flight)
}

#[test]
fn max_slots_hold_under_backlog() {
    let mut s = Scheduler::new(cfg(Mode::Hierarchical, 8));
    s.set_group_weight("capped", 10);
    s.set_group_limits(T0, "capped", limits(None, Some(2)));
    for _ in 0..20 {
        s.submit(T0, req(spec("a", 1, "capped"), 10));
    }
    // Slots are free, but the group is at its cap: the rest waits.
    assert_eq!((s.used(), s.queued()), (2, 18));
    for _ in 0..20 {
        s.submit(T0, req(spec("b", 1, "other"), 10));
    }
    assert_eq!(group_in_flight(&s, "capped"), 2);
    assert_eq!(s.used(), 8, "the other group uses the rest");
    // With a weight of 10:1 the capped group would take 7 of 8 slots; it keeps 2.
    let tenants = [(spec("a", 1, "capped"), 10), (spec("b", 1, "other"), 10)];
    let counts = saturated_checked(&mut s, &tenants, 800, |s| {
        assert!(group_in_flight(s, "capped") <= 2, "max_slots exceeded");
        assert_eq!(s.used(), 8);
    });
    let share = counts[0] as f64 / counts.iter().sum::<usize>() as f64;
    assert!((share - 2.0 / 8.0).abs() < 0.02, "{counts:?}");
    let view = s.snapshot(T0).groups.into_iter().find(|g| g.name == "capped").expect("group");
    assert_eq!((view.max_slots, view.pool_max_slots, view.cap), (Some(2), Some(2), 2));
}

#[test]
fn a_reservation_gives_a_light_group_its_slots_against_a_heavy_backlog() {
    let mut s = Scheduler::new(cfg(Mode::Hierarchical, 8));
    s.set_group_weight("heavy", 100);
    s.set_group_weight("light", 1);
    // The heavy group fills the pool first.
    for _ in 0..20 {
        s.submit(T0, req(spec("h", 1, "heavy"), 10));
    }
    assert_eq!(group_in_flight(&s, "heavy"), 8);
    let tenants = [(spec("h", 1, "heavy"), 10), (spec("l", 1, "light"), 10)];
    // Without a reservation the light group keeps the one slot every group keeps.
    let counts = saturated(&mut s, &tenants, 400);
    let share = counts[1] as f64 / counts.iter().sum::<usize>() as f64;
    assert!((share - 1.0 / 8.0).abs() < 0.02, "{counts:?}");
    assert_eq!(group_in_flight(&s, "light"), 1);
    // With 3 reserved, it gets 3 as soon as slots free, and keeps them.
    s.set_group_limits(T0, "light", limits(Some(3), None));
    let counts = saturated(&mut s, &tenants, 800);
    assert_eq!(group_in_flight(&s, "light"), 3);
    let share = counts[1] as f64 / counts.iter().sum::<usize>() as f64;
    assert!((share - 3.0 / 8.0).abs() < 0.02, "{counts:?}");
    let caps: Vec<(String, u32)> = s.snapshot(T0).groups.into_iter().map(|g| (g.name, g.cap)).collect();
    assert_eq!(caps, [("heavy".to_owned(), 5), ("light".to_owned(), 3)]);
}

#[test]
fn a_reservation_is_a_floor_not_an_addition() {
    // Equal weights: 4 each. A reservation of 2 is below the weighted share: no change.
    let mut s = Scheduler::new(cfg(Mode::Hierarchical, 8));
    s.set_group_limits(T0, "a", limits(Some(2), None));
    let tenants = [(spec("a", 1, "a"), 10), (spec("b", 1, "b"), 10)];
    let counts = saturated(&mut s, &tenants, 1000);
    let share = counts[0] as f64 / counts.iter().sum::<usize>() as f64;
    assert!((share - 0.5).abs() < 0.02, "{counts:?}");
}

#[test]
fn reserved_slots_serve_others_while_their_group_is_idle() {
    let mut s = Scheduler::new(cfg(Mode::Hierarchical, 8));
    s.set_group_limits(T0, "reserved", limits(Some(6), None));
    let heavy: Vec<Ticket> = (0..20)
        .filter_map(|_| match s.submit(T0, req(spec("h", 1, "heavy"), 10)).0 {
            Submitted::Admitted(g) => Some(g.ticket),
            _ => None,
        })
        .collect();
    assert_eq!(heavy.len(), 8, "nothing waits in the reserved group: every slot is used");
    // The reserved group's work arrives: it takes the next freed slots up to 6.
    for _ in 0..10 {
        queued(s.submit(secs(1), req(spec("r", 1, "reserved"), 10)).0);
    }
    for (i, t) in heavy.iter().enumerate() {
        s.complete(secs(2), *t, None);
        assert_eq!(group_in_flight(&s, "reserved"), (i as u32 + 1).min(6), "after {} completions", i + 1);
    }
    assert_eq!(s.used(), 8);
    assert_eq!(group_in_flight(&s, "heavy"), 2);
}

#[test]
fn changed_limits_apply_live() {
    let mut s = Scheduler::new(cfg(Mode::Hierarchical, 8));
    s.set_group_limits(T0, "g", limits(None, Some(2)));
    for _ in 0..10 {
        s.submit(T0, req(spec("a", 1, "g"), 10));
    }
    assert_eq!(s.used(), 2);
    // Raised: the waiting requests get the room at once.
    let grants = s.set_group_limits(secs(1), "g", limits(None, Some(5)));
    assert_eq!((grants.len(), s.used()), (3, 5));
    // Lowered: nothing running is interrupted, nothing more admitted until below the cap.
    assert!(s.set_group_limits(secs(1), "g", limits(None, Some(1))).is_empty());
    let in_flight: Vec<Ticket> = s.in_flight.keys().copied().collect();
    for t in &in_flight[..4] {
        assert!(s.complete(secs(2), *t, None).is_empty());
    }
    assert_eq!(s.complete(secs(2), in_flight[4], None).len(), 1, "below the cap again");
    assert_eq!(s.used(), 1);
    // Removed: the four still waiting get slots at once.
    assert_eq!(s.set_group_limits(secs(3), "g", GroupLimits::default()).len(), 4);
    assert_eq!((s.used(), s.queued()), (5, 0));
    assert!(s.snapshot(T0).groups[0].max_slots.is_none());
}

#[test]
fn oversubscribed_reservations_never_exceed_the_pool_nor_starve_a_group() {
    let mut s = Scheduler::new(cfg(Mode::Hierarchical, 5));
    s.set_group_limits(T0, "a", limits(Some(4), None));
    s.set_group_limits(T0, "b", limits(Some(4), None));
    let tenants = [(spec("a", 1, "a"), 10), (spec("b", 1, "b"), 10), (spec("c", 1, "c"), 10)];
    // a arrives first and takes the whole pool; the first freed slots go to b and c.
    saturated(&mut s, &tenants, 5);
    saturated_checked(&mut s, &tenants, 600, |s| {
        assert!(s.used() <= 5);
        assert!(group_in_flight(s, "c") >= 1, "the unreserved group keeps its slot");
        let (a, b) = (group_in_flight(s, "a"), group_in_flight(s, "b"));
        assert!(a.abs_diff(b) <= 1, "reservations fill in proportion: {a} vs {b}");
    });
}

#[test]
fn limits_scale_with_the_pods_share_of_the_pool() {
    // Created with the cluster's cap; the pod's pool is then set to its share.
    let mut s = Scheduler::new(cfg(Mode::Hierarchical, 30));
    s.set_group_limits(T0, "g", limits(Some(3), Some(6)));
    s.submit(T0, req(spec("a", 1, "g"), 10));
    let view = |s: &Scheduler| {
        let g = s.snapshot(T0).groups.into_iter().find(|g| g.name == "g").expect("group");
        (g.reserved_slots, g.max_slots, g.pool_reserved_slots, g.pool_max_slots)
    };
    assert_eq!(view(&s), (Some(3), Some(6), Some(3), Some(6)));
    s.set_slots(T0, 10);
    assert_eq!(view(&s), (Some(3), Some(6), Some(1), Some(2)));
    s.set_slots(T0, 4);
    assert_eq!(view(&s), (Some(3), Some(6), Some(0), Some(1)), "a max stays at least 1");
    for _ in 0..5 {
        s.submit(T0, req(spec("a", 1, "g"), 10));
    }
    assert_eq!(s.used(), 1);
    s.set_slots(T0, 30);
    assert_eq!(s.used(), 6);
}

// === forgetting ===

fn tenant_names(s: &Scheduler) -> Vec<String> {
    let mut names: Vec<String> = s.snapshot(T0).tenants.into_iter().map(|t| t.name).collect();
    names.sort();
    names
}

fn group_names(s: &Scheduler) -> Vec<String> {
    let mut names: Vec<String> = s.snapshot(T0).groups.into_iter().map(|g| g.name).collect();
    names.sort();
    names
}

#[test]
fn a_deleted_idle_tenant_leaves_with_its_empty_group_and_the_group_keeps_its_settings() {
    let mut s = Scheduler::new(cfg(Mode::Hierarchical, 4));
    s.set_group_weight("solo", 7);
    s.set_group_limits(T0, "solo", limits(Some(1), Some(2)));
    for (name, group) in [("a", "solo"), ("b", "shared"), ("c", "shared")] {
        let g = admitted(s.submit(T0, req(spec(name, 1, group), 10)).0);
        s.complete(secs(1), g.ticket, None);
    }
    assert_eq!(tenant_names(&s), ["a", "b", "c"]);
    s.remove_tenant("id-a");
    s.remove_tenant("id-b");
    s.remove_tenant("id-nobody");
    assert_eq!(tenant_names(&s), ["c"]);
    assert_eq!(group_names(&s), ["shared"], "a group with no tenant left goes");
    check(&s);
    // The group is configured in the store still: populated again, it has its settings.
    admitted(s.submit(secs(2), req(spec("d", 1, "solo"), 10)).0);
    let solo = s.snapshot(T0).groups.into_iter().find(|g| g.name == "solo").expect("solo");
    assert_eq!((solo.weight, solo.reserved_slots, solo.max_slots), (7.0, Some(1), Some(2)));
}

#[test]
fn a_resync_forgets_idle_tenants_only() {
    // After missed changes the pod forgets whoever is idle: a deletion it missed does not
    // keep a tenant here; tenants with work stay.
    let mut s = Scheduler::new(cfg(Mode::Hierarchical, 2));
    let idle = admitted(s.submit(T0, req(spec("idle", 1, "g1"), 10)).0);
    s.complete(secs(1), idle.ticket, None);
    let busy = admitted(s.submit(T0, req(spec("busy", 1, "g2"), 10)).0);
    s.forget_idle_tenants();
    check(&s);
    assert_eq!(tenant_names(&s), ["busy"]);
    assert_eq!(group_names(&s), ["g2"]);
    // The forgotten tenant comes back from its next request, level with the others.
    admitted(s.submit(secs(2), req(spec("idle", 1, "g1"), 10)).0);
    assert_eq!(tenant_names(&s), ["busy", "idle"]);
    s.complete(secs(3), busy.ticket, None);
    check(&s);
}

#[test]
fn a_deleted_busy_tenant_is_served_then_leaves() {
    let mut s = Scheduler::new(cfg(Mode::Hierarchical, 1));
    let running = admitted(s.submit(T0, req(spec("a", 1, "g"), 10)).0);
    let waiting = queued(s.submit(T0, req(spec("a", 1, "g"), 10)).0);
    s.remove_tenant("id-a");
    check(&s);
    assert_eq!(tenant_names(&s), ["a"], "kept while it has work");
    // Its running request finishes, and its queued one is served, not dropped.
    let next = s.complete(secs(1), running.ticket, None);
    assert_eq!(next.iter().map(|g| g.ticket).collect::<Vec<_>>(), [waiting]);
    assert_eq!(tenant_names(&s), ["a"]);
    check(&s);
    assert!(s.complete(secs(2), waiting, None).is_empty());
    assert!(tenant_names(&s).is_empty(), "gone with its last request");
    assert!(group_names(&s).is_empty(), "and its group with it");
    check(&s);
}

#[test]
fn a_cancelled_last_request_lets_a_deleted_tenant_go() {
    let mut s = Scheduler::new(cfg(Mode::Weighted, 1));
    let running = admitted(s.submit(T0, req(spec("b", 1, "g"), 10)).0);
    let waiting = queued(s.submit(T0, req(spec("a", 1, "g"), 10)).0);
    s.remove_tenant("id-a");
    assert_eq!(tenant_names(&s), ["a", "b"]);
    assert!(s.cancel(secs(1), waiting).0);
    assert_eq!(tenant_names(&s), ["b"]);
    assert_eq!(group_names(&s), ["*"], "weighted mode's one group stays");
    s.remove_tenant("id-b");
    s.complete(secs(2), running.ticket, None);
    assert!(tenant_names(&s).is_empty());
    assert_eq!(group_names(&s), ["*"]);
}

#[test]
fn a_tenant_that_comes_back_starts_level_with_the_others() {
    let mut s = Scheduler::new(cfg(Mode::Weighted, 1));
    let a = admitted(s.submit(T0, req(spec("a", 1, "g"), 1000)).0);
    s.complete(secs(1), a.ticket, None);
    s.remove_tenant("id-a");
    let b = admitted(s.submit(secs(2), req(spec("b", 1, "g"), 10)).0);
    // A new tenant of the same name: a fresh entry, lifted to the active floor.
    queued(s.submit(secs(2), req(spec("a", 1, "g"), 10)).0);
    let snap = s.snapshot(secs(2));
    let a = snap.tenants.iter().find(|t| t.name == "a").expect("a");
    assert_eq!((a.served_tokens, a.share_score), (0.0, 10.0), "no history, level with b");
    s.complete(secs(3), b.ticket, None);
}

#[test]
fn a_group_deleted_from_the_store_weighs_the_default_again() {
    let mut s = Scheduler::new(cfg(Mode::Hierarchical, 4));
    s.set_group_weight("g", 9);
    s.set_group_limits(T0, "g", limits(None, Some(1)));
    s.submit(T0, req(spec("a", 1, "g"), 10));
    s.submit(T0, req(spec("a", 1, "g"), 10));
    assert_eq!((s.used(), s.queued()), (1, 1));
    // Its limit goes with it: the waiting request is admitted at once.
    assert_eq!(s.reset_group(secs(1), "g").len(), 1);
    let g = s.snapshot(T0).groups.into_iter().find(|g| g.name == "g").expect("g");
    assert_eq!((g.weight, g.max_slots), (DEFAULT_GROUP_WEIGHT as f64, None));
    assert!(s.group_weights.is_empty() && s.group_limits.is_empty(), "nothing kept for a deleted group");
}

#[test]
fn a_renamed_tenant_keeps_its_entry_under_the_new_name() {
    let mut s = Scheduler::new(cfg(Mode::Hierarchical, 1));
    let g = admitted(s.submit(T0, req(spec("old", 1, "g"), 10)).0);
    s.complete(secs(1), g.ticket, None);
    let renamed = TenantSpec { name: "new".into(), ..spec("old", 1, "g") };
    s.update_tenant(secs(2), &renamed);
    let snap = s.snapshot(T0);
    assert_eq!(tenant_names(&s), ["new"]);
    assert_eq!(snap.tenants[0].served_tokens, 10.0, "the same tenant, history kept");
    // Deleting it by id finds it under its new name.
    s.remove_tenant("id-old");
    assert!(tenant_names(&s).is_empty());
    check(&s);
}

#[test]
fn a_name_taken_over_by_another_tenant_retires_the_old_entry() {
    let mut s = Scheduler::new(cfg(Mode::Hierarchical, 2));
    for (name, group) in [("a", "ga"), ("b", "gb")] {
        let g = admitted(s.submit(T0, req(spec(name, 1, group), 10)).0);
        s.complete(secs(1), g.ticket, None);
    }
    // In the store b was deleted and a renamed to b; a request of a (under its new name)
    // arrives before this pod heard of either change.
    let a_as_b = TenantSpec { name: "b".into(), ..spec("a", 1, "ga") };
    let g = admitted(s.submit(secs(2), req(a_as_b, 10)).0);
    assert_eq!(tenant_names(&s), ["b"], "the entry under a's old name left");
    assert_eq!(group_names(&s), ["ga"], "b moved to a's group, which it keeps");
    check(&s);
    s.remove_tenant("id-b");
    assert_eq!(tenant_names(&s), ["b"], "b's old id names nothing here any more");
    s.remove_tenant("id-a");
    s.complete(secs(3), g.ticket, None);
    assert!(tenant_names(&s).is_empty());
}

#[test]
fn a_changed_model_is_rebuilt_from_the_next_request_once_idle() {
    let mut s = Scheduler::new(cfg(Mode::Weighted, 4));
    let mut r = req(spec("a", 1, "g"), 10);
    r.model = "big".into();
    r.model_slots = Some(1);
    let first = admitted(s.submit(T0, r.clone()).0);
    queued(s.submit(T0, r.clone()).0);
    s.forget_model("big");
    assert!(s.model_index.contains_key("big"), "kept while it has work");
    let second = s.complete(secs(1), first.ticket, None);
    assert!(s.model_index.contains_key("big"));
    s.complete(secs(2), second[0].ticket, None);
    assert!(s.model_index.is_empty(), "dropped with its last request");
    // Rebuilt with the cap the request carries now.
    r.model_slots = Some(2);
    admitted(s.submit(secs(3), r.clone()).0);
    admitted(s.submit(secs(3), r).0);
    check(&s);
}

// === properties ===

#[derive(Debug, Clone)]
enum Op {
    Submit {
        tenant: u8,
        cost: u16,
        model: u8,
    },
    Complete {
        pick: u16,
        actual: u16,
    },
    Cancel {
        pick: u16,
    },
    Reweigh {
        tenant: u8,
        weight: u8,
    },
    /// Limits of group `g{group}`; 0 is none.
    Limits {
        group: u8,
        reserved: u8,
        max: u8,
    },
    /// The tenant is deleted from the store; its next submission recreates it (new id).
    /// `late`: the scheduler hears of it only at the next `Deliver` (from another pod,
    /// after requests that already carry what came next).
    Delete {
        tenant: u8,
        late: bool,
    },
    /// Late deletions arrive.
    Deliver,
    /// The tenant is renamed in the store (same id): to a new name, or to the name of
    /// tenant `take` if that one is deleted (a freed name reused). `notify`: the change
    /// is announced; otherwise the scheduler learns it from the next request.
    Rename {
        tenant: u8,
        take: Option<u8>,
        notify: bool,
    },
    /// The tenant moves to group `g{group}` (its next request or a change says so).
    Regroup {
        tenant: u8,
        group: u8,
        notify: bool,
    },
    /// A change to model `m{model}` is announced.
    ForgetModel {
        model: u8,
    },
    /// Group `g{group}` is deleted from the store.
    ResetGroup {
        group: u8,
    },
    /// The cluster's exchange of served work.
    TakeServed,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, 1u16..500, 0u8..3).prop_map(|(tenant, cost, model)| Op::Submit { tenant, cost, model }),
        3 => (any::<u16>(), 0u16..500).prop_map(|(pick, actual)| Op::Complete { pick, actual }),
        1 => any::<u16>().prop_map(|pick| Op::Cancel { pick }),
        1 => (0u8..6, 1u8..20).prop_map(|(tenant, weight)| Op::Reweigh { tenant, weight }),
        1 => (0u8..3, 0u8..4, 0u8..4).prop_map(|(group, reserved, max)| Op::Limits { group, reserved, max }),
        1 => (0u8..6, any::<bool>()).prop_map(|(tenant, late)| Op::Delete { tenant, late }),
        1 => Just(Op::Deliver),
        1 => (0u8..6, proptest::option::of(0u8..6), any::<bool>())
            .prop_map(|(tenant, take, notify)| Op::Rename { tenant, take, notify }),
        1 => (0u8..6, 0u8..4, any::<bool>()).prop_map(|(tenant, group, notify)| Op::Regroup { tenant, group, notify }),
        1 => (0u8..3).prop_map(|model| Op::ForgetModel { model }),
        1 => (0u8..3).prop_map(|group| Op::ResetGroup { group }),
        1 => Just(Op::TakeServed),
    ]
}

/// The store as the property tests see it: each tenant's current name, id and weight
/// (ids change when a tenant is deleted and created again, names when it is renamed).
struct Tenants {
    weights: [u8; 6],
    groups: [u8; 6],
    /// Deletions of each tenant so far (its id's generation).
    generation: [u32; 6],
    names: [String; 6],
    /// Names given so far (new names are `n{renames}`).
    renames: u32,
    /// In the store (created by its first submission after a deletion).
    alive: [bool; 6],
    /// Ids deleted whose deletion the scheduler has not heard of yet.
    late: Vec<Arc<str>>,
}

impl Tenants {
    fn spec(&self, i: u8) -> TenantSpec<'_> {
        let i = i as usize;
        TenantSpec {
            name: self.names[i].as_str().into(),
            id: Some(format!("id{i}.{}", self.generation[i]).into()),
            group: format!("g{}", self.groups[i]).into(),
            ..tenant_spec(i as u8, self.weights[i])
        }
    }
}

fn tenant_spec(i: u8, weight: u8) -> TenantSpec<'static> {
    TenantSpec {
        name: format!("t{i}").into(),
        id: Some(format!("id{i}").into()),
        weight: weight as u32,
        group: format!("g{}", i % 3).into(),
        max_in_flight: (i == 5).then_some(2),
        never_degrade: false,
    }
}

/// Checks the invariants against the core's internal state.
fn check(s: &Scheduler) {
    assert!(s.used <= s.config.slots, "capacity exceeded");
    assert_eq!(s.used as usize, s.in_flight.len());
    assert_eq!(s.queued, s.tenants.iter().map(|(_, t)| t.queue.len()).sum::<usize>());
    for (_, m) in &s.models {
        assert!(m.cap.is_none_or(|c| m.in_flight <= c), "model cap exceeded");
    }
    check_indexes(s);
    if s.used < s.config.slots {
        // Work conservation: no eligible request may wait while a slot is free.
        for (_, t) in &s.tenants {
            let Some(head) = t.queue.front() else { continue };
            let tenant_ok = t.max_in_flight.is_none_or(|c| t.in_flight < c);
            let group_ok = s.groups[t.group].is_open();
            let m = &s.models[head.model];
            let model_ok = m.cap.is_none_or(|c| m.in_flight < c);
            assert!(!(tenant_ok && group_ok && model_ok), "a slot is free while {} waits", t.name);
        }
    }
    if s.config.mode == Mode::Hierarchical {
        let active = s.groups.iter().filter(|(_, g)| g.is_active()).count() as u32;
        for (_, g) in &s.groups {
            assert_eq!(g.is_active(), g.cap > 0, "group {} cap {} active {}", g.name, g.cap, g.is_active());
            assert!(g.max.is_none_or(|m| g.cap <= m), "group {} cap {} above its max {:?}", g.name, g.cap, g.max);
        }
        if active > 0 && active <= s.config.slots {
            let room: u64 =
                s.groups.iter().filter(|(_, g)| g.is_active()).map(|(_, g)| g.max.unwrap_or(u32::MAX) as u64).sum();
            let caps: u32 = s.groups.iter().map(|(_, g)| g.cap).sum();
            assert_eq!(caps as u64, room.min(s.config.slots as u64));
        }
    }
}

/// Every index agrees with the entries, and nothing is held that nothing needs: a
/// deleted tenant, a retired model or a group without tenants is there only while it has
/// work queued or in flight.
fn check_indexes(s: &Scheduler) {
    assert_eq!(s.tenant_index.len(), s.tenants.len());
    for (t, tenant) in &s.tenants {
        assert_eq!(s.tenant_index.get(&tenant.name), Some(&t), "name index of {}", tenant.name);
        assert!(s.groups.contains(tenant.group), "{} in a group that left", tenant.name);
        let busy = !tenant.queue.is_empty() || tenant.in_flight > 0;
        assert!(!tenant.deleted || busy, "deleted tenant {} kept while idle", tenant.name);
        if let Some(id) = &tenant.id
            && !tenant.deleted
        {
            assert_eq!(s.tenant_ids.get(id), Some(&t), "id index of {}", tenant.name);
        }
        for w in &tenant.queue {
            assert_eq!(s.waiting.get(&w.ticket), Some(&t));
            assert!(s.models.contains(w.model));
        }
    }
    for (id, &t) in &s.tenant_ids {
        let tenant = &s.tenants[t];
        assert!(tenant.id.as_ref() == Some(id) && !tenant.deleted, "id {id} indexes the wrong tenant");
    }
    assert_eq!(s.waiting.len(), s.queued);
    for f in s.in_flight.values() {
        assert!(s.tenants.contains(f.tenant) && s.groups.contains(f.group) && s.models.contains(f.model));
    }
    assert_eq!(s.group_index.len(), s.groups.len());
    for (g, group) in &s.groups {
        assert_eq!(s.group_index.get(&group.name), Some(&g));
        let members = s.tenants.iter().filter(|(_, t)| t.group == g).count();
        assert_eq!(group.members, members, "members of {}", group.name);
        if s.config.mode == Mode::Hierarchical {
            assert!(members > 0 || group.is_active(), "group {} kept with no tenants and no work", group.name);
        }
        for &(_, t) in group.ready.iter().chain(&group.active) {
            assert_eq!(s.tenants.get(t).map(|t| t.group), Some(g), "group {} lists a tenant not in it", group.name);
        }
    }
    for &(_, g) in &s.ready_groups {
        assert!(s.groups.contains(g));
    }
    assert_eq!(s.model_index.len(), s.models.len());
    for (m, model) in &s.models {
        assert_eq!(s.model_index.get(&model.name), Some(&m));
        let queued: usize = s.tenants.iter().map(|(_, t)| t.queue.iter().filter(|w| w.model == m).count()).sum();
        let in_flight = s.in_flight.values().filter(|f| f.model == m).count();
        assert_eq!((model.queued, model.in_flight as usize), (queued, in_flight), "counts of model {}", model.name);
        assert!(!model.retired || queued + in_flight > 0, "retired model {} kept while idle", model.name);
    }
    if let Some(unsynced) = &s.unsynced {
        let distinct: std::collections::HashSet<&usize> = unsynced.iter().collect();
        assert_eq!(distinct.len(), unsynced.len(), "a tenant listed twice as unsynced");
        assert!(unsynced.iter().all(|&t| s.tenants.contains(t)), "an unsynced tenant left");
    }
}

fn run_ops(mode: Mode, slots: u32, ops: Vec<Op>) {
    // Short queues, so that refusals happen too.
    let mut s = Scheduler::new(Config { max_queue_per_tenant: 5, max_queue: 16, ..cfg(mode, slots) });
    s.set_group_weight("g0", 3);
    let mut store = Tenants {
        weights: [1, 2, 3, 4, 5, 6],
        groups: [0, 1, 2, 0, 1, 2],
        generation: [0; 6],
        names: std::array::from_fn(|i| format!("t{i}")),
        renames: 0,
        alive: [true; 6],
        late: vec![],
    };
    let mut in_flight: Vec<Ticket> = vec![];
    let mut waiting: Vec<Ticket> = vec![];
    let mut now = T0;
    for op in ops {
        now += Duration::from_millis(100);
        let before: HashMap<Arc<str>, u32> = s.groups.iter().map(|(_, g)| (g.name.clone(), g.in_flight)).collect();
        let tenants_before: HashMap<Arc<str>, u32> =
            s.tenants.iter().map(|(_, t)| (t.name.clone(), t.in_flight)).collect();
        let grants = match op {
            Op::Submit { tenant, cost, model } => {
                store.alive[tenant as usize] = true;
                let mut r = req(store.spec(tenant), cost as u64);
                r.model = format!("m{model}").into();
                r.model_slots = (model == 2).then_some(1);
                let (sub, others) = s.submit(now, r);
                match sub {
                    Submitted::Admitted(g) => in_flight.push(g.ticket),
                    Submitted::Queued(t) => waiting.push(t),
                    Submitted::Refused(_) => {}
                }
                others
            }
            Op::Complete { pick, actual } if !in_flight.is_empty() => {
                let t = in_flight.swap_remove(pick as usize % in_flight.len());
                s.complete(now, t, Some(Tokens { input: actual as u64, output: 0 }))
            }
            Op::Cancel { pick } if !waiting.is_empty() => {
                let t = waiting.swap_remove(pick as usize % waiting.len());
                let (_, grants) = s.cancel(now, t);
                grants
            }
            // Changes are announced for tenants the store has.
            Op::Reweigh { tenant, weight } if store.alive[tenant as usize] => {
                store.weights[tenant as usize] = weight;
                s.update_tenant(now, &store.spec(tenant))
            }
            Op::Limits { group, reserved, max } => {
                let some = |v: u8| (v > 0).then_some(v as u32);
                // As the store validates: a reservation never above the cap.
                let max = some(max);
                let reserved = some(reserved).map(|r| max.map_or(r, |m| r.min(m)));
                s.set_group_limits(now, &format!("g{group}"), limits(reserved, max))
            }
            Op::Delete { tenant, late } => {
                let id = store.spec(tenant).id.expect("id");
                if late {
                    store.late.push(Arc::from(&*id));
                } else {
                    s.remove_tenant(&id);
                }
                store.generation[tenant as usize] += 1;
                store.alive[tenant as usize] = false;
                vec![]
            }
            Op::Rename { tenant, take, notify } if store.alive[tenant as usize] => {
                let (i, fresh) = (tenant as usize, format!("n{}", store.renames));
                store.renames += 1;
                match take.map(|j| j as usize) {
                    // Names are unique in the store: the deleted tenant gets another when it
                    // comes back.
                    Some(j) if j != i && !store.alive[j] => {
                        store.names[i] = std::mem::replace(&mut store.names[j], fresh);
                    }
                    _ => store.names[i] = fresh,
                }
                if notify { s.update_tenant(now, &store.spec(tenant)) } else { vec![] }
            }
            Op::Regroup { tenant, group, notify } if store.alive[tenant as usize] => {
                store.groups[tenant as usize] = group;
                if notify { s.update_tenant(now, &store.spec(tenant)) } else { vec![] }
            }
            Op::ForgetModel { model } => {
                s.forget_model(&format!("m{model}"));
                vec![]
            }
            Op::ResetGroup { group } => s.reset_group(now, &format!("g{group}")),
            Op::Deliver => {
                for id in store.late.drain(..) {
                    s.remove_tenant(&id);
                }
                vec![]
            }
            Op::TakeServed => {
                s.take_served();
                vec![]
            }
            _ => vec![],
        };
        for g in grants {
            waiting.retain(|t| *t != g.ticket);
            in_flight.push(g.ticket);
        }
        check(&s);
        // A group's max_slots and a tenant's max_in_flight: no admission while at them
        // (lowering them interrupts nothing).
        for (_, group) in &s.groups {
            if before.get(&group.name).is_some_and(|&b| group.in_flight > b) {
                assert!(group.max.is_none_or(|m| group.in_flight <= m), "group {} admitted past its max", group.name);
            }
        }
        for (_, t) in &s.tenants {
            if t.in_flight > tenants_before.get(&t.name).copied().unwrap_or(0) {
                assert!(t.max_in_flight.is_none_or(|c| t.in_flight <= c), "{} admitted past its cap", t.name);
            }
        }
        // An entry without work stands for a tenant the store has: under its current
        // name, or (renamed without a word to the scheduler yet) its current id; and no
        // two such entries stand for the same tenant.
        let mut stands_for = std::collections::HashSet::new();
        for (_, t) in s.tenants.iter().filter(|(_, t)| t.queue.is_empty() && t.in_flight == 0) {
            if t.id.as_ref().is_some_and(|id| store.late.contains(id)) && !t.deleted {
                continue; // the scheduler has not heard of its deletion yet
            }
            let i = (0..6u8).find(|&i| {
                let current = store.spec(i);
                store.alive[i as usize]
                    && (*current.name == *t.name || (!t.deleted && current.id.as_deref() == t.id.as_deref()))
            });
            let i = i.unwrap_or_else(|| panic!("{} outlived its tenant", t.name));
            assert!(stands_for.insert(i), "two idle entries for tenant {i}");
        }
    }
    // Everything deleted and every request finished: nothing is left.
    for id in store.late.drain(..) {
        s.remove_tenant(&id);
    }
    for i in 0..6u8 {
        s.remove_tenant(&store.spec(i).id.expect("id"));
    }
    for m in 0..3 {
        s.forget_model(&format!("m{m}"));
    }
    check(&s);
    while let Some(t) = in_flight.pop() {
        for g in s.complete(now, t, None) {
            waiting.retain(|w| *w != g.ticket);
            in_flight.push(g.ticket);
        }
        check(&s);
    }
    for t in waiting.drain(..) {
        assert!(!s.cancel(now, t).0, "a waiting request outlived every completion");
    }
    assert_eq!((s.tenants.len(), s.models.len(), s.used, s.queued), (0, 0, 0, 0));
    assert_eq!(s.groups.len(), if mode == Mode::Weighted { 1 } else { 0 });
    let snap = s.snapshot(now);
    assert!(snap.tenants.is_empty() && snap.groups.len() == s.groups.len());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn invariants_hold_in_weighted_mode(slots in 1u32..6, ops in proptest::collection::vec(op(), 1..200)) {
        run_ops(Mode::Weighted, slots, ops);
    }

    #[test]
    fn invariants_hold_in_hierarchical_mode(slots in 1u32..6, ops in proptest::collection::vec(op(), 1..200)) {
        run_ops(Mode::Hierarchical, slots, ops);
    }

    /// Starvation freedom: with every tenant permanently backlogged, each is served within
    /// a bounded number of grants, whatever the weights and costs.
    #[test]
    fn no_backlogged_tenant_starves(
        mode in prop_oneof![Just(Mode::Weighted), Just(Mode::Hierarchical)],
        slots in 1u32..5,
        tenants in proptest::collection::vec((1u32..10, 1u64..100), 2..6),
    ) {
        let s = Scheduler::new(cfg(mode, slots));
        let specs: Vec<(TenantSpec<'static>, u64)> = tenants
            .iter()
            .enumerate()
            .map(|(i, (w, c))| (spec(&format!("t{i}"), *w, &format!("g{}", i % 2)), *c))
            .collect();
        // Bound on the grants others receive between two grants of one tenant: as in VTC's
        // fairness theorem, two backlogged counters never drift apart by more than twice the
        // largest cost/weight, so each competitor j takes at most 2·(max c/w)/(c_j/w_j) + 2
        // grants meanwhile.
        // In hierarchical mode the tenant's group holds at least one of the slots, so the
        // grants of the whole pool scale by at most the number of slots. The run is three
        // times longer than the bound, so a starving tenant fails the test.
        let max_cw = tenants.iter().map(|(w, c)| *c as f64 / *w as f64).fold(0.0, f64::max);
        let min_cw = tenants.iter().map(|(w, c)| *c as f64 / *w as f64).fold(f64::MAX, f64::min);
        let n = tenants.len() as f64;
        let within = n * (2.0 * max_cw / min_cw + 2.0) + 2.0 * slots as f64 + 4.0;
        let bound = match mode {
            Mode::Weighted => within,
            Mode::Hierarchical => within * (slots as f64 + 1.0),
        } as usize;
        let steps = (3 * bound + 100) as u64;
        let mut s = s;
        let index: HashMap<Arc<str>, usize> = specs.iter().enumerate().map(|(i, (t, _))| (Arc::from(&*t.name), i)).collect();
        let per_tenant = slots as usize + 2;
        for (sp, c) in &specs {
            for _ in 0..per_tenant {
                s.submit(T0, req(sp.clone(), *c));
            }
        }
        let mut last_served = vec![0usize; specs.len()];
        let mut grants_so_far = 0usize;
        let mut order: std::collections::VecDeque<Ticket> = {
            let mut v: Vec<Ticket> = s.in_flight.keys().copied().collect();
            v.sort();
            v.into()
        };
        for step in 1..steps {
            let now = Duration::from_millis(step);
            let oldest = order.pop_front().expect("in flight");
            let done = index[&s.tenants[s.in_flight[&oldest].tenant].name];
            for g in s.complete(now, oldest, None) {
                let i = index[&s.tenants[s.in_flight[&g.ticket].tenant].name];
                grants_so_far += 1;
                last_served[i] = grants_so_far;
                order.push_back(g.ticket);
            }
            s.submit(now, req(specs[done].0.clone(), specs[done].1));
            for (i, last) in last_served.iter().enumerate() {
                prop_assert!(grants_so_far - last <= bound, "tenant {} waited {} grants (bound {})", i, grants_so_far - last, bound);
            }
        }
    }
}

#[test]
fn work_served_elsewhere_counts_like_work_served_here() {
    let run = |remote: f64| {
        let mut s = Scheduler::new(cfg(Mode::Weighted, 1));
        assert!(s.take_served().is_empty(), "tracking starts with the first call");
        let first = admitted(s.submit(T0, req(spec("a", 1, "g"), 100)).0);
        queued(s.submit(T0, req(spec("a", 1, "g"), 100)).0);
        queued(s.submit(T0, req(spec("b", 1, "g"), 100)).0);
        // Unknown tenants and nonsense are ignored.
        s.charge_remote("nobody", 1e9);
        s.charge_remote("b", f64::NAN);
        s.charge_remote("b", remote);
        // b joined behind a and was lifted to a's counter; a turns out to cost 300.
        let next = s.complete(secs(1), first.ticket, Some(Tokens { input: 300, output: 0 }));
        assert_eq!(s.take_served(), vec![(Arc::from("a"), 300.0)], "what this pod served, once");
        assert!(s.take_served().is_empty());
        s.tenants[s.in_flight[&next[0].ticket].tenant].name.clone()
    };
    assert_eq!(&*run(0.0), "b", "alone, the pod sees b behind");
    // b was served 1000 by the other pods: a is the one behind.
    assert_eq!(&*run(1000.0), "a", "with the cluster's service, a goes first");
}

// === the next pick, as the console shows it ===

#[test]
fn the_snapshot_names_the_next_pick_by_the_rule_the_scheduler_admits_by() {
    let mut s = Scheduler::new(cfg(Mode::Weighted, 1));
    assert!(s.snapshot(T0).next.is_none(), "nothing waits");
    let first = admitted(s.submit(T0, req(spec("a", 1, "g"), 100)).0);
    queued(s.submit(T0, req(spec("a", 1, "g"), 100)).0);
    queued(s.submit(T0, req(spec("b", 1, "g"), 100)).0);
    let snap = s.snapshot(T0);
    let next = snap.next.clone().expect("two wait");
    assert_eq!(next.rule, "lowest_share_score");
    assert!(next.reason.contains("share score"), "{}", next.reason);
    assert_eq!(snap.models.len(), 1);
    assert_eq!((snap.models[0].in_flight, snap.models[0].queued), (1, 2));
    // What the snapshot named is what the scheduler admits when the slot frees.
    let grants = s.complete(T0, first.ticket, None);
    assert_eq!(grants.len(), 1);
    let holding: Vec<String> =
        s.snapshot(T0).tenants.into_iter().filter(|t| t.in_flight == 1).map(|t| t.name).collect();
    assert_eq!(holding, std::slice::from_ref(&next.tenant));
    // Now b has waited while a was served: b is the most behind.
    queued(s.submit(T0, req(spec("a", 1, "g"), 100)).0);
    assert_eq!(s.snapshot(T0).next.map(|n| n.tenant), Some(if next.tenant == "a" { "b" } else { "a" }.to_owned()));
}

#[test]
fn in_hierarchical_mode_a_waiting_group_without_a_slot_goes_first() {
    let mut s = Scheduler::new(cfg(Mode::Hierarchical, 1));
    admitted(s.submit(T0, req(spec("a", 1, "busy"), 100)).0);
    queued(s.submit(T0, req(spec("a", 1, "busy"), 100)).0);
    queued(s.submit(T0, req(spec("c", 1, "idle"), 100)).0);
    let next = s.snapshot(T0).next.expect("two wait");
    assert_eq!((next.tenant.as_str(), next.group.as_str(), next.rule.as_str()), ("c", "idle", "holds_no_slot"));
}
