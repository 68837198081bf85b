//! The admin CLI: `obleth tenants|keys|models|mcp …`, a thin client of the admin API.
//!
//! It prints the API's JSON answers as they are, so that scripts can use `jq`, and
//! exits non-zero with the API's error message when a call fails.

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value, json};

/// How to reach the admin API.
#[derive(Debug, Clone, Args)]
pub struct AdminConn {
    /// Base URL of the admin API.
    #[arg(long, env = "OBLETH_ADMIN_URL", default_value = "http://127.0.0.1:9090")]
    pub admin_url: String,
    /// Admin bearer token.
    #[arg(long, env = "OBLETH_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
}

#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// List tenants.
    List,
    /// Show one tenant (by id or name).
    Get { tenant: String },
    /// Create a tenant.
    Create {
        name: String,
        #[command(flatten)]
        fields: TenantFields,
    },
    /// Change a tenant; only the given fields change.
    Update {
        tenant: String,
        /// Rename the tenant.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        fields: TenantFields,
        /// Re-enable a disabled tenant.
        #[arg(long, conflicts_with = "disabled")]
        enable: bool,
    },
    /// Delete a tenant and all its keys.
    Delete { tenant: String },
    /// Where a tenant stands against its limits (rate windows, in flight, spend).
    Usage { tenant: String },
}

#[derive(Debug, Args)]
pub struct TenantFields {
    #[arg(long)]
    weight: Option<u32>,
    #[arg(long)]
    group: Option<String>,
    /// May be repeated; no model given means every model.
    #[arg(long = "allow-model")]
    allow_models: Vec<String>,
    #[arg(long)]
    disabled: bool,
    #[arg(long)]
    never_degrade: bool,
    /// Tokens per minute.
    #[arg(long)]
    tpm: Option<u64>,
    /// Requests per minute.
    #[arg(long)]
    rpm: Option<u64>,
    /// Requests held at once, queued or running.
    #[arg(long)]
    max_in_flight: Option<u32>,
    /// Spend per calendar month (UTC), in the registry's currency.
    #[arg(long)]
    monthly_budget: Option<f64>,
    /// Spend over the tenant's life.
    #[arg(long)]
    lifetime_budget: Option<f64>,
    /// Refuse rather than use a pod's local share while Redis is unreachable.
    #[arg(long)]
    fail_closed: bool,
}

impl TenantFields {
    /// The quota fields given on the command line, merged over `current`.
    fn quota(&self, current: Option<&Value>) -> Option<Value> {
        let given = [
            ("tpm", self.tpm.map(|v| json!(v))),
            ("rpm", self.rpm.map(|v| json!(v))),
            ("max_in_flight", self.max_in_flight.map(|v| json!(v))),
            ("monthly_budget", self.monthly_budget.map(|v| json!(v))),
            ("lifetime_budget", self.lifetime_budget.map(|v| json!(v))),
            ("fail_closed", self.fail_closed.then_some(json!(true))),
        ];
        if given.iter().all(|(_, v)| v.is_none()) {
            return None;
        }
        let mut quota = current.and_then(Value::as_object).cloned().unwrap_or_default();
        for (k, v) in given {
            if let Some(v) = v {
                quota.insert(k.into(), v);
            }
        }
        Some(Value::Object(quota))
    }
}

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Create a key for a tenant; the secret is printed once.
    Create {
        tenant: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        expires_in_secs: Option<u64>,
    },
    /// List keys (prefixes only).
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        prefix: Option<String>,
        #[arg(long)]
        include_revoked: bool,
    },
    /// Revoke a key by id.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// List fairshare groups.
    List,
    /// Create a group or replace its settings (a limit not given is removed).
    Set {
        name: String,
        #[arg(long)]
        weight: u32,
        /// Slots guaranteed to the group while it has requests waiting.
        #[arg(long)]
        reserved_slots: Option<u32>,
        /// Most requests the group may have in flight.
        #[arg(long)]
        max_slots: Option<u32>,
    },
    /// Delete a group (its tenants fall back to the default group weight).
    Delete { name: String },
}

