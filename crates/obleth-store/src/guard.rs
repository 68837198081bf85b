//! The data plane's way into the control-plane store: calls that never hold a request
//! hostage to a store that is down.
//!
//! A request that misses its caches calls the store through [`StoreGuard::call`]. The
//! call runs as a task of its own and the request waits for it at most `timeout`. A call
//! that fails as unavailable, or outlasts the timeout, *opens* the guard: from then on
//! calls are not attempted at all (the caller answers from its last known entries, or
//! 503), and one background probe pings the store every `probe_interval` until it
//! answers, which closes the guard again.
//!
//! Why a task and not a timeout around the call: the Postgres pool reconnects inside the
//! call that asks for a connection, and while the server refuses connections that call
//! keeps retrying for the pool's acquire timeout (3 s). Bounding each call by dropping it
//! after a shorter timeout cancelled those reconnects, and the pool was seen never to
//! recover after the server came back. A task that is left to finish costs nothing, and
//! the probe (not a client request) waits out the pool's timeout.
//!
//! The guard measures the store, not its caller's scheduling delay. Each data-plane
//! thread runs a current-thread runtime, and a thread kept busy for seconds (a long
//! tokenization, a burst of work) neither runs tasks spawned on it nor fires its timers
//! in time: a call spawned there, or timed there, looked like a store that did not
//! answer. So the call's task runs on the runtime the guard was built on (the main
//! multi-thread one), and that task times the call and opens the guard if the call
//! outlasts the timeout (without cancelling it). The caller still waits at most the
//! timeout on its own clock, and answers unavailable when it gives up, but that alone
//! never opens the guard; a caller whose timer fired late uses the answer if it came.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::{ControlPlaneStore, Result, StoreError};

const OPEN_METRIC: &str = "obleth_store_unavailable";
const TRIPS_METRIC: &str = "obleth_store_outages_total";

/// Settings of the guard.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// How long a request waits for one store call, and how long a call may take before
    /// the store counts as down.
    pub timeout: Duration,
    /// How often the probe pings a store that is down.
    pub probe_interval: Duration,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig { timeout: Duration::from_secs(1), probe_interval: Duration::from_millis(250) }
    }
}

/// How the store is, as the data plane last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreHealth {
    Up,
    /// Down since `for_ms` milliseconds, with the error that opened the guard.
    Down {
        for_ms: u64,
        error: String,
    },
}

/// A store behind a circuit breaker.
pub struct StoreGuard {
    inner: Arc<Inner>,
}

/// What the guard's tasks share with it.
struct Inner {
    store: Arc<dyn ControlPlaneStore>,
    config: GuardConfig,
    /// Where store calls and the probe run: the runtime the guard was built on, never
    /// the caller's (see the module doc).
    runtime: Handle,
    open: AtomicBool,
    /// When the guard opened, in ms since `epoch`.
    opened_at: AtomicU64,
    epoch: Instant,
    error: Mutex<String>,
}

impl StoreGuard {
    /// A guard whose store calls run on the current tokio runtime: build it on the main
    /// multi-thread runtime, not on a data-plane thread's. Panics outside a runtime.
    pub fn new(store: Arc<dyn ControlPlaneStore>, config: GuardConfig) -> Arc<StoreGuard> {
        metrics::gauge!(OPEN_METRIC).set(0.0);
        Arc::new(StoreGuard {
            inner: Arc::new(Inner {
                store,
                config,
                runtime: Handle::current(),
                open: AtomicBool::new(false),
                opened_at: AtomicU64::new(0),
                epoch: Instant::now(),
                error: Mutex::new(String::new()),
            }),
        })
    }

