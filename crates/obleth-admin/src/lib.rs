//! The admin API on `:9090`: tenants, API keys and the model registry.
//!
//! Every route but the health probes requires `Authorization: Bearer <admin token>`,
//! compared in constant time. Writes go to the control-plane store, then the change is
//! announced through the [`ChangeNotifier`] so that caches drop stale entries at once.
//! Errors use the same `{"error":{…}}` shape as the data plane.

mod usage;

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use obleth_core::{Admission, ApiKey, ChangeEvent, ChangeNotifier, Model, key, now_millis};
use obleth_store::{ControlPlaneStore, KeyFilter, ModelPatch, NewModel, NewTenant, StoreError, TenantPatch};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

/// What the admin API needs.
#[derive(Clone)]
pub struct AdminState {
    pub store: Arc<dyn ControlPlaneStore>,
    pub notifier: Arc<dyn ChangeNotifier>,
    pub token: SecretString,
    /// The admission policy, for `GET /api/v1/scheduler`.
    pub admission: Arc<dyn Admission>,
    /// The budget layer, for `GET /api/v1/tenants/{tenant}/usage`.
    pub budget: Arc<obleth_budget::Budget>,
    /// The usage ledger, for `/api/v1/usage/*`; `None` when the process keeps none.
    pub ledger: Option<obleth_ledger::Ledger>,
}

/// The admin router.
pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/api/v1/tenants", get(list_tenants).post(create_tenant))
        .route("/api/v1/tenants/{tenant}", get(get_tenant).patch(update_tenant).delete(delete_tenant))
        .route("/api/v1/tenants/{tenant}/usage", get(tenant_usage))
        .route("/api/v1/tenants/{tenant}/keys", get(list_tenant_keys).post(create_key))
        .route("/api/v1/keys", get(list_keys))
        .route("/api/v1/keys/{id}", axum::routing::delete(revoke_key))
        .route("/api/v1/keys/{id}/revoke", post(revoke_key))
        .route("/api/v1/models", get(list_models).post(create_model))
        .route("/api/v1/models/{*name}", get(get_model).patch(update_model).delete(delete_model))
        .route("/api/v1/groups", get(list_groups))
        .route("/api/v1/groups/{name}", get(get_group).put(put_group).delete(delete_group))
        .route("/api/v1/scheduler", get(scheduler))
        .route("/api/v1/usage/totals", get(usage::totals))
        .route("/api/v1/usage/series", get(usage::series))
        .route("/api/v1/usage/recent", get(usage::recent))
        .route("/api/v1/ledger", get(usage::status))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin));
    Router::new()
        .merge(api)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .fallback(|| async {
            AdminError::new(StatusCode::NOT_FOUND, "not_found", "Unknown admin URL.").into_response()
        })
        .method_not_allowed_fallback(|| async {
            AdminError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "Method not allowed on this URL.")
                .into_response()
        })
        .with_state(state)
}

async fn require_admin(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    let expected = state.token.expose_secret().as_bytes();
    if presented.is_empty() || !bool::from(presented.as_bytes().ct_eq(expected)) {
        return AdminError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_admin_token",
            "A valid admin bearer token is required.",
        )
        .into_response();
    }
    next.run(req).await
}

/// Ready while the control-plane store answers and the ledger takes rows; the body says
/// how each dependency is (`up`, `degraded`, `down`). Degraded dependencies keep the pod
/// ready: a budget store on its local share (Redis unreachable), a ledger whose database
/// is away (rows wait in its log). Not ready: the control-plane store down, or a ledger
/// refusing requests (`on_full = "reject"` and its log nearly full).
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
    let (store, store_ok) = match state.store.ping().await {
        Ok(()) => ("up".to_owned(), true),
        Err(e) => (format!("down: {e}"), false),
    };
    let ready = store_ok && ledger_ok;
    let body = Json(json!({
        "status": if ready { "ready" } else { "not_ready" },
        "store": store,
        "budget": budget,
        "ledger": ledger,
    }));
    if ready { body.into_response() } else { (StatusCode::SERVICE_UNAVAILABLE, body).into_response() }
}

// === tenants ===

async fn list_tenants(State(s): State<AdminState>) -> Result<Json<Value>, AdminError> {
    Ok(Json(json!({ "data": s.store.list_tenants().await? })))
}

async fn create_tenant(
    State(s): State<AdminState>,
    body: Result<Json<NewTenant>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), AdminError> {
    let Json(new) = body?;
    let tenant = s.store.create_tenant(new).await?;
    tracing::info!(tenant = %tenant.name, id = %tenant.id, "tenant created");
    Ok((StatusCode::CREATED, Json(json!(tenant))))
}

async fn get_tenant(State(s): State<AdminState>, Path(tenant): Path<String>) -> Result<Json<Value>, AdminError> {
    Ok(Json(json!(s.store.get_tenant(&tenant).await?)))
}

