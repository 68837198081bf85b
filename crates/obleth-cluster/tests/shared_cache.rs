//! The shared key cache against a real Redis (127.0.0.1:6379), through the same change
//! bus the pods use: fills, tickets that lose to a change, epochs, and an unreachable
//! Redis.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use obleth_cluster::{CacheKeys, ChangeBus, ChangeBusConfig, RedisSharedCache, SharedCacheConfig};
use obleth_core::{ChangeEvent, ChangeNotifier, KeyHash, Shared, SharedCache, SharedKind};

const REDIS: &str = "redis://127.0.0.1:6379";

fn cache(url: &str, prefix: &str) -> RedisSharedCache {
    RedisSharedCache::new(SharedCacheConfig {
        redis_url: url.into(),
        keys: CacheKeys::new(prefix),
        ttl: Duration::from_secs(60),
        negative_ttl: Duration::from_secs(60),
        timeout: Duration::from_millis(100),
    })
    .unwrap()
}

async fn bus(prefix: &str, channel: &str) -> Arc<ChangeBus> {
    let dir = tempfile::tempdir().unwrap();
    let store = obleth_store::connect(&format!("sqlite://{}", dir.path().join("cp.db").display())).await.unwrap();
    std::mem::forget(dir);
    let local: Arc<dyn ChangeNotifier> = Arc::new(Vec::<Arc<dyn ChangeNotifier>>::new());
    ChangeBus::start(
        ChangeBusConfig {
            redis_url: REDIS.into(),
            channel: channel.into(),
            pod: "test-pod".into(),
            resync_interval: Duration::from_secs(3600),
            cache: Some(CacheKeys::new(prefix)),
        },
        local,
        store,
    )
    .unwrap()
}

fn ticket(s: Shared) -> String {
    match s {
        Shared::Miss { ticket } => ticket,
        other => panic!("expected a miss, got {other:?}"),
    }
}

async fn until_miss(c: &RedisSharedCache, kind: SharedKind, id: &str) -> Duration {
    let started = Instant::now();
    while !matches!(c.get(kind, id).await, Shared::Miss { .. }) {
        assert!(started.elapsed() < Duration::from_secs(2), "the entry was not dropped");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_hits_and_changes() {
    let prefix = format!("obleth-test-{}:idc:", obleth_core::new_id(""));
    let c = cache(REDIS, &prefix);
    let bus = bus(&prefix, &format!("{prefix}changes")).await;
    let hash = KeyHash::of("obl_shared_cache_test_secret");
    let id = hash.to_hex();

    // Miss, fill, hit; kinds do not collide.
    let t = ticket(c.get(SharedKind::Key, &id).await);
    c.fill(SharedKind::Key, &id, &t, Some(r#"{"id":"key_1"}"#)).await;
    assert_eq!(c.get(SharedKind::Key, &id).await, Shared::Hit(r#"{"id":"key_1"}"#.into()));
    assert!(matches!(c.get(SharedKind::Tenant, &id).await, Shared::Miss { .. }));
    // Known absent.
    let t = ticket(c.get(SharedKind::Tenant, "ten_gone").await);
    c.fill(SharedKind::Tenant, "ten_gone", &t, None).await;
    assert_eq!(c.get(SharedKind::Tenant, "ten_gone").await, Shared::Absent);

    // A change deletes the entry before it is published.
    bus.notify(ChangeEvent::Key { hash });
    let took = until_miss(&c, SharedKind::Key, &id).await;
    eprintln!("entry dropped {took:?} after the change");

    // A fill whose ticket predates a change is not stored: the read may have seen the
    // old row.
    let t = ticket(c.get(SharedKind::Key, &id).await);
    bus.notify(ChangeEvent::Tenant { id: "ten_other".into(), tenant: None });
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.fill(SharedKind::Key, &id, &t, Some(r#"{"id":"old"}"#)).await;
    assert!(matches!(c.get(SharedKind::Key, &id).await, Shared::Miss { .. }), "a raced fill is refused");
    // A fresh ticket fills.
    let t = ticket(c.get(SharedKind::Key, &id).await);
    c.fill(SharedKind::Key, &id, &t, Some(r#"{"id":"new"}"#)).await;
    assert_eq!(c.get(SharedKind::Key, &id).await, Shared::Hit(r#"{"id":"new"}"#.into()));

    // An epoch bump (what a pod does when it may have missed changes) drops everything.
    let client = redis::Client::open(REDIS).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("INCR").arg(format!("{prefix}epoch")).query_async::<()>(&mut conn).await.unwrap();
    assert!(matches!(c.get(SharedKind::Key, &id).await, Shared::Miss { .. }));
    assert!(matches!(c.get(SharedKind::Tenant, "ten_gone").await, Shared::Miss { .. }));

    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut conn).await.unwrap();
    redis::cmd("DEL").arg(keys).query_async::<()>(&mut conn).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_redis_is_skipped_quickly() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let c = cache(&format!("redis://127.0.0.1:{port}"), "obleth-test-down:idc:");
    let started = Instant::now();
    assert_eq!(c.get(SharedKind::Key, "ab").await, Shared::Unavailable);
    assert!(started.elapsed() < Duration::from_secs(1), "bounded: {:?}", started.elapsed());
    // During the cool-down no call is made at all.
    let started = Instant::now();
    for _ in 0..100 {
        assert_eq!(c.get(SharedKind::Key, "ab").await, Shared::Unavailable);
    }
    assert!(started.elapsed() < Duration::from_millis(50), "{:?}", started.elapsed());
}
