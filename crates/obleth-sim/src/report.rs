//! Markdown tables of the results, the worst seed per metric, and the target checks.

use std::fmt::Write;

use crate::metrics::RunMetrics;
use crate::workload::{PolicyKind, Workload};

/// The worst value of a metric over the seeds, and the seed it came from.
#[derive(Debug, Clone, Copy)]
pub struct Worst {
    pub value: f64,
    pub seed: u64,
}

/// Which direction is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    High,
    Low,
}

/// The worst value of `f` over `runs` (runs where `f` is `None` are skipped).
pub fn worst(runs: &[&RunMetrics], bad: Bad, f: impl Fn(&RunMetrics) -> Option<f64>) -> Option<Worst> {
    runs.iter().filter_map(|r| f(r).map(|value| Worst { value, seed: r.seed })).reduce(|a, b| {
        let b_worse = match bad {
            Bad::High => b.value > a.value,
            Bad::Low => b.value < a.value,
        };
        if b_worse { b } else { a }
    })
}

fn range(runs: &[&RunMetrics], f: impl Fn(&RunMetrics) -> f64) -> (f64, f64) {
    runs.iter().map(|r| f(r)).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x)))
}

fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

fn points(x: f64) -> String {
    format!("{:.2}", 100.0 * x)
}

fn opt(w: Option<Worst>, f: impl Fn(f64) -> String) -> String {
    w.map_or("–".to_string(), |w| f(w.value))
}

fn fixed(digits: usize) -> impl Fn(f64) -> String {
    move |x| format!("{x:.digits$}")
}

/// The outcome of one target check.
#[derive(Debug, Clone)]
pub struct Check {
    pub workload: &'static str,
    pub policy: &'static str,
    pub target: String,
    pub measured: String,
    pub pass: bool,
}

/// All runs of one workload.
pub struct WorkloadRuns<'a> {
    pub workload: &'a Workload,
    pub runs: Vec<RunMetrics>,
}

impl WorkloadRuns<'_> {
    fn of(&self, kind: PolicyKind) -> Vec<&RunMetrics> {
        self.runs.iter().filter(|r| r.policy == kind).collect()
    }

    fn seeds(&self) -> usize {
        self.of(self.workload.policies[0]).len()
    }
}

/// The results section of one workload.
pub fn section(wr: &WorkloadRuns) -> String {
    let w = wr.workload;
    let mut s = String::new();
    let _ = writeln!(s, "## {} — {}\n", w.id, w.title);
    let _ = writeln!(s, "{}\n", w.description);
    let _ = writeln!(s, "### Summary (worst of {} seeds per metric)\n", wr.seeds());
    let _ = writeln!(
        s,
        "| policy | throughput (cost/s) | slot util. | max rel. share err | (points) | misallocated | \
         window p95 rel. err | (points) | Jain | \
         gap (× max cost / min share) | inter-admission (× fair) | after 60 s | p99 wait (all, s) | \
         free-slot moments |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &kind in &w.policies {
        let runs = wr.of(kind);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            kind.label(),
            opt(worst(&runs, Bad::Low, |r| Some(r.throughput)), fixed(0)),
            opt(worst(&runs, Bad::Low, |r| Some(r.utilization)), pct),
            opt(worst(&runs, Bad::High, |r| Some(r.max_rel_error)), pct),
            opt(worst(&runs, Bad::High, |r| Some(r.max_abs_error)), points),
            opt(worst(&runs, Bad::High, |r| Some(r.misallocation)), pct),
            opt(worst(&runs, Bad::High, |r| r.window_p95_error), pct),
            opt(worst(&runs, Bad::High, |r| r.window_p95_points), points),
            opt(worst(&runs, Bad::Low, |r| Some(r.jain)), fixed(4)),
            opt(worst(&runs, Bad::High, |r| r.gap_ratio), fixed(2)),
            opt(worst(&runs, Bad::High, |r| r.inter_admission_ratio), fixed(2)),
            opt(worst(&runs, Bad::High, |r| r.inter_admission_steady), fixed(2)),
            opt(worst(&runs, Bad::High, |r| Some(r.wait_p99_s)), fixed(2)),
            opt(worst(&runs, Bad::High, |r| Some(r.free_slot_moments as f64)), fixed(0)),
        );
    }
    s.push('\n');

    if w.tenants.len() <= 20 {
        s.push_str(&tenant_table(wr));
    }
    if !wr.runs[0].groups.is_empty() {
        s.push_str(&group_table(wr));
    }
    s.push_str(&extras(wr));
    s
}

