//! Tests of the async wrapper: delivery, cancellation, timeouts, and that no path leaks
//! a slot.

use std::time::Duration;

use obleth_core::{Admission, AdmissionClass, AdmissionRequest, Rejection, TokenEstimate};

use super::*;
use crate::core::Mode;

fn fairshare(slots: u32, queue_timeout: Duration) -> Fairshare {
    Fairshare::new(FairshareConfig {
        core: Config { mode: Mode::Hierarchical, slots, ..Config::default() },
        queue_timeout,
    })
}

fn req(tenant: &str) -> AdmissionRequest {
    AdmissionRequest {
        tenant: Arc::new(obleth_core::Tenant::named(&format!("id-{tenant}"), tenant, "g")),
        model: Arc::new(model("m")),
        estimate: TokenEstimate { input: 10, output: 10 },
    }
}

fn model(name: &str) -> obleth_core::Model {
    obleth_core::Model::named(name)
}

fn used_and_queued(f: &Fairshare) -> (u32, usize) {
    let s = f.state();
    (s.slots_used, s.queued)
}

#[tokio::test(start_paused = true)]
async fn waiters_get_the_slot_when_it_is_released() {
    let f = fairshare(1, Duration::from_secs(60));
    let first = f.admit(req("a")).await.expect("first");
    assert_eq!(first.class, AdmissionClass::Fast);
    let waiter = tokio::spawn({
        let f = f.clone();
        async move { f.admit(req("b")).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiter.is_finished());
    assert_eq!(used_and_queued(&f), (1, 1));
    drop(first);
    let second = waiter.await.expect("join").expect("second");
    assert_eq!(second.class, AdmissionClass::Queued);
    assert_eq!(second.waited, Duration::from_secs(1));
    drop(second);
    assert_eq!(used_and_queued(&f), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_that_goes_away_gives_up_its_place() {
    let f = fairshare(1, Duration::from_secs(60));
    let first = f.admit(req("a")).await.expect("first");
    let waiter = tokio::spawn({
        let f = f.clone();
        async move { f.admit(req("b")).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    waiter.abort();
    let _ = waiter.await;
    assert_eq!(used_and_queued(&f), (1, 0), "the aborted waiter left the queue");
    drop(first);
    assert_eq!(used_and_queued(&f), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn queue_timeout_is_a_clear_refusal() {
    let f = fairshare(1, Duration::from_secs(5));
    let _held = f.admit(req("a")).await.expect("first");
    match f.admit(req("b")).await {
        Err(Rejection::QueueTimeout { retry_after }) => assert!(retry_after >= Duration::from_secs(1)),
        other => panic!("expected a queue timeout, got {other:?}"),
    }
    assert_eq!(used_and_queued(&f), (1, 0));
}

#[tokio::test]
async fn settle_replaces_the_estimate() {
    let f = fairshare(4, Duration::from_secs(5));
    let mut a = f.admit(req("a")).await.expect("admit");
    a.permit.settle(3, 4);
    drop(a);
    let s = f.state();
    // cost = input + output_weight (2) × output.
    assert_eq!(s.tenants[0].served_tokens, 3.0 + 2.0 * 4.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_path_leaks_a_slot_under_concurrency() {
    let f = fairshare(3, Duration::from_millis(50));
    let mut tasks = Vec::new();
    for i in 0..400u32 {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let tenant = format!("t{}", i % 7);
            if let Ok(mut permit) = f.admit(req(&tenant)).await {
                if i % 3 == 0 {
                    permit.permit.settle(1, 1);
                }
                tokio::time::sleep(Duration::from_micros((i % 5) as u64 * 300)).await;
            }
        }));
        if i % 5 == 0 {
            // Some clients give up while waiting.
            let victim = tasks.len() - 1;
            tasks[victim].abort();
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    assert_eq!(used_and_queued(&f), (0, 0), "every slot came back");
}

#[tokio::test(start_paused = true)]
async fn live_weight_changes_reach_the_core() {
    let f = fairshare(1, Duration::from_secs(60));
    drop(f.admit(req("a")).await.expect("admit"));
    let tenant = obleth_core::Tenant {
        id: "ten_x".into(),
        name: "a".into(),
        weight: 7,
        group: "g".into(),
        allowed_models: vec![],
        disabled: false,
        never_degrade: false,
        quota: obleth_core::Quota::default(),
        created_at: 0,
        updated_at: 0,
    };
    f.notify(ChangeEvent::Tenant { id: "ten_x".into(), tenant: Some(Arc::new(tenant)) });
    f.notify(ChangeEvent::Group { name: "g".into(), weight: Some(5), reserved_slots: None, max_slots: None });
    let s = f.state();
    assert_eq!(s.tenants[0].weight, 7.0);
    assert_eq!(s.groups.iter().find(|g| g.name == "g").map(|g| g.weight), Some(5.0));
}

#[tokio::test(start_paused = true)]
async fn a_resized_pool_admits_into_new_room_and_never_beyond_the_new_size() {
    let f = fairshare(1, Duration::from_secs(60));
    let first = f.admit(req("a")).await.expect("first");
    let waiter = tokio::spawn({
        let f = f.clone();
        async move { f.admit(req("b")).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(used_and_queued(&f), (1, 1));
    // Grown: the waiter gets the new slot at once.
    f.set_slots(2);
    let second = waiter.await.expect("join").expect("second");
    assert_eq!((f.in_flight(), f.state().slots_total), (2, 2));
    // Shrunk below what is in use: nothing is interrupted, nothing new admitted until
    // the pool has room again.
    f.set_slots(0);
    let third = tokio::spawn({
        let f = f.clone();
        async move { f.admit(req("c")).await }
    });
    drop(first);
    drop(second);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(used_and_queued(&f), (0, 1), "a pool of 0 admits nothing");
    f.set_slots(1);
    let third = third.await.expect("join").expect("third");
    assert_eq!(f.in_flight(), 1);
    drop(third);
}

#[tokio::test(start_paused = true)]
async fn group_limits_apply_live_and_go_with_the_group() {
    let f = fairshare(4, Duration::from_secs(60));
    f.set_group_limits("g", GroupLimits { reserved_slots: None, max_slots: Some(1) });
    let first = f.admit(req("a")).await.expect("first");
    let waiter = tokio::spawn({
        let f = f.clone();
        async move { f.admit(req("b")).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(used_and_queued(&f), (1, 1), "the group is at its max with slots free");
    // Raised: the waiter is admitted at once.
    f.set_group_limits("g", GroupLimits { reserved_slots: None, max_slots: Some(2) });
    let second = waiter.await.expect("join").expect("second");
    assert_eq!(used_and_queued(&f), (2, 0));
    let g = f.state().groups.into_iter().find(|g| g.name == "g").expect("group");
    assert_eq!((g.max_slots, g.in_flight), (Some(2), 2));
    // Deleting the group drops its limits.
    f.notify(ChangeEvent::Group { name: "g".into(), weight: None, reserved_slots: None, max_slots: None });
    let g = f.state().groups.into_iter().find(|g| g.name == "g").expect("group");
    assert_eq!((g.max_slots, g.reserved_slots), (None, None));
    drop((first, second));
}

#[tokio::test(start_paused = true)]
async fn a_deleted_tenant_leaves_the_snapshot_when_its_last_request_ends() {
    let f = fairshare(2, Duration::from_secs(60));
    drop(f.admit(req("idle")).await.expect("admit"));
    let held = f.admit(req("busy")).await.expect("admit");
    let names = |f: &Fairshare| f.state().tenants.into_iter().map(|t| t.name).collect::<Vec<_>>();
    assert_eq!(names(&f), ["idle", "busy"]);
    // Deletions name tenants by id, as the admin API and the cluster bus announce them.
    f.notify(ChangeEvent::Tenant { id: "id-idle".into(), tenant: None });
    f.notify(ChangeEvent::Tenant { id: "id-busy".into(), tenant: None });
    assert_eq!(names(&f), ["busy"], "kept while its request runs");
    drop(held);
    let s = f.state();
    assert!(s.tenants.is_empty() && s.groups.is_empty(), "{s:?}");
    // A model change drops the model's state; the next request rebuilds it.
    f.notify(ChangeEvent::Model { name: "m".into() });
    drop(f.admit(req("again")).await.expect("admit"));
    assert_eq!(names(&f), ["again"]);
}
