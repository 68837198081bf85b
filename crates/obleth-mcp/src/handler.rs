//! The gateway as an MCP server (rmcp's [`ServerHandler`]): every list is an aggregate
//! of the caller's servers, every call is routed to the server that owns the name.
//!
//! The front put the authenticated caller in the HTTP request's extensions, and rmcp
//! hands those to each handler call, so every request is authorized with its own key:
//! a grant or key revoked takes effect on the next request of a live session.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, GetPromptRequestParams, GetPromptResponse,
    GetPromptResult, Implementation, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, MetaObject, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, ResultType,
    ServerCapabilities, ServerConfig,
};
use rmcp::model::{
    PromptListChangedNotification, ResourceListChangedNotification, ServerNotification, SubscriptionFilter,
    ToolListChangedNotification,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::json;

use crate::call::{Outcome, ToolCall};
use crate::grants::{Decision, GrantIndex, Item, decide};
use crate::hub::{Hub, Server};
use crate::{McpCaller, aggregate, errors, names};

/// One MCP server session's handler (rmcp makes one per session, and one per stateless
/// request); all share the hub.
#[derive(Clone)]
pub struct McpFront {
    pub hub: Arc<Hub>,
}

/// The caller the front authenticated for this request.
fn caller(ctx: &RequestContext<RoleServer>) -> Result<McpCaller, ErrorData> {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<McpCaller>())
        .cloned()
        .ok_or_else(|| ErrorData::internal_error("the request was not authenticated", None))
}

impl McpFront {
    async fn grants(&self, caller: &McpCaller) -> Result<Arc<GrantIndex>, ErrorData> {
        self.hub.grants_for(caller).await.ok_or_else(errors::grants_unavailable)
    }

    /// The granted server a `server__name` refers to, and the upstream's own name.
    fn route<'n>(&self, name: &'n str, kind: &str) -> Result<(Arc<Server>, &'n str), ErrorData> {
        names::split(name, &self.hub.config.separator)
            .and_then(|(server, inner)| self.hub.server(server).map(|s| (s, inner)))
            .ok_or_else(|| errors::unknown(kind, name))
    }
}

/// Sends each accepted list-changed notification; false once the stream is gone.
async fn tell(ctx: &SubscriptionContext, accepted: &SubscriptionFilter) -> bool {
    let mut news = Vec::new();
    if accepted.tools_list_changed == Some(true) {
        news.push(ServerNotification::ToolListChangedNotification(ToolListChangedNotification::default()));
    }
    if accepted.prompts_list_changed == Some(true) {
        news.push(ServerNotification::PromptListChangedNotification(PromptListChangedNotification::default()));
    }
    if accepted.resources_list_changed == Some(true) {
        news.push(ServerNotification::ResourceListChangedNotification(ResourceListChangedNotification::default()));
    }
    for notification in news {
        if ctx.sink().send(notification).await.is_err() {
            return false;
        }
    }
    true
}

/// `_meta` naming the servers a list left out.
fn unavailable_meta(unavailable: &[String]) -> Option<MetaObject> {
    if unavailable.is_empty() {
        return None;
    }
    let mut meta = serde_json::Map::new();
    meta.insert("io.obleth/unavailable".to_owned(), json!(unavailable));
    Some(MetaObject(meta))
}

