//! Fairshare admission through the real gateway: brownout, bounded queues, timeouts,
//! live changes and the scheduler API.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use obleth::client::call;
use serde_json::json;

use crate::support::*;

/// Waits (bounded) until the scheduler shows `used` slots in use and `queued` waiting.
async fn wait_for_scheduler(h: &Harness, used: u64, queued: u64) {
    for _ in 0..400 {
        let s = call(&h.admin, "GET", "/api/v1/scheduler", None).await.unwrap();
        if s["slots_used"] == used && s["queued"] == queued {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the scheduler never reached {used} used / {queued} queued");
}

/// A mock whose requests take long enough to keep a slot busy while others queue.
fn slow_mock() -> obleth_mock::MockConfig {
    obleth_mock::MockConfig { ttft: Duration::from_millis(300), ..fast_mock() }
}

/// A gateway with one slot, brownout after 50 ms (cap 3 tokens), and a first request that
/// holds the slot for ~300 ms.
async fn one_slot_held_with_brownout()
-> (Arc<Harness>, tokio::task::JoinHandle<(http::StatusCode, http::HeaderMap, serde_json::Value)>) {
    let h = Arc::new(
        Harness::with_env(
            slow_mock(),
            &[
                ("OBLETH_ADMISSION_MAX_IN_FLIGHT", "1"),
                ("OBLETH_ADMISSION_BROWNOUT_AFTER", "50ms"),
                ("OBLETH_ADMISSION_BROWNOUT_MAX_TOKENS", "3"),
            ],
        )
        .await,
    );
    let first = tokio::spawn({
        let h = h.clone();
        async move { h.post("/v1/chat/completions", chat(false, 2)).await }
    });
    (h, first)
}

#[tokio::test]
async fn a_request_that_waited_too_long_is_admitted_degraded() {
    let (h, first) = one_slot_held_with_brownout().await;
    // Make sure the first holds the only slot before the second arrives.
    wait_for_scheduler(&h, 1, 0).await;
    let (status, headers, body) = h.post("/v1/chat/completions", chat(false, 50)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-obleth-admission"], "brownout");
    assert_eq!(body["usage"]["completion_tokens"], 3, "max_tokens was capped");
    let (status, headers, _) = first.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(headers["x-obleth-admission"], "fast");
    let records = h.records(2).await;
    let classes: Vec<_> = records.iter().map(|r| r.admission_class.as_str()).collect();
    assert!(classes.contains(&"brownout") && classes.contains(&"fast"), "{classes:?}");
    let degraded = records.iter().find(|r| r.admission_class.as_str() == "brownout").unwrap();
    assert!(degraded.queue_wait_ms >= 50);
}

#[tokio::test]
async fn never_degrade_tenants_wait_without_being_capped() {
    let (h, first) = one_slot_held_with_brownout().await;
    call(&h.admin, "PATCH", "/api/v1/tenants/t1", Some(json!({"never_degrade": true}))).await.unwrap();
    wait_for_scheduler(&h, 1, 0).await;
    let (status, headers, body) = h.post("/v1/chat/completions", chat(false, 8)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-obleth-admission"], "queued");
    assert_eq!(body["usage"]["completion_tokens"], 8);
    first.await.unwrap();
}

#[tokio::test]
async fn a_full_queue_answers_at_once_with_429() {
    let h = Arc::new(
        Harness::with_env(
            slow_mock(),
            &[("OBLETH_ADMISSION_MAX_IN_FLIGHT", "1"), ("OBLETH_ADMISSION_MAX_QUEUE_PER_TENANT", "1")],
        )
        .await,
    );
    let mut held = vec![];
    for queued in 0..2 {
        let h2 = h.clone();
        held.push(tokio::spawn(async move { h2.post("/v1/chat/completions", chat(false, 1)).await }));
        wait_for_scheduler(&h, 1, queued).await;
    }
    let (status, headers, body) = h.post("/v1/chat/completions", chat(false, 1)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "queue_full");
    assert!(headers.contains_key("retry-after"));
    for t in held {
        assert_eq!(t.await.unwrap().0, 200);
    }
}

#[tokio::test]
async fn waiting_past_the_queue_timeout_is_503_with_retry_after() {
    let h = Arc::new(
        Harness::with_env(
            obleth_mock::MockConfig { ttft: Duration::from_millis(800), ..fast_mock() },
            &[("OBLETH_ADMISSION_MAX_IN_FLIGHT", "1"), ("OBLETH_ADMISSION_QUEUE_TIMEOUT", "100ms")],
        )
        .await,
    );
    let first = tokio::spawn({
        let h = h.clone();
        async move { h.post("/v1/chat/completions", chat(false, 1)).await }
    });
    wait_for_scheduler(&h, 1, 0).await;
    let (status, headers, body) = h.post("/v1/chat/completions", chat(false, 1)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "queue_timeout");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(first.await.unwrap().0, 200);
    // Nothing leaked: the scheduler is empty again.
    let state = call(&h.admin, "GET", "/api/v1/scheduler", None).await.unwrap();
    assert_eq!(state["slots_used"], 0);
    assert_eq!(state["queued"], 0);
}

#[tokio::test]
async fn the_scheduler_api_shows_groups_weights_and_live_changes() {
    let h = Harness::with_env(fast_mock(), &[("OBLETH_ADMISSION_MAX_IN_FLIGHT", "8")]).await;
    call(&h.admin, "PUT", "/api/v1/groups/chatbot", Some(json!({"weight": 500}))).await.unwrap();
    call(&h.admin, "PUT", "/api/v1/groups/api", Some(json!({"weight": 50}))).await.unwrap();
    let groups = call(&h.admin, "GET", "/api/v1/groups", None).await.unwrap();
    assert_eq!(groups["data"].as_array().unwrap().len(), 2);
    let err = call(&h.admin, "PUT", "/api/v1/groups/api", Some(json!({"weight": 0}))).await.unwrap_err();
    assert!(err.to_string().contains("weight"), "{err}");

    call(&h.admin, "PATCH", "/api/v1/tenants/t1", Some(json!({"group": "chatbot", "weight": 5}))).await.unwrap();
    let (s, _, _) = h.post("/v1/chat/completions", chat(false, 2)).await;
    assert_eq!(s, 200);
    let state = call(&h.admin, "GET", "/api/v1/scheduler", None).await.unwrap();
    assert_eq!(state["mode"], "hierarchical");
    assert_eq!(state["slots_total"], 8);
    let tenant = state["tenants"].as_array().unwrap().iter().find(|t| t["name"] == "t1").unwrap().clone();
    assert_eq!(tenant["group"], "chatbot");
    assert_eq!(tenant["weight"], 5.0);
    assert!(tenant["served_tokens"].as_f64().unwrap() > 0.0, "{tenant}");
    assert_eq!(state["admissions"]["fast"], 1);
    let chatbot = state["groups"].as_array().unwrap().iter().find(|g| g["name"] == "chatbot").unwrap().clone();
    assert_eq!(chatbot["weight"], 500.0);

    // A weight change reaches the scheduler at once, without a new request.
    call(&h.admin, "PATCH", "/api/v1/tenants/t1", Some(json!({"weight": 42}))).await.unwrap();
    call(&h.admin, "PUT", "/api/v1/groups/chatbot", Some(json!({"weight": 300}))).await.unwrap();
    let state = call(&h.admin, "GET", "/api/v1/scheduler", None).await.unwrap();
    let tenant = state["tenants"].as_array().unwrap().iter().find(|t| t["name"] == "t1").unwrap().clone();
    assert_eq!(tenant["weight"], 42.0);
    let chatbot = state["groups"].as_array().unwrap().iter().find(|g| g["name"] == "chatbot").unwrap().clone();
    assert_eq!(chatbot["weight"], 300.0);
}

#[tokio::test]
async fn a_model_slot_cap_bounds_that_model_only() {
    let mock = obleth_mock::MockConfig { ttft: Duration::from_millis(40), ..fast_mock() };
    let h = Arc::new(Harness::with_env(mock, &[("OBLETH_ADMISSION_MAX_IN_FLIGHT", "8")]).await);
    call(&h.admin, "PATCH", "/api/v1/models/mock-model", Some(json!({"max_in_flight": 1}))).await.unwrap();
    let mut tasks = vec![];
    for _ in 0..4 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move { h.post("/v1/chat/completions", chat(false, 1)).await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().0, 200);
    }
    assert_eq!(h.mock_stats().await.peak_running, 1, "the model's cap held");
}

/// The scheduler's view of group `name`.
async fn scheduler_group(h: &Harness, name: &str) -> serde_json::Value {
    let state = call(&h.admin, "GET", "/api/v1/scheduler", None).await.unwrap();
    state["groups"].as_array().unwrap().iter().find(|g| g["name"] == name).cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_group_max_slots_caps_its_concurrency_while_another_group_uses_the_rest() {
    let mock = obleth_mock::MockConfig { ttft: Duration::from_millis(150), ..fast_mock() };
    let h = Arc::new(Harness::with_env(mock, &[("OBLETH_ADMISSION_MAX_IN_FLIGHT", "8")]).await);
    // Validation, in the admin API's error shape.
    for (body, param) in [
        (json!({"weight": 1, "max_slots": 0}), "max_slots"),
        (json!({"weight": 1, "reserved_slots": 3, "max_slots": 2}), "reserved_slots"),
    ] {
        let err = call(&h.admin, "PUT", "/api/v1/groups/capped", Some(body)).await.unwrap_err().to_string();
        assert!(err.contains(param) && err.contains("400"), "{err}");
    }
    // Weighted 10:1 the capped group would take 7 of the 8 slots; its max is 2.
    let g = call(&h.admin, "PUT", "/api/v1/groups/capped", Some(json!({"weight": 10, "max_slots": 2}))).await.unwrap();
    assert_eq!((g["max_slots"].as_u64(), g["reserved_slots"].is_null()), (Some(2), true));
    let g = call(&h.admin, "GET", "/api/v1/groups/capped", None).await.unwrap();
    assert_eq!(g["max_slots"], 2);
    call(&h.admin, "PATCH", "/api/v1/tenants/t1", Some(json!({"group": "capped"}))).await.unwrap();
    call(&h.admin, "POST", "/api/v1/tenants", Some(json!({"name": "t2", "group": "open"}))).await.unwrap();
    let other = call(&h.admin, "POST", "/api/v1/tenants/t2/keys", Some(json!({}))).await.unwrap();
    let other = other["secret"].as_str().unwrap().to_owned();
    // The limit reaches the scheduler with the change event,
    // which shows a group once it has seen a request of it.
    assert_eq!(h.post("/v1/chat/completions", chat(false, 1)).await.0, 200);
    for _ in 0..200 {
        if scheduler_group(&h, "capped").await["max_slots"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(scheduler_group(&h, "capped").await["pool_max_slots"], 2);

    let burst = |key: Option<String>, n: usize| {
        (0..n)
            .map(|_| {
                let (h, key) = (h.clone(), key.clone());
                tokio::spawn(async move {
                    let key = key.as_deref().unwrap_or(&h.key);
                    h.send(h.request("/v1/chat/completions", Some(key), chat(false, 1).to_string())).await.0
                })
            })
            .collect::<Vec<_>>()
    };
    // Alone, with 8 slots free, the capped group never has more than 2 at the backend.
    for t in burst(None, 6) {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(h.mock_stats().await.peak_running, 2, "the group's max_slots held at the backend");

    // With the other group busy too, the other group takes the rest of the pool.
    let reset = http::Request::post(format!("http://{}/mock/reset", h.mock)).body(Default::default()).unwrap();
    h.http.request(reset).await.unwrap();
    let sampler = tokio::spawn({
        let h = h.clone();
        async move {
            let (mut capped, mut open) = (0, 0);
            for _ in 0..100 {
                capped = capped.max(scheduler_group(&h, "capped").await["in_flight"].as_u64().unwrap_or(0));
                open = open.max(scheduler_group(&h, "open").await["in_flight"].as_u64().unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            (capped, open)
        }
    });
    let mut tasks = burst(None, 6);
    tasks.extend(burst(Some(other), 6));
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(h.mock_stats().await.peak_running, 8, "2 of the capped group and 6 of the other");
    let (capped, open) = sampler.await.unwrap();
    assert_eq!((capped, open), (2, 6), "peak in flight per group, as the scheduler saw it");
}
