//! Tests of the simulator itself: targets, indexes, determinism, and that its checks can fail.

use std::time::Duration;

use obleth_scheduler::core::{Mode, Tokens};

use crate::engine::simulate;
use crate::metrics::{self, hierarchical_fill, jain, percentile, water_fill};
use crate::policy::{Admit, Arrival, Offered, Policy, ReqId};
use crate::workload::{self, Arrivals, Lengths, PolicyKind, Scale, TenantDef, Workload};

const INF: f64 = f64::INFINITY;

fn close(a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-9, "{a:?} != {b:?}");
    }
}

#[test]
fn water_filling_gives_unlimited_demands_the_weighted_split() {
    close(&water_fill(650.0, &[500.0, 50.0, 100.0], &[INF, INF, INF]), &[500.0, 50.0, 100.0]);
}

#[test]
fn water_filling_satisfies_small_demands_and_redistributes_the_rest() {
    // a would be entitled to 500/650 of 100 but only wants 30: the rest splits 50:100.
    close(&water_fill(100.0, &[500.0, 50.0, 100.0], &[30.0, INF, INF]), &[30.0, 70.0 / 3.0, 140.0 / 3.0]);
    // Cascading: c's demand is met only once a's is taken out.
    close(&water_fill(90.0, &[1.0, 1.0, 1.0], &[10.0, 35.0, INF]), &[10.0, 35.0, 45.0]);
    // Everything fits: everyone gets its demand and capacity is left over.
    close(&water_fill(100.0, &[1.0, 2.0], &[10.0, 20.0]), &[10.0, 20.0]);
    // Zero demand or zero weight gets nothing.
    close(&water_fill(10.0, &[1.0, 0.0, 1.0], &[0.0, INF, INF]), &[0.0, 0.0, 10.0]);
}

#[test]
fn hierarchical_filling_splits_groups_first() {
    // Groups 3:1; group 0 has tenants of weight 1 and 2, group 1 ten tenants of weight 1.
    let mut group_of = vec![0, 0];
    group_of.extend([1; 10]);
    let mut weights = vec![1.0, 2.0];
    weights.extend([1.0; 10]);
    let alloc = hierarchical_fill(100.0, &group_of, &[3.0, 1.0], &weights, &[INF; 12]);
    close(&alloc[..3], &[25.0, 50.0, 2.5]);
    // A group that wants less than its share gives the rest to the other group.
    let mut demands = vec![INF; 12];
    demands[0] = 5.0;
    demands[1] = 5.0;
    let alloc = hierarchical_fill(100.0, &group_of, &[3.0, 1.0], &weights, &demands);
    close(&alloc[..3], &[5.0, 5.0, 9.0]);
}

#[test]
fn jains_index() {
    assert!((jain(&[1.0, 1.0, 1.0]) - 1.0).abs() < 1e-12);
    // One of n gets everything: 1/n.
    assert!((jain(&[1.0, 0.0, 0.0, 0.0]) - 0.25).abs() < 1e-12);
    assert!((jain(&[1.0, 2.0]) - 0.9).abs() < 1e-12);
}

#[test]
fn nearest_rank_percentiles() {
    let v: Vec<u64> = (1..=100).collect();
    assert_eq!(percentile(&v, 0.5), Some(50));
    assert_eq!(percentile(&v, 0.99), Some(99));
    assert_eq!(percentile(&v, 1.0), Some(100));
    assert_eq!(percentile::<u64>(&[], 0.5), None);
}

fn short() -> Scale {
    Scale { duration_s: 60.0, w3_return_s: 20.0 }
}

fn w(id: &str) -> Workload {
    workload::catalogue(short()).into_iter().find(|w| w.id == id).expect("workload exists")
}

#[test]
fn same_seed_same_result_different_seed_different_result() {
    let w1 = w("W1");
    for kind in [PolicyKind::Fairshare(Mode::Weighted), PolicyKind::Fcfs] {
        let a = format!("{:?}", crate::run(&w1, kind, 7));
        let b = format!("{:?}", crate::run(&w1, kind, 7));
        assert_eq!(a, b, "{kind:?} is not deterministic");
        let c = format!("{:?}", crate::run(&w1, kind, 8));
        assert_ne!(a, c, "{kind:?}: the seed has no effect");
    }
    // Open-loop arrivals too, and the thread count does not matter.
    let w2 = w("W2");
    let one = format!("{:?}", crate::run_all(std::slice::from_ref(&w2), &[3, 4], 1));
    let two = format!("{:?}", crate::run_all(std::slice::from_ref(&w2), &[3, 4], 2));
    assert_eq!(one, two);
}

/// FIFO that always leaves one slot idle: not work-conserving.
struct Lazy {
    slots: u32,
    used: u32,
    queue: std::collections::VecDeque<ReqId>,
}

