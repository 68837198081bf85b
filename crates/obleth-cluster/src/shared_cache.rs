//! Keys and tenants cached in Redis for every pod, between each pod's own caches and
//! the control-plane store.
//!
//! A key used on one pod is read from the store once for the cluster, not once per pod,
//! and a pod that never saw a key can still serve it while the store is down.
//!
//! Layout, under `prefix` (`{cluster.channel}:idc:`):
//! - `gen`: bumped by every key or tenant change, in the same script that deletes the
//!   entry and publishes the change ([`crate::ChangeBus`]): an entry is gone before any
//!   pod hears of the change;
//! - `epoch`: bumped when changes may have been missed (a pod's subscription came back,
//!   or a publish failed); entries live under the epoch, so bumping it drops them all;
//! - `{epoch}:k:{key hash hex}` and `{epoch}:t:{tenant id}`: the JSON of the entry, or
//!   the empty string for "known absent", with a TTL.
//!
//! A miss hands out a ticket (`epoch:gen`); the fill after the store read is stored only
//! if the ticket is still current, so a read that raced a change never writes the old
//! answer back.
//!
//! Every call is bounded by `timeout`; after a failure the cache is skipped for a second
//! (lookups go straight to the store), so a Redis outage adds at most one timeout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use obleth_core::{Shared, SharedCache, SharedKind};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::ClusterError;

/// How long the cache is skipped after a failed call.
const COOLDOWN: Duration = Duration::from_secs(1);

const GET: &str = r"
local epoch = redis.call('GET', KEYS[2]) or '0'
local v = redis.call('GET', ARGV[1] .. epoch .. ':' .. ARGV[2])
if v then return {1, v} end
return {0, epoch .. ':' .. (redis.call('GET', KEYS[1]) or '0')}
";

const FILL: &str = r"
local epoch = redis.call('GET', KEYS[2]) or '0'
if epoch .. ':' .. (redis.call('GET', KEYS[1]) or '0') ~= ARGV[3] then return 0 end
redis.call('SET', ARGV[1] .. epoch .. ':' .. ARGV[2], ARGV[4], 'PX', ARGV[5])
return 1
";

/// Deletes one entry (ARGV[2], if not empty), bumps `gen` and publishes ARGV[4] on
/// channel ARGV[3], atomically.
pub(crate) const INVALIDATE_AND_PUBLISH: &str = r"
redis.call('INCR', KEYS[1])
if ARGV[2] ~= '' then
  local epoch = redis.call('GET', KEYS[2]) or '0'
  redis.call('DEL', ARGV[1] .. epoch .. ':' .. ARGV[2])
end
return redis.call('PUBLISH', ARGV[3], ARGV[4])
";

/// Names of the cache's Redis keys.
#[derive(Debug, Clone)]
pub struct CacheKeys {
    pub prefix: String,
}

impl CacheKeys {
    pub fn new(prefix: impl Into<String>) -> CacheKeys {
        CacheKeys { prefix: prefix.into() }
    }
    pub(crate) fn gen_key(&self) -> String {
        format!("{}gen", self.prefix)
    }
    pub(crate) fn epoch_key(&self) -> String {
        format!("{}epoch", self.prefix)
    }
    /// The entry's name after the epoch.
    pub(crate) fn suffix(kind: SharedKind, id: &str) -> String {
        match kind {
            SharedKind::Key => format!("k:{id}"),
            SharedKind::Tenant => format!("t:{id}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SharedCacheConfig {
    pub redis_url: String,
    pub keys: CacheKeys,
    /// Lifetime of an entry.
    pub ttl: Duration,
    /// Lifetime of a "known absent" entry.
    pub negative_ttl: Duration,
    /// Bound on each call.
    pub timeout: Duration,
}

/// The Redis-backed [`SharedCache`].
pub struct RedisSharedCache {
    conn: ConnectionManager,
    config: SharedCacheConfig,
    get: redis::Script,
    fill: redis::Script,
    started: Instant,
    /// Skip the cache until this many ms after `started`.
    down_until: AtomicU64,
}

impl RedisSharedCache {
    pub fn new(config: SharedCacheConfig) -> Result<RedisSharedCache, ClusterError> {
        let client =
            obleth_redis::client(config.redis_url.as_str()).map_err(|e| ClusterError::InvalidUrl(e.to_string()))?;
        let manager = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(config.timeout.max(Duration::from_millis(200))))
            .set_response_timeout(None);
        let conn = ConnectionManager::new_lazy_with_config(client, manager)
            .map_err(|e| ClusterError::InvalidUrl(e.to_string()))?;
        Ok(RedisSharedCache {
            conn,
            config,
            get: redis::Script::new(GET),
            fill: redis::Script::new(FILL),
            started: Instant::now(),
            down_until: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn usable(&self) -> bool {
        self.now_ms() >= self.down_until.load(Ordering::Relaxed)
    }

    fn failed(&self, what: &str, error: &str) {
        let until = self.now_ms() + COOLDOWN.as_millis() as u64;
        if self.down_until.swap(until, Ordering::Relaxed) <= self.now_ms() {
            tracing::warn!(error, "shared key cache unreachable ({what}); reading the store directly for a while");
        }
        metrics::counter!("obleth_shared_cache_errors_total").increment(1);
    }

    async fn run<T: redis::FromRedisValue>(&self, what: &str, inv: redis::ScriptInvocation<'_>) -> Option<T> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.config.timeout, inv.invoke_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.failed(what, &e.to_string());
                None
            }
            Err(_) => {
                self.failed(what, "timed out");
                None
            }
        }
    }
}

#[async_trait]
impl SharedCache for RedisSharedCache {
    async fn get(&self, kind: SharedKind, id: &str) -> Shared {
        if !self.usable() {
            return Shared::Unavailable;
        }
        let k = &self.config.keys;
        let mut inv = self.get.prepare_invoke();
        inv.key(k.gen_key()).key(k.epoch_key()).arg(&k.prefix).arg(CacheKeys::suffix(kind, id));
        let Some((found, value)) = self.run::<(i64, String)>("get", inv).await else {
            return Shared::Unavailable;
        };
        match (found, value) {
            (1, v) if v.is_empty() => Shared::Absent,
            (1, v) => Shared::Hit(v),
            (_, ticket) => Shared::Miss { ticket },
        }
    }

    async fn fill(&self, kind: SharedKind, id: &str, ticket: &str, value: Option<&str>) {
        if !self.usable() {
            return;
        }
        let ttl = if value.is_some() { self.config.ttl } else { self.config.negative_ttl };
        let k = &self.config.keys;
        let mut inv = self.fill.prepare_invoke();
        inv.key(k.gen_key())
            .key(k.epoch_key())
            .arg(&k.prefix)
            .arg(CacheKeys::suffix(kind, id))
            .arg(ticket)
            .arg(value.unwrap_or(""))
            .arg(ttl.as_millis().max(1) as u64);
        if let Some(stored) = self.run::<i64>("fill", inv).await {
            let outcome = if stored == 1 { "stored" } else { "raced_a_change" };
            metrics::counter!("obleth_shared_cache_fills_total", "outcome" => outcome).increment(1);
        }
    }
}
