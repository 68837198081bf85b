//! Wiring: builds the gateway from the configuration and runs the three listeners.
//!
//! This is the one place that chooses implementations: the SQLite store, the fairshare
//! scheduler, the budget store (in-process or Redis) and the ledger (SQLite or
//! ClickHouse, behind its write-ahead log).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use metrics_exporter_prometheus::PrometheusHandle;
use obleth_budget::{Budget, BudgetStore, Failover, MemoryBudget, RedisBudget, SystemClock};
use obleth_core::upstream::{ApiBase, UpstreamPolicy};
use obleth_core::{ChangeNotifier, UsageSink};
use obleth_gateway::listener::{self, Connections};
use obleth_gateway::{Gateway, GatewayConfig, Identity, Registry, upstream};
use obleth_ledger::clickhouse::ClickHouse;
use obleth_ledger::sqlite::SqliteLedger;
use obleth_ledger::wal::fs::DirFs;
use obleth_ledger::{Filter, GroupBy, Ledger, LedgerBackend};
use obleth_scheduler::Fairshare;
use obleth_store::ControlPlaneStore;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::client::{AdminConn, call};
use crate::config::{Config, LedgerBackend as LedgerBackendConfig};
use crate::telemetry;

/// How long open connections (e.g. long streams) may drain after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The bound listeners of a gateway.
pub struct Listeners {
    /// One data-plane listener per data-plane thread, all on the same address
    /// (`SO_REUSEPORT`, so the kernel spreads connections between them).
    pub data: Vec<std::net::TcpListener>,
    pub admin: TcpListener,
    /// `None` when metrics are not exported (tests).
    pub metrics: Option<(TcpListener, PrometheusHandle)>,
}

impl Listeners {
    /// Binds the configured addresses.
    pub async fn bind(config: &Config, metrics: Option<PrometheusHandle>) -> anyhow::Result<Listeners> {
        let bind = |addr: SocketAddr, what: &'static str| async move {
            TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen on {addr} for the {what}; is another process using it? (see OBLETH_LISTEN_*)")
            })
        };
        let data = bind_data(config.listen.data, config.listen.data_threads).with_context(|| {
            format!(
                "cannot listen on {} for the data plane; is another process using it? (see OBLETH_LISTEN_DATA)",
                config.listen.data
            )
        })?;
        Ok(Listeners {
            data,
            admin: bind(config.listen.admin, "admin API").await?,
            metrics: match metrics {
                Some(h) => Some((bind(config.listen.metrics, "metrics endpoint").await?, h)),
                None => None,
            },
        })
    }
}

/// Binds `threads` listeners to `addr` with `SO_REUSEPORT` (all on the port the first one
/// got, when `addr` asks for port 0).
///
/// `SO_REUSEPORT` would also let a second process bind the same port and silently take a
/// share of the connections, so the port is first bound once without it: that fails if
/// anyone (another obleth included) is listening there.
pub fn bind_data(addr: SocketAddr, threads: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    if addr.port() != 0 {
        let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        probe.set_reuse_address(true)?;
        probe.bind(&addr.into()).map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => std::io::Error::new(
                e.kind(),
                format!("{addr} is already in use by another process (is another obleth running?)"),
            ),
            _ => e,
        })?;
    }
    let mut addr = addr;
    let mut listeners = Vec::with_capacity(threads);
    for _ in 0..threads.max(1) {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        let listener: std::net::TcpListener = socket.into();
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// A running gateway.
pub struct Running {
    pub data_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub store: Arc<dyn ControlPlaneStore>,
    pub scheduler: Arc<Fairshare>,
    /// `None` when the caller supplied its own usage sink.
    pub ledger: Option<Ledger>,
    /// This pod's share of the cluster's slots (`None` for a single gateway).
    pub slot_share: Option<Arc<obleth_cluster::SlotShare>>,
    tasks: JoinSet<std::io::Result<()>>,
}

impl Running {
    /// Waits until every listener has stopped (after `shutdown` was cancelled), then
    /// flushes the ledger: the last requests' rows are recorded by then.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut result = Ok(());
        while let Some(res) = self.tasks.join_next().await {
            if let Err(e) = res.context("listener task panicked").and_then(|r| r.context("listener failed")) {
                result = Err(e);
            }
        }
        if let Some(share) = &self.slot_share {
            // Drained: the other pods can take this pod's slots now rather than after its TTL.
            share.leave().await;
        }
        if let Some(ledger) = &self.ledger
            && ledger.close(LEDGER_FLUSH_TIMEOUT).await
        {
            tracing::info!("usage ledger flushed");
        }
        result
    }
}

