//! The Redis budget store: every pod reads and writes the same counters.
//!
//! # Key layout
//! Every key of a tenant starts with `{prefix}{{tenant}}:` (prefix `obleth:` by default),
//! so that a tenant's keys share one Redis Cluster hash tag, hence one slot, and one
//! script can touch them all atomically:
//!
//! | key | type | what | expires |
//! | --- | --- | --- | --- |
//! | `…:tpm`, `…:rpm` | hash `level`, `at` | token buckets (a missing bucket is full) | a minute after it is full again |
//! | `…:inflight` | sorted set | reservations holding a slot: member request id, score deadline (ms) | never (empty once all are reconciled or expired) |
//! | `…:m:YYYY-MM` | integer | spend of that UTC month, nanos | 400 days after its last write |
//! | `…:life` | integer | lifetime spend, nanos | never |
//! | `…:expired` | integer | reservations that expired without a reconcile | never |
//! | `…:r:{request id}` | hash `tokens`, `cost`, `month`, `deadline`, `expired` | one reservation | `reservation_ttl` + 1 h |
//! | `…:b:{batch id}` | string | an absorbed batch | 24 h |
//!
//! Each script gets the keys it touches in `KEYS`, except those that depend on a value
//! read in the script: the month key (its month comes from the script's clock, or from
//! the record being reconciled) and the records of expiring reservations. Those are
//! built in Lua from prefixes passed in `ARGV`; they carry the same hash tag, so they
//! are in the script's slot.
//!
//! # One round trip, one clock
//! A reserve, a reconcile, an absorb and a usage read are one `EVALSHA` each (a Lua
//! script, loaded again by itself after a Redis restart). The scripts mirror the
//! in-process store (`memory.rs`), line for line where they can, and are atomic as every
//! Redis script is. Their clock is Redis's `TIME`, so that all pods share one clock
//! (bucket refills and months do not depend on a pod's clock skew); a store built
//! [`with_clock`](RedisBudget::with_clock) passes its clock's time instead (tests).
//!
//! # Idempotency
//! A reserve whose request id has a record is granted again without counting again. A
//! reconcile deletes the record; a reconcile without a record does nothing. An absorb
//! sets its batch's marker and does nothing if it was set. A reserve or reconcile that
//! timed out may still have been applied: retry it with the same id.
//!
//! # Numbers
//! Money is integer nanos, added with `INCRBY` (saturating at the `i64` limits). Lua
//! numbers are doubles, so the comparisons and the reconcile's difference are exact up
//! to 2⁵³ nanos (about 9 million units of the currency); bucket levels are doubles in
//! Rust too, and are stored with 17 significant digits so that they round-trip.
//!
//! # Failure
//! Every call is bounded by `timeout`. A timeout, a refused or dropped connection, or a
//! server that cannot serve (loading, read-only replica, busy script, out of memory) is
//! [`BudgetError::Unavailable`]; anything else is [`BudgetError::Backend`]. This store
//! never retries or decides on its own: the failover layer above it does. The connection
//! reconnects by itself; if calls keep timing out without an error (a silent network)
//! the connection is rebuilt. Errors and logs show the URL without its credentials.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use obleth_core::UnixMillis;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, Script, ScriptInvocation, Value};

use crate::bucket::Bucket;
use crate::memory::IN_FLIGHT_RETRY_MS;
use crate::{
    Actual, BudgetError, BudgetStore, Clock, Decision, Denial, LimitKind, Limits, Nanos, RateStatus, Reservation,
    Reserve, TenantUsage, Window, calendar, from_nanos,
};

/// How long an expired reservation's record outlives its deadline, so that a late
/// reconcile still charges the request's actual use (as in the in-process store).
const RECORD_GRACE: Duration = Duration::from_secs(3_600);
/// How long a month's spend is kept after its last write.
const MONTH_TTL_SECS: u64 = 400 * 86_400;
/// How long an absorbed batch is remembered.
const ABSORBED_TTL_SECS: u64 = 86_400;
/// Bound on [`RedisBudget::connect`]'s first contact, and on each connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Consecutive timeouts (with no error) after which the connection is rebuilt.
const REBUILD_AFTER_TIMEOUTS: u32 = 2;
/// At most one rebuild per this long.
const REBUILD_EVERY: Duration = Duration::from_secs(1);

