//! A deterministic discrete-event simulator of obleth's admission, driving the real
//! scheduler core (`obleth_scheduler::core::Scheduler`) with virtual time.
//!
//! - [`workload`]: the scenarios (W1–W8): backend model, tenants, generators.
//! - [`engine`]: the event loop, the modelled backend and the raw observations.
//! - [`policy`]: the real core and the baselines (global FIFO, round robin).
//! - [`metrics`]: fair targets (water-filling), share errors, Jain's index, waits, gaps.
//! - [`report`]: worst seed per metric, markdown tables, target checks.
//! - [`bench`]: the admission-cost micro-benchmark.

pub mod bench;
pub mod engine;
pub mod metrics;
pub mod policy;
pub mod report;
pub mod rng;
pub mod workload;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use metrics::RunMetrics;
use workload::{PolicyKind, Workload};

/// Simulates one workload under one policy with one seed and evaluates it.
pub fn run(w: &Workload, kind: PolicyKind, seed: u64) -> RunMetrics {
    let mut policy = policy::build(w, kind);
    let obs = engine::simulate(w, seed, policy.as_mut());
    metrics::evaluate(w, kind, seed, &obs)
}

/// Runs every policy of every workload over `seeds` on `threads` threads. The result
/// does not depend on the number of threads: runs are independent and returned in
/// (workload, policy, seed) order.
pub fn run_all(workloads: &[Workload], seeds: &[u64], threads: usize) -> Vec<Vec<RunMetrics>> {
    let jobs: Vec<(usize, PolicyKind, u64)> = workloads
        .iter()
        .enumerate()
        .flat_map(|(i, w)| w.policies.iter().flat_map(move |&k| seeds.iter().map(move |&s| (i, k, s))))
        .collect();
    let results: Vec<Mutex<Option<RunMetrics>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                loop {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(i, kind, seed)) = jobs.get(j) else { break };
                    let r = run(&workloads[i], kind, seed);
                    *results[j].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                }
            });
        }
    });
    let mut out: Vec<Vec<RunMetrics>> = workloads.iter().map(|_| Vec::new()).collect();
    for (j, slot) in results.into_iter().enumerate() {
        let r = slot.into_inner().unwrap_or_else(|p| p.into_inner()).expect("every job ran");
        out[jobs[j].0].push(r);
    }
    out
}

#[cfg(test)]
mod tests;