/// How long shutdown waits for the ledger database to take the last rows (they stay in
/// the write-ahead log otherwise, and are replayed at the next start).
const LEDGER_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound on each call to the shared key cache: Redis answers in well under a
/// millisecond; a slower answer is treated as a miss and the store is read instead.
const SHARED_CACHE_TIMEOUT: Duration = Duration::from_millis(100);

/// Builds the gateway and starts serving on `listeners` until `shutdown` is cancelled.
/// Usage rows go to the configured ledger, or to `sink` when one is given (tests).
pub async fn start(
    config: &Config,
    listeners: Listeners,
    sink: Option<Arc<dyn UsageSink>>,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    let admin_token = config.admin_token.clone().context(
        "admin.token is required: set OBLETH_ADMIN_TOKEN (32+ characters, e.g. `openssl rand -hex 24`) or [admin] token in the config file",
    )?;
    if config.redis_tls != obleth_redis::TlsFiles::default() {
        obleth_redis::set_tls(&config.redis_tls)?;
    }
    let (store, _) = obleth_store::open(&config.database_url, config.schema).await.with_context(|| {
        format!("opening the control-plane database {}", obleth_core::redact_url(&config.database_url))
    })?;
    let guard = obleth_store::StoreGuard::new(store.clone(), config.store_guard.clone());
    let cache_keys = config
        .cluster
        .as_ref()
        .and_then(|c| c.shared_cache.map(|ttl| (ttl, obleth_cluster::CacheKeys::new(format!("{}:idc:", c.channel)))));
    let shared_cache: Option<Arc<dyn obleth_core::SharedCache>> = match (&config.cluster, &cache_keys) {
        (Some(cluster), Some((ttl, keys))) => Some(Arc::new(
            obleth_cluster::RedisSharedCache::new(obleth_cluster::SharedCacheConfig {
                redis_url: cluster.redis_url.expose_secret().to_owned(),
                keys: keys.clone(),
                ttl: *ttl,
                negative_ttl: config.keys.negative_ttl,
                timeout: SHARED_CACHE_TIMEOUT,
            })
            .context("starting the shared key cache")?,
        )),
        _ => None,
    };
    let identity = Arc::new(Identity::new(guard.clone(), shared_cache, &config.keys));
    let registry = Arc::new(Registry::new(guard.clone(), config.keys.ttl, config.keys.stale_ttl));
    let fairshare = Arc::new(Fairshare::new(config.admission.clone()));
    for group in store.list_groups().await.context("loading fairshare groups")? {
        fairshare.set_group_weight(&group.name, group.weight);
        let limits =
            obleth_scheduler::core::GroupLimits { reserved_slots: group.reserved_slots, max_slots: group.max_slots };
        fairshare.set_group_limits(&group.name, limits);
    }
    let (budget_store, in_process) = budget_store(config)?;
    let budget = Arc::new(Budget::new(budget_store));
    let (sink, ledger) = match sink {
        Some(sink) => (sink, None),
        None => {
            let ledger = start_ledger(&config.ledger).await?;
            if let Some(memory) = &in_process {
                seed_spend(memory, &ledger).await;
            }
            (Arc::new(ledger.clone()) as Arc<dyn UsageSink>, Some(ledger))
        }
    };
    // Every finished request is also counted in the last minutes of traffic, for the
    // console's overview (no database read per page view).
    let pulse = Arc::new(obleth_core::pulse::Pulse::new());
    let sink: Arc<dyn UsageSink> = Arc::new(obleth_core::pulse::PulseSink { pulse: pulse.clone(), inner: sink });
    // The default encoding's table (3 ms and 0.5 MiB for cl100k_base, 11 ms and 1 MiB for
    // o200k_base) is built ahead of the first request; any other encoding is built when
    // a model first needs it.
    tokio::task::spawn_blocking({
        let encoding = config.budget.default_encoding;
        move || obleth_gateway::estimate::warm(encoding)
    });
    let data_addr = listeners.data.first().context("no data-plane listener")?.local_addr()?;
    let admin_addr = listeners.admin.local_addr()?;
    let metrics_port = listeners.metrics.as_ref().map(|(l, _)| l.local_addr()).transpose()?.map(|a| a.port());
    let upstream_policy =
        Arc::new(upstream_policy(config, [data_addr.port(), admin_addr.port()].into_iter().chain(metrics_port))?);
    let mut receivers = vec![
        identity.clone() as Arc<dyn ChangeNotifier>,
        registry.clone() as Arc<dyn ChangeNotifier>,
        fairshare.clone() as Arc<dyn ChangeNotifier>,
        budget.clone() as Arc<dyn ChangeNotifier>,
    ];
    let mcp = match &config.mcp {
        Some((path, settings)) => {
            let hub = mcp_hub(config, settings, &store, &upstream_policy, sink.clone()).await;
            receivers.push(Arc::new(crate::mcp::McpChanges(hub.0.clone())));
            Some((path.clone(), hub))
        }
        None => None,
    };
    let mut notifier: Arc<dyn ChangeNotifier> = Arc::new(receivers);
    let mut slot_share = None;
    if let Some(cluster) = &config.cluster {
        if let Some(slots) = &cluster.slots {
            // admission.max_in_flight is the cluster's cap: this pod takes its share.
            let share = obleth_cluster::SlotShare::start(
                obleth_cluster::SlotShareConfig {
                    redis_url: cluster.redis_url.expose_secret().to_owned(),
                    key: format!("{}:slots", cluster.channel),
                    pod: cluster.pod_name.clone(),
                    cluster_slots: config.admission.core.slots,
                    heartbeat: slots.heartbeat,
                    ttl: slots.pod_ttl,
                    fallback_slots: slots.fallback_slots,
                },
                fairshare.clone(),
            )
            .await
            .context("joining the cluster's slot pool")?;
            let status = share.status();
            tracing::info!(
                pods = status.pods,
                slots = status.slots,
                cluster_slots = status.cluster_slots,
                "the in-flight cap is shared with the other pods"
            );
            slot_share = Some(share);
        }
        if let Some(interval) = cluster.share_served {
            obleth_cluster::served::start(
                obleth_cluster::ServedShareConfig {
                    redis_url: cluster.redis_url.expose_secret().to_owned(),
                    key: format!("{}:served", cluster.channel),
                    interval,
                },
                fairshare.clone(),
            )
            .context("sharing served work with the other pods")?;
        }
        // Changes made through this pod reach the others, and theirs reach this one.
        let bus = obleth_cluster::ChangeBus::start(
            obleth_cluster::ChangeBusConfig {
                redis_url: cluster.redis_url.expose_secret().to_owned(),
                channel: cluster.channel.clone(),
                pod: cluster.pod_name.clone(),
                resync_interval: cluster.resync_interval,
                cache: cache_keys.as_ref().map(|(_, keys)| keys.clone()),
            },
            notifier,
            store.clone(),
        )
        .context("starting the cluster change channel")?;
        tracing::info!(pod = %cluster.pod_name, channel = %cluster.channel, "control-plane changes are shared with the other pods over Redis");
        notifier = bus;
    }
    let mcp_hub = mcp.as_ref().map(|(_, (hub, _))| hub.clone());
    let mcp = mcp.map(|(path, (hub, audit))| {
        audit.connect(notifier.clone());
        let identity = Arc::new(crate::mcp::McpIdentity(identity.clone()));
        (path, obleth_mcp::McpGateway::new(hub, identity, shutdown.clone()))
    });
    let gateway_config = GatewayConfig {
        default_upstream: match &config.upstream.base_url {
            Some(url) => Some(
                obleth_core::upstream::ApiBase::parse(url)
                    .map_err(|e| anyhow::anyhow!("upstream.base_url is not a valid upstream URL: {e}"))?,
            ),
            None => None,
        },
        upstream_api_key: config.upstream.api_key.clone(),
        upstream_policy: upstream_policy.clone(),
        forward_client_authorization: config.upstream.forward_client_authorization,
        response_timeout: config.upstream.response_timeout,
        stream_idle_timeout: config.upstream.stream_idle_timeout,
        max_body_bytes: config.max_body_bytes,
        max_response_bytes: config.max_response_bytes,
        max_sse_event_bytes: config.max_sse_event_bytes,
        default_encoding: config.budget.default_encoding,
        default_output_tokens: config.budget.default_output_tokens,
    };

    let mut tasks = JoinSet::new();
    // The data plane runs thread-per-core: each thread has its own current-thread runtime,
    // its own listener and its own upstream connection pool, so a request is handled on one
    // thread from accept to upstream and back, with no cross-thread wake-ups on the hot
    // path. The caches, the scheduler and the sink are shared (they are thread-safe).
    let data_connections = Connections::new(config.connections.data.clone());
    let admin_connections = Connections::new(config.connections.admin.clone());
    let metrics_connections = Connections::new(config.connections.metrics.clone());
    for (i, listener) in listeners.data.into_iter().enumerate() {
        let gateway = Gateway {
            config: gateway_config.clone(),
            identity: identity.clone(),
            registry: registry.clone(),
            admission: fairshare.clone(),
            budget: budget.clone(),
            sink: sink.clone(),
            client: upstream::client(config.upstream.connect_timeout, upstream_policy.clone()),
        };
        let done = spawn_data_thread(i, listener, gateway, mcp.clone(), data_connections.clone(), shutdown.clone())?;
        tasks.spawn(async move { done.await.unwrap_or_else(|_| Err(std::io::Error::other("data-plane thread died"))) });
    }
    let admin = obleth_admin::router(obleth_admin::AdminState {
        store: store.clone(),
        store_guard: guard.clone(),
        notifier,
        token: admin_token,
        admission: fairshare.clone(),
        budget: budget.clone(),
        ledger: ledger.clone().map(|l| Arc::new(l) as Arc<dyn obleth_core::ledger::UsageLedger>),
        upstream_policy,
        console: Arc::new(obleth_admin::ConsoleAuth::new(
            config.console.viewer_tokens.clone(),
            config.console.session_ttl,
            config.console.secure_cookie,
        )),
        lens: obleth_admin::Lens::new(fairshare.clone(), pulse.clone()),
        pulse,
        cluster: slot_share.clone().map(|s| s as Arc<dyn obleth_core::ClusterView>),
        shutdown: shutdown.clone(),
        mcp_separator: config
            .mcp
            .as_ref()
            .map_or(obleth_admin::DEFAULT_MCP_SEPARATOR.into(), |(_, mcp)| mcp.separator.clone().into()),
        mcp_stdio_commands: config
            .mcp
            .as_ref()
            .map(|(_, mcp)| mcp.stdio_commands.keys().cloned().collect())
            .unwrap_or_default(),
        mcp: mcp_hub.clone().map(|hub| hub as Arc<dyn obleth_mcp::McpStatus>),
    });
    tasks.spawn(listener::serve(listeners.admin, admin, admin_connections.clone(), drained(shutdown.clone())));
    let metrics_addr = match listeners.metrics {
        Some((listener, handle)) => {
            let addr = listener.local_addr()?;
            let scheduler = fairshare.clone();
            let budget = budget.clone();
            let ledger = ledger.clone();
            let mcp_hub = mcp_hub.clone();
            let mcp_gateway = mcp.as_ref().map(|(_, gateway)| gateway.clone());
            let series = config.metrics.series;
            let connections = [data_connections.clone(), admin_connections.clone(), metrics_connections.clone()];
            let render = move || {
                // Sampled gauges are refreshed first; the scheduler's per-tenant and
                // per-group families are rendered from the same snapshot, after the
                // registry's text (bounded, and gone with their tenant or group).
                for c in &connections {
                    c.publish();
                }
                let state = scheduler.state();
                obleth_scheduler::telemetry::publish(&state);
                if let Some(ledger) = &ledger {
                    obleth_ledger::telemetry::publish(&ledger.status());
                }
                let mcp_servers = mcp_hub.as_ref().map(|hub| obleth_mcp::McpStatus::servers(&**hub));
                if let Some(servers) = &mcp_servers {
                    obleth_mcp::telemetry::publish(servers);
                }
                if let Some(gateway) = &mcp_gateway {
                    obleth_mcp::telemetry::sessions(gateway.sessions());
                }
                let mut body = handle.render();
                if !body.is_empty() && !body.ends_with('\n') {
                    body.push('\n');
                }
                obleth_scheduler::telemetry::render(&state, series, &mut body);
                budget.render(series.tenants, &mut body);
                if let Some(servers) = &mcp_servers {
                    obleth_mcp::telemetry::render(servers, series.tenants, &mut body);
                }
                body
            };
            tasks.spawn(listener::serve(
                listener,
                telemetry::router(render, config.metrics.token.clone()),
                metrics_connections.clone(),
                drained(shutdown.clone()),
            ));
            Some(addr)
        }
        None => None,
    };
    telemetry::announce("data plane", data_addr);
    telemetry::announce("admin API", admin_addr);
    if let Some(addr) = metrics_addr {
        telemetry::announce("metrics", addr);
    }
    Ok(Running { data_addr, admin_addr, metrics_addr, store, scheduler: fairshare, ledger, slot_share, tasks })
}

