//! The workloads: who sends what, when, to how big a pool.
//!
//! A [`Workload`] is plain data: the modelled backend (slots, prefill and decode
//! speed), the scheduler settings the real core runs with, the tenants (weight, group,
//! request generator, length distribution) and the policies to compare. [`catalogue`]
//! builds the published set (W1–W8); parameters are stated in each `description`.

use obleth_scheduler::core::Mode;
use rand::rngs::StdRng;

use crate::rng::{self, Purpose};

/// A distribution of token counts.
#[derive(Debug, Clone)]
pub enum Dist {
    Fixed(u64),
    /// Lognormal with this median and sigma, clamped to `[1, max]`.
    LogNormal {
        median: f64,
        sigma: f64,
        max: u64,
    },
}

impl Dist {
    fn draw(&self, rng: &mut StdRng) -> u64 {
        match *self {
            Dist::Fixed(n) => n,
            Dist::LogNormal { median, sigma, max } => (rng::lognormal(rng, median, sigma).round() as u64).clamp(1, max),
        }
    }
}

/// Prompt and output lengths of a tenant's requests.
#[derive(Debug, Clone)]
pub struct Lengths {
    pub input: Dist,
    /// The output the model would produce if not cut off.
    pub output: Dist,
    /// What the client asks for; the actual output is at most this.
    pub max_tokens: u32,
}

/// One request's sizes as drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draw {
    pub input: u64,
    /// Actual output (already at most `max_tokens`), at least 1.
    pub output: u64,
    pub max_tokens: u32,
}

impl Lengths {
    /// Chat-like traffic: prompts lognormal (median 400, sigma 1.0, at most 8192),
    /// outputs lognormal (median 150, sigma 0.8) cut at `max_tokens` = 1024.
    pub fn chat() -> Lengths {
        Lengths {
            input: Dist::LogNormal { median: 400.0, sigma: 1.0, max: 8192 },
            output: Dist::LogNormal { median: 150.0, sigma: 0.8, max: 1 << 20 },
            max_tokens: 1024,
        }
    }

    pub fn fixed(input: u64, output: u64, max_tokens: u32) -> Lengths {
        Lengths { input: Dist::Fixed(input), output: Dist::Fixed(output), max_tokens }
    }

    pub fn draw(&self, rng: &mut StdRng) -> Draw {
        let input = self.input.draw(rng);
        let output = self.output.draw(rng).clamp(1, self.max_tokens.max(1) as u64);
        Draw { input, output, max_tokens: self.max_tokens }
    }
}

/// How a tenant generates requests.
#[derive(Debug, Clone)]
pub enum Arrivals {
    /// Closed loop from `start_s` on: keeps `slots + 2` requests outstanding, so it
    /// always has a queue; a finished request is replaced at once.
    Backlogged { start_s: f64 },
    /// Open loop: Poisson arrivals at `rate` requests per second.
    Poisson { rate: f64 },
    /// Open loop, bursty: alternates exponentially distributed on and off periods
    /// (means `mean_on_s`, `mean_off_s`); Poisson at `rate_on` while on, silent while off.
    OnOff { rate_on: f64, mean_on_s: f64, mean_off_s: f64 },
}

impl Arrivals {
    pub fn is_backlogged(&self) -> bool {
        matches!(self, Arrivals::Backlogged { .. })
    }

    pub fn label(&self) -> &'static str {
        match self {
            Arrivals::Backlogged { .. } => "backlogged",
            Arrivals::Poisson { .. } => "poisson",
            Arrivals::OnOff { .. } => "on/off",
        }
    }
}

/// A tenant of a workload.
#[derive(Debug, Clone)]
pub struct TenantDef {
    pub name: String,
    pub weight: u32,
    /// Its group (used by hierarchical mode only).
    pub group: String,
    pub arrivals: Arrivals,
    pub lengths: Lengths,
}

/// Brownout settings of the scheduler.
#[derive(Debug, Clone, Copy)]
pub struct Brownout {
    pub after_s: f64,
    pub max_tokens: u32,
}

/// A policy to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// The real scheduler core in the given mode.
    Fairshare(Mode),
    /// Global FIFO with the same slot cap.
    Fcfs,
    /// Per-request round robin over the tenants that have a queued request.
    RoundRobin,
}