async fn update_tenant(
    State(s): State<AdminState>,
    Path(tenant): Path<String>,
    body: Result<Json<TenantPatch>, JsonRejection>,
) -> Result<Json<Value>, AdminError> {
    let Json(patch) = body?;
    let updated = s.store.update_tenant(&tenant, patch).await?;
    s.notifier.notify(ChangeEvent::Tenant { id: updated.id.clone(), tenant: Some(Arc::new(updated.clone())) });
    tracing::info!(tenant = %updated.name, "tenant updated");
    Ok(Json(json!(updated)))
}

async fn delete_tenant(State(s): State<AdminState>, Path(tenant): Path<String>) -> Result<Json<Value>, AdminError> {
    let (deleted, hashes) = s.store.delete_tenant(&tenant).await?;
    s.notifier.notify(ChangeEvent::Tenant { id: deleted.id.clone(), tenant: None });
    for hash in hashes {
        s.notifier.notify(ChangeEvent::Key { hash });
    }
    tracing::info!(tenant = %deleted.name, "tenant deleted");
    Ok(Json(json!({ "deleted": deleted })))
}

// === keys ===

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: Option<String>,
    /// Absolute expiry, Unix milliseconds.
    expires_at: Option<i64>,
    /// Relative expiry, seconds from now (alternative to `expires_at`).
    expires_in_secs: Option<u64>,
}