/// Where models may send requests: `upstream.allowed_hosts`, never the gateway's own
/// listeners (`own_ports` on a loopback, unspecified or local address), link-local and
/// metadata addresses only when listed. The default upstream is the operator's own: it
/// needs no allowlist entry, but the other rules hold for it too, checked here when its
/// host is an address (a name is checked at every connection, like any other).
fn upstream_policy(config: &Config, own_ports: impl IntoIterator<Item = u16>) -> anyhow::Result<UpstreamPolicy> {
    let mut policy = UpstreamPolicy::new(config.upstream.allowed_hosts.clone())
        .with_own_ports(own_ports)
        .with_local_probe(is_local_address);
    if let Some(raw) = &config.upstream.base_url {
        let base = ApiBase::parse(raw).map_err(|e| anyhow::anyhow!("upstream.base_url {e}"))?;
        policy = policy.trusting(&base);
        if let Some(Err(refusal)) = policy.check_literal(&base) {
            anyhow::bail!("upstream.base_url {base} is refused: {refusal}");
        }
    }
    Ok(policy)
}

/// Whether `ip` is one of this host's addresses: the kernel lets a socket bind to an
/// address only if it is (no interface list to keep current, and nothing is sent).
fn is_local_address(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Runs one data-plane thread; the returned receiver yields its result when it stops.
fn spawn_data_thread(
    index: usize,
    listener: std::net::TcpListener,
    gateway: Gateway,
    mcp: Option<(String, Arc<obleth_mcp::McpGateway>)>,
    connections: Arc<Connections>,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<std::io::Result<()>>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("obleth-data-{index}"))
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread().enable_all().build().and_then(|rt| {
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener)?;
                    let budget = gateway.budget.clone();
                    let mut router = obleth_gateway::router(Arc::new(gateway));
                    if let Some((path, mcp)) = mcp {
                        router = router.merge(obleth_mcp::router(mcp, &path));
                    }
                    let served = listener::serve(listener, router, connections, shutdown.cancelled_owned()).await;
                    // Reconciles of requests that just ended run on this runtime: let them
                    // finish before it stops.
                    if !budget.drain(Duration::from_secs(5)).await {
                        tracing::warn!("budget reconciles still running at shutdown; their reservations will expire");
                    }
                    served
                })
            });
            let _ = tx.send(result);
        })
        .context("starting a data-plane thread")?;
    Ok(rx)
}