static RESERVE: LazyLock<Script> =
    LazyLock::new(|| Script::new(concat!(include_str!("redis/common.lua"), include_str!("redis/reserve.lua"))));
static RECONCILE: LazyLock<Script> =
    LazyLock::new(|| Script::new(concat!(include_str!("redis/common.lua"), include_str!("redis/reconcile.lua"))));
static ABSORB: LazyLock<Script> =
    LazyLock::new(|| Script::new(concat!(include_str!("redis/common.lua"), include_str!("redis/absorb.lua"))));
static USAGE: LazyLock<Script> =
    LazyLock::new(|| Script::new(concat!(include_str!("redis/common.lua"), include_str!("redis/usage.lua"))));

/// Where the shared counters live and how long a call may take.
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`. May hold a password: it is never
    /// printed (see [`RedisConfig::redacted_url`]).
    pub url: String,
    /// Start of every key (default `obleth:`); several deployments can share a database
    /// with different prefixes.
    pub key_prefix: String,
    /// Bound on each call (default 100 ms). Redis answers a budget script in well under
    /// a millisecond; the bound rides out a fork or a slow network blip and caps what a
    /// sick Redis adds to a request before the failover layer takes over.
    pub timeout: Duration,
    /// How long a reservation that is never reconciled holds its slot (default 15 min;
    /// must exceed the longest request).
    pub reservation_ttl: Duration,
}

impl RedisConfig {
    /// The defaults, at `url`.
    pub fn new(url: impl Into<String>) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            key_prefix: "obleth:".to_owned(),
            timeout: Duration::from_millis(100),
            reservation_ttl: Duration::from_secs(900),
        }
    }

    /// The URL without its credentials (nor query), for errors and logs.
    pub fn redacted_url(&self) -> String {
        obleth_core::redact_url(&self.url)
    }
}

/// Shows the URL redacted: the config is logged, the password must not be.
impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("reservation_ttl", &self.reservation_ttl)
            .finish()
    }
}

/// `scheme://user:password@host:port/db?query` → `scheme://***@host:port/db`.
/// The Redis implementation of [`BudgetStore`] (see the module documentation).
pub struct RedisBudget {
    conns: PerThread,
    prefix: String,
    timeout: Duration,
    ttl_ms: i64,
    record_ttl_ms: i64,
    clock: Option<Arc<dyn Clock>>,
}