fn tenant_table(wr: &WorkloadRuns) -> String {
    let w = wr.workload;
    let mut s = String::new();
    let _ = writeln!(s, "### Per tenant (worst seed per column; share as min–max over seeds)\n");
    let _ = writeln!(
        s,
        "| policy | tenant | weight | group | arrivals | target share | share | max \\|rel err\\| | p50 wait (s) | \
         p99 wait (s) | max wait (s) | window p95 err | inter-admission (× fair): run / after 60 s | demand met |"
    );
    let _ = writeln!(s, "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &kind in &w.policies {
        let runs = wr.of(kind);
        for (t, def) in w.tenants.iter().enumerate() {
            let (lo, hi) = range(&runs, |r| r.tenants[t].share);
            let (tlo, thi) = range(&runs, |r| r.tenants[t].target_share);
            let target = if (thi - tlo).abs() < 5e-5 { pct(tlo) } else { format!("{}–{}", pct(tlo), pct(thi)) };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {}–{} | {} | {} | {} | {} | {} | {} | {} |",
                kind.label(),
                def.name,
                def.weight,
                def.group,
                def.arrivals.label(),
                target,
                pct(lo),
                pct(hi),
                opt(worst(&runs, Bad::High, |r| Some(r.tenants[t].rel_error.abs())), pct),
                opt(worst(&runs, Bad::High, |r| Some(r.tenants[t].wait_p50_s)), fixed(2)),
                opt(worst(&runs, Bad::High, |r| Some(r.tenants[t].wait_p99_s)), fixed(2)),
                opt(worst(&runs, Bad::High, |r| Some(r.tenants[t].wait_max_s)), fixed(2)),
                opt(worst(&runs, Bad::High, |r| r.tenants[t].window_p95_error), pct),
                match (
                    worst(&runs, Bad::High, |r| r.tenants[t].inter_admission_ratio),
                    worst(&runs, Bad::High, |r| r.tenants[t].inter_admission_steady)
                ) {
                    (Some(a), Some(b)) => format!("{:.2} / {:.2}", a.value, b.value),
                    _ => "–".to_string(),
                },
                opt(worst(&runs, Bad::Low, |r| r.tenants[t].demand_met), pct),
            );
        }
    }
    s.push('\n');
    s
}

fn group_table(wr: &WorkloadRuns) -> String {
    let w = wr.workload;
    let mut s = String::new();
    let _ = writeln!(s, "### Groups\n");
    let _ = writeln!(
        s,
        "| policy | group | weight | target share | share | max \\|rel err\\| | grants while another group starved | \
         moments a backlogged group held no slot |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|");
    for &kind in &w.policies {
        let runs = wr.of(kind);
        for (g, gm) in runs[0].groups.iter().enumerate() {
            let (lo, hi) = range(&runs, |r| r.groups[g].share);
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {}–{} | {} | {} | {} |",
                kind.label(),
                gm.name,
                w.group_weight(&gm.name),
                pct(gm.target_share),
                pct(lo),
                pct(hi),
                opt(worst(&runs, Bad::High, |r| Some(r.groups[g].rel_error.abs())), pct),
                opt(worst(&runs, Bad::High, |r| Some(r.group_starved_grants as f64)), fixed(0)),
                opt(worst(&runs, Bad::High, |r| Some(r.group_starved_moments as f64)), fixed(0)),
            );
        }
    }
    s.push('\n');
    s
}

