//! Fair targets and the metrics of a run.
//!
//! Definitions (also printed with the results and written up in `docs/fairness.md`):
//!
//! - *service*: cost units as the scheduler counts them, `input + output_weight × output`
//!   (model weight 1), credited as tokens are produced.
//! - *fair target*: weighted max-min fair (water-filling) split of the delivered service.
//!   Backlogged tenants demand without limit from their start; open-loop tenants demand
//!   their offered load (the actual cost of the requests they sent, per second of the
//!   run). Hierarchical workloads split among groups by group weight first (a group's
//!   demand is the sum of its members'), then among a group's tenants by weight. The
//!   run is cut at the start times of backlogged tenants and the split is made for each
//!   piece, so a tenant that starts late is entitled only to the time it was there.
//! - *relative share error*: `|service_i / target_i − 1|` (equivalently, the share's
//!   error relative to the target share, not in percentage points).
//! - *window share error*: the same per 30 s window, for backlogged tenants only; in a
//!   window, open-loop tenants are taken to demand what they received, so the figure
//!   says whether the backlogged tenants split the rest correctly. Windows in which a
//!   backlogged tenant starts are skipped. Per tenant: p95 over windows (nearest rank).
//! - *Jain's index* over `x_i = service_i / target_i` for tenants with a target > 0.
//! - *gap*: for tenants backlogged together since a common start, the largest spread
//!   of `service since start / fair share` between two of them at any moment, divided
//!   by `max request cost / smallest fair share` (in weighted mode exactly the spread of
//!   `service / weight` over `max cost / smallest weight`). Max request cost is the
//!   largest *actual* cost of a request admitted in the run.
//! - *inter-admission ratio*: for a backlogged tenant, the longest time without an
//!   admission (including up to the end of the run) divided by its fair inter-admission
//!   time, `mean actual cost of its requests / its fair service rate`.

use obleth_scheduler::core::Mode;

use crate::engine::Observations;
use crate::workload::{Arrivals, PolicyKind, Workload};

/// A request's cost in the scheduler's units (model weight 1).
pub fn cost(input: u64, output: u64, output_weight: f64) -> f64 {
    input as f64 + output_weight * output as f64
}

/// Weighted max-min fair allocation of `capacity` among demands (`f64::INFINITY`:
/// unlimited). Tenants with zero weight or zero demand get nothing.
pub fn water_fill(capacity: f64, weights: &[f64], demands: &[f64]) -> Vec<f64> {
    let mut alloc = vec![0.0; weights.len()];
    let mut open: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] > 0.0 && demands[i] > 0.0).collect();
    let mut remaining = capacity;
    while !open.is_empty() && remaining > 0.0 {
        let level = remaining / open.iter().map(|&i| weights[i]).sum::<f64>();
        let (met, unmet): (Vec<usize>, Vec<usize>) = open.iter().partition(|&&i| demands[i] <= level * weights[i]);
        if met.is_empty() {
            for i in unmet {
                alloc[i] = level * weights[i];
            }
            break;
        }
        for i in met {
            alloc[i] = demands[i];
            remaining -= demands[i];
        }
        open = unmet;
    }
    alloc
}

/// Two-level water-filling: groups by `group_weights` (demand = sum of members'),
/// then each group's allocation among its members by weight.
pub fn hierarchical_fill(
    capacity: f64,
    group_of: &[usize],
    group_weights: &[f64],
    weights: &[f64],
    demands: &[f64],
) -> Vec<f64> {
    let mut group_demand = vec![0.0; group_weights.len()];
    for (i, &g) in group_of.iter().enumerate() {
        if weights[i] > 0.0 {
            group_demand[g] += demands[i];
        }
    }
    let group_alloc = water_fill(capacity, group_weights, &group_demand);
    let mut alloc = vec![0.0; weights.len()];
    for (g, &cap) in group_alloc.iter().enumerate() {
        let members: Vec<usize> = (0..weights.len()).filter(|&i| group_of[i] == g).collect();
        let w: Vec<f64> = members.iter().map(|&i| weights[i]).collect();
        let d: Vec<f64> = members.iter().map(|&i| demands[i]).collect();
        for (k, a) in water_fill(cap, &w, &d).into_iter().enumerate() {
            alloc[members[k]] = a;
        }
    }
    alloc
}

/// Group index of each tenant and each group's weight, in order of first appearance.
pub fn groups(w: &Workload) -> (Vec<usize>, Vec<String>, Vec<f64>) {
    let mut names: Vec<String> = Vec::new();
    let group_of = w
        .tenants
        .iter()
        .map(|t| match names.iter().position(|g| *g == t.group) {
            Some(g) => g,
            None => {
                names.push(t.group.clone());
                names.len() - 1
            }
        })
        .collect();
    let weights = names.iter().map(|g| w.group_weight(g) as f64).collect();
    (group_of, names, weights)
}

