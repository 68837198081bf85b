//! The MCP gateway (issue 15): one authenticated `/mcp` endpoint in front of many MCP
//! servers, with deny-by-default grants and pinned tool definitions.
//!
//! Pure rules: how upstream tools are named to clients ([`names`]), who may list and
//! call what ([`grants`]: deny by default, one decision for both), how a tool whose
//! definition changed is caught ([`pin`]), whom a session serves ([`sessions`]), what a
//! captured tool call keeps ([`redact`]) and how many calls a tenant may make
//! ([`limits`]: per minute and in flight, per pod).
//! Around them: the upstream connections ([`upstream`]), what this pod knows of the
//! servers ([`hub`]), aggregated lists ([`aggregate`]), rmcp's server handler
//! ([`handler`]) and the HTTP front ([`front`]). The binary supplies identity and the
//! HTTP client through [`Authenticate`] and [`upstream::http::UpstreamHttp`].

pub mod aggregate;
pub mod call;
pub mod errors;
pub mod front;
pub mod grants;
pub mod handler;
pub mod hub;
pub mod limits;
pub mod names;
pub mod pin;
pub mod redact;
pub mod sessions;
pub mod telemetry;
pub mod upstream;

use std::sync::Arc;

use obleth_core::{ApiError, Tenant};

pub use front::McpGateway;
pub use hub::{AdmissionFactory, Hub, HubParts, McpConfig, McpStatus, PinEvents, ServerStatus};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An authenticated caller of `/mcp`.
#[derive(Debug, Clone)]
pub struct McpCaller {
    pub tenant: Arc<Tenant>,
    pub key_id: Arc<str>,
    pub key_prefix: Arc<str>,
    /// When the key was made: a key newer than the grants this pod holds (a rotation's
    /// new key inherits its old key's restrictions) reads them again first.
    pub key_created_at: obleth_core::UnixMillis,
}

impl McpCaller {
    pub fn who(&self) -> grants::Who<'_> {
        grants::Who { tenant_id: &self.tenant.id, key_id: &self.key_id }
    }
}

/// Resolves a bearer key (the data plane's identity caches, supplied by the binary).
#[async_trait::async_trait]
pub trait Authenticate: Send + Sync + 'static {
    async fn authenticate(&self, secret: &str) -> Result<McpCaller, ApiError>;
}

/// The `/mcp` route, to merge into the data plane's router.
pub fn router(gateway: Arc<McpGateway>, path: &str) -> axum::Router {
    axum::Router::new().route(path, axum::routing::any(front::handle)).with_state(gateway)
}