impl fmt::Debug for RedisBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBudget")
            .field("url", &self.conns.url)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisBudget {
    /// Connects and loads the scripts, giving up after a couple of seconds with
    /// [`BudgetError::Unavailable`]. A malformed URL is [`BudgetError::Backend`].
    pub async fn connect(config: RedisConfig) -> Result<RedisBudget, BudgetError> {
        let budget = RedisBudget::connect_lazy(config)?;
        let this_thread = budget.conns.get()?;
        let mut conn = this_thread.get();
        let load = async {
            for script in [&*RESERVE, &*RECONCILE, &*ABSORB, &*USAGE] {
                script.load_async(&mut conn).await?;
            }
            Ok::<_, RedisError>(())
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, load).await {
            Ok(Ok(())) => Ok(budget),
            Ok(Err(e)) => Err(this_thread.error(&e)),
            Err(_) => Err(BudgetError::Unavailable(format!(
                "redis at {}: no answer within {CONNECT_TIMEOUT:?}",
                budget.conns.url
            ))),
        }
    }

    /// A store that connects on its first call (which is then
    /// [`BudgetError::Unavailable`] if Redis cannot be reached), for a process that must
    /// start while Redis is down. Must be called within a Tokio runtime.
    pub fn connect_lazy(config: RedisConfig) -> Result<RedisBudget, BudgetError> {
        let url = config.redacted_url();
        let client = obleth_redis::client(config.url.as_str())
            .map_err(|e| BudgetError::Backend(format!("redis url {url}: {}", scrub(&e.to_string(), &config.url))))?;
        let conns = PerThread { client, url, raw_url: config.url.clone(), by_thread: Mutex::new(HashMap::new()) };
        // Fails now on a URL the client cannot use, not on the first request.
        conns.get()?;
        Ok(RedisBudget {
            conns,
            prefix: config.key_prefix,
            timeout: config.timeout,
            ttl_ms: config.reservation_ttl.as_millis() as i64,
            record_ttl_ms: (config.reservation_ttl + RECORD_GRACE).as_millis() as i64,
            clock: None,
        })
    }

    /// Reads `clock` rather than Redis's `TIME` (tests: every pod must share one clock).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> RedisBudget {
        self.clock = Some(clock);
        self
    }

    /// The time argument of the scripts: the injected clock's, or `''` for Redis `TIME`.
    fn now_arg(&self) -> String {
        self.clock.as_ref().map(|c| c.now().to_string()).unwrap_or_default()
    }

    fn keys(&self, tenant: &str) -> Keys {
        Keys { base: format!("{}{{{tenant}}}:", self.prefix) }
    }

    /// Runs one script, bounded by the timeout.
    async fn eval(&self, invocation: &ScriptInvocation<'_>) -> Result<Value, BudgetError> {
        let this_thread = self.conns.get()?;
        let mut conn = this_thread.get();
        match tokio::time::timeout(self.timeout, invocation.invoke_async::<Value>(&mut conn)).await {
            Ok(Ok(v)) => {
                this_thread.answered();
                Ok(v)
            }
            Ok(Err(e)) => Err(this_thread.error(&e)),
            Err(_) => {
                this_thread.timed_out();
                Err(BudgetError::Unavailable(format!(
                    "redis at {}: no answer within {:?}",
                    self.conns.url, self.timeout
                )))
            }
        }
    }
}

/// One tenant's keys.
struct Keys {
    /// `{prefix}{{tenant}}:`
    base: String,
}

impl Keys {
    fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.base)
    }
}

/// One connection per thread that calls: the data plane runs a runtime per thread, and a
/// connection is driven by the runtime that first used it, so a shared one would make
/// every call from another thread cross threads twice (measured: +38–57 µs at p50) and
/// would die with its thread's runtime.
struct PerThread {
    client: Client,
    url: String,
    /// The URL as configured (it may hold a password), to scrub from messages.
    raw_url: String,
    by_thread: Mutex<HashMap<ThreadId, Arc<Conn>>>,
}

impl PerThread {
    fn get(&self) -> Result<Arc<Conn>, BudgetError> {
        let mut map = self.by_thread.lock().unwrap_or_else(|p| p.into_inner());
        let id = std::thread::current().id();
        if let Some(c) = map.get(&id) {
            return Ok(c.clone());
        }
        let conn = Arc::new(Conn::new(self.client.clone(), self.url.clone(), &self.raw_url)?);
        map.insert(id, conn.clone());
        Ok(conn)
    }
}

/// The connection: a [`ConnectionManager`] (reconnects after errors by itself), rebuilt
/// when calls keep timing out without an error, which the manager does not notice.
struct Conn {
    client: Client,
    url: String,
    /// The password, to scrub from error messages.
    secret: Option<String>,
    manager: RwLock<ConnectionManager>,
    timeouts: AtomicU32,
    /// When the connection was last rebuilt.
    rebuilt: Mutex<Option<Instant>>,
}

impl Conn {
    fn new(client: Client, url: String, raw_url: &str) -> Result<Conn, BudgetError> {
        let secret = client.get_connection_info().redis_settings().password().map(str::to_owned);
        let manager = Conn::manager(&client)
            .map_err(|e| BudgetError::Backend(format!("redis at {url}: {}", scrub(&e.to_string(), raw_url))))?;
        Ok(Conn {
            client,
            url,
            secret,
            manager: RwLock::new(manager),
            timeouts: AtomicU32::new(0),
            rebuilt: Mutex::new(None),
        })
    }

