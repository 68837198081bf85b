//! The cluster-wide slot cap against a real Redis (127.0.0.1:6379), with several pods'
//! schedulers in one process so that their slots can be added up exactly.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use obleth_cluster::{SlotShare, SlotShareConfig};
use obleth_core::{Admission, Admitted};

use common::req;
use obleth_scheduler::{Fairshare, FairshareConfig};

const CAP: u32 = 10;

struct Pod {
    scheduler: Arc<Fairshare>,
    share: Arc<SlotShare>,
}

async fn pod(key: &str, name: &str) -> Pod {
    let scheduler = Arc::new(Fairshare::new(FairshareConfig {
        core: obleth_scheduler::core::Config { slots: CAP, ..Default::default() },
        queue_timeout: Duration::from_secs(30),
    }));
    let share = SlotShare::start(
        SlotShareConfig {
            redis_url: "redis://127.0.0.1:6379".into(),
            key: key.into(),
            pod: name.into(),
            cluster_slots: CAP,
            heartbeat: Duration::from_millis(50),
            ttl: Duration::from_millis(400),
            fallback_slots: 1,
        },
        scheduler.clone(),
    )
    .await
    .unwrap();
    Pod { scheduler, share }
}

fn key() -> String {
    format!("obleth-test:slots:{}", obleth_core::new_id(""))
}

async fn settle<F: Fn() -> bool>(what: &str, f: F) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_pods_split_the_cap_and_a_dead_pods_share_comes_back() {
    let key = key();
    let pods = [pod(&key, "a").await, pod(&key, "b").await, pod(&key, "c").await];
    let slots = |pods: &[Pod]| pods.iter().map(|p| p.share.status().slots).collect::<Vec<_>>();
    settle("three pods split 10 as 4/3/3", || slots(&pods) == vec![4, 3, 3]).await;
    assert!(pods.iter().all(|p| p.share.status().pods == 3));
    assert_eq!(pods[0].scheduler.state().slots_total, 4, "the scheduler's pool is the share");

    // Pod c dies (no more heartbeats): its share returns within the TTL.
    pods[2].share.stop_heartbeat();
    let died = Instant::now();
    settle("two pods split 10 as 5/5", || slots(&pods[..2]) == vec![5, 5]).await;
    let took = died.elapsed();
    assert!(took < Duration::from_millis(1500), "a dead pod's slots came back in {took:?}");

    // Pod b leaves gracefully: pod a takes everything at its next heartbeat.
    pods[1].share.leave().await;
    settle("one pod holds the whole cap", || pods[0].share.status().slots == CAP).await;
}

/// Pods joining while others are full: the sum of what all pods hold never exceeds the
/// cap, sampled continuously, while the newcomer waits for the others to drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_holds_while_pods_join_and_leave_under_load() {
    let key = key();
    let a = pod(&key, "a").await;
    settle("alone, a holds the cap", || a.share.status().slots == CAP).await;
    let mut held: Vec<Admitted> = Vec::new();
    for i in 0..CAP {
        held.push(a.scheduler.admit(req(&format!("t{i}"))).await.unwrap());
    }
    let b = pod(&key, "b").await;
    let pods = [&a, &b];
    let in_flight = |pods: &[&Pod]| pods.iter().map(|p| p.scheduler.in_flight()).sum::<u32>();

    // b fills whatever it is given; a releases one slot at a time.
    let mut b_held = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        if let Some(p) = held.pop() {
            drop(p);
        }
        while b.scheduler.in_flight() < b.share.status().slots {
            let admitted = tokio::time::timeout(Duration::from_millis(5), b.scheduler.admit(req("tb"))).await;
            match admitted {
                Ok(Ok(p)) => b_held.push(p),
                _ => break,
            }
        }
        if let Ok(Ok(p)) = tokio::time::timeout(Duration::from_millis(5), a.scheduler.admit(req("ta"))).await {
            held.push(p);
        }
        let total = in_flight(&pods);
        assert!(total <= CAP, "{total} slots held across the cluster (cap {CAP})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!b_held.is_empty(), "the newcomer got slots");
    settle("a and b split the cap", || a.share.status().slots == 5 && b.share.status().slots == 5).await;
}