/// The MCP gateway's hub, loaded from the store (a failed load is logged: the hub
/// refuses every MCP request until a reload succeeds), and its audit of moved pins,
/// which is told the change channel once there is one.
async fn mcp_hub(
    config: &Config,
    settings: &obleth_mcp::McpConfig,
    store: &Arc<dyn obleth_store::ControlPlaneStore>,
    policy: &Arc<UpstreamPolicy>,
    sink: Arc<dyn UsageSink>,
) -> (Arc<obleth_mcp::Hub>, Arc<crate::mcp::PinAudit>) {
    let http = upstream::client(config.upstream.connect_timeout, policy.clone());
    let connector = obleth_mcp::upstream::Connector {
        http: Arc::new(crate::mcp::McpHttpClient(http)),
        stdio_commands: Arc::new(settings.stdio_commands.clone()),
    };
    let audit = Arc::new(crate::mcp::PinAudit::new(store.clone()));
    let parts = obleth_mcp::HubParts {
        store: store.clone(),
        connector,
        events: audit.clone(),
        sink,
        admission: crate::mcp::tool_call_queues(&config.admission),
    };
    let hub = obleth_mcp::Hub::new(parts, settings.clone());
    if let Err(e) = hub.reload().await {
        tracing::warn!(error = %e, "the MCP gateway's servers and grants could not be loaded; MCP requests are refused until they are");
    }
    crate::mcp::keep_fresh(&hub, config.keys.ttl);
    hub.watch_health(settings.health_interval);
    (hub, audit)
}

