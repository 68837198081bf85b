//! The Redis store against a real Redis: the behavioural suite, many pods sharing one
//! limit, retries, and an unreachable server.
//!
//! Needs Redis at 127.0.0.1:6379 (these tests fail, not skip, without it), and
//! `redis-server` on the PATH for the restart test. Each test writes under its own key
//! prefix and deletes its keys at the end.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use obleth_budget::{
    Actual, BudgetError, BudgetStore, Clock, Decision, Limits, ManualClock, RedisBudget, RedisConfig, Reservation,
    Reserve, SystemClock, calendar, conformance, from_nanos, to_nanos,
};

const URL: &str = "redis://127.0.0.1:6379";

fn config(prefix: &str) -> RedisConfig {
    RedisConfig { key_prefix: prefix.to_owned(), reservation_ttl: conformance::TTL, ..RedisConfig::new(URL) }
}

/// A key prefix of its own, whose keys are deleted when dropped.
struct Prefix(String);

impl Prefix {
    fn new() -> Prefix {
        Prefix(format!("obleth-test-{}:", obleth_core::new_id("")))
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(URL) else { return };
        let Ok(mut conn) = client.get_connection() else { return };
        let keys: Vec<String> = match redis::Commands::scan_match(&mut conn, format!("{}*", self.0)) {
            Ok(iter) => iter.filter_map(Result::ok).collect(),
            Err(_) => return,
        };
        for chunk in keys.chunks(500) {
            let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query(&mut conn);
        }
    }
}

async fn connect(config: RedisConfig) -> RedisBudget {
    match RedisBudget::connect(config).await {
        Ok(b) => b,
        Err(e) => panic!("these tests need Redis at {URL}: {e}"),
    }
}

#[tokio::test]
async fn redis_store_passes_the_suite() {
    let prefix = Prefix::new();
    let clock = Arc::new(ManualClock::new(conformance::START));
    let store = connect(config(&prefix.0)).await.with_clock(clock.clone());
    assert_eq!(store.kind(), "redis");
    conformance::run(&store, &clock).await;
}

#[tokio::test]
async fn months_are_computed_in_lua_as_in_rust() {
    let prefix = Prefix::new();
    let clock = Arc::new(ManualClock::new(0));
    let store = connect(config(&prefix.0)).await.with_clock(clock.clone());
    let limits = Limits::default();
    let mut instants = vec![0, 1, 951_782_400_000, 4_102_444_800_000 - 1, 4_102_444_800_000];
    // Both sides of every month boundary from 1999 to 2041, and a few odd instants.
    let mut at = 915_148_800_000; // 1999-01-01
    while at < 2_240_611_200_000 {
        let next = calendar::next_month_start(at);
        instants.extend([next - 1, next, next + 13 * 86_400_000 + 12_345]);
        at = next;
    }
    for t in instants {
        clock.set(t);
        let u = store.usage("months", &limits).await.expect("usage");
        assert_eq!(u.month, calendar::month_key(t), "at {t}");
        assert_eq!(u.monthly_resets_at, calendar::next_month_start(t), "at {t}");
    }
}

