//! The discrete-event engine: virtual time, the modelled backend, and raw observations.
//!
//! Time is a `u64` of microseconds; the policy is handed it as a `Duration`. Events are
//! ordered by (time, sequence number), so runs are fully deterministic.
//!
//! The backend: an admitted request holds one slot for its prefill
//! (`input × prefill_per_token`), then emits its output tokens one per inter-token
//! latency, and completes (releases the slot, and the policy is told its actual usage)
//! with the last one. Service is credited as it is produced, in the scheduler's cost
//! units: the prompt (`input`) with the first output token, then `output_weight` per
//! output token. Windowed service is therefore exact.
//!
//! Checks made after every event (independent of the policy's own state):
//! - free-slot-while-waiting: a slot is free while a request waits. No request has a
//!   tenant or model cap in these workloads, so every waiting request is eligible.
//! - group starvation: a grant goes to one group while another group has requests
//!   waiting and no slot at all.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use obleth_scheduler::core::Tokens;
use rand::Rng;
use rand::rngs::StdRng;

use crate::metrics;
use crate::policy::{Admit, Arrival, Offered, Policy, ReqId};
use crate::rng::{self, Purpose};
use crate::workload::{Arrivals, Workload};

const US: f64 = 1e6;

/// Admission gaps that end before this are start-up (the pool fills in arrival order,
/// whatever the weights) and are left out of the steady-state figure.
pub const WARMUP_US: u64 = 60_000_000;

fn us(seconds: f64) -> u64 {
    (seconds * US).round() as u64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// A backlogged tenant starts: submits one of its initial requests (and schedules
    /// the next at the same instant, behind the other tenants starting then).
    Start(usize),
    /// An open-loop tenant's next request arrives.
    Arrive(usize),
    /// A request emits its next output token.
    Token(ReqId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    at: u64,
    seq: u64,
    kind: Kind,
}

#[derive(Debug)]
struct Req {
    tenant: usize,
    input: u64,
    /// Actual output (after any brownout cap).
    output: u64,
    submitted: u64,
    admitted: Option<u64>,
    produced: u64,
    refused: bool,
}

/// Open-loop arrival clock of one tenant.
#[derive(Debug)]
struct Clock {
    /// Time of the last arrival (seconds).
    at: f64,
    on: bool,
    /// End of the current on or off period (seconds).
    until: f64,
}

struct TenantRt {
    lengths: StdRng,
    arrivals: StdRng,
    clock: Clock,
    group: usize,
}

/// What one tenant experienced.
#[derive(Debug, Clone, Default)]
pub struct TenantObs {
    /// Service received over the run (cost units).
    pub service: f64,
    /// Service per window (`window_s`), full windows only.
    pub window_service: Vec<f64>,
    /// Service inside the focus interval.
    pub focus_service: f64,
    /// Queue waits in microseconds: admitted requests, plus those still waiting at the
    /// end (censored at the end of the run, so starvation is not hidden).
    pub waits_us: Vec<u64>,
    pub arrived: u64,
    pub admitted: u64,
    pub browned_out: u64,
    pub refused: u64,
    /// Cost of every request that arrived, at its uncapped actual usage.
    pub offered_cost: f64,
    /// Cost of admitted requests at their actual (possibly capped) usage.
    pub admitted_cost: f64,
    /// Longest time without an admission while backlogged (backlogged tenants only),
    /// including the stretch from the last admission to the end of the run.
    pub max_admission_gap_us: u64,
    /// When that longest stretch ended.
    pub max_admission_gap_at_us: u64,
    /// The longest such stretch among those ending after [`WARMUP_US`].
    pub steady_admission_gap_us: u64,
    last_admission: Option<u64>,
    queued: u32,
    in_flight: u32,
}

/// Gap tracking for the tenants that are continuously backlogged from a common start.
#[derive(Debug, Clone)]
pub struct Epoch {
    pub start_us: u64,
    pub members: Vec<usize>,
    /// Each member's fair share among the members (weights, or groups then weights).
    pub phi: Vec<f64>,
    baseline: Vec<f64>,
    active: bool,
    /// Largest spread of `(service since start) / phi` between two members.
    pub max_gap: f64,
    pub max_gap_at_us: u64,
}

/// The raw record of a run.
#[derive(Debug, Clone)]
pub struct Observations {
    pub duration_us: u64,
    pub window_us: u64,
    pub tenants: Vec<TenantObs>,
    pub window_total: Vec<f64>,
    pub focus: Option<(usize, u64, u64)>,
    pub focus_total: f64,
    pub free_slot_moments: u64,
    pub group_starved_grants: u64,
    pub group_starved_moments: u64,
    pub events: u64,
    pub busy_slot_us: f64,
    pub completed: u64,
    pub hold_us_total: u64,
    /// Largest actual cost of an admitted request.
    pub max_request_cost: f64,
    pub epochs: Vec<Epoch>,
}

/// Simulates workload `w` with `seed` under `policy`.
pub fn simulate(w: &Workload, seed: u64, policy: &mut dyn Policy) -> Observations {
    Sim::new(w, seed, policy).run()
}

struct Sim<'a> {
    w: &'a Workload,
    policy: &'a mut dyn Policy,
    now: u64,
    end: u64,
    seq: u64,
    heap: BinaryHeap<Reverse<Event>>,
    reqs: Vec<Req>,
    rt: Vec<TenantRt>,
    groups: usize,
    group_queued: Vec<u32>,
    group_in_flight: Vec<u32>,
    busy: u32,
    waiting: usize,
    last_event: u64,
    obs: Observations,
}