/// The budget store, and the in-process one again when it is that (to seed its spend).
type BudgetStores = (Arc<dyn BudgetStore>, Option<Arc<MemoryBudget>>);

/// The budget store the configuration asks for.
fn budget_store(config: &Config) -> anyhow::Result<BudgetStores> {
    let Some(redis) = &config.budget.redis else {
        let store = Arc::new(MemoryBudget::new(Arc::new(SystemClock), config.budget.reservation_ttl));
        // Idle tenants' dangling reservations expire without waiting for their next request.
        let sweeper = Arc::downgrade(&store);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                let Some(store) = sweeper.upgrade() else { break };
                store.sweep();
            }
        });
        return Ok((store.clone(), Some(store)));
    };
    // Connects lazily: a gateway whose Redis is down starts anyway, on its local share.
    let shared = RedisBudget::connect_lazy(redis.clone())
        .with_context(|| format!("configuring the Redis budget store at {}", redis.redacted_url()))?;
    tracing::info!(redis = %redis.redacted_url(), "budgets are kept in Redis, shared by every pod");
    Ok((Arc::new(Failover::new(Arc::new(shared), config.budget.failover.clone())), None))
}

/// In-process budgets start at zero: seed each tenant's monthly and lifetime spend from
/// the ledger (after it replays what a previous process left in its log), so that a
/// restart does not hand out a spent budget again. Bounded: a ledger database that is
/// away leaves the counts at zero, with a warning.
async fn seed_spend(memory: &MemoryBudget, ledger: &Ledger) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while ledger.status().pending_batches > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let now = obleth_core::now_millis();
    let to_ms = now.max(0) as u64 + 1;
    let month = obleth_budget::calendar::month_start(now).max(0) as u64;
    let backend = ledger.backend();
    let lifetime = backend.totals(&Filter { from_ms: 0, to_ms, ..Filter::default() }, GroupBy::Tenant).await;
    let monthly = backend.totals(&Filter { from_ms: month, to_ms, ..Filter::default() }, GroupBy::Tenant).await;
    match (lifetime, monthly) {
        (Ok(lifetime), Ok(monthly)) => {
            let monthly: std::collections::HashMap<String, f64> =
                monthly.into_iter().map(|t| (t.key, t.cost)).collect();
            let mut seeded = 0;
            for t in lifetime.into_iter().filter(|t| !t.key.is_empty() && t.cost > 0.0) {
                let this_month = monthly.get(&t.key).copied().unwrap_or(0.0);
                memory.seed(&t.key, obleth_budget::to_nanos(this_month), obleth_budget::to_nanos(t.cost));
                seeded += 1;
            }
            tracing::info!(tenants = seeded, "in-process spend budgets seeded from the usage ledger");
        }
        (Err(e), _) | (_, Err(e)) => tracing::warn!(
            error = %e,
            "cannot read spend from the usage ledger: in-process spend budgets start from zero"
        ),
    }
}

