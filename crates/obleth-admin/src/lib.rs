//! The admin API on `:9090`: tenants, API keys, the model registry, the MCP gateway's
//! servers, grants and tool pins, usage, the scheduler lens, and the operator console
//! under `/ui/`.
//!
//! Every route but the health probes, the session routes and the console's files needs a
//! caller: a bearer token (the admin token, a viewer token, a tenant's API key; compared
//! in constant time) or a console session cookie; `auth.rs` applies each role's rules.
//! Writes go to the control-plane store, then the change is announced through the
//! [`ChangeNotifier`] so that caches drop stale entries at once. Errors use the same
//! `{"error":{…}}` shape as the data plane.

mod auth;
mod console;
mod csv;
mod extract;
pub mod lens;
mod mcp;
mod me;
pub mod openapi;
pub mod session;
mod upstream;
mod usage;

pub use auth::ConsoleAuth;
pub use lens::Lens;

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use obleth_core::budget::BudgetView;
use obleth_core::ledger::UsageLedger;
use obleth_core::{Admission, ApiKey, ChangeEvent, ChangeNotifier, Model, key, now_millis};
use obleth_store::{
    AuditFilter, ControlPlaneStore, GroupSettings, KeyFilter, KeyRotation, ModelFilter, ModelPatch, NewAuditEntry,
    NewModel, NewTenant, Page, StoreError, TenantFilter, TenantPatch,
};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::extract::{JsonBody, OptionalJsonBody, Params, PathParam};

/// What the admin API needs.
#[derive(Clone)]
pub struct AdminState {
    pub store: Arc<dyn ControlPlaneStore>,
    /// The data plane's view of the store, for readiness.
    pub store_guard: Arc<obleth_store::StoreGuard>,
    pub notifier: Arc<dyn ChangeNotifier>,
    pub token: SecretString,
    /// The admission policy, for `GET /api/v1/scheduler`.
    pub admission: Arc<dyn Admission>,
    /// The budget layer, for `GET /api/v1/tenants/{tenant}/usage` and readiness.
    pub budget: Arc<dyn BudgetView>,
    /// The usage ledger, for `/api/v1/usage/*` and readiness; `None` when the process
    /// keeps none.
    pub ledger: Option<Arc<dyn UsageLedger>>,
    /// Where models may send requests; checked when an `api_base` is set.
    pub upstream_policy: Arc<obleth_core::upstream::UpstreamPolicy>,
    /// Viewer tokens and console sessions.
    pub console: Arc<ConsoleAuth>,
    /// The last minutes of traffic (`/api/v1/stats`).
    pub pulse: Arc<obleth_core::pulse::Pulse>,
    /// The scheduler lens's producer (`/api/v1/scheduler/stream`).
    pub lens: Arc<Lens>,
    /// This pod's share of a cluster's slots; `None` for one gateway.
    pub cluster: Option<Arc<dyn obleth_core::ClusterView>>,
    /// Cancelled at shutdown: ends the lens streams, which never end by themselves.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Between an MCP server's and a tool's name in the names clients see; a server's
    /// name may not contain it ([`DEFAULT_MCP_SEPARATOR`] unless configured).
    pub mcp_separator: Arc<str>,
    /// The names of `[mcp.stdio.commands]`: what a stdio MCP server may run.
    pub mcp_stdio_commands: Arc<[String]>,
    /// This pod's MCP servers as the gateway sees them (health, queues); `None` when the
    /// MCP gateway is off.
    pub mcp: Option<Arc<dyn obleth_mcp::McpStatus>>,
}

/// The separator of MCP tool names when the configuration sets none.
pub const DEFAULT_MCP_SEPARATOR: &str = obleth_mcp::names::DEFAULT_SEPARATOR;

