//! The grant rule, by example and as properties over random grants and catalogs.

use proptest::prelude::*;

use super::*;

fn row(tenant: &str, key: Option<&str>, server: &str, tool: Option<&str>) -> GrantRow {
    GrantRow {
        tenant_id: tenant.into(),
        key_id: key.map(Into::into),
        server: server.into(),
        tool: tool.map(Into::into),
    }
}

const A: Who<'static> = Who { tenant_id: "ta", key_id: "ka" };

#[test]
fn nothing_is_allowed_without_a_grant_or_without_the_grants() {
    let none = GrantIndex::default();
    assert_eq!(decide(Some(&none), A, "fs", true, Item::Tool("read"), Pin::Approved), Decision::Deny(Reason::NoGrant));
    let all = GrantIndex::new(&[row("ta", None, "fs", None)], &[]);
    assert_eq!(
        decide(None, A, "fs", true, Item::Tool("read"), Pin::Approved),
        Decision::Deny(Reason::GrantsUnavailable),
        "fail closed"
    );
    assert_eq!(decide(Some(&all), A, "fs", true, Item::Tool("read"), Pin::Approved), Decision::Allow);
    assert_eq!(
        decide(Some(&all), A, "fs", false, Item::Tool("read"), Pin::Approved),
        Decision::Deny(Reason::ServerDisabled)
    );
}

#[test]
fn a_tool_grant_is_that_tool_only_and_a_key_only_narrows() {
    let g = GrantIndex::new(
        &[
            row("ta", None, "fs", Some("read")),
            row("ta", None, "gh", None),
            row("ta", Some("ka"), "gh", Some("issues")),
            row("ta", Some("ka"), "fs", None), // wider than the tenant's: gives nothing more
        ],
        &[],
    );
    let d = |server, item| decide(Some(&g), A, server, true, item, Pin::Approved);
    assert_eq!(d("fs", Item::Tool("read")), Decision::Allow);
    assert_eq!(d("fs", Item::Tool("write")), Decision::Deny(Reason::NoGrant), "the key's server grant does not widen");
    assert_eq!(d("fs", Item::Resource), Decision::Deny(Reason::NoGrant), "a tool grant is not the server");
    assert_eq!(d("gh", Item::Tool("issues")), Decision::Allow);
    assert_eq!(d("gh", Item::Tool("repos")), Decision::Deny(Reason::KeyNarrowed));
    assert_eq!(d("gh", Item::Prompt), Decision::Deny(Reason::KeyNarrowed));
    // Another key of the same tenant has no grants of its own: the tenant's apply.
    let other = Who { tenant_id: "ta", key_id: "kb" };
    assert_eq!(decide(Some(&g), other, "gh", true, Item::Tool("repos"), Pin::Approved), Decision::Allow);
    // A restricted key whose last grant was revoked sees nothing, not its tenant's.
    let revoked = GrantIndex::new(&[row("ta", None, "gh", None)], &[("ta".into(), "ka".into())]);
    assert_eq!(
        decide(Some(&revoked), A, "gh", true, Item::Tool("repos"), Pin::Approved),
        Decision::Deny(Reason::KeyNarrowed)
    );
    // Another tenant: nothing.
    let b = Who { tenant_id: "tb", key_id: "ka" };
    assert_eq!(decide(Some(&g), b, "gh", true, Item::Tool("issues"), Pin::Approved), Decision::Deny(Reason::NoGrant));
}

#[test]
fn quarantined_and_unapproved_tools_are_neither_listed_nor_callable() {
    let g = GrantIndex::new(&[row("ta", None, "fs", None)], &[]);
    for (pin, reason) in [(Pin::Quarantined, Reason::ToolQuarantined), (Pin::Unapproved, Reason::ToolUnapproved)] {
        assert_eq!(decide(Some(&g), A, "fs", true, Item::Tool("read"), pin), Decision::Deny(reason));
        let catalog = [CatalogTool { server: "fs".into(), tool: "read".into(), server_enabled: true, pin }];
        assert!(listed(&g, A, &catalog).is_empty());
    }
    // Resources and prompts have no pins.
    assert_eq!(decide(Some(&g), A, "fs", true, Item::Resource, Pin::Quarantined), Decision::Allow);
}

// === properties ===

/// A tool an upstream serves, as a listing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CatalogTool {
    server: String,
    tool: String,
    server_enabled: bool,
    pin: Pin,
}

/// What a listing answers (the rule of `aggregate::tools`): the servers the caller
/// touches, then what `decide` allows of them.
fn listed<'c>(g: &GrantIndex, who: Who<'_>, catalog: &'c [CatalogTool]) -> Vec<&'c CatalogTool> {
    catalog.iter().filter(|t| g.touches(who, &t.server)).filter(|t| allowed(g, who, t)).collect()
}

const TENANTS: [&str; 3] = ["ta", "tb", "tc"];
const KEYS: [&str; 3] = ["ka", "kb", "kc"];
const SERVERS: [&str; 3] = ["fs", "gh", "db"];
const TOOLS: [&str; 4] = ["read", "write", "list", "x__y"];

fn grant_row() -> impl Strategy<Value = GrantRow> {
    (0..3usize, prop::option::of(0..3usize), 0..3usize, prop::option::of(0..4usize))
        .prop_map(|(t, k, s, tool)| row(TENANTS[t], k.map(|k| KEYS[k]), SERVERS[s], tool.map(|x| TOOLS[x])))
}