pub async fn groups(conn: &AdminConn, cmd: GroupCmd) -> anyhow::Result<()> {
    let out = match cmd {
        GroupCmd::List => call(conn, "GET", "/api/v1/groups", None).await?,
        GroupCmd::Set { name, weight, reserved_slots, max_slots } => {
            let body = json!({ "weight": weight, "reserved_slots": reserved_slots, "max_slots": max_slots });
            call(conn, "PUT", &format!("/api/v1/groups/{name}"), Some(body)).await?
        }
        GroupCmd::Delete { name } => call(conn, "DELETE", &format!("/api/v1/groups/{name}"), None).await?,
    };
    print(&out)
}

#[derive(Debug, Subcommand)]
pub enum UsageCmd {
    /// Totals over a time range (per tenant or model with --by).
    Totals {
        #[command(flatten)]
        range: UsageRange,
        /// none, tenant or model.
        #[arg(long, default_value = "tenant")]
        by: String,
    },
    /// Totals per time bucket.
    Series {
        #[command(flatten)]
        range: UsageRange,
        /// minute, hour or day.
        #[arg(long, default_value = "hour")]
        bucket: String,
        /// none, tenant or model.
        #[arg(long, default_value = "none")]
        by: String,
    },
    /// The most recent rows, newest first.
    Recent {
        #[command(flatten)]
        range: UsageRange,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// The ledger's state: backend, write-ahead log, rows written and dropped.
    Status,
}

#[derive(Debug, clap::Args)]
pub struct UsageRange {
    /// Start: milliseconds since the epoch, an RFC 3339 time, or a duration back (24h).
    #[arg(long, default_value = "24h")]
    from: String,
    /// End (default: now).
    #[arg(long)]
    to: Option<String>,
    /// One tenant (name or id).
    #[arg(long)]
    tenant: Option<String>,
    /// One model (the routed model's name).
    #[arg(long)]
    model: Option<String>,
}

/// `obleth usage`: the ledger's queries.
pub async fn usage(conn: &AdminConn, cmd: UsageCmd) -> anyhow::Result<()> {
    let query = |path: &str, range: &UsageRange, extra: &[(&str, String)]| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("from", &range.from);
        for (k, v) in [("to", &range.to), ("tenant", &range.tenant), ("model", &range.model)] {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
        for (k, v) in extra {
            q.append_pair(k, v);
        }
        format!("{path}?{}", q.finish())
    };
    let path = match &cmd {
        UsageCmd::Totals { range, by } => query("/api/v1/usage/totals", range, &[("group_by", by.clone())]),
        UsageCmd::Series { range, bucket, by } => {
            query("/api/v1/usage/series", range, &[("bucket", bucket.clone()), ("group_by", by.clone())])
        }
        UsageCmd::Recent { range, limit } => query("/api/v1/usage/recent", range, &[("limit", limit.to_string())]),
        UsageCmd::Status => "/api/v1/ledger".to_owned(),
    };
    print(&call(conn, "GET", &path, None).await?)
}

/// `obleth scheduler`: slots, queues and shares.
pub async fn scheduler(conn: &AdminConn) -> anyhow::Result<()> {
    print(&call(conn, "GET", "/api/v1/scheduler", None).await?)
}

#[derive(Debug, Subcommand)]
pub enum ModelCmd {
    /// List registered models.
    List {
        /// Only models carrying this tag.
        #[arg(long)]
        tag: Option<String>,
    },
    /// Show one model.
    Get { name: String },
    /// Register a model.
    Create {
        name: String,
        #[command(flatten)]
        fields: ModelFields,
    },
    /// Change a model; only the given fields change.
    Update {
        name: String,
        #[command(flatten)]
        fields: ModelFields,
        #[arg(long, conflicts_with = "disabled")]
        enable: bool,
    },
    /// Remove a model from the registry.
    Delete { name: String },
}

#[derive(Debug, Args)]
pub struct ModelFields {
    #[arg(long)]
    upstream_model: Option<String>,
    #[arg(long)]
    api_base: Option<String>,
    /// Name of an environment variable holding the upstream API key (keeps the
    /// secret out of shell history and process listings).
    #[arg(long)]
    api_key_env: Option<String>,
    #[arg(long)]
    input_cost_per_token: Option<f64>,
    #[arg(long)]
    output_cost_per_token: Option<f64>,
    #[arg(long)]
    context_window: Option<u32>,
    #[arg(long)]
    admission_weight: Option<f64>,
    /// The model's own cap on requests in flight.
    #[arg(long)]
    max_in_flight: Option<u32>,
    /// A tag (repeat for several); on update, the given tags replace the model's.
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// On update: remove every tag.
    #[arg(long, conflicts_with = "tags")]
    clear_tags: bool,
    #[arg(long)]
    disabled: bool,
}

pub async fn tenants(conn: &AdminConn, cmd: TenantCmd) -> anyhow::Result<()> {
    let out = match cmd {
        TenantCmd::List => call(conn, "GET", "/api/v1/tenants", None).await?,
        TenantCmd::Get { tenant } => call(conn, "GET", &format!("/api/v1/tenants/{tenant}"), None).await?,
        TenantCmd::Create { name, fields } => {
            let mut body = tenant_body(&fields);
            body.insert("name".into(), json!(name));
            if let Some(q) = fields.quota(None) {
                body.insert("quota".into(), q);
            }
            call(conn, "POST", "/api/v1/tenants", Some(Value::Object(body))).await?
        }
        TenantCmd::Update { tenant, name, fields, enable } => {
            let mut body = tenant_body(&fields);
            if let Some(n) = name {
                body.insert("name".into(), json!(n));
            }
            if enable {
                body.insert("disabled".into(), json!(false));
            }
            // The API replaces the whole quota: merge the given fields over the current one.
            if fields.quota(None).is_some() {
                let current = call(conn, "GET", &format!("/api/v1/tenants/{tenant}"), None).await?;
                if let Some(q) = fields.quota(current.get("quota")) {
                    body.insert("quota".into(), q);
                }
            }
            call(conn, "PATCH", &format!("/api/v1/tenants/{tenant}"), Some(Value::Object(body))).await?
        }
        TenantCmd::Delete { tenant } => call(conn, "DELETE", &format!("/api/v1/tenants/{tenant}"), None).await?,
        TenantCmd::Usage { tenant } => call(conn, "GET", &format!("/api/v1/tenants/{tenant}/usage"), None).await?,
    };
    print(&out)
}

fn tenant_body(f: &TenantFields) -> Map<String, Value> {
    let mut body = Map::new();
    if let Some(w) = f.weight {
        body.insert("weight".into(), json!(w));
    }
    if let Some(g) = &f.group {
        body.insert("group".into(), json!(g));
    }
    if !f.allow_models.is_empty() {
        body.insert("allowed_models".into(), json!(f.allow_models));
    }
    if f.disabled {
        body.insert("disabled".into(), json!(true));
    }
    if f.never_degrade {
        body.insert("never_degrade".into(), json!(true));
    }
    body
}

pub async fn keys(conn: &AdminConn, cmd: KeyCmd) -> anyhow::Result<()> {
    let out = match cmd {
        KeyCmd::Create { tenant, name, expires_in_secs } => {
            let mut body = Map::new();
            if let Some(n) = name {
                body.insert("name".into(), json!(n));
            }
            if let Some(s) = expires_in_secs {
                body.insert("expires_in_secs".into(), json!(s));
            }
            call(conn, "POST", &format!("/api/v1/tenants/{tenant}/keys"), Some(Value::Object(body))).await?
        }
        KeyCmd::List { tenant, prefix, include_revoked } => {
            let mut query = vec![];
            if let Some(t) = tenant {
                query.push(format!("tenant={t}"));
            }
            if let Some(p) = prefix {
                query.push(format!("prefix={p}"));
            }
            if include_revoked {
                query.push("include_revoked=true".into());
            }
            call(conn, "GET", &format!("/api/v1/keys?{}", query.join("&")), None).await?
        }
        KeyCmd::Revoke { id } => call(conn, "POST", &format!("/api/v1/keys/{id}/revoke"), None).await?,
    };
    print(&out)
}

pub async fn models(conn: &AdminConn, cmd: ModelCmd) -> anyhow::Result<()> {
    let out = match cmd {
        ModelCmd::List { tag: None } => call(conn, "GET", "/api/v1/models", None).await?,
        ModelCmd::List { tag: Some(tag) } => call(conn, "GET", &format!("/api/v1/models?tag={tag}"), None).await?,
        ModelCmd::Get { name } => call(conn, "GET", &format!("/api/v1/models/{name}"), None).await?,
        ModelCmd::Create { name, fields } => {
            let mut body = model_body(&fields)?;
            body.insert("model_name".into(), json!(name));
            call(conn, "POST", "/api/v1/models", Some(Value::Object(body))).await?
        }
        ModelCmd::Update { name, fields, enable } => {
            let mut body = model_body(&fields)?;
            if enable {
                body.insert("enabled".into(), json!(true));
            }
            call(conn, "PATCH", &format!("/api/v1/models/{name}"), Some(Value::Object(body))).await?
        }
        ModelCmd::Delete { name } => call(conn, "DELETE", &format!("/api/v1/models/{name}"), None).await?,
    };
    print(&out)
}

fn model_body(f: &ModelFields) -> anyhow::Result<Map<String, Value>> {
    let mut body = Map::new();
    let mut put = |k: &str, v: Value| {
        body.insert(k.into(), v);
    };
    if let Some(v) = &f.upstream_model {
        put("upstream_model", json!(v));
    }
    if let Some(v) = &f.api_base {
        put("api_base", json!(v));
    }
    if let Some(var) = &f.api_key_env {
        let key = std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?;
        put("api_key", json!(key));
    }
    if let Some(v) = f.input_cost_per_token {
        put("input_cost_per_token", json!(v));
    }
    if let Some(v) = f.output_cost_per_token {
        put("output_cost_per_token", json!(v));
    }
    if let Some(v) = f.context_window {
        put("context_window", json!(v));
    }
    if let Some(v) = f.admission_weight {
        put("admission_weight", json!(v));
    }
    if let Some(v) = f.max_in_flight {
        put("max_in_flight", json!(v));
    }
    if !f.tags.is_empty() || f.clear_tags {
        put("tags", json!(f.tags));
    }
    if f.disabled {
        put("enabled", json!(false));
    }
    Ok(body)
}

// === mcp ===

#[derive(Debug, Subcommand)]
pub enum McpCmd {
    /// Upstream MCP servers.
    Servers {
        #[command(subcommand)]
        cmd: McpServerCmd,
    },
    /// Grants of MCP servers and tools to tenants and keys.
    Grants {
        #[command(subcommand)]
        cmd: McpGrantCmd,
    },
    /// The pins of a server's tools: review and approve changed definitions.
    Tools {
        #[command(subcommand)]
        cmd: McpToolCmd,
    },
}

#[derive(Debug, Subcommand)]
pub enum McpServerCmd {
    /// List MCP servers.
    List,
    /// Show one server (its credential only as has_credential).
    Show { name: String },
    /// Register a server: Streamable HTTP at --url, or a stdio --command of the config file.
    #[command(group(clap::ArgGroup::new("endpoint").required(true).args(["url", "command"])))]
    Add {
        name: String,
        /// The Streamable HTTP endpoint (`http(s)://host:port/mcp`).
        #[arg(long)]
        url: Option<String>,
        /// A command named in the config file's `[mcp.stdio.commands]`.
        #[arg(long)]
        command: Option<String>,
        /// An argument appended to the command's own (repeat for several).
        #[arg(long = "arg", allow_hyphen_values = true)]
        args: Vec<String>,
        #[command(flatten)]
        fields: McpServerFields,
        /// Hold new tools until approved instead of pinning them on first sight.
        #[arg(long)]
        require_approval: bool,
        /// Register it disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// Change a server; only the given fields change.
    Set {
        name: String,
        #[arg(long)]
        url: Option<String>,
        #[arg(long)]
        command: Option<String>,
        /// The arguments (replace the current ones; repeat for several).
        #[arg(long = "arg", allow_hyphen_values = true)]
        args: Vec<String>,
        /// Remove every argument.
        #[arg(long, conflicts_with = "args")]
        clear_args: bool,
        #[command(flatten)]
        fields: McpServerFields,
        /// Remove the stored credential.
        #[arg(long, conflicts_with = "credential_env")]
        clear_credential: bool,
        #[arg(long, conflicts_with = "no_require_approval")]
        require_approval: bool,
        #[arg(long)]
        no_require_approval: bool,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
    },
    /// Delete a server with its grants and pins.
    Rm { name: String },
}

#[derive(Debug, Args)]
pub struct McpServerFields {
    /// Name of an environment variable holding the credential sent upstream (keeps the
    /// secret out of shell history and process listings).
    #[arg(long)]
    credential_env: Option<String>,
    /// The header the credential goes in (default authorization, as a bearer token).
    #[arg(long)]
    credential_header: Option<String>,
    /// How long a listing waits for this server before leaving it out.
    #[arg(long)]
    list_timeout_ms: Option<u32>,
    #[arg(long)]
    call_timeout_ms: Option<u32>,
    /// Most tool calls in flight to this server.
    #[arg(long)]
    max_concurrency: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum McpGrantCmd {
    /// List grants (by creation time).
    List {
        /// A tenant, by id or name.
        #[arg(long)]
        tenant: Option<String>,
        /// A key's id.
        #[arg(long)]
        key: Option<String>,
        #[arg(long)]
        server: Option<String>,
    },
    /// Grant a server (or one tool of it) to a tenant, or narrower, to one of its keys.
    Add {
        /// A tenant, by id or name.
        #[arg(long)]
        tenant: String,
        /// One of the tenant's keys, by id: the key is then restricted to its own grants.
        #[arg(long)]
        key: Option<String>,
        #[arg(long)]
        server: String,
        /// One tool, by the upstream's own name (default: every tool of the server).
        #[arg(long)]
        tool: Option<String>,
    },
    /// Revoke a grant by id.
    Rm { id: String },
}

#[derive(Debug, Subcommand)]
pub enum McpToolCmd {
    /// A server's tools as pinned, with their state (approved, quarantined, unapproved).
    List { server: String },
    /// One tool's approved and pending definitions (the change to review).
    Show { server: String, tool: String },
    /// Approve the pending definition whose hash you reviewed.
    Approve {
        server: String,
        tool: String,
        /// The pending hash, as `tools show` printed it (`sha256:…`).
        #[arg(long)]
        hash: String,
    },
}

/// `obleth mcp`: servers, grants and tool pins.
pub async fn mcp(conn: &AdminConn, cmd: McpCmd) -> anyhow::Result<()> {
    let (method, path, body) = mcp_request(cmd)?;
    print(&call(conn, method, &path, body).await?)
}

/// The admin API call a `mcp` command makes: method, path and body.
fn mcp_request(cmd: McpCmd) -> anyhow::Result<(&'static str, String, Option<Value>)> {
    Ok(match cmd {
        McpCmd::Servers { cmd } => server_request(cmd)?,
        McpCmd::Grants { cmd: McpGrantCmd::List { tenant, key, server } } => {
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (k, v) in [("tenant", tenant), ("key", key), ("server", server)] {
                if let Some(v) = v {
                    q.append_pair(k, &v);
                }
            }
            let q = q.finish();
            let path = if q.is_empty() { "/api/v1/mcp/grants".to_owned() } else { format!("/api/v1/mcp/grants?{q}") };
            ("GET", path, None)
        }
        McpCmd::Grants { cmd: McpGrantCmd::Add { tenant, key, server, tool } } => {
            let body = json!({ "tenant": tenant, "key_id": key, "server": server, "tool": tool });
            ("POST", "/api/v1/mcp/grants".to_owned(), Some(body))
        }
        McpCmd::Grants { cmd: McpGrantCmd::Rm { id } } => {
            ("DELETE", format!("/api/v1/mcp/grants/{}", segment(&id)), None)
        }
        McpCmd::Tools { cmd: McpToolCmd::List { server } } => {
            ("GET", format!("/api/v1/mcp/servers/{}/tools", segment(&server)), None)
        }
        McpCmd::Tools { cmd: McpToolCmd::Show { server, tool } } => {
            ("GET", format!("/api/v1/mcp/servers/{}/tools/{}", segment(&server), segment(&tool)), None)
        }
        McpCmd::Tools { cmd: McpToolCmd::Approve { server, tool, hash } } => (
            "POST",
            format!("/api/v1/mcp/servers/{}/tools/{}/approve", segment(&server), segment(&tool)),
            Some(json!({ "hash": hash })),
        ),
    })
}

fn server_request(cmd: McpServerCmd) -> anyhow::Result<(&'static str, String, Option<Value>)> {
    let one = |name: &str| format!("/api/v1/mcp/servers/{}", segment(name));
    Ok(match cmd {
        McpServerCmd::List => ("GET", "/api/v1/mcp/servers".to_owned(), None),
        McpServerCmd::Show { name } => ("GET", one(&name), None),
        McpServerCmd::Add { name, url, command, args, fields, require_approval, disabled } => {
            let mut body = server_fields(&fields)?;
            body.insert("name".into(), json!(name));
            if let Some(url) = url {
                // Checked here: clap did not enforce a `requires = "command"` beside the endpoint group.
                if !args.is_empty() {
                    bail!("--arg is for a stdio server (--command), not an http one (--url)");
                }
                body.insert("url".into(), json!(url));
            }
            if let Some(command) = command {
                body.insert("command".into(), json!(command));
                body.insert("args".into(), json!(args));
            }
            if require_approval {
                body.insert("require_approval".into(), json!(true));
            }
            if disabled {
                body.insert("enabled".into(), json!(false));
            }
            ("POST", "/api/v1/mcp/servers".to_owned(), Some(Value::Object(body)))
        }
        McpServerCmd::Set {
            name,
            url,
            command,
            args,
            clear_args,
            fields,
            clear_credential,
            require_approval,
            no_require_approval,
            enable,
            disable,
        } => {
            let mut body = server_fields(&fields)?;
            let mut put = |k: &str, v: Value| {
                body.insert(k.into(), v);
            };
            if let Some(url) = url {
                put("url", json!(url));
            }
            if let Some(command) = command {
                put("command", json!(command));
            }
            if !args.is_empty() || clear_args {
                put("args", json!(args));
            }
            if clear_credential {
                put("credential", Value::Null);
            }
            if require_approval || no_require_approval {
                put("require_approval", json!(require_approval));
            }
            if enable || disable {
                put("enabled", json!(enable));
            }
            ("PATCH", one(&name), Some(Value::Object(body)))
        }
        McpServerCmd::Rm { name } => ("DELETE", one(&name), None),
    })
}

/// The fields `add` and `set` share, as given.
fn server_fields(f: &McpServerFields) -> anyhow::Result<Map<String, Value>> {
    let mut body = Map::new();
    if let Some(var) = &f.credential_env {
        let secret = std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?;
        body.insert("credential".into(), json!(secret));
    }
    for (k, v) in [
        ("credential_header", f.credential_header.as_ref().map(|v| json!(v))),
        ("list_timeout_ms", f.list_timeout_ms.map(|v| json!(v))),
        ("call_timeout_ms", f.call_timeout_ms.map(|v| json!(v))),
        ("max_concurrency", f.max_concurrency.map(|v| json!(v))),
    ] {
        if let Some(v) = v {
            body.insert(k.into(), v);
        }
    }
    Ok(body)
}

/// A path segment, percent-encoded (tool names may hold any character).
fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// Everything but the unreserved characters of RFC 3986.
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn print(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// One admin API call; a non-2xx answer becomes an error carrying the API's message.
pub async fn call(conn: &AdminConn, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let url = format!("{}{}", conn.admin_url.trim_end_matches('/'), path);
    let body = body.map(|b| serde_json::to_vec(&b)).transpose()?.unwrap_or_default();
    let req = http::Request::builder()
        .method(method)
        .uri(&url)
        .header("authorization", format!("Bearer {}", conn.admin_token))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let res = client.request(req).await.with_context(|| format!("cannot reach the admin API at {}", conn.admin_url))?;
    let status = res.status();
    let bytes = res.into_body().collect().await?.to_bytes();
    let value: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)));
    if !status.is_success() {
        let message = value.pointer("/error/message").and_then(Value::as_str).unwrap_or("no details");
        bail!("{method} {path} failed with {status}: {message}");
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> TenantFields {
        TenantFields {
            weight: None,
            group: None,
            allow_models: vec![],
            disabled: false,
            never_degrade: false,
            tpm: None,
            rpm: None,
            max_in_flight: None,
            monthly_budget: None,
            lifetime_budget: None,
            fail_closed: false,
        }
    }

    type Call = (&'static str, String, Option<Value>);

    /// The call `obleth mcp <args>` makes, parsed as the binary parses it.
    fn mcp(args: &[&str]) -> Result<Call, String> {
        #[derive(clap::Parser)]
        struct Mcp {
            #[command(subcommand)]
            cmd: McpCmd,
        }
        let parsed = <Mcp as clap::Parser>::try_parse_from(std::iter::once("mcp").chain(args.iter().copied()));
        mcp_request(parsed.map_err(|e| e.to_string())?.cmd).map_err(|e| e.to_string())
    }

    fn ok(method: &'static str, path: &str, body: Option<Value>) -> Result<Call, String> {
        Ok((method, path.to_owned(), body))
    }

    #[test]
    fn mcp_commands_make_their_calls() {
        let url = "http://fs.internal:8000/mcp";
        assert_eq!(
            mcp(&["servers", "add", "fs", "--url", url, "--max-concurrency", "4", "--require-approval"]),
            ok(
                "POST",
                "/api/v1/mcp/servers",
                Some(json!({"name": "fs", "url": url, "max_concurrency": 4, "require_approval": true}))
            )
        );
        let path = std::env::var("PATH").unwrap_or_default();
        assert_eq!(
            mcp(&[
                "servers",
                "add",
                "ev",
                "--command",
                "everything",
                "--arg",
                "--root",
                "--arg",
                "/srv",
                "--credential-env",
                "PATH",
                "--disabled"
            ]),
            ok(
                "POST",
                "/api/v1/mcp/servers",
                Some(
                    json!({"name": "ev", "command": "everything", "args": ["--root", "/srv"], "credential": path, "enabled": false})
                )
            )
        );
        assert_eq!(
            mcp(&[
                "servers",
                "set",
                "fs",
                "--call-timeout-ms",
                "5",
                "--clear-credential",
                "--disable",
                "--no-require-approval",
                "--clear-args"
            ]),
            ok(
                "PATCH",
                "/api/v1/mcp/servers/fs",
                Some(
                    json!({"call_timeout_ms": 5, "credential": null, "enabled": false, "require_approval": false, "args": []})
                )
            )
        );
        assert_eq!(mcp(&["servers", "set", "fs"]), ok("PATCH", "/api/v1/mcp/servers/fs", Some(json!({}))));
        assert_eq!(mcp(&["servers", "list"]), ok("GET", "/api/v1/mcp/servers", None));
        assert_eq!(mcp(&["servers", "show", "fs"]), ok("GET", "/api/v1/mcp/servers/fs", None));
        assert_eq!(mcp(&["servers", "rm", "fs"]), ok("DELETE", "/api/v1/mcp/servers/fs", None));
        assert_eq!(mcp(&["grants", "list"]), ok("GET", "/api/v1/mcp/grants", None));
        assert_eq!(
            mcp(&["grants", "list", "--tenant", "acme corp", "--server", "fs"]),
            ok("GET", "/api/v1/mcp/grants?tenant=acme+corp&server=fs", None)
        );
        assert_eq!(
            mcp(&["grants", "add", "--tenant", "acme", "--key", "key_1", "--server", "fs", "--tool", "read"]),
            ok(
                "POST",
                "/api/v1/mcp/grants",
                Some(json!({"tenant": "acme", "key_id": "key_1", "server": "fs", "tool": "read"}))
            )
        );
        assert_eq!(mcp(&["grants", "rm", "mgr_1"]), ok("DELETE", "/api/v1/mcp/grants/mgr_1", None));
        assert_eq!(mcp(&["tools", "list", "fs"]), ok("GET", "/api/v1/mcp/servers/fs/tools", None));
        assert_eq!(
            mcp(&["tools", "show", "fs", "read file/v2"]),
            ok("GET", "/api/v1/mcp/servers/fs/tools/read%20file%2Fv2", None),
            "tool names are one path segment"
        );
        assert_eq!(
            mcp(&["tools", "approve", "fs", "read", "--hash", "sha256:ab"]),
            ok("POST", "/api/v1/mcp/servers/fs/tools/read/approve", Some(json!({"hash": "sha256:ab"})))
        );
    }

    #[test]
    fn mcp_refuses_what_makes_no_call() {
        for args in [
            &["servers", "add", "fs"][..],
            &["servers", "add", "fs", "--url", "http://x/mcp", "--command", "c"],
            &["servers", "add", "fs", "--url", "http://x/mcp", "--arg", "a"],
            &["servers", "set", "fs", "--enable", "--disable"],
            &["servers", "set", "fs", "--clear-args", "--arg", "a"],
            &["tools", "approve", "fs", "read"],
            &["grants", "add", "--tenant", "acme"],
        ] {
            assert!(mcp(args).is_err(), "{args:?}");
        }
        let unset =
            mcp(&["servers", "add", "fs", "--url", "http://x/mcp", "--credential-env", "OBLETH_TEST_NO_SUCH_VAR_7"]);
        assert!(unset.is_err_and(|e| e.contains("OBLETH_TEST_NO_SUCH_VAR_7 is not set")));
    }

    #[test]
    fn quota_flags_merge_over_the_current_quota() {
        assert_eq!(fields().quota(None), None, "no quota flag, no quota change");
        let f = TenantFields { tpm: Some(1000), fail_closed: true, ..fields() };
        let current = json!({"tpm": 5, "rpm": 60, "monthly_budget": 12.5});
        assert_eq!(
            f.quota(Some(&current)),
            Some(json!({"tpm": 1000, "rpm": 60, "monthly_budget": 12.5, "fail_closed": true})),
            "given fields change, the others are kept"
        );
        assert_eq!(f.quota(None), Some(json!({"tpm": 1000, "fail_closed": true})));
    }
}