impl Lazy {
    fn dispatch(&mut self) -> Vec<Admit> {
        let mut out = Vec::new();
        while self.used + 1 < self.slots {
            let Some(id) = self.queue.pop_front() else { break };
            self.used += 1;
            out.push(Admit { id, max_tokens_cap: None });
        }
        out
    }
}

impl Policy for Lazy {
    fn submit(&mut self, _now: Duration, req: Arrival) -> Offered {
        self.queue.push_back(req.id);
        Offered::Accepted { admits: self.dispatch() }
    }

    fn complete(&mut self, _now: Duration, _id: ReqId, _actual: Tokens) -> Vec<Admit> {
        self.used -= 1;
        self.dispatch()
    }
}

#[test]
fn the_free_slot_detector_fires_for_a_non_work_conserving_policy() {
    let w1 = w("W1");
    let mut lazy = Lazy { slots: w1.slots, used: 0, queue: Default::default() };
    let obs = simulate(&w1, 1, &mut lazy);
    assert!(obs.free_slot_moments > 1000, "{} moments", obs.free_slot_moments);
    assert!(obs.events > 0 && obs.free_slot_moments <= obs.events);
    // And stays silent for the work-conserving ones.
    for kind in [PolicyKind::Fairshare(Mode::Weighted), PolicyKind::Fcfs, PolicyKind::RoundRobin] {
        assert_eq!(crate::run(&w1, kind, 1).free_slot_moments, 0, "{kind:?}");
    }
}

/// Strict priority by tenant index: starves whoever comes later while earlier tenants
/// have a queue.
struct Priority {
    slots: u32,
    used: u32,
    queues: Vec<std::collections::VecDeque<ReqId>>,
}

impl Priority {
    fn dispatch(&mut self) -> Vec<Admit> {
        let mut out = Vec::new();
        while self.used < self.slots {
            let Some(id) = self.queues.iter_mut().find_map(|q| q.pop_front()) else { break };
            self.used += 1;
            out.push(Admit { id, max_tokens_cap: None });
        }
        out
    }
}

impl Policy for Priority {
    fn submit(&mut self, _now: Duration, req: Arrival) -> Offered {
        self.queues[req.tenant].push_back(req.id);
        Offered::Accepted { admits: self.dispatch() }
    }

    fn complete(&mut self, _now: Duration, _id: ReqId, _actual: Tokens) -> Vec<Admit> {
        self.used -= 1;
        self.dispatch()
    }
}

#[test]
fn the_group_starvation_check_fires_for_a_strict_priority_policy() {
    // W7's gold tenants come first and are always backlogged: bronze loses its initial
    // slots one by one and then waits with none while gold is granted every slot.
    let w7 = w("W7");
    let mut priority = Priority { slots: w7.slots, used: 0, queues: vec![Default::default(); w7.tenants.len()] };
    let obs = simulate(&w7, 1, &mut priority);
    assert!(obs.group_starved_grants > 100, "{}", obs.group_starved_grants);
    assert!(obs.group_starved_moments > 100, "{}", obs.group_starved_moments);
    assert_eq!(obs.free_slot_moments, 0, "strict priority is work-conserving");
    let fair = crate::run(&w7, PolicyKind::Fairshare(Mode::Hierarchical), 1);
    assert_eq!((fair.group_starved_grants, fair.group_starved_moments), (0, 0));
}

#[test]
fn throughput_matches_the_backend_model() {
    // One backlogged tenant, fixed sizes: 32 slots each serving 100 + 2×50 = 200 cost
    // units per 10 ms prefill + 50 × 20 ms = 1.01 s.
    let mut w = w("W1");
    w.tenants = vec![TenantDef {
        name: "x".into(),
        weight: 1,
        group: "x".into(),
        arrivals: Arrivals::Backlogged { start_s: 0.0 },
        lengths: Lengths::fixed(100, 50, 64),
    }];
    let r = crate::run(&w, PolicyKind::Fcfs, 1);
    let expected = 32.0 * 200.0 / 1.01;
    assert!((r.throughput / expected - 1.0).abs() < 0.02, "{} vs {expected}", r.throughput);
    assert!(r.utilization > 0.999);
    assert!((r.mean_hold_s - 1.01).abs() < 1e-6);
    assert_eq!(metrics::cost(100, 50, 2.0), 200.0);
}

#[test]
fn targets_follow_late_starts() {
    // W3: c (weight 200) is there for the last 40 of 60 s: entitled to half of 2/3 of the run.
    let w3 = w("W3");
    let r = crate::run(&w3, PolicyKind::Fairshare(Mode::Weighted), 1);
    assert!((r.tenants[2].target_share - 1.0 / 3.0).abs() < 1e-9, "{}", r.tenants[2].target_share);
    let (share, fair) = r.focus.expect("W3 has a focus tenant");
    assert!((fair - 0.5).abs() < 1e-12);
    assert!(share > 0.0);
}
