//! Connections to upstream MCP servers: Streamable HTTP through the gateway's HTTP
//! client ([`http`]), or a child process speaking over stdio.
//!
//! The gateway is one MCP client per upstream server, shared by every tenant. It
//! advertises no client capabilities (no roots, sampling or elicitation), so upstreams
//! cannot send requests back through it and keep no per-caller state in their session.
//! The client's obleth key never goes upstream: only the server's own credential does.

pub mod http;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;

use obleth_store::{McpServer, McpTransport};
use rmcp::model::{
    ClientCapabilities, ClientConfig, Implementation, ProtocolVersion, ServerNotification, SubscriptionFilter,
};
use rmcp::service::{
    ClientCacheConfig, ClientLifecycleMode, ClientServiceExt, NotificationContext, Peer, RunningService,
};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, RoleClient};
use secrecy::ExposeSecret;
use tokio::io::AsyncBufReadExt;

use self::http::{McpHttp, UpstreamHttp};

/// Which of an upstream's lists changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Resources,
    Prompts,
}

/// Told when an upstream announces that one of its lists changed.
pub type OnChange = Arc<dyn Fn(ListKind) + Send + Sync>;

/// The gateway's side of one upstream session: it only listens for list changes.
pub struct Events {
    on_change: OnChange,
}

impl ClientHandler for Events {
    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        (self.on_change)(ListKind::Tools);
    }

    async fn on_resource_list_changed(&self, _: NotificationContext<RoleClient>) {
        (self.on_change)(ListKind::Resources);
    }

    async fn on_prompt_list_changed(&self, _: NotificationContext<RoleClient>) {
        (self.on_change)(ListKind::Prompts);
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("obleth-mcp-gateway", env!("CARGO_PKG_VERSION")),
        )
    }
}

/// A live session with one upstream server.
pub struct Link {
    service: RunningService<RoleClient, Events>,
}

impl Link {
    pub fn peer(&self) -> &Peer<RoleClient> {
        self.service.peer()
    }

    pub fn is_closed(&self) -> bool {
        self.service.is_closed()
    }
}

/// Why an upstream could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the stdio command '{0}' is not in [mcp.stdio.commands]")]
    UnknownCommand(String),
    #[error("starting the process: {0}")]
    Spawn(std::io::Error),
    #[error("the server's {0} is not set")]
    Missing(&'static str),
    #[error("the credential is not a valid header value")]
    Credential,
    #[error("initializing: {0}")]
    Initialize(String),
}

/// What connecting needs besides the server's row.
#[derive(Clone)]
pub struct Connector {
    pub http: Arc<dyn UpstreamHttp>,
    /// `[mcp.stdio.commands]`: a name to the program and its leading arguments.
    pub stdio_commands: Arc<BTreeMap<String, Vec<String>>>,
}

impl Connector {
    /// Opens a session with `server`: the stateless 2026-07-28 protocol when the server
    /// speaks it (no session to keep, plain JSON answers), else `initialize` (2025-11-25
    /// or older, as the server negotiates). A 2026 server's list changes arrive on a
    /// `subscriptions/listen` stream, which is opened here.
    pub async fn connect(&self, server: &McpServer, on_change: OnChange) -> Result<Link, ConnectError> {
        let events = Events { on_change: on_change.clone() };
        let lifecycle = ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            legacy_version: Some(ProtocolVersion::V_2025_11_25),
        };
        let service = match server.transport {
            McpTransport::Http => {
                let transport = self.http_transport(server)?;
                events.serve_with_lifecycle(transport, lifecycle).await
            }
            McpTransport::Stdio => {
                let transport = self.child(server)?;
                events.serve_with_lifecycle(transport, lifecycle).await
            }
        };
        let service = service.map_err(|e| ConnectError::Initialize(e.to_string()))?;
        // The gateway keeps its own listings; the SDK's cache would answer a refresh, or a
        // ping of a dead server, from memory.
        service.peer().set_response_cache_config(ClientCacheConfig::disabled()).await;
        if service.peer().peer_info().is_some_and(|info| !info.protocol_version.has_initialize()) {
            listen(service.peer().clone(), &server.name, on_change);
        }
        Ok(Link { service })
    }

    fn http_transport(&self, server: &McpServer) -> Result<StreamableHttpClientTransport<McpHttp>, ConnectError> {
        let url = server.url.as_deref().ok_or(ConnectError::Missing("url"))?;
        let credential = match &server.credential {
            None => None,
            Some(secret) => Some(credential_header(&server.credential_header, secret.expose_secret())?),
        };
        let client = McpHttp { http: self.http.clone(), credential };
        let mut config = StreamableHttpClientTransportConfig::with_uri(url);
        config.reinit_on_expired_session = true;
        Ok(StreamableHttpClientTransport::with_client(client, config))
    }

    /// The server's process, with an environment of its own: it inherits none of the
    /// gateway's variables (which hold the admin token and database URLs), only `PATH`
    /// and `HOME`.
    fn child(&self, server: &McpServer) -> Result<TokioChildProcess, ConnectError> {
        let name = server.command.as_deref().ok_or(ConnectError::Missing("command"))?;
        let argv = self.stdio_commands.get(name).ok_or_else(|| ConnectError::UnknownCommand(name.to_owned()))?;
        let (program, fixed) = argv.split_first().ok_or_else(|| ConnectError::UnknownCommand(name.to_owned()))?;
        let mut command = tokio::process::Command::new(program);
        command.args(fixed).args(&server.args).env_clear().kill_on_drop(true);
        for var in ["PATH", "HOME"] {
            if let Some(value) = std::env::var_os(var) {
                command.env(var, value);
            }
        }
        let (process, stderr) =
            TokioChildProcess::builder(command).stderr(Stdio::piped()).spawn().map_err(ConnectError::Spawn)?;
        if let Some(stderr) = stderr {
            let server = server.name.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(target: "obleth::mcp::stdio", server = %server, "{line}");
                }
            });
        }
        Ok(process)
    }
}

/// Follows a 2026-07-28 server's list changes until its session ends.
fn listen(peer: Peer<RoleClient>, server: &str, on_change: OnChange) {
    let server = server.to_owned();
    tokio::spawn(async move {
        let filter =
            SubscriptionFilter::builder().tools_list_changed().prompts_list_changed().resources_list_changed().build();
        let mut subscription = match peer.listen(filter).await {
            Ok(subscription) => subscription,
            Err(e) => {
                // Listings still expire (mcp.list_cache_ttl); changes are seen then.
                tracing::warn!(server = %server, error = %e, "an MCP server refused subscriptions/listen");
                return;
            }
        };
        while let Ok(Some(notification)) = subscription.next().await {
            match notification {
                ServerNotification::ToolListChangedNotification(_) => on_change(ListKind::Tools),
                ServerNotification::PromptListChangedNotification(_) => on_change(ListKind::Prompts),
                ServerNotification::ResourceListChangedNotification(_) => on_change(ListKind::Resources),
                _ => {}
            }
        }
    });
}

/// The header carrying a server's credential: `Authorization: Bearer …` for the
/// authorization header, the credential as it is for any other.
fn credential_header(name: &str, secret: &str) -> Result<(::http::HeaderName, ::http::HeaderValue), ConnectError> {
    let header = ::http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| ConnectError::Credential)?;
    let value = if header == ::http::header::AUTHORIZATION { format!("Bearer {secret}") } else { secret.to_owned() };
    let mut value = ::http::HeaderValue::from_str(&value).map_err(|_| ConnectError::Credential)?;
    value.set_sensitive(true);
    Ok((header, value))
}
