//! Who is calling the admin API, and what they may do.
//!
//! A caller is one of three [`Role`]s, proven either by a bearer token on each request
//! (the CLI, scripts) or by a console session cookie (the browser):
//!
//! | role     | proven by                         | may                                   |
//! |----------|-----------------------------------|---------------------------------------|
//! | `admin`  | `admin.token`                     | everything                            |
//! | `viewer` | one of `admin.viewer_tokens`      | every read; no change (`read_only`)   |
//! | `tenant` | one of its tenant's API keys      | `/api/v1/me*` only (`forbidden`)      |
//!
//! The rules are checked here, on the server, for every request: the console greys out
//! buttons, but a viewer who calls the API directly is refused all the same. A change
//! made with the cookie must also carry the session's `X-CSRF-Token` (and, if the browser
//! sends an `Origin`, come from this host), so that no other site can make one.

use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use obleth_core::{KeyHash, key, now_millis};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::extract::JsonBody;
use crate::session::{self, Role, Session, Sessions, TenantScope};
use crate::{AdminState, ApiError, ErrorCode};

/// The console's sign-in settings and this pod's sessions.
pub struct ConsoleAuth {
    pub viewer_tokens: Vec<SecretString>,
    pub sessions: Sessions,
    pub session_ttl: Duration,
    /// Always mark the cookie `Secure` (it also is behind a proxy that says https).
    pub secure_cookie: bool,
}

impl ConsoleAuth {
    pub fn new(viewer_tokens: Vec<SecretString>, session_ttl: Duration, secure_cookie: bool) -> ConsoleAuth {
        ConsoleAuth { viewer_tokens, sessions: Sessions::new(), session_ttl, secure_cookie }
    }
}

/// The caller of a request that passed [`authorize`] (a request extension).
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    pub role: Role,
    pub tenant: Option<TenantScope>,
    /// Set when the caller came with the session cookie.
    pub session: Option<Session>,
}

/// Identifies the caller, applies the role's rules and the CSRF check, and hands the
/// [`Principal`] to the handler.
pub(crate) async fn authorize(State(s): State<AdminState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    match admit(&s, req.headers(), req.method(), &path).await {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

async fn admit(s: &AdminState, headers: &HeaderMap, method: &Method, path: &str) -> Result<Principal, ApiError> {
    let p = principal(s, headers).await?;
    allowed(&p, method, path)?;
    let changes = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if changes && let Some(session) = &p.session {
        check_csrf(session, headers)?;
    }
    Ok(p)
}

async fn principal(s: &AdminState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    if let Some(token) = bearer(headers) {
        let (role, tenant) = identify(s, token)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidAdminToken, "A valid admin bearer token is required."))?;
        return Ok(Principal { role, tenant, session: None });
    }
    let Some(id) = headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).and_then(session::cookie_value) else {
        return Err(ApiError::new(ErrorCode::InvalidAdminToken, "A valid admin bearer token is required."));
    };
    let session = live_session(s, id).await?;
    Ok(Principal { role: session.role, tenant: session.tenant.clone(), session: Some(session) })
}

/// The session behind a cookie, if it is open and (for a tenant) its key still works.
async fn live_session(s: &AdminState, id: &str) -> Result<Session, ApiError> {
    let expired = || ApiError::new(ErrorCode::SessionRequired, "Your console session has ended: sign in again.");
    let session = s.console.sessions.get(id, now_millis()).ok_or_else(expired)?;
    if let Some(scope) = &session.tenant
        && active_key(s, &scope.key_hash).await?.is_none()
    {
        s.console.sessions.close_key(&scope.key_hash);
        return Err(ApiError::new(
            ErrorCode::SessionRequired,
            "The API key this session signed in with was revoked or has expired.",
        ));
    }
    Ok(session)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    Some(value.strip_prefix("Bearer ").map(str::trim).unwrap_or(""))
}

/// The role a token proves: the admin token, a viewer token, or an active API key of an
/// existing tenant. `None`: none of these.
async fn identify(s: &AdminState, token: &str) -> Result<Option<(Role, Option<TenantScope>)>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    if equal(token, &s.token) {
        return Ok(Some((Role::Admin, None)));
    }
    // Every viewer token is compared, so the time taken says nothing of which matched.
    let viewer = s.console.viewer_tokens.iter().fold(false, |found, t| found | equal(token, t));
    if viewer {
        return Ok(Some((Role::Viewer, None)));
    }
    if !token.starts_with(key::KEY_PREFIX) || token.len() > key::MAX_KEY_LEN {
        return Ok(None);
    }
    let hash = KeyHash::of(token);
    let Some(k) = active_key(s, &hash).await? else { return Ok(None) };
    let tenant = match s.store.get_tenant(&k.tenant_id).await {
        Ok(t) => t,
        Err(obleth_store::StoreError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let scope = TenantScope {
        tenant_id: tenant.id,
        tenant_name: tenant.name,
        key_id: k.id,
        key_prefix: k.prefix,
        key_hash: hash,
    };
    Ok(Some((Role::Tenant, Some(scope))))
}

async fn active_key(s: &AdminState, hash: &KeyHash) -> Result<Option<obleth_core::ApiKey>, ApiError> {
    Ok(s.store.lookup_key(hash).await?.filter(|k| k.is_active(now_millis())))
}

fn equal(presented: &str, expected: &SecretString) -> bool {
    bool::from(presented.as_bytes().ct_eq(expected.expose_secret().as_bytes()))
}

/// The role's rules.
fn allowed(p: &Principal, method: &Method, path: &str) -> Result<(), ApiError> {
    let own_view = path == "/api/v1/me" || path.starts_with("/api/v1/me/");
    let reads = matches!(*method, Method::GET | Method::HEAD);
    match (p.role, own_view) {
        (Role::Tenant, true) | (Role::Admin, false) => {}
        (Role::Viewer, false) if reads => {}
        (Role::Tenant, false) => {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "A tenant's session sees only its own tenant, under /api/v1/me.",
            ));
        }
        (Role::Admin | Role::Viewer, true) => {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "/api/v1/me is a tenant's own view: sign in with one of the tenant's API keys.",
            ));
        }
        (Role::Viewer, false) => {
            return Err(ApiError::new(ErrorCode::ReadOnly, "This is a viewer's session: it cannot change anything."));
        }
    }
    Ok(())
}