impl PolicyKind {
    pub fn label(self) -> &'static str {
        match self {
            PolicyKind::Fairshare(Mode::Weighted) => "fairshare (weighted)",
            PolicyKind::Fairshare(Mode::Hierarchical) => "fairshare (hierarchical)",
            PolicyKind::Fcfs => "fcfs",
            PolicyKind::RoundRobin => "rr",
        }
    }

    pub fn is_fairshare(self) -> bool {
        matches!(self, PolicyKind::Fairshare(_))
    }
}

/// A simulated scenario.
#[derive(Debug, Clone)]
pub struct Workload {
    pub id: &'static str,
    pub title: &'static str,
    /// The parameters in words (printed with the results).
    pub description: String,
    /// Concurrent sequences the backend (and the scheduler) allows.
    pub slots: u32,
    /// Time between two output tokens of one request, in microseconds.
    pub itl_us: u64,
    /// Prefill time per prompt token, in nanoseconds.
    pub prefill_ns_per_token: u64,
    pub duration_s: f64,
    /// Width of the windows for windowed shares.
    pub window_s: f64,
    /// The scheduler's `output_weight` (also used to measure service).
    pub output_weight: f64,
    pub brownout: Option<Brownout>,
    pub tenants: Vec<TenantDef>,
    /// Group weights for hierarchical mode.
    pub group_weights: Vec<(String, u32)>,
    pub policies: Vec<PolicyKind>,
    /// A tenant whose share over `[start, start + window)` is reported on its own (W3).
    pub focus_tenant: Option<usize>,
    /// The structure the fair targets follow: weighted (all tenants by weight) or
    /// hierarchical (groups by group weight, then tenants by weight within a group).
    pub target: Mode,
}

impl Workload {
    /// How long a request holds its slot: prefill, then one inter-token latency per
    /// output token.
    pub fn hold_us(&self, input: u64, output: u64) -> u64 {
        self.prefill_us(input) + output * self.itl_us
    }

    pub fn prefill_us(&self, input: u64) -> u64 {
        (input * self.prefill_ns_per_token).div_ceil(1000)
    }

    /// Backlogged tenants keep this many requests outstanding.
    pub fn outstanding(&self) -> usize {
        self.slots as usize + 2
    }

    /// Mean slot holding time (seconds) of requests drawn from `lengths`, by Monte Carlo
    /// with a fixed seed (so workload parameters do not depend on the run seed).
    pub fn mean_hold_s(&self, lengths: &Lengths) -> f64 {
        let mut rng = rng::stream(0xC0FFEE, 0, Purpose::Setup);
        let n = 200_000;
        let total: u64 = (0..n)
            .map(|_| {
                let d = lengths.draw(&mut rng);
                self.hold_us(d.input, d.output)
            })
            .sum();
        total as f64 / n as f64 / 1e6
    }

    /// Requests per second the pool completes when every slot is busy with `lengths`.
    pub fn capacity_rps(&self, lengths: &Lengths) -> f64 {
        self.slots as f64 / self.mean_hold_s(lengths)
    }

    /// When a tenant's demand starts (backlogged tenants may start late).
    pub fn start_s(&self, tenant: usize) -> f64 {
        match self.tenants[tenant].arrivals {
            Arrivals::Backlogged { start_s } => start_s,
            _ => 0.0,
        }
    }

    pub fn group_weight(&self, group: &str) -> u32 {
        self.group_weights.iter().find(|(g, _)| g == group).map_or(1, |(_, w)| *w)
    }
}

/// Options that shorten the catalogue (for `--quick`).
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub duration_s: f64,
    /// When W3's tenant returns.
    pub w3_return_s: f64,
}

impl Scale {
    pub const FULL: Scale = Scale { duration_s: 600.0, w3_return_s: 200.0 };
    pub const QUICK: Scale = Scale { duration_s: 240.0, w3_return_s: 100.0 };
}

/// Both fairshare modes against both baselines.
const BOTH_MODES_AND_BASELINES: [PolicyKind; 4] = [
    PolicyKind::Fairshare(Mode::Weighted),
    PolicyKind::Fairshare(Mode::Hierarchical),
    PolicyKind::Fcfs,
    PolicyKind::RoundRobin,
];

