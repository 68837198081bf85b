//! The OpenAPI 3 document of the admin API, served at `GET /api/v1/openapi.json`.
//!
//! Schemas are derived from the types the handlers read and write (`utoipa::ToSchema`);
//! operations come from [`OPERATIONS`], one line per method and path. A test checks that
//! the documented paths are exactly the router's (see [`crate::route_paths`]) and that
//! every documented method is served and every other one is not.

use serde_json::{Map, Value, json};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(components(schemas(
    obleth_core::Tenant,
    obleth_core::Quota,
    obleth_core::Group,
    obleth_core::ApiKey,
    obleth_core::Model,
    obleth_store::NewTenant,
    obleth_store::TenantPatch,
    obleth_store::NewModel,
    obleth_store::ModelPatch,
    obleth_store::GroupSettings,
    obleth_store::AuditEntry,
    obleth_store::McpServer,
    obleth_store::McpTransport,
    obleth_store::NewMcpServer,
    obleth_store::McpServerPatch,
    obleth_store::McpGrant,
    obleth_store::NewMcpGrant,
    obleth_store::McpToolPin,
    crate::mcp::ApproveBody,
    crate::NewKey,
    crate::RotateBody,
    crate::auth::SignIn,
)))]
struct Schemas;

/// What a successful answer holds.
#[derive(Debug, Clone, Copy)]
pub enum Body {
    /// One object of this schema.
    One(&'static str),
    /// `{"data": [...], "next_cursor": ...}` of this schema.
    Page(&'static str),
    /// `{"data": [...]}` of this schema (not paged).
    List(&'static str),
    /// `{"deleted": ...}` of this schema.
    Deleted(&'static str),
    /// Free-form JSON, described.
    Json(&'static str),
    /// Plain text.
    Text,
}

/// One documented operation.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    pub method: &'static str,
    /// OpenAPI form (`{name}`, also for axum's `{*name}`).
    pub path: &'static str,
    pub summary: &'static str,
    /// Query parameters, by name (see [`QUERY_PARAMETERS`]).
    pub query: &'static [&'static str],
    /// The request body's schema, and whether it is required.
    pub request: Option<(&'static str, bool)>,
    pub status: u16,
    pub response: Body,
    /// Needs the admin bearer token.
    pub auth: bool,
}

const PAGE: &[&str] = &["limit", "cursor"];

const fn op(method: &'static str, path: &'static str, summary: &'static str, status: u16, response: Body) -> Operation {
    Operation { method, path, summary, query: &[], request: None, status, response, auth: true }
}

const fn with_query(o: Operation, query: &'static [&'static str]) -> Operation {
    Operation { query, ..o }
}

const fn with_body(o: Operation, schema: &'static str, required: bool) -> Operation {
    Operation { request: Some((schema, required)), ..o }
}

const fn public(o: Operation) -> Operation {
    Operation { auth: false, ..o }
}

/// Every operation of the admin API.
pub const OPERATIONS: &[Operation] = &[
    with_query(
        op("get", "/api/v1/tenants", "List tenants by name", 200, Body::Page("Tenant")),
        &["group", "disabled", "search", "limit", "cursor"],
    ),
    with_body(op("post", "/api/v1/tenants", "Create a tenant", 201, Body::One("Tenant")), "NewTenant", true),
    op("get", "/api/v1/tenants/{tenant}", "Read a tenant (by id or name)", 200, Body::One("Tenant")),
    with_body(
        op("patch", "/api/v1/tenants/{tenant}", "Change a tenant; absent fields stay", 200, Body::One("Tenant")),
        "TenantPatch",
        true,
    ),
    op("delete", "/api/v1/tenants/{tenant}", "Delete a tenant and its keys", 200, Body::Deleted("Tenant")),
    op(
        "get",
        "/api/v1/tenants/{tenant}/usage",
        "The tenant's rate windows, in-flight count and spend",
        200,
        Body::Json("Usage against the tenant's quota"),
    ),
    with_query(op("get", "/api/v1/tenants/{tenant}/keys", "List a tenant's keys", 200, Body::Page("ApiKey")), PAGE),
    with_body(
        op(
            "post",
            "/api/v1/tenants/{tenant}/keys",
            "Create a key; its secret is returned once",
            201,
            Body::One("KeyWithSecret"),
        ),
        "NewKey",
        false,
    ),
    with_query(
        op("get", "/api/v1/keys", "List keys by creation time", 200, Body::Page("ApiKey")),
        &["tenant", "prefix", "include_revoked", "limit", "cursor"],
    ),
    op("delete", "/api/v1/keys/{id}", "Revoke a key", 200, Body::One("ApiKey")),
    op("post", "/api/v1/keys/{id}/revoke", "Revoke a key", 200, Body::One("ApiKey")),
    with_body(
        op(
            "post",
            "/api/v1/keys/{id}/rotate",
            "Rotate a key: a new key (secret returned once) and the old one expiring after the overlap",
            201,
            Body::One("RotatedKey"),
        ),
        "RotateBody",
        false,
    ),
    with_query(
        op("get", "/api/v1/models", "List models by name", 200, Body::Page("ModelView")),
        &["enabled", "tag", "limit", "cursor"],
    ),
    with_body(op("post", "/api/v1/models", "Register a model", 201, Body::One("ModelView")), "NewModel", true),
    op("get", "/api/v1/models/{name}", "Read a model", 200, Body::One("ModelView")),
    with_body(
        op("patch", "/api/v1/models/{name}", "Change a model; null clears a field", 200, Body::One("ModelView")),
        "ModelPatch",
        true,
    ),
    op("delete", "/api/v1/models/{name}", "Delete a model", 200, Body::Deleted("ModelView")),
    op("get", "/api/v1/groups", "List fairshare groups", 200, Body::List("Group")),
    op("get", "/api/v1/groups/{name}", "Read a group", 200, Body::One("Group")),
    with_body(
        op(
            "put",
            "/api/v1/groups/{name}",
            "Create a group or replace its settings (weight, reserved and max slots)",
            200,
            Body::One("Group"),
        ),
        "GroupSettings",
        true,
    ),
    op("delete", "/api/v1/groups/{name}", "Delete a group", 200, Body::Deleted("Group")),
    with_query(
        op("get", "/api/v1/audit", "The audit trail of admin changes, newest first", 200, Body::Page("AuditEntry")),
        &["resource", "actor", "from", "to", "limit", "cursor"],
    ),
    op("get", "/api/v1/scheduler", "The scheduler's slots, queues and shares", 200, Body::Json("Scheduler state")),
    with_query(
        op(
            "get",
            "/api/v1/scheduler/stream",
            "The scheduler lens: one server-sent `lens` event per second, the top tenants by activity and the rest summed",
            200,
            Body::Json("text/event-stream of lens frames"),
        ),
        &["top"],
    ),
    with_query(
        op("get", "/api/v1/stats", "The last seconds of traffic, one point per second", 200, Body::Json("Stats")),
        &["window"],
    ),
    op("get", "/api/v1/cluster", "This pod's slot share and every live pod's claim", 200, Body::Json("Cluster")),
    with_query(
        op("get", "/api/v1/usage/totals", "Usage totals from the ledger", 200, Body::Json("Totals")),
        &["from", "to", "tenant", "model", "group_by", "format"],
    ),
    with_query(
        op("get", "/api/v1/usage/series", "Usage per time bucket", 200, Body::Json("Series")),
        &["from", "to", "tenant", "model", "group_by", "bucket", "top"],
    ),
    with_query(
        op("get", "/api/v1/usage/recent", "The latest ledger rows", 200, Body::Json("Rows")),
        &["from", "to", "tenant", "model", "limit", "format"],
    ),
    op("get", "/api/v1/ledger", "The ledger's state", 200, Body::Json("Ledger status")),
    op("get", "/api/v1/me", "A tenant's session: its tenant and key", 200, Body::Json("The tenant and key")),
    op("get", "/api/v1/me/usage", "A tenant's session: its limits in use", 200, Body::Json("Usage against the quota")),
    with_query(
        op("get", "/api/v1/me/usage/totals", "A tenant's session: its usage totals", 200, Body::Json("Totals")),
        &["from", "to", "model", "group_by", "format"],
    ),
    with_query(
        op("get", "/api/v1/me/usage/series", "A tenant's session: its usage per bucket", 200, Body::Json("Series")),
        &["from", "to", "model", "group_by", "bucket", "top"],
    ),
    with_query(
        op("get", "/api/v1/me/usage/recent", "A tenant's session: its latest rows", 200, Body::Json("Rows")),
        &["from", "to", "model", "limit", "format"],
    ),
    op("get", "/api/v1/mcp/servers", "List MCP servers by name", 200, Body::List("McpServerView")),
    with_body(
        op("post", "/api/v1/mcp/servers", "Register an MCP server", 201, Body::One("McpServerView")),
        "NewMcpServer",
        true,
    ),
    op("get", "/api/v1/mcp/servers/{name}", "Read an MCP server (by name or id)", 200, Body::One("McpServerView")),
    with_body(
        op(
            "patch",
            "/api/v1/mcp/servers/{name}",
            "Change an MCP server; absent fields stay, credential null clears it",
            200,
            Body::One("McpServerView"),
        ),
        "McpServerPatch",
        true,
    ),
    op(
        "delete",
        "/api/v1/mcp/servers/{name}",
        "Delete an MCP server with its grants and pins",
        200,
        Body::Deleted("McpServerView"),
    ),
    op(
        "get",
        "/api/v1/mcp/servers/{name}/tools",
        "The server's tools as pinned: approved, quarantined (a changed definition waits) or unapproved",
        200,
        Body::List("McpToolSummary"),
    ),
    op(
        "get",
        "/api/v1/mcp/servers/{name}/tools/{tool}",
        "One tool's pin with its approved and pending definitions (the change to review)",
        200,
        Body::One("McpTool"),
    ),
    with_body(
        op(
            "post",
            "/api/v1/mcp/servers/{name}/tools/{tool}/approve",
            "Approve the pending definition whose hash was reviewed (409 if none waits or it changed again)",
            200,
            Body::One("McpTool"),
        ),
        "ApproveBody",
        true,
    ),
    with_query(
        op("get", "/api/v1/mcp/grants", "List MCP grants by creation time", 200, Body::List("McpGrant")),
        &["tenant", "key", "server"],
    ),
    with_body(
        op(
            "post",
            "/api/v1/mcp/grants",
            "Grant a server, or one tool of it, to a tenant or (narrower) one of its keys",
            201,
            Body::One("McpGrant"),
        ),
        "NewMcpGrant",
        true,
    ),
    op("delete", "/api/v1/mcp/grants/{id}", "Revoke an MCP grant", 200, Body::Deleted("McpGrant")),
    op("get", "/api/v1/mcp/health", "Every MCP server's health as this pod sees it", 200, Body::Json("McpHealthList")),
    op(
        "get",
        "/api/v1/mcp/servers/{name}/health",
        "One MCP server's health as this pod sees it",
        200,
        Body::Json("McpHealth"),
    ),
    op(
        "get",
        "/api/v1/me/scheduler",
        "A tenant's session: the pool and its own place in it",
        200,
        Body::Json("Pool and tenant"),
    ),
    public(op("get", "/api/v1/session", "The console session of the cookie", 200, Body::Json("Session"))),
    public(with_body(
        op(
            "post",
            "/api/v1/session",
            "Sign in: a token (admin, viewer or API key) for an HttpOnly session cookie",
            201,
            Body::Json("Session"),
        ),
        "SignIn",
        true,
    )),
    public(op("delete", "/api/v1/session", "Sign out: the session ends on the server", 204, Body::Text)),
    public(op("get", "/healthz", "Liveness", 200, Body::Text)),
    public(op("get", "/readyz", "Readiness, with each dependency's state", 200, Body::Json("Readiness"))),
    public(op("get", "/api/v1/openapi.json", "This document", 200, Body::Json("An OpenAPI 3 document"))),
];

/// Query parameters: name, JSON type, description.
pub const QUERY_PARAMETERS: &[(&str, &str, &str)] = &[
    ("limit", "integer", "Page size (1 to 1000, default 100); for usage/recent at most 1000, default 50"),
    ("cursor", "string", "The next_cursor of the previous page"),
    ("group", "string", "Only tenants of this fairshare group"),
    ("disabled", "boolean", "Only disabled (true) or enabled (false) tenants"),
    ("enabled", "boolean", "Only enabled (true) or disabled (false) models"),
    ("tag", "string", "Only models carrying this tag"),
    ("tenant", "string", "A tenant, by id or name"),
    ("key", "string", "A key's id"),
    ("server", "string", "An MCP server's name"),
    ("prefix", "string", "Keys whose prefix starts with this"),
    ("include_revoked", "boolean", "Include revoked keys (default false)"),
    (
        "resource",
        "string",
        "tenant, key, model, group, mcp_server, mcp_grant or mcp_tool, optionally :<id or name> (mcp_tool: server/tool)",
    ),
    ("actor", "string", "Who made the change (X-Obleth-Actor)"),
    ("from", "string", "From this time: Unix ms, RFC 3339 or a duration back from now (24h)"),
    ("to", "string", "Until this time (exclusive), same forms as from"),
    ("model", "string", "A model name"),
    ("group_by", "string", "none, tenant or model"),
    ("bucket", "string", "minute, hour or day"),
    ("search", "string", "Only tenants whose name contains this"),
    ("format", "string", "json (default) or csv (a download)"),
    (
        "top",
        "integer",
        "Keep the most active, sum the rest as others: the scheduler stream's tenants by activity (1 to 200, default 50); a grouped usage series' keys by tokens (1 to 100, default all; the others' rows carry \"other\": true)",
    ),
    ("window", "integer", "Seconds of traffic (10 to 600, default 300)"),
];

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn response_schema(body: Body) -> Option<Value> {
    Some(match body {
        Body::One(s) => schema_ref(s),
        Body::Page(s) => json!({
            "type": "object",
            "required": ["data", "next_cursor"],
            "properties": {
                "data": { "type": "array", "items": schema_ref(s) },
                "next_cursor": { "type": ["string", "null"], "description": "Set when more items follow" },
            },
        }),
        Body::List(s) => json!({
            "type": "object", "required": ["data"], "properties": { "data": { "type": "array", "items": schema_ref(s) } },
        }),
        Body::Deleted(s) => {
            json!({ "type": "object", "required": ["deleted"], "properties": { "deleted": schema_ref(s) } })
        }
        Body::Json(_) => json!({ "type": "object" }),
        Body::Text => return None,
    })
}

/// The `{"error":{"message","type","param","code"}}` schema shared with the data plane.
pub fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": { "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": { "type": "string" },
                "type": { "type": "string", "description": "invalid_request_error, authentication_error or server_error" },
                "param": { "type": ["string", "null"], "description": "The offending field or parameter" },
                "code": { "type": ["string", "null"] },
            },
        }},
    })
}

