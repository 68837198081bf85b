//! The MCP gateway's admin routes: upstream servers, the pins of their tools (the review
//! and approval of changed definitions), and grants of servers and tools to tenants and
//! keys.
//!
//! Like the other resources: every change is audited and announced (`McpServer`,
//! `McpGrants`, `McpPin`). A server's credential is write-only: answers and audit entries
//! say `has_credential`, never the credential. What the store cannot know is checked
//! here: that a server's name fits the gateway's separator, and that its URL passes the
//! upstream policy (as a model's `api_base` does).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{MethodRouter, delete, get, post};
use obleth_core::{ChangeEvent, now_millis};
use obleth_mcp::pin::{self, ApproveError, PinHash, PinRow};
use obleth_store::{McpGrantFilter, McpServer, McpServerPatch, McpToolPin, NewMcpGrant, NewMcpServer};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::extract::{JsonBody, Params, PathPair, PathParam};
use crate::{Actor, AdminState, ApiError, ErrorCode, audit, upstream};

/// The MCP routes (part of the admin API's table, documented in `openapi.rs`).
pub(crate) fn routes() -> Vec<(&'static str, MethodRouter<AdminState>)> {
    vec![
        ("/api/v1/mcp/servers", get(list_servers).post(create_server)),
        ("/api/v1/mcp/servers/{name}", get(get_server).patch(update_server).delete(delete_server)),
        ("/api/v1/mcp/servers/{name}/tools", get(list_tools)),
        ("/api/v1/mcp/servers/{name}/tools/{tool}", get(get_tool)),
        ("/api/v1/mcp/servers/{name}/tools/{tool}/approve", post(approve_tool)),
        ("/api/v1/mcp/grants", get(list_grants).post(create_grant)),
        ("/api/v1/mcp/grants/{id}", delete(delete_grant)),
        ("/api/v1/mcp/health", get(health)),
        ("/api/v1/mcp/servers/{name}/health", get(server_health)),
    ]
}

// === health (this pod's view) ===

fn statuses(s: &AdminState) -> Result<Vec<obleth_mcp::ServerStatus>, ApiError> {
    let mcp = s
        .mcp
        .as_ref()
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "the MCP gateway is off ([mcp] enabled = false)"))?;
    Ok(mcp.servers())
}

/// Every server's health as this pod sees it: up or down (with the last error), its
/// last listing, protocol version, calls in flight and queued, tools awaiting approval.
async fn health(State(s): State<AdminState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "data": statuses(&s)? })))
}

async fn server_health(State(s): State<AdminState>, PathParam(name): PathParam) -> Result<Json<Value>, ApiError> {
    let found = statuses(&s)?.into_iter().find(|st| st.name == name);
    let status = found.ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("MCP server '{name}' not found")))?;
    Ok(Json(json!(status)))
}

// === servers ===

/// A server as answers and the audit trail show it: `has_credential`, never the
/// credential (which `McpServer` never serializes).
fn server_view(s: &McpServer) -> Value {
    let mut v = json!(s);
    v["has_credential"] = Value::Bool(s.has_credential());
    v
}

/// The checks that depend on the gateway's configuration.
async fn check_server(
    s: &AdminState,
    name: Option<&str>,
    url: Option<&str>,
    command: Option<&str>,
) -> Result<(), ApiError> {
    if let Some(command) = command
        && !s.mcp_stdio_commands.iter().any(|c| c == command)
    {
        let known = if s.mcp_stdio_commands.is_empty() { "none".to_owned() } else { s.mcp_stdio_commands.join(", ") };
        return Err(ApiError::invalid(
            "command",
            &format!(
                "'{command}' is not a command of [mcp.stdio.commands] in the gateway's configuration (known: {known})"
            ),
        ));
    }
    if let Some(name) = name {
        obleth_mcp::names::check_server_name(name, &s.mcp_separator).map_err(|e| ApiError::invalid("name", &e.0))?;
    }
    if let Some(url) = url {
        upstream::check_url(&s.upstream_policy, "url", url).await?;
    }
    Ok(())
}