fn base(id: &'static str, title: &'static str, scale: Scale) -> Workload {
    Workload {
        id,
        title,
        description: String::new(),
        slots: 32,
        itl_us: 20_000,
        prefill_ns_per_token: 100_000,
        duration_s: scale.duration_s,
        window_s: 30.0,
        output_weight: 2.0,
        brownout: None,
        tenants: Vec::new(),
        group_weights: Vec::new(),
        policies: vec![PolicyKind::Fairshare(Mode::Weighted), PolicyKind::Fcfs, PolicyKind::RoundRobin],
        focus_tenant: None,
        target: Mode::Weighted,
    }
}

fn tenant(name: &str, weight: u32, group: &str, arrivals: Arrivals, lengths: Lengths) -> TenantDef {
    TenantDef { name: name.to_string(), weight, group: group.to_string(), arrivals, lengths }
}

const COMMON: &str = "32 slots, inter-token latency 20 ms, prefill 0.1 ms/token, output_weight 2, \
                      model weight 1, no brownout unless stated; chat lengths: prompt lognormal(median 400, \
                      sigma 1.0, max 8192), output lognormal(median 150, sigma 0.8) cut at max_tokens 1024; \
                      backlogged = closed loop with slots+2 = 34 requests outstanding";

fn w1(scale: Scale) -> Workload {
    let mut w = base("W1", "three backlogged tenants, weights 500/50/100", scale);
    let b = || Arrivals::Backlogged { start_s: 0.0 };
    w.tenants = vec![
        tenant("a", 500, "a", b(), Lengths::chat()),
        tenant("b", 50, "b", b(), Lengths::chat()),
        tenant("c", 100, "c", b(), Lengths::chat()),
    ];
    w.group_weights = vec![("a".into(), 500), ("b".into(), 50), ("c".into(), 100)];
    w.policies = BOTH_MODES_AND_BASELINES.to_vec();
    w.description = format!(
        "{COMMON}. Tenants a/b/c, weights 500/50/100, all backlogged from t=0 with chat lengths. \
         Hierarchical run: each tenant in its own group, group weight = tenant weight. {} s.",
        w.duration_s
    );
    w
}

fn w2(scale: Scale) -> Workload {
    let mut w = base("W2", "weight-500 tenant under its share (Poisson, 30% of capacity)", scale);
    let rate = 0.3 * w.capacity_rps(&Lengths::chat());
    let b = || Arrivals::Backlogged { start_s: 0.0 };
    w.tenants = vec![
        tenant("a", 500, "a", Arrivals::Poisson { rate }, Lengths::chat()),
        tenant("b", 50, "b", b(), Lengths::chat()),
        tenant("c", 100, "c", b(), Lengths::chat()),
    ];
    w.description = format!(
        "{COMMON}. Tenant a (weight 500) Poisson at {rate:.2} req/s = 30% of capacity \
         (capacity = slots / mean slot hold time of chat requests); b (50) and c (100) backlogged. {} s.",
        w.duration_s
    );
    w
}

fn w3(scale: Scale) -> Workload {
    let mut w = base("W3", "a tenant idle, then backlogged (no banking)", scale);
    let back = scale.w3_return_s;
    w.tenants = vec![
        tenant("a", 100, "a", Arrivals::Backlogged { start_s: 0.0 }, Lengths::chat()),
        tenant("b", 100, "b", Arrivals::Backlogged { start_s: 0.0 }, Lengths::chat()),
        tenant("c", 200, "c", Arrivals::Backlogged { start_s: back }, Lengths::chat()),
    ];
    w.focus_tenant = Some(2);
    w.description = format!(
        "{COMMON}. a (100) and b (100) backlogged from t=0; c (200) idle until t={back} s, then \
         backlogged (34 requests at once, closed loop after). Fair share of c once back: 50%. {} s.",
        w.duration_s
    );
    w
}

fn w4(scale: Scale) -> Workload {
    let mut w = base("W4", "long vs short requests, equal weights", scale);
    let b = || Arrivals::Backlogged { start_s: 0.0 };
    w.tenants = vec![
        tenant("long", 1, "long", b(), Lengths::fixed(2048, 1000, 1024)),
        tenant("short", 1, "short", b(), Lengths::fixed(32, 32, 64)),
    ];
    w.policies = BOTH_MODES_AND_BASELINES.to_vec();
    w.description = format!(
        "{COMMON}. long: prompt 2048, output 1000, max_tokens 1024; short: prompt 32, output 32, \
         max_tokens 64; weights 1 and 1, both backlogged. Hierarchical run: each tenant in its own \
         group, group weights 1 and 1 (shows how groups split work). {} s.",
        w.duration_s
    );
    w
}

