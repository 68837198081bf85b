//! Validation of MCP servers, grants and pins, shared by both stores so that they accept
//! and refuse the same input. Which server names fit the configured separator, and
//! whether a URL's destination is allowed, are the admin API's checks (they depend on
//! the gateway's configuration); the store keeps every row well-formed.

use obleth_core::now_millis;
use secrecy::ExposeSecret;

use crate::mcp::{McpGrant, McpServer, McpServerPatch, McpToolPin, McpTransport, NewMcpGrant, NewMcpServer};
use crate::{Result, invalid};

/// The prefix of server ids; names may not start with it (a lookup by id or name tells
/// them apart by it).
pub const SERVER_ID_PREFIX: &str = "mcp_";
/// The prefix of grant ids.
pub const GRANT_ID_PREFIX: &str = "mgr_";

pub const DEFAULT_CREDENTIAL_HEADER: &str = "authorization";
pub const DEFAULT_CALL_TIMEOUT_MS: u32 = 60_000;
pub const MAX_CALL_TIMEOUT_MS: u32 = 3_600_000;
pub const DEFAULT_LIST_TIMEOUT_MS: u32 = 2_000;
pub const MAX_LIST_TIMEOUT_MS: u32 = 60_000;
pub const DEFAULT_MAX_CONCURRENCY: u32 = 16;
pub const MAX_CONCURRENCY: u32 = 10_000;
pub const MAX_ARGS: usize = 64;
pub const MAX_ARG_BYTES: usize = 4096;
pub const MAX_REDACT_FIELDS: usize = 64;
/// Tools with a weight of their own (a bound on the row, far above real servers).
pub const MAX_TOOL_WEIGHTS: usize = 1024;
pub const MAX_TOOL_WEIGHT: f64 = 1000.0;
/// The longest tool name, redact field or credential kept.
pub const MAX_TOOL_NAME: usize = 256;
pub const MAX_CREDENTIAL: usize = 4096;

/// Headers the gateway sets itself, or that only concern one hop: a credential in one of
/// them would be overwritten or would break the request.
const RESERVED_HEADERS: &[&str] = &[
    "accept",
    "connection",
    "content-length",
    "content-type",
    "host",
    "keep-alive",
    "last-event-id",
    "mcp-protocol-version",
    "mcp-session-id",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A server name: 1–64 characters of `[a-z0-9._-]`, starting with a letter or digit, and
/// not shaped like an id (`mcp_…`).
pub fn validate_server_name(name: &str) -> std::result::Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if !ok {
        return Err("must be 1 to 64 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit".into());
    }
    if name.starts_with(SERVER_ID_PREFIX) {
        return Err(format!("must not start with '{SERVER_ID_PREFIX}' (reserved for ids)"));
    }
    Ok(())
}

pub(crate) fn new_server(new: NewMcpServer) -> Result<McpServer> {
    let transport = match (new.transport, &new.url, &new.command) {
        (Some(t), _, _) => t,
        (None, Some(_), None) => McpTransport::Http,
        (None, None, Some(_)) => McpTransport::Stdio,
        (None, Some(_), Some(_)) => {
            return Err(invalid("transport", "give url (an http server) or command (a stdio server), not both"));
        }
        (None, None, None) => {
            return Err(invalid("transport", "give url (an http server) or command (a stdio server)"));
        }
    };
    let now = now_millis();
    let mut server = McpServer {
        id: obleth_core::new_id(SERVER_ID_PREFIX),
        name: new.name,
        transport,
        url: new.url,
        command: new.command,
        args: new.args,
        credential: new.credential,
        credential_header: new.credential_header.unwrap_or_else(|| DEFAULT_CREDENTIAL_HEADER.to_owned()),
        call_timeout_ms: new.call_timeout_ms.unwrap_or(DEFAULT_CALL_TIMEOUT_MS),
        list_timeout_ms: new.list_timeout_ms.unwrap_or(DEFAULT_LIST_TIMEOUT_MS),
        max_concurrency: new.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY),
        require_approval: new.require_approval,
        capture: new.capture,
        redact_fields: new.redact_fields,
        tool_weights: new.tool_weights,
        enabled: new.enabled,
        created_at: now,
        updated_at: now,
    };
    check_server(&mut server)?;
    Ok(server)
}

pub(crate) fn patch_server(mut s: McpServer, p: McpServerPatch) -> Result<McpServer> {
    if let Some(v) = p.url {
        s.url = Some(v);
    }
    if let Some(v) = p.command {
        s.command = Some(v);
    }
    if let Some(v) = p.args {
        s.args = v;
    }
    if let Some(v) = p.credential {
        s.credential = v;
    }
    if let Some(v) = p.credential_header {
        s.credential_header = v;
    }
    if let Some(v) = p.call_timeout_ms {
        s.call_timeout_ms = v;
    }
    if let Some(v) = p.list_timeout_ms {
        s.list_timeout_ms = v;
    }
    if let Some(v) = p.max_concurrency {
        s.max_concurrency = v;
    }
    if let Some(v) = p.require_approval {
        s.require_approval = v;
    }
    if let Some(v) = p.capture {
        s.capture = v;
    }
    if let Some(v) = p.redact_fields {
        s.redact_fields = v;
    }
    if let Some(v) = p.tool_weights {
        s.tool_weights = v;
    }
    if let Some(v) = p.enabled {
        s.enabled = v;
    }
    s.updated_at = now_millis().max(s.updated_at);
    check_server(&mut s)?;
    Ok(s)
}

