//! Client sessions bound to the key that opened them.
//!
//! rmcp mints the session ids (UUIDv4 from the OS's random source) but cannot see who
//! opens a session, so the front records, from each `initialize` answer, which tenant and
//! key the new id belongs to, and checks it on every later request. An id presented with
//! another key is answered exactly as an unknown id (404), so ids cannot be probed.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

/// Who opened a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub tenant_id: Arc<str>,
    pub key_id: Arc<str>,
}

/// The verdict on a presented session id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Ok,
    /// Unknown, expired, or another key's: all answered 404.
    NotFound,
}

/// The one rule: a session serves only the key that opened it.
pub fn check(owner: Option<&Owner>, tenant_id: &str, key_id: &str) -> Check {
    match owner {
        Some(o) if &*o.tenant_id == tenant_id && &*o.key_id == key_id => Check::Ok,
        _ => Check::NotFound,
    }
}

/// Session id → owner, forgotten after the session's idle timeout.
pub struct Bindings {
    owners: Cache<Arc<str>, Owner>,
}

impl Bindings {
    pub fn new(idle: Duration, capacity: u64) -> Self {
        Bindings { owners: Cache::builder().max_capacity(capacity).time_to_idle(idle).build() }
    }

    pub fn bind(&self, id: &str, owner: Owner) {
        self.owners.insert(Arc::from(id), owner);
    }

    pub fn unbind(&self, id: &str) {
        self.owners.invalidate(id);
    }

    pub fn check(&self, id: &str, tenant_id: &str, key_id: &str) -> Check {
        check(self.owners.get(id).as_ref(), tenant_id, key_id)
    }

    /// The bindings alive now (expired ones are dropped first: moka's count is otherwise
    /// only eventually up to date).
    pub fn len(&self) -> u64 {
        self.owners.run_pending_tasks();
        self.owners.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_serves_only_its_key() {
        let owner = Owner { tenant_id: "t1".into(), key_id: "k1".into() };
        assert_eq!(check(Some(&owner), "t1", "k1"), Check::Ok);
        assert_eq!(check(Some(&owner), "t1", "k2"), Check::NotFound, "another key of the same tenant");
        assert_eq!(check(Some(&owner), "t2", "k1"), Check::NotFound, "another tenant");
        assert_eq!(check(None, "t1", "k1"), Check::NotFound, "unknown id");
    }

    #[test]
    fn bindings_forget_unbound_sessions() {
        let b = Bindings::new(Duration::from_secs(60), 10);
        b.bind("s1", Owner { tenant_id: "t".into(), key_id: "k".into() });
        assert_eq!(b.check("s1", "t", "k"), Check::Ok);
        b.unbind("s1");
        assert_eq!(b.check("s1", "t", "k"), Check::NotFound);
    }
}