/// Opens the configured ledger and its write-ahead log (replaying what a previous process
/// left). A ClickHouse that is down does not stop the start: rows wait in the log.
async fn start_ledger(config: &crate::config::Ledger) -> anyhow::Result<Ledger> {
    let backend: Arc<dyn LedgerBackend> = match &config.backend {
        LedgerBackendConfig::Sqlite(url) => {
            Arc::new(SqliteLedger::connect(url).await.with_context(|| format!("opening the usage ledger {url}"))?)
        }
        LedgerBackendConfig::ClickHouse(c) => {
            tracing::info!(url = %c.url, table = %format!("{}.{}", c.database, c.table), "usage rows go to ClickHouse");
            Arc::new(ClickHouse::new(c.clone()).context("configuring the ClickHouse ledger")?)
        }
    };
    let fs = DirFs::new(&config.wal_dir)
        .with_context(|| format!("creating the ledger's write-ahead log directory {}", config.wal_dir.display()))?;
    let (ledger, recovered) = Ledger::start(backend, Arc::new(fs), config.tuning.clone())
        .with_context(|| format!("opening the ledger's write-ahead log in {}", config.wal_dir.display()))?;
    tracing::debug!(?recovered, "ledger write-ahead log opened");
    Ok(ledger)
}

fn drained(token: CancellationToken) -> tokio_util::sync::WaitForCancellationFutureOwned {
    token.cancelled_owned()
}

/// `obleth serve`.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    if config.upstream.base_url.is_none() {
        tracing::warn!("no upstream.base_url (OBLETH_UPSTREAM_BASE_URL): only models with an api_base will work");
    }
    let metrics = telemetry::install_recorder()?;
    let listeners = Listeners::bind(&config, Some(metrics)).await?;
    let shutdown = CancellationToken::new();
    let running = start(&config, listeners, None, shutdown.clone()).await?;
    run_until_signal(running, shutdown).await
}

