//! Key → tenant resolution through in-process caches.
//!
//! Three caches sit in front of the store, so that a steady stream of requests does
//! not touch it:
//! - `keys`: key hash → the key's record (id, tenant, expiry, revocation);
//! - `negative`: hashes the store did not know, kept briefly so that a flood of bad
//!   keys cannot hammer the store;
//! - `tenants`: tenant id → the tenant (weight, group, quota, disabled).
//!
//! Freshness: admin changes made through this process invalidate the affected entries
//! at once (via [`ChangeNotifier`]). Changes that bypass it (another process writing the
//! database) are seen after at most `ttl` for positive entries and `negative_ttl` for
//! unknown keys. Both are configurable; defaults are documented in the README.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use obleth_core::{ApiKey, ChangeEvent, ChangeNotifier, KeyHash, Tenant, key::MAX_KEY_LEN, now_millis};
use obleth_store::{ControlPlaneStore, StoreError};

use crate::error::ApiError;
use crate::telemetry;

/// Settings of the identity caches.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub ttl: Duration,
    pub negative_ttl: Duration,
    pub capacity: u64,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig { ttl: Duration::from_secs(10), negative_ttl: Duration::from_secs(2), capacity: 100_000 }
    }
}

/// A resolved caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: Arc<Tenant>,
    pub key_prefix: Arc<str>,
}

/// Resolves bearer keys to tenants.
pub struct Identity {
    store: Arc<dyn ControlPlaneStore>,
    keys: Cache<KeyHash, Arc<ApiKey>>,
    negative: Cache<KeyHash, ()>,
    tenants: Cache<String, Arc<Tenant>>,
}

impl Identity {
    pub fn new(store: Arc<dyn ControlPlaneStore>, config: &IdentityConfig) -> Self {
        Identity {
            store,
            keys: Cache::builder().max_capacity(config.capacity).time_to_live(config.ttl).build(),
            negative: Cache::builder().max_capacity(config.capacity).time_to_live(config.negative_ttl).build(),
            tenants: Cache::builder().max_capacity(config.capacity).time_to_live(config.ttl).build(),
        }
    }

    /// Resolves a presented secret. Errors are the client-facing answers.
    pub async fn resolve(&self, secret: &str) -> Result<Caller, ApiError> {
        if secret.is_empty() || secret.len() > MAX_KEY_LEN {
            return Err(ApiError::invalid_key());
        }
        let hash = KeyHash::of(secret);
        let key = match self.keys.get(&hash) {
            Some(key) => {
                telemetry::key_cache("hit");
                key
            }
            None if self.negative.contains_key(&hash) => {
                telemetry::key_cache("negative_hit");
                return Err(ApiError::invalid_key());
            }
            None => {
                telemetry::key_cache("miss");
                match self.store.lookup_key(&hash).await.map_err(store_error)? {
                    Some(key) => {
                        let key = Arc::new(key);
                        self.keys.insert(hash, key.clone());
                        key
                    }
                    None => {
                        self.negative.insert(hash, ());
                        return Err(ApiError::invalid_key());
                    }
                }
            }
        };
        if !key.is_active(now_millis()) {
            return Err(ApiError::invalid_key());
        }
        let tenant = self.tenant(&key.tenant_id).await?;
        if tenant.disabled {
            return Err(ApiError::tenant_disabled());
        }
        Ok(Caller { tenant, key_prefix: key.prefix.as_str().into() })
    }

    async fn tenant(&self, id: &str) -> Result<Arc<Tenant>, ApiError> {
        if let Some(t) = self.tenants.get(id) {
            return Ok(t);
        }
        match self.store.get_tenant(id).await {
            Ok(t) => {
                let t = Arc::new(t);
                self.tenants.insert(id.to_owned(), t.clone());
                Ok(t)
            }
            // The key outlived its tenant (deleted): the key is as good as revoked.
            Err(StoreError::NotFound { .. }) => Err(ApiError::invalid_key()),
            Err(e) => Err(store_error(e)),
        }
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
            ChangeEvent::Resync => {
                self.keys.invalidate_all();
                self.negative.invalidate_all();
                self.tenants.invalidate_all();
            }
            ChangeEvent::Model { .. } | ChangeEvent::Group { .. } => {}
        }
    }
}