    fn health(&self) -> StoreHealth {
        let inner = &self.inner;
        if !inner.open.load(Ordering::Acquire) {
            return StoreHealth::Up;
        }
        let since = inner.opened_at.load(Ordering::Relaxed);
        let now = inner.epoch.elapsed().as_millis() as u64;
        StoreHealth::Down {
            for_ms: now.saturating_sub(since),
            error: inner.error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    /// Runs `f` against the store, waiting at most the timeout; [`StoreError::Unavailable`]
    /// at once while the store is down. Works from any tokio runtime.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce(Arc<dyn ControlPlaneStore>) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let timeout = self.inner.config.timeout;
        let mut answer = self.spawn(f)?;
        match tokio::time::timeout(timeout, &mut answer).await {
            Ok(answer) => answer.unwrap_or_else(|_| Err(ended())),
            // This timer runs on the caller's runtime and may have fired late (a busy
            // thread): an answer that is there by now is used, and giving up opens
            // nothing (the call's own task decides that).
            Err(_) => match answer.try_recv() {
                Ok(answer) => answer,
                Err(_) => Err(StoreError::Unavailable(format!("no answer within {timeout:?}"))),
            },
        }
    }

    /// Whether the store answers a ping within the timeout (opens the guard if not).
    pub async fn check(&self) -> StoreHealth {
        // Waits for the call's own verdict, which comes within the timeout on the guard's
        // runtime, so that a ping that timed out is seen as down here; bounded anyway,
        // in case that runtime is itself stuck.
        if let Ok(answer) = self.spawn(|s| async move { s.ping().await }) {
            let _ = tokio::time::timeout(self.inner.config.timeout * 2, answer).await;
        }
        self.health()
    }

    /// Starts `f` as a task on the guard's runtime; its answer comes on the returned
    /// channel when the call ends, or as unavailable once the call outlasts the timeout
    /// (the task has then opened the guard, and lets the call finish). Unavailable at
    /// once while the guard is open.
    fn spawn<T, F, Fut>(&self, f: F) -> Result<oneshot::Receiver<Result<T>>>
    where
        F: FnOnce(Arc<dyn ControlPlaneStore>) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let inner = &self.inner;
        if inner.open.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable("the control-plane store is down (waiting for it to answer)".into()));
        }
        let timeout = inner.config.timeout;
        let call = f(inner.store.clone());
        let (tx, rx) = oneshot::channel();
        let inner = inner.clone();
        self.inner.runtime.spawn(async move {
            let mut call = std::pin::pin!(call);
            // Timed on this runtime, so the time measured is the store's.
            let result = match tokio::time::timeout(timeout, &mut call).await {
                Ok(result) => result,
                Err(_) => {
                    let e = StoreError::Unavailable(format!("no answer within {timeout:?}"));
                    inner.trip(&e);
                    // A caller still waiting gets its answer now; nobody needs the late one.
                    let _ = tx.send(Err(e));
                    if let Err(e @ StoreError::Unavailable(_)) = call.await {
                        inner.trip(&e);
                    }
                    return;
                }
            };
            if let Err(e @ StoreError::Unavailable(_)) = &result {
                inner.trip(e);
            }
            // The caller may have given up; then nobody needs the answer.
            let _ = tx.send(result);
        });
        Ok(rx)
    }
}

/// A call whose task ended without answering: it panicked, or the guard's runtime is
/// shutting down.
fn ended() -> StoreError {
    StoreError::Backend("store call ended without an answer".into())
}

impl Inner {
    fn trip(self: &Arc<Self>, e: &StoreError) {
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = e.to_string();
        if self.open.swap(true, Ordering::AcqRel) {
            return;
        }
        self.opened_at.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        metrics::gauge!(OPEN_METRIC).set(1.0);
        metrics::counter!(TRIPS_METRIC).increment(1);
        tracing::warn!(error = %e, "control-plane store unavailable: serving keys, tenants and models from their last known entries until it answers");
        let inner = self.clone();
        self.runtime.spawn(async move {
            let started = Instant::now();
            loop {
                tokio::time::sleep(inner.config.probe_interval).await;
                // Not bounded here on purpose: the pool's own acquire timeout bounds it,
                // and cutting it short would cancel the pool's reconnect.
                match inner.store.ping().await {
                    Ok(()) => break,
                    Err(e) => *inner.error.lock().unwrap_or_else(|p| p.into_inner()) = e.to_string(),
                }
            }
            inner.open.store(false, Ordering::Release);
            metrics::gauge!(OPEN_METRIC).set(0.0);
            tracing::info!(after = ?started.elapsed(), "control-plane store answers again");
        });
    }
}

#[cfg(test)]
mod tests;