/// Checks a server and normalises its `url` in place.
fn check_server(s: &mut McpServer) -> Result<()> {
    validate_server_name(&s.name).map_err(|m| invalid("name", m))?;
    check_endpoint(s)?;
    check_args(&s.args)?;
    if let Some(c) = &s.credential {
        check_credential(c.expose_secret())?;
    }
    check_header_name(&s.credential_header)?;
    in_range("call_timeout_ms", s.call_timeout_ms, MAX_CALL_TIMEOUT_MS)?;
    in_range("list_timeout_ms", s.list_timeout_ms, MAX_LIST_TIMEOUT_MS)?;
    in_range("max_concurrency", s.max_concurrency, MAX_CONCURRENCY)?;
    if s.redact_fields.len() > MAX_REDACT_FIELDS {
        return Err(invalid("redact_fields", format!("at most {MAX_REDACT_FIELDS} fields")));
    }
    for f in &s.redact_fields {
        check_text(f, MAX_TOOL_NAME).map_err(|m| invalid("redact_fields", format!("{f:?} {m}")))?;
    }
    check_weights(s)
}

/// The transport's own field is set, the other one is not, and each is well-formed.
fn check_endpoint(s: &mut McpServer) -> Result<()> {
    match s.transport {
        McpTransport::Http if s.command.is_some() => Err(invalid("command", "is only for stdio servers")),
        McpTransport::Stdio if s.url.is_some() => Err(invalid("url", "is only for http servers")),
        McpTransport::Http => {
            let raw = s.url.as_deref().ok_or_else(|| invalid("url", "is required for an http server"))?;
            s.url = Some(normalise_url(raw)?);
            Ok(())
        }
        McpTransport::Stdio => {
            let command = s.command.as_deref().ok_or_else(|| invalid("command", "is required for a stdio server"))?;
            let ok = (1..=64).contains(&command.len())
                && command.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok {
                return Err(invalid("command", "must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'"));
            }
            Ok(())
        }
    }
}

/// The URL as `ApiBase` normalises a model's `api_base` (lowercase scheme and host,
/// canonical IPv4, no credentials, query or fragment), keeping a trailing slash: an MCP
/// URL is the endpoint itself, not a base a path is appended to, and some servers answer
/// `/mcp/` but redirect `/mcp`.
fn normalise_url(raw: &str) -> Result<String> {
    let parsed = obleth_core::upstream::ApiBase::parse(raw).map_err(|e| invalid("url", e))?;
    let mut url = parsed.as_str().to_owned();
    if raw.trim().ends_with('/') && !url.ends_with('/') {
        url.push('/');
    }
    Ok(url)
}

fn check_args(args: &[String]) -> Result<()> {
    if args.len() > MAX_ARGS {
        return Err(invalid("args", format!("at most {MAX_ARGS} arguments")));
    }
    for (i, a) in args.iter().enumerate() {
        if a.len() > MAX_ARG_BYTES {
            return Err(invalid("args", format!("argument {i} is over {MAX_ARG_BYTES} bytes")));
        }
        // A process argument cannot hold NUL, nor can Postgres text.
        if a.contains('\0') {
            return Err(invalid("args", format!("argument {i} holds a NUL character")));
        }
    }
    Ok(())
}

/// A credential is sent in a header: printable ASCII only. The message never quotes it.
fn check_credential(c: &str) -> Result<()> {
    let ok = (1..=MAX_CREDENTIAL).contains(&c.len()) && c.bytes().all(|b| (0x20..0x7f).contains(&b));
    if !ok {
        return Err(invalid(
            "credential",
            format!("must be 1 to {MAX_CREDENTIAL} printable ASCII characters (use null to clear it)"),
        ));
    }
    Ok(())
}

/// A lowercase HTTP header name (RFC 9110 token) the gateway does not set itself.
fn check_header_name(h: &str) -> Result<()> {
    let token = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !(1..=64).contains(&h.len()) || !h.bytes().all(token) {
        return Err(invalid("credential_header", "must be a lowercase HTTP header name of 1 to 64 characters"));
    }
    if RESERVED_HEADERS.contains(&h) || h.starts_with("proxy-") {
        return Err(invalid("credential_header", format!("'{h}' is set by the gateway or a proxy, not a credential")));
    }
    Ok(())
}

fn in_range(field: &'static str, v: u32, max: u32) -> Result<()> {
    if v == 0 || v > max {
        return Err(invalid(field, format!("must be between 1 and {max}")));
    }
    Ok(())
}

