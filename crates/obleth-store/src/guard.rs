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

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{ControlPlaneStore, Result, StoreError};

const OPEN_METRIC: &str = "obleth_store_unavailable";
const TRIPS_METRIC: &str = "obleth_store_outages_total";

/// Settings of the guard.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// How long a request waits for one store call.
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
    store: Arc<dyn ControlPlaneStore>,
    config: GuardConfig,
    state: Arc<State>,
}

struct State {
    open: AtomicBool,
    /// When the guard opened, in ms since `epoch`.
    opened_at: AtomicU64,
    epoch: Instant,
    error: Mutex<String>,
}

impl StoreGuard {
    pub fn new(store: Arc<dyn ControlPlaneStore>, config: GuardConfig) -> Arc<StoreGuard> {
        metrics::gauge!(OPEN_METRIC).set(0.0);
        Arc::new(StoreGuard {
            store,
            config,
            state: Arc::new(State {
                open: AtomicBool::new(false),
                opened_at: AtomicU64::new(0),
                epoch: Instant::now(),
                error: Mutex::new(String::new()),
            }),
        })
    }

    fn health(&self) -> StoreHealth {
        if !self.state.open.load(Ordering::Acquire) {
            return StoreHealth::Up;
        }
        let since = self.state.opened_at.load(Ordering::Relaxed);
        let now = self.state.epoch.elapsed().as_millis() as u64;
        StoreHealth::Down {
            for_ms: now.saturating_sub(since),
            error: self.state.error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    /// Runs `f` against the store, bounded by the timeout; [`StoreError::Unavailable`]
    /// at once while the store is down. Needs a tokio runtime.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce(Arc<dyn ControlPlaneStore>) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        if self.state.open.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable("the control-plane store is down (waiting for it to answer)".into()));
        }
        let task = tokio::spawn(f(self.store.clone()));
        match tokio::time::timeout(self.config.timeout, task).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => {
                if matches!(e, StoreError::Unavailable(_)) {
                    self.trip(&e);
                }
                Err(e)
            }
            Ok(Err(join)) => Err(StoreError::Backend(format!("store call failed: {join}"))),
            Err(_) => {
                let e = StoreError::Unavailable(format!("no answer within {:?}", self.config.timeout));
                self.trip(&e);
                Err(e)
            }
        }
    }

    /// Whether the store answers a ping within the timeout (opens the guard if not).
    pub async fn check(&self) -> StoreHealth {
        if self.state.open.load(Ordering::Acquire) {
            return self.health();
        }
        let _ = self.call(|s| async move { s.ping().await }).await;
        self.health()
    }

    fn trip(&self, e: &StoreError) {
        *self.state.error.lock().unwrap_or_else(|p| p.into_inner()) = e.to_string();
        if self.state.open.swap(true, Ordering::AcqRel) {
            return;
        }
        self.state.opened_at.store(self.state.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        metrics::gauge!(OPEN_METRIC).set(1.0);
        metrics::counter!(TRIPS_METRIC).increment(1);
        tracing::warn!(error = %e, "control-plane store unavailable: serving keys, tenants and models from their last known entries until it answers");
        let store = self.store.clone();
        let state = self.state.clone();
        let interval = self.config.probe_interval;
        tokio::spawn(async move {
            let started = Instant::now();
            loop {
                tokio::time::sleep(interval).await;
                // Not bounded here on purpose: the pool's own acquire timeout bounds it,
                // and cutting it short would cancel the pool's reconnect.
                match store.ping().await {
                    Ok(()) => break,
                    Err(e) => *state.error.lock().unwrap_or_else(|p| p.into_inner()) = e.to_string(),
                }
            }
            state.open.store(false, Ordering::Release);
            metrics::gauge!(OPEN_METRIC).set(0.0);
            tracing::info!(after = ?started.elapsed(), "control-plane store answers again");
        });
    }
}
