//! Several `obleth serve` processes ("pods") sharing one control-plane database (Postgres,
//! as deployed; SQLite where the test is about Redis) and one Redis: a change made
//! through one pod's admin API reaches every pod within a second (over Redis pub/sub),
//! and pods keep serving while Redis is away.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use obleth::client::call;
use obleth_testkit::OwnRedis;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use common::*;

/// One chat request with `key` through `pod`; its status.
async fn status_with(pod: &Gateway, key: &str) -> u16 {
    let http: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let body = json!({"model": "mock-model", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]});
    let req = Request::post(format!("http://{}/v1/chat/completions", pod.data))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let res = http.request(req).await.unwrap();
    let status = res.status().as_u16();
    res.into_body().collect().await.unwrap();
    status
}

/// Polls until `check` holds; returns how long it took (fails after `limit`).
async fn within<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn tenant_weight(pod: &Gateway, tenant: &str) -> Option<f64> {
    let state: Value = call(&pod.admin, "GET", "/api/v1/scheduler", None).await.unwrap();
    state["tenants"].as_array()?.iter().find(|t| t["name"] == tenant).and_then(|t| t["weight"].as_f64())
}

/// Pods sharing `db` and the Redis at `redis`, on a channel of the test's own. Caches
/// are kept a minute, so that only the change channel can explain a change seen sooner.
fn pod_env(db: &str, redis: Option<&str>, channel: &str) -> Vec<(String, String)> {
    let mut env = vec![
        ("OBLETH_DATABASE_URL".to_owned(), db.to_owned()),
        ("OBLETH_KEYS_CACHE_TTL".to_owned(), "60s".to_owned()),
        ("OBLETH_KEYS_NEGATIVE_CACHE_TTL".to_owned(), "60s".to_owned()),
    ];
    if let Some(url) = redis {
        env.push(("OBLETH_CLUSTER_REDIS_URL".to_owned(), url.to_owned()));
        env.push(("OBLETH_CLUSTER_CHANNEL".to_owned(), channel.to_owned()));
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_every_pod_within_a_second() {
    let shutdown = CancellationToken::new();
    let pg = PgDb::create();
    let db = pg.url();
    let channel = format!("obleth-test-{}", obleth_core::new_id(""));
    let redis = "redis://127.0.0.1:6379";
    let mock = mock(&shutdown).await;
    let mut a = Gateway::new(mock, &pod_env(&db, Some(redis), &channel));
    let mut b = Gateway::new(mock, &pod_env(&db, Some(redis), &channel));
    // A pod without the channel: the control that shows the caches would hold for a minute.
    let mut lone = Gateway::new(mock, &pod_env(&db, None, &channel));
    a.start().await;
    b.start().await;
    lone.start().await;
    let key = seed(&a).await;
    let other = call(&a.admin, "POST", "/api/v1/tenants/t1/keys", Some(json!({}))).await.unwrap();
    let other_key = other["secret"].as_str().unwrap().to_owned();
    for pod in [&a, &b, &lone] {
        assert_eq!(status_with(pod, &key).await, 200, "every pod knows the key (and caches it)");
    }

    // A key revoked through pod A is refused by pod B within a second.
    let key_id = call(&a.admin, "GET", "/api/v1/keys?tenant=t1", None).await.unwrap()["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| key.starts_with(k["prefix"].as_str().unwrap()))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    call(&a.admin, "POST", &format!("/api/v1/keys/{key_id}/revoke"), None).await.unwrap();
    let took = within(Duration::from_secs(1), "pod B refuses the revoked key", || async {
        status_with(&b, &key).await == 401
    })
    .await;
    eprintln!("revocation reached pod B in {took:?}");
    assert_eq!(status_with(&a, &key).await, 401);
    assert_eq!(status_with(&lone, &key).await, 200, "without the channel the cached key still works");

    // A weight change through pod A reaches pod B's scheduler within a second.
    assert_eq!(tenant_weight(&b, "t1").await, Some(1.0));
    call(&a.admin, "PATCH", "/api/v1/tenants/t1", Some(json!({"weight": 7}))).await.unwrap();
    let took = within(Duration::from_secs(1), "pod B's scheduler has the new weight", || async {
        tenant_weight(&b, "t1").await == Some(7.0)
    })
    .await;
    eprintln!("weight change reached pod B in {took:?}");

    // A disabled tenant: refused on B within a second.
    call(&a.admin, "PATCH", "/api/v1/tenants/t1", Some(json!({"disabled": true}))).await.unwrap();
    within(Duration::from_secs(1), "pod B refuses the disabled tenant", || async {
        status_with(&b, &other_key).await == 403
    })
    .await;
    for pod in [&mut a, &mut b, &mut lone] {
        pod.stop();
    }
}

/// Redis away: pods keep serving from their caches. When it returns, each pod's
/// subscription reconnects and resynchronizes, so a change made meanwhile takes effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_serve_through_a_redis_outage_and_resync_after() {
    let shutdown = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("shared.db").display());
    let mut redis = OwnRedis::start();
    let url = redis.url();
    let mock = mock(&shutdown).await;
    let mut a = Gateway::new(mock, &pod_env(&db, Some(&url), "changes"));
    let mut b = Gateway::new(mock, &pod_env(&db, Some(&url), "changes"));
    a.start().await;
    b.start().await;
    let key = seed(&a).await;
    assert_eq!(status_with(&b, &key).await, 200);

    redis.kill();
    for _ in 0..5 {
        assert_eq!(status_with(&b, &key).await, 200, "a cached key works while Redis is away");
    }
    // Revoked while the channel is down: pod B cannot hear it yet.
    let keys = call(&a.admin, "GET", "/api/v1/keys?tenant=t1", None).await.unwrap();
    let id = keys["data"][0]["id"].as_str().unwrap().to_owned();
    call(&a.admin, "POST", &format!("/api/v1/keys/{id}/revoke"), None).await.unwrap();
    assert_eq!(status_with(&a, &key).await, 401);
    assert_eq!(status_with(&b, &key).await, 200, "pod B still serves from its cache");

    redis.restart();
    let took = within(Duration::from_secs(15), "pod B resynchronizes once Redis is back", || async {
        status_with(&b, &key).await == 401
    })
    .await;
    eprintln!("pod B resynchronized {took:?} after Redis came back");
    a.stop();
    b.stop();
}
