//! Admission policies the simulator can drive: the real fairshare core and two baselines.
//!
//! A [`Policy`] sees requests by the simulator's own id and answers with the requests it
//! admits. It never sees the clock except as the `now` it is handed, exactly like the
//! core. The baselines implement the same slot cap and the same brownout rule as the
//! core, so that a comparison isolates the order in which requests are admitted.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use obleth_scheduler::core::{Config, Grant, Mode, Request, Scheduler, Submitted, TenantSpec, Ticket, Tokens};

use crate::workload::{Brownout, PolicyKind, Workload};

/// The simulator's identifier of a request.
pub type ReqId = usize;

/// What a policy is told about a request when it arrives.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub id: ReqId,
    pub tenant: usize,
    pub input: u64,
    pub max_tokens: u32,
}

/// A request let through, with the output cap brownout put on it (if any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admit {
    pub id: ReqId,
    pub max_tokens_cap: Option<u32>,
}

/// The answer to a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offered {
    /// Accepted (admitted now or queued); `admits` are all the requests this step let
    /// through, the submitted one included if it got a slot.
    Accepted { admits: Vec<Admit> },
    /// Refused (queue bound).
    Refused,
}

/// An admission policy under simulation.
pub trait Policy {
    fn submit(&mut self, now: Duration, req: Arrival) -> Offered;
    /// `id` finished with `actual` usage; returns the requests admitted into the slot.
    fn complete(&mut self, now: Duration, id: ReqId, actual: Tokens) -> Vec<Admit>;
}

/// Builds the policy `kind` for workload `w`.
pub fn build(w: &Workload, kind: PolicyKind) -> Box<dyn Policy> {
    match kind {
        PolicyKind::Fairshare(mode) => Box::new(FairsharePolicy::new(w, mode)),
        PolicyKind::Fcfs => Box::new(Fcfs::new(w.slots, w.brownout)),
        PolicyKind::RoundRobin => Box::new(RoundRobin::new(w.slots, w.brownout, w.tenants.len())),
    }
}

// === impl FairsharePolicy ===

/// The real scheduler core, unchanged, behind the simulator's ids.
pub struct FairsharePolicy {
    core: Scheduler,
    specs: Vec<TenantSpec<'static>>,
    model: Arc<str>,
    by_ticket: HashMap<Ticket, ReqId>,
    ticket_of: HashMap<ReqId, Ticket>,
}

impl FairsharePolicy {
    pub fn new(w: &Workload, mode: Mode) -> FairsharePolicy {
        let config = Config {
            mode,
            slots: w.slots,
            output_weight: w.output_weight,
            brownout_after: w.brownout.map(|b| Duration::from_secs_f64(b.after_s)),
            brownout_max_tokens: w.brownout.map_or(0, |b| b.max_tokens),
            // Large bounds: the baselines have none, and refusals would blur the comparison.
            max_queue_per_tenant: 1_000_000,
            max_queue: 10_000_000,
            share_half_life: Duration::from_secs(30),
            ..Config::default()
        };
        let mut core = Scheduler::new(config);
        for (group, weight) in &w.group_weights {
            core.set_group_weight(group, *weight);
        }
        let specs = w
            .tenants
            .iter()
            .map(|t| TenantSpec {
                name: t.name.clone().into(),
                id: None,
                weight: t.weight,
                group: t.group.clone().into(),
                max_in_flight: None,
                never_degrade: false,
            })
            .collect();
        FairsharePolicy { core, specs, model: "sim-model".into(), by_ticket: HashMap::new(), ticket_of: HashMap::new() }
    }

    fn admits(&mut self, grants: Vec<Grant>, out: &mut Vec<Admit>) {
        for g in grants {
            let id =
                self.by_ticket.remove(&g.ticket).expect("the core grants only tickets it issued for waiting requests");
            self.ticket_of.insert(id, g.ticket);
            out.push(Admit { id, max_tokens_cap: g.max_tokens_cap });
        }
    }
}

