//! Served work shared between the pods, so that fairness holds across the cluster.
//!
//! Each pod's scheduler orders its queues by virtual token counters: the work each
//! tenant was served, divided by its weight. Alone, a pod sees only what it served
//! itself, so a tenant whose traffic lands on two pods would be charged half of what it
//! got and be ahead in both queues. Every `interval` each pod therefore adds the work it
//! completed since the last round to a Redis hash of cluster totals (one entry per
//! tenant) and reads back the totals of the tenants active on it, in one script; what
//! the others served since the last round (the growth of the total minus its own part)
//! is charged to those tenants' counters here, as if served here.
//!
//! Only tenants active on the pod are read (a tenant that becomes active is lifted to
//! the lowest active counter anyway, so what it got while idle here does not matter), so
//! a round is O(active tenants). While Redis is unreachable the pods fall back to their
//! own counters: the local approximation, which is exact when the balancer spreads every
//! tenant evenly (docs/cluster.md measures both).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use obleth_core::ServedWork;

use crate::ClusterError;

/// Adds this pod's deltas (ARGV[2..2+2n]: name, cost), then returns the totals of the
/// names after them. ARGV[1] = n; KEYS[1] = the hash. The hash outlives idle periods by
/// a day.
const SCRIPT: &str = r"
local n = tonumber(ARGV[1])
for i = 0, n - 1 do
  redis.call('HINCRBYFLOAT', KEYS[1], ARGV[2 + 2 * i], ARGV[3 + 2 * i])
end
local names = {}
for i = 2 + 2 * n, #ARGV do names[#names + 1] = ARGV[i] end
redis.call('PEXPIRE', KEYS[1], 86400000)
if #names == 0 then return {} end
return redis.call('HMGET', KEYS[1], unpack(names))
";

#[derive(Debug, Clone)]
pub struct ServedShareConfig {
    pub redis_url: String,
    /// The Redis hash of cluster totals.
    pub key: String,
    pub interval: Duration,
}

/// Starts the exchange on the current tokio runtime; it runs until the runtime stops.
pub fn start(config: ServedShareConfig, scheduler: Arc<dyn ServedWork>) -> Result<(), ClusterError> {
    let client =
        obleth_redis::client(config.redis_url.as_str()).map_err(|e| ClusterError::InvalidUrl(e.to_string()))?;
    tokio::spawn(run(client, config, scheduler));
    Ok(())
}

async fn run(client: redis::Client, config: ServedShareConfig, scheduler: Arc<dyn ServedWork>) {
    let script = redis::Script::new(SCRIPT);
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    // The total of each active tenant after the last round.
    let mut last: HashMap<Arc<str>, f64> = HashMap::new();
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = false;
    loop {
        tick.tick().await;
        let own = scheduler.take_served();
        let active = scheduler.active_tenants();
        if own.is_empty() && active.is_empty() {
            continue;
        }
        if conn.is_none() {
            conn = tokio::time::timeout(Duration::from_secs(1), client.get_multiplexed_async_connection())
                .await
                .ok()
                .and_then(Result::ok);
        }
        let Some(c) = conn.as_mut() else {
            // What this pod served in the meantime is not counted by the others; their
            // counters fall back to their own service, as a lone pod's would.
            last.clear();
            if !warned {
                tracing::warn!(
                    "cannot share served work with the other pods (Redis unreachable); fairness is per pod until it is back"
                );
                warned = true;
            }
            continue;
        };
        let mut inv = script.key(&config.key);
        inv.arg(own.len());
        for (name, cost) in &own {
            inv.arg(name.as_ref()).arg(*cost);
        }
        for name in &active {
            inv.arg(name.as_ref());
        }
        let totals = match tokio::time::timeout(Duration::from_secs(1), inv.invoke_async::<Vec<Option<f64>>>(c)).await {
            Ok(Ok(t)) => t,
            _ => {
                conn = None;
                last.clear();
                metrics::counter!("obleth_cluster_served_sync_failures_total").increment(1);
                continue;
            }
        };
        if warned {
            tracing::info!("sharing served work with the other pods again");
            warned = false;
        }
        let own: HashMap<&Arc<str>, f64> = own.iter().map(|(n, c)| (n, *c)).collect();
        let mut charges = Vec::new();
        let mut next = HashMap::with_capacity(active.len());
        for (name, total) in active.iter().zip(totals) {
            let total = total.unwrap_or(0.0);
            if let Some(before) = last.get(name) {
                let remote = total - before - own.get(name).copied().unwrap_or(0.0);
                // Float sums drift by ulps; only real work is charged.
                if remote > 1e-6 {
                    charges.push((name.clone(), remote));
                }
            }
            next.insert(name.clone(), total);
        }
        last = next;
        if !charges.is_empty() {
            let total: f64 = charges.iter().map(|(_, c)| c).sum();
            metrics::counter!("obleth_cluster_served_remote_cost_total").increment(total as u64);
            scheduler.charge_remote(&charges);
        }
    }
}
