//! A tenant's own view (`/api/v1/me*`): what a key holder signed in with its API key may
//! see. Every answer is scoped by the session's tenant, never by a parameter: there is no
//! way to name another tenant here (a `tenant` parameter is refused), and the
//! authorization layer keeps tenant sessions out of every other route.

use axum::Json;
use axum::extract::{Extension, State};
use axum::response::Response;
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::extract::Params;
use crate::session::TenantScope;
use crate::{AdminState, ApiError, ErrorCode, usage};

fn scope(p: &Principal) -> Result<&TenantScope, ApiError> {
    p.tenant.as_ref().ok_or_else(|| ApiError::new(ErrorCode::Forbidden, "Sign in with one of the tenant's API keys."))
}

/// `GET /api/v1/me`: the tenant and the key of this session.
pub(crate) async fn me(
    State(s): State<AdminState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    let scope = scope(&p)?;
    let tenant = s.store.get_tenant(&scope.tenant_id).await?;
    let key = s.store.lookup_key(&scope.key_hash).await?;
    Ok(Json(json!({
        "tenant": tenant,
        "key": key.map(|k| json!({ "id": k.id, "prefix": k.prefix, "name": k.name, "expires_at": k.expires_at })),
    })))
}

/// `GET /api/v1/me/usage`: the tenant's use of its limits right now.
pub(crate) async fn budget(
    State(s): State<AdminState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    crate::tenant_usage_of(&s, &scope(&p)?.tenant_id).await
}

pub(crate) async fn totals(
    State(s): State<AdminState>,
    Extension(p): Extension<Principal>,
    params: Params,
) -> Result<Response, ApiError> {
    usage::totals_for(&s, params, Some(&scope(&p)?.tenant_id)).await
}

pub(crate) async fn series(
    State(s): State<AdminState>,
    Extension(p): Extension<Principal>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    usage::series_for(&s, params, Some(&scope(&p)?.tenant_id)).await
}

pub(crate) async fn recent(
    State(s): State<AdminState>,
    Extension(p): Extension<Principal>,
    params: Params,
) -> Result<Response, ApiError> {
    usage::recent_for(&s, params, Some(&scope(&p)?.tenant_id)).await
}

/// `GET /api/v1/me/scheduler`: the pool and this tenant's place in it (no other tenant).
pub(crate) async fn scheduler(
    State(s): State<AdminState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    let scope = scope(&p)?;
    let Some(snapshot) = s.admission.snapshot() else { return Ok(Json(json!({ "scheduler": null }))) };
    let mine = snapshot.tenants.into_iter().find(|t| t.name == scope.tenant_name);
    Ok(Json(json!({
        "slots_total": snapshot.slots_total,
        "slots_used": snapshot.slots_used,
        "queued": snapshot.queued,
        "tenant": mine,
    })))
}
