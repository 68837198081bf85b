//! The admin CLI: `obleth tenants|keys|models …`, a thin client of the admin API.
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