async fn run_until_signal(running: Running, shutdown: CancellationToken) -> anyhow::Result<()> {
    shutdown_signal().await;
    tracing::info!("shutting down; draining open requests for up to {}s", DRAIN_TIMEOUT.as_secs());
    shutdown.cancel();
    match tokio::time::timeout(DRAIN_TIMEOUT + LEDGER_FLUSH_TIMEOUT, running.wait()).await {
        Ok(res) => res,
        Err(_) => {
            tracing::warn!("drain timed out; exiting with requests still open");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

// === demo ===

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory for the demo's SQLite database (used when no database URL is configured).
    #[arg(long, default_value = "obleth-data")]
    pub data_dir: std::path::PathBuf,
    /// Address of the bundled mock backend.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub mock_listen: SocketAddr,
    /// Do not drive the demo's contention (a noisy batch tenant against a light
    /// interactive one).
    #[arg(long)]
    pub no_traffic: bool,
}

/// The demo's slot pool when none is configured: small enough that its two tenants
/// contend, so the scheduler has something to decide.
const DEMO_SLOTS: u32 = 8;

/// `obleth demo`: the gateway on the embedded store in front of the bundled mock.
pub async fn demo(mut config: Config, args: DemoArgs) -> anyhow::Result<()> {
    if config.database_url == "sqlite://obleth.db" {
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("creating the demo data directory {}", args.data_dir.display()))?;
        config.database_url = format!("sqlite://{}", args.data_dir.join("demo.db").display());
    }
    // The demo's usage ledger lives beside its database, unless configured elsewhere.
    if matches!(&config.ledger.backend, LedgerBackendConfig::Sqlite(url) if url == crate::config::DEFAULT_LEDGER_URL) {
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("creating the demo data directory {}", args.data_dir.display()))?;
        config.ledger.backend =
            LedgerBackendConfig::Sqlite(format!("sqlite://{}", args.data_dir.join("usage.db").display()));
    }
    if config.ledger.wal_dir.as_os_str() == crate::config::DEFAULT_WAL_DIR {
        config.ledger.wal_dir = args.data_dir.join("wal");
    }
    let token = match &config.admin_token {
        Some(t) => t.clone(),
        // 32 random characters: what `admin.token` asks of an operator's token too.
        None => SecretString::from(format!("obl-admin-{}{}", obleth_core::new_id(""), obleth_core::new_id(""))),
    };
    config.admin_token = Some(token.clone());
    if !args.no_traffic && config.admission.core.slots == crate::config::DEFAULT_MAX_IN_FLIGHT {
        config.admission.core.slots = DEMO_SLOTS;
    }

    let shutdown = CancellationToken::new();
    let mock_listener = TcpListener::bind(args.mock_listen).await.context("binding the mock backend")?;
    let mock_addr = mock_listener.local_addr()?;
    let mock_config = obleth_mock::MockConfig {
        ttft: Duration::from_millis(30),
        itl: Duration::from_millis(15),
        max_num_seqs: 16,
        ..obleth_mock::MockConfig::default()
    };
    tokio::spawn(obleth_mock::serve(mock_listener, mock_config, drained(shutdown.clone())));
    config.upstream.base_url = Some(format!("http://{mock_addr}/v1"));

    let metrics = telemetry::install_recorder()?;
    let listeners = Listeners::bind(&config, Some(metrics)).await?;
    let running = start(&config, listeners, None, shutdown.clone()).await?;

    // Seed through the admin API, as an operator would.
    let conn = AdminConn {
        admin_url: format!("http://{}", loopback(running.admin_addr)),
        admin_token: token.expose_secret().to_owned(),
    };
    if call(&conn, "GET", "/api/v1/tenants/demo", None).await.is_err() {
        call(&conn, "POST", "/api/v1/tenants", Some(json!({"name": "demo", "weight": 10, "group": "default"}))).await?;
    }
    if call(&conn, "GET", "/api/v1/models/mock-model", None).await.is_err() {
        call(
            &conn,
            "POST",
            "/api/v1/models",
            Some(json!({"model_name": "mock-model", "input_cost_per_token": 0.0000005, "output_cost_per_token": 0.0000015, "context_window": 32768})),
        )
        .await?;
    }
    let key = call(&conn, "POST", "/api/v1/tenants/demo/keys", Some(json!({"name": "demo"}))).await?;
    let secret = key["secret"].as_str().unwrap_or_default();
    let data = loopback(running.data_addr);
    let traffic = if args.no_traffic { String::new() } else { demo_traffic(&conn, data, &shutdown).await? };
    println!(
        r#"
obleth demo is running.

  data plane   http://{data}/v1       (OpenAI-compatible)
  admin API    http://{admin}         (token: {token})
  metrics      http://{metrics}/metrics
  mock backend http://{mock_addr}/v1  (16 sequences, 30 ms to first token, 15 ms per token)

Open the console:

  http://{admin}/ui/
  sign in with the admin token: {token}
{traffic}
A tenant 'demo' and the model 'mock-model' are registered. A new key was created for you:

  export OPENAI_API_KEY={secret}
  export OPENAI_BASE_URL=http://{data}/v1

Try:

  curl -sN http://{data}/v1/chat/completions \
    -H "Authorization: Bearer $OPENAI_API_KEY" -H "Content-Type: application/json" \
    -d '{{"model": "mock-model", "stream": true, "messages": [{{"role": "user", "content": "Hello, obleth"}}]}}'

The admin API and the metrics listen on this host only; to reach them from elsewhere, start
the demo with OBLETH_LISTEN_ADMIN=0.0.0.0:9090 OBLETH_LISTEN_METRICS=0.0.0.0:9091.

Manage it with the CLI (OBLETH_ADMIN_TOKEN={token} OBLETH_ADMIN_URL=http://{admin}):

  obleth tenants list        obleth keys list --tenant demo        obleth models list

Press Ctrl-C to stop.
"#,
        admin = loopback(running.admin_addr),
        token = token.expose_secret(),
        metrics = running.metrics_addr.map(|a| loopback(a).to_string()).unwrap_or_default(),
    );
    run_until_signal(running, shutdown).await
}

/// Seeds the two demo tenants and starts their load; returns what to print about it.
async fn demo_traffic(conn: &AdminConn, data: SocketAddr, stop: &CancellationToken) -> anyhow::Result<String> {
    let tenants = [
        // name, weight, clients, max_tokens, pause
        ("batch", 1, 12, 96, Duration::ZERO),
        ("interactive", 4, 3, 24, Duration::from_millis(300)),
    ];
    for (name, weight, concurrency, max_tokens, pause) in tenants {
        let path = format!("/api/v1/tenants/{name}");
        if call(conn, "GET", &path, None).await.is_err() {
            call(conn, "POST", "/api/v1/tenants", Some(json!({"name": name, "weight": weight}))).await?;
        }
        let key = call(conn, "POST", &format!("{path}/keys"), Some(json!({"name": "demo traffic"}))).await?;
        let key = key["secret"].as_str().context("the admin API returned no key secret")?.to_owned();
        crate::traffic::spawn(
            data,
            "mock-model",
            crate::traffic::Load { key, concurrency, max_tokens, pause },
            stop.clone(),
        );
    }
    Ok(format!(
        "
Demo traffic is running: 'batch' (weight 1, 12 clients, long answers) keeps a queue
against 'interactive' (weight 4, 3 clients, short answers) on a pool of {DEMO_SLOTS} slots.
In the Scheduler lens, interactive is far below its weighted share, so its requests
take the next free slot ahead of batch's queue; batch fills the rest of the pool.
Start with --no-traffic to turn it off.
"
    ))
}

/// A wildcard bind address, shown as loopback so the printed URLs work as typed.
fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() { SocketAddr::from(([127, 0, 0, 1], addr.port())) } else { addr }
}

