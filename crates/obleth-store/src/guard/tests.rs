//! The guard against a real (in-memory SQLite) store: a busy caller thread never opens
//! it; a store call that fails as unavailable or outlasts the timeout does, without
//! being cancelled, and the probe closes it again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use obleth_core::KeyHash;

use super::*;
use crate::SqliteStore;

const TIMEOUT: Duration = Duration::from_millis(200);

fn config() -> GuardConfig {
    GuardConfig { timeout: TIMEOUT, probe_interval: Duration::from_millis(20) }
}

async fn sqlite() -> Arc<dyn ControlPlaneStore> {
    Arc::new(SqliteStore::connect("sqlite::memory:").await.expect("in-memory SQLite"))
}

/// Waits (bounded) until the guard reports `want`-ness of being down.
async fn wait_down(guard: &StoreGuard, want: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while matches!(guard.health(), StoreHealth::Down { .. }) != want {
        assert!(tokio::time::Instant::now() < deadline, "guard still {:?}", guard.health());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A data-plane thread (a current-thread runtime of its own) that is blocked for three
/// timeouts while its call to a store that answers quickly (20 ms away, as over a
/// network) is in flight: the answer is used, and the store is still up. The guard was
/// built on a multi-thread runtime, as the server builds it. (With the call's task and
/// timer on the caller's runtime, both woke up late together and the guard opened.)
#[test]
fn a_busy_caller_thread_does_not_open_the_guard() {
    let main = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let guard = main.block_on(async { StoreGuard::new(sqlite().await, config()) });
    let caller = guard.clone();
    let answer = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            // Runs as soon as the call below waits: this thread is busy, its timers late.
            let busy = tokio::spawn(async { std::thread::sleep(TIMEOUT * 3) });
            let answer = caller
                .call(|s| async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    s.lookup_key(&KeyHash::of("obl_nobody")).await
                })
                .await;
            busy.await.expect("busy task");
            answer
        })
    })
    .join()
    .expect("caller thread");
    assert_eq!(guard.health(), StoreHealth::Up, "a busy caller made the store look down");
    assert_eq!(answer.expect("the answer, late but there"), None);
    // Nothing is left to open it late either: a ping still goes through.
    assert_eq!(main.block_on(guard.check()), StoreHealth::Up);
}

/// A call that outlasts the timeout: the caller gives up after the timeout (long before
/// the call ends), the guard opens, the call is not cancelled, later calls are not made
/// while the guard is open, and the probe closes it once the store answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_store_opens_the_guard_and_its_call_still_finishes() {
    let guard = StoreGuard::new(sqlite().await, config());
    let finished = Arc::new(AtomicBool::new(false));
    let done = finished.clone();
    let slow = guard.call(|s| async move {
        tokio::time::sleep(TIMEOUT * 10).await;
        let r = s.ping().await;
        done.store(true, Ordering::Release);
        r
    });
    match tokio::time::timeout(TIMEOUT * 5, slow).await {
        Ok(Err(StoreError::Unavailable(_))) => {}
        Ok(other) => panic!("expected Unavailable, got {other:?}"),
        Err(_) => panic!("the caller waited for the slow call"),
    }
    assert!(!finished.load(Ordering::Acquire), "the caller waited for the call");
    wait_down(&guard, true).await;
    assert!(matches!(guard.check().await, StoreHealth::Down { .. }));
    let made = Arc::new(AtomicBool::new(false));
    let m = made.clone();
    let refused = guard
        .call(|s| async move {
            m.store(true, Ordering::Release);
            s.ping().await
        })
        .await;
    assert!(matches!(refused, Err(StoreError::Unavailable(_))), "{refused:?}");
    assert!(!made.load(Ordering::Acquire), "a call was made while the guard was open");
    // The slow call runs to its end (cancelling it is what kept a pool from recovering).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !finished.load(Ordering::Acquire) {
        assert!(tokio::time::Instant::now() < deadline, "the slow call was cancelled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    wait_down(&guard, false).await;
    assert_eq!(guard.call(|s| async move { s.ping().await }).await.ok(), Some(()));
}

/// A call that fails as unavailable opens the guard at once; other errors do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_opens_the_guard_other_errors_do_not() {
    let guard = StoreGuard::new(sqlite().await, config());
    let missing = guard.call(|s| async move { s.get_tenant("nobody").await }).await;
    assert!(matches!(missing, Err(StoreError::NotFound { .. })), "{missing:?}");
    let failed: Result<()> = guard.call(|_| async { Err(StoreError::Backend("boom".into())) }).await;
    assert!(matches!(failed, Err(StoreError::Backend(_))), "{failed:?}");
    assert_eq!(guard.health(), StoreHealth::Up);

    let down: Result<()> = guard.call(|_| async { Err(StoreError::Unavailable("connection refused".into())) }).await;
    assert!(matches!(down, Err(StoreError::Unavailable(_))), "{down:?}");
    match guard.health() {
        StoreHealth::Down { error, .. } => assert!(error.contains("connection refused"), "{error}"),
        StoreHealth::Up => panic!("an unavailable store left the guard closed"),
    }
    wait_down(&guard, false).await;
}