fn w5(scale: Scale) -> Workload {
    let mut w = base("W5", "1,000 tenants, Zipf demand, bursty", scale);
    let n = 1000;
    let load = 1.2;
    let (mean_on, mean_off) = (10.0, 40.0);
    let duty = mean_on / (mean_on + mean_off);
    let cap = w.capacity_rps(&Lengths::chat());
    let shares = rng::zipf_weights(n, 1.0);
    // Weights are part of the workload, not of the run: a fixed stream.
    let mut setup = rng::stream(0x5EED_0005, 0, Purpose::Setup);
    const WEIGHTS: [u32; 4] = [1, 2, 5, 10];
    w.tenants = shares
        .iter()
        .enumerate()
        .map(|(k, share)| {
            let weight = WEIGHTS[rand::Rng::random_range(&mut setup, 0..WEIGHTS.len())];
            let rate_on = share * load * cap / duty;
            tenant(
                &format!("t{:04}", k + 1),
                weight,
                "all",
                Arrivals::OnOff { rate_on, mean_on_s: mean_on, mean_off_s: mean_off },
                Lengths::chat(),
            )
        })
        .collect();
    w.description = format!(
        "{COMMON}. 1,000 tenants; tenant of rank k offers a Zipf(s=1) share of a total mean load of \
         {load}x capacity; on/off arrivals (exponential on periods, mean {mean_on} s, off periods mean \
         {mean_off} s; Poisson while on, so a tenant's on-rate is its mean rate / {duty}); weights drawn \
         uniformly from {{1,2,5,10}} (fixed seed, same in every run). {} s.",
        w.duration_s
    );
    w
}

fn w7(scale: Scale) -> Workload {
    let mut w = base("W7", "hierarchical: groups 3:1 with 3 and 10 tenants", scale);
    let b = || Arrivals::Backlogged { start_s: 0.0 };
    let mut tenants = vec![
        tenant("gold-1", 1, "gold", b(), Lengths::chat()),
        tenant("gold-2", 2, "gold", b(), Lengths::chat()),
        tenant("gold-3", 3, "gold", b(), Lengths::chat()),
    ];
    for i in 1..=10 {
        tenants.push(tenant(&format!("bronze-{i:02}"), 1, "bronze", b(), Lengths::chat()));
    }
    w.tenants = tenants;
    w.group_weights = vec![("gold".into(), 3), ("bronze".into(), 1)];
    w.policies = vec![PolicyKind::Fairshare(Mode::Hierarchical), PolicyKind::Fcfs, PolicyKind::RoundRobin];
    w.target = Mode::Hierarchical;
    w.description = format!(
        "{COMMON}. Hierarchical mode. Group gold (weight 3): tenants of weight 1, 2, 3; group bronze \
         (weight 1): 10 tenants of weight 1; all backlogged, chat lengths. Targets: gold 75%, bronze 25%. {} s.",
        w.duration_s
    );
    w
}

fn w8(scale: Scale) -> Workload {
    let mut w = base("W8", "brownout at 2x capacity", scale);
    let cap = w.capacity_rps(&Lengths::chat());
    let weights = [1u32, 1, 2, 2, 4, 4, 8, 8];
    let total: u32 = weights.iter().sum();
    w.tenants = weights
        .iter()
        .enumerate()
        .map(|(i, &weight)| {
            let rate = 2.0 * cap * weight as f64 / total as f64;
            tenant(&format!("p{}", i + 1), weight, "all", Arrivals::Poisson { rate }, Lengths::chat())
        })
        .collect();
    w.brownout = Some(Brownout { after_s: 5.0, max_tokens: 64 });
    w.description = format!(
        "{COMMON}. 8 tenants, weights 1,1,2,2,4,4,8,8, Poisson at rates proportional to weight, \
         {:.2} req/s in total = 2x capacity. Brownout: a request admitted after waiting > 5 s has \
         max_tokens cut to 64 (fcfs and rr apply the same rule). {} s.",
        2.0 * cap,
        w.duration_s
    );
    w
}

/// All published workloads.
pub fn catalogue(scale: Scale) -> Vec<Workload> {
    vec![w1(scale), w2(scale), w3(scale), w4(scale), w5(scale), w7(scale), w8(scale)]
}
