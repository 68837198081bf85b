//! The MCP gateway's wiring: the data plane's identity and HTTP client behind
//! `obleth-mcp`'s seams, the audit trail and the change bus for pins that moved, and
//! the control-plane changes that reach the hub.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use obleth_core::{ApiError, ChangeEvent, ChangeNotifier, now_millis};
use obleth_gateway::Identity;
use obleth_gateway::upstream::HttpClient;
use obleth_mcp::pin::Observed;
use obleth_mcp::upstream::http::{UpstreamBody, UpstreamHttp};
use obleth_mcp::{Authenticate, BoxError, Hub, McpCaller, PinEvents};
use obleth_store::{ControlPlaneStore, McpServer, McpToolPin, NewAuditEntry};

/// `/mcp` callers resolve through the same caches as `/v1/*`.
pub struct McpIdentity(pub Arc<Identity>);

#[async_trait::async_trait]
impl Authenticate for McpIdentity {
    async fn authenticate(&self, secret: &str) -> Result<McpCaller, ApiError> {
        let caller = self.0.resolve(secret).await?;
        Ok(McpCaller {
            tenant: caller.tenant,
            key_id: caller.key.id.as_str().into(),
            key_prefix: caller.key_prefix,
            key_created_at: caller.key.created_at,
        })
    }
}

/// Upstream MCP servers are reached through the data plane's client: its pool, TLS and
/// connect-time address policy.
pub struct McpHttpClient(pub HttpClient);

#[async_trait::async_trait]
impl UpstreamHttp for McpHttpClient {
    async fn send(&self, request: http::Request<Full<Bytes>>) -> Result<http::Response<UpstreamBody>, BoxError> {
        let response = self.0.request(request).await?;
        Ok(response.map(|body| body.map_err(std::io::Error::other).boxed_unsync()))
    }
}

/// A moved pin is counted, written to the audit trail, and announced to every pod.
pub struct PinAudit {
    store: Arc<dyn ControlPlaneStore>,
    /// Set once the change channel exists (it is built after the hub it notifies).
    notifier: std::sync::OnceLock<Arc<dyn ChangeNotifier>>,
}

impl PinAudit {
    pub fn new(store: Arc<dyn ControlPlaneStore>) -> Self {
        PinAudit { store, notifier: std::sync::OnceLock::new() }
    }

    pub fn connect(&self, notifier: Arc<dyn ChangeNotifier>) {
        let _ = self.notifier.set(notifier);
    }
}

impl PinEvents for PinAudit {
    fn pin_changed(&self, server: &McpServer, pin: &McpToolPin, observed: &Observed) {
        let action = match observed {
            Observed::Changed | Observed::ChangedAgain => {
                obleth_mcp::telemetry::quarantined(&server.name);
                tracing::warn!(server = %server.name, tool = %pin.tool, pending = ?pin.pending_hash, "an MCP tool's definition changed: quarantined until approved");
                "mcp_tool.quarantine"
            }
            Observed::Reverted => "mcp_tool.revert",
            Observed::New => "mcp_tool.hold",
            Observed::Same | Observed::StillPending => return,
        };
        let entry = NewAuditEntry {
            at: now_millis(),
            actor: "gateway".to_owned(),
            action: action.to_owned(),
            resource_kind: "mcp_tool".to_owned(),
            resource_id: format!("{}/{}", server.name, pin.tool),
            before: pin.approved_def.clone(),
            after: pin.pending_def.clone(),
        };
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.append_audit(entry).await {
                tracing::warn!(error = %e, "an MCP pin change could not be written to the audit trail");
            }
        });
        if let Some(notifier) = self.notifier.get() {
            notifier.notify(ChangeEvent::McpPin { server: server.name.clone(), tool: pin.tool.clone() });
        }
    }
}

/// Control-plane changes the hub acts on: servers, grants and pins are read again.
pub struct McpChanges(pub Arc<Hub>);

impl ChangeNotifier for McpChanges {
    fn notify(&self, event: ChangeEvent) {
        let hub = self.0.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        match event {
            ChangeEvent::McpServer { .. } => drop(runtime.spawn(async move { log(hub.reload_servers().await) })),
            ChangeEvent::McpGrants => drop(runtime.spawn(async move { log(hub.reload_grants().await) })),
            ChangeEvent::McpPin { server, .. } => {
                drop(runtime.spawn(async move { log(hub.reload_pins(&server).await) }))
            }
            ChangeEvent::Resync => drop(runtime.spawn(async move { log(hub.reload().await) })),
            _ => {}
        }
    }
}

fn log(outcome: Result<(), obleth_store::StoreError>) {
    if let Err(e) = outcome {
        tracing::warn!(error = %e, "the MCP gateway could not read its servers or grants");
    }
}

/// Reads everything again every `interval`: what reaches the database without the admin
/// API (and a failed load) is picked up within it.
pub fn keep_fresh(hub: &Arc<Hub>, interval: Duration) {
    let hub = Arc::downgrade(hub);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(hub) = hub.upgrade() else { break };
            log(hub.reload().await);
        }
    });
}

/// Each MCP server's fair queue: the model pool's scheduler, with the server's
/// concurrency cap as its slots and a call's measured milliseconds as its cost (no
/// output weighting, no brownout: a tool call has no `max_tokens` to cap).
pub fn tool_call_queues(admission: &obleth_scheduler::FairshareConfig) -> obleth_mcp::AdmissionFactory {
    let base = admission.clone();
    Arc::new(move |slots| {
        let mut config = base.clone();
        config.core.slots = slots;
        config.core.output_weight = 1.0;
        config.core.brownout_after = None;
        // Before a tenant has history, a call is expected to take 100 ms.
        config.core.cold_start_output = 100;
        Arc::new(obleth_scheduler::Fairshare::new(config)) as Arc<dyn obleth_core::admission::Admission>
    })
}