/// The routes behind the admin token, as axum paths. The router is built from this
/// table and [`openapi`] documents it (a test keeps the two equal).
fn api_routes() -> Vec<(&'static str, MethodRouter<AdminState>)> {
    let mut routes = vec![
        ("/api/v1/tenants", get(list_tenants).post(create_tenant)),
        ("/api/v1/tenants/{tenant}", get(get_tenant).patch(update_tenant).delete(delete_tenant)),
        ("/api/v1/tenants/{tenant}/usage", get(tenant_usage)),
        ("/api/v1/tenants/{tenant}/keys", get(list_tenant_keys).post(create_key)),
        ("/api/v1/keys", get(list_keys)),
        ("/api/v1/keys/{id}", axum::routing::delete(revoke_key)),
        ("/api/v1/keys/{id}/revoke", post(revoke_key)),
        ("/api/v1/keys/{id}/rotate", post(rotate_key)),
        ("/api/v1/models", get(list_models).post(create_model)),
        ("/api/v1/models/{*name}", get(get_model).patch(update_model).delete(delete_model)),
        ("/api/v1/groups", get(list_groups)),
        ("/api/v1/groups/{name}", get(get_group).put(put_group).delete(delete_group)),
        ("/api/v1/audit", get(list_audit)),
        ("/api/v1/scheduler", get(scheduler)),
        ("/api/v1/scheduler/stream", get(lens::stream)),
        ("/api/v1/stats", get(lens::stats)),
        ("/api/v1/cluster", get(lens::cluster)),
        ("/api/v1/usage/totals", get(usage::totals)),
        ("/api/v1/usage/series", get(usage::series)),
        ("/api/v1/usage/recent", get(usage::recent)),
        ("/api/v1/ledger", get(usage::status)),
        ("/api/v1/me", get(me::me)),
        ("/api/v1/me/usage", get(me::budget)),
        ("/api/v1/me/usage/totals", get(me::totals)),
        ("/api/v1/me/usage/series", get(me::series)),
        ("/api/v1/me/usage/recent", get(me::recent)),
        ("/api/v1/me/scheduler", get(me::scheduler)),
    ];
    routes.extend(mcp::routes());
    routes
}

/// The routes open without a token.
fn public_routes() -> Vec<(&'static str, MethodRouter<AdminState>)> {
    vec![
        ("/healthz", get(|| async { "ok" })),
        ("/readyz", get(ready)),
        ("/api/v1/openapi.json", get(|| async { Json(openapi::document()) })),
        ("/api/v1/session", get(auth::current).post(auth::sign_in).delete(auth::sign_out)),
    ]
}

/// Every path the admin router serves, as axum writes it (`{*name}` for a tail).
pub fn route_paths() -> Vec<&'static str> {
    api_routes().into_iter().chain(public_routes()).map(|(p, _)| p).collect()
}

/// The admin router.
pub fn router(state: AdminState) -> Router {
    let mut api = Router::new();
    for (path, route) in api_routes() {
        api = api.route(path, route);
    }
    let api = api.route_layer(middleware::from_fn_with_state(state.clone(), auth::authorize));
    let mut router = Router::new().merge(api);
    for (path, route) in public_routes() {
        router = router.route(path, route);
    }
    console::routes(router)
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "Unknown admin URL.").into_response() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(ErrorCode::MethodNotAllowed, "Method not allowed on this URL.").into_response()
        })
        .with_state(state)
}

/// Ready unless the ledger refuses requests; the body says how each dependency is
/// (`up`, `degraded`, `down`). Degraded dependencies keep the pod ready: a budget store
/// on its local share (Redis unreachable), a ledger whose database is away (rows wait in
/// its log), and a control-plane store that is down (`store: "down: …"`): the pod serves
/// keys, tenants and models from their last known entries and every pod is in the same
/// position, so taking pods out of rotation would only turn a partial outage into a
/// total one. Not ready: a ledger refusing requests (`on_full = "reject"` and its log
/// nearly full).
async fn ready(State(state): State<AdminState>) -> Response {
    let (ledger, ledger_ok) = match &state.ledger {
        None => ("none", true),
        Some(l) => {
            let status = l.status();
            let s = match (status.backend_up, status.wal_full || status.refusing) {
                (_, true) => "full",
                (true, false) => "up",
                (false, false) => "degraded",
            };
            (s, !status.refusing)
        }
    };
    let budget = if state.budget.degraded() { "degraded" } else { "up" };
    // Bounded by the guard's timeout: a dead store must not outlast the health check.
    let store = match state.store_guard.check().await {
        obleth_store::StoreHealth::Up => "up".to_owned(),
        obleth_store::StoreHealth::Down { for_ms, error } => format!("down for {for_ms} ms: {error}"),
    };
    let ready = ledger_ok;
    let body = Json(json!({
        "status": if ready { "ready" } else { "not_ready" },
        "store": store,
        "budget": budget,
        "ledger": ledger,
    }));
    if ready { body.into_response() } else { (StatusCode::SERVICE_UNAVAILABLE, body).into_response() }
}

