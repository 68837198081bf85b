//! Admission-cost micro-benchmark: the core's `submit` and `complete` on a saturated
//! pool with many backlogged tenants.
//!
//! Every tenant always has requests waiting; each step completes the oldest request in
//! flight (which admits the next one) and the tenant whose request finished submits a
//! new one, so the number of active tenants stays fixed. Estimates and actual usage vary
//! (drawn before the timed calls), so counters keep reordering.

use std::collections::{HashMap, VecDeque};
use std::hint::black_box;
use std::time::{Duration, Instant};

use obleth_scheduler::core::{Config, Mode, Request, Scheduler, Submitted, TenantSpec, Ticket, Tokens};
use rand::Rng;
use rand::rngs::StdRng;

use crate::metrics::percentile;
use crate::rng::{self, Purpose};

/// Groups used in hierarchical mode.
pub const GROUPS: usize = 10;

/// A saturated core and the harness state around it.
pub struct Saturated {
    core: Scheduler,
    specs: Vec<TenantSpec<'static>>,
    in_flight: VecDeque<Ticket>,
    tenant_of: HashMap<Ticket, usize>,
    rng: StdRng,
    now: Duration,
}

impl Saturated {
    /// A pool of 32 slots with `tenants` backlogged tenants (weights from {1,2,5,10}).
    pub fn new(tenants: usize, mode: Mode) -> Saturated {
        let config = Config {
            mode,
            slots: 32,
            output_weight: 2.0,
            brownout_after: None,
            brownout_max_tokens: 0,
            prediction_alpha: 0.2,
            cold_start_output: 256,
            max_queue_per_tenant: 1_000_000,
            max_queue: 10_000_000,
            share_half_life: Duration::from_secs(30),
        };
        let mut core = Scheduler::new(config);
        for g in 0..GROUPS {
            core.set_group_weight(&format!("g{g}"), 1 + g as u32);
        }
        let mut rng = rng::stream(42, tenants as u64, Purpose::Setup);
        let specs: Vec<TenantSpec<'static>> = (0..tenants)
            .map(|i| TenantSpec {
                name: format!("t{i}").into(),
                id: None,
                weight: [1, 2, 5, 10][rng.random_range(0..4)],
                group: format!("g{}", i % GROUPS).into(),
                max_in_flight: None,
                never_degrade: false,
            })
            .collect();
        let mut s =
            Saturated { core, specs, in_flight: VecDeque::new(), tenant_of: HashMap::new(), rng, now: Duration::ZERO };
        // Enough per tenant that every tenant keeps a queue while the slots are full.
        let per_tenant = 2 + 32 / tenants;
        for _ in 0..per_tenant {
            for t in 0..tenants {
                let estimate = s.estimate();
                s.submit_timed(t, estimate);
            }
        }
        s
    }

    fn estimate(&mut self) -> Tokens {
        Tokens { input: self.rng.random_range(50..2000), output: 1024 }
    }

    fn submit_timed(&mut self, t: usize, estimate: Tokens) -> Duration {
        // Lends the tenant's strings, as the gateway does.
        let req = Request {
            tenant: self.specs[t].borrowed(),
            model: "m".into(),
            model_weight: 1.0,
            model_slots: None,
            estimate,
        };
        let start = Instant::now();
        let (submitted, others) = black_box(self.core.submit(self.now, req));
        let took = start.elapsed();
        match submitted {
            Submitted::Admitted(g) => {
                self.tenant_of.insert(g.ticket, t);
                self.in_flight.push_back(g.ticket);
            }
            Submitted::Queued(ticket) => {
                self.tenant_of.insert(ticket, t);
            }
            Submitted::Refused(r) => panic!("benchmark queue bounds are large: {r:?}"),
        }
        for g in others {
            self.in_flight.push_back(g.ticket);
        }
        took
    }

    /// One step: complete the oldest request in flight, then its tenant submits again.
    /// Returns the time of the `complete` and of the `submit` call.
    pub fn step(&mut self) -> (Duration, Duration) {
        self.now += Duration::from_micros(500);
        let ticket = self.in_flight.pop_front().expect("the pool is saturated");
        let t = self.tenant_of.remove(&ticket).expect("every ticket has a tenant");
        let actual = Tokens { input: self.rng.random_range(50..2000), output: self.rng.random_range(1..1024) };
        let start = Instant::now();
        let grants = black_box(self.core.complete(self.now, ticket, Some(actual)));
        let complete = start.elapsed();
        for g in grants {
            self.in_flight.push_back(g.ticket);
        }
        let estimate = self.estimate();
        let submit = self.submit_timed(t, estimate);
        (complete, submit)
    }
}

/// Latency percentiles of one configuration, in nanoseconds.
#[derive(Debug, Clone)]
pub struct Row {
    pub mode: Mode,
    pub tenants: usize,
    pub submit_p50: u64,
    pub submit_p99: u64,
    pub complete_p50: u64,
    pub complete_p99: u64,
    pub pair_p50: u64,
    pub pair_p99: u64,
}

/// Times `steps` steps (after `steps / 10` untimed warm-up steps).
pub fn measure(tenants: usize, mode: Mode, steps: usize) -> Row {
    let mut s = Saturated::new(tenants, mode);
    for _ in 0..steps / 10 {
        s.step();
    }
    let (mut submit, mut complete, mut pair) =
        (Vec::with_capacity(steps), Vec::with_capacity(steps), Vec::with_capacity(steps));
    for _ in 0..steps {
        let (c, u) = s.step();
        complete.push(c.as_nanos() as u64);
        submit.push(u.as_nanos() as u64);
        pair.push((c + u).as_nanos() as u64);
    }
    for v in [&mut submit, &mut complete, &mut pair] {
        v.sort_unstable();
    }
    let p = |v: &[u64], q: f64| percentile(v, q).unwrap_or(0);
    Row {
        mode,
        tenants,
        submit_p50: p(&submit, 0.5),
        submit_p99: p(&submit, 0.99),
        complete_p50: p(&complete, 0.5),
        complete_p99: p(&complete, 0.99),
        pair_p50: p(&pair, 0.5),
        pair_p99: p(&pair, 0.99),
    }
}