#[tokio::test]
async fn keys_share_the_tenant_hash_tag_and_expire() {
    let prefix = Prefix::new();
    let store = connect(config(&prefix.0)).await;
    let limits = Limits { tpm: Some(1000), rpm: Some(10), ..Limits::default() };
    let r = Reserve { tenant: "acme", request_id: "req-1", limits: &limits, tokens: 100, cost: 5 };
    assert!(matches!(store.reserve(&r).await.expect("reserve"), Decision::Allowed(_)));
    store.absorb("batch-1", "acme", &limits, Actual { tokens: 1, cost: 1 }).await.expect("absorb");

    let client = redis::Client::open(URL).expect("url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("connect");
    let mut keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{}*", prefix.0)).query_async(&mut conn).await.expect("keys");
    keys.sort();
    let base = format!("{}{{acme}}:", prefix.0);
    let month = calendar::month_key(SystemClock.now());
    let mut expected: Vec<String> = ["b:batch-1", "inflight", "life", "r:req-1", "rpm", "tpm"]
        .iter()
        .map(|s| format!("{base}{s}"))
        .chain([format!("{base}m:{month}")])
        .collect();
    expected.sort();
    assert_eq!(keys, expected);
    let ttl = |key: String| {
        let mut conn = conn.clone();
        async move { redis::cmd("PTTL").arg(key).query_async::<i64>(&mut conn).await.expect("pttl") }
    };
    let record = ttl(format!("{base}r:req-1")).await;
    let want = (conformance::TTL + Duration::from_secs(3600)).as_millis() as i64;
    assert!(record > want - 5_000 && record <= want, "record ttl {record}");
    let month_ttl = ttl(format!("{base}m:{month}")).await;
    assert!(month_ttl > 399 * 86_400_000, "month ttl {month_ttl}");
    assert!(ttl(format!("{base}b:batch-1")).await > 0);
    assert!(ttl(format!("{base}tpm")).await > 0, "buckets expire");
    assert_eq!(ttl(format!("{base}life")).await, -1, "lifetime spend is kept");
}

/// Four pods (four connections) on one limit, on Redis's clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_pods_share_one_limit() {
    let prefix = Prefix::new();
    let mut pods = Vec::new();
    for _ in 0..4 {
        pods.push(Arc::new(connect(config(&prefix.0)).await));
    }
    let run = obleth_core::new_id("");
    let cases = [
        ("spend", Limits { lifetime_budget: Some(to_nanos(0.5)), ..Limits::default() }),
        ("tokens", Limits { tpm: Some(50 * 300), ..Limits::default() }),
    ];
    for (name, limits) in cases {
        let tenant = format!("pods-{run}-{name}");
        let tasks = (0..200).map(|i| {
            let pod = pods[i % pods.len()].clone();
            let (tenant, limits) = (tenant.clone(), limits.clone());
            tokio::spawn(async move {
                let id = format!("{tenant}-{i}");
                let r =
                    Reserve { tenant: &tenant, request_id: &id, limits: &limits, tokens: 300, cost: to_nanos(0.01) };
                let d = pod.reserve(&r).await.expect("reserve");
                matches!(d, Decision::Allowed(_)).then_some(i)
            })
        });
        let allowed: Vec<usize> = join_all(tasks).await.into_iter().filter_map(|t| t.expect("task")).collect();
        assert_eq!(allowed.len(), 50, "{name}: {} of 200 passed a limit that fits 50", allowed.len());

        let mut tokens = 0;
        let mut cost = 0;
        let reconciles = allowed.iter().map(|&i| {
            let actual = Actual { tokens: 100 + i as u64, cost: to_nanos(0.001) + i as i64 * 7 };
            tokens += actual.tokens;
            cost += actual.cost;
            let pod = pods[(i + 1) % pods.len()].clone();
            let res = Reservation {
                tenant: tenant.clone(),
                request_id: format!("{tenant}-{i}"),
                limits: limits.clone(),
                tokens: 300,
                cost: to_nanos(0.01),
            };
            tokio::spawn(async move { pod.reconcile(&res, actual).await.expect("reconcile") })
        });
        for t in join_all(reconciles.collect::<Vec<_>>()).await {
            t.expect("task");
        }
        let u = pods[0].usage(&tenant, &limits).await.expect("usage");
        assert_eq!(u.in_flight, 0);
        assert_eq!(u.lifetime_spend, from_nanos(cost), "{name}: spend is the sum of the actual costs");
        assert_eq!(u.monthly_spend, from_nanos(cost));
        assert_eq!(u.month, calendar::month_key(SystemClock.now()));
        if let Some(w) = u.tokens_per_minute {
            // Redis's clock keeps refilling, so the remainder is at least what is left
            // after the actual use.
            assert!(w.remaining >= w.limit - tokens, "{name}: {} remaining after {tokens} used", w.remaining);
        }
    }
}

