//! The MCP gateway's control-plane state: upstream MCP servers, grants of servers and
//! tools to tenants and keys, and pins of tool definitions.
//!
//! The rules of what a grant allows and of how a pin moves live in `obleth-mcp` (pure);
//! the store keeps rows, validates their fields, and writes pins with a compare-and-set so
//! that two pods seeing the same change agree.

use std::collections::BTreeMap;

use async_trait::async_trait;
use obleth_core::UnixMillis;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Result;

/// How the gateway reaches an upstream MCP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum McpTransport {
    /// MCP's Streamable HTTP transport, at `url`.
    Http,
    /// A child process the gateway runs (`command`, a name from the config file's
    /// `[mcp.stdio.commands]`), speaking MCP over stdin and stdout.
    Stdio,
}

impl McpTransport {
    /// As stored and as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            McpTransport::Http => "http",
            McpTransport::Stdio => "stdio",
        }
    }

    pub(crate) fn from_column(s: &str) -> crate::Result<McpTransport> {
        match s {
            "http" => Ok(McpTransport::Http),
            "stdio" => Ok(McpTransport::Stdio),
            other => Err(crate::StoreError::Backend(format!("corrupt mcp_servers.transport '{other}'"))),
        }
    }
}

/// A registered upstream MCP server.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct McpServer {
    pub id: String,
    /// `[a-z0-9._-]`, 1–64, starting with a letter or digit: the prefix of its tools'
    /// names (`name__tool`).
    pub name: String,
    pub transport: McpTransport,
    /// Streamable HTTP endpoint (`http(s)://host:port/mcp`); set iff `transport` is http.
    pub url: Option<String>,
    /// The name of a command of `[mcp.stdio.commands]`; set iff `transport` is stdio.
    pub command: Option<String>,
    /// Arguments appended to the command's own.
    pub args: Vec<String>,
    /// Sent upstream in `credential_header`. Serialized only by the stores, never by the
    /// admin API (which shows `has_credential`).
    #[serde(skip_serializing)]
    #[schema(ignore)]
    pub credential: Option<SecretString>,
    /// The header the credential goes in (`authorization` sends `Bearer <credential>`).
    pub credential_header: String,
    pub call_timeout_ms: u32,
    /// How long a listing waits for this server before leaving it out.
    pub list_timeout_ms: u32,
    /// Most tool calls in flight to this server; more wait in fair per-tenant queues.
    pub max_concurrency: u32,
    /// New tools are held until approved, instead of pinned on first sight.
    pub require_approval: bool,
    /// Record (redacted) arguments and results of tool calls in the ledger.
    pub capture: bool,
    /// Fields replaced by `"[redacted]"` in captures: JSON pointers (`/a/b`) or names
    /// matched at any depth.
    pub redact_fields: Vec<String>,
    /// Scheduling cost multiplier per tool (upstream name); absent tools weigh 1.
    pub tool_weights: BTreeMap<String, f64>,
    pub enabled: bool,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

impl McpServer {
    /// Whether a credential is stored (what the admin API shows instead of it).
    pub fn has_credential(&self) -> bool {
        self.credential.is_some()
    }
}

/// A server to register. `{"name": "fs", "url": "http://…/mcp"}` is enough for HTTP;
/// `{"name": "fs", "transport": "stdio", "command": "everything"}` for stdio.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMcpServer {
    pub name: String,
    /// Defaults to http when `url` is given, stdio when `command` is.
    pub transport: Option<McpTransport>,
    pub url: Option<String>,
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// Never shown again.
    #[schema(value_type = Option<String>)]
    pub credential: Option<SecretString>,
    /// Defaults to `authorization`.
    pub credential_header: Option<String>,
    /// Defaults to 60000 (1 to 3600000).
    pub call_timeout_ms: Option<u32>,
    /// Defaults to 2000 (1 to 60000).
    pub list_timeout_ms: Option<u32>,
    /// Defaults to 16 (1 to 10000).
    pub max_concurrency: Option<u32>,
    #[serde(default)]
    pub require_approval: bool,
    #[serde(default)]
    pub capture: bool,
    #[serde(default)]
    pub redact_fields: Vec<String>,
    #[serde(default)]
    pub tool_weights: BTreeMap<String, f64>,
    #[serde(default = "crate::default_true")]
    pub enabled: bool,
}

