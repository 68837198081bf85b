//! What the pods of one obleth deployment share beyond the control-plane database.
//!
//! - [`changes`]: every admin change made through one pod reaches every pod's caches
//!   and scheduler within a second, over Redis pub/sub, with a resync when the channel
//!   was down and a periodic reload of what only events carry (group weights).
//! - [`slots`]: one in-flight cap for the cluster, split between the live pods through
//!   an atomic heartbeat on Redis.
//! - [`served`]: the work each tenant was served, summed over the pods, so that every
//!   pod's scheduler orders its queues by the cluster's service, not only its own.
//! - [`shared_cache`]: keys and tenants cached in Redis for every pod, in front of the
//!   control-plane store.

pub mod changes;
pub mod served;
pub mod shared_cache;
pub mod slots;

pub use changes::{ChangeBus, ChangeBusConfig};
pub use served::ServedShareConfig;
pub use shared_cache::{CacheKeys, RedisSharedCache, SharedCacheConfig};
pub use slots::{SlotShare, SlotShareConfig, SlotShareStatus};

/// Errors of the cluster layer.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The Redis URL is unacceptable.
    #[error("invalid cluster.redis_url: {0}")]
    InvalidUrl(String),
    /// Redis did not answer a read.
    #[error("cluster Redis: {0}")]
    Redis(String),
}