#[tokio::test]
async fn retries_across_pods_count_once() {
    let prefix = Prefix::new();
    let a = connect(config(&prefix.0)).await;
    let b = connect(config(&prefix.0)).await;
    let limits =
        Limits { tpm: Some(1000), max_in_flight: Some(1), lifetime_budget: Some(1_000_000), ..Limits::default() };
    let r = Reserve { tenant: "retry", request_id: "req-1", limits: &limits, tokens: 300, cost: 3_000 };
    assert!(matches!(a.reserve(&r).await.expect("reserve"), Decision::Allowed(_)));
    let again = b.reserve(&r).await.expect("reserve again");
    let Decision::Allowed(status) = again else { panic!("a retried reserve is granted: {again:?}") };
    assert_eq!(status.lifetime_spent, 3_000, "and counted once");
    let res = Reservation {
        tenant: "retry".to_owned(),
        request_id: "req-1".to_owned(),
        limits: limits.clone(),
        tokens: 300,
        cost: 3_000,
    };
    let actual = Actual { tokens: 200, cost: 2_000 };
    b.reconcile(&res, actual).await.expect("reconcile");
    a.reconcile(&res, actual).await.expect("reconcile again");
    let u = a.usage("retry", &limits).await.expect("usage");
    assert_eq!(u.in_flight, 0, "one slot taken, one freed");
    assert_eq!(u.lifetime_spend, from_nanos(2_000));
    let remaining = u.tokens_per_minute.map(|w| w.remaining).unwrap_or_default();
    assert!((800..=1000).contains(&remaining), "{remaining}: the refund came once");
    let r2 = Reserve { request_id: "req-2", ..r };
    assert!(matches!(b.reserve(&r2).await.expect("reserve"), Decision::Allowed(_)), "the slot is free");
}

/// A free TCP port on the loopback (nothing listens on it once this returns).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A `redis-server` of our own, killed when dropped (even when the test panics).
struct Server(Child);