impl<'a> Sim<'a> {
    fn new(w: &'a Workload, seed: u64, policy: &'a mut dyn Policy) -> Sim<'a> {
        let end = us(w.duration_s);
        let window_us = us(w.window_s);
        let windows = (end / window_us) as usize;
        let mut group_names: Vec<&str> = Vec::new();
        let rt = w
            .tenants
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let group = match group_names.iter().position(|g| *g == t.group) {
                    Some(g) => g,
                    None => {
                        group_names.push(&t.group);
                        group_names.len() - 1
                    }
                };
                TenantRt {
                    lengths: rng::stream(seed, i as u64, Purpose::Lengths),
                    arrivals: rng::stream(seed, i as u64, Purpose::Arrivals),
                    clock: Clock { at: 0.0, on: true, until: f64::INFINITY },
                    group,
                }
            })
            .collect();
        let focus = w.focus_tenant.map(|t| {
            let start = us(w.start_s(t));
            (t, start, start + window_us)
        });
        let obs = Observations {
            duration_us: end,
            window_us,
            tenants: vec![TenantObs { window_service: vec![0.0; windows], ..TenantObs::default() }; w.tenants.len()],
            window_total: vec![0.0; windows],
            focus,
            focus_total: 0.0,
            free_slot_moments: 0,
            group_starved_grants: 0,
            group_starved_moments: 0,
            events: 0,
            busy_slot_us: 0.0,
            completed: 0,
            hold_us_total: 0,
            max_request_cost: 0.0,
            epochs: epochs(w),
        };
        let groups = group_names.len();
        Sim {
            w,
            policy,
            now: 0,
            end,
            seq: 0,
            heap: BinaryHeap::new(),
            reqs: Vec::new(),
            rt,
            groups,
            group_queued: vec![0; groups],
            group_in_flight: vec![0; groups],
            busy: 0,
            waiting: 0,
            last_event: 0,
            obs,
        }
    }

    fn schedule(&mut self, at: u64, kind: Kind) {
        self.seq += 1;
        self.heap.push(Reverse(Event { at, seq: self.seq, kind }));
    }

    fn run(mut self) -> Observations {
        for t in 0..self.w.tenants.len() {
            match self.w.tenants[t].arrivals {
                Arrivals::Backlogged { start_s } => self.schedule(us(start_s), Kind::Start(t)),
                Arrivals::Poisson { .. } | Arrivals::OnOff { .. } => {
                    self.init_clock(t);
                    self.schedule_next_arrival(t);
                }
            }
        }
        while let Some(Reverse(ev)) = self.heap.pop() {
            if ev.at > self.end {
                break;
            }
            self.obs.busy_slot_us += self.busy as f64 * (ev.at - self.last_event) as f64;
            self.last_event = ev.at;
            self.now = ev.at;
            self.obs.events += 1;
            match ev.kind {
                Kind::Start(t) => self.start(t),
                Kind::Arrive(t) => {
                    self.submit(t);
                    self.schedule_next_arrival(t);
                }
                Kind::Token(id) => self.token(id),
            }
            self.check();
        }
        self.finish()
    }

    // === arrivals ===

    fn init_clock(&mut self, t: usize) {
        if let Arrivals::OnOff { mean_on_s, mean_off_s, .. } = self.w.tenants[t].arrivals {
            let rt = &mut self.rt[t];
            // Start in the stationary state; residual period lengths are exponential too.
            let on = rt.arrivals.random::<f64>() < mean_on_s / (mean_on_s + mean_off_s);
            let mean = if on { mean_on_s } else { mean_off_s };
            rt.clock = Clock { at: 0.0, on, until: rng::exponential(&mut rt.arrivals, mean) };
        }
    }

    fn schedule_next_arrival(&mut self, t: usize) {
        let rt = &mut self.rt[t];
        let next = match self.w.tenants[t].arrivals {
            Arrivals::Backlogged { .. } => return,
            Arrivals::Poisson { rate } => {
                rt.clock.at += rng::exponential(&mut rt.arrivals, 1.0 / rate);
                rt.clock.at
            }
            Arrivals::OnOff { rate_on, mean_on_s, mean_off_s } => loop {
                let c = &mut rt.clock;
                if c.on {
                    let gap = rng::exponential(&mut rt.arrivals, 1.0 / rate_on);
                    if c.at + gap < c.until {
                        c.at += gap;
                        break c.at;
                    }
                    c.at = c.until;
                    c.on = false;
                    c.until = c.at + rng::exponential(&mut rt.arrivals, mean_off_s);
                } else {
                    c.at = c.until;
                    c.on = true;
                    c.until = c.at + rng::exponential(&mut rt.arrivals, mean_on_s);
                }
                if c.at > self.w.duration_s {
                    return;
                }
            },
        };
        let at = us(next);
        if at <= self.end {
            self.schedule(at, Kind::Arrive(t));
        }
    }

    fn start(&mut self, t: usize) {
        let now = self.now;
        for e in &mut self.obs.epochs {
            if !e.active && e.start_us == now {
                e.active = true;
                e.baseline = e.members.iter().map(|&m| self.obs.tenants[m].service).collect();
            }
        }
        if self.obs.tenants[t].arrived == 0 {
            self.obs.tenants[t].last_admission = Some(now);
        }
        // One request per turn: tenants starting at the same moment interleave their
        // initial requests (the order of tenants in the workload gives no one the pool).
        self.submit(t);
        if (self.obs.tenants[t].arrived as usize) < self.w.outstanding() {
            self.schedule(now, Kind::Start(t));
        }
    }

    fn submit(&mut self, t: usize) {
        let def = &self.w.tenants[t];
        let d = def.lengths.draw(&mut self.rt[t].lengths);
        let id = self.reqs.len();
        self.reqs.push(Req {
            tenant: t,
            input: d.input,
            output: d.output,
            submitted: self.now,
            admitted: None,
            produced: 0,
            refused: false,
        });
        let o = &mut self.obs.tenants[t];
        o.arrived += 1;
        o.offered_cost += metrics::cost(d.input, d.output, self.w.output_weight);
        let arrival = Arrival { id, tenant: t, input: d.input, max_tokens: d.max_tokens };
        match self.policy.submit(Duration::from_micros(self.now), arrival) {
            Offered::Refused => {
                self.reqs[id].refused = true;
                self.obs.tenants[t].refused += 1;
            }
            Offered::Accepted { admits } => {
                self.waiting += 1;
                self.obs.tenants[t].queued += 1;
                self.group_queued[self.rt[t].group] += 1;
                for a in admits {
                    self.admit(a);
                }
            }
        }
    }

    // === the backend ===

    fn admit(&mut self, a: Admit) {
        let now = self.now;
        let r = &mut self.reqs[a.id];
        assert!(r.admitted.is_none() && !r.refused, "policy admitted request {} twice or after refusing it", a.id);
        r.admitted = Some(now);
        if let Some(cap) = a.max_tokens_cap {
            r.output = r.output.min(cap as u64).max(1);
        }
        let (t, input, output, submitted) = (r.tenant, r.input, r.output, r.submitted);
        let g = self.rt[t].group;
        self.waiting -= 1;
        self.busy += 1;
        assert!(self.busy <= self.w.slots, "policy exceeded the slot cap");
        if self.groups > 1
            && (0..self.groups).any(|h| h != g && self.group_queued[h] > 0 && self.group_in_flight[h] == 0)
        {
            self.obs.group_starved_grants += 1;
        }
        self.group_queued[g] -= 1;
        self.group_in_flight[g] += 1;
        let cost = metrics::cost(input, output, self.w.output_weight);
        self.obs.max_request_cost = self.obs.max_request_cost.max(cost);
        let o = &mut self.obs.tenants[t];
        o.queued -= 1;
        o.in_flight += 1;
        o.admitted += 1;
        o.admitted_cost += cost;
        o.browned_out += a.max_tokens_cap.is_some() as u64;
        o.waits_us.push(now - submitted);
        if let Some(last) = o.last_admission {
            if now - last > o.max_admission_gap_us {
                o.max_admission_gap_us = now - last;
                o.max_admission_gap_at_us = now;
            }
            if now > WARMUP_US {
                o.steady_admission_gap_us = o.steady_admission_gap_us.max(now - last);
            }
            o.last_admission = Some(now);
        }
        let first = now + self.w.prefill_us(input) + self.w.itl_us;
        self.schedule(first, Kind::Token(a.id));
    }

    fn token(&mut self, id: ReqId) {
        let r = &mut self.reqs[id];
        r.produced += 1;
        let mut amount = self.w.output_weight;
        if r.produced == 1 {
            amount += r.input as f64;
        }
        let (t, done) = (r.tenant, r.produced == r.output);
        self.credit(t, amount);
        if !done {
            self.schedule(self.now + self.w.itl_us, Kind::Token(id));
            return;
        }
        let r = &self.reqs[id];
        let actual = Tokens { input: r.input, output: r.output };
        let admitted = r.admitted.expect("a producing request was admitted");
        self.busy -= 1;
        self.obs.completed += 1;
        self.obs.hold_us_total += self.now - admitted;
        self.obs.tenants[t].in_flight -= 1;
        self.group_in_flight[self.rt[t].group] -= 1;
        for a in self.policy.complete(Duration::from_micros(self.now), id, actual) {
            self.admit(a);
        }
        if self.w.tenants[t].arrivals.is_backlogged() {
            self.submit(t);
        }
    }

    fn credit(&mut self, t: usize, amount: f64) {
        let now = self.now;
        let o = &mut self.obs.tenants[t];
        o.service += amount;
        let window = (now / self.obs.window_us) as usize;
        if let Some(s) = o.window_service.get_mut(window) {
            *s += amount;
            self.obs.window_total[window] += amount;
        }
        if let Some((f, from, to)) = self.obs.focus
            && (from..to).contains(&now)
        {
            self.obs.focus_total += amount;
            if f == t {
                self.obs.tenants[t].focus_service += amount;
            }
        }
        for e in &mut self.obs.epochs {
            if !e.active || !e.members.contains(&t) {
                continue;
            }
            let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
            for (k, &m) in e.members.iter().enumerate() {
                let v = (self.obs.tenants[m].service - e.baseline[k]) / e.phi[k];
                lo = lo.min(v);
                hi = hi.max(v);
            }
            if hi - lo > e.max_gap {
                e.max_gap = hi - lo;
                e.max_gap_at_us = now;
            }
        }
    }

    // === checks ===

    fn check(&mut self) {
        if self.busy < self.w.slots && self.waiting > 0 {
            self.obs.free_slot_moments += 1;
        }
        if self.groups > 1 && (0..self.groups).any(|g| self.group_queued[g] > 0 && self.group_in_flight[g] == 0) {
            self.obs.group_starved_moments += 1;
        }
    }

    fn finish(mut self) -> Observations {
        let end = self.end;
        self.obs.busy_slot_us += self.busy as f64 * (end - self.last_event) as f64;
        for r in &self.reqs {
            if r.admitted.is_none() && !r.refused {
                self.obs.tenants[r.tenant].waits_us.push(end - r.submitted);
            }
        }
        for o in &mut self.obs.tenants {
            if let Some(last) = o.last_admission {
                if end - last > o.max_admission_gap_us {
                    o.max_admission_gap_us = end - last;
                    o.max_admission_gap_at_us = end;
                }
                o.steady_admission_gap_us = o.steady_admission_gap_us.max(end - last);
            }
        }
        self.obs
    }
}

/// One epoch per distinct start time of backlogged tenants: the backlogged tenants
/// started by then, with their fair shares among themselves.
fn epochs(w: &Workload) -> Vec<Epoch> {
    let mut starts: Vec<u64> =
        (0..w.tenants.len()).filter(|&t| w.tenants[t].arrivals.is_backlogged()).map(|t| us(w.start_s(t))).collect();
    starts.sort_unstable();
    starts.dedup();
    starts
        .into_iter()
        .filter_map(|start| {
            let members: Vec<usize> = (0..w.tenants.len())
                .filter(|&t| w.tenants[t].arrivals.is_backlogged() && us(w.start_s(t)) <= start)
                .collect();
            if members.len() < 2 {
                return None;
            }
            let demands: Vec<f64> =
                (0..w.tenants.len()).map(|t| if members.contains(&t) { f64::INFINITY } else { 0.0 }).collect();
            let fill = metrics::fair_split(w, 1.0, &demands);
            let phi = members.iter().map(|&m| fill[m]).collect();
            Some(Epoch {
                start_us: start,
                baseline: vec![0.0; members.len()],
                members,
                phi,
                active: false,
                max_gap: 0.0,
                max_gap_at_us: 0,
            })
        })
        .collect()
}
