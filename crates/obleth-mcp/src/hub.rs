//! The gateway's view of its upstream servers: their configuration, live sessions,
//! last listings, the pins of their tools, and every grant.
//!
//! Listings are fetched on demand and kept for `list_cache_ttl`, or until the upstream
//! says a list changed. A refresh runs as a task of its own, one at a time per server:
//! a caller waits for it at most the server's `list_timeout_ms` and then leaves the
//! server out, while the refresh goes on and serves the next caller.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use obleth_core::admission::Admission;
use obleth_core::{UsageSink, now_millis};
use obleth_store::{McpServer, McpStore, McpToolPin};
use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};
use serde::Serialize;

use crate::grants::{GrantIndex, GrantRow};
use crate::pin::{self, Observed, PinHash, PinRow};
use crate::upstream::{Connector, Link, ListKind};

/// Settings of the MCP gateway (`[mcp]` in the configuration).
#[derive(Debug, Clone)]
pub struct McpConfig {
    /// Between a server's and a tool's name: `server__tool`.
    pub separator: String,
    /// How long a listing is served without asking the upstream again.
    pub list_cache_ttl: Duration,
    /// Largest request body on `/mcp`.
    pub max_body_bytes: usize,
    /// `Host` values accepted on `/mcp` (DNS-rebinding protection); empty: any.
    pub allowed_hosts: Vec<String>,
    /// Browser origins accepted on `/mcp`; empty: a request with an `Origin` is refused.
    pub allowed_origins: Vec<String>,
    /// A client session idle this long is closed.
    pub session_idle_timeout: Duration,
    /// Most client sessions held at once (the oldest idle ones go first).
    pub max_sessions: u64,
    /// How often each connected upstream is pinged; one that does not answer is left
    /// out of listings until it does.
    pub health_interval: Duration,
    /// `[mcp.stdio.commands]`: the programs stdio servers may run, by name.
    pub stdio_commands: BTreeMap<String, Vec<String>>,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            separator: crate::names::DEFAULT_SEPARATOR.to_owned(),
            list_cache_ttl: Duration::from_secs(60),
            max_body_bytes: 4 * 1024 * 1024,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            session_idle_timeout: Duration::from_secs(300),
            max_sessions: 10_000,
            health_interval: Duration::from_secs(2),
            stdio_commands: BTreeMap::new(),
        }
    }
}

/// What an upstream served at its last listing.
#[derive(Debug)]
pub struct Listing {
    /// Each tool with the hash of its definition.
    pub tools: Vec<(Tool, PinHash)>,
    pub resources: Vec<Resource>,
    pub templates: Vec<ResourceTemplate>,
    pub prompts: Vec<Prompt>,
    pub at: Instant,
}

impl Listing {
    pub fn tool(&self, name: &str) -> Option<&(Tool, PinHash)> {
        self.tools.iter().find(|(t, _)| t.name == name)
    }
}

/// How an upstream server is doing, for the admin API and metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Health {
    pub up: bool,
    /// The last failure to connect or list, if the server is down.
    pub last_error: Option<String>,
    pub last_listed_at: Option<obleth_core::UnixMillis>,
    pub tools: usize,
    pub protocol_version: Option<String>,
}

/// Makes a server's fair queue for tool calls, with its concurrency cap as the slots
/// (the binary's scheduler).
pub type AdmissionFactory = Arc<dyn Fn(u32) -> Arc<dyn Admission> + Send + Sync>;

/// The longest an upstream session may take to open (a process to start, then
/// `server/discover`, which rmcp gives 10 s before it falls back to `initialize`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

type Refresh = Shared<BoxFuture<'static, Result<Arc<Listing>, Arc<str>>>>;

/// One upstream server as this pod holds it.
pub struct Server {
    pub config: Arc<McpServer>,
    /// Tool calls in flight to this server, at most `max_concurrency`, queued fairly.
    pub admission: Arc<dyn Admission>,
    link: tokio::sync::Mutex<Option<Arc<Link>>>,
    listing: RwLock<Option<Arc<Listing>>>,
    stale: AtomicBool,
    refreshing: Mutex<Option<Refresh>>,
    health: Mutex<Health>,
    /// After a failed connect: no new attempt before the instant, and the next wait.
    backoff: Mutex<Option<(Instant, Duration)>>,
}