async fn list_servers(State(s): State<AdminState>) -> Result<Json<Value>, ApiError> {
    let servers = s.store.list_mcp_servers().await?;
    Ok(Json(json!({ "data": servers.iter().map(server_view).collect::<Vec<_>>() })))
}

async fn create_server(
    State(s): State<AdminState>,
    actor: Actor,
    body: JsonBody<NewMcpServer>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let JsonBody(new) = body;
    check_server(&s, Some(&new.name), new.url.as_deref(), new.command.as_deref()).await?;
    let server = s.store.create_mcp_server(new).await?;
    let view = server_view(&server);
    audit(&s, &actor, "mcp_server.create", "mcp_server", &server.name, None, Some(view.clone())).await;
    s.notifier.notify(ChangeEvent::McpServer { name: server.name.clone() });
    tracing::info!(server = %server.name, transport = server.transport.as_str(), "MCP server registered");
    Ok((StatusCode::CREATED, Json(view)))
}

async fn get_server(State(s): State<AdminState>, PathParam(name): PathParam) -> Result<Json<Value>, ApiError> {
    Ok(Json(server_view(&s.store.get_mcp_server(&name).await?)))
}

async fn update_server(
    State(s): State<AdminState>,
    PathParam(name): PathParam,
    actor: Actor,
    body: JsonBody<McpServerPatch>,
) -> Result<Json<Value>, ApiError> {
    let JsonBody(patch) = body;
    check_server(&s, None, patch.url.as_deref(), patch.command.as_deref()).await?;
    let replaced = matches!(patch.credential, Some(Some(_)));
    let before = s.store.get_mcp_server(&name).await?;
    let server = s.store.update_mcp_server(&before.id, patch).await?;
    let mut after = server_view(&server);
    if replaced && before.has_credential() {
        // Both sides would say has_credential: true; say that it changed.
        after["credential_replaced"] = Value::Bool(true);
    }
    audit(&s, &actor, "mcp_server.update", "mcp_server", &server.name, Some(server_view(&before)), Some(after)).await;
    s.notifier.notify(ChangeEvent::McpServer { name: server.name.clone() });
    tracing::info!(server = %server.name, "MCP server updated");
    Ok(Json(server_view(&server)))
}

async fn delete_server(
    State(s): State<AdminState>,
    PathParam(name): PathParam,
    actor: Actor,
) -> Result<Json<Value>, ApiError> {
    let server = s.store.delete_mcp_server(&name).await?;
    let view = server_view(&server);
    audit(&s, &actor, "mcp_server.delete", "mcp_server", &server.name, Some(view.clone()), None).await;
    // Its grants and pins went with it.
    s.notifier.notify(ChangeEvent::McpServer { name: server.name.clone() });
    s.notifier.notify(ChangeEvent::McpGrants);
    tracing::info!(server = %server.name, "MCP server deleted");
    Ok(Json(json!({ "deleted": view })))
}

// === tools ===

/// `approved` (as approved), `quarantined` (another definition waits for approval) or
/// `unapproved` (never approved: held on a server that requires approval).
fn pin_state(p: &McpToolPin) -> &'static str {
    match (&p.approved_hash, &p.pending_hash) {
        (None, _) => "unapproved",
        (Some(a), Some(pending)) if a != pending => "quarantined",
        _ => "approved",
    }
}

/// A pin in a listing: its state and hashes, without the definitions.
fn tool_summary(p: &McpToolPin, sep: &str) -> Value {
    json!({
        "server": p.server,
        "tool": p.tool,
        "name": obleth_mcp::names::join(&p.server, &p.tool, sep),
        "state": pin_state(p),
        "approved_hash": p.approved_hash,
        "pending_hash": p.pending_hash,
        "first_seen_at": p.first_seen_at,
        "changed_at": p.changed_at,
        "approved_at": p.approved_at,
        "approved_by": p.approved_by,
    })
}

/// A pin with both definitions: what an operator reviews before approving.
fn tool_view(p: &McpToolPin, sep: &str) -> Value {
    let mut v = json!(p);
    v["name"] = Value::String(obleth_mcp::names::join(&p.server, &p.tool, sep));
    v["state"] = Value::String(pin_state(p).to_owned());
    v
}