// === tenants ===

async fn list_tenants(State(s): State<AdminState>, params: Params) -> Result<Json<Value>, ApiError> {
    let mut params = params;
    let filter = TenantFilter {
        group: params.take("group"),
        disabled: params.bool("disabled")?,
        search: params.take("search").filter(|q| !q.trim().is_empty()).map(|q| q.trim().to_owned()),
    };
    let page = params.page()?;
    params.finish()?;
    Ok(page_json(s.store.list_tenants_page(filter, page).await?, |t| json!(t)))
}

async fn create_tenant(
    State(s): State<AdminState>,
    actor: Actor,
    body: JsonBody<NewTenant>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let JsonBody(new) = body;
    let tenant = s.store.create_tenant(new).await?;
    audit(&s, &actor, "tenant.create", "tenant", &tenant.id, None, Some(json!(tenant))).await;
    tracing::info!(tenant = %tenant.name, id = %tenant.id, "tenant created");
    Ok((StatusCode::CREATED, Json(json!(tenant))))
}

async fn get_tenant(State(s): State<AdminState>, PathParam(tenant): PathParam) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(s.store.get_tenant(&tenant).await?)))
}

async fn update_tenant(
    State(s): State<AdminState>,
    PathParam(tenant): PathParam,
    actor: Actor,
    body: JsonBody<TenantPatch>,
) -> Result<Json<Value>, ApiError> {
    let JsonBody(patch) = body;
    let before = s.store.get_tenant(&tenant).await?;
    let updated = s.store.update_tenant(&before.id, patch).await?;
    audit(&s, &actor, "tenant.update", "tenant", &updated.id, Some(json!(before)), Some(json!(updated))).await;
    s.notifier.notify(ChangeEvent::Tenant { id: updated.id.clone(), tenant: Some(Arc::new(updated.clone())) });
    tracing::info!(tenant = %updated.name, "tenant updated");
    Ok(Json(json!(updated)))
}

async fn delete_tenant(
    State(s): State<AdminState>,
    PathParam(tenant): PathParam,
    actor: Actor,
) -> Result<Json<Value>, ApiError> {
    let (deleted, hashes) = s.store.delete_tenant(&tenant).await?;
    audit(&s, &actor, "tenant.delete", "tenant", &deleted.id, Some(json!(deleted)), None).await;
    s.notifier.notify(ChangeEvent::Tenant { id: deleted.id.clone(), tenant: None });
    // Its MCP grants went with it.
    s.notifier.notify(ChangeEvent::McpGrants);
    for hash in hashes {
        s.notifier.notify(ChangeEvent::Key { hash });
        s.console.sessions.close_key(&hash);
    }
    tracing::info!(tenant = %deleted.name, "tenant deleted");
    Ok(Json(json!({ "deleted": deleted })))
}

// === keys ===

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKey {
    name: Option<String>,
    /// Absolute expiry, Unix milliseconds.
    expires_at: Option<i64>,
    /// Relative expiry, seconds from now, at least 1 (alternative to `expires_at`).
    expires_in_secs: Option<u64>,
}

async fn create_key(
    State(s): State<AdminState>,
    PathParam(tenant): PathParam,
    actor: Actor,
    body: OptionalJsonBody<NewKey>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let OptionalJsonBody(new) = body;
    let tenant = s.store.get_tenant(&tenant).await?;
    let now = now_millis();
    let expires_at = match (new.expires_at, new.expires_in_secs) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("expires_at", "give either expires_at or expires_in_secs, not both"));
        }
        (Some(at), None) if at <= now => {
            return Err(ApiError::invalid("expires_at", "must be in the future"));
        }
        (Some(at), None) => Some(at),
        // Zero would create a key that is expired at birth, as a past expires_at would.
        (None, Some(0)) => return Err(ApiError::invalid("expires_in_secs", "must be at least 1")),
        (None, Some(secs)) => Some(now.saturating_add((secs.min(i64::MAX as u64 / 1000) as i64) * 1000)),
        (None, None) => None,
    };
    if new.name.as_ref().is_some_and(|n| n.len() > 128) {
        return Err(ApiError::invalid("name", "must be at most 128 characters"));
    }
    let generated = key::generate();
    let record = ApiKey {
        id: obleth_core::new_id("key_"),
        tenant_id: tenant.id.clone(),
        name: new.name,
        prefix: generated.prefix.clone(),
        created_at: now,
        expires_at,
        revoked_at: None,
    };
    s.store.insert_key(&record, generated.hash).await?;
    // A lookup of this hash might have been cached as unknown; forget it.
    s.notifier.notify(ChangeEvent::Key { hash: generated.hash });
    audit(&s, &actor, "key.create", "key", &record.id, None, Some(json!(record))).await;
    tracing::info!(tenant = %tenant.name, key = %record.prefix, "key created");
    let mut body = json!(record);
    body["secret"] = Value::String(generated.secret);
    body["note"] = Value::String("Store the secret now: it is shown only once.".into());
    Ok((StatusCode::CREATED, Json(body)))
}

