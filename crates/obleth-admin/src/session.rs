//! Console sessions: what a sign-in turns a token into.
//!
//! The browser never holds the admin token, a viewer token or an API key after it signs
//! in: it holds an opaque session id in an `HttpOnly`, `SameSite=Strict` cookie, which
//! page scripts cannot read. The server keeps only the id's SHA-256, so a dump of this
//! table (or a log of it) opens no session. Each session carries a CSRF value that the
//! page sends back as `X-CSRF-Token` on every change; the cookie alone changes nothing.
//!
//! Sessions live in the pod that issued them (the admin API is reached per pod), expire
//! after `admin.session_ttl`, and end at logout. Their number is bounded: a flood of
//! sign-ins evicts the oldest sessions rather than growing memory. Time is injected.

use std::collections::HashMap;
use std::sync::Mutex;

use obleth_core::KeyHash;
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The cookie's name.
pub const COOKIE: &str = "obleth_session";
/// The header a change made with the cookie must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The most sessions a pod keeps.
pub const MAX_SESSIONS: usize = 10_000;

/// What a session may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything the admin token may do.
    Admin,
    /// Every read of the admin API; no change.
    Viewer,
    /// Its own tenant's view (`/api/v1/me*`), signed in with one of its API keys.
    Tenant,
}

/// The tenant a tenant session belongs to, and the key it signed in with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantScope {
    pub tenant_id: String,
    pub tenant_name: String,
    pub key_id: String,
    pub key_prefix: String,
    /// The key is checked again on every request: revoking it ends the session.
    pub key_hash: KeyHash,
}

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub role: Role,
    /// Who the audit trail names for changes made in this session.
    pub actor: String,
    pub tenant: Option<TenantScope>,
    pub csrf: String,
    pub created_at: i64,
    pub expires_at: i64,
}

impl Session {
    /// Whether `presented` is this session's CSRF value (constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        !presented.is_empty() && bool::from(presented.as_bytes().ct_eq(self.csrf.as_bytes()))
    }
}

/// The sessions of this pod, by the SHA-256 of their id.
#[derive(Debug, Default)]
pub struct Sessions {
    table: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    pub fn new() -> Sessions {
        Sessions::default()
    }

    /// Opens a session; returns its id (for the cookie) and the session.
    pub fn open(
        &self,
        role: Role,
        actor: String,
        tenant: Option<TenantScope>,
        now: i64,
        ttl_ms: i64,
    ) -> (String, Session) {
        let id = random_hex(32);
        let session = Session {
            role,
            actor,
            tenant,
            csrf: random_hex(32),
            created_at: now,
            expires_at: now.saturating_add(ttl_ms),
        };
        let mut table = self.lock();
        if table.len() >= MAX_SESSIONS {
            table.retain(|_, s| s.expires_at > now);
        }
        if table.len() >= MAX_SESSIONS
            && let Some(oldest) = table.iter().min_by_key(|(_, s)| s.created_at).map(|(k, _)| *k)
        {
            table.remove(&oldest);
        }
        table.insert(digest(&id), session.clone());
        (id, session)
    }