fn extras(wr: &WorkloadRuns) -> String {
    let w = wr.workload;
    let mut s = String::new();
    let fcfs = wr.of(PolicyKind::Fcfs);
    let fcfs_throughput = |seed: u64| fcfs.iter().find(|r| r.seed == seed).map(|r| r.throughput);
    if let Some(t) = w.focus_tenant {
        let _ = writeln!(s, "### {}'s share in its first {} s after its start\n", w.tenants[t].name, w.window_s);
        let _ = writeln!(s, "| policy | fair share | share (min–max) | worst deviation (points) |");
        let _ = writeln!(s, "|---|---:|---:|---:|");
        for &kind in &w.policies {
            let runs = wr.of(kind);
            let (lo, hi) = range(&runs, |r| r.focus.map_or(0.0, |f| f.0));
            let fair = runs[0].focus.map_or(0.0, |f| f.1);
            let dev = worst(&runs, Bad::High, |r| r.focus.map(|(x, f)| (x - f).abs()));
            let _ = writeln!(
                s,
                "| {} | {} | {}–{} | {} |",
                kind.label(),
                pct(fair),
                pct(lo),
                pct(hi),
                opt(dev, |x| format!("{:.2}", 100.0 * x))
            );
        }
        s.push('\n');
    }
    if w.id == "W4" {
        let _ = writeln!(s, "### Token share and throughput\n");
        let _ = writeln!(
            s,
            "| policy | long's share of service (min–max) | throughput / fcfs (worst) | slot util. (worst) |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|");
        for &kind in &w.policies {
            let runs = wr.of(kind);
            let (lo, hi) = range(&runs, |r| r.tenants[0].share);
            let ratio = worst(&runs, Bad::Low, |r| fcfs_throughput(r.seed).map(|f| r.throughput / f));
            let _ = writeln!(
                s,
                "| {} | {}–{} | {} | {} |",
                kind.label(),
                pct(lo),
                pct(hi),
                opt(ratio, pct),
                opt(worst(&runs, Bad::Low, |r| Some(r.utilization)), pct)
            );
        }
        s.push('\n');
    }
    if w.tenants.len() > 100 {
        let _ = writeln!(s, "### Light and heavy tenants\n");
        let _ =
            writeln!(s, "Light: the fair split gives the tenant all it offered (over the run); heavy: the others.\n");
        let _ = writeln!(s, "| policy | p99 wait light (s) | p99 wait heavy (s) | Jain | misallocated |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|");
        for &kind in &w.policies {
            let runs = wr.of(kind);
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                kind.label(),
                opt(worst(&runs, Bad::High, |r| r.light_heavy_p99_s.map(|x| x.0)), fixed(2)),
                opt(worst(&runs, Bad::High, |r| r.light_heavy_p99_s.map(|x| x.1)), fixed(2)),
                opt(worst(&runs, Bad::Low, |r| Some(r.jain)), fixed(4)),
                opt(worst(&runs, Bad::High, |r| Some(r.misallocation)), pct),
            );
        }
        s.push('\n');
    }
    if let Some(b) = w.brownout {
        let _ = writeln!(s, "### Brownout (threshold {} s, cap {} tokens)\n", b.after_s, b.max_tokens);
        let _ = writeln!(
            s,
            "| policy | p99 wait (s) | mean slot hold (s) | threshold + hold (s) | p99 − (threshold + hold) (s) | \
             threshold + hold/slots (s) | browned out | refused |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for &kind in &w.policies {
            let runs = wr.of(kind);
            let excess = worst(&runs, Bad::High, |r| Some(r.wait_p99_s - (b.after_s + r.mean_hold_s)));
            let seed = excess.map_or(0, |e| e.seed);
            let Some(r) = runs.iter().find(|r| r.seed == seed) else { continue };
            let refused: u64 = r.tenants.iter().map(|t| t.refused).sum();
            let _ = writeln!(
                s,
                "| {} (seed {}) | {:.2} | {:.2} | {:.2} | {:+.2} | {:.2} | {} | {} |",
                kind.label(),
                seed,
                r.wait_p99_s,
                r.mean_hold_s,
                b.after_s + r.mean_hold_s,
                r.wait_p99_s - (b.after_s + r.mean_hold_s),
                b.after_s + r.mean_hold_s / w.slots as f64,
                pct(r.browned_out_fraction),
                refused
            );
        }
        s.push('\n');
    }
    s
}

