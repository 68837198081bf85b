//! Configuration: a TOML file, then `OBLETH_*` environment overrides, then validation
//! into a typed [`Config`].
//!
//! Unknown keys in the file are rejected, and every error names the field (and the
//! file). Secrets are held as `SecretString` and never printed; `obleth config check`
//! shows the effective configuration with secrets redacted. The loader takes the
//! environment as an argument so that tests never touch the process environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Errors of loading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The file is not valid TOML or does not match the schema (names the key).
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    /// An environment override has a value of the wrong type.
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    /// A value is well-typed but unacceptable.
    #[error("{origin}: invalid {field}: {message}")]
    Invalid { origin: String, field: &'static str, message: String },
}

// === raw (as written) ===

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    listen: RawListen,
    admin: RawAdmin,
    database: RawDatabase,
    upstream: RawUpstream,
    limits: RawLimits,
    keys: RawKeys,
    admission: RawAdmission,
    budget: RawBudget,
    ledger: RawLedger,
    cluster: RawCluster,
    metrics: RawMetrics,
    log: RawLog,
    redis_tls: RawRedisTls,
    mcp: RawMcp,
}

/// The MCP gateway at `/mcp` on the data plane.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMcp {
    enabled: bool,
    path: String,
    separator: String,
    #[serde(with = "humantime_serde")]
    list_cache_ttl: Duration,
    max_body_bytes: usize,
    allowed_hosts: Vec<String>,
    allowed_origins: Vec<String>,
    #[serde(with = "humantime_serde")]
    session_idle_timeout: Duration,
    max_sessions: u64,
    #[serde(with = "humantime_serde")]
    health_interval: Duration,
    stdio: RawMcpStdio,
}

impl Default for RawMcp {
    fn default() -> Self {
        let defaults = obleth_mcp::McpConfig::default();
        RawMcp {
            enabled: true,
            path: "/mcp".into(),
            separator: defaults.separator,
            list_cache_ttl: defaults.list_cache_ttl,
            max_body_bytes: defaults.max_body_bytes,
            allowed_hosts: defaults.allowed_hosts,
            allowed_origins: defaults.allowed_origins,
            session_idle_timeout: defaults.session_idle_timeout,
            max_sessions: defaults.max_sessions,
            health_interval: defaults.health_interval,
            stdio: RawMcpStdio::default(),
        }
    }
}

/// The programs stdio MCP servers may run: the admin API names one of these, never a
/// path or a command line of its own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMcpStdio {
    /// Name → program (an absolute path) and its leading arguments.
    commands: std::collections::BTreeMap<String, Vec<String>>,
}

/// TLS material for every `rediss://` URL (budgets, cluster); PEM files.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRedisTls {
    ca_file: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawListen {
    data: String,
    admin: String,
    metrics: String,
    /// Data-plane threads; 0 = one per CPU.
    data_threads: usize,
}