fn check_weights(s: &McpServer) -> Result<()> {
    if s.tool_weights.len() > MAX_TOOL_WEIGHTS {
        return Err(invalid("tool_weights", format!("at most {MAX_TOOL_WEIGHTS} tools")));
    }
    for (tool, w) in &s.tool_weights {
        check_text(tool, MAX_TOOL_NAME).map_err(|m| invalid("tool_weights", format!("the tool name {tool:?} {m}")))?;
        if !w.is_finite() || *w <= 0.0 || *w > MAX_TOOL_WEIGHT {
            return Err(invalid(
                "tool_weights",
                format!("'{tool}': must be greater than 0 and at most {MAX_TOOL_WEIGHT}"),
            ));
        }
    }
    Ok(())
}

/// A tool name, or a field name: 1 to `max` bytes without control characters (which no
/// upstream needs, and NUL no Postgres text can hold).
fn check_text(v: &str, max: usize) -> std::result::Result<(), String> {
    if v.is_empty() || v.len() > max || v.chars().any(char::is_control) {
        return Err(format!("must be 1 to {max} bytes without control characters"));
    }
    Ok(())
}

pub(crate) fn check_tool(field: &'static str, tool: &str) -> Result<()> {
    check_text(tool, MAX_TOOL_NAME).map_err(|m| invalid(field, m))
}

// === grants ===

pub(crate) fn check_grant(g: &NewMcpGrant) -> Result<()> {
    if g.tenant.is_empty() {
        return Err(invalid("tenant", "is required (an id or a name)"));
    }
    if g.key_id.as_deref().is_some_and(str::is_empty) {
        return Err(invalid("key_id", "must be a key id (or absent for the whole tenant)"));
    }
    if g.server.is_empty() {
        return Err(invalid("server", "is required (a server's name)"));
    }
    if let Some(t) = &g.tool {
        check_tool("tool", t)?;
    }
    Ok(())
}

/// A grant of `new` to tenant `tenant_id` (resolved) on server `server` (its name).
pub(crate) fn new_grant(new: &NewMcpGrant, tenant_id: String, server: String) -> McpGrant {
    McpGrant {
        id: obleth_core::new_id(GRANT_ID_PREFIX),
        tenant_id,
        key_id: new.key_id.clone(),
        server,
        tool: new.tool.clone(),
        created_at: now_millis(),
    }
}

/// A key grant's key must exist and be a key of the grant's tenant (`owner`: the key's
/// tenant, `None` when there is no such key). Either way a 400 naming `key_id`: the
/// request is wrong, whichever part of it.
pub(crate) fn key_of_tenant(key_id: &str, owner: Option<&str>, tenant_id: &str) -> Result<()> {
    match owner {
        Some(t) if t == tenant_id => Ok(()),
        Some(_) => Err(invalid("key_id", format!("key '{key_id}' is not a key of tenant '{tenant_id}'"))),
        None => Err(invalid("key_id", format!("there is no key '{key_id}'"))),
    }
}

/// The conflict of a grant that exists already.
pub(crate) fn duplicate_grant(g: &McpGrant) -> String {
    let who = g.key_id.as_deref().map_or_else(|| format!("tenant '{}'", g.tenant_id), |k| format!("key '{k}'"));
    let what = g.tool.as_deref().map_or_else(|| "every tool".to_owned(), |t| format!("tool '{t}'"));
    format!("{who} already has a grant of {what} of MCP server '{}'", g.server)
}

// === pins ===

pub(crate) fn check_pin(p: &McpToolPin) -> Result<()> {
    check_tool("tool", &p.tool)?;
    for (field, hash, def_field, def) in [
        ("approved_hash", &p.approved_hash, "approved_def", p.approved_def.is_some()),
        ("pending_hash", &p.pending_hash, "pending_def", p.pending_def.is_some()),
    ] {
        if let Some(h) = hash {
            check_hash(field, h)?;
        }
        if hash.is_some() != def {
            return Err(invalid(def_field, format!("is given with {field}, and only with it")));
        }
    }
    if p.approved_hash.is_none() && p.pending_hash.is_none() {
        return Err(invalid("pending_hash", "a pin holds an approved or a pending definition"));
    }
    if let Some(by) = &p.approved_by {
        crate::validate_actor(by).map_err(|m| invalid("approved_by", m))?;
    }
    Ok(())
}

/// `sha256:` and 64 lowercase hex digits, as `obleth_mcp::pin` writes them.
pub fn check_hash(field: &'static str, h: &str) -> Result<()> {
    let ok = h
        .strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    if !ok {
        return Err(invalid(field, "must be sha256: and 64 lowercase hex digits"));
    }
    Ok(())
}

/// A definition as stored: its JSON text (kept byte for byte).
pub(crate) fn def_text(field: &'static str, v: &Option<serde_json::Value>) -> Result<Option<String>> {
    v.as_ref().map(|v| serde_json::to_string(v).map_err(|e| invalid(field, e.to_string()))).transpose()
}