async fn list_tools(State(s): State<AdminState>, PathParam(name): PathParam) -> Result<Json<Value>, ApiError> {
    let pins = s.store.list_mcp_pins(&name).await?;
    Ok(Json(json!({ "data": pins.iter().map(|p| tool_summary(p, &s.mcp_separator)).collect::<Vec<_>>() })))
}

/// The pin of `tool` of server `name` (404 when the server or the pin is missing).
async fn find_pin(s: &AdminState, name: &str, tool: &str) -> Result<McpToolPin, ApiError> {
    s.store
        .list_mcp_pins(name)
        .await?
        .into_iter()
        .find(|p| p.tool == tool)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("MCP server '{name}' has no tool '{tool}' pinned.")))
}

async fn get_tool(State(s): State<AdminState>, PathPair(name, tool): PathPair) -> Result<Json<Value>, ApiError> {
    Ok(Json(tool_view(&find_pin(&s, &name, &tool).await?, &s.mcp_separator)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApproveBody {
    /// The hash of the pending definition the operator reviewed (`sha256:…`); a
    /// definition that changed again since is refused (409).
    hash: String,
}

/// The pin once `reviewed` is approved by `actor`, or why not (409).
fn approval(p: &McpToolPin, reviewed: &str, actor: &Actor) -> Result<McpToolPin, ApiError> {
    let row = PinRow { approved: p.approved_hash.clone().map(PinHash), pending: p.pending_hash.clone().map(PinHash) };
    match pin::approve(&row, &PinHash(reviewed.to_owned())) {
        Ok(_) => Ok(McpToolPin {
            approved_hash: p.pending_hash.clone(),
            approved_def: p.pending_def.clone(),
            pending_hash: None,
            pending_def: None,
            approved_at: Some(now_millis()),
            approved_by: Some(actor.0.clone()),
            ..p.clone()
        }),
        Err(ApproveError::NothingPending) => Err(ApiError::new(
            ErrorCode::Conflict,
            format!("Nothing of tool '{}' of MCP server '{}' waits for approval.", p.tool, p.server),
        )),
        Err(ApproveError::Stale { pending }) => Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "The definition waiting for approval is now {}, not the one reviewed: review it and approve that hash.",
                pending.0
            ),
        )
        .with_param("hash")),
    }
}

/// Approves the reviewed pending definition. The pin is written only if it is still as
/// read (a gateway may quarantine a newer definition meanwhile); if it moved, it is read
/// and decided again once.
async fn approve_tool(
    State(s): State<AdminState>,
    PathPair(name, tool): PathPair,
    actor: Actor,
    body: JsonBody<ApproveBody>,
) -> Result<Json<Value>, ApiError> {
    let JsonBody(ApproveBody { hash }) = body;
    if !is_pin_hash(&hash) {
        return Err(ApiError::invalid("hash", "must be sha256: and 64 lowercase hex digits"));
    }
    for _ in 0..2 {
        let current = find_pin(&s, &name, &tool).await?;
        let approved = approval(&current, &hash, &actor)?;
        if !s.store.put_mcp_pin(&approved, Some(&current.version())).await? {
            continue;
        }
        let id = format!("{}/{}", approved.server, approved.tool);
        let (before, after) = (tool_view(&current, &s.mcp_separator), tool_view(&approved, &s.mcp_separator));
        audit(&s, &actor, "mcp_tool.approve", "mcp_tool", &id, Some(before), Some(after.clone())).await;
        s.notifier.notify(ChangeEvent::McpPin { server: approved.server.clone(), tool: approved.tool.clone() });
        tracing::info!(server = %approved.server, tool = %approved.tool, hash = %hash, "MCP tool approved");
        return Ok(Json(after));
    }
    Err(ApiError::new(
        ErrorCode::Conflict,
        "The tool's pin kept changing while it was approved: read it and try again.",
    ))
}