fn operation(o: &Operation) -> Value {
    let mut parameters: Vec<Value> = o
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect();
    for name in o.query {
        let (_, ty, description) =
            QUERY_PARAMETERS.iter().find(|(n, _, _)| n == name).copied().unwrap_or((name, "string", ""));
        parameters.push(json!({ "name": name, "in": "query", "required": false, "description": description, "schema": { "type": ty } }));
    }
    if o.auth && o.method != "get" {
        parameters.push(json!({
            "name": "X-Obleth-Actor", "in": "header", "required": false,
            "description": "Who makes the change, for the audit trail (default admin; 1-128 of A-Z a-z 0-9 . _ - @ : / +)",
            "schema": { "type": "string" },
        }));
    }
    let description = match o.response {
        Body::Json(d) => d,
        _ => "Success",
    };
    let mut ok = json!({ "description": description });
    match response_schema(o.response) {
        Some(schema) => ok["content"] = json!({ "application/json": { "schema": schema } }),
        None => ok["content"] = json!({ "text/plain": { "schema": { "type": "string" } } }),
    }
    let mut responses = Map::new();
    responses.insert(o.status.to_string(), ok);
    let errors: &[&str] = match (o.auth, o.method) {
        (false, _) => &["503"],
        (true, "get") => &["400", "401", "404", "503"],
        // Every malformed body, path segment or query parameter is a 400 naming it (no 415 or 422).
        (true, _) => &["400", "401", "404", "409", "413", "500", "503"],
    };
    for code in errors {
        responses.insert((*code).to_owned(), json!({ "$ref": "#/components/responses/Error" }));
    }
    let mut v = json!({
        "summary": o.summary,
        "operationId": format!("{}{}", o.method, o.path.replace(['/', '{', '}', '.'], "_")),
        "parameters": parameters,
        "responses": responses,
        "security": if o.auth { json!([{ "admin_token": [] }]) } else { json!([]) },
    });
    if let Some((schema, required)) = o.request {
        v["requestBody"] =
            json!({ "required": required, "content": { "application/json": { "schema": schema_ref(schema) } } });
    }
    v
}

