//! Who may list and call what: deny by default, one decision for listing and calling.
//!
//! A tenant is granted whole servers or single tools of a server. A key may be restricted:
//! then it sees the intersection of its own grants and its tenant's (a key narrows its
//! tenant, never widens it), and nothing once its last grant is revoked. A key is
//! restricted from its first grant on and stays so (the store keeps the mark), because
//! revoking a key's last grant must not hand it the whole tenant's. Resources and prompts
//! need the whole server.
//! A tool must also be pinned as approved ([`crate::pin`]). When the grants could not be
//! loaded, everything is denied, with a reason that says so: an error while resolving
//! grants never shows or hides anything by accident.
//!
//! [`decide`] is the rule, for listing and for calling alike. A listing asks only the
//! servers the caller [`GrantIndex::touches`], then keeps what [`decide`] allows; the
//! property tests hold that this skips nothing `decide` would allow, so a key sees
//! exactly what it may call.

use std::collections::{HashMap, HashSet};

/// One grant as stored: a tenant (and optionally one of its keys) may use a server, or
/// one tool of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GrantRow {
    pub tenant_id: String,
    /// `None`: the whole tenant; `Some`: narrows that key.
    pub key_id: Option<String>,
    pub server: String,
    /// `None`: the whole server; `Some`: one tool, by the upstream's own name.
    pub tool: Option<String>,
}

/// What a set of grant rows allows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Scope {
    servers: HashSet<String>,
    /// Tools granted one by one, by server.
    tools: HashMap<String, HashSet<String>>,
}

impl Scope {
    fn add(&mut self, row: &GrantRow) {
        match &row.tool {
            None => {
                self.servers.insert(row.server.clone());
            }
            Some(tool) => {
                self.tools.entry(row.server.clone()).or_default().insert(tool.clone());
            }
        }
    }

    /// Whether the scope holds `item` of `server` (no allocation: it runs for every call).
    fn allows(&self, server: &str, item: Item<'_>) -> bool {
        self.servers.contains(server)
            || matches!(item, Item::Tool(tool) if self.tools.get(server).is_some_and(|t| t.contains(tool)))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct TenantGrants {
    tenant: Scope,
    keys: HashMap<String, Scope>,
}

/// Every grant, indexed by tenant and key (held in memory by each pod; rebuilt on change).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantIndex {
    tenants: HashMap<String, TenantGrants>,
}

impl GrantIndex {
    /// The index of `rows`, with the keys in `restricted` (tenant id, key id) narrowed to
    /// their own grants even when they have none (left). A key with a grant is restricted
    /// anyway.
    pub fn new<'a>(rows: impl IntoIterator<Item = &'a GrantRow>, restricted: &[(String, String)]) -> GrantIndex {
        let mut index = GrantIndex::default();
        for (tenant, key) in restricted {
            index.tenants.entry(tenant.clone()).or_default().keys.entry(key.clone()).or_default();
        }
        for row in rows {
            let tenant = index.tenants.entry(row.tenant_id.clone()).or_default();
            match &row.key_id {
                None => tenant.tenant.add(row),
                Some(key) => tenant.keys.entry(key.clone()).or_default().add(row),
            }
        }
        index
    }
}

impl GrantIndex {
    /// Whether `who` holds any grant on `server`: the servers a listing asks.
    pub fn touches(&self, who: Who<'_>, server: &str) -> bool {
        let Some(tenant) = self.tenants.get(who.tenant_id) else { return false };
        let mentions = |scope: &Scope| scope.servers.contains(server) || scope.tools.contains_key(server);
        mentions(&tenant.tenant) && tenant.keys.get(who.key_id).is_none_or(mentions)
    }
}

/// Who asks: a tenant, through one of its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Who<'a> {
    pub tenant_id: &'a str,
    pub key_id: &'a str,
}

/// What is asked for on a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// A tool, by the upstream's own name.
    Tool(&'a str),
    Resource,
    Prompt,
}

/// Where a tool's definition stands against its pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    /// Served as approved (or pinned on first sight).
    Approved,
    /// Served differently from the approved definition: hidden until an operator
    /// approves the new one.
    Quarantined,
    /// Never approved, on a server that requires approval of new tools.
    Unapproved,
}

/// The answer, with the reason for a denial (clients are told why).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(Reason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The grants could not be loaded: nothing is allowed until they are.
    GrantsUnavailable,
    /// The server is disabled by an operator.
    ServerDisabled,
    /// The tenant holds no grant for it.
    NoGrant,
    /// The tenant holds one, but the key's own grants leave it out.
    KeyNarrowed,
    /// The tool's definition changed since it was approved.
    ToolQuarantined,
    /// The tool was never approved.
    ToolUnapproved,
}

/// The one rule of who may list and call what.
pub fn decide(
    grants: Option<&GrantIndex>,
    who: Who<'_>,
    server: &str,
    enabled: bool,
    item: Item<'_>,
    pin: Pin,
) -> Decision {
    let Some(grants) = grants else { return Decision::Deny(Reason::GrantsUnavailable) };
    if !enabled {
        return Decision::Deny(Reason::ServerDisabled);
    }
    let Some(tenant) = grants.tenants.get(who.tenant_id) else { return Decision::Deny(Reason::NoGrant) };
    if !tenant.tenant.allows(server, item) {
        return Decision::Deny(Reason::NoGrant);
    }
    if let Some(key) = tenant.keys.get(who.key_id)
        && !key.allows(server, item)
    {
        return Decision::Deny(Reason::KeyNarrowed);
    }
    match (item, pin) {
        (Item::Tool(_), Pin::Quarantined) => Decision::Deny(Reason::ToolQuarantined),
        (Item::Tool(_), Pin::Unapproved) => Decision::Deny(Reason::ToolUnapproved),
        _ => Decision::Allow,
    }
}

#[cfg(test)]
#[path = "grants_tests.rs"]
mod tests;