    /// The live session with this id (an expired one is forgotten).
    pub fn get(&self, id: &str, now: i64) -> Option<Session> {
        let key = digest(id);
        let mut table = self.lock();
        match table.get(&key) {
            Some(s) if s.expires_at > now => Some(s.clone()),
            Some(_) => {
                table.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends a session; true if it was open.
    pub fn close(&self, id: &str) -> bool {
        self.lock().remove(&digest(id)).is_some()
    }

    /// Ends every session of a tenant key (the key was revoked or no longer resolves).
    pub fn close_key(&self, hash: &KeyHash) {
        self.lock().retain(|_, s| s.tenant.as_ref().is_none_or(|t| t.key_hash != *hash));
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// `bytes` random bytes as hex (256 bits for ids and CSRF values).
fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes).map(|_| format!("{:02x}", rng.random::<u8>())).collect()
}

/// The session id in a `Cookie` header, if any.
pub fn cookie_value(header: &str) -> Option<&str> {
    header.split(';').map(str::trim).find_map(|pair| pair.strip_prefix(COOKIE)?.strip_prefix('='))
}

/// The `Set-Cookie` value that stores a session.
pub fn set_cookie(id: &str, max_age_secs: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_secs}{secure}")
}

/// The `Set-Cookie` value that removes it.
pub fn clear_cookie(secure: bool) -> String {
    set_cookie("", 0, secure)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn a_session_lives_until_it_expires_or_is_closed() {
        let s = Sessions::new();
        let (id, session) = s.open(Role::Admin, "alice".into(), None, 1_000, HOUR);
        assert_eq!(id.len(), 64);
        assert_eq!(session.csrf.len(), 64);
        assert_ne!(id, session.csrf);
        assert_eq!(s.get(&id, 1_000 + HOUR - 1).map(|x| x.actor), Some("alice".into()));
        assert!(s.get(&id, 1_000 + HOUR).is_none(), "expired at expires_at");
        assert!(s.is_empty(), "an expired session is forgotten when seen");
        let (id, _) = s.open(Role::Viewer, "v".into(), None, 0, HOUR);
        assert!(s.close(&id));
        assert!(s.get(&id, 1).is_none());
        assert!(!s.close(&id));
    }

    #[test]
    fn ids_are_kept_only_as_digests() {
        let s = Sessions::new();
        let (id, _) = s.open(Role::Admin, "a".into(), None, 0, HOUR);
        let table = s.lock();
        assert!(table.keys().all(|k| *k != [0; 32] && !hex_of(k).contains(&id)));
        assert!(table.contains_key(&digest(&id)));
    }

    fn hex_of(k: &[u8; 32]) -> String {
        k.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn the_table_is_bounded_and_evicts_the_oldest() {
        let s = Sessions::new();
        let (first, _) = s.open(Role::Admin, "a".into(), None, 0, HOUR);
        for i in 1..MAX_SESSIONS as i64 + 5 {
            s.open(Role::Admin, "a".into(), None, i, HOUR);
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(s.get(&first, 10).is_none(), "the oldest session made room");
    }

    #[test]
    fn revoking_a_key_ends_its_sessions_only() {
        let s = Sessions::new();
        let scope = |h: u8| TenantScope {
            tenant_id: "ten_1".into(),
            tenant_name: "a".into(),
            key_id: "key_1".into(),
            key_prefix: "obl_x".into(),
            key_hash: KeyHash([h; 32]),
        };
        let (one, _) = s.open(Role::Tenant, "obl_x".into(), Some(scope(1)), 0, HOUR);
        let (two, _) = s.open(Role::Tenant, "obl_y".into(), Some(scope(2)), 0, HOUR);
        let (admin, _) = s.open(Role::Admin, "a".into(), None, 0, HOUR);
        s.close_key(&KeyHash([1; 32]));
        assert!(s.get(&one, 1).is_none());
        assert!(s.get(&two, 1).is_some() && s.get(&admin, 1).is_some());
    }

    #[test]
    fn csrf_is_compared_exactly() {
        let s = Sessions::new();
        let (_, session) = s.open(Role::Admin, "a".into(), None, 0, HOUR);
        assert!(session.csrf_matches(&session.csrf.clone()));
        assert!(!session.csrf_matches(""));
        assert!(!session.csrf_matches(&session.csrf[..63]));
        assert!(!session.csrf_matches(&session.csrf.to_uppercase()));
    }

    #[test]
    fn cookies_are_http_only_strict_and_parsed_back() {
        let c = set_cookie("abc", 60, false);
        assert_eq!(c, "obleth_session=abc; HttpOnly; SameSite=Strict; Path=/; Max-Age=60");
        assert!(set_cookie("abc", 60, true).ends_with("; Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
        assert_eq!(cookie_value("a=1; obleth_session=xyz; b=2"), Some("xyz"));
        assert_eq!(cookie_value("obleth_session_other=1"), None);
        assert_eq!(cookie_value("a=1"), None);
    }
}