// === mock ===

#[derive(Debug, Args)]
pub struct MockArgs {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// Concurrent sequences on the simulated GPU (0 = unlimited).
    #[arg(long, default_value_t = 64)]
    pub max_num_seqs: usize,
    /// Requests allowed to wait beyond capacity before 503 (0 = unbounded).
    #[arg(long, default_value_t = 0)]
    pub max_waiting: usize,
    /// Time to first token, milliseconds.
    #[arg(long, default_value_t = 20.0)]
    pub ttft_ms: f64,
    /// Added prefill time per prompt token, microseconds.
    #[arg(long, default_value_t = 0.0)]
    pub prefill_us_per_token: f64,
    /// Time per output token, milliseconds.
    #[arg(long, default_value_t = 10.0)]
    pub itl_ms: f64,
    /// Output length when the request sets no max_tokens.
    #[arg(long, default_value_t = 16)]
    pub default_output_tokens: u32,
    /// Models listed by /v1/models (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "mock-model")]
    pub models: Vec<String>,
    /// Probability of an injected 500.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Probability of an injected stall.
    #[arg(long, default_value_t = 0.0)]
    pub stall_rate: f64,
    /// Probability of a stream cut halfway.
    #[arg(long, default_value_t = 0.0)]
    pub abort_rate: f64,
    /// Never report usage.
    #[arg(long)]
    pub omit_usage: bool,
    /// Seed of the fault draws and output text.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Delay of each list answered by the MCP server at /mcp (tools, resources, prompts).
    #[arg(long, default_value_t = 0.0)]
    pub mcp_list_delay_ms: f64,
}

/// `obleth mock`.
pub async fn mock(args: MockArgs) -> anyhow::Result<()> {
    let ms = |v: f64| Duration::from_secs_f64(v.max(0.0) / 1000.0);
    for (name, p) in
        [("--error-rate", args.error_rate), ("--stall-rate", args.stall_rate), ("--abort-rate", args.abort_rate)]
    {
        anyhow::ensure!((0.0..=1.0).contains(&p), "{name} must be between 0 and 1");
    }
    let config = obleth_mock::MockConfig {
        max_num_seqs: args.max_num_seqs,
        max_waiting: args.max_waiting,
        ttft: ms(args.ttft_ms),
        prefill_per_token: Duration::from_secs_f64(args.prefill_us_per_token.max(0.0) / 1e6),
        itl: ms(args.itl_ms),
        default_output_tokens: args.default_output_tokens,
        models: args.models,
        error_rate: args.error_rate,
        stall_rate: args.stall_rate,
        abort_rate: args.abort_rate,
        omit_usage: args.omit_usage,
        seed: args.seed,
        mcp_list_delay: ms(args.mcp_list_delay_ms),
        ..obleth_mock::MockConfig::default()
    };
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
    telemetry::announce("mock backend", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(obleth_mock::serve(listener, config, drained(shutdown.clone())));
    shutdown_signal().await;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    Ok(())
}
