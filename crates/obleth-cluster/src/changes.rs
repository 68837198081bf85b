//! Control-plane changes carried to every pod.
//!
//! The admin API of any pod announces each change to a [`ChangeBus`]: the bus applies
//! it to this pod's caches at once and publishes it on a Redis channel; every other pod
//! applies what it receives. Delivery is best effort, so two safety nets bound how stale
//! a pod can be when a message is lost:
//!
//! - when the subscription (re)connects, the pod may have missed messages: it forgets
//!   its cached keys, tenants and models ([`ChangeEvent::Resync`]) and reloads group
//!   weights;
//! - every `resync_interval` it reloads group weights from the store (keys, tenants and
//!   models already expire from their caches after `keys.cache_ttl`).
//!
//! While Redis is down pods keep serving from their caches; changes made meanwhile reach
//! other pods through those safety nets.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use obleth_core::{ChangeEvent, ChangeNotifier, KeyHash, Tenant};
use obleth_store::ControlPlaneStore;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::ClusterError;
use crate::shared_cache::{CacheKeys, INVALIDATE_AND_PUBLISH};

/// Events waiting to be published; beyond this, events are dropped (and counted): the
/// safety nets cover them.
const PUBLISH_QUEUE: usize = 4096;

#[derive(Debug, Clone)]
pub struct ChangeBusConfig {
    /// `redis://…` (shared by every pod).
    pub redis_url: String,
    pub channel: String,
    /// This pod's name, to ignore its own messages.
    pub pod: String,
    pub resync_interval: Duration,
    /// The shared key cache's names, when pods share one: a key or tenant change deletes
    /// its entry in the same script that publishes it.
    pub cache: Option<CacheKeys>,
}

/// One change as it travels between pods.
#[derive(Debug, Serialize, Deserialize)]
struct Message {
    pod: String,
    event: WireEvent,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    Tenant {
        id: String,
        tenant: Option<Tenant>,
    },
    Group {
        name: String,
        weight: Option<u32>,
        // Absent in messages from pods older than group limits: no limit.
        #[serde(default)]
        reserved_slots: Option<u32>,
        #[serde(default)]
        max_slots: Option<u32>,
    },
    Key {
        hash: String,
    },
    Model {
        name: String,
    },
    McpServer {
        name: String,
    },
    McpGrants,
    McpPin {
        server: String,
        tool: String,
    },
}

impl WireEvent {
    fn from_event(e: &ChangeEvent) -> Option<WireEvent> {
        Some(match e {
            ChangeEvent::Tenant { id, tenant } => {
                WireEvent::Tenant { id: id.clone(), tenant: tenant.as_ref().map(|t| (**t).clone()) }
            }
            ChangeEvent::Group { name, weight, reserved_slots, max_slots } => WireEvent::Group {
                name: name.clone(),
                weight: *weight,
                reserved_slots: *reserved_slots,
                max_slots: *max_slots,
            },
            ChangeEvent::Key { hash } => WireEvent::Key { hash: hash.to_hex() },
            ChangeEvent::Model { name } => WireEvent::Model { name: name.clone() },
            ChangeEvent::McpServer { name } => WireEvent::McpServer { name: name.clone() },
            ChangeEvent::McpGrants => WireEvent::McpGrants,
            ChangeEvent::McpPin { server, tool } => WireEvent::McpPin { server: server.clone(), tool: tool.clone() },
            // Local only: each pod decides when it needs one.
            ChangeEvent::Resync => return None,
        })
    }

    /// The shared cache entry this change makes stale (after the epoch), if any.
    fn cache_suffix(&self) -> String {
        match self {
            WireEvent::Tenant { id, .. } => CacheKeys::suffix(obleth_core::SharedKind::Tenant, id),
            WireEvent::Key { hash } => CacheKeys::suffix(obleth_core::SharedKind::Key, hash),
            WireEvent::Group { .. }
            | WireEvent::Model { .. }
            | WireEvent::McpServer { .. }
            | WireEvent::McpGrants
            | WireEvent::McpPin { .. } => String::new(),
        }
    }

