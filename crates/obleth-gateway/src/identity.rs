//! Key → tenant resolution through caches.
//!
//! Lookups go, in order, through:
//! - this pod's caches: `keys` (key hash → the key's record: id, tenant, expiry,
//!   revocation), `negative` (hashes the store did not know, kept briefly so that a
//!   flood of bad keys cannot hammer the store) and `tenants` (tenant id → weight,
//!   group, quota, disabled);
//! - the cache shared by every pod (Redis, when configured; [`SharedCache`]), so that a
//!   key used on one pod is not read from the store again by each of the others;
//! - the control-plane store, through its [`StoreGuard`].
//!
//! Freshness: admin changes invalidate the affected entries at once on every pod (via
//! [`ChangeNotifier`] and the cluster's change bus, which also clears the shared cache).
//! Changes that bypass the admin API (another process writing the database) are seen
//! after at most `ttl` here, plus the shared cache's own TTL.
//!
//! Store outages: every key and tenant read is also kept for `stale_ttl` as the *last
//! known answer*. While the store is down (the guard is open, or a call failed), an
//! entry that expired from the caches is served from there (counted as `stale`), so keys
//! in use keep working; a key this pod never saw and the shared cache does not hold gets
//! 503, not 401: the store cannot say whether it exists. Admin changes invalidate last
//! known answers too (they cannot happen while the store is down anyway).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use obleth_core::{
    ApiKey, ChangeEvent, ChangeNotifier, KeyHash, Shared, SharedCache, SharedKind, Tenant, key::MAX_KEY_LEN, now_millis,
};
use obleth_store::{StoreError, StoreGuard};
use serde::Serialize;
use serde::de::DeserializeOwned;

use self::memo::Memo;
use crate::error::ApiError;
use crate::telemetry;

mod memo;

/// Settings of the identity caches.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub ttl: Duration,
    pub negative_ttl: Duration,
    pub capacity: u64,
    /// How long the last known answer is served while the store is down.
    pub stale_ttl: Duration,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            ttl: Duration::from_secs(10),
            negative_ttl: Duration::from_secs(2),
            capacity: 100_000,
            stale_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// A resolved caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: Arc<Tenant>,
    pub key_prefix: Arc<str>,
    /// The key's record (its id, for what is granted per key: MCP tools).
    pub key: Arc<ApiKey>,
}

/// Resolves bearer keys to tenants.
///
/// Each key and tenant is cached once, with when it was read: fresh for `ttl`, then kept
/// as the last known answer until `stale_ttl` (one cache per kind, not a fresh one and a
/// stale one).
pub struct Identity {
    store: Arc<StoreGuard>,
    shared: Option<Arc<dyn SharedCache>>,
    keys: Memo<KeyHash, Known<ApiKey>>,
    negative: Memo<KeyHash, ()>,
    tenants: Memo<String, Known<Tenant>>,
    ttl: Duration,
    /// Bumped by a resync: every entry read before it is stale (a last known answer).
    generation: AtomicU64,
}

/// A cached answer, and the resync it was read after.
#[derive(Clone)]
struct Known<T> {
    value: Arc<T>,
    generation: u64,
}

/// What the caches and the store said about one id.
enum Found<T> {
    Some(Arc<T>),
    Absent,
}

impl Identity {
    pub fn new(store: Arc<StoreGuard>, shared: Option<Arc<dyn SharedCache>>, config: &IdentityConfig) -> Self {
        let n = config.capacity;
        let kept = config.stale_ttl.max(config.ttl);
        Identity {
            store,
            shared,
            keys: Memo::new(n, kept),
            negative: Memo::new(n, config.negative_ttl),
            tenants: Memo::new(n, kept),
            ttl: config.ttl,
            generation: AtomicU64::new(0),
        }
    }

    fn known<T>(&self, value: Arc<T>) -> Known<T> {
        Known { value, generation: self.generation.load(Ordering::Relaxed) }
    }

    /// The value if it was read (at `read_at`) within `ttl` and since the last resync.
    fn fresh<T>(&self, (known, read_at): (Known<T>, Instant)) -> Option<Arc<T>> {
        let current = known.generation == self.generation.load(Ordering::Relaxed);
        (current && read_at.elapsed() < self.ttl).then_some(known.value)
    }

    /// Resolves a presented secret. Errors are the client-facing answers.
    pub async fn resolve(&self, secret: &str) -> Result<Caller, ApiError> {
        if secret.is_empty() || secret.len() > MAX_KEY_LEN {
            return Err(ApiError::invalid_key());
        }
        let hash = KeyHash::of(secret);
        let key = match self.keys.get(&hash).and_then(|k| self.fresh(k)) {
            Some(key) => {
                telemetry::key_cache("hit");
                key
            }
            None if self.negative.contains_key(&hash) => {
                telemetry::key_cache("negative_hit");
                return Err(ApiError::invalid_key());
            }
            None => match self.key_miss(hash).await? {
                Found::Some(key) => key,
                Found::Absent => return Err(ApiError::invalid_key()),
            },
        };
        if !key.is_active(now_millis()) {
            return Err(ApiError::invalid_key());
        }
        let tenant = self.tenant(&key.tenant_id).await?;
        if tenant.disabled {
            return Err(ApiError::tenant_disabled());
        }
        Ok(Caller { tenant, key_prefix: key.prefix.as_str().into(), key })
    }