async fn list_tenant_keys(
    State(s): State<AdminState>,
    PathParam(tenant): PathParam,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let mut params = params;
    let page = params.page()?;
    params.finish()?;
    let tenant = s.store.get_tenant(&tenant).await?;
    let filter = KeyFilter { tenant_id: Some(tenant.id), prefix: None, include_revoked: true };
    Ok(page_json(s.store.list_keys_page(filter, page).await?, |k| json!(k)))
}

async fn list_keys(State(s): State<AdminState>, params: Params) -> Result<Json<Value>, ApiError> {
    let mut params = params;
    let tenant = params.take("tenant");
    let prefix = params.take("prefix");
    let include_revoked = params.bool("include_revoked")?.unwrap_or(false);
    let page = params.page()?;
    params.finish()?;
    let tenant_id = match tenant {
        Some(t) => Some(s.store.get_tenant(&t).await?.id),
        None => None,
    };
    let filter = KeyFilter { tenant_id, prefix, include_revoked };
    Ok(page_json(s.store.list_keys_page(filter, page).await?, |k| json!(k)))
}

async fn revoke_key(
    State(s): State<AdminState>,
    PathParam(id): PathParam,
    actor: Actor,
) -> Result<Json<Value>, ApiError> {
    let started = now_millis();
    let (key, hash) = s.store.revoke_key(&id).await?;
    s.notifier.notify(ChangeEvent::Key { hash });
    s.console.sessions.close_key(&hash);
    // Revocation only sets revoked_at, and only if unset: a revocation time from this
    // call means the key was active before it.
    let before = match key.revoked_at {
        Some(at) if at >= started => ApiKey { revoked_at: None, ..key.clone() },
        _ => key.clone(),
    };
    audit(&s, &actor, "key.revoke", "key", &key.id, Some(json!(before)), Some(json!(key))).await;
    tracing::info!(key = %key.prefix, "key revoked");
    Ok(Json(json!(key)))
}

/// How long a rotated key keeps working when the request does not say.
pub const DEFAULT_ROTATION_OVERLAP_SECS: u64 = 3600;
/// The longest overlap a rotation may give the old key.
pub const MAX_ROTATION_OVERLAP_SECS: u64 = 30 * 86_400;

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateBody {
    /// Seconds the old key keeps working (default 3600; 0 = expire it now).
    overlap_secs: Option<u64>,
    /// The new key's name (default: the old one's + " (rotated)").
    name: Option<String>,
}

async fn rotate_key(
    State(s): State<AdminState>,
    PathParam(id): PathParam,
    actor: Actor,
    body: OptionalJsonBody<RotateBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let OptionalJsonBody(body) = body;
    let overlap = body.overlap_secs.unwrap_or(DEFAULT_ROTATION_OVERLAP_SECS);
    if overlap > MAX_ROTATION_OVERLAP_SECS {
        return Err(ApiError::invalid(
            "overlap_secs",
            &format!("must be at most {MAX_ROTATION_OVERLAP_SECS} (30 days)"),
        ));
    }
    if body.name.as_ref().is_some_and(|n| n.len() > 128) {
        return Err(ApiError::invalid("name", "must be at most 128 characters"));
    }
    let generated = key::generate();
    let rotation = KeyRotation {
        new_id: obleth_core::new_id("key_"),
        new_prefix: generated.prefix.clone(),
        new_hash: generated.hash,
        new_name: body.name,
        new_expires_at: None,
        now: now_millis(),
        overlap_ms: (overlap * 1000) as i64,
    };
    let rotated = s.store.rotate_key(&id, rotation).await?;
    // Caches must see the old key's new expiry, and forget any "unknown" for the new one.
    s.notifier.notify(ChangeEvent::Key { hash: rotated.old_hash });
    s.notifier.notify(ChangeEvent::Key { hash: generated.hash });
    // The new key has copies of the old one's MCP grants (and its restriction to them):
    // until grants are reloaded, a gateway would not know the new key is restricted.
    s.notifier.notify(ChangeEvent::McpGrants);
    let before = ApiKey { expires_at: rotated.previous_expires_at, ..rotated.old.clone() };
    let after = json!({ "old_key": rotated.old, "new_key": rotated.new });
    audit(&s, &actor, "key.rotate", "key", &rotated.old.id, Some(json!({ "old_key": before })), Some(after)).await;
    tracing::info!(old = %rotated.old.prefix, new = %rotated.new.prefix, overlap_secs = overlap, "key rotated");
    let mut body = json!(rotated.new);
    body["secret"] = Value::String(generated.secret);
    body["note"] = Value::String("Store the secret now: it is shown only once.".into());
    body["old_key"] = json!(rotated.old);
    Ok((StatusCode::CREATED, Json(body)))
}