/// A change made with the cookie must carry the session's CSRF value.
fn check_csrf(session: &Session, headers: &HeaderMap) -> Result<(), ApiError> {
    let presented = headers.get(session::CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !session.csrf_matches(presented) {
        return Err(ApiError::new(
            ErrorCode::CsrfFailed,
            "Changes made with the console's session need its X-CSRF-Token header.",
        ));
    }
    // SameSite=Strict already keeps other sites' requests from carrying the cookie; a
    // browser that names another origin is refused all the same.
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
        let same = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) == Some(host);
        if !same {
            return Err(ApiError::new(ErrorCode::CsrfFailed, "Changes must come from the console's own origin."));
        }
    }
    Ok(())
}

// === the session routes ===

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignIn {
    /// The admin token, a viewer token, or one of a tenant's API keys.
    token: String,
    /// The operator's name for the audit trail (admin and viewer sessions; default
    /// `admin` or `viewer`).
    name: Option<String>,
}

/// `POST /api/v1/session`: trades a token for a session cookie.
pub(crate) async fn sign_in(
    State(s): State<AdminState>,
    headers: HeaderMap,
    body: JsonBody<SignIn>,
) -> Result<Response, ApiError> {
    let JsonBody(body) = body;
    let Some((role, tenant)) = identify(&s, body.token.trim()).await? else {
        tracing::info!("console sign-in refused");
        return Err(ApiError::new(
            ErrorCode::InvalidCredentials,
            "That is not the admin token, a viewer token or an active API key.",
        ));
    };
    let actor = match (&role, body.name) {
        (Role::Tenant, _) => tenant.as_ref().map(|t| t.key_prefix.clone()).unwrap_or_default(),
        (_, Some(name)) => {
            obleth_store::validate_actor(&name).map_err(|m| ApiError::invalid("name", &m))?;
            name
        }
        (Role::Admin, None) => crate::DEFAULT_ACTOR.to_owned(),
        (Role::Viewer, None) => "viewer".to_owned(),
    };
    let ttl = s.console.session_ttl.as_millis().min(i64::MAX as u128) as i64;
    let (id, session) = s.console.sessions.open(role, actor, tenant, now_millis(), ttl);
    tracing::info!(role = ?session.role, actor = %session.actor, "console session opened");
    let cookie = session::set_cookie(&id, ttl / 1000, secure(&s, &headers));
    Ok(with_cookie((StatusCode::CREATED, Json(session_json(&session))).into_response(), &cookie))
}

/// `GET /api/v1/session`: the session of the cookie (and its CSRF value, for a page that
/// was reloaded).
pub(crate) async fn current(State(s): State<AdminState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let id =
        cookie(&headers).ok_or_else(|| ApiError::new(ErrorCode::SessionRequired, "Sign in to the console first."))?;
    Ok(Json(session_json(&live_session(&s, id).await?)))
}

/// `DELETE /api/v1/session`: logs out. The session ends on the server, not only in the
/// browser: a copy of the cookie opens nothing afterwards.
pub(crate) async fn sign_out(State(s): State<AdminState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(id) = cookie(&headers)
        && let Some(session) = s.console.sessions.get(id, now_millis())
    {
        check_csrf(&session, &headers)?;
        s.console.sessions.close(id);
        tracing::info!(actor = %session.actor, "console session closed");
    }
    let cleared = session::clear_cookie(secure(&s, &headers));
    Ok(with_cookie(StatusCode::NO_CONTENT.into_response(), &cleared))
}

fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).and_then(session::cookie_value)
}

fn secure(s: &AdminState, headers: &HeaderMap) -> bool {
    s.console.secure_cookie
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn session_json(s: &Session) -> Value {
    json!({
        "role": s.role,
        "actor": s.actor,
        "tenant": s.tenant.as_ref().map(|t| json!({ "id": t.tenant_id, "name": t.tenant_name })),
        "csrf": s.csrf,
        "expires_at": s.expires_at,
    })
}
