//! Budgets through the real gateway, on both stores: the in-process one and a real Redis
//! (127.0.0.1:6379, or an instance the test starts and kills).

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use obleth::client::call;
use obleth_testkit::OwnRedis;
use serde_json::{Value, json};

use crate::support::*;

#[derive(Clone, Copy, Debug)]
enum Store {
    Memory,
    Redis,
}

/// Gateway settings for `store` (Redis at `url`, under a prefix no other run uses).
fn store_env(store: Store, url: &str) -> Vec<(String, String)> {
    match store {
        Store::Memory => vec![],
        Store::Redis => vec![
            ("OBLETH_BUDGET_STORE".into(), "redis".into()),
            ("OBLETH_BUDGET_REDIS_URL".into(), url.into()),
            ("OBLETH_BUDGET_KEY_PREFIX".into(), format!("obleth-test-{}:", obleth_core::new_id(""))),
            // These tests are about a healthy Redis. On a loaded CI machine a call can take
            // longer than the 100 ms default, and a Redis slower than the timeout counts
            // as down (the failover tests cover that).
            ("OBLETH_BUDGET_REDIS_TIMEOUT".into(), "2s".into()),
        ],
    }
}

const SHARED_REDIS: &str = "redis://127.0.0.1:6379";

/// A mock that answers at once (token timing is not what these tests are about).
fn instant_mock() -> obleth_mock::MockConfig {
    obleth_mock::MockConfig { ttft: Duration::ZERO, itl: Duration::ZERO, ..fast_mock() }
}

async fn harness(store: Store, mock: obleth_mock::MockConfig, extra: &[(&str, &str)]) -> Harness {
    let mut env = store_env(store, SHARED_REDIS);
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Harness::with_env(mock, &env).await
}

async fn set_quota(h: &Harness, quota: Value) {
    call(&h.admin, "PATCH", "/api/v1/tenants/t1", Some(json!({ "quota": quota }))).await.unwrap();
}

async fn usage(h: &Harness) -> Value {
    call(&h.admin, "GET", "/api/v1/tenants/t1/usage", None).await.unwrap()
}