// === models ===

/// A model as the admin API shows it: never the credential, only whether one is set.
fn model_view(m: &Model) -> Value {
    let mut v = model_json(m);
    v["has_api_key"] = Value::Bool(m.api_key.is_some());
    v
}

/// A model as the audit trail records it: the credential only as `"[redacted]"`.
fn model_audit(m: &Model) -> Value {
    let mut v = model_json(m);
    if m.api_key.is_some() {
        v["api_key"] = Value::String(REDACTED.into());
    }
    v
}

/// The model without credentials in its `api_base` (rows stored before such URLs were
/// refused may still hold `user:password@` or a query).
fn model_json(m: &Model) -> Value {
    let mut v = json!(m);
    if let Some(base) = &m.api_base {
        v["api_base"] = Value::String(obleth_core::upstream::redact_api_base(base));
    }
    v
}

const REDACTED: &str = "[redacted]";

async fn list_models(State(s): State<AdminState>, params: Params) -> Result<Json<Value>, ApiError> {
    let mut params = params;
    let filter = ModelFilter { enabled: params.bool("enabled")?, tag: params.take("tag") };
    let page = params.page()?;
    params.finish()?;
    Ok(page_json(s.store.list_models_page(filter, page).await?, model_view))
}

async fn create_model(
    State(s): State<AdminState>,
    actor: Actor,
    body: JsonBody<NewModel>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let JsonBody(new) = body;
    if let Some(base) = &new.api_base {
        upstream::check_api_base(&s.upstream_policy, base).await?;
    }
    let model = s.store.create_model(new).await?;
    audit(&s, &actor, "model.create", "model", &model.model_name, None, Some(model_audit(&model))).await;
    s.notifier.notify(ChangeEvent::Model { name: model.model_name.clone() });
    tracing::info!(model = %model.model_name, "model registered");
    Ok((StatusCode::CREATED, Json(model_view(&model))))
}

async fn get_model(State(s): State<AdminState>, PathParam(name): PathParam) -> Result<Json<Value>, ApiError> {
    Ok(Json(model_view(&s.store.get_model(&name).await?)))
}

async fn update_model(
    State(s): State<AdminState>,
    PathParam(name): PathParam,
    actor: Actor,
    body: JsonBody<ModelPatch>,
) -> Result<Json<Value>, ApiError> {
    let JsonBody(patch) = body;
    if let Some(Some(base)) = &patch.api_base {
        upstream::check_api_base(&s.upstream_policy, base).await?;
    }
    let key_replaced = matches!(patch.api_key, Some(Some(_)));
    let before = s.store.get_model(&name).await?;
    let model = s.store.update_model(&name, patch).await?;
    let mut after = model_audit(&model);
    if key_replaced && before.api_key.is_some() {
        // Both sides would read "[redacted]": say that the credential changed.
        after["api_key"] = Value::String("[redacted: replaced]".into());
    }
    audit(&s, &actor, "model.update", "model", &model.model_name, Some(model_audit(&before)), Some(after)).await;
    s.notifier.notify(ChangeEvent::Model { name: model.model_name.clone() });
    tracing::info!(model = %model.model_name, "model updated");
    Ok(Json(model_view(&model)))
}