    fn manager(client: &Client) -> Result<ConnectionManager, RedisError> {
        let config = ConnectionManagerConfig::new()
            // One attempt per reconnect: the next call triggers the next attempt, so a
            // restarted Redis is used again at once rather than after a back-off.
            .set_number_of_retries(0)
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            // Calls are bounded by the store's own timeout.
            .set_response_timeout(None);
        ConnectionManager::new_lazy_with_config(client.clone(), config)
    }

    fn get(&self) -> ConnectionManager {
        self.manager.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn answered(&self) {
        self.timeouts.store(0, Ordering::Relaxed);
    }

    fn timed_out(&self) {
        if self.timeouts.fetch_add(1, Ordering::Relaxed) + 1 < REBUILD_AFTER_TIMEOUTS {
            return;
        }
        {
            let mut rebuilt = self.rebuilt.lock().unwrap_or_else(|p| p.into_inner());
            if rebuilt.is_some_and(|at| at.elapsed() < REBUILD_EVERY) {
                return;
            }
            *rebuilt = Some(Instant::now());
        }
        match Conn::manager(&self.client) {
            Ok(m) => {
                *self.manager.write().unwrap_or_else(|p| p.into_inner()) = m;
                self.timeouts.store(0, Ordering::Relaxed);
                tracing::warn!(url = %self.url, "redis budget store keeps timing out; reconnecting");
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %self.scrubbed(&e), "rebuilding the redis connection failed")
            }
        }
    }

    fn scrubbed(&self, e: &RedisError) -> String {
        let s = e.to_string();
        match &self.secret {
            Some(p) if !p.is_empty() => s.replace(p.as_str(), "***"),
            _ => s,
        }
    }

    /// Maps a client error: cannot reach or cannot serve → `Unavailable`, else `Backend`.
    fn error(&self, e: &RedisError) -> BudgetError {
        let msg = format!("redis at {}: {}", self.url, self.scrubbed(e));
        if unavailable(e) { BudgetError::Unavailable(msg) } else { BudgetError::Backend(msg) }
    }
}

fn scrub(msg: &str, raw_url: &str) -> String {
    if raw_url.is_empty() { msg.to_owned() } else { msg.replace(raw_url, &obleth_core::redact_url(raw_url)) }
}

fn unavailable(e: &RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        return true;
    }
    match e.kind() {
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly,
        ) => true,
        _ => matches!(e.code(), Some("BUSY" | "OOM")),
    }
}

/// An optional limit as a script argument (`''` is none).
fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn bad(what: &str, v: &Value) -> BudgetError {
    BudgetError::Backend(format!("unexpected reply from a budget script ({what}): {v:?}"))
}

fn items(v: Value, n: usize, what: &str) -> Result<Vec<Value>, BudgetError> {
    match v {
        Value::Array(items) if items.len() == n => Ok(items),
        v => Err(bad(what, &v)),
    }
}

fn text(v: &Value) -> Option<&str> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

fn int(v: &Value, what: &str) -> Result<i64, BudgetError> {
    match v {
        Value::Int(i) => Ok(*i),
        v => text(v).and_then(|s| s.parse().ok()).ok_or_else(|| bad(what, v)),
    }
}

/// A bucket level, `''` when the limit is not set.
fn level(v: &Value, what: &str) -> Result<Option<f64>, BudgetError> {
    match text(v) {
        Some("") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| bad(what, v)),
        None => Err(bad(what, v)),
    }
}

fn window(level: Option<f64>, cap: Option<u64>) -> Option<Window> {
    let (level, cap) = (level?, cap?);
    let b = Bucket { level, at: 0 };
    Some(Window { limit: cap, remaining: b.remaining(), reset_ms: b.reset_ms(cap) })
}

fn count_expired(n: i64) {
    if n > 0 {
        metrics::counter!(crate::layer::EXPIRED_METRIC).increment(n as u64);
        tracing::warn!(expired = n, "budget reservations expired without a reconcile");
    }
}