impl Server {
    fn new(config: McpServer, admission: &AdmissionFactory) -> Arc<Server> {
        Arc::new(Server {
            admission: admission(config.max_concurrency),
            config: Arc::new(config),
            link: tokio::sync::Mutex::new(None),
            listing: RwLock::new(None),
            stale: AtomicBool::new(true),
            refreshing: Mutex::new(None),
            health: Mutex::new(Health::default()),
            backoff: Mutex::new(None),
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn health(&self) -> Health {
        lock(&self.health).clone()
    }

    /// The last listing, if it is younger than `ttl` and nothing announced a change.
    fn fresh(&self, ttl: Duration) -> Option<Arc<Listing>> {
        // A session that ended (the process died, the stream closed) makes the listing
        // stale: the server is asked again, and left out if it does not answer.
        let closed = self.link.try_lock().is_ok_and(|l| l.as_ref().is_none_or(|l| l.is_closed()));
        if closed || self.stale.load(Ordering::Acquire) {
            return None;
        }
        read(&self.listing).clone().filter(|l| l.at.elapsed() < ttl)
    }

    fn down(&self, error: String) {
        let mut health = lock(&self.health);
        health.up = false;
        health.last_error = Some(error);
    }
}

/// One server as this pod sees it: for the admin API's health and the metrics.
#[derive(Debug, Clone, Serialize)]
pub struct ServerStatus {
    pub name: String,
    pub enabled: bool,
    #[serde(flatten)]
    pub health: Health,
    /// Tool calls running upstream now, and waiting in the server's fair queue.
    pub in_flight: u32,
    pub queued: usize,
    pub max_concurrency: u32,
    /// Tools whose served definition waits for an operator's approval.
    pub pending_approval: usize,
    /// The tenants of the server's fair queue with calls in flight or waiting, or a
    /// share of its recent call time.
    pub tenants: Vec<TenantQueue>,
}

/// One tenant in a server's fair queue.
#[derive(Debug, Clone, Serialize)]
pub struct TenantQueue {
    pub tenant: String,
    pub in_flight: u32,
    pub queued: usize,
    /// The share of the server's call time the tenant is entitled to (while it has
    /// calls waiting), and the share it got (decayed over the scheduler's half-life).
    pub target_share: f64,
    pub actual_share: f64,
}

/// What this pod knows of its MCP servers (the admin API and `/metrics` read it).
pub trait McpStatus: Send + Sync + 'static {
    fn servers(&self) -> Vec<ServerStatus>;
}

impl McpStatus for Hub {
    fn servers(&self) -> Vec<ServerStatus> {
        let pins = read(&self.pins);
        self.servers()
            .into_iter()
            .map(|server| {
                let queue = server.admission.snapshot();
                let pending = pins.get(server.name()).map_or(0, |p| p.values().filter(|p| p.pending.is_some()).count());
                ServerStatus {
                    name: server.name().to_owned(),
                    enabled: server.config.enabled,
                    health: server.health(),
                    in_flight: queue.as_ref().map_or(0, |q| q.slots_used),
                    queued: queue.as_ref().map_or(0, |q| q.queued),
                    max_concurrency: server.config.max_concurrency,
                    pending_approval: pending,
                    tenants: queue.map(|q| tenant_queues(&q)).unwrap_or_default(),
                }
            })
            .collect()
    }
}

fn tenant_queues(snapshot: &obleth_core::scheduler::SchedulerSnapshot) -> Vec<TenantQueue> {
    snapshot
        .tenants
        .iter()
        .filter(|t| t.in_flight > 0 || t.queued > 0 || t.actual_share > 0.0)
        .map(|t| TenantQueue {
            tenant: t.name.clone(),
            in_flight: t.in_flight,
            queued: t.queued,
            target_share: t.target_share,
            actual_share: t.actual_share,
        })
        .collect()
}

/// Every server, grant and pin this pod knows.
pub struct Hub {
    pub(crate) store: Arc<dyn McpStore>,
    pub(crate) connector: Connector,
    pub config: McpConfig,
    pub(crate) sink: Arc<dyn UsageSink>,
    admission: AdmissionFactory,
    servers: RwLock<BTreeMap<String, Arc<Server>>>,
    /// `None` until loaded, and after a failed reload: nothing is allowed then. With
    /// the time of the read that made it.
    grants: RwLock<Option<(Arc<GrantIndex>, obleth_core::UnixMillis)>>,
    /// By server, then tool.
    pins: RwLock<HashMap<String, HashMap<String, PinRow>>>,
    /// Told of quarantines (audit trail, other pods).
    pub(crate) events: Arc<dyn PinEvents>,
    /// Client sessions (2025 protocol versions) to tell when what they may list changed.
    sessions: Mutex<Vec<rmcp::Peer<rmcp::RoleServer>>>,
    /// The same news for 2026-07-28 clients' `subscriptions/listen` streams.
    changes: tokio::sync::broadcast::Sender<()>,
    /// Each tenant's tool calls per minute and in flight, on this pod.
    pub limits: crate::limits::ToolLimits,
    me: Weak<Hub>,
}

/// What the hub is built from (the binary's implementations).
pub struct HubParts {
    pub store: Arc<dyn McpStore>,
    pub connector: Connector,
    pub events: Arc<dyn PinEvents>,
    /// Where tool calls' ledger rows go.
    pub sink: Arc<dyn UsageSink>,
    pub admission: AdmissionFactory,
}

/// Where the hub reports a tool whose definition moved (the binary writes the audit
/// trail and announces the change to the other pods).
pub trait PinEvents: Send + Sync + 'static {
    fn pin_changed(&self, server: &McpServer, pin: &McpToolPin, observed: &Observed);
}

impl Hub {
    pub fn new(parts: HubParts, config: McpConfig) -> Arc<Hub> {
        let HubParts { store, connector, events, sink, admission } = parts;
        Arc::new_cyclic(|me| Hub {
            store,
            connector,
            config,
            sink,
            admission,
            servers: RwLock::new(BTreeMap::new()),
            grants: RwLock::new(None),
            pins: RwLock::new(HashMap::new()),
            events,
            sessions: Mutex::new(Vec::new()),
            changes: tokio::sync::broadcast::channel(16).0,
            limits: crate::limits::ToolLimits::default(),
            me: me.clone(),
        })
    }