async fn delete_model(
    State(s): State<AdminState>,
    PathParam(name): PathParam,
    actor: Actor,
) -> Result<Json<Value>, ApiError> {
    let model = s.store.delete_model(&name).await?;
    audit(&s, &actor, "model.delete", "model", &model.model_name, Some(model_audit(&model)), None).await;
    s.notifier.notify(ChangeEvent::Model { name: model.model_name.clone() });
    tracing::info!(model = %model.model_name, "model deleted");
    Ok(Json(json!({ "deleted": model_view(&model) })))
}

/// The tenant's use of its limits right now (rate windows, in flight, spend).
async fn tenant_usage(State(s): State<AdminState>, PathParam(tenant): PathParam) -> Result<Json<Value>, ApiError> {
    tenant_usage_of(&s, &tenant).await
}

pub(crate) async fn tenant_usage_of(s: &AdminState, tenant: &str) -> Result<Json<Value>, ApiError> {
    let t = s.store.get_tenant(tenant).await?;
    let usage = s
        .budget
        .usage(&t.id, &t.quota)
        .await
        .map_err(|e| ApiError::new(ErrorCode::BudgetUnavailable, format!("The budget store failed: {e}")))?;
    Ok(Json(json!({
        "tenant_id": t.id,
        "tenant": t.name,
        "store": s.budget.kind(),
        "quota": t.quota,
        "usage": usage,
    })))
}

// === groups and the scheduler ===

async fn list_groups(State(s): State<AdminState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "data": s.store.list_groups().await? })))
}

async fn get_group(State(s): State<AdminState>, PathParam(name): PathParam) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(s.store.get_group(&name).await?)))
}

async fn put_group(
    State(s): State<AdminState>,
    PathParam(name): PathParam,
    actor: Actor,
    body: JsonBody<GroupSettings>,
) -> Result<Json<Value>, ApiError> {
    let JsonBody(body) = body;
    let before = match s.store.get_group(&name).await {
        Ok(g) => Some(json!(g)),
        Err(StoreError::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let group = s.store.put_group(&name, body).await?;
    audit(&s, &actor, "group.put", "group", &group.name, before, Some(json!(group))).await;
    s.notifier.notify(ChangeEvent::Group {
        name: group.name.clone(),
        weight: Some(group.weight),
        reserved_slots: group.reserved_slots,
        max_slots: group.max_slots,
    });
    tracing::info!(
        group = %group.name,
        weight = group.weight,
        reserved_slots = ?group.reserved_slots,
        max_slots = ?group.max_slots,
        "group set"
    );
    Ok(Json(json!(group)))
}

async fn delete_group(
    State(s): State<AdminState>,
    PathParam(name): PathParam,
    actor: Actor,
) -> Result<Json<Value>, ApiError> {
    let group = s.store.delete_group(&name).await?;
    audit(&s, &actor, "group.delete", "group", &group.name, Some(json!(group)), None).await;
    s.notifier.notify(ChangeEvent::Group {
        name: group.name.clone(),
        weight: None,
        reserved_slots: None,
        max_slots: None,
    });
    Ok(Json(json!({ "deleted": group })))
}

/// Slots, queues, share scores and target vs actual shares.
/// Rendered through `Value`, as it always was: its objects sort their keys, which is the
/// order clients have seen (`null` without a scheduler).
async fn scheduler(State(s): State<AdminState>) -> Json<Value> {
    Json(serde_json::to_value(s.admission.snapshot()).unwrap_or_default())
}

// === audit ===

/// The header naming who makes an admin change (default [`DEFAULT_ACTOR`]).
pub const ACTOR_HEADER: &str = "x-obleth-actor";
/// The actor of changes whose request names none.
pub const DEFAULT_ACTOR: &str = "admin";

/// Who makes a change: the `X-Obleth-Actor` header, checked before anything changes.
#[derive(Debug, Clone)]
struct Actor(String);

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        // A console session names its operator at sign-in; the header is for tokens.
        if let Some(session) = parts.extensions.get::<auth::Principal>().and_then(|p| p.session.as_ref()) {
            return Ok(Actor(session.actor.clone()));
        }
        let Some(value) = parts.headers.get(ACTOR_HEADER) else {
            return Ok(Actor(DEFAULT_ACTOR.to_owned()));
        };
        let actor = value.to_str().map_err(|_| ApiError::invalid("X-Obleth-Actor", "must be ASCII"))?;
        obleth_store::validate_actor(actor).map_err(|m| ApiError::invalid("X-Obleth-Actor", &m))?;
        Ok(Actor(actor.to_owned()))
    }
}

