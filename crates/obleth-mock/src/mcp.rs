//! An MCP server at `/mcp`, built with the official Rust SDK (rmcp): a fast, steady
//! upstream for the MCP gateway's tests and benchmarks (a Python server's own noise
//! would hide a sub-millisecond overhead).
//!
//! Tools: `echo(text)`, `add(a, b)`, `sleep(ms)` (answers after `ms` milliseconds), and
//! `mutate()`, which changes `echo`'s description (a "rug pull") and announces that the
//! tool list changed. One resource (`mock://note`) and one prompt (`greet(who)`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, GetPromptRequestParams, GetPromptResponse,
    GetPromptResult, Implementation, ListPromptsResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    Prompt, PromptArgument, PromptMessage, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    Resource, ResourceContents, Role, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

/// The longest `sleep` the mock agrees to.
const MAX_SLEEP_MS: u64 = 60_000;

/// The server's state: how many times `mutate` ran (`echo`'s description says so).
#[derive(Clone, Default)]
pub(crate) struct MockMcp {
    mutations: Arc<AtomicU64>,
    /// Added before answering each list.
    list_delay: Duration,
}

fn schema(v: Value) -> Arc<Map<String, Value>> {
    match v {
        Value::Object(m) => Arc::new(m),
        _ => Arc::new(Map::new()),
    }
}

impl MockMcp {
    /// Waits the configured list delay (none at all when it is zero: even a zero sleep
    /// waits for the timer's next tick, about a millisecond).
    async fn list_delay(&self) {
        if !self.list_delay.is_zero() {
            tokio::time::sleep(self.list_delay).await;
        }
    }

    fn tools(&self) -> Vec<Tool> {
        let mutations = self.mutations.load(Ordering::Acquire);
        let echo = match mutations {
            0 => "Echo the text back.".to_owned(),
            n => format!("Echo the text back. (changed {n} times)"),
        };
        vec![
            Tool::new(
                "echo",
                echo,
                schema(json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]})),
            ),
            Tool::new(
                "add",
                "Add two integers.",
                schema(
                    json!({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}),
                ),
            ),
            Tool::new(
                "sleep",
                "Answer after ms milliseconds.",
                schema(
                    json!({"type": "object", "properties": {"ms": {"type": "integer", "minimum": 0}}, "required": ["ms"]}),
                ),
            ),
            Tool::new("mutate", "Change echo's description and announce it.", schema(json!({"type": "object"}))),
        ]
    }
}

fn text(s: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(s)])
}

fn arg<'a>(request: &'a CallToolRequestParams, name: &str) -> Option<&'a Value> {
    request.arguments.as_ref().and_then(|a| a.get(name))
}

impl ServerHandler for MockMcp {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_resources()
            .enable_prompts()
            .build();
        ServerConfig::new(capabilities).with_server_info(Implementation::new("obleth-mock", env!("CARGO_PKG_VERSION")))
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.list_delay().await;
        Ok(ListToolsResult::with_all_items(self.tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let result = match request.name.as_ref() {
            "echo" => text(arg(&request, "text").and_then(Value::as_str).unwrap_or_default()),
            "add" => {
                let n = |k| arg(&request, k).and_then(Value::as_i64).unwrap_or(0);
                text((n("a").saturating_add(n("b"))).to_string())
            }
            "sleep" => {
                let ms = arg(&request, "ms").and_then(Value::as_u64).unwrap_or(0).min(MAX_SLEEP_MS);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                text(format!("slept {ms}"))
            }
            "mutate" => {
                self.mutations.fetch_add(1, Ordering::AcqRel);
                // Best effort: a stateless caller has no stream to hear it on.
                let _ = ctx.peer.notify_tool_list_changed().await;
                text("mutated")
            }
            other => return Err(ErrorData::invalid_params(format!("unknown tool: {other}"), None)),
        };
        Ok(CallToolResponse::Complete(result))
    }

    async fn list_resources(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        self.list_delay().await;
        Ok(ListResourcesResult::with_all_items(vec![Resource::new("mock://note", "note")]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        if request.uri != "mock://note" {
            return Err(ErrorData::resource_not_found(format!("unknown resource: {}", request.uri), None));
        }
        let contents = vec![ResourceContents::text("a note from the mock", "mock://note")];
        Ok(ReadResourceResponse::Complete(ReadResourceResult::new(contents)))
    }

    async fn list_prompts(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        self.list_delay().await;
        let who = PromptArgument::new("who").with_required(true);
        Ok(ListPromptsResult::with_all_items(vec![Prompt::new("greet", Some("Greet someone."), Some(vec![who]))]))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        if request.name != "greet" {
            return Err(ErrorData::invalid_params(format!("unknown prompt: {}", request.name), None));
        }
        let who = request.arguments.as_ref().and_then(|a| a.get("who")).and_then(Value::as_str).unwrap_or("you");
        let message = PromptMessage::new_text(Role::User, format!("Say hello to {who}"));
        Ok(GetPromptResponse::Complete(GetPromptResult::new(vec![message])))
    }
}

/// The `/mcp` service: sessions for 2025 clients, stateless JSON for 2026-07-28 ones.
pub(crate) fn service(
    list_delay: Duration,
    shutdown: CancellationToken,
) -> StreamableHttpService<MockMcp, LocalSessionManager> {
    let config = StreamableHttpServerConfig::default()
        .with_json_response(true)
        .disable_allowed_hosts()
        .with_cancellation_token(shutdown);
    let server = MockMcp { list_delay, ..MockMcp::default() };
    StreamableHttpService::new(move || Ok(server.clone()), Arc::new(LocalSessionManager::default()), config)
}