/// A partial update of a server; absent fields are kept. `credential: null` clears it.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct McpServerPatch {
    pub url: Option<String>,
    pub command: Option<String>,
    pub args: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::present")]
    #[schema(value_type = Option<String>)]
    pub credential: Option<Option<SecretString>>,
    pub credential_header: Option<String>,
    pub call_timeout_ms: Option<u32>,
    pub list_timeout_ms: Option<u32>,
    pub max_concurrency: Option<u32>,
    pub require_approval: Option<bool>,
    pub capture: Option<bool>,
    pub redact_fields: Option<Vec<String>>,
    pub tool_weights: Option<BTreeMap<String, f64>>,
    pub enabled: Option<bool>,
}

/// A grant: a tenant (or, narrower, one of its keys) may use a server, or one tool of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct McpGrant {
    pub id: String,
    pub tenant_id: String,
    /// `None`: the whole tenant; `Some`: narrows that key (which must be the tenant's).
    pub key_id: Option<String>,
    /// The server's name.
    pub server: String,
    /// `None`: the whole server; `Some`: one tool, by the upstream's own name.
    pub tool: Option<String>,
    pub created_at: UnixMillis,
}

/// A grant to create. `tenant` is an id or a name; `server` a name.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMcpGrant {
    pub tenant: String,
    pub key_id: Option<String>,
    pub server: String,
    pub tool: Option<String>,
}

/// Filters for grant listings.
#[derive(Debug, Clone, Default)]
pub struct McpGrantFilter {
    pub tenant_id: Option<String>,
    pub key_id: Option<String>,
    pub server: Option<String>,
}

/// Every grant, and the keys that are restricted to their own grants: a key is from its
/// first key-level grant on, and stays so when its grants are revoked (so that revoking a
/// key's last grant never widens it to its tenant's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct McpGrants {
    pub grants: Vec<McpGrant>,
    /// (tenant id, key id)
    pub restricted_keys: Vec<(String, String)>,
}

/// A tool's pin: the definition approved (or first seen) and one served differently,
/// waiting for approval. Definitions are canonical JSON (`obleth_mcp::pin`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct McpToolPin {
    pub server: String,
    /// The upstream's own name.
    pub tool: String,
    /// `sha256:…`; `None` when never approved (a server requiring approval).
    pub approved_hash: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub approved_def: Option<Value>,
    /// Set while the served definition differs from the approved one: quarantined.
    pub pending_hash: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub pending_def: Option<Value>,
    pub first_seen_at: UnixMillis,
    /// When the pending definition was first seen.
    pub changed_at: Option<UnixMillis>,
    pub approved_at: Option<UnixMillis>,
    pub approved_by: Option<String>,
}

/// The part of a pin a compare-and-set compares: (approved hash, pending hash).
pub type PinVersion = (Option<String>, Option<String>);

impl McpToolPin {
    pub fn version(&self) -> PinVersion {
        (self.approved_hash.clone(), self.pending_hash.clone())
    }
}

/// The MCP part of the control-plane store.
#[async_trait]
pub trait McpStore: Send + Sync + 'static {
    async fn create_mcp_server(&self, new: NewMcpServer) -> Result<McpServer>;
    /// By id (`mcp_…`) or name.
    async fn get_mcp_server(&self, id_or_name: &str) -> Result<McpServer>;
    /// Ordered by name.
    async fn list_mcp_servers(&self) -> Result<Vec<McpServer>>;
    async fn update_mcp_server(&self, id_or_name: &str, patch: McpServerPatch) -> Result<McpServer>;
    /// Deletes the server with its grants and pins.
    async fn delete_mcp_server(&self, id_or_name: &str) -> Result<McpServer>;

    /// Creates a grant (a duplicate is a conflict). A key grant marks the key restricted,
    /// in the same transaction.
    async fn create_mcp_grant(&self, new: NewMcpGrant) -> Result<McpGrant>;
    /// Ordered by creation, then id.
    async fn list_mcp_grants(&self, filter: McpGrantFilter) -> Result<Vec<McpGrant>>;
    async fn delete_mcp_grant(&self, id: &str) -> Result<McpGrant>;
    /// Every grant and restricted key, read in one transaction.
    async fn mcp_grants(&self) -> Result<McpGrants>;

    /// A server's pins, ordered by tool.
    async fn list_mcp_pins(&self, server: &str) -> Result<Vec<McpToolPin>>;
    /// Writes `pin` (its server must exist) if the stored one is still at `expected`
    /// (`None`: no pin stored yet). `Ok(false)` when it moved meanwhile: read it again
    /// and decide again.
    async fn put_mcp_pin(&self, pin: &McpToolPin, expected: Option<&PinVersion>) -> Result<bool>;
}