    fn into_event(self) -> Option<ChangeEvent> {
        Some(match self {
            WireEvent::Tenant { id, tenant } => ChangeEvent::Tenant { id, tenant: tenant.map(Arc::new) },
            WireEvent::Group { name, weight, reserved_slots, max_slots } => {
                ChangeEvent::Group { name, weight, reserved_slots, max_slots }
            }
            WireEvent::Key { hash } => ChangeEvent::Key { hash: KeyHash::from_hex(&hash)? },
            WireEvent::Model { name } => ChangeEvent::Model { name },
            WireEvent::McpServer { name } => ChangeEvent::McpServer { name },
            WireEvent::McpGrants => ChangeEvent::McpGrants,
            WireEvent::McpPin { server, tool } => ChangeEvent::McpPin { server, tool },
        })
    }
}

/// The pod's [`ChangeNotifier`]: applies changes here and publishes them to the others.
pub struct ChangeBus {
    local: Arc<dyn ChangeNotifier>,
    tx: mpsc::Sender<ChangeEvent>,
}

impl ChangeBus {
    /// Starts publishing and subscribing (on the current tokio runtime). `local` is what
    /// this pod's changes must reach (its caches and scheduler); `store` is read to
    /// reload group weights.
    pub fn start(
        config: ChangeBusConfig,
        local: Arc<dyn ChangeNotifier>,
        store: Arc<dyn ControlPlaneStore>,
    ) -> Result<Arc<ChangeBus>, ClusterError> {
        let client =
            obleth_redis::client(config.redis_url.as_str()).map_err(|e| ClusterError::InvalidUrl(e.to_string()))?;
        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
        let config = Arc::new(config);
        tokio::spawn(publish_loop(client.clone(), config.clone(), local.clone(), rx));
        tokio::spawn(subscribe_loop(client, config.clone(), local.clone(), store.clone()));
        tokio::spawn(periodic_resync(config, local.clone(), store));
        Ok(Arc::new(ChangeBus { local, tx }))
    }
}

impl ChangeNotifier for ChangeBus {
    fn notify(&self, event: ChangeEvent) {
        self.local.notify(event.clone());
        if self.tx.try_send(event).is_err() {
            metrics::counter!("obleth_cluster_changes_dropped_total").increment(1);
        }
    }
}

async fn publish_loop(
    client: redis::Client,
    config: Arc<ChangeBusConfig>,
    local: Arc<dyn ChangeNotifier>,
    mut rx: mpsc::Receiver<ChangeEvent>,
) {
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    let script = redis::Script::new(INVALIDATE_AND_PUBLISH);
    // A change was not published (so its shared cache entry may not have been deleted):
    // the whole shared cache is dropped once Redis answers again.
    let mut missed = false;
    while let Some(event) = rx.recv().await {
        let Some(wire) = WireEvent::from_event(&event) else { continue };
        let suffix = wire.cache_suffix();
        let payload = match serde_json::to_string(&Message { pod: config.pod.clone(), event: wire }) {
            Ok(p) => p,
            Err(_) => continue,
        };
        // One retry on a fresh connection; after that the safety nets carry the change.
        for _ in 0..2 {
            if conn.is_none() {
                conn = tokio::time::timeout(Duration::from_secs(1), client.get_multiplexed_async_connection())
                    .await
                    .ok()
                    .and_then(Result::ok);
            }
            let Some(c) = conn.as_mut() else { continue };
            let publish = async {
                match &config.cache {
                    Some(keys) => {
                        if missed {
                            bump_epoch(c, keys).await?;
                            missed = false;
                        }
                        script
                            .key(keys.gen_key())
                            .key(keys.epoch_key())
                            .arg(&keys.prefix)
                            .arg(&suffix)
                            .arg(&config.channel)
                            .arg(&payload)
                            .invoke_async::<()>(c)
                            .await
                    }
                    None => redis::cmd("PUBLISH").arg(&config.channel).arg(&payload).query_async::<()>(c).await,
                }
            };
            match tokio::time::timeout(Duration::from_secs(1), publish).await {
                Ok(Ok(())) => {
                    metrics::counter!("obleth_cluster_changes_published_total").increment(1);
                    break;
                }
                _ => conn = None,
            }
        }
        // Applied here a second time, now that the shared cache entry is gone: a request
        // of this pod may have read the old entry back from Redis in between.
        if config.cache.is_some() && !suffix.is_empty() {
            local.notify(event);
        }
        if conn.is_none() {
            missed = true;
            tracing::warn!(
                "cannot publish a control-plane change to the other pods (Redis unreachable); they pick it up when their caches expire"
            );
            metrics::counter!("obleth_cluster_changes_dropped_total").increment(1);
        }
    }
}