#[async_trait]
impl BudgetStore for RedisBudget {
    async fn reserve(&self, r: &Reserve<'_>) -> Result<Decision, BudgetError> {
        let k = self.keys(r.tenant);
        let l = r.limits;
        let mut inv = RESERVE.prepare_invoke();
        inv.key(k.key("tpm"))
            .key(k.key("rpm"))
            .key(k.key("inflight"))
            .key(k.key("life"))
            .key(k.key("expired"))
            .key(k.key(&format!("r:{}", r.request_id)))
            .arg(self.now_arg())
            .arg(k.key("m:"))
            .arg(k.key("r:"))
            .arg(r.request_id)
            .arg(r.tokens)
            .arg(r.cost)
            .arg(opt(l.tpm))
            .arg(opt(l.rpm))
            .arg(opt(l.max_in_flight))
            .arg(opt(l.monthly_budget))
            .arg(opt(l.lifetime_budget))
            .arg(self.ttl_ms)
            .arg(self.record_ttl_ms)
            .arg(MONTH_TTL_SECS);
        let v = items(self.eval(&inv).await?, 8, "reserve")?;
        let outcome = int(&v[0], "reserve outcome")?;
        count_expired(int(&v[1], "reserve expired")?);
        let now: UnixMillis = int(&v[2], "reserve time")?;
        let tpm = level(&v[3], "reserve tpm")?;
        let rpm = level(&v[4], "reserve rpm")?;
        let status = RateStatus {
            requests: window(rpm, l.rpm),
            tokens: window(tpm, l.tpm),
            monthly_spent: int(&v[5], "reserve monthly")?,
            lifetime_spent: int(&v[6], "reserve lifetime")?,
        };
        let failed = int(&v[7], "reserve failed")?;
        let denial = match outcome {
            0 | 1 => return Ok(Decision::Allowed(status)),
            2 => {
                let at = calendar::next_month_start(now);
                Denial {
                    limit: LimitKind::MonthlyBudget,
                    retry_after_ms: Some((at - now).max(0) as u64),
                    resets_at: Some(at),
                    too_large: l.monthly_budget.is_some_and(|b| r.cost > b),
                    status,
                }
            }
            3 => Denial {
                limit: LimitKind::LifetimeBudget,
                retry_after_ms: None,
                resets_at: None,
                too_large: l.lifetime_budget.is_some_and(|b| r.cost > b),
                status,
            },
            4 => rate_denial(r, failed, rpm, tpm, status).ok_or_else(|| bad("reserve failed limits", &v[7]))?,
            _ => return Err(bad("reserve outcome", &v[0])),
        };
        Ok(Decision::Denied(denial))
    }

    async fn reconcile(&self, res: &Reservation, actual: Actual) -> Result<(), BudgetError> {
        let k = self.keys(&res.tenant);
        let mut inv = RECONCILE.prepare_invoke();
        inv.key(k.key(&format!("r:{}", res.request_id)))
            .key(k.key("tpm"))
            .key(k.key("inflight"))
            .key(k.key("life"))
            .arg(self.now_arg())
            .arg(k.key("m:"))
            .arg(&res.request_id)
            .arg(actual.tokens)
            .arg(actual.cost)
            .arg(opt(res.limits.tpm))
            .arg(MONTH_TTL_SECS);
        let v = self.eval(&inv).await?;
        int(&v, "reconcile")?;
        Ok(())
    }

    async fn absorb(&self, batch_id: &str, tenant: &str, limits: &Limits, used: Actual) -> Result<(), BudgetError> {
        let k = self.keys(tenant);
        let mut inv = ABSORB.prepare_invoke();
        inv.key(k.key(&format!("b:{batch_id}")))
            .key(k.key("tpm"))
            .key(k.key("life"))
            .arg(self.now_arg())
            .arg(k.key("m:"))
            .arg(used.tokens)
            .arg(used.cost)
            .arg(opt(limits.tpm))
            .arg(ABSORBED_TTL_SECS)
            .arg(MONTH_TTL_SECS);
        let v = self.eval(&inv).await?;
        int(&v, "absorb")?;
        Ok(())
    }