/// The fair split of `capacity` among the workload's tenants with these demands,
/// following the workload's target structure.
pub fn fair_split(w: &Workload, capacity: f64, demands: &[f64]) -> Vec<f64> {
    let weights: Vec<f64> = w.tenants.iter().map(|t| t.weight as f64).collect();
    match w.target {
        Mode::Weighted => water_fill(capacity, &weights, demands),
        Mode::Hierarchical => {
            let (group_of, _, group_weights) = groups(w);
            hierarchical_fill(capacity, &group_of, &group_weights, &weights, demands)
        }
    }
}

/// Jain's fairness index: `(Σx)² / (n Σx²)`; 1 when all are equal.
pub fn jain(xs: &[f64]) -> f64 {
    let sum: f64 = xs.iter().sum();
    let squares: f64 = xs.iter().map(|x| x * x).sum();
    if squares == 0.0 { 1.0 } else { sum * sum / (xs.len() as f64 * squares) }
}

/// Nearest-rank percentile (`p` in 0..=1) of sorted values.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Per-tenant results of one run.
#[derive(Debug, Clone)]
pub struct TenantMetrics {
    pub service: f64,
    pub share: f64,
    pub target_share: f64,
    /// `service / target − 1` (signed).
    pub rel_error: f64,
    /// Open-loop tenants: service received / offered.
    pub demand_met: Option<f64>,
    pub wait_p50_s: f64,
    pub wait_p99_s: f64,
    pub wait_max_s: f64,
    pub window_p95_error: Option<f64>,
    /// The same in absolute terms: `|share − target share|` (a fraction; ×100 = points).
    pub window_p95_points: Option<f64>,
    /// `|share − target share|` over the run (a fraction; ×100 = points).
    pub abs_error: f64,
    pub inter_admission_ratio: Option<f64>,
    /// The same, for stretches ending after the first 60 s (start-up left out).
    pub inter_admission_steady: Option<f64>,
    pub admitted: u64,
    pub browned_out: u64,
    pub refused: u64,
}

/// Per-group results of one run.
#[derive(Debug, Clone)]
pub struct GroupMetrics {
    pub name: String,
    pub share: f64,
    pub target_share: f64,
    pub rel_error: f64,
}

/// Results of one run (one workload, policy and seed).
#[derive(Debug, Clone)]
pub struct RunMetrics {
    pub policy: PolicyKind,
    pub seed: u64,
    /// Service per second.
    pub throughput: f64,
    /// Busy slot-time over slot-time available.
    pub utilization: f64,
    /// Largest `|rel_error|` over tenants with a target.
    pub max_rel_error: f64,
    /// Fraction of service that went to the wrong tenant: `Σ|service − target| / 2Σservice`.
    pub misallocation: f64,
    pub jain: f64,
    pub window_p95_error: Option<f64>,
    pub window_p95_points: Option<f64>,
    /// Largest `|share − target share|` over tenants (a fraction; ×100 = points).
    pub max_abs_error: f64,
    pub gap_ratio: Option<f64>,
    pub inter_admission_ratio: Option<f64>,
    pub inter_admission_steady: Option<f64>,
    pub free_slot_moments: u64,
    pub group_starved_grants: u64,
    pub group_starved_moments: u64,
    pub wait_p99_s: f64,
    /// Mean time a request held its slot.
    pub mean_hold_s: f64,
    pub browned_out_fraction: f64,
    /// Share of the focus tenant in its first window after its start, and its fair share then.
    pub focus: Option<(f64, f64)>,
    /// p99 wait of tenants whose demand fits in their fair share, and of the others.
    pub light_heavy_p99_s: Option<(f64, f64)>,
    pub groups: Vec<GroupMetrics>,
    pub tenants: Vec<TenantMetrics>,
    pub events: u64,
}

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

/// Whole-run fair targets (service), piece by piece between backlogged start times.
fn run_targets(w: &Workload, obs: &Observations, total_rate: f64) -> Vec<f64> {
    let duration = secs(obs.duration_us);
    let mut cuts: Vec<f64> = (0..w.tenants.len()).map(|t| w.start_s(t)).filter(|&s| s < duration).collect();
    cuts.push(0.0);
    cuts.push(duration);
    cuts.sort_by(f64::total_cmp);
    cuts.dedup();
    let mut targets = vec![0.0; w.tenants.len()];
    for piece in cuts.windows(2) {
        let (from, len) = (piece[0], piece[1] - piece[0]);
        let demands: Vec<f64> = w
            .tenants
            .iter()
            .enumerate()
            .map(|(t, def)| match def.arrivals {
                Arrivals::Backlogged { start_s } if start_s <= from => f64::INFINITY,
                Arrivals::Backlogged { .. } => 0.0,
                _ => obs.tenants[t].offered_cost / duration * len,
            })
            .collect();
        for (t, a) in fair_split(w, total_rate * len, &demands).into_iter().enumerate() {
            targets[t] += a;
        }
    }
    targets
}

