//! One slot cap for the whole cluster: `admission.max_in_flight` is split between the
//! live pods, so that N pods never hold N times the cap.
//!
//! # How
//!
//! Every pod runs a heartbeat (every `heartbeat`, 500 ms by default): one Lua script on
//! Redis that, atomically,
//!
//! 1. drops pods whose last heartbeat is older than `ttl` (3 s): a dead pod's slots come
//!    back to the others within `ttl` plus one heartbeat;
//! 2. sums the *claims* of the other live pods — a pod's claim is the most slots it may
//!    hold until its next heartbeat;
//! 3. computes this pod's slots: its even share of the cap (`cap / live pods`, the
//!    remainder going to the first pods by name), but never more than what the others'
//!    claims leave free;
//! 4. records this pod's claim: the larger of its new slots, the slots it holds now, and
//!    the slots it enforced until now (a pod that shrinks keeps claiming its old size
//!    until the next heartbeat, when the smaller pool is in force).
//!
//! Because the decision and the claim are made in one script, two pods never hand
//! themselves the same free slots, so the sum of the pools never exceeds the cap
//! (requests already running when a pool shrinks finish; the pod's claim covers them).
//! A new pod starts with no slots and grows as the others shrink and drain.
//!
//! # When Redis is unreachable
//!
//! A pod keeps the pool it had (pods keep serving). If Redis is down for everyone, no
//! pod grows, so the cap holds. If one pod alone is cut off, the others take over its
//! share after `ttl` while it keeps serving its own: the cluster may then exceed the cap
//! by that pod's share until the partition heals (counted in
//! `obleth_cluster_heartbeat_failures_total`). A pod that never reached Redis since it
//! started uses `fallback_slots`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use obleth_core::SlotPool;
use serde::Serialize;

use crate::ClusterError;

const SCRIPT: &str = r#"
local key, pod = KEYS[1], ARGV[1]
local cap, in_flight, current, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', key)
local names, others = { pod }, 0
for i = 1, #all, 2 do
  local name = all[i]
  if name ~= pod then
    local ts, claim = string.match(all[i + 1], '^(%d+):(%d+)$')
    ts, claim = tonumber(ts), tonumber(claim)
    if ts == nil or ts < now - ttl then
      redis.call('HDEL', key, name)
    else
      others = others + claim
      names[#names + 1] = name
    end
  end
end
table.sort(names)
local n, rank = #names, 0
for i, name in ipairs(names) do
  if name == pod then rank = i - 1 end
end
local share = math.floor(cap / n)
if rank < cap % n then share = share + 1 end
local free = cap - others
if free < 0 then free = 0 end
local slots = math.min(share, free)
local claim = math.max(slots, in_flight, current)
redis.call('HSET', key, pod, now .. ':' .. claim)
redis.call('PEXPIRE', key, ttl * 20)
return { slots, n, others }
"#;

#[derive(Debug, Clone)]
pub struct SlotShareConfig {
    pub redis_url: String,
    /// The Redis hash holding every pod's claim.
    pub key: String,
    pub pod: String,
    /// The cluster-wide cap (`admission.max_in_flight`).
    pub cluster_slots: u32,
    pub heartbeat: Duration,
    pub ttl: Duration,
    /// Slots used by a pod that has not reached Redis since it started.
    pub fallback_slots: u32,
}

/// What a pod knows about its share, for the admin API and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct SlotShareStatus {
    pub cluster_slots: u32,
    pub slots: u32,
    pub pods: u32,
    /// Slots the other pods may hold.
    pub others_claim: u32,
    /// Whether the last heartbeat reached Redis.
    pub connected: bool,
}

/// This pod's share of the cluster's slots, kept up to date by its heartbeat.
pub struct SlotShare {
    config: SlotShareConfig,
    slots: AtomicU32,
    pods: AtomicU32,
    others: AtomicU32,
    connected: AtomicBool,
    beats: AtomicU64,
    heartbeat: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
    client: redis::Client,
}