fn is_pin_hash(h: &str) -> bool {
    h.strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

// === grants ===

/// `GET /api/v1/mcp/grants?tenant=&key=&server=`: by creation time.
async fn list_grants(State(s): State<AdminState>, params: Params) -> Result<Json<Value>, ApiError> {
    let mut params = params;
    let (tenant, key_id, server) = (params.take("tenant"), params.take("key"), params.take("server"));
    params.finish()?;
    // A tenant or server that does not exist is a 404, not an empty list.
    let tenant_id = match tenant {
        Some(t) => Some(s.store.get_tenant(&t).await?.id),
        None => None,
    };
    let server = match server {
        Some(name) => Some(s.store.get_mcp_server(&name).await?.name),
        None => None,
    };
    let grants = s.store.list_mcp_grants(McpGrantFilter { tenant_id, key_id, server }).await?;
    Ok(Json(json!({ "data": grants })))
}

async fn create_grant(
    State(s): State<AdminState>,
    actor: Actor,
    body: JsonBody<NewMcpGrant>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let JsonBody(new) = body;
    let grant = s.store.create_mcp_grant(new).await?;
    audit(&s, &actor, "mcp_grant.create", "mcp_grant", &grant.id, None, Some(json!(grant))).await;
    s.notifier.notify(ChangeEvent::McpGrants);
    tracing::info!(grant = %grant.id, tenant = %grant.tenant_id, server = %grant.server, "MCP grant created");
    Ok((StatusCode::CREATED, Json(json!(grant))))
}

async fn delete_grant(
    State(s): State<AdminState>,
    PathParam(id): PathParam,
    actor: Actor,
) -> Result<Json<Value>, ApiError> {
    let grant = s.store.delete_mcp_grant(&id).await?;
    audit(&s, &actor, "mcp_grant.delete", "mcp_grant", &grant.id, Some(json!(grant)), None).await;
    s.notifier.notify(ChangeEvent::McpGrants);
    tracing::info!(grant = %grant.id, "MCP grant deleted");
    Ok(Json(json!({ "deleted": grant })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(approved: Option<&str>, pending: Option<&str>) -> McpToolPin {
        McpToolPin {
            server: "fs".into(),
            tool: "read".into(),
            approved_hash: approved.map(str::to_owned),
            approved_def: approved.map(|_| json!({"name": "read", "description": "v1"})),
            pending_hash: pending.map(str::to_owned),
            pending_def: pending.map(|_| json!({"name": "read", "description": "v2"})),
            first_seen_at: 1,
            changed_at: None,
            approved_at: None,
            approved_by: None,
        }
    }

    #[test]
    fn states_and_approvals() {
        let (a, b) = (format!("sha256:{}", "a".repeat(64)), format!("sha256:{}", "b".repeat(64)));
        assert_eq!(pin_state(&pin(Some(&a), None)), "approved");
        assert_eq!(pin_state(&pin(Some(&a), Some(&b))), "quarantined");
        assert_eq!(pin_state(&pin(None, Some(&b))), "unapproved");

        let actor = Actor("ops@example.com".into());
        let approved = approval(&pin(Some(&a), Some(&b)), &b, &actor).expect("approve");
        assert_eq!((approved.approved_hash.as_deref(), approved.pending_hash), (Some(b.as_str()), None));
        assert_eq!(approved.approved_def, Some(json!({"name": "read", "description": "v2"})));
        assert_eq!(approved.approved_by.as_deref(), Some("ops@example.com"));
        let stale = approval(&pin(Some(&a), Some(&b)), &a, &actor).expect_err("stale");
        assert_eq!((stale.code, stale.param.as_deref()), (ErrorCode::Conflict, Some("hash")));
        assert!(stale.message.contains(&b), "names the pending hash: {}", stale.message);
        assert_eq!(approval(&pin(Some(&a), None), &a, &actor).expect_err("nothing").code, ErrorCode::Conflict);

        assert!(is_pin_hash(&a) && !is_pin_hash(&a.to_uppercase()) && !is_pin_hash("sha256:ab"));
        let view = tool_summary(&pin(Some(&a), Some(&b)), "__");
        assert_eq!((view["name"].as_str(), view["state"].as_str()), (Some("fs__read"), Some("quarantined")));
        assert!(view.get("pending_def").is_none(), "a listing leaves the definitions out");
    }
}