/// Per-tenant p95 of the window share errors (backlogged tenants only): relative
/// (`|service / target − 1|`) and absolute (`|share − target share|`, as a fraction).
fn window_errors(w: &Workload, obs: &Observations) -> Vec<Option<(f64, f64)>> {
    let window = secs(obs.window_us);
    let mut relative: Vec<Vec<f64>> = vec![Vec::new(); w.tenants.len()];
    let mut absolute: Vec<Vec<f64>> = vec![Vec::new(); w.tenants.len()];
    for (k, &total) in obs.window_total.iter().enumerate() {
        let (from, to) = (k as f64 * window, (k + 1) as f64 * window);
        if total <= 0.0 || (0..w.tenants.len()).any(|t| w.start_s(t) > from && w.start_s(t) < to) {
            continue;
        }
        let demands: Vec<f64> = w
            .tenants
            .iter()
            .enumerate()
            .map(|(t, def)| match def.arrivals {
                Arrivals::Backlogged { start_s } if start_s <= from => f64::INFINITY,
                Arrivals::Backlogged { .. } => 0.0,
                _ => obs.tenants[t].window_service[k],
            })
            .collect();
        let targets = fair_split(w, total, &demands);
        for (t, def) in w.tenants.iter().enumerate() {
            if def.arrivals.is_backlogged() && targets[t] > 0.0 {
                let got = obs.tenants[t].window_service[k];
                relative[t].push((got / targets[t] - 1.0).abs());
                absolute[t].push((got - targets[t]).abs() / total);
            }
        }
    }
    let p95 = |mut e: Vec<f64>| {
        e.sort_by(f64::total_cmp);
        percentile(&e, 0.95)
    };
    relative.into_iter().zip(absolute).map(|(r, a)| p95(r).zip(p95(a))).collect()
}

fn wait_percentile(waits: &mut [u64], p: f64) -> f64 {
    waits.sort_unstable();
    percentile(waits, p).map_or(0.0, secs)
}