impl Default for RawListen {
    fn default() -> Self {
        RawListen {
            data: "0.0.0.0:8080".into(),
            // The admin API and the metrics stay on this host unless an operator says
            // otherwise: they are not for the network the data plane serves.
            admin: "127.0.0.1:9090".into(),
            metrics: "127.0.0.1:9091".into(),
            data_threads: 0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAdmin {
    token: Option<SecretString>,
    /// Read-only tokens: the console and the API answer their reads and refuse changes.
    viewer_tokens: Vec<SecretString>,
    /// How long a console session lives without a new sign-in.
    #[serde(with = "humantime_serde")]
    session_ttl: Duration,
    /// Always mark the session cookie `Secure` (it is also when the request came through
    /// a TLS proxy that says `X-Forwarded-Proto: https`).
    secure_cookie: bool,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            token: None,
            viewer_tokens: Vec::new(),
            session_ttl: Duration::from_secs(8 * 3600),
            secure_cookie: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDatabase {
    url: String,
    /// Apply pending migrations at start; false where `obleth migrate` runs as its own
    /// step (a cluster: pods never race on DDL).
    migrate: bool,
}

impl Default for RawDatabase {
    fn default() -> Self {
        RawDatabase { url: "sqlite://obleth.db".into(), migrate: true }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawUpstream {
    base_url: Option<String>,
    api_key: Option<SecretString>,
    forward_client_authorization: bool,
    #[serde(with = "humantime_serde")]
    connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    response_timeout: Duration,
    #[serde(with = "humantime_serde")]
    stream_idle_timeout: Duration,
    /// Host names, `*.domain`s and CIDRs models may send requests to; empty: any but the
    /// gateway's own listeners and link-local/metadata addresses.
    allowed_hosts: Vec<String>,
}

impl Default for RawUpstream {
    fn default() -> Self {
        RawUpstream {
            base_url: None,
            api_key: None,
            forward_client_authorization: false,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(600),
            stream_idle_timeout: Duration::from_secs(120),
            allowed_hosts: vec![],
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    max_body_bytes: usize,
    max_response_bytes: usize,
    max_sse_event_bytes: usize,
    max_connections: usize,
    max_admin_connections: usize,
    #[serde(with = "humantime_serde")]
    header_read_timeout: Duration,
    #[serde(with = "humantime_serde")]
    body_read_timeout: Duration,
    #[serde(with = "humantime_serde")]
    idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    client_stall_timeout: Duration,
}

impl Default for RawLimits {
    fn default() -> Self {
        let data = obleth_gateway::listener::ConnectionLimits::new("data");
        RawLimits {
            max_body_bytes: 4 << 20,
            max_response_bytes: 64 << 20,
            max_sse_event_bytes: obleth_gateway::sse::DEFAULT_MAX_EVENT,
            max_connections: data.max_connections,
            max_admin_connections: 256,
            header_read_timeout: data.header_read_timeout,
            body_read_timeout: data.body_read_timeout,
            idle_timeout: data.idle_timeout,
            client_stall_timeout: data.client_stall_timeout,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawKeys {
    #[serde(with = "humantime_serde")]
    cache_ttl: Duration,
    #[serde(with = "humantime_serde")]
    negative_cache_ttl: Duration,
    cache_capacity: u64,
    #[serde(with = "humantime_serde")]
    stale_ttl: Duration,
    #[serde(with = "humantime_serde")]
    store_timeout: Duration,
}

impl Default for RawKeys {
    fn default() -> Self {
        RawKeys {
            cache_ttl: Duration::from_secs(10),
            negative_cache_ttl: Duration::from_secs(2),
            cache_capacity: 100_000,
            stale_ttl: Duration::from_secs(24 * 3600),
            store_timeout: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAdmission {
    mode: String,
    max_in_flight: u32,
    #[serde(with = "humantime_serde")]
    queue_timeout: Duration,
    #[serde(with = "humantime_serde")]
    brownout_after: Duration,
    brownout_max_tokens: u32,
    output_token_weight: f64,
    max_queue_per_tenant: usize,
    max_queue: usize,
}

impl Default for RawAdmission {
    fn default() -> Self {
        RawAdmission {
            mode: "hierarchical".into(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            queue_timeout: Duration::from_secs(60),
            brownout_after: Duration::from_secs(10),
            brownout_max_tokens: 256,
            output_token_weight: 2.0,
            max_queue_per_tenant: 1_000,
            max_queue: 10_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawBudget {
    store: String,
    redis_url: Option<SecretString>,
    #[serde(with = "humantime_serde")]
    redis_timeout: Duration,
    key_prefix: String,
    #[serde(with = "humantime_serde")]
    reservation_ttl: Duration,
    local_share: f64,
    breaker_failures: u32,
    #[serde(with = "humantime_serde")]
    breaker_cooldown: Duration,
    default_output_tokens: u64,
    default_encoding: String,
}

impl Default for RawBudget {
    fn default() -> Self {
        RawBudget {
            store: "memory".into(),
            redis_url: None,
            redis_timeout: Duration::from_millis(100),
            key_prefix: "obleth:".into(),
            reservation_ttl: Duration::from_secs(900),
            local_share: 1.0,
            breaker_failures: 3,
            breaker_cooldown: Duration::from_secs(1),
            default_output_tokens: 512,
            default_encoding: "cl100k_base".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLedger {
    backend: String,
    sqlite_url: String,
    clickhouse_url: Option<String>,
    clickhouse_database: String,
    clickhouse_table: String,
    clickhouse_user: Option<String>,
    clickhouse_password: Option<SecretString>,
    clickhouse_ca_file: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    clickhouse_timeout: Duration,
    wal_dir: PathBuf,
    wal_max_bytes: u64,
    wal_segment_bytes: u64,
    fsync: String,
    #[serde(with = "humantime_serde")]
    flush_interval: Duration,
    #[serde(with = "humantime_serde")]
    insert_interval: Duration,
    batch_rows: usize,
    queue_rows: usize,
    insert_max_bytes: usize,
    on_full: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCluster {
    redis_url: Option<SecretString>,
    channel: String,
    pod_name: Option<String>,
    #[serde(with = "humantime_serde")]
    resync_interval: Duration,
    share_slots: bool,
    #[serde(with = "humantime_serde")]
    heartbeat: Duration,
    #[serde(with = "humantime_serde")]
    pod_ttl: Duration,
    fallback_slots: Option<u32>,
    shared_cache: bool,
    #[serde(with = "humantime_serde")]
    shared_cache_ttl: Duration,
    share_served: bool,
    #[serde(with = "humantime_serde")]
    served_interval: Duration,
}

impl Default for RawCluster {
    fn default() -> Self {
        RawCluster {
            redis_url: None,
            channel: "obleth:changes".into(),
            pod_name: None,
            resync_interval: Duration::from_secs(30),
            share_slots: true,
            heartbeat: Duration::from_millis(500),
            pod_ttl: Duration::from_secs(3),
            fallback_slots: None,
            shared_cache: true,
            shared_cache_ttl: Duration::from_secs(300),
            share_served: true,
            served_interval: Duration::from_millis(200),
        }
    }
}

/// The embedded ledger's file, relative to the working directory.
pub const DEFAULT_LEDGER_URL: &str = "sqlite://obleth-usage.db";
/// The write-ahead log's directory, relative to the working directory.
pub const DEFAULT_WAL_DIR: &str = "obleth-wal";

impl Default for RawLedger {
    fn default() -> Self {
        let d = obleth_ledger::LedgerConfig::default();
        RawLedger {
            backend: "sqlite".into(),
            sqlite_url: DEFAULT_LEDGER_URL.into(),
            clickhouse_url: None,
            clickhouse_database: "default".into(),
            clickhouse_table: "obleth_usage".into(),
            clickhouse_user: None,
            clickhouse_password: None,
            clickhouse_ca_file: None,
            clickhouse_timeout: Duration::from_secs(10),
            wal_dir: DEFAULT_WAL_DIR.into(),
            wal_max_bytes: d.wal.max_bytes,
            wal_segment_bytes: d.wal.segment_bytes,
            fsync: "always".into(),
            flush_interval: d.flush_interval,
            insert_interval: d.insert_interval,
            batch_rows: d.batch_rows,
            queue_rows: d.queue_rows,
            insert_max_bytes: d.insert_max_bytes,
            on_full: "drop".into(),
        }
    }
}

/// The metrics listener: who may scrape it, and how many series per tenant and group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMetrics {
    token: Option<SecretString>,
    tenant_series: usize,
    group_series: usize,
}

impl Default for RawMetrics {
    fn default() -> Self {
        let d = obleth_scheduler::telemetry::SeriesLimits::default();
        RawMetrics { token: None, tenant_series: d.tenants, group_series: d.groups }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog { level: "info".into() }
    }
}

/// `admission.max_in_flight` when the configuration gives none.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 256;

// === typed (validated) ===

/// The console's sign-in (`[admin]` viewer tokens and sessions).
#[derive(Debug, Clone)]
pub struct Console {
    pub viewer_tokens: Vec<SecretString>,
    pub session_ttl: Duration,
    pub secure_cookie: bool,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Listen,
    pub admin_token: Option<SecretString>,
    /// The console's sign-in: viewer tokens and sessions.
    pub console: Console,
    pub database_url: String,
    /// What `serve` does with the control-plane schema (`database.migrate`).
    pub schema: obleth_store::Schema,
    pub upstream: Upstream,
    pub max_body_bytes: usize,
    pub max_response_bytes: usize,
    pub max_sse_event_bytes: usize,
    /// The bounds of each listener's connections.
    pub connections: Connections,
    pub keys: obleth_gateway::IdentityConfig,
    /// How the data plane calls the control-plane store (`keys.store_timeout`).
    pub store_guard: obleth_store::GuardConfig,
    pub admission: obleth_scheduler::FairshareConfig,
    pub budget: Budget,
    pub ledger: Ledger,
    /// `None`: one gateway; changes stay in this process.
    pub cluster: Option<Cluster>,
    pub metrics: Metrics,
    pub log_level: String,
    /// TLS material for `rediss://` URLs (installed by `server::start`).
    pub redis_tls: obleth_redis::TlsFiles,
    /// `Some`: the MCP gateway is served at the path, with these settings.
    pub mcp: Option<(String, obleth_mcp::McpConfig)>,
}

/// The bounds of the connections of each listener (`[limits]`).
#[derive(Debug, Clone)]
pub struct Connections {
    pub data: obleth_gateway::listener::ConnectionLimits,
    pub admin: obleth_gateway::listener::ConnectionLimits,
    pub metrics: obleth_gateway::listener::ConnectionLimits,
}

/// The metrics listener.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// `Some`: `/metrics` answers only `Authorization: Bearer <token>`.
    pub token: Option<SecretString>,
    /// Tenants and groups with series of their own; the rest are summed as `other`.
    pub series: obleth_scheduler::telemetry::SeriesLimits,
}

/// How the pods of one deployment share control-plane changes.
#[derive(Clone)]
pub struct Cluster {
    pub redis_url: SecretString,
    pub channel: String,
    pub pod_name: String,
    pub resync_interval: Duration,
    /// `Some`: `admission.max_in_flight` is the cluster's cap, split between live pods.
    pub slots: Option<ClusterSlots>,
    /// `Some(ttl)`: keys and tenants are cached in Redis for every pod, for `ttl`.
    pub shared_cache: Option<Duration>,
    /// `Some(interval)`: served work is exchanged with the other pods this often.
    pub share_served: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct ClusterSlots {
    pub heartbeat: Duration,
    pub pod_ttl: Duration,
    pub fallback_slots: u32,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("channel", &self.channel)
            .field("pod_name", &self.pod_name)
            .field("resync_interval", &self.resync_interval)
            .finish_non_exhaustive()
    }
}

/// Where usage rows go.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub backend: LedgerBackend,
    pub wal_dir: PathBuf,
    pub tuning: obleth_ledger::LedgerConfig,
}

#[derive(Debug, Clone)]
pub enum LedgerBackend {
    /// The embedded ledger: a SQLite file (`sqlite://path`).
    Sqlite(String),
    /// ClickHouse over HTTP (the password is held as a secret).
    ClickHouse(obleth_ledger::clickhouse::ClickHouseConfig),
}

/// Where budgets are kept, and how requests are estimated.
#[derive(Clone)]
pub struct Budget {
    /// `None`: in-process (one gateway). `Some`: Redis, shared by every pod.
    pub redis: Option<obleth_budget::RedisConfig>,
    pub reservation_ttl: Duration,
    pub failover: obleth_budget::FailoverConfig,
    pub default_output_tokens: u64,
    pub default_encoding: obleth_gateway::estimate::Encoding,
}

impl std::fmt::Debug for Budget {
    /// The Redis URL may hold a password: only its redacted form is printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("redis", &self.redis.as_ref().map(|r| r.redacted_url()))
            .field("reservation_ttl", &self.reservation_ttl)
            .field("failover", &self.failover)
            .field("default_output_tokens", &self.default_output_tokens)
            .field("default_encoding", &self.default_encoding)
            .finish()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Listen {
    pub data: SocketAddr,
    pub admin: SocketAddr,
    pub metrics: SocketAddr,
    /// Data-plane threads (resolved: at least 1).
    pub data_threads: usize,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub base_url: Option<String>,
    pub api_key: Option<SecretString>,
    pub forward_client_authorization: bool,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub stream_idle_timeout: Duration,
    /// `upstream.allowed_hosts`, parsed (see `obleth_core::upstream`).
    pub allowed_hosts: Vec<obleth_core::upstream::AllowEntry>,
}

/// One supported environment override: variable, TOML section, key, value type.
struct EnvKey(&'static str, &'static str, &'static str, Kind);

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Float,
    Bool,
    /// Comma-separated strings.
    List,
}

/// Every `OBLETH_*` variable the gateway reads (the README lists the same).
const ENV_KEYS: &[EnvKey] = &[
    EnvKey("OBLETH_LISTEN_DATA", "listen", "data", Kind::Str),
    EnvKey("OBLETH_LISTEN_ADMIN", "listen", "admin", Kind::Str),
    EnvKey("OBLETH_LISTEN_METRICS", "listen", "metrics", Kind::Str),
    EnvKey("OBLETH_LISTEN_DATA_THREADS", "listen", "data_threads", Kind::Int),
    EnvKey("OBLETH_ADMIN_TOKEN", "admin", "token", Kind::Str),
    EnvKey("OBLETH_VIEWER_TOKENS", "admin", "viewer_tokens", Kind::List),
    EnvKey("OBLETH_ADMIN_SESSION_TTL", "admin", "session_ttl", Kind::Str),
    EnvKey("OBLETH_ADMIN_SECURE_COOKIE", "admin", "secure_cookie", Kind::Bool),
    EnvKey("OBLETH_DATABASE_URL", "database", "url", Kind::Str),
    EnvKey("OBLETH_DATABASE_MIGRATE", "database", "migrate", Kind::Bool),
    EnvKey("OBLETH_UPSTREAM_BASE_URL", "upstream", "base_url", Kind::Str),
    EnvKey("OBLETH_UPSTREAM_API_KEY", "upstream", "api_key", Kind::Str),
    EnvKey("OBLETH_UPSTREAM_FORWARD_CLIENT_AUTHORIZATION", "upstream", "forward_client_authorization", Kind::Bool),
    EnvKey("OBLETH_UPSTREAM_CONNECT_TIMEOUT", "upstream", "connect_timeout", Kind::Str),
    EnvKey("OBLETH_UPSTREAM_RESPONSE_TIMEOUT", "upstream", "response_timeout", Kind::Str),
    EnvKey("OBLETH_UPSTREAM_STREAM_IDLE_TIMEOUT", "upstream", "stream_idle_timeout", Kind::Str),
    EnvKey("OBLETH_UPSTREAM_ALLOWED_HOSTS", "upstream", "allowed_hosts", Kind::List),
    EnvKey("OBLETH_LIMITS_MAX_BODY_BYTES", "limits", "max_body_bytes", Kind::Int),
    EnvKey("OBLETH_LIMITS_MAX_RESPONSE_BYTES", "limits", "max_response_bytes", Kind::Int),
    EnvKey("OBLETH_LIMITS_MAX_SSE_EVENT_BYTES", "limits", "max_sse_event_bytes", Kind::Int),
    EnvKey("OBLETH_LIMITS_MAX_CONNECTIONS", "limits", "max_connections", Kind::Int),
    EnvKey("OBLETH_LIMITS_MAX_ADMIN_CONNECTIONS", "limits", "max_admin_connections", Kind::Int),
    EnvKey("OBLETH_LIMITS_HEADER_READ_TIMEOUT", "limits", "header_read_timeout", Kind::Str),
    EnvKey("OBLETH_LIMITS_BODY_READ_TIMEOUT", "limits", "body_read_timeout", Kind::Str),
    EnvKey("OBLETH_LIMITS_IDLE_TIMEOUT", "limits", "idle_timeout", Kind::Str),
    EnvKey("OBLETH_LIMITS_CLIENT_STALL_TIMEOUT", "limits", "client_stall_timeout", Kind::Str),
    EnvKey("OBLETH_KEYS_CACHE_TTL", "keys", "cache_ttl", Kind::Str),
    EnvKey("OBLETH_KEYS_NEGATIVE_CACHE_TTL", "keys", "negative_cache_ttl", Kind::Str),
    EnvKey("OBLETH_KEYS_CACHE_CAPACITY", "keys", "cache_capacity", Kind::Int),
    EnvKey("OBLETH_KEYS_STALE_TTL", "keys", "stale_ttl", Kind::Str),
    EnvKey("OBLETH_KEYS_STORE_TIMEOUT", "keys", "store_timeout", Kind::Str),
    EnvKey("OBLETH_ADMISSION_MODE", "admission", "mode", Kind::Str),
    EnvKey("OBLETH_ADMISSION_MAX_IN_FLIGHT", "admission", "max_in_flight", Kind::Int),
    EnvKey("OBLETH_ADMISSION_QUEUE_TIMEOUT", "admission", "queue_timeout", Kind::Str),
    EnvKey("OBLETH_ADMISSION_BROWNOUT_AFTER", "admission", "brownout_after", Kind::Str),
    EnvKey("OBLETH_ADMISSION_BROWNOUT_MAX_TOKENS", "admission", "brownout_max_tokens", Kind::Int),
    EnvKey("OBLETH_ADMISSION_OUTPUT_TOKEN_WEIGHT", "admission", "output_token_weight", Kind::Float),
    EnvKey("OBLETH_ADMISSION_MAX_QUEUE_PER_TENANT", "admission", "max_queue_per_tenant", Kind::Int),
    EnvKey("OBLETH_ADMISSION_MAX_QUEUE", "admission", "max_queue", Kind::Int),
    EnvKey("OBLETH_BUDGET_STORE", "budget", "store", Kind::Str),
    EnvKey("OBLETH_BUDGET_REDIS_URL", "budget", "redis_url", Kind::Str),
    EnvKey("OBLETH_BUDGET_REDIS_TIMEOUT", "budget", "redis_timeout", Kind::Str),
    EnvKey("OBLETH_BUDGET_KEY_PREFIX", "budget", "key_prefix", Kind::Str),
    EnvKey("OBLETH_BUDGET_RESERVATION_TTL", "budget", "reservation_ttl", Kind::Str),
    EnvKey("OBLETH_BUDGET_LOCAL_SHARE", "budget", "local_share", Kind::Float),
    EnvKey("OBLETH_BUDGET_BREAKER_FAILURES", "budget", "breaker_failures", Kind::Int),
    EnvKey("OBLETH_BUDGET_BREAKER_COOLDOWN", "budget", "breaker_cooldown", Kind::Str),
    EnvKey("OBLETH_BUDGET_DEFAULT_OUTPUT_TOKENS", "budget", "default_output_tokens", Kind::Int),
    EnvKey("OBLETH_BUDGET_DEFAULT_ENCODING", "budget", "default_encoding", Kind::Str),
    EnvKey("OBLETH_LEDGER_BACKEND", "ledger", "backend", Kind::Str),
    EnvKey("OBLETH_LEDGER_SQLITE_URL", "ledger", "sqlite_url", Kind::Str),
    EnvKey("OBLETH_LEDGER_CLICKHOUSE_URL", "ledger", "clickhouse_url", Kind::Str),
    EnvKey("OBLETH_LEDGER_CLICKHOUSE_DATABASE", "ledger", "clickhouse_database", Kind::Str),
    EnvKey("OBLETH_LEDGER_CLICKHOUSE_TABLE", "ledger", "clickhouse_table", Kind::Str),
    EnvKey("OBLETH_LEDGER_CLICKHOUSE_USER", "ledger", "clickhouse_user", Kind::Str),
    EnvKey("OBLETH_LEDGER_CLICKHOUSE_PASSWORD", "ledger", "clickhouse_password", Kind::Str),
    EnvKey("OBLETH_LEDGER_CLICKHOUSE_TIMEOUT", "ledger", "clickhouse_timeout", Kind::Str),
    EnvKey("OBLETH_LEDGER_CLICKHOUSE_CA_FILE", "ledger", "clickhouse_ca_file", Kind::Str),
    EnvKey("OBLETH_REDIS_TLS_CA_FILE", "redis_tls", "ca_file", Kind::Str),
    EnvKey("OBLETH_REDIS_TLS_CLIENT_CERT", "redis_tls", "client_cert", Kind::Str),
    EnvKey("OBLETH_REDIS_TLS_CLIENT_KEY", "redis_tls", "client_key", Kind::Str),
    EnvKey("OBLETH_LEDGER_WAL_DIR", "ledger", "wal_dir", Kind::Str),
    EnvKey("OBLETH_LEDGER_WAL_MAX_BYTES", "ledger", "wal_max_bytes", Kind::Int),
    EnvKey("OBLETH_LEDGER_WAL_SEGMENT_BYTES", "ledger", "wal_segment_bytes", Kind::Int),
    EnvKey("OBLETH_LEDGER_FSYNC", "ledger", "fsync", Kind::Str),
    EnvKey("OBLETH_LEDGER_FLUSH_INTERVAL", "ledger", "flush_interval", Kind::Str),
    EnvKey("OBLETH_LEDGER_INSERT_INTERVAL", "ledger", "insert_interval", Kind::Str),
    EnvKey("OBLETH_LEDGER_BATCH_ROWS", "ledger", "batch_rows", Kind::Int),
    EnvKey("OBLETH_LEDGER_QUEUE_ROWS", "ledger", "queue_rows", Kind::Int),
    EnvKey("OBLETH_LEDGER_INSERT_MAX_BYTES", "ledger", "insert_max_bytes", Kind::Int),
    EnvKey("OBLETH_LEDGER_ON_FULL", "ledger", "on_full", Kind::Str),
    EnvKey("OBLETH_CLUSTER_REDIS_URL", "cluster", "redis_url", Kind::Str),
    EnvKey("OBLETH_CLUSTER_CHANNEL", "cluster", "channel", Kind::Str),
    EnvKey("OBLETH_CLUSTER_POD_NAME", "cluster", "pod_name", Kind::Str),
    EnvKey("OBLETH_CLUSTER_RESYNC_INTERVAL", "cluster", "resync_interval", Kind::Str),
    EnvKey("OBLETH_CLUSTER_SHARE_SLOTS", "cluster", "share_slots", Kind::Bool),
    EnvKey("OBLETH_CLUSTER_HEARTBEAT", "cluster", "heartbeat", Kind::Str),
    EnvKey("OBLETH_CLUSTER_POD_TTL", "cluster", "pod_ttl", Kind::Str),
    EnvKey("OBLETH_CLUSTER_FALLBACK_SLOTS", "cluster", "fallback_slots", Kind::Int),
    EnvKey("OBLETH_CLUSTER_SHARED_CACHE", "cluster", "shared_cache", Kind::Bool),
    EnvKey("OBLETH_CLUSTER_SHARED_CACHE_TTL", "cluster", "shared_cache_ttl", Kind::Str),
    EnvKey("OBLETH_CLUSTER_SHARE_SERVED", "cluster", "share_served", Kind::Bool),
    EnvKey("OBLETH_CLUSTER_SERVED_INTERVAL", "cluster", "served_interval", Kind::Str),
    EnvKey("OBLETH_METRICS_TOKEN", "metrics", "token", Kind::Str),
    EnvKey("OBLETH_METRICS_TENANT_SERIES", "metrics", "tenant_series", Kind::Int),
    EnvKey("OBLETH_METRICS_GROUP_SERIES", "metrics", "group_series", Kind::Int),
    EnvKey("OBLETH_LOG_LEVEL", "log", "level", Kind::Str),
    EnvKey("OBLETH_MCP_ENABLED", "mcp", "enabled", Kind::Bool),
    EnvKey("OBLETH_MCP_SEPARATOR", "mcp", "separator", Kind::Str),
    EnvKey("OBLETH_MCP_LIST_CACHE_TTL", "mcp", "list_cache_ttl", Kind::Str),
    EnvKey("OBLETH_MCP_MAX_BODY_BYTES", "mcp", "max_body_bytes", Kind::Int),
    EnvKey("OBLETH_MCP_ALLOWED_HOSTS", "mcp", "allowed_hosts", Kind::List),
    EnvKey("OBLETH_MCP_ALLOWED_ORIGINS", "mcp", "allowed_origins", Kind::List),
    EnvKey("OBLETH_MCP_SESSION_IDLE_TIMEOUT", "mcp", "session_idle_timeout", Kind::Str),
];

/// Variables read by the CLI rather than the gateway; not an error to have them set.
const CLI_ENV: &[&str] = &["OBLETH_CONFIG", "OBLETH_ADMIN_URL"];

impl Config {
    /// Loads `file` (if any) and applies `env` overrides.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let (text, origin) = match file {
            Some(path) => (
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?,
                path.display().to_string(),
            ),
            None => (String::new(), "configuration".to_owned()),
        };
        Self::from_parts(&text, &origin, env)
    }

    /// Parses TOML `text` (from `origin`, for messages) with `env` overrides.
    pub fn from_parts(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::Parse { origin: origin.into(), message: e.to_string() })?;
        for (var, value) in env {
            if !var.starts_with("OBLETH_") {
                continue;
            }
            let Some(EnvKey(_, section, key, kind)) = ENV_KEYS.iter().find(|k| k.0 == var) else {
                if !CLI_ENV.contains(&var.as_str()) {
                    tracing::warn!(variable = %var, "ignoring unknown OBLETH_ environment variable");
                }
                continue;
            };
            let value = match kind {
                Kind::Str => toml::Value::String(value),
                Kind::Int => toml::Value::Integer(
                    value
                        .trim()
                        .parse()
                        .map_err(|_| ConfigError::Env { var: var.clone(), message: "expected an integer".into() })?,
                ),
                Kind::Float => toml::Value::Float(
                    value
                        .trim()
                        .parse()
                        .map_err(|_| ConfigError::Env { var: var.clone(), message: "expected a number".into() })?,
                ),
                Kind::List => toml::Value::Array(
                    value.split(',').map(str::trim).filter(|v| !v.is_empty()).map(|v| v.into()).collect(),
                ),
                Kind::Bool => toml::Value::Boolean(match value.trim() {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    _ => {
                        return Err(ConfigError::Env { var, message: "expected true or false".into() });
                    }
                }),
            };
            let entry = table.entry(*section).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(section_table) = entry else {
                return Err(ConfigError::Parse {
                    origin: origin.into(),
                    message: format!("'{section}' must be a table"),
                });
            };
            section_table.insert((*key).into(), value);
        }
        let raw: RawConfig = RawConfig::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError::Parse { origin: origin.into(), message: e.to_string().trim().to_owned() })?;
        raw.validate(origin)
    }
}

impl RawConfig {
    fn validate(self, origin: &str) -> Result<Config, ConfigError> {
        let invalid =
            |field: &'static str, message: String| ConfigError::Invalid { origin: origin.into(), field, message };
        let addr = |field: &'static str, v: &str| {
            v.parse::<SocketAddr>().map_err(|_| invalid(field, format!("'{v}' is not an address like 0.0.0.0:8080")))
        };
        let listen = Listen {
            data: addr("listen.data", &self.listen.data)?,
            admin: addr("listen.admin", &self.listen.admin)?,
            metrics: addr("listen.metrics", &self.listen.metrics)?,
            data_threads: match self.listen.data_threads {
                0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
                n => n,
            },
        };
        if let Some(token) = &self.admin.token {
            check_admin_token(token.expose_secret()).map_err(|m| invalid("admin.token", m))?;
        }
        for token in &self.admin.viewer_tokens {
            check_admin_token(token.expose_secret()).map_err(|m| invalid("admin.viewer_tokens", m))?;
            if self.admin.token.as_ref().is_some_and(|t| t.expose_secret() == token.expose_secret()) {
                return Err(invalid("admin.viewer_tokens", "must differ from admin.token".into()));
            }
        }
        if !(Duration::from_secs(60)..=Duration::from_secs(30 * 86_400)).contains(&self.admin.session_ttl) {
            return Err(invalid("admin.session_ttl", "must be between 1m and 30d".into()));
        }
        let url = self.database.url.trim().to_owned();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(invalid("database.url", "must be a sqlite:// or postgres:// URL".into()));
        }
        // Normalised as the model registry normalises api_base (the data plane compares
        // the two to decide where upstream.api_key may go).
        let base_url = match &self.upstream.base_url {
            Some(base) => Some(
                obleth_core::upstream::ApiBase::parse(base)
                    .map_err(|e| invalid("upstream.base_url", format!("'{}' {e}", obleth_core::redact_url(base))))?
                    .as_str()
                    .to_owned(),
            ),
            None => None,
        };
        let allowed_hosts = (self.upstream.allowed_hosts.iter())
            .map(|e| {
                obleth_core::upstream::AllowEntry::parse(e)
                    .map_err(|m| invalid("upstream.allowed_hosts", format!("'{e}' {m}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.upstream.api_key.as_ref().is_some_and(|k| k.expose_secret().is_empty()) {
            return Err(invalid("upstream.api_key", "must not be empty".into()));
        }
        for (field, d) in [
            ("upstream.connect_timeout", self.upstream.connect_timeout),
            ("upstream.response_timeout", self.upstream.response_timeout),
            ("upstream.stream_idle_timeout", self.upstream.stream_idle_timeout),
            ("keys.cache_ttl", self.keys.cache_ttl),
            ("keys.stale_ttl", self.keys.stale_ttl),
            ("keys.store_timeout", self.keys.store_timeout),
            ("admission.queue_timeout", self.admission.queue_timeout),
        ] {
            if d.is_zero() {
                return Err(invalid(field, "must be greater than zero".into()));
            }
        }
        let connections = self.limits.connections().map_err(|(field, m)| invalid(field, m))?;
        let l = &self.limits;
        for (field, v) in [
            ("limits.max_body_bytes", l.max_body_bytes),
            ("limits.max_response_bytes", l.max_response_bytes),
            ("limits.max_sse_event_bytes", l.max_sse_event_bytes),
        ] {
            if v < 1024 {
                return Err(invalid(field, "must be at least 1024".into()));
            }
        }
        let mode = match self.admission.mode.as_str() {
            "hierarchical" => obleth_scheduler::core::Mode::Hierarchical,
            "weighted" => obleth_scheduler::core::Mode::Weighted,
            other => return Err(invalid("admission.mode", format!("'{other}' is not 'hierarchical' or 'weighted'"))),
        };
        let a = &self.admission;
        if !(a.output_token_weight.is_finite() && a.output_token_weight >= 0.0) {
            return Err(invalid("admission.output_token_weight", "must be a non-negative number".into()));
        }
        if a.brownout_max_tokens == 0 {
            return Err(invalid("admission.brownout_max_tokens", "must be at least 1".into()));
        }
        if a.max_queue_per_tenant == 0 || a.max_queue == 0 {
            return Err(invalid("admission.max_queue", "queue bounds must be at least 1".into()));
        }
        let admission = obleth_scheduler::FairshareConfig {
            core: obleth_scheduler::core::Config {
                mode,
                // 0 means no global cap: a pool so large it never fills.
                slots: if a.max_in_flight == 0 { u32::MAX } else { a.max_in_flight },
                output_weight: a.output_token_weight,
                brownout_after: (!a.brownout_after.is_zero()).then_some(a.brownout_after),
                brownout_max_tokens: a.brownout_max_tokens,
                max_queue_per_tenant: a.max_queue_per_tenant,
                max_queue: a.max_queue,
                share_half_life: Duration::from_secs(30),
                ..obleth_scheduler::core::Config::default()
            },
            queue_timeout: a.queue_timeout,
        };
        let b = &self.budget;
        for (field, d) in [("budget.redis_timeout", b.redis_timeout), ("budget.reservation_ttl", b.reservation_ttl)] {
            if d.is_zero() {
                return Err(invalid(field, "must be greater than zero".into()));
            }
        }
        if !(b.local_share > 0.0 && b.local_share <= 1.0) {
            return Err(invalid("budget.local_share", "must be in (0, 1]: 1 / the number of gateway pods".into()));
        }
        if b.breaker_failures == 0 {
            return Err(invalid("budget.breaker_failures", "must be at least 1".into()));
        }
        if b.default_output_tokens == 0 {
            return Err(invalid("budget.default_output_tokens", "must be at least 1".into()));
        }
        let default_encoding = obleth_gateway::estimate::Encoding::parse(&b.default_encoding).ok_or_else(|| {
            invalid("budget.default_encoding", format!("'{}' is not 'o200k_base' or 'cl100k_base'", b.default_encoding))
        })?;
        let redis = match (b.store.as_str(), &b.redis_url) {
            ("memory", _) => None,
            ("redis", None) => {
                return Err(invalid("budget.redis_url", "is required with budget.store = \"redis\"".into()));
            }
            ("redis", Some(url)) => {
                let url = url.expose_secret().trim();
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    return Err(invalid("budget.redis_url", "must be a redis:// or rediss:// URL".into()));
                }
                Some(obleth_budget::RedisConfig {
                    url: url.to_owned(),
                    key_prefix: b.key_prefix.clone(),
                    timeout: b.redis_timeout,
                    reservation_ttl: b.reservation_ttl,
                })
            }
            (other, _) => return Err(invalid("budget.store", format!("'{other}' is not 'memory' or 'redis'"))),
        };
        let budget = Budget {
            redis,
            reservation_ttl: b.reservation_ttl,
            failover: obleth_budget::FailoverConfig {
                local_share: b.local_share,
                breaker_failures: b.breaker_failures,
                breaker_cooldown: b.breaker_cooldown,
                reservation_ttl: b.reservation_ttl,
                ..obleth_budget::FailoverConfig::default()
            },
            default_output_tokens: b.default_output_tokens,
            default_encoding,
        };
        let ledger = self.ledger.validate(origin)?;
        let cluster = match self.cluster.redis_url.clone() {
            None => None,
            Some(url) => {
                let u = url.expose_secret().trim();
                if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
                    return Err(invalid("cluster.redis_url", "must be a redis:// or rediss:// URL".into()));
                }
                let c = &self.cluster;
                for (field, d) in [
                    ("cluster.resync_interval", c.resync_interval),
                    ("cluster.heartbeat", c.heartbeat),
                    ("cluster.pod_ttl", c.pod_ttl),
                    ("cluster.shared_cache_ttl", c.shared_cache_ttl),
                    ("cluster.served_interval", c.served_interval),
                ] {
                    if d.is_zero() {
                        return Err(invalid(field, "must be greater than zero".into()));
                    }
                }
                if c.pod_ttl < c.heartbeat * 3 {
                    return Err(invalid("cluster.pod_ttl", "must be at least three heartbeats".into()));
                }
                let cap = admission.core.slots;
                let slots = c.share_slots.then(|| ClusterSlots {
                    heartbeat: c.heartbeat,
                    pod_ttl: c.pod_ttl,
                    fallback_slots: c.fallback_slots.unwrap_or((cap / 4).max(1)),
                });
                Some(Cluster {
                    redis_url: url,
                    channel: c.channel.clone(),
                    pod_name: c.pod_name.clone().unwrap_or_else(|| obleth_core::new_id("pod-")),
                    resync_interval: c.resync_interval,
                    slots,
                    shared_cache: c.shared_cache.then_some(c.shared_cache_ttl),
                    share_served: c.share_served.then_some(c.served_interval),
                })
            }
        };
        if let Some(token) = &self.metrics.token {
            check_admin_token(token.expose_secret()).map_err(|m| invalid("metrics.token", m))?;
        }
        let metrics = Metrics {
            token: self.metrics.token,
            series: obleth_scheduler::telemetry::SeriesLimits {
                tenants: self.metrics.tenant_series,
                groups: self.metrics.group_series,
            },
        };
        if self.log.level.parse::<tracing_subscriber::EnvFilter>().is_err() {
            return Err(invalid(
                "log.level",
                format!("'{}' is not a log filter (e.g. info, obleth=debug)", self.log.level),
            ));
        }
        let tls = self.redis_tls;
        if tls.client_cert.is_some() != tls.client_key.is_some() {
            return Err(invalid("redis_tls.client_cert", "client_cert and client_key go together".into()));
        }
        let redis_tls =
            obleth_redis::TlsFiles { ca_file: tls.ca_file, client_cert: tls.client_cert, client_key: tls.client_key };
        let mcp = self.mcp.validate(&invalid)?;
        Ok(Config {
            listen,
            admin_token: self.admin.token,
            console: Console {
                viewer_tokens: self.admin.viewer_tokens,
                session_ttl: self.admin.session_ttl,
                secure_cookie: self.admin.secure_cookie,
            },
            database_url: url,
            schema: if self.database.migrate { obleth_store::Schema::Migrate } else { obleth_store::Schema::Require },
            upstream: Upstream {
                base_url,
                allowed_hosts,
                api_key: self.upstream.api_key,
                forward_client_authorization: self.upstream.forward_client_authorization,
                connect_timeout: self.upstream.connect_timeout,
                response_timeout: self.upstream.response_timeout,
                stream_idle_timeout: self.upstream.stream_idle_timeout,
            },
            max_body_bytes: self.limits.max_body_bytes,
            max_response_bytes: self.limits.max_response_bytes,
            max_sse_event_bytes: self.limits.max_sse_event_bytes,
            connections,
            keys: obleth_gateway::IdentityConfig {
                ttl: self.keys.cache_ttl,
                negative_ttl: self.keys.negative_cache_ttl,
                capacity: self.keys.cache_capacity,
                stale_ttl: self.keys.stale_ttl,
            },
            store_guard: obleth_store::GuardConfig {
                timeout: self.keys.store_timeout,
                ..obleth_store::GuardConfig::default()
            },
            admission,
            budget,
            ledger,
            cluster,
            metrics,
            log_level: self.log.level,
            redis_tls,
            mcp,
        })
    }
}

impl RawMcp {
    fn validate(
        self,
        invalid: &dyn Fn(&'static str, String) -> ConfigError,
    ) -> Result<Option<(String, obleth_mcp::McpConfig)>, ConfigError> {
        if !self.enabled {
            return Ok(None);
        }
        if !self.path.starts_with('/') || self.path.starts_with("/v1/") || self.path == "/healthz" {
            return Err(invalid(
                "mcp.path",
                format!("'{}' must start with / and not be a data-plane route", self.path),
            ));
        }
        obleth_mcp::names::check_separator(&self.separator).map_err(|e| invalid("mcp.separator", e.to_string()))?;
        if self.max_body_bytes == 0
            || self.max_sessions == 0
            || self.list_cache_ttl.is_zero()
            || self.health_interval.is_zero()
        {
            return Err(invalid(
                "mcp",
                "max_body_bytes, max_sessions, list_cache_ttl and health_interval must be positive".into(),
            ));
        }
        for (name, argv) in &self.stdio.commands {
            let absolute = argv.first().is_some_and(|p| Path::new(p).is_absolute());
            if !absolute {
                return Err(invalid(
                    "mcp.stdio.commands",
                    format!("'{name}' must start with the program's absolute path"),
                ));
            }
        }
        let config = obleth_mcp::McpConfig {
            separator: self.separator,
            list_cache_ttl: self.list_cache_ttl,
            max_body_bytes: self.max_body_bytes,
            allowed_hosts: self.allowed_hosts,
            allowed_origins: self.allowed_origins,
            session_idle_timeout: self.session_idle_timeout,
            max_sessions: self.max_sessions,
            health_interval: self.health_interval,
            stdio_commands: self.stdio.commands,
        };
        Ok(Some((self.path, config)))
    }
}

/// The fewest characters an admin token may have: 32 random characters of any common
/// alphabet hold well over 128 bits.
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;
/// The fewest distinct characters: refuses `aaaa…` and other tokens no generator made.
pub const MIN_ADMIN_TOKEN_DISTINCT: usize = 10;

/// Checks that an admin token is long and varied enough to be a generated secret.
pub fn check_admin_token(token: &str) -> Result<(), String> {
    if token.chars().count() < MIN_ADMIN_TOKEN_LEN {
        return Err(format!(
            "must be at least {MIN_ADMIN_TOKEN_LEN} characters (generate one with `openssl rand -hex 24`)"
        ));
    }
    let distinct: std::collections::HashSet<char> = token.chars().collect();
    if distinct.len() < MIN_ADMIN_TOKEN_DISTINCT {
        return Err(format!(
            "must have at least {MIN_ADMIN_TOKEN_DISTINCT} distinct characters (generate one with `openssl rand -hex 24`)"
        ));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    Ok(())
}

impl RawLimits {
    /// The connection bounds of the three listeners.
    fn connections(&self) -> Result<Connections, (&'static str, String)> {
        for (field, d) in [
            ("limits.header_read_timeout", self.header_read_timeout),
            ("limits.body_read_timeout", self.body_read_timeout),
            ("limits.idle_timeout", self.idle_timeout),
            ("limits.client_stall_timeout", self.client_stall_timeout),
        ] {
            if d.is_zero() {
                return Err((field, "must be greater than zero".into()));
            }
        }
        for (field, n) in [
            ("limits.max_connections", self.max_connections),
            ("limits.max_admin_connections", self.max_admin_connections),
        ] {
            if n == 0 {
                return Err((field, "must be at least 1".into()));
            }
        }
        let listener = |name, max_connections, request_ids| obleth_gateway::listener::ConnectionLimits {
            listener: name,
            max_connections,
            header_read_timeout: self.header_read_timeout,
            body_read_timeout: self.body_read_timeout,
            idle_timeout: self.idle_timeout,
            client_stall_timeout: self.client_stall_timeout,
            request_ids,
        };
        Ok(Connections {
            data: listener("data", self.max_connections, true),
            admin: listener("admin", self.max_admin_connections, false),
            metrics: listener("metrics", self.max_admin_connections, false),
        })
    }
}

impl RawLedger {
    fn validate(self, origin: &str) -> Result<Ledger, ConfigError> {
        let invalid =
            |field: &'static str, message: String| ConfigError::Invalid { origin: origin.into(), field, message };
        let fsync = match self.fsync.as_str() {
            "always" => obleth_ledger::wal::Fsync::Always,
            "interval" => obleth_ledger::wal::Fsync::Interval,
            "never" => obleth_ledger::wal::Fsync::Never,
            other => return Err(invalid("ledger.fsync", format!("'{other}' is not 'always', 'interval' or 'never'"))),
        };
        let on_full = match self.on_full.as_str() {
            "drop" => obleth_ledger::OnFull::Drop,
            "reject" => obleth_ledger::OnFull::Reject,
            other => return Err(invalid("ledger.on_full", format!("'{other}' is not 'drop' or 'reject'"))),
        };
        if self.wal_segment_bytes < 4096 {
            return Err(invalid("ledger.wal_segment_bytes", "must be at least 4096".into()));
        }
        if self.wal_max_bytes < 2 * self.wal_segment_bytes {
            return Err(invalid("ledger.wal_max_bytes", "must be at least twice ledger.wal_segment_bytes".into()));
        }
        if self.insert_max_bytes < 1024 {
            return Err(invalid("ledger.insert_max_bytes", "must be at least 1024".into()));
        }
        if self.batch_rows == 0 || self.queue_rows == 0 {
            return Err(invalid("ledger.batch_rows", "batch_rows and queue_rows must be at least 1".into()));
        }
        for (field, d) in [
            ("ledger.flush_interval", self.flush_interval),
            ("ledger.insert_interval", self.insert_interval),
            ("ledger.clickhouse_timeout", self.clickhouse_timeout),
        ] {
            if d.is_zero() {
                return Err(invalid(field, "must be greater than zero".into()));
            }
        }
        let backend = match self.backend.as_str() {
            "sqlite" => {
                if !self.sqlite_url.starts_with("sqlite:") {
                    return Err(invalid("ledger.sqlite_url", "must be a sqlite:// URL".into()));
                }
                LedgerBackend::Sqlite(self.sqlite_url)
            }
            "clickhouse" => {
                let Some(url) = self.clickhouse_url else {
                    return Err(invalid(
                        "ledger.clickhouse_url",
                        "is required with ledger.backend = \"clickhouse\"".into(),
                    ));
                };
                let config = obleth_ledger::clickhouse::ClickHouseConfig {
                    url,
                    database: self.clickhouse_database,
                    table: self.clickhouse_table,
                    user: self.clickhouse_user,
                    password: self.clickhouse_password,
                    timeout: self.clickhouse_timeout,
                    ca_file: self.clickhouse_ca_file,
                };
                // Checks the URL and names now, not at the first insert.
                obleth_ledger::clickhouse::ClickHouse::new(config.clone())
                    .map_err(|e| invalid("ledger.clickhouse_url", e.to_string()))?;
                LedgerBackend::ClickHouse(config)
            }
            other => return Err(invalid("ledger.backend", format!("'{other}' is not 'sqlite' or 'clickhouse'"))),
        };
        let defaults = obleth_ledger::LedgerConfig::default();
        Ok(Ledger {
            backend,
            wal_dir: self.wal_dir,
            tuning: obleth_ledger::LedgerConfig {
                queue_rows: self.queue_rows,
                batch_rows: self.batch_rows,
                flush_interval: self.flush_interval,
                insert_interval: self.insert_interval,
                insert_max_bytes: self.insert_max_bytes,
                wal: obleth_ledger::wal::WalConfig {
                    segment_bytes: self.wal_segment_bytes,
                    max_bytes: self.wal_max_bytes,
                    fsync,
                },
                on_full,
                ..defaults
            },
        })
    }
}

/// The effective configuration with secrets redacted, for `obleth config check`.
#[derive(Serialize)]
pub struct Redacted<'a> {
    listen_data: String,
    listen_admin: String,
    listen_metrics: String,
    admin_token: &'a str,
    database_url: String,
    database_migrate: bool,
    upstream_base_url: Option<&'a str>,
    upstream_api_key: &'a str,
    upstream_allowed_hosts: Vec<String>,
    admission_mode: obleth_scheduler::core::Mode,
    max_in_flight: u32,
    key_cache_ttl: String,
    budget_store: &'static str,
    budget_redis_url: Option<String>,
    ledger_backend: String,
    ledger_wal_dir: String,
    metrics_token: &'a str,
}

impl Config {
    pub fn redacted(&self) -> Redacted<'_> {
        let secret = |s: &Option<SecretString>| if s.is_some() { "[set]" } else { "[not set]" };
        Redacted {
            listen_data: self.listen.data.to_string(),
            listen_admin: self.listen.admin.to_string(),
            listen_metrics: self.listen.metrics.to_string(),
            admin_token: secret(&self.admin_token),
            database_url: obleth_core::redact_url(&self.database_url),
            database_migrate: self.schema == obleth_store::Schema::Migrate,
            upstream_base_url: self.upstream.base_url.as_deref(),
            upstream_api_key: secret(&self.upstream.api_key),
            upstream_allowed_hosts: self.upstream.allowed_hosts.iter().map(ToString::to_string).collect(),
            admission_mode: self.admission.core.mode,
            max_in_flight: self.admission.core.slots,
            key_cache_ttl: humantime_serde::re::humantime::format_duration(self.keys.ttl).to_string(),
            budget_store: if self.budget.redis.is_some() { "redis" } else { "memory" },
            budget_redis_url: self.budget.redis.as_ref().map(|r| r.redacted_url()),
            ledger_backend: match &self.ledger.backend {
                LedgerBackend::Sqlite(url) => url.clone(),
                LedgerBackend::ClickHouse(c) => format!("clickhouse {} ({}.{})", c.url, c.database, c.table),
            },
            ledger_wal_dir: self.ledger.wal_dir.display().to_string(),
            metrics_token: secret(&self.metrics.token),
        }
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