    /// Reads servers, grants and pins from the store. A failure leaves what was loaded
    /// before, except the grants, which are dropped (fail closed).
    pub async fn reload(&self) -> Result<(), obleth_store::StoreError> {
        let grants = self.reload_grants().await;
        self.reload_servers().await?;
        grants
    }

    /// Keeps a client session to tell of list changes (until it closes).
    pub fn watch(&self, peer: rmcp::Peer<rmcp::RoleServer>) {
        let mut sessions = lock(&self.sessions);
        sessions.retain(|p| !p.is_transport_closed());
        sessions.push(peer);
    }

    /// Tells every client session that the tool list may have changed: a grant, a
    /// server or a pin moved, or an upstream's list did. Sessions re-list and see only
    /// what they may call.
    pub fn announce(&self) {
        // No listener is not an error: nobody to tell.
        let _ = self.changes.send(());
        let sessions: Vec<_> = {
            let mut sessions = lock(&self.sessions);
            sessions.retain(|p| !p.is_transport_closed());
            sessions.clone()
        };
        if sessions.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            for peer in sessions {
                // A session that cannot take it is gone or slow; either way it re-lists.
                let _ = tokio::time::timeout(Duration::from_secs(1), peer.notify_tool_list_changed()).await;
            }
        });
    }

    /// News of list changes, for a `subscriptions/listen` stream.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<()> {
        self.changes.subscribe()
    }

    /// Reads every grant again; on failure nothing is allowed until a reload succeeds.
    pub async fn reload_grants(&self) -> Result<(), obleth_store::StoreError> {
        let read_at = now_millis();
        match self.store.mcp_grants().await {
            Ok(all) => {
                let rows: Vec<GrantRow> = all
                    .grants
                    .into_iter()
                    .map(|g| GrantRow { tenant_id: g.tenant_id, key_id: g.key_id, server: g.server, tool: g.tool })
                    .collect();
                let index = GrantIndex::new(&rows, &all.restricted_keys);
                let changed = read(&self.grants).as_ref().map(|(g, _)| &**g) != Some(&index);
                *write(&self.grants) = Some((Arc::new(index), read_at));
                if changed {
                    self.announce();
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "MCP grants could not be loaded: every MCP request is refused until they are");
                *write(&self.grants) = None;
                Err(e)
            }
        }
    }

    /// Reads the servers again: changed ones get a new session, removed ones lose theirs.
    pub async fn reload_servers(&self) -> Result<(), obleth_store::StoreError> {
        let rows = self.store.list_mcp_servers().await?;
        let mut pins = HashMap::new();
        for row in &rows {
            pins.insert(row.name.clone(), self.load_pins(&row.name).await?);
        }
        let mut changed = false;
        {
            let mut servers = write(&self.servers);
            let mut next = BTreeMap::new();
            for row in rows {
                let kept = servers.remove(&row.name).filter(|s| same_server(&s.config, &row));
                changed |= kept.is_none();
                next.insert(row.name.clone(), kept.unwrap_or_else(|| Server::new(row, &self.admission)));
            }
            changed |= !servers.is_empty();
            *servers = next;
        }
        changed |= *read(&self.pins) != pins;
        *write(&self.pins) = pins;
        if changed {
            self.announce();
        }
        Ok(())
    }

    /// Reads one server's pins again (another pod or an operator moved one).
    pub async fn reload_pins(&self, server: &str) -> Result<(), obleth_store::StoreError> {
        let pins = self.load_pins(server).await?;
        let previous = write(&self.pins).insert(server.to_owned(), pins.clone());
        if previous.as_ref() != Some(&pins) {
            self.announce();
        }
        Ok(())
    }

    async fn load_pins(&self, server: &str) -> Result<HashMap<String, PinRow>, obleth_store::StoreError> {
        let rows = self.store.list_mcp_pins(server).await?;
        Ok(rows.into_iter().map(|p| (p.tool.clone(), pin_row(&p))).collect())
    }

    /// The grants, if loaded.
    pub fn grants(&self) -> Option<Arc<GrantIndex>> {
        read(&self.grants).as_ref().map(|(g, _)| g.clone())
    }

    /// The grants that apply to `caller`: read again first when its key is newer than
    /// them (a rotated key's restrictions are copied in the rotation's transaction, and
    /// the news of it may not have arrived yet).
    pub async fn grants_for(&self, caller: &crate::McpCaller) -> Option<Arc<GrantIndex>> {
        let read_at = read(&self.grants).as_ref().map(|(_, at)| *at);
        if read_at.is_some_and(|at| caller.key_created_at >= at) {
            let _ = self.reload_grants().await;
        }
        self.grants()
    }

    pub fn server(&self, name: &str) -> Option<Arc<Server>> {
        read(&self.servers).get(name).cloned()
    }

    pub fn servers(&self) -> Vec<Arc<Server>> {
        read(&self.servers).values().cloned().collect()
    }

    /// How `tool` of `server`, served as `seen`, stands against its pin; a tool never
    /// pinned (the store could not be written) is not approved.
    pub fn pin_status(&self, server: &str, tool: &str, seen: &PinHash) -> crate::grants::Pin {
        match read(&self.pins).get(server).and_then(|p| p.get(tool)) {
            Some(row) => pin::status(row, seen),
            None => crate::grants::Pin::Unapproved,
        }
    }

    /// The server's listing: the cached one if fresh, else a refresh awaited at most the
    /// server's `list_timeout_ms`.
    pub async fn listing(&self, server: &Arc<Server>) -> Result<Arc<Listing>, Arc<str>> {
        if let Some(listing) = server.fresh(self.config.list_cache_ttl) {
            return Ok(listing);
        }
        let wait = Duration::from_millis(u64::from(server.config.list_timeout_ms));
        match tokio::time::timeout(wait, self.refresh(server)).await {
            Ok(result) => result,
            Err(_) => Err(Arc::from(format!("no listing within {} ms", server.config.list_timeout_ms))),
        }
    }

    /// Starts a refresh of `server` unless one is running; either way, its outcome.
    pub fn refresh(&self, server: &Arc<Server>) -> Refresh {
        let mut running = lock(&server.refreshing);
        if let Some(refresh) = running.as_ref() {
            return refresh.clone();
        }
        let me = self.me.clone();
        let target = server.clone();
        let task = tokio::spawn(async move {
            let Some(hub) = me.upgrade() else { return Err(Arc::from("the gateway is shutting down")) };
            let outcome = hub.fetch(&target).await;
            *lock(&target.refreshing) = None;
            outcome
        });
        let refresh = async move { task.await.unwrap_or_else(|e| Err(Arc::from(format!("refresh failed: {e}")))) }
            .boxed()
            .shared();
        *running = Some(refresh.clone());
        refresh
    }

    /// Lists everything `server` serves, pins its tools and keeps the listing.
    async fn fetch(&self, server: &Arc<Server>) -> Result<Arc<Listing>, Arc<str>> {
        server.stale.store(false, Ordering::Release);
        let outcome = self.fetch_lists(server).await;
        match &outcome {
            Ok(listing) => {
                let previous = write(&server.listing).replace(listing.clone());
                let hashes = |l: &Listing| l.tools.iter().map(|(_, h)| h.clone()).collect::<Vec<_>>();
                if previous.is_some_and(|p| hashes(&p) != hashes(listing)) {
                    self.announce();
                }
                let mut health = lock(&server.health);
                health.up = true;
                health.last_error = None;
                health.last_listed_at = Some(now_millis());
                health.tools = listing.tools.len();
            }
            Err(e) => {
                server.stale.store(true, Ordering::Release);
                server.down(e.to_string());
                *server.link.lock().await = None;
                tracing::warn!(server = %server.name(), error = %e, "MCP server unavailable");
            }
        }
        outcome
    }

    async fn fetch_lists(&self, server: &Arc<Server>) -> Result<Arc<Listing>, Arc<str>> {
        let link = self.link(server).await?;
        let peer = link.peer();
        let caps = peer.peer_info().map(|i| i.capabilities.clone()).unwrap_or_default();
        let failed = |what: &'static str| move |e: rmcp::ServiceError| Arc::<str>::from(format!("listing {what}: {e}"));
        // The four lists at once: a listing costs the slowest of them, not their sum.
        let (tools, resources, templates, prompts) = tokio::try_join!(
            async {
                match caps.tools {
                    Some(_) => peer.list_all_tools().await.map_err(failed("tools")),
                    None => Ok(Vec::new()),
                }
            },
            async {
                match caps.resources {
                    Some(_) => peer.list_all_resources().await.map_err(failed("resources")),
                    None => Ok(Vec::new()),
                }
            },
            async {
                match caps.resources {
                    Some(_) => peer.list_all_resource_templates().await.map_err(failed("resource templates")),
                    None => Ok(Vec::new()),
                }
            },
            async {
                match caps.prompts {
                    Some(_) => peer.list_all_prompts().await.map_err(failed("prompts")),
                    None => Ok(Vec::new()),
                }
            },
        )?;
        if let Some(info) = peer.peer_info() {
            lock(&server.health).protocol_version = Some(info.protocol_version.to_string());
        }
        let tools: Vec<(Tool, PinHash)> = tools
            .into_iter()
            .map(|t| {
                let hash = pin::tool_hash(&serde_json::to_value(&t).unwrap_or_default());
                (t, hash)
            })
            .collect();
        self.observe_pins(&server.config, &tools).await;
        Ok(Arc::new(Listing { tools, resources, templates, prompts, at: Instant::now() }))
    }

    /// The live session with `server`, opened if there is none. Opening is bounded by
    /// [`CONNECT_TIMEOUT`]; after a failure the server is not tried again for a while
    /// (1 s, doubling up to 30 s), so a crashing stdio server is not restarted by every
    /// request and a dead one does not hold callers.
    pub async fn link(&self, server: &Arc<Server>) -> Result<Arc<Link>, Arc<str>> {
        let mut link = server.link.lock().await;
        if let Some(live) = link.as_ref().filter(|l| !l.is_closed()) {
            return Ok(live.clone());
        }
        if let Some((until, _)) = *lock(&server.backoff)
            && Instant::now() < until
        {
            let last = server.health().last_error.unwrap_or_default();
            return Err(Arc::from(format!("not retried yet after a failed connection: {last}")));
        }
        let me = self.me.clone();
        let target = Arc::downgrade(server);
        let on_change = Arc::new(move |kind: ListKind| {
            let (Some(hub), Some(server)) = (me.upgrade(), target.upgrade()) else { return };
            tracing::debug!(server = %server.name(), ?kind, "an MCP server's list changed");
            server.stale.store(true, Ordering::Release);
            // Re-list at once, so that a changed tool is quarantined before anyone lists
            // or calls it again.
            drop(hub.refresh(&server));
        });
        let connecting = tokio::time::timeout(CONNECT_TIMEOUT, self.connector.connect(&server.config, on_change));
        let failure = match connecting.await {
            Ok(Ok(connected)) => {
                *lock(&server.backoff) = None;
                let connected = Arc::new(connected);
                *link = Some(connected.clone());
                return Ok(connected);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no session within {CONNECT_TIMEOUT:?}"),
        };
        let mut backoff = lock(&server.backoff);
        let wait = backoff.map_or(Duration::from_secs(1), |(_, last)| (last * 2).min(Duration::from_secs(30)));
        *backoff = Some((Instant::now() + wait, wait));
        server.down(failure.clone());
        Err(Arc::from(failure))
    }

    /// Pings every server with a live session each `interval`; one that does not answer
    /// within its `list_timeout_ms` loses its session and is left out of listings until
    /// it answers again.
    pub fn watch_health(self: &Arc<Self>, interval: Duration) {
        let hub = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                let Some(hub) = hub.upgrade() else { break };
                let checks = hub.servers().into_iter().map(|server| {
                    let hub = hub.clone();
                    async move { hub.ping(&server).await }
                });
                futures_util::future::join_all(checks).await;
            }
        });
    }

    async fn ping(&self, server: &Arc<Server>) {
        let Some(link) = server.link.lock().await.clone() else { return };
        let wait = Duration::from_millis(u64::from(server.config.list_timeout_ms));
        let failure = match tokio::time::timeout(wait, alive(link.peer())).await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer to a ping within {} ms", server.config.list_timeout_ms),
        };
        tracing::warn!(server = %server.name(), error = %failure, "MCP server unavailable");
        self.drop_link(server, &failure).await;
    }

    /// Forgets a server's session after a transport failure (the next use reconnects).
    pub async fn drop_link(&self, server: &Arc<Server>, error: &str) {
        *server.link.lock().await = None;
        server.stale.store(true, Ordering::Release);
        server.down(error.to_owned());
    }

    /// Records each tool's definition against its pin; a change quarantines the tool.
    /// Pins are written with a compare-and-set, so pods seeing the same change agree.
    async fn observe_pins(&self, server: &McpServer, tools: &[(Tool, PinHash)]) {
        for (tool, hash) in tools {
            for _attempt in 0..3 {
                match self.observe_pin(server, tool, hash).await {
                    Ok(true) => break,
                    Ok(false) => {
                        if let Err(e) = self.reload_pins(&server.name).await {
                            tracing::warn!(server = %server.name, error = %e, "MCP pins could not be read");
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(server = %server.name, tool = %tool.name, error = %e, "an MCP pin could not be written: the tool stays as it was pinned");
                        break;
                    }
                }
            }
        }
    }

    /// One compare-and-set of one pin; `Ok(false)` when another writer moved it first.
    async fn observe_pin(
        &self,
        server: &McpServer,
        tool: &Tool,
        seen: &PinHash,
    ) -> Result<bool, obleth_store::StoreError> {
        let current = read(&self.pins).get(&server.name).and_then(|p| p.get(tool.name.as_ref())).cloned();
        let (next, observed) = pin::observe(current.as_ref(), seen, server.require_approval);
        if matches!(observed, Observed::Same | Observed::StillPending) {
            return Ok(true);
        }
        let stored = self.stored_pin(server, tool, seen, &next).await?;
        let expected = current
            .as_ref()
            .map(|c| (c.approved.as_ref().map(|h| h.0.clone()), c.pending.as_ref().map(|h| h.0.clone())));
        if !self.store.put_mcp_pin(&stored, expected.as_ref()).await? {
            return Ok(false);
        }
        write(&self.pins).entry(server.name.clone()).or_default().insert(tool.name.to_string(), next);
        if !matches!(observed, Observed::New) || server.require_approval {
            self.events.pin_changed(server, &stored, &observed);
        }
        Ok(true)
    }

    /// The row to store for `next`, keeping what the stored row says of the approved
    /// definition.
    async fn stored_pin(
        &self,
        server: &McpServer,
        tool: &Tool,
        seen: &PinHash,
        next: &PinRow,
    ) -> Result<McpToolPin, obleth_store::StoreError> {
        let now = now_millis();
        let definition = pin::definition(&serde_json::to_value(tool).unwrap_or_default());
        let old = self.store.list_mcp_pins(&server.name).await?.into_iter().find(|p| p.tool == tool.name);
        let seen_def = Some(definition);
        let approved_def = match (&next.approved, &old) {
            (Some(h), Some(o)) if o.approved_hash.as_deref() == Some(h.0.as_str()) => o.approved_def.clone(),
            (Some(h), _) if h == seen => seen_def.clone(),
            _ => None,
        };
        let pending_def = next.pending.as_ref().map(|_| seen_def.clone()).unwrap_or(None);
        let changed_at = match (&next.pending, &old) {
            (None, _) => None,
            (Some(p), Some(o)) if o.pending_hash.as_deref() == Some(p.0.as_str()) => o.changed_at,
            (Some(_), _) => Some(now),
        };
        Ok(McpToolPin {
            server: server.name.clone(),
            tool: tool.name.to_string(),
            approved_hash: next.approved.as_ref().map(|h| h.0.clone()),
            approved_def,
            pending_hash: next.pending.as_ref().map(|h| h.0.clone()),
            pending_def,
            first_seen_at: old.as_ref().map_or(now, |o| o.first_seen_at),
            changed_at,
            approved_at: old.as_ref().and_then(|o| o.approved_at),
            approved_by: old.as_ref().and_then(|o| o.approved_by.clone()),
        })
    }
}

/// Whether the server answers: `ping` on a session (2025 versions), or `server/discover`
/// (2026-07-28 removed ping).
async fn alive(peer: &rmcp::Peer<rmcp::RoleClient>) -> Result<(), rmcp::ServiceError> {
    let stateless = peer.peer_info().is_some_and(|info| !info.protocol_version.has_initialize());
    let request = if stateless {
        rmcp::model::ClientRequest::DiscoverRequest(rmcp::model::DiscoverRequest::new(Default::default()))
    } else {
        rmcp::model::ClientRequest::PingRequest(Default::default())
    };
    peer.send_request(request).await.map(drop)
}

/// Whether a server's row changed in what its session depends on.
fn same_server(a: &McpServer, b: &McpServer) -> bool {
    a.updated_at == b.updated_at && a.id == b.id
}

fn pin_row(p: &McpToolPin) -> PinRow {
    PinRow { approved: p.approved_hash.clone().map(PinHash), pending: p.pending_hash.clone().map(PinHash) }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}