impl SlotShare {
    /// Joins the cluster: the pool starts empty and takes its share from the first
    /// heartbeat (made before this returns, bounded by a second or two).
    pub async fn start(config: SlotShareConfig, scheduler: Arc<dyn SlotPool>) -> Result<Arc<SlotShare>, ClusterError> {
        let client =
            obleth_redis::client(config.redis_url.as_str()).map_err(|e| ClusterError::InvalidUrl(e.to_string()))?;
        // At 0 from the start, so that alerts and `increase()` see the first failure.
        metrics::counter!("obleth_cluster_heartbeat_failures_total").increment(0);
        let share = Arc::new(SlotShare {
            config,
            slots: AtomicU32::new(0),
            pods: AtomicU32::new(0),
            others: AtomicU32::new(0),
            connected: AtomicBool::new(false),
            beats: AtomicU64::new(0),
            heartbeat: std::sync::Mutex::new(None),
            client: client.clone(),
        });
        scheduler.set_slots(0);
        let script = redis::Script::new(SCRIPT);
        let mut conn = None;
        if !share.beat(&client, &mut conn, &script, &*scheduler).await {
            let fallback = share.config.fallback_slots.min(share.config.cluster_slots);
            tracing::warn!(
                slots = fallback,
                "cannot reach Redis to share the cluster's slots; using the fallback pool"
            );
            share.slots.store(fallback, Ordering::Relaxed);
            scheduler.set_slots(fallback);
        }
        let task = tokio::spawn({
            let share = share.clone();
            async move {
                let mut tick = tokio::time::interval(share.config.heartbeat);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    share.beat(&client, &mut conn, &script, &*scheduler).await;
                }
            }
        });
        *share.heartbeat.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
        Ok(share)
    }

    /// Stops the heartbeat, as if the pod died: the others take its share back after `ttl`.
    pub fn stop_heartbeat(&self) {
        if let Some(task) = self.heartbeat.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }

    /// Leaves the cluster at shutdown (after the data plane drained): the others take the
    /// share back at their next heartbeat instead of after `ttl`.
    pub async fn leave(&self) {
        self.stop_heartbeat();
        let removed = async {
            let mut conn = self.client.get_multiplexed_async_connection().await?;
            redis::cmd("HDEL").arg(&self.config.key).arg(&self.config.pod).query_async::<()>(&mut conn).await
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), removed).await;
    }

    pub fn status(&self) -> SlotShareStatus {
        SlotShareStatus {
            cluster_slots: self.config.cluster_slots,
            slots: self.slots.load(Ordering::Relaxed),
            pods: self.pods.load(Ordering::Relaxed),
            others_claim: self.others.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Relaxed),
        }
    }

    /// Every live pod's claim, from the hash the heartbeats write (stale entries, which
    /// the next heartbeat drops, are left out here too).
    pub async fn claims(&self) -> Result<Vec<obleth_core::PodSlots>, ClusterError> {
        let read = async {
            let mut conn = self.client.get_multiplexed_async_connection().await?;
            let (all, time): (Vec<(String, String)>, (u64, u64)) =
                redis::pipe().cmd("HGETALL").arg(&self.config.key).cmd("TIME").query_async(&mut conn).await?;
            Ok::<_, redis::RedisError>((all, time.0 * 1000 + time.1 / 1000))
        };
        let (all, now) = tokio::time::timeout(Duration::from_secs(1), read)
            .await
            .map_err(|_| ClusterError::Redis("timed out reading the slot claims".into()))?
            .map_err(|e| ClusterError::Redis(e.to_string()))?;
        let ttl = self.config.ttl.as_millis() as u64;
        let mut pods: Vec<obleth_core::PodSlots> = all
            .into_iter()
            .filter_map(|(pod, value)| {
                let (ts, claim) = value.split_once(':')?;
                let (ts, slots) = (ts.parse::<u64>().ok()?, claim.parse::<u32>().ok()?);
                (ts + ttl >= now).then_some(obleth_core::PodSlots { pod, slots })
            })
            .collect();
        pods.sort_by(|a, b| a.pod.cmp(&b.pod));
        Ok(pods)
    }

    /// One heartbeat; returns whether it reached Redis.
    async fn beat(
        &self,
        client: &redis::Client,
        conn: &mut Option<redis::aio::MultiplexedConnection>,
        script: &redis::Script,
        scheduler: &dyn SlotPool,
    ) -> bool {
        let limit = self.config.heartbeat.max(Duration::from_millis(500));
        if conn.is_none() {
            *conn =
                tokio::time::timeout(limit, client.get_multiplexed_async_connection()).await.ok().and_then(Result::ok);
        }
        let Some(c) = conn.as_mut() else { return self.failed() };
        let current = self.slots.load(Ordering::Relaxed);
        let mut invocation = script.key(&self.config.key);
        invocation
            .arg(&self.config.pod)
            .arg(self.config.cluster_slots)
            .arg(scheduler.in_flight())
            .arg(current)
            .arg(self.config.ttl.as_millis() as u64);
        let answer: Result<Result<(u32, u32, u32), redis::RedisError>, _> =
            tokio::time::timeout(limit, invocation.invoke_async(c)).await;
        let Ok(Ok((slots, pods, others))) = answer else {
            *conn = None;
            return self.failed();
        };
        if !self.connected.swap(true, Ordering::Relaxed) && self.beats.load(Ordering::Relaxed) > 0 {
            tracing::info!("reached Redis again; sharing the cluster's slots");
        }
        self.beats.fetch_add(1, Ordering::Relaxed);
        let before = self.pods.swap(pods, Ordering::Relaxed);
        if before != pods {
            tracing::info!(pods, slots, cluster_slots = self.config.cluster_slots, "cluster membership changed");
        }
        self.others.store(others, Ordering::Relaxed);
        if slots != current {
            self.slots.store(slots, Ordering::Relaxed);
            scheduler.set_slots(slots);
        }
        metrics::gauge!("obleth_cluster_pods").set(f64::from(pods));
        metrics::gauge!("obleth_cluster_pod_slots").set(f64::from(slots));
        true
    }

    fn failed(&self) -> bool {
        if self.connected.swap(false, Ordering::Relaxed) {
            tracing::warn!("cannot reach Redis to share the cluster's slots; keeping this pod's pool as it is");
        }
        metrics::counter!("obleth_cluster_heartbeat_failures_total").increment(1);
        false
    }
}

#[async_trait::async_trait]
impl obleth_core::ClusterView for SlotShare {
    fn status(&self) -> obleth_core::ClusterStatus {
        let s = SlotShare::status(self);
        obleth_core::ClusterStatus {
            pod: self.config.pod.clone(),
            cluster_slots: s.cluster_slots,
            slots: s.slots,
            pods: s.pods,
            connected: s.connected,
        }
    }

    async fn pods(&self) -> Result<Vec<obleth_core::PodSlots>, String> {
        self.claims().await.map_err(|e| e.to_string())
    }
}