/// The whole document.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(Schemas::openapi()).unwrap_or_else(|_| json!({}));
    doc["openapi"] = json!("3.1.0");
    doc["info"] = json!({
        "title": "obleth admin API",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "Tenants, keys, models, fairshare groups, MCP servers, grants and tool pins, the audit trail \
            and usage. Every route but the \
            health probes, the session routes and this document needs `Authorization: Bearer <token>` (the \
            admin token; a viewer token for reads; a tenant's API key for /api/v1/me*) or a console session \
            cookie, whose changes carry `X-CSRF-Token`. Errors are \
            `{\"error\":{\"message\",\"type\",\"param\",\"code\"}}`.",
    });
    let mut paths = Map::new();
    for o in OPERATIONS {
        let item = paths.entry(o.path.to_owned()).or_insert_with(|| json!({}));
        item[o.method] = operation(o);
    }
    doc["paths"] = Value::Object(paths);
    let schemas = &mut doc["components"]["schemas"];
    schemas["Error"] = error_schema();
    schemas["ModelView"] = json!({
        "description": "A model as the admin API shows it: never its credential, only whether one is set.",
        "allOf": [schema_ref("Model"), { "type": "object", "required": ["has_api_key"], "properties": { "has_api_key": { "type": "boolean" } } }],
    });
    schemas["McpServerView"] = json!({
        "description": "An MCP server as the admin API shows it: never its credential, only whether one is set.",
        "allOf": [schema_ref("McpServer"), { "type": "object", "required": ["has_credential"], "properties": { "has_credential": { "type": "boolean" } } }],
    });
    let tool_fields = json!({ "type": "object", "required": ["name", "state"], "properties": {
        "name": { "type": "string", "description": "The name clients see: server, separator, tool" },
        "state": { "type": "string", "enum": ["approved", "quarantined", "unapproved"] },
    }});
    schemas["McpTool"] = json!({ "allOf": [schema_ref("McpToolPin"), tool_fields] });
    schemas["McpToolSummary"] = json!({
        "description": "A tool's pin without its definitions.",
        "allOf": [tool_fields, { "type": "object", "required": ["server", "tool", "first_seen_at"], "properties": {
            "server": { "type": "string" },
            "tool": { "type": "string" },
            "approved_hash": { "type": ["string", "null"] },
            "pending_hash": { "type": ["string", "null"] },
            "first_seen_at": { "type": "integer" },
            "changed_at": { "type": ["integer", "null"] },
            "approved_at": { "type": ["integer", "null"] },
            "approved_by": { "type": ["string", "null"] },
        }}],
    });
    schemas["KeyWithSecret"] = json!({
        "allOf": [schema_ref("ApiKey"), { "type": "object", "required": ["secret", "note"], "properties": {
            "secret": { "type": "string", "description": "The key itself; shown only in this answer" },
            "note": { "type": "string" },
        }}],
    });
    schemas["RotatedKey"] = json!({
        "allOf": [schema_ref("KeyWithSecret"), { "type": "object", "required": ["old_key"], "properties": {
            "old_key": { "allOf": [schema_ref("ApiKey")], "description": "The old key, with its new expires_at" },
        }}],
    });
    doc["components"]["responses"] = json!({ "Error": {
        "description": "An error",
        "content": { "application/json": { "schema": schema_ref("Error") } },
    }});
    doc["components"]["securitySchemes"] = json!({ "admin_token": { "type": "http", "scheme": "bearer" } });
    doc
}