async fn create_key(
    State(s): State<AdminState>,
    Path(tenant): Path<String>,
    body: Option<Json<NewKey>>,
) -> Result<(StatusCode, Json<Value>), AdminError> {
    let new = body.map(|Json(b)| b).unwrap_or_default();
    let tenant = s.store.get_tenant(&tenant).await?;
    let now = now_millis();
    let expires_at = match (new.expires_at, new.expires_in_secs) {
        (Some(_), Some(_)) => {
            return Err(AdminError::invalid("expires_at", "give either expires_at or expires_in_secs, not both"));
        }
        (Some(at), None) if at <= now => {
            return Err(AdminError::invalid("expires_at", "must be in the future"));
        }
        (Some(at), None) => Some(at),
        (None, Some(secs)) => Some(now.saturating_add((secs.min(i64::MAX as u64 / 1000) as i64) * 1000)),
        (None, None) => None,
    };
    if new.name.as_ref().is_some_and(|n| n.len() > 128) {
        return Err(AdminError::invalid("name", "must be at most 128 characters"));
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
    tracing::info!(tenant = %tenant.name, key = %record.prefix, "key created");
    let mut body = json!(record);
    body["secret"] = Value::String(generated.secret);
    body["note"] = Value::String("Store the secret now: it is shown only once.".into());
    Ok((StatusCode::CREATED, Json(body)))
}

async fn list_tenant_keys(State(s): State<AdminState>, Path(tenant): Path<String>) -> Result<Json<Value>, AdminError> {
    let tenant = s.store.get_tenant(&tenant).await?;
    let keys = s.store.list_keys(KeyFilter { tenant_id: Some(tenant.id), prefix: None, include_revoked: true }).await?;
    Ok(Json(json!({ "data": keys })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyQuery {
    tenant: Option<String>,
    prefix: Option<String>,
    #[serde(default)]
    include_revoked: bool,
}

async fn list_keys(
    State(s): State<AdminState>,
    query: Result<Query<KeyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, AdminError> {
    let Query(q) = query.map_err(|e| AdminError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let tenant_id = match q.tenant {
        Some(t) => Some(s.store.get_tenant(&t).await?.id),
        None => None,
    };
    let keys = s.store.list_keys(KeyFilter { tenant_id, prefix: q.prefix, include_revoked: q.include_revoked }).await?;
    Ok(Json(json!({ "data": keys })))
}

async fn revoke_key(State(s): State<AdminState>, Path(id): Path<String>) -> Result<Json<Value>, AdminError> {
    let (key, hash) = s.store.revoke_key(&id).await?;
    s.notifier.notify(ChangeEvent::Key { hash });
    tracing::info!(key = %key.prefix, "key revoked");
    Ok(Json(json!(key)))
}

// === models ===

/// A model as the admin API shows it: never the credential, only whether one is set.
fn model_view(m: &Model) -> Value {
    let mut v = json!(m);
    v["has_api_key"] = Value::Bool(m.api_key.is_some());
    v
}

async fn list_models(State(s): State<AdminState>) -> Result<Json<Value>, AdminError> {
    let models = s.store.list_models().await?;
    Ok(Json(json!({ "data": models.iter().map(model_view).collect::<Vec<_>>() })))
}

async fn create_model(
    State(s): State<AdminState>,
    body: Result<Json<NewModel>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), AdminError> {
    let Json(new) = body?;
    let model = s.store.create_model(new).await?;
    s.notifier.notify(ChangeEvent::Model { name: model.model_name.clone() });
    tracing::info!(model = %model.model_name, "model registered");
    Ok((StatusCode::CREATED, Json(model_view(&model))))
}

async fn get_model(State(s): State<AdminState>, Path(name): Path<String>) -> Result<Json<Value>, AdminError> {
    Ok(Json(model_view(&s.store.get_model(&name).await?)))
}

async fn update_model(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    body: Result<Json<ModelPatch>, JsonRejection>,
) -> Result<Json<Value>, AdminError> {
    let Json(patch) = body?;
    let model = s.store.update_model(&name, patch).await?;
    s.notifier.notify(ChangeEvent::Model { name: model.model_name.clone() });
    tracing::info!(model = %model.model_name, "model updated");
    Ok(Json(model_view(&model)))
}

async fn delete_model(State(s): State<AdminState>, Path(name): Path<String>) -> Result<Json<Value>, AdminError> {
    let model = s.store.delete_model(&name).await?;
    s.notifier.notify(ChangeEvent::Model { name: model.model_name.clone() });
    tracing::info!(model = %model.model_name, "model deleted");
    Ok(Json(json!({ "deleted": model_view(&model) })))
}

/// The tenant's use of its limits right now (rate windows, in flight, spend).
async fn tenant_usage(State(s): State<AdminState>, Path(tenant): Path<String>) -> Result<Json<Value>, AdminError> {
    let t = s.store.get_tenant(&tenant).await?;
    let limits = obleth_budget::Limits::from_quota(&t.quota);
    let usage = s.budget.usage(&t.id, &limits).await.map_err(|e| {
        AdminError::new(StatusCode::SERVICE_UNAVAILABLE, "budget_unavailable", format!("The budget store failed: {e}"))
    })?;
    Ok(Json(json!({
        "tenant_id": t.id,
        "tenant": t.name,
        "store": s.budget.kind(),
        "quota": t.quota,
        "usage": usage,
    })))
}

// === groups and the scheduler ===

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupBody {
    weight: u32,
}

async fn list_groups(State(s): State<AdminState>) -> Result<Json<Value>, AdminError> {
    Ok(Json(json!({ "data": s.store.list_groups().await? })))
}

async fn get_group(State(s): State<AdminState>, Path(name): Path<String>) -> Result<Json<Value>, AdminError> {
    Ok(Json(json!(s.store.get_group(&name).await?)))
}

async fn put_group(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    body: Result<Json<GroupBody>, JsonRejection>,
) -> Result<Json<Value>, AdminError> {
    let Json(body) = body?;
    let group = s.store.put_group(&name, body.weight).await?;
    s.notifier.notify(ChangeEvent::Group { name: group.name.clone(), weight: Some(group.weight) });
    tracing::info!(group = %group.name, weight = group.weight, "group weight set");
    Ok(Json(json!(group)))
}

async fn delete_group(State(s): State<AdminState>, Path(name): Path<String>) -> Result<Json<Value>, AdminError> {
    let group = s.store.delete_group(&name).await?;
    s.notifier.notify(ChangeEvent::Group { name: group.name.clone(), weight: None });
    Ok(Json(json!({ "deleted": group })))
}

/// Slots, queues, share scores and target vs actual shares.
async fn scheduler(State(s): State<AdminState>) -> Json<Value> {
    Json(s.admission.snapshot())
}

// === errors ===

/// An admin API error, rendered as `{"error":{"message","type","param","code"}}`.
#[derive(Debug)]
pub struct AdminError {
    status: StatusCode,
    code: &'static str,
    message: String,
    param: Option<String>,
}

impl AdminError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AdminError { status, code, message: message.into(), param: None }
    }

    fn invalid(field: &str, message: &str) -> Self {
        AdminError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_value",
            message: format!("invalid {field}: {message}"),
            param: Some(field.to_owned()),
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Invalid { field, .. } => AdminError {
                status: StatusCode::BAD_REQUEST,
                code: "invalid_value",
                message: e.to_string(),
                param: Some((*field).to_owned()),
            },
            StoreError::NotFound { .. } => AdminError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            StoreError::Conflict(_) => AdminError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "admin request failed: store unavailable");
                AdminError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "The control-plane store is unavailable.",
                )
            }
            StoreError::Backend(_) => {
                tracing::error!(error = %e, "admin request failed");
                AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, "store_error", "The control-plane store failed.")
            }
        }
    }
}

impl From<JsonRejection> for AdminError {
    fn from(e: JsonRejection) -> Self {
        // The rejection's text names the offending field (serde's message).
        let status = match e {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            JsonRejection::JsonDataError(_) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        AdminError::new(status, "invalid_body", e.body_text())
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let kind = match self.status.as_u16() {
            401 => "authentication_error",
            500.. => "server_error",
            _ => "invalid_request_error",
        };
        let body = json!({"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}});
        (self.status, Json(body)).into_response()
    }
}
