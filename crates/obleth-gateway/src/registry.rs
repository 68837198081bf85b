//! The model registry as the data plane sees it: a cache of model entries by name,
//! including "known absent" entries, invalidated by admin changes and bounded by a TTL.
//! As for keys, the last known entry is kept for `stale_ttl` and served while the store
//! is down, so that models in use keep working through a store outage.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use obleth_core::{ChangeEvent, ChangeNotifier, Model};
use obleth_store::{StoreError, StoreGuard};

use crate::error::ApiError;

/// Looks models up by public name.
pub struct Registry {
    store: Arc<StoreGuard>,
    models: Cache<String, Option<Arc<Model>>>,
    stale: Cache<String, Option<Arc<Model>>>,
}

impl Registry {
    pub fn new(store: Arc<StoreGuard>, ttl: Duration, stale_ttl: Duration) -> Self {
        Registry {
            store,
            models: Cache::builder().max_capacity(10_000).time_to_live(ttl).build(),
            stale: Cache::builder().max_capacity(10_000).time_to_live(stale_ttl).build(),
        }
    }

    /// The enabled model called `name`, or the client-facing error.
    pub async fn get(&self, name: &str) -> Result<Arc<Model>, ApiError> {
        let entry = match self.models.get(name) {
            Some(entry) => entry,
            None => {
                let owned = name.to_owned();
                let entry = match self.store.call(|s| async move { s.get_model(&owned).await }).await {
                    Ok(m) => Some(Arc::new(m)),
                    Err(StoreError::NotFound { .. }) => None,
                    // Not put back in the caches: the last known entry must not outlive
                    // its `stale_ttl` by being refreshed from itself.
                    Err(e) => match self.stale.get(name) {
                        Some(entry) => {
                            return entry.filter(|m| m.enabled).ok_or_else(|| ApiError::model_not_found(name));
                        }
                        None => {
                            tracing::warn!(error = %e, "control-plane store failed during model lookup");
                            return Err(ApiError::store_unavailable());
                        }
                    },
                };
                self.models.insert(name.to_owned(), entry.clone());
                self.stale.insert(name.to_owned(), entry.clone());
                entry
            }
        };
        match entry {
            Some(m) if m.enabled => Ok(m),
            _ => Err(ApiError::model_not_found(name)),
        }
    }

    /// Every enabled model (for `GET /v1/models`; not on the hot path).
    pub async fn list_enabled(&self) -> Result<Vec<Model>, ApiError> {
        match self.store.call(|s| async move { s.list_models().await }).await {
            Ok(models) => Ok(models.into_iter().filter(|m| m.enabled).collect()),
            Err(e) => {
                tracing::warn!(error = %e, "control-plane store failed listing models");
                Err(ApiError::store_unavailable())
            }
        }
    }
}

impl ChangeNotifier for Registry {
    fn notify(&self, event: ChangeEvent) {
        match event {
            ChangeEvent::Model { name } => {
                self.models.invalidate(&name);
                self.stale.invalidate(&name);
            }
            // Keep the last known entries: the store may be what is down.
            ChangeEvent::Resync => self.models.invalidate_all(),
            _ => {}
        }
    }
}