    async fn key_miss(&self, hash: KeyHash) -> Result<Found<ApiKey>, ApiError> {
        let id = hash.to_hex();
        let looked_up =
            self.lookup(SharedKind::Key, &id, |store| async move { store.lookup_key(&hash).await }, "key").await;
        match looked_up {
            Ok(Found::Some(key)) => {
                self.keys.insert(hash, self.known(key.clone()));
                Ok(Found::Some(key))
            }
            Ok(Found::Absent) => {
                self.negative.insert(hash, ());
                self.keys.invalidate(&hash);
                Ok(Found::Absent)
            }
            Err(e) => match self.keys.get(&hash) {
                Some((known, _)) => {
                    telemetry::key_cache("stale");
                    Ok(Found::Some(known.value))
                }
                None => Err(store_error(e)),
            },
        }
    }

    async fn tenant(&self, id: &str) -> Result<Arc<Tenant>, ApiError> {
        if let Some(t) = self.tenants.get(id).and_then(|t| self.fresh(t)) {
            return Ok(t);
        }
        let owned = id.to_owned();
        let looked_up = self
            .lookup(
                SharedKind::Tenant,
                id,
                |store| async move {
                    match store.get_tenant(&owned).await {
                        Ok(t) => Ok(Some(t)),
                        Err(StoreError::NotFound { .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                },
                "tenant",
            )
            .await;
        match looked_up {
            Ok(Found::Some(t)) => {
                self.tenants.insert(id.to_owned(), self.known(t.clone()));
                Ok(t)
            }
            // The key outlived its tenant (deleted): the key is as good as revoked.
            Ok(Found::Absent) => {
                self.tenants.invalidate(id);
                Err(ApiError::invalid_key())
            }
            Err(e) => match self.tenants.get(id) {
                Some((known, _)) => {
                    telemetry::key_cache("stale");
                    Ok(known.value)
                }
                None => Err(store_error(e)),
            },
        }
    }

    /// The shared cache, then the store (filling the shared cache with its answer).
    async fn lookup<T, F, Fut>(&self, kind: SharedKind, id: &str, read: F, what: &str) -> Result<Found<T>, StoreError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce(Arc<dyn obleth_store::ControlPlaneStore>) -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, StoreError>> + Send + 'static,
    {
        let shared = self.shared.as_ref();
        let mut ticket = None;
        if let Some(shared) = shared {
            match shared.get(kind, id).await {
                Shared::Hit(json) => match serde_json::from_str::<T>(&json) {
                    Ok(v) => {
                        telemetry::key_cache("shared_hit");
                        return Ok(Found::Some(Arc::new(v)));
                    }
                    // Written by another version: read the store and overwrite it.
                    Err(e) => tracing::debug!(error = %e, what, "unreadable shared cache entry"),
                },
                Shared::Absent => {
                    telemetry::key_cache("shared_negative_hit");
                    return Ok(Found::Absent);
                }
                Shared::Miss { ticket: t } => ticket = Some(t),
                Shared::Unavailable => {}
            }
        }
        telemetry::key_cache("miss");
        let found = self.store.call(read).await?;
        // A value that does not serialize is simply not shared.
        if let (Some(shared), Some(ticket)) = (shared, ticket)
            && let Ok(value) = found.as_ref().map(serde_json::to_string).transpose()
        {
            // Off the request's path: the answer is known, the fill is for the others.
            let (shared, id) = (shared.clone(), id.to_owned());
            tokio::spawn(async move { shared.fill(kind, &id, &ticket, value.as_deref()).await });
        }
        Ok(found.map_or(Found::Absent, |v| Found::Some(Arc::new(v))))
    }
}

fn store_error(e: StoreError) -> ApiError {
    tracing::warn!(error = %e, "control-plane store failed during key resolution");
    ApiError::store_unavailable()
}

impl ChangeNotifier for Identity {
    fn notify(&self, event: ChangeEvent) {
        match event {
            ChangeEvent::Tenant { id, .. } => self.tenants.invalidate(&id),
            ChangeEvent::Key { hash } => {
                self.keys.invalidate(&hash);
                self.negative.invalidate(&hash);
            }
            // Changes may have been missed: read everything again, but keep the last
            // known answers (the store may be what is down).
            ChangeEvent::Resync => {
                self.generation.fetch_add(1, Ordering::Relaxed);
                self.negative.invalidate_all();
            }
            ChangeEvent::Model { .. }
            | ChangeEvent::Group { .. }
            | ChangeEvent::McpServer { .. }
            | ChangeEvent::McpGrants
            | ChangeEvent::McpPin { .. } => {}
        }
    }
}