impl Policy for FairsharePolicy {
    fn submit(&mut self, now: Duration, req: Arrival) -> Offered {
        let request = Request {
            tenant: self.specs[req.tenant].borrowed(),
            model: Cow::Borrowed(&self.model),
            model_weight: 1.0,
            model_slots: None,
            // As the gateway does: the prompt plus the requested output.
            estimate: Tokens { input: req.input, output: req.max_tokens as u64 },
        };
        let (submitted, others) = self.core.submit(now, request);
        let mut admits = Vec::new();
        match submitted {
            Submitted::Refused(_) => return Offered::Refused,
            Submitted::Admitted(g) => {
                self.ticket_of.insert(req.id, g.ticket);
                admits.push(Admit { id: req.id, max_tokens_cap: g.max_tokens_cap });
            }
            Submitted::Queued(t) => {
                self.by_ticket.insert(t, req.id);
            }
        }
        self.admits(others, &mut admits);
        Offered::Accepted { admits }
    }

    fn complete(&mut self, now: Duration, id: ReqId, actual: Tokens) -> Vec<Admit> {
        let ticket = self.ticket_of.remove(&id).expect("only admitted requests complete");
        let grants = self.core.complete(now, ticket, Some(actual));
        let mut admits = Vec::new();
        self.admits(grants, &mut admits);
        admits
    }
}

// === baselines ===

#[derive(Debug, Clone, Copy)]
struct Queued {
    id: ReqId,
    at: Duration,
}

fn cap_for(brownout: Option<Brownout>, now: Duration, q: Queued) -> Option<u32> {
    let b = brownout?;
    (now.saturating_sub(q.at) > Duration::from_secs_f64(b.after_s)).then_some(b.max_tokens)
}

/// Global first-come first-served with a slot cap.
pub struct Fcfs {
    slots: u32,
    used: u32,
    brownout: Option<Brownout>,
    queue: VecDeque<Queued>,
}

impl Fcfs {
    pub fn new(slots: u32, brownout: Option<Brownout>) -> Fcfs {
        Fcfs { slots, used: 0, brownout, queue: VecDeque::new() }
    }

    fn dispatch(&mut self, now: Duration) -> Vec<Admit> {
        let mut out = Vec::new();
        while self.used < self.slots {
            let Some(q) = self.queue.pop_front() else { break };
            self.used += 1;
            out.push(Admit { id: q.id, max_tokens_cap: cap_for(self.brownout, now, q) });
        }
        out
    }
}

impl Policy for Fcfs {
    fn submit(&mut self, now: Duration, req: Arrival) -> Offered {
        self.queue.push_back(Queued { id: req.id, at: now });
        Offered::Accepted { admits: self.dispatch(now) }
    }

    fn complete(&mut self, now: Duration, _id: ReqId, _actual: Tokens) -> Vec<Admit> {
        self.used -= 1;
        self.dispatch(now)
    }
}

/// Per-request round robin: the tenants with a queued request take turns, one request
/// each, in the order they became non-empty.
pub struct RoundRobin {
    slots: u32,
    used: u32,
    brownout: Option<Brownout>,
    queues: Vec<VecDeque<Queued>>,
    turn: VecDeque<usize>,
}

impl RoundRobin {
    pub fn new(slots: u32, brownout: Option<Brownout>, tenants: usize) -> RoundRobin {
        RoundRobin { slots, used: 0, brownout, queues: vec![VecDeque::new(); tenants], turn: VecDeque::new() }
    }

    fn dispatch(&mut self, now: Duration) -> Vec<Admit> {
        let mut out = Vec::new();
        while self.used < self.slots {
            let Some(t) = self.turn.pop_front() else { break };
            let Some(q) = self.queues[t].pop_front() else { continue };
            if !self.queues[t].is_empty() {
                self.turn.push_back(t);
            }
            self.used += 1;
            out.push(Admit { id: q.id, max_tokens_cap: cap_for(self.brownout, now, q) });
        }
        out
    }
}

impl Policy for RoundRobin {
    fn submit(&mut self, now: Duration, req: Arrival) -> Offered {
        if self.queues[req.tenant].is_empty() {
            self.turn.push_back(req.tenant);
        }
        self.queues[req.tenant].push_back(Queued { id: req.id, at: now });
        Offered::Accepted { admits: self.dispatch(now) }
    }

    fn complete(&mut self, now: Duration, _id: ReqId, _actual: Tokens) -> Vec<Admit> {
        self.used -= 1;
        self.dispatch(now)
    }
}