impl ServerHandler for McpFront {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_resources()
            .enable_prompts()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("obleth", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "obleth's MCP gateway: the tools of every server granted to your key, named server__tool.",
            )
    }

    /// 2026-07-28 clients hear of list changes on a `subscriptions/listen` stream;
    /// individual resource updates are not relayed.
    fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        let mut accepted = SubscriptionFilter::new();
        accepted.tools_list_changed = requested.tools_list_changed;
        accepted.prompts_list_changed = requested.prompts_list_changed;
        accepted.resources_list_changed = requested.resources_list_changed;
        Some(accepted)
    }

    async fn listen(&self, ctx: SubscriptionContext) -> Result<(), ErrorData> {
        let mut changes = self.hub.changes();
        loop {
            tokio::select! {
                () = ctx.cancelled() => return Ok(()),
                news = changes.recv() => {
                    if matches!(news, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                        return Ok(());
                    }
                    // Lagging behind still means something changed: tell once.
                    if !tell(&ctx, ctx.accepted()).await {
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn on_initialized(&self, ctx: rmcp::service::NotificationContext<RoleServer>) {
        self.hub.watch(ctx.peer);
    }

    fn get_tool(&self, _name: &str) -> Option<rmcp::model::Tool> {
        // rmcp asks this before the caller is known (to check `Mcp-Param-*` headers); a
        // definition answered here would tell anyone which tools exist.
        None
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = caller(&ctx)?;
        let grants = self.grants(&caller).await?;
        let found = aggregate::tools(&self.hub, &grants, &caller).await;
        if found.items.is_empty() {
            return Err(errors::nothing_granted("tools", &caller.key_prefix, &caller.tenant.name, &found.unavailable));
        }
        let mut result = ListToolsResult::with_all_items(found.items);
        result.meta = unavailable_meta(&found.unavailable);
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = caller(&ctx)?;
        let mut call = ToolCall::new(self.hub.sink.clone(), &caller, &request.name);
        let (server, tool) = match self.allowed_tool(&caller, &request.name).await {
            Ok(found) => found,
            Err(e) => {
                call.finish(Outcome::Unknown);
                return Err(e);
            }
        };
        call.routed(&server.config, tool);
        call.arguments(request.arguments.as_ref());
        // Held until the call ends, however it ends: dropping it frees the tenant's slot.
        let _slot = match self.hub.limits.admit(&caller.tenant) {
            Ok(slot) => slot,
            Err(refusal) => {
                call.finish(Outcome::RateLimited);
                return Err(errors::limit_refusal(&refusal));
            }
        };
        let timeout = Duration::from_millis(u64::from(server.config.call_timeout_ms));
        if let Err(rejection) = call.admit(&*server.admission, &caller, tool_model(&server, tool), timeout).await {
            return Err(errors::queue_refusal(&rejection));
        }
        let mut upstream = request.clone();
        upstream.name = tool.to_owned().into();
        upstream.meta = None;
        let (mut result, outcome) = self.forward_call(&server, upstream, timeout, &ctx).await;
        call.answered(&result, outcome);
        // An upstream on an older protocol sends no `resultType`; a 2026-07-28 client
        // needs it (rmcp drops it again for older clients).
        result.result_type.get_or_insert(ResultType::COMPLETE);
        Ok(CallToolResponse::Complete(result))
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let caller = caller(&ctx)?;
        let grants = self.grants(&caller).await?;
        let found = aggregate::prompts(&self.hub, &grants, &caller).await;
        let mut result = ListPromptsResult::with_all_items(found.items);
        result.meta = unavailable_meta(&found.unavailable);
        Ok(result)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let caller = caller(&ctx)?;
        let grants = self.grants(&caller).await?;
        let (server, prompt) = self.route(&request.name, "prompt")?;
        let allowed = decide(
            Some(&grants),
            caller.who(),
            server.name(),
            server.config.enabled,
            Item::Prompt,
            crate::grants::Pin::Approved,
        );
        if allowed != Decision::Allow {
            return Err(errors::unknown("prompt", &request.name));
        }
        let mut upstream = request.clone();
        upstream.name = prompt.to_owned();
        upstream.meta = None;
        let link = self.hub.link(&server).await.map_err(|e| upstream_error(&server, &e))?;
        let mut result: GetPromptResult =
            link.peer().get_prompt(upstream).await.map_err(|e| upstream_error(&server, &e.to_string()))?;
        result.result_type.get_or_insert(ResultType::COMPLETE);
        Ok(GetPromptResponse::Complete(result))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let caller = caller(&ctx)?;
        let grants = self.grants(&caller).await?;
        let (found, _) = aggregate::resources(&self.hub, &grants, &caller).await;
        let mut result = ListResourcesResult::with_all_items(found.items);
        result.meta = unavailable_meta(&found.unavailable);
        Ok(result)
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let caller = caller(&ctx)?;
        let grants = self.grants(&caller).await?;
        let (found, templates) = aggregate::resources(&self.hub, &grants, &caller).await;
        let mut result = ListResourceTemplatesResult::with_all_items(templates);
        result.meta = unavailable_meta(&found.unavailable);
        Ok(result)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let caller = caller(&ctx)?;
        let grants = self.grants(&caller).await?;
        let Some(server) = aggregate::resource_owner(&self.hub, &grants, &caller, &request.uri).await else {
            let uri = json!({"uri": request.uri});
            return Err(ErrorData::resource_not_found(format!("unknown resource: {}", request.uri), Some(uri)));
        };
        let mut upstream = request.clone();
        upstream.meta = None;
        let link = self.hub.link(&server).await.map_err(|e| upstream_error(&server, &e))?;
        let mut result =
            link.peer().read_resource(upstream).await.map_err(|e| upstream_error(&server, &e.to_string()))?;
        result.result_type.get_or_insert(ResultType::COMPLETE);
        Ok(ReadResourceResponse::Complete(result))
    }
}

impl McpFront {
    /// The server and upstream name of a tool `caller` may call, or the one answer for
    /// unknown, not granted and quarantined tools.
    async fn allowed_tool<'n>(&self, caller: &McpCaller, name: &'n str) -> Result<(Arc<Server>, &'n str), ErrorData> {
        let grants = self.grants(caller).await?;
        let (server, tool) = self.route(name, "tool")?;
        let listing = self.hub.listing(&server).await.map_err(|_| errors::unknown("tool", name))?;
        let Some((_, hash)) = listing.tool(tool) else { return Err(errors::unknown("tool", name)) };
        let pin = self.hub.pin_status(server.name(), tool, hash);
        match decide(Some(&grants), caller.who(), server.name(), server.config.enabled, Item::Tool(tool), pin) {
            Decision::Allow => Ok((server, tool)),
            Decision::Deny(reason) => {
                tracing::info!(tenant = %caller.tenant.id, server = %server.name(), tool, ?reason, "MCP tool call denied");
                Err(errors::unknown("tool", name))
            }
        }
    }

    /// Calls the upstream within the server's timeout. Failures of the upstream are
    /// answered inside the result (the model can read them), not as protocol errors.
    async fn forward_call(
        &self,
        server: &Arc<Server>,
        request: CallToolRequestParams,
        timeout: Duration,
        ctx: &RequestContext<RoleServer>,
    ) -> (CallToolResult, Outcome) {
        let link = match self.hub.link(server).await {
            Ok(link) => link,
            Err(e) => return failed(server, Outcome::UpstreamError, &e),
        };
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(timeout, link.peer().call_tool(request)) => outcome,
            () = ctx.ct.cancelled() => return failed(server, Outcome::ClientGone, "the client cancelled the call"),
        };
        match outcome {
            Ok(Ok(result)) => {
                let outcome = if result.is_error == Some(true) { Outcome::ToolError } else { Outcome::Ok };
                (result, outcome)
            }
            Ok(Err(e)) => {
                let message = e.to_string();
                if link.is_closed() {
                    self.hub.drop_link(server, &message).await;
                }
                failed(server, Outcome::UpstreamError, &message)
            }
            Err(_) => {
                let why = format!("no answer within {} ms", server.config.call_timeout_ms);
                failed(server, Outcome::UpstreamTimeout, &why)
            }
        }
    }
}

/// The scheduler's view of a tool: its weight from the server's `tool_weights`.
fn tool_model(server: &Server, tool: &str) -> Arc<obleth_core::Model> {
    let mut model = obleth_core::Model::named(tool);
    model.admission_weight = server.config.tool_weights.get(tool).copied().unwrap_or(1.0);
    Arc::new(model)
}

/// An upstream's failure as the client reads it: its addresses and URLs scrubbed (they
/// name the gateway's internal network) and its length bounded.
fn failed(server: &Server, outcome: Outcome, why: &str) -> (CallToolResult, Outcome) {
    let why = obleth_core::relay::relayable_message(why);
    let text = format!("upstream MCP server '{}' failed: {why}", server.name());
    (CallToolResult::error(vec![ContentBlock::text(text)]), outcome)
}

fn upstream_error(server: &Server, why: &str) -> ErrorData {
    let why = obleth_core::relay::relayable_message(why);
    ErrorData::internal_error(format!("upstream MCP server '{}' failed: {why}", server.name()), None)
}