/// Appends the audit entry of a change that was made. The change stands even if its
/// entry cannot be written (the caller must not retry it): that is logged as an error.
async fn audit(
    s: &AdminState,
    actor: &Actor,
    action: &str,
    kind: &str,
    id: &str,
    before: Option<Value>,
    after: Option<Value>,
) {
    let entry = NewAuditEntry {
        at: now_millis(),
        actor: actor.0.clone(),
        action: action.to_owned(),
        resource_kind: kind.to_owned(),
        resource_id: id.to_owned(),
        before,
        after,
    };
    if let Err(e) = s.store.append_audit(entry).await {
        tracing::error!(error = %e, action, resource = id, actor = %actor.0, "change made but its audit entry was not written");
    }
}

/// The kinds of resources the audit trail records (`mcp_tool`'s ids are `server/tool`).
const AUDIT_KINDS: &[&str] = &["tenant", "key", "model", "group", "mcp_server", "mcp_grant", "mcp_tool"];

/// `GET /api/v1/audit?resource=<kind>[:<id>]&actor=&from=&to=&limit=&cursor=`, newest first.
async fn list_audit(State(s): State<AdminState>, params: Params) -> Result<Json<Value>, ApiError> {
    let mut params = params;
    let (resource_kind, mut resource_id) = match params.take("resource") {
        None => (None, None),
        Some(r) => match r.split_once(':') {
            Some((kind, id)) => (Some(kind.to_owned()), Some(id.to_owned())),
            None => (Some(r), None),
        },
    };
    if resource_kind.as_deref().is_some_and(|k| !AUDIT_KINDS.contains(&k)) {
        return Err(ApiError::invalid(
            "resource",
            &format!("must be one of {}, optionally :<id or name>", AUDIT_KINDS.join(", ")),
        ));
    }
    // Tenants are recorded by id; a name names the tenant it is now.
    if resource_kind.as_deref() == Some("tenant")
        && let Some(name) = resource_id.as_deref().filter(|n| !n.starts_with(obleth_core::tenant::TENANT_ID_PREFIX))
    {
        match s.store.get_tenant(name).await {
            Ok(t) => resource_id = Some(t.id),
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let actor = params.take("actor");
    let now = now_millis().max(0) as u64;
    let time = |field: &str, v: Option<String>| -> Result<Option<i64>, ApiError> {
        v.map(|v| usage::parse_time(field, &v, now).map(|t| t.min(i64::MAX as u64) as i64)).transpose()
    };
    let from = time("from", params.take("from"))?;
    let to = time("to", params.take("to"))?;
    let page = params.page()?;
    params.finish()?;
    let filter = AuditFilter { resource_kind, resource_id, actor, from, to, page };
    Ok(page_json(s.store.list_audit(filter).await?, |e| json!(e)))
}

// === listings ===

/// `{"data": [...], "next_cursor": "…" or null}`.
fn page_json<T>(page: Page<T>, view: impl Fn(&T) -> Value) -> Json<Value> {
    Json(json!({ "data": page.items.iter().map(view).collect::<Vec<_>>(), "next_cursor": page.next_cursor }))
}

// === errors ===

/// The admin API answers from the one error table of `obleth-core`, as the data plane does.
pub use obleth_core::{ApiError, ErrorCode};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_a_stored_api_base_are_never_shown() {
        // A row stored before api_base refused credentials and queries.
        let m = Model {
            api_base: Some("http://svc:hunter2@vllm.internal:8000/v1?token=abc123".into()),
            api_key: Some(SecretString::from("sk-model-key")),
            ..Model::named("legacy")
        };
        for shown in [model_view(&m), model_audit(&m)] {
            let text = shown.to_string();
            assert!(!text.contains("hunter2") && !text.contains("abc123") && !text.contains("sk-model-key"), "{text}");
            assert!(shown["api_base"].as_str().is_some_and(|b| b.contains("vllm.internal:8000/v1")), "{text}");
        }
        let clean = Model { api_base: Some("http://vllm.internal:8000/v1".into()), ..m };
        assert_eq!(model_view(&clean)["api_base"], "http://vllm.internal:8000/v1");
    }
}