/// Checks the published targets against the fairshare runs (worst seed).
pub fn checks(wr: &WorkloadRuns) -> Vec<Check> {
    let w = wr.workload;
    let mut out = Vec::new();
    let fcfs = wr.of(PolicyKind::Fcfs);
    for &kind in w.policies.iter().filter(|k| k.is_fairshare()) {
        let runs = wr.of(kind);
        let mut check =
            |target: &str, measured: Option<Worst>, fmt: &dyn Fn(f64) -> String, pass: &dyn Fn(f64) -> bool| {
                if let Some(m) = measured {
                    out.push(Check {
                        workload: w.id,
                        policy: kind.label(),
                        target: target.to_string(),
                        measured: format!("{} (seed {})", fmt(m.value), m.seed),
                        pass: pass(m.value),
                    });
                }
            };
        let backlogged = w.tenants.iter().filter(|t| t.arrivals.is_backlogged()).count();
        match w.id {
            "W1" => {
                let abs = worst(&runs, Bad::High, |r| Some(r.max_abs_error)).map_or(0.0, |w| w.value);
                check(
                    &format!(
                        "relative share error over the run ≤ 1% (every tenant; absolute error: {:.2} points)",
                        100.0 * abs
                    ),
                    worst(&runs, Bad::High, |r| Some(r.max_rel_error)),
                    &pct,
                    &|x| x <= 0.01,
                );
                let abs = worst(&runs, Bad::High, |r| r.window_p95_points).map_or(0.0, |w| w.value);
                check(
                    &format!(
                        "p95 over 30 s windows of the relative share error ≤ 5% (every tenant; absolute: {:.2} points)",
                        100.0 * abs
                    ),
                    worst(&runs, Bad::High, |r| r.window_p95_error),
                    &pct,
                    &|x| x <= 0.05,
                );
                check("Jain's index ≥ 0.999", worst(&runs, Bad::Low, |r| Some(r.jain)), &fixed(4), &|x| x >= 0.999);
            }
            "W2" => {
                check(
                    "a (under its share) receives ≥ 99% of its demand",
                    worst(&runs, Bad::Low, |r| r.tenants[0].demand_met),
                    &pct,
                    &|x| x >= 0.99,
                );
                check(
                    "a's p99 queue wait ≤ 1 s",
                    worst(&runs, Bad::High, |r| Some(r.tenants[0].wait_p99_s)),
                    &|x| format!("{x:.3} s"),
                    &|x| x <= 1.0,
                );
            }
            "W3" => {
                check(
                    "returning tenant's share in its first 30 s within ±5 points of fair (50%)",
                    worst(&runs, Bad::High, |r| r.focus.map(|(x, f)| (x - f).abs())),
                    &|x| format!("{:.2} points", 100.0 * x),
                    &|x| x <= 0.05,
                );
            }
            "W4" => {
                check(
                    "long's share of service 50% ± 2 points",
                    worst(&runs, Bad::High, |r| Some((r.tenants[0].share - 0.5).abs())),
                    &|x| format!("off by {:.2} points", 100.0 * x),
                    &|x| x <= 0.02,
                );
                check(
                    "throughput (service/s) ≥ 99% of fcfs on the same seed",
                    worst(&runs, Bad::Low, |r| {
                        fcfs.iter().find(|f| f.seed == r.seed).map(|f| r.throughput / f.throughput)
                    }),
                    &pct,
                    &|x| x >= 0.99,
                );
            }
            "W7" => {
                check(
                    "group shares within ±2% (relative) of 75/25",
                    worst(&runs, Bad::High, |r| Some(r.groups.iter().map(|g| g.rel_error.abs()).fold(0.0, f64::max))),
                    &pct,
                    &|x| x <= 0.02,
                );
                check(
                    "no grant to a group while another backlogged group holds no slot",
                    worst(&runs, Bad::High, |r| Some(r.group_starved_grants as f64)),
                    &fixed(0),
                    &|x| x == 0.0,
                );
            }
            "W8" => {
                if let Some(b) = w.brownout {
                    check(
                        "p99 wait ≤ brownout threshold + mean slot hold time (measured p99 − bound)",
                        worst(&runs, Bad::High, |r| Some(r.wait_p99_s - (b.after_s + r.mean_hold_s))),
                        &|x| format!("{x:+.2} s"),
                        &|x| x <= 0.0,
                    );
                }
            }
            _ => {}
        }
        if backlogged >= 2 {
            check(
                "max weight-normalised service gap ≤ 1 × (max request cost / smallest weight)",
                worst(&runs, Bad::High, |r| r.gap_ratio),
                &|x| format!("{x:.2}×"),
                &|x| x <= 1.0,
            );
        }
        if backlogged >= 1 {
            check(
                "no backlogged tenant goes > 2× its fair inter-admission time without an admission",
                worst(&runs, Bad::High, |r| r.inter_admission_ratio),
                &|x| format!("{x:.2}×"),
                &|x| x <= 2.0,
            );
        }
        check(
            "zero moments with a free slot while a request waits",
            worst(&runs, Bad::High, |r| Some(r.free_slot_moments as f64)),
            &fixed(0),
            &|x| x == 0.0,
        );
    }
    out
}

/// The table of all checks.
pub fn checks_table(checks: &[Check]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "| workload | policy | target | measured (worst seed) | result |");
    let _ = writeln!(s, "|---|---|---|---|---|");
    for c in checks {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            c.workload,
            c.policy,
            c.target,
            c.measured,
            if c.pass { "PASS" } else { "**MISS**" }
        );
    }
    s
}

/// The definitions printed above the results.
pub const DEFINITIONS: &str = "\
Definitions (all simulated; virtual time):
- service: cost units as the scheduler counts them, input + output_weight × output (model weight 1), \
credited as tokens are produced (prompt with the first output token).
- target: weighted max-min fair (water-filling) split of the delivered service; backlogged tenants \
demand without limit from their start, open-loop tenants their offered load; hierarchical workloads \
split among groups by group weight first. Computed piecewise between backlogged start times.
- relative share error: |service / target − 1| (relative, not percentage points); the (points) columns \
give the absolute error |share − target share| in percentage points; window error: the same per 30 s \
window for backlogged tenants (open-loop tenants demand what they got), p95 over windows per tenant, \
worst tenant.
- misallocated: Σ|service − target| / (2 Σ service). Jain: over service / target.
- gap: largest spread of (service since common start) / fair share between two tenants backlogged \
together, at any moment, over (largest actual request cost / smallest fair share).
- inter-admission: longest time a backlogged tenant went without an admission (to the end of the run \
included) over its fair inter-admission time (mean actual request cost / fair service rate).
- waits: submit to slot; requests still waiting at the end count with their wait so far.
- free-slot moments: events after which a slot was free while a request waited (none has a tenant or \
model cap here, so every waiting request is eligible).
";