/// Computes the metrics of a run from its observations.
pub fn evaluate(w: &Workload, policy: PolicyKind, seed: u64, obs: &Observations) -> RunMetrics {
    let duration = secs(obs.duration_us);
    let total: f64 = obs.tenants.iter().map(|t| t.service).sum();
    let total_rate = total / duration;
    let targets = run_targets(w, obs, total_rate);
    let target_total: f64 = targets.iter().sum();
    // Normalise so targets and service have the same total (they differ only when the
    // offered load is below capacity).
    let scale = if target_total > 0.0 { total / target_total } else { 0.0 };
    let window_p95 = window_errors(w, obs);

    let mut tenants = Vec::with_capacity(w.tenants.len());
    let mut all_waits: Vec<u64> = Vec::new();
    for (t, def) in w.tenants.iter().enumerate() {
        let o = &obs.tenants[t];
        let target = targets[t] * scale;
        let mut waits = o.waits_us.clone();
        all_waits.extend_from_slice(&waits);
        let fair_gap = (def.arrivals.is_backlogged() && o.admitted > 0 && target > 0.0).then(|| {
            let fair_rate = target / (duration - w.start_s(t));
            (o.admitted_cost / o.admitted as f64) / fair_rate
        });
        tenants.push(TenantMetrics {
            service: o.service,
            share: if total > 0.0 { o.service / total } else { 0.0 },
            target_share: if total > 0.0 { target / total } else { 0.0 },
            rel_error: if target > 0.0 { o.service / target - 1.0 } else { 0.0 },
            demand_met: (!def.arrivals.is_backlogged() && o.offered_cost > 0.0).then(|| o.service / o.offered_cost),
            wait_p50_s: wait_percentile(&mut waits, 0.50),
            wait_p99_s: wait_percentile(&mut waits, 0.99),
            wait_max_s: waits.last().copied().map_or(0.0, secs),
            window_p95_error: window_p95[t].map(|e| e.0),
            window_p95_points: window_p95[t].map(|e| e.1),
            abs_error: (o.service - target).abs() / total.max(f64::MIN_POSITIVE),
            inter_admission_ratio: fair_gap.map(|g| secs(o.max_admission_gap_us) / g),
            inter_admission_steady: fair_gap.map(|g| secs(o.steady_admission_gap_us) / g),
            admitted: o.admitted,
            browned_out: o.browned_out,
            refused: o.refused,
        });
    }

    let with_target: Vec<usize> = (0..tenants.len()).filter(|&t| tenants[t].target_share > 0.0).collect();
    let max_rel_error = with_target.iter().map(|&t| tenants[t].rel_error.abs()).fold(0.0, f64::max);
    let misallocation = if total > 0.0 {
        (0..tenants.len()).map(|t| (obs.tenants[t].service - targets[t] * scale).abs()).sum::<f64>() / (2.0 * total)
    } else {
        0.0
    };
    let xs: Vec<f64> = with_target.iter().map(|&t| tenants[t].service / (targets[t] * scale)).collect();
    let max_of = |it: &mut dyn Iterator<Item = f64>| it.fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));

    let gap_ratio = max_of(&mut obs.epochs.iter().map(|e| {
        let min_phi = e.phi.iter().copied().fold(f64::INFINITY, f64::min);
        e.max_gap / (obs.max_request_cost / min_phi)
    }));

    let (group_of, group_names, _) = groups(w);
    let group_metrics = if group_names.len() > 1 && w.target == Mode::Hierarchical {
        group_names
            .iter()
            .enumerate()
            .map(|(g, name)| {
                let members: Vec<usize> = (0..tenants.len()).filter(|&t| group_of[t] == g).collect();
                let share: f64 = members.iter().map(|&t| tenants[t].share).sum();
                let target_share: f64 = members.iter().map(|&t| tenants[t].target_share).sum();
                GroupMetrics {
                    name: name.clone(),
                    share,
                    target_share,
                    rel_error: if target_share > 0.0 { share / target_share - 1.0 } else { 0.0 },
                }
            })
            .collect()
    } else {
        Vec::new()
    };

    let focus = obs.focus.map(|(t, from, _)| {
        let share = if obs.focus_total > 0.0 { obs.tenants[t].focus_service / obs.focus_total } else { 0.0 };
        let from = secs(from);
        let demands: Vec<f64> = w
            .tenants
            .iter()
            .map(|def| match def.arrivals {
                Arrivals::Backlogged { start_s } if start_s <= from => f64::INFINITY,
                _ => 0.0,
            })
            .collect();
        (share, fair_split(w, 1.0, &demands)[t])
    });

    let light_heavy_p99_s = (w.tenants.len() > 100).then(|| {
        let (mut light, mut heavy) = (Vec::new(), Vec::new());
        for (t, o) in obs.tenants.iter().enumerate() {
            // Light: the water-filling gave it all it offered.
            if targets[t] >= o.offered_cost * (1.0 - 1e-9) {
                light.extend_from_slice(&o.waits_us);
            } else {
                heavy.extend_from_slice(&o.waits_us);
            }
        }
        (wait_percentile(&mut light, 0.99), wait_percentile(&mut heavy, 0.99))
    });

    let admitted: u64 = obs.tenants.iter().map(|t| t.admitted).sum();
    let browned: u64 = obs.tenants.iter().map(|t| t.browned_out).sum();
    RunMetrics {
        policy,
        seed,
        throughput: total_rate,
        utilization: obs.busy_slot_us / (w.slots as f64 * obs.duration_us as f64),
        max_rel_error,
        misallocation,
        jain: jain(&xs),
        window_p95_error: max_of(&mut tenants.iter().filter_map(|t| t.window_p95_error)),
        window_p95_points: max_of(&mut tenants.iter().filter_map(|t| t.window_p95_points)),
        max_abs_error: tenants.iter().map(|t| t.abs_error).fold(0.0, f64::max),
        gap_ratio,
        inter_admission_ratio: max_of(&mut tenants.iter().filter_map(|t| t.inter_admission_ratio)),
        inter_admission_steady: max_of(&mut tenants.iter().filter_map(|t| t.inter_admission_steady)),
        free_slot_moments: obs.free_slot_moments,
        group_starved_grants: obs.group_starved_grants,
        group_starved_moments: obs.group_starved_moments,
        wait_p99_s: wait_percentile(&mut all_waits, 0.99),
        mean_hold_s: if obs.completed > 0 { secs(obs.hold_us_total) / obs.completed as f64 } else { 0.0 },
        browned_out_fraction: if admitted > 0 { browned as f64 / admitted as f64 } else { 0.0 },
        focus,
        light_heavy_p99_s,
        groups: group_metrics,
        tenants,
        events: obs.events,
    }
}