impl Server {
    fn start(port: u16) -> Server {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed for this test");
        let server = Server(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn assert_unavailable<T: std::fmt::Debug>(r: Result<T, BudgetError>, started: Instant, what: &str) {
    let took = started.elapsed();
    assert!(matches!(r, Err(BudgetError::Unavailable(_))), "{what}: {r:?}");
    assert!(took < Duration::from_secs(2), "{what} took {took:?}");
}

#[tokio::test]
async fn closed_port_is_unavailable_and_the_password_stays_secret() {
    let port = free_port();
    let config = RedisConfig::new(format!("redis://:hunter2@127.0.0.1:{port}"));
    let started = Instant::now();
    let r = RedisBudget::connect(config.clone()).await;
    let err = r.as_ref().err().map(|e| e.to_string()).unwrap_or_default();
    assert_unavailable(r, started, "connect");
    assert!(!err.contains("hunter2"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");

    let store = RedisBudget::connect_lazy(config).expect("a lazy store builds without Redis");
    assert!(!format!("{store:?}").contains("hunter2"));
    let limits = Limits { rpm: Some(10), ..Limits::default() };
    for i in 0..3 {
        let id = format!("req-{i}");
        let started = Instant::now();
        let r = store.reserve(&Reserve { tenant: "t", request_id: &id, limits: &limits, tokens: 1, cost: 0 }).await;
        if let Err(e) = &r {
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
        assert_unavailable(r, started, "reserve");
    }
    let started = Instant::now();
    assert_unavailable(store.usage("t", &limits).await, started, "usage");

    let bad = RedisBudget::connect(RedisConfig::new("http://:hunter2@nowhere")).await;
    let Err(BudgetError::Backend(msg)) = bad else { panic!("a bad url is a backend error: {bad:?}") };
    assert!(!msg.contains("hunter2"), "{msg}");
}

#[tokio::test]
async fn a_restarted_redis_is_used_again() {
    let port = free_port();
    let server = Server::start(port);
    let config =
        RedisConfig { timeout: Duration::from_millis(100), ..RedisConfig::new(format!("redis://127.0.0.1:{port}")) };
    let store = connect(config).await;
    let limits = Limits { tpm: Some(10_000), lifetime_budget: Some(1_000_000), ..Limits::default() };
    let reserve = |id: &'static str| {
        let store = &store;
        let limits = &limits;
        async move { store.reserve(&Reserve { tenant: "t", request_id: id, limits, tokens: 10, cost: 1 }).await }
    };
    assert!(matches!(reserve("before").await, Ok(Decision::Allowed(_))));

    drop(server);
    for id in ["down-1", "down-2", "down-3"] {
        let started = Instant::now();
        assert_unavailable(reserve(id).await, started, "reserve while down");
    }
    let started = Instant::now();
    let res =
        Reservation { tenant: "t".into(), request_id: "before".into(), limits: limits.clone(), tokens: 10, cost: 1 };
    assert_unavailable(store.reconcile(&res, Actual::default()).await, started, "reconcile while down");

    // Same port, empty data set, no scripts loaded: the same store comes back.
    let _server = Server::start(port);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match reserve("after").await {
            Ok(d) => {
                assert!(matches!(d, Decision::Allowed(_)), "{d:?}");
                break;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "still failing after the restart: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let u = store.usage("t", &limits).await.expect("usage after the restart");
    assert_eq!((u.in_flight, u.lifetime_spend), (1, from_nanos(1)), "the new server counts from scratch");
}

/// A TCP proxy to the test Redis that can freeze its open connections: they stay open
/// and swallow everything, like a peer gone silent behind a dead network path. New
/// connections are forwarded as usual.
struct Proxy {
    port: u16,
    freeze: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (freeze, _) = tokio::sync::watch::channel(0u64);
        let tx = freeze.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut frozen = tx.subscribe();
                tokio::spawn(async move {
                    let Ok(mut upstream) = tokio::net::TcpStream::connect("127.0.0.1:6379").await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                        _ = frozen.changed() => {
                            // Hold both ends open and answer nothing.
                            std::future::pending::<()>().await;
                        }
                    }
                });
            }
        });
        Proxy { port, freeze }
    }

    /// Freezes every connection open now.
    fn freeze(&self) {
        self.freeze.send_modify(|g| *g += 1);
    }
}

#[tokio::test]
async fn a_silent_connection_is_rebuilt() {
    let prefix = Prefix::new();
    let proxy = Proxy::start().await;
    let config = RedisConfig {
        key_prefix: prefix.0.clone(),
        timeout: Duration::from_millis(100),
        ..RedisConfig::new(format!("redis://127.0.0.1:{}", proxy.port))
    };
    let store = connect(config).await;
    let limits = Limits { rpm: Some(1000), ..Limits::default() };
    let reserve = |id: String| {
        let (store, limits) = (&store, &limits);
        async move { store.reserve(&Reserve { tenant: "t", request_id: &id, limits, tokens: 1, cost: 0 }).await }
    };
    assert!(matches!(reserve("before".into()).await, Ok(Decision::Allowed(_))));

    proxy.freeze();
    let started = Instant::now();
    assert_unavailable(reserve("silent".into()).await, started, "reserve on a silent connection");
    // No error ever comes from a silent peer: the store must notice the timeouts itself.
    let deadline = Instant::now() + Duration::from_secs(5);
    for i in 0.. {
        match reserve(format!("after-{i}")).await {
            Ok(d) => {
                assert!(matches!(d, Decision::Allowed(_)), "{d:?}");
                break;
            }
            Err(e) => {
                assert!(matches!(e, BudgetError::Unavailable(_)), "{e}");
                assert!(Instant::now() < deadline, "still failing on a frozen connection: {e}");
            }
        }
    }
}

#[tokio::test]
async fn connecting_to_a_silent_server_gives_up() {
    // The kernel completes the TCP handshake, but nothing ever answers.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let started = Instant::now();
    let r = RedisBudget::connect(RedisConfig::new(format!("redis://127.0.0.1:{port}"))).await;
    let took = started.elapsed();
    assert!(matches!(r, Err(BudgetError::Unavailable(_))), "{r:?}");
    assert!(took < Duration::from_secs(4), "connect took {took:?}");
    drop(listener);
}

/// Redis dies: each pod decides on its local share (and a fail-closed tenant is refused),
/// the decisions are counted as degraded, and when Redis is back the use decided alone is
/// absorbed into it in the background.
#[tokio::test]
async fn failover_decides_on_the_local_share_and_catches_up() {
    use obleth_budget::{Failover, FailoverConfig};
    let port = free_port();
    let server = Server::start(port);
    let url = format!("redis://127.0.0.1:{port}");
    let config = RedisConfig { timeout: Duration::from_millis(50), ..RedisConfig::new(url.clone()) };
    let shared = connect(config).await;
    let failover = Failover::new(
        Arc::new(shared),
        FailoverConfig {
            local_share: 0.5,
            breaker_failures: 2,
            breaker_cooldown: Duration::from_millis(100),
            ..FailoverConfig::default()
        },
    );
    let limits = Limits { rpm: Some(10), lifetime_budget: Some(1_000_000), ..Limits::default() };
    let reserve = |id: String, tenant: &'static str, limits: Limits| {
        let failover = &failover;
        async move {
            let r = Reserve { tenant, request_id: &id, limits: &limits, tokens: 10, cost: 100 };
            failover.reserve(&r).await
        }
    };
    let reservation =
        |id: String| Reservation { tenant: "t".into(), request_id: id, limits: limits.clone(), tokens: 10, cost: 100 };
    assert!(matches!(reserve("before".into(), "t", limits.clone()).await, Ok(Decision::Allowed(_))));
    failover.reconcile(&reservation("before".into()), Actual { tokens: 10, cost: 100 }).await.expect("reconcile");
    assert!(!failover.degraded());

    drop(server);
    let started = Instant::now();
    let mut allowed = vec![];
    for i in 0..8 {
        match reserve(format!("down{i}"), "t", limits.clone()).await {
            Ok(Decision::Allowed(_)) => allowed.push(format!("down{i}")),
            Ok(Decision::Denied(d)) => assert_eq!(d.limit, obleth_budget::LimitKind::Rpm),
            Err(e) => panic!("a fail-open tenant must not get an error: {e}"),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(2), "the breaker keeps requests from waiting on Redis");
    assert!(failover.degraded());
    assert_eq!(allowed.len(), 5, "half of the 10 rpm, decided on this pod alone");
    let closed = Limits { lifetime_budget: Some(1_000), fail_closed: true, ..Limits::default() };
    match reserve("closed".into(), "t2", closed).await {
        Err(BudgetError::Unavailable(_)) => {}
        other => panic!("a fail-closed spend budget is refused while Redis is down: {other:?}"),
    }
    for id in &allowed {
        failover.reconcile(&reservation(id.clone()), Actual { tokens: 10, cost: 100 }).await.expect("reconcile");
    }
    assert_eq!(failover.pending().0, 1, "the local use waits, journalled");

    // Redis comes back (empty: it had no persistence). After the cooldown, the next call
    // probes it, closes the breaker and catches up in the background.
    let _server = Server::start(port);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut probe = 0;
    while failover.degraded() || failover.pending() != (0, 0) {
        assert!(Instant::now() < deadline, "never caught up: {:?}", failover.pending());
        let _ = reserve(format!("probe{probe}"), "t3", Limits { rpm: Some(1_000), ..Limits::default() }).await;
        probe += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let usage = failover.usage("t", &limits).await.expect("usage");
    assert_eq!(to_nanos(usage.lifetime_spend), 5 * 100, "the use decided without Redis was absorbed, once");
}

/// Work left from an outage drains on the next successful call of any kind: with no
/// request coming, a usage read alone brings the pending reconciles in (before, only a
/// request's reserve or reconcile started the catch-up, so a quiet pod kept them).
#[tokio::test]
async fn a_usage_read_alone_catches_up() {
    use obleth_budget::{Failover, FailoverConfig};
    let port = free_port();
    let server = Server::start(port);
    let config =
        RedisConfig { timeout: Duration::from_millis(50), ..RedisConfig::new(format!("redis://127.0.0.1:{port}")) };
    let failover = Failover::new(
        Arc::new(connect(config).await),
        FailoverConfig {
            breaker_failures: 1,
            breaker_cooldown: Duration::from_millis(50),
            ..FailoverConfig::default()
        },
    );
    let limits = Limits { rpm: Some(100), ..Limits::default() };
    let r = Reserve { tenant: "t", request_id: "r1", limits: &limits, tokens: 10, cost: 100 };
    assert!(matches!(failover.reserve(&r).await, Ok(Decision::Allowed(_))));
    drop(server);
    let reservation =
        Reservation { tenant: "t".into(), request_id: "r1".into(), limits: limits.clone(), tokens: 10, cost: 100 };
    failover.reconcile(&reservation, Actual { tokens: 10, cost: 100 }).await.expect("kept for retry");
    assert_eq!(failover.pending().1, 1, "the reconcile waits for Redis");

    let _server = Server::start(port);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while failover.pending() != (0, 0) {
        assert!(Instant::now() < deadline, "a usage read never started the catch-up: {:?}", failover.pending());
        let _ = failover.usage("t", &limits).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