    async fn usage(&self, tenant: &str, limits: &Limits) -> Result<TenantUsage, BudgetError> {
        let k = self.keys(tenant);
        let mut inv = USAGE.prepare_invoke();
        inv.key(k.key("tpm"))
            .key(k.key("rpm"))
            .key(k.key("inflight"))
            .key(k.key("life"))
            .key(k.key("expired"))
            .arg(self.now_arg())
            .arg(k.key("m:"))
            .arg(k.key("r:"))
            .arg(opt(limits.tpm))
            .arg(opt(limits.rpm));
        let v = items(self.eval(&inv).await?, 9, "usage")?;
        count_expired(int(&v[0], "usage expired")?);
        let now: UnixMillis = int(&v[1], "usage time")?;
        let month = text(&v[5]).ok_or_else(|| bad("usage month", &v[5]))?.to_owned();
        let monthly: Nanos = int(&v[6], "usage monthly")?;
        let lifetime: Nanos = int(&v[7], "usage lifetime")?;
        Ok(TenantUsage {
            tokens_per_minute: window(level(&v[2], "usage tpm")?, limits.tpm),
            requests_per_minute: window(level(&v[3], "usage rpm")?, limits.rpm),
            in_flight: int(&v[4], "usage in flight")?.max(0) as u64,
            max_in_flight: limits.max_in_flight,
            month,
            monthly_spend: from_nanos(monthly),
            monthly_budget: limits.monthly_budget.map(from_nanos),
            monthly_resets_at: calendar::next_month_start(now),
            lifetime_spend: from_nanos(lifetime),
            lifetime_budget: limits.lifetime_budget.map(from_nanos),
            expired_reservations: int(&v[8], "usage expired total")?.max(0) as u64,
        })
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

/// The refusal by rate limits (`failed`: 1 in flight, 2 rpm, 4 tpm), as the in-process
/// store words it: the first failing limit names it, the retry is when every failing
/// limit passes, and it is too large if any never can.
fn rate_denial(r: &Reserve<'_>, failed: i64, rpm: Option<f64>, tpm: Option<f64>, status: RateStatus) -> Option<Denial> {
    let mut waits: Vec<(LimitKind, Option<u64>)> = Vec::with_capacity(3);
    if failed & 1 != 0 {
        waits.push((LimitKind::InFlight, Some(IN_FLIGHT_RETRY_MS)));
    }
    if failed & 2 != 0 {
        let (cap, level) = (r.limits.rpm?, rpm?);
        waits.push((LimitKind::Rpm, Bucket { level, at: 0 }.wait_ms(1, cap)));
    }
    if failed & 4 != 0 {
        let (cap, level) = (r.limits.tpm?, tpm?);
        waits.push((LimitKind::Tpm, Bucket { level, at: 0 }.wait_ms(r.tokens, cap)));
    }
    let (limit, _) = *waits.first()?;
    let retry_after_ms = waits.iter().try_fold(0, |acc, (_, w)| w.map(|w| acc.max(w)));
    Some(Denial { limit, retry_after_ms, resets_at: None, too_large: waits.iter().any(|(_, w)| w.is_none()), status })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials() {
        assert_eq!(obleth_core::redact_url("redis://:hunter2@cache:6379/0"), "redis://***@cache:6379/0");
        assert_eq!(
            obleth_core::redact_url("rediss://user:p%40ss@cache.internal:6380"),
            "rediss://***@cache.internal:6380"
        );
        assert_eq!(obleth_core::redact_url("redis://cache:6379"), "redis://cache:6379");
        assert_eq!(
            obleth_core::redact_url("redis+unix:///run/redis.sock?pass=hunter2"),
            "redis+unix:///run/redis.sock"
        );
        assert_eq!(obleth_core::redact_url("redis://:pa/ss@cache"), "redis://***@cache");
        let c = RedisConfig::new("redis://admin:hunter2@cache:6379");
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