fn pin() -> impl Strategy<Value = Pin> {
    prop_oneof![4 => Just(Pin::Approved), 1 => Just(Pin::Quarantined), 1 => Just(Pin::Unapproved)]
}

fn catalog() -> impl Strategy<Value = Vec<CatalogTool>> {
    prop::collection::vec((0..3usize, 0..4usize, prop::bool::weighted(0.9), pin()), 0..12).prop_map(|tools| {
        tools
            .into_iter()
            .map(|(s, t, enabled, pin)| CatalogTool {
                server: SERVERS[s].into(),
                tool: TOOLS[t].into(),
                server_enabled: enabled,
                pin,
            })
            .collect()
    })
}

fn who() -> impl Strategy<Value = Who<'static>> {
    (0..3usize, 0..3usize).prop_map(|(t, k)| Who { tenant_id: TENANTS[t], key_id: KEYS[k] })
}

/// The keys marked restricted: those with a grant of their own.
fn restricted(rows: &[GrantRow]) -> Vec<(String, String)> {
    rows.iter().filter_map(|r| Some((r.tenant_id.clone(), r.key_id.clone()?))).collect()
}

fn allowed(g: &GrantIndex, who: Who<'_>, t: &CatalogTool) -> bool {
    decide(Some(g), who, &t.server, t.server_enabled, Item::Tool(&t.tool), t.pin) == Decision::Allow
}

proptest! {
    /// What a key sees is exactly what it may call.
    #[test]
    fn listed_is_exactly_callable(rows in prop::collection::vec(grant_row(), 0..16), catalog in catalog(), who in who()) {
        let g = GrantIndex::new(&rows, &restricted(&rows));
        let callable: Vec<&CatalogTool> = catalog.iter().filter(|t| allowed(&g, who, t)).collect();
        prop_assert_eq!(listed(&g, who, &catalog), callable);
        // Resources and prompts are listed from the touched servers too.
        for s in SERVERS {
            for item in [Item::Resource, Item::Prompt] {
                let allowed = decide(Some(&g), who, s, true, item, Pin::Approved) == Decision::Allow;
                prop_assert!(!allowed || g.touches(who, s), "{s} holds an allowed {item:?} but is not asked");
            }
        }
    }

    /// Taking a grant away never allows more.
    #[test]
    fn removing_a_grant_never_widens(rows in prop::collection::vec(grant_row(), 1..16), drop in any::<prop::sample::Index>(),
                                     catalog in catalog(), who in who()) {
        let fewer: Vec<GrantRow> = rows.iter().enumerate().filter(|(i, _)| *i != drop.index(rows.len())).map(|(_, r)| r.clone()).collect();
        // The key stays restricted after its last grant goes (the store keeps the mark).
        let marks = restricted(&rows);
        let (before, after) = (GrantIndex::new(&rows, &marks), GrantIndex::new(&fewer, &marks));
        for t in &catalog {
            prop_assert!(!allowed(&after, who, t) || allowed(&before, who, t), "{:?} allowed only after removing a grant", t);
        }
    }

    /// A key's grants never allow what its tenant's do not, and one tenant's grants never
    /// reach another tenant.
    #[test]
    fn keys_narrow_and_tenants_are_apart(rows in prop::collection::vec(grant_row(), 0..16), catalog in catalog(), who in who()) {
        let marks = restricted(&rows);
        let g = GrantIndex::new(&rows, &marks);
        let tenant_only = GrantIndex::new(rows.iter().filter(|r| r.key_id.is_none()), &[]);
        let own = GrantIndex::new(rows.iter().filter(|r| r.tenant_id == who.tenant_id), &marks);
        for t in &catalog {
            let a = allowed(&g, who, t);
            prop_assert!(!a || allowed(&tenant_only, who, t), "a key widened its tenant: {:?}", t);
            prop_assert_eq!(a, allowed(&own, who, t), "another tenant's grants mattered: {:?}", t);
        }
    }

    /// A tool grant never allows a resource, a prompt or another tool of its server.
    #[test]
    fn a_tool_grant_is_only_that_tool(s in 0..3usize, tool in 0..4usize, other in 0..4usize) {
        let g = GrantIndex::new(&[row("ta", None, SERVERS[s], Some(TOOLS[tool]))], &[]);
        let d = |item| decide(Some(&g), A, SERVERS[s], true, item, Pin::Approved);
        prop_assert_eq!(d(Item::Tool(TOOLS[tool])), Decision::Allow);
        prop_assert_eq!(d(Item::Resource), Decision::Deny(Reason::NoGrant));
        prop_assert_eq!(d(Item::Prompt), Decision::Deny(Reason::NoGrant));
        if other != tool {
            prop_assert_eq!(d(Item::Tool(TOOLS[other])), Decision::Deny(Reason::NoGrant));
        }
    }

    /// Without the grants, nothing.
    #[test]
    fn no_grants_no_access(who in who(), s in 0..3usize, t in 0..4usize, pin in pin(), enabled in any::<bool>()) {
        prop_assert_eq!(decide(None, who, SERVERS[s], enabled, Item::Tool(TOOLS[t]), pin), Decision::Deny(Reason::GrantsUnavailable));
    }
}