/// Checks that `doc` is an OpenAPI 3 document with paths, each operation answering some
/// 2xx; returns each documented (method, path).
pub fn validate(doc: &Value) -> Result<Vec<(String, String)>, String> {
    if !doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")) {
        return Err("not an OpenAPI 3 document".into());
    }
    let parsed: utoipa::openapi::OpenApi =
        serde_json::from_value(doc.clone()).map_err(|e| format!("does not parse as OpenAPI: {e}"))?;
    if parsed.paths.paths.is_empty() {
        return Err("no paths".into());
    }
    let mut operations = vec![];
    for (path, item) in &parsed.paths.paths {
        let methods = [
            ("get", &item.get),
            ("post", &item.post),
            ("put", &item.put),
            ("patch", &item.patch),
            ("delete", &item.delete),
            ("head", &item.head),
            ("options", &item.options),
            ("trace", &item.trace),
        ];
        let mut any = false;
        for (method, op) in methods {
            let Some(op) = op else { continue };
            any = true;
            if !op.responses.responses.keys().any(|code| code.starts_with('2')) {
                return Err(format!("{method} {path} documents no 2xx response"));
            }
            operations.push((method.to_owned(), path.clone()));
        }
        if !any {
            return Err(format!("{path} has no operation"));
        }
    }
    Ok(operations)
}