/// Waits (bounded) until every reservation of t1 has been reconciled.
async fn settled(h: &Harness) -> Value {
    for _ in 0..500 {
        let u = usage(h).await;
        if u["usage"]["in_flight"] == 0 {
            return u;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("reservations were never reconciled: {}", usage(h).await);
}

fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> &'a str {
    headers.get(name).unwrap_or_else(|| panic!("no {name} header")).to_str().unwrap()
}

/// The mock's price of `input` and `output` tokens in the harness's registry (0.001 and
/// 0.002 per token), in nanos.
fn price(input: u64, output: u64) -> i64 {
    (input * 1_000_000 + output * 2_000_000) as i64
}

fn nanos(v: &Value) -> i64 {
    (v.as_f64().unwrap() * 1e9).round() as i64
}

async fn tokens_per_minute(store: Store) {
    let h = harness(store, instant_mock(), &[]).await;
    // Without limits there is nothing to report.
    let (status, headers, _) = h.post("/v1/chat/completions", chat(false, 5)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get("x-ratelimit-limit-tokens").is_none());

    set_quota(&h, json!({"tpm": 1000, "rpm": 100})).await;
    // Each request reserves its prompt plus max_tokens (400): two fit in 1000, a third not.
    let (status, headers, _) = h.post("/v1/chat/completions", chat(false, 400)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "x-ratelimit-limit-tokens"), "1000");
    assert_eq!(header(&headers, "x-ratelimit-limit-requests"), "100");
    assert_eq!(header(&headers, "x-ratelimit-remaining-requests"), "99");
    let remaining: u64 = header(&headers, "x-ratelimit-remaining-tokens").parse().unwrap();
    let estimate = 1000 - remaining;
    assert!((405..=420).contains(&estimate), "estimate {estimate}: the prompt counted by the tokenizer plus 400");
    assert!(header(&headers, "x-ratelimit-reset-tokens").ends_with('s'));
    settled(&h).await;
    let (status, _, _) = h.post("/v1/chat/completions", chat(true, 400)).await;
    assert_eq!(status, StatusCode::OK);
    settled(&h).await;
    let (status, headers, body) = h.post("/v1/chat/completions", chat(false, 400)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(body["error"]["code"], "tokens_per_minute_exceeded");
    let retry: u64 = header(&headers, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    assert_eq!(header(&headers, "x-ratelimit-limit-tokens"), "1000");
    // The two requests used 10 + 400 tokens each (the mock's count): that is what the
    // bucket holds after reconciling, not the estimates.
    let u = settled(&h).await;
    let left = u["usage"]["tokens_per_minute"]["remaining"].as_u64().unwrap();
    assert!((180..=200).contains(&left), "1000 - 2 x 410 = 180, plus refill since: {left}");

    // A request larger than the whole limit can never pass: no Retry-After.
    let (status, headers, body) = h.post("/v1/chat/completions", chat(false, 2000)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"]["code"], "request_too_large");
    assert!(headers.get("retry-after").is_none());
    assert_eq!(h.mock_stats().await.requests_total, 3, "refused requests never reach the backend");
}

#[tokio::test]
async fn tokens_per_minute_memory() {
    tokens_per_minute(Store::Memory).await;
}

#[tokio::test]
async fn tokens_per_minute_redis() {
    tokens_per_minute(Store::Redis).await;
}

async fn requests_per_minute(store: Store) {
    let h = harness(store, instant_mock(), &[]).await;
    set_quota(&h, json!({"rpm": 2})).await;
    for left in ["1", "0"] {
        let (status, headers, _) = h.post("/v1/chat/completions", chat(false, 2)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&headers, "x-ratelimit-remaining-requests"), left);
        assert!(headers.get("x-ratelimit-limit-tokens").is_none(), "no token limit, no token headers");
    }
    let (status, headers, body) = h.post("/v1/chat/completions", chat(false, 2)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "requests_per_minute_exceeded");
    assert_eq!(header(&headers, "x-ratelimit-limit-requests"), "2");
    // One request refills in 30 s at 2 per minute.
    let retry: u64 = header(&headers, "retry-after").parse().unwrap();
    assert!((29..=30).contains(&retry), "retry-after {retry}");
}

#[tokio::test]
async fn requests_per_minute_memory() {
    requests_per_minute(Store::Memory).await;
}

#[tokio::test]
async fn requests_per_minute_redis() {
    requests_per_minute(Store::Redis).await;
}

async fn spend_budgets(store: Store) {
    let h = harness(store, instant_mock(), &[]).await;
    // One request costs 10 x 0.001 + 5 x 0.002 = 0.02 (its estimate ~0.021): three fit in 0.065.
    set_quota(&h, json!({"monthly_budget": 0.065, "lifetime_budget": 1.0})).await;
    for i in 0..3 {
        let (status, _, body) = h.post("/v1/chat/completions", chat(i % 2 == 1, 5)).await;
        assert_eq!(status, StatusCode::OK, "request {i}: {body}");
        settled(&h).await;
    }
    let (status, headers, body) = h.post("/v1/chat/completions", chat(false, 5)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"]["type"], "insufficient_quota");
    assert_eq!(body["error"]["code"], "monthly_budget_exceeded");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("monthly budget") && message.contains("resets at"), "{message}");
    assert!(headers.get("retry-after").is_some(), "a monthly budget says when it resets");
    let u = settled(&h).await;
    assert_eq!(nanos(&u["usage"]["monthly_spend"]), 3 * price(10, 5), "spend is the actual cost, exactly");
    assert_eq!(u["store"], if matches!(store, Store::Redis) { "redis" } else { "memory" });

    // A lifetime budget never resets.
    set_quota(&h, json!({"lifetime_budget": 0.07})).await;
    let (status, headers, body) = h.post("/v1/chat/completions", chat(false, 5)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"]["code"], "lifetime_budget_exceeded");
    assert!(body["error"]["message"].as_str().unwrap().contains("does not reset"));
    assert!(headers.get("retry-after").is_none());
}

#[tokio::test]
async fn spend_budgets_memory() {
    spend_budgets(Store::Memory).await;
}

#[tokio::test]
async fn spend_budgets_redis() {
    spend_budgets(Store::Redis).await;
}

async fn in_flight(store: Store) {
    let mock = obleth_mock::MockConfig { ttft: Duration::from_millis(400), ..fast_mock() };
    let h = Arc::new(harness(store, mock, &[]).await);
    set_quota(&h, json!({"max_in_flight": 1})).await;
    let first = tokio::spawn({
        let h = h.clone();
        async move { h.post("/v1/chat/completions", chat(false, 2)).await.0 }
    });
    for _ in 0..200 {
        if usage(&h).await["usage"]["in_flight"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, _, body) = h.post("/v1/chat/completions", chat(false, 2)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "in_flight_limit_exceeded");
    assert_eq!(first.await.unwrap(), StatusCode::OK);
    settled(&h).await;
    let (status, _, _) = h.post("/v1/chat/completions", chat(false, 2)).await;
    assert_eq!(status, StatusCode::OK, "the finished request gave its slot back");
}

#[tokio::test]
async fn in_flight_memory() {
    in_flight(Store::Memory).await;
}

#[tokio::test]
async fn in_flight_redis() {
    in_flight(Store::Redis).await;
}

/// 200 concurrent streamed requests against a spend budget that fits 50 (in actual
/// cost; the estimate is a little higher): at most 50 are admitted and the budget is
/// overspent by nothing.
async fn concurrent(store: Store) {
    let mock = obleth_mock::MockConfig { ttft: Duration::from_millis(200), max_num_seqs: 1024, ..fast_mock() };
    let h = Arc::new(harness(store, mock, &[("OBLETH_ADMISSION_MAX_IN_FLIGHT", "1000")]).await);
    let budget = 50 * price(10, 5);
    set_quota(&h, json!({"lifetime_budget": budget as f64 / 1e9})).await;
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move {
                let (status, _, body) =
                    h.send(h.request("/v1/chat/completions", Some(&h.key), chat(true, 5).to_string())).await;
                (status, body)
            })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            StatusCode::OK => {
                let (events, done) = sse_events(&body);
                assert!(done && !events.is_empty(), "an admitted stream completes");
                admitted += 1;
            }
            StatusCode::TOO_MANY_REQUESTS => {
                let v: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(v["error"]["code"], "lifetime_budget_exceeded");
            }
            other => panic!("unexpected {other}: {}", String::from_utf8_lossy(&body)),
        }
    }
    let u = settled(&h).await;
    let spent = nanos(&u["usage"]["lifetime_spend"]);
    let stats = h.mock_stats().await;
    assert!(admitted <= 50, "{admitted} admitted against a budget that fits 50");
    assert!(admitted >= 45, "only {admitted} admitted: the estimate is far too high");
    assert_eq!(stats.requests_total, admitted, "refused requests never reach the backend");
    assert!(spent <= budget, "overspent by {} nanos", spent - budget);
    assert_eq!(
        spent,
        price(stats.prompt_tokens_total, stats.completion_tokens_total),
        "spend is what the backend reported, to the token"
    );
    assert_eq!(h.records(200).await.len(), 200, "one usage record per request, refused ones included");
}

#[tokio::test]
async fn concurrent_streams_memory() {
    concurrent(Store::Memory).await;
}

#[tokio::test]
async fn concurrent_streams_redis() {
    concurrent(Store::Redis).await;
}

/// A mixed run (streamed and not, with and without usage asked for, completions, a client
/// that leaves mid-stream): the budget's spend and the usage records equal what the
/// backend reported, to the token.
async fn exact_reconciliation(store: Store) {
    let h = Arc::new(harness(store, fast_mock(), &[]).await);
    set_quota(&h, json!({"tpm": 10_000_000, "lifetime_budget": 1000.0})).await;
    let bodies = [
        chat(false, 7),
        chat(true, 9),
        json!({"model": "mock-model", "stream": true, "stream_options": {"include_usage": true}, "max_tokens": 4,
               "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "a b c d e f"}]}),
        json!({"model": "mock-model", "prompt": "complete this sentence please", "max_tokens": 6}),
        json!({"model": "mock-model", "prompt": "complete this", "max_tokens": 3, "stream": true}),
    ];
    let mut n = 0;
    for round in 0..4 {
        for body in &bodies {
            let path = if body.get("prompt").is_some() { "/v1/completions" } else { "/v1/chat/completions" };
            let (status, _, b) = h.post(path, body.clone()).await;
            assert_eq!(status, StatusCode::OK, "round {round}: {b}");
            n += 1;
        }
    }
    let u = settled(&h).await;
    let stats = h.mock_stats().await;
    let records = h.records(n).await;
    let (input, output) = records.iter().fold((0, 0), |(i, o), r| {
        let u = r.usage.expect("usage recorded");
        assert!(!r.tokens_estimated, "the backend reported usage");
        (i + u.input_tokens, o + u.output_tokens)
    });
    assert_eq!((input, output), (stats.prompt_tokens_total, stats.completion_tokens_total));
    assert_eq!(nanos(&u["usage"]["lifetime_spend"]), price(input, output));
    let tpm = &u["usage"]["tokens_per_minute"];
    assert!(tpm["limit"].as_u64().unwrap() - tpm["remaining"].as_u64().unwrap() <= input + output);
}

#[tokio::test]
async fn exact_reconciliation_memory() {
    exact_reconciliation(Store::Memory).await;
}

#[tokio::test]
async fn exact_reconciliation_redis() {
    exact_reconciliation(Store::Redis).await;
}

/// A client that leaves mid-stream is charged what was streamed, and its slot comes back.
async fn disconnect(store: Store) {
    let mock = obleth_mock::MockConfig { itl: Duration::from_millis(20), ..fast_mock() };
    let h = Arc::new(harness(store, mock, &[]).await);
    set_quota(&h, json!({"max_in_flight": 1, "lifetime_budget": 10.0})).await;
    let res =
        h.http.request(h.request("/v1/chat/completions", Some(&h.key), chat(true, 200).to_string())).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    use http_body_util::BodyExt;
    let _ = body.frame().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(body);
    let u = settled(&h).await;
    let spent = nanos(&u["usage"]["lifetime_spend"]);
    assert!(spent > price(10, 0), "the prompt and the streamed tokens are charged: {spent}");
    assert!(spent < price(11, 200), "not the whole reservation: {spent}");
    let records = h.records(1).await;
    assert!(records[0].client_disconnected);
}

#[tokio::test]
async fn disconnect_memory() {
    disconnect(Store::Memory).await;
}

#[tokio::test]
async fn disconnect_redis() {
    disconnect(Store::Redis).await;
}

async fn readyz(h: &Harness) -> (StatusCode, serde_json::Value) {
    let req = http::Request::get(format!("{}/readyz", h.admin.admin_url))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let res = h.http.request(req).await.unwrap();
    let status = res.status();
    let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

/// Redis killed under load and restarted: no request that passed auth fails because of
/// it, the use decided without Redis is absorbed when it returns, and Redis's limits are
/// in force again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run() {
    let mut redis = OwnRedis::start();
    let mut env = store_env(Store::Redis, &redis.url());
    env.push(("OBLETH_BUDGET_REDIS_TIMEOUT".into(), "50ms".into()));
    env.push(("OBLETH_BUDGET_BREAKER_COOLDOWN".into(), "200ms".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let h = Arc::new(Harness::with_env(instant_mock(), &env).await);
    set_quota(&h, json!({"tpm": 10_000_000, "rpm": 100_000, "max_in_flight": 100, "lifetime_budget": 1000.0})).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let h = h.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut sent = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (status, _, body) = h.post("/v1/chat/completions", chat(w % 2 == 0, 5)).await;
                    assert_eq!(status, StatusCode::OK, "request {sent} of worker {w} failed: {body}");
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Still ready, on its local share: degraded, not down.
    let (status, ready) = readyz(&h).await;
    assert_eq!((status, ready["budget"].as_str()), (StatusCode::OK, Some("degraded")), "{ready}");
    redis.restart();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = 0;
    for w in workers {
        sent += w.await.unwrap();
    }
    assert!(sent > 50, "the run made progress: {sent}");

    // After recovery the shared store holds everything, including what was decided
    // without it: spend is exactly what the backend reported.
    let stats = h.mock_stats().await;
    let expected = price(stats.prompt_tokens_total, stats.completion_tokens_total);
    let mut last = 0;
    for _ in 0..300 {
        // Each request after recovery lets the pod catch up.
        let (status, _, _) = h.post("/v1/chat/completions", chat(false, 5)).await;
        assert_eq!(status, StatusCode::OK);
        let u = settled(&h).await;
        let stats = h.mock_stats().await;
        let expected_now = price(stats.prompt_tokens_total, stats.completion_tokens_total);
        last = nanos(&u["usage"]["lifetime_spend"]);
        if last == expected_now {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(expected > 0);
    let stats = h.mock_stats().await;
    assert_eq!(
        last,
        price(stats.prompt_tokens_total, stats.completion_tokens_total),
        "Redis's spend equals the backend's tokens once the pod caught up"
    );
    assert!(h.sink.len() as u64 > sent, "every request left a usage record");
    let (status, ready) = readyz(&h).await;
    assert_eq!((status, ready["budget"].as_str()), (StatusCode::OK, Some("up")), "{ready}");

    // Redis's limits are in force again: a budget set just above the spend refuses.
    set_quota(&h, json!({"lifetime_budget": (last + price(10, 5) / 2) as f64 / 1e9})).await;
    let (status, _, body) = h.post("/v1/chat/completions", chat(false, 5)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "lifetime_budget_exceeded");
}