async fn subscribe_loop(
    client: redis::Client,
    config: Arc<ChangeBusConfig>,
    local: Arc<dyn ChangeNotifier>,
    store: Arc<dyn ControlPlaneStore>,
) {
    let mut backoff = Duration::from_millis(200);
    let mut first = true;
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&config.channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let mut pubsub = match tokio::time::timeout(Duration::from_secs(2), subscribed).await {
            Ok(Ok(p)) => p,
            _ => {
                if first {
                    tracing::warn!("cannot subscribe to control-plane changes (Redis unreachable); retrying");
                    first = false;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        if !first {
            // Changes made while we were not listening were missed.
            tracing::info!("control-plane change channel reconnected; resynchronizing caches");
            if let Some(keys) = &config.cache {
                let bumped = async {
                    let mut c = client.get_multiplexed_async_connection().await?;
                    bump_epoch(&mut c, keys).await
                };
                if !matches!(tokio::time::timeout(Duration::from_secs(2), bumped).await, Ok(Ok(()))) {
                    tracing::warn!("cannot drop the shared key cache after a reconnect; its entries expire by TTL");
                }
            }
            resync(local.as_ref(), store.as_ref()).await;
        }
        first = false;
        let mut messages = pubsub.on_message();
        while let Some(msg) = messages.next().await {
            let Ok(payload) = msg.get_payload::<String>() else { continue };
            let Ok(message) = serde_json::from_str::<Message>(&payload) else {
                tracing::warn!("ignoring an unreadable control-plane change message");
                continue;
            };
            if message.pod == config.pod {
                continue;
            }
            if let Some(event) = message.event.into_event() {
                metrics::counter!("obleth_cluster_changes_received_total").increment(1);
                local.notify(event);
            }
        }
        tracing::warn!("control-plane change channel lost; reconnecting");
    }
}

/// Drops every shared cache entry (they live under the epoch).
async fn bump_epoch(c: &mut redis::aio::MultiplexedConnection, keys: &CacheKeys) -> redis::RedisResult<()> {
    redis::cmd("INCR").arg(keys.epoch_key()).query_async::<()>(c).await
}

async fn periodic_resync(
    config: Arc<ChangeBusConfig>,
    local: Arc<dyn ChangeNotifier>,
    store: Arc<dyn ControlPlaneStore>,
) {
    let mut tick = tokio::time::interval(config.resync_interval);
    tick.tick().await;
    loop {
        tick.tick().await;
        reload_groups(local.as_ref(), store.as_ref()).await;
    }
}

/// Forgets cached keys, tenants and models, and reloads group weights.
async fn resync(local: &dyn ChangeNotifier, store: &dyn ControlPlaneStore) {
    local.notify(ChangeEvent::Resync);
    reload_groups(local, store).await;
}

async fn reload_groups(local: &dyn ChangeNotifier, store: &dyn ControlPlaneStore) {
    match store.list_groups().await {
        Ok(groups) => {
            for g in groups {
                local.notify(ChangeEvent::Group {
                    name: g.name,
                    weight: Some(g.weight),
                    reserved_slots: g.reserved_slots,
                    max_slots: g.max_slots,
                });
            }
        }
        Err(e) => tracing::debug!(error = %e, "cannot reload group weights from the store"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_survive_the_wire() {
        let hash = KeyHash::of("obl_secret");
        let events = vec![
            ChangeEvent::Key { hash },
            ChangeEvent::Model { name: "m".into() },
            ChangeEvent::Group { name: "g".into(), weight: Some(4), reserved_slots: Some(2), max_slots: Some(3) },
            ChangeEvent::Group { name: "g".into(), weight: None, reserved_slots: None, max_slots: None },
            ChangeEvent::Tenant { id: "ten_1".into(), tenant: None },
            ChangeEvent::McpServer { name: "fs".into() },
            ChangeEvent::McpGrants,
            ChangeEvent::McpPin { server: "fs".into(), tool: "read/v2 ünï".into() },
        ];
        for e in events {
            let wire = WireEvent::from_event(&e).expect("carried");
            let text = serde_json::to_string(&Message { pod: "a".into(), event: wire }).expect("json");
            assert!(!text.contains("obl_secret"), "a key travels as its hash only");
            let back: Message = serde_json::from_str(&text).expect("parse");
            assert_eq!(back.event.into_event(), Some(e));
        }
        assert!(WireEvent::from_event(&ChangeEvent::Resync).is_none());
    }
}
