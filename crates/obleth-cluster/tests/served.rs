//! Served work shared through a real Redis (127.0.0.1:6379) between two pods'
//! schedulers in one process: a tenant pinned to one pod competes there with a tenant
//! whose traffic lands on both. Alone, each pod splits its slots evenly, so the pinned
//! tenant gets a quarter of the cluster; with the cluster's service in its counters, the
//! pod sees the spread tenant ahead and the pinned tenant gets its fair half.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use obleth_cluster::ServedShareConfig;
use obleth_core::Admission;

use common::req;
use obleth_scheduler::{Fairshare, FairshareConfig};

fn pod() -> Arc<Fairshare> {
    Arc::new(Fairshare::new(FairshareConfig {
        core: obleth_scheduler::core::Config { slots: 2, ..Default::default() },
        queue_timeout: Duration::from_secs(30),
    }))
}

/// Runs the workload for `run`; returns (pinned tenant's grants on pod 1, all grants on
/// pod 1, all grants on pod 2).
async fn workload(share: bool, run: Duration) -> (u64, u64, u64) {
    let pods = [pod(), pod()];
    if share {
        let key = format!("obleth-test:served:{}", obleth_core::new_id(""));
        for p in &pods {
            let config = ServedShareConfig {
                redis_url: "redis://127.0.0.1:6379".into(),
                key: key.clone(),
                interval: Duration::from_millis(20),
            };
            obleth_cluster::served::start(config, p.clone()).unwrap();
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    // [pinned on pod 1, spread on pod 1, spread on pod 2]
    let counts: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let mut workers = Vec::new();
    for (slot, pod, tenant) in [(0, 0, "pinned"), (1, 0, "spread"), (2, 1, "spread")] {
        for _ in 0..4 {
            let (pod, stop, counts) = (pods[pod].clone(), stop.clone(), counts.clone());
            workers.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let permit = pod.admit(req(tenant)).await.unwrap();
                    counts[slot].fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    drop(permit);
                }
            }));
        }
    }
    // Warm-up, then measure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    tokio::time::sleep(run).await;
    let after: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let d: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    (d[0], d[0] + d[1], d[2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_on_one_pod_gets_its_share_of_the_cluster() {
    let run = Duration::from_secs(2);
    let (pinned, pod1, pod2) = workload(false, run).await;
    let alone = pinned as f64 / (pod1 + pod2) as f64;
    let (pinned, pod1s, pod2s) = workload(true, run).await;
    let shared = pinned as f64 / (pod1s + pod2s) as f64;
    eprintln!(
        "pinned tenant's share of the cluster: {:.1}% with per-pod counters ({pod1}/{pod2} grants on pods 1/2), \
         {:.1}% with shared counters ({pod1s}/{pod2s}); fair: 50%",
        alone * 100.0,
        shared * 100.0
    );
    assert!((0.18..0.32).contains(&alone), "per pod: an even split of pod 1, a quarter of the cluster: {alone}");
    assert!(shared > 0.42, "shared: close to half of the cluster: {shared}");
}
