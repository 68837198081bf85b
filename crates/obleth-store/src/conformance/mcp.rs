//! The MCP part of the conformance suite: servers, grants, restricted keys and pins,
//! the same on every store.

use std::collections::BTreeMap;

use obleth_core::now_millis;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::{assert_invalid, concurrent_rotation, new_key, tenant};
use crate::mcp::{McpGrantFilter, McpServer, McpServerPatch, McpToolPin, McpTransport, NewMcpGrant, NewMcpServer};
use crate::rules::mcp as limits;
use crate::{ControlPlaneStore, StoreError};

pub(super) async fn run(store: &dyn ControlPlaneStore) {
    servers(store).await;
    server_validation(store).await;
    server_updates(store).await;
    grants(store).await;
    grant_cascades_and_rotation(store).await;
    pins(store).await;
    racing_pins(store).await;
}

fn http(name: &str) -> NewMcpServer {
    serde_json::from_value(json!({ "name": name, "url": "http://mcp.example:8000/mcp" })).expect("server json")
}

fn stdio(name: &str) -> NewMcpServer {
    serde_json::from_value(json!({ "name": name, "command": "everything" })).expect("server json")
}

/// Everything a server holds, its credential included, for comparisons.
fn whole(s: &McpServer) -> Value {
    let mut v = serde_json::to_value(s).expect("json");
    v["credential"] = json!(s.credential.as_ref().map(|c| c.expose_secret().to_owned()));
    v
}

fn not_found<T: std::fmt::Debug>(result: crate::Result<T>, kind: &str, what: &str) {
    match result {
        Err(StoreError::NotFound { kind: k, .. }) if k == kind => {}
        other => panic!("{what}: expected {kind} not found, got {other:?}"),
    }
}

/// Servers: defaults, every field round-tripped at its bounds, lookups by id and name,
/// the credential never serialized, names unique, order bytewise.
async fn servers(store: &dyn ControlPlaneStore) {
    let fs = store.create_mcp_server(http("fs")).await.expect("create");
    assert!(fs.id.starts_with("mcp_"), "{}", fs.id);
    assert_eq!(
        (fs.transport, fs.url.as_deref(), fs.command.as_deref()),
        (McpTransport::Http, Some("http://mcp.example:8000/mcp"), None)
    );
    assert_eq!(fs.credential_header, "authorization");
    assert_eq!((fs.call_timeout_ms, fs.list_timeout_ms, fs.max_concurrency), (60_000, 2_000, 16));
    assert!(fs.enabled && !fs.require_approval && !fs.capture && !fs.has_credential());
    assert!(fs.args.is_empty() && fs.redact_fields.is_empty() && fs.tool_weights.is_empty());
    assert_eq!(whole(&store.get_mcp_server("fs").await.expect("by name")), whole(&fs));
    assert_eq!(whole(&store.get_mcp_server(&fs.id).await.expect("by id")), whole(&fs));

    let mut full = stdio("every.thing_2");
    full.args = vec!["--root".into(), "/srv/ünï côde".into(), String::new(), "x".repeat(limits::MAX_ARG_BYTES)];
    full.credential = Some(SecretString::from("tok-\"quoted\" ~!@#$%^&*()"));
    full.credential_header = Some("x-api-key".into());
    full.call_timeout_ms = Some(limits::MAX_CALL_TIMEOUT_MS);
    full.list_timeout_ms = Some(limits::MAX_LIST_TIMEOUT_MS);
    full.max_concurrency = Some(limits::MAX_CONCURRENCY);
    full.require_approval = true;
    full.capture = true;
    full.redact_fields = vec!["/arguments/password".into(), "token".into()];
    full.tool_weights = BTreeMap::from([("slow_tool".into(), limits::MAX_TOOL_WEIGHT), ("fast".into(), 0.1 + 0.2)]);
    full.enabled = false;
    let every = store.create_mcp_server(full).await.expect("create full");
    assert_eq!(every.transport, McpTransport::Stdio);
    assert_eq!(every.command.as_deref(), Some("everything"));
    assert!(every.has_credential());
    let got = store.get_mcp_server("every.thing_2").await.expect("get");
    assert_eq!(whole(&got), whole(&every), "every field comes back as written");
    assert_eq!(got.tool_weights["fast"], 0.1 + 0.2);
    assert_eq!(got.args[1], "/srv/ünï côde");
    // The credential is written by the stores only: serialized, a server has none.
    let shown = serde_json::to_value(&got).expect("json");
    assert!(shown.get("credential").is_none(), "{shown}");
    assert!(!shown.to_string().contains("quoted"), "{shown}");

    match store.create_mcp_server(http("fs")).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("fs"), "{m}"),
        other => panic!("duplicate name: {other:?}"),
    }
    // Stored normalised (lowercase scheme and host), the endpoint's own trailing slash kept.
    let mut odd = http("odd");
    odd.url = Some("HTTP://MCP.Example:8000/mcp/".into());
    assert_eq!(store.create_mcp_server(odd).await.expect("odd").url.as_deref(), Some("http://mcp.example:8000/mcp/"));

    for name in ["o-1", "o.1", "o_1", "o1", "oa"] {
        store.create_mcp_server(http(name)).await.expect("create");
    }
    let names: Vec<_> = store.list_mcp_servers().await.expect("list").into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["every.thing_2", "fs", "o-1", "o.1", "o1", "o_1", "oa", "odd"], "ordered bytewise");

    let deleted = store.delete_mcp_server("odd").await.expect("delete");
    assert_eq!(deleted.url.as_deref(), Some("http://mcp.example:8000/mcp/"), "delete returns the server");
    not_found(store.get_mcp_server("odd").await, "MCP server", "deleted");
    not_found(store.delete_mcp_server("odd").await, "MCP server", "deleted twice");
    not_found(store.delete_mcp_server("mcp_missing").await, "MCP server", "missing id");
    not_found(store.update_mcp_server("nope", McpServerPatch::default()).await, "MCP server", "patch missing");
    for name in ["o-1", "o.1", "o_1", "o1", "oa"] {
        store.delete_mcp_server(name).await.expect("cleanup");
    }
}

/// Every refusal names its field, and nothing is stored.
async fn server_validation(store: &dyn ControlPlaneStore) {
    let with = |f: &dyn Fn(&mut NewMcpServer)| {
        let mut s = http("bad");
        f(&mut s);
        s
    };
    let cases: Vec<(NewMcpServer, &str)> = vec![
        (http("Fs"), "name"),
        (http(""), "name"),
        (http("-fs"), "name"),
        (http("mcp_fs"), "name"),
        (http("a b"), "name"),
        (http(&"a".repeat(65)), "name"),
        (with(&|s| s.command = Some("everything".into())), "transport"),
        (with(&|s| s.url = None), "transport"),
        (with(&|s| s.transport = Some(McpTransport::Stdio)), "url"),
        (with(&|s| (s.transport, s.url) = (Some(McpTransport::Http), None)), "url"),
        (with(&|s| s.url = Some("ftp://mcp.example/mcp".into())), "url"),
        (with(&|s| s.url = Some("http://user:pass@mcp.example/mcp".into())), "url"),
        (with(&|s| s.url = Some("not a url".into())), "url"),
        (with(&|s| (s.url, s.command) = (None, Some("bad/cmd".into()))), "command"),
        (with(&|s| (s.url, s.command) = (None, Some("c".repeat(65)))), "command"),
        (with(&|s| s.args = vec!["a".into(); limits::MAX_ARGS + 1]), "args"),
        (with(&|s| s.args = vec!["a".repeat(limits::MAX_ARG_BYTES + 1)]), "args"),
        (with(&|s| s.args = vec!["a\0b".into()]), "args"),
        (with(&|s| s.credential = Some(SecretString::from(""))), "credential"),
        (with(&|s| s.credential = Some(SecretString::from("line\nbreak"))), "credential"),
        (with(&|s| s.credential_header = Some("X-Api-Key".into())), "credential_header"),
        (with(&|s| s.credential_header = Some("content-type".into())), "credential_header"),
        (with(&|s| s.credential_header = Some(String::new())), "credential_header"),
        (with(&|s| s.call_timeout_ms = Some(0)), "call_timeout_ms"),
        (with(&|s| s.call_timeout_ms = Some(limits::MAX_CALL_TIMEOUT_MS + 1)), "call_timeout_ms"),
        (with(&|s| s.list_timeout_ms = Some(0)), "list_timeout_ms"),
        (with(&|s| s.list_timeout_ms = Some(limits::MAX_LIST_TIMEOUT_MS + 1)), "list_timeout_ms"),
        (with(&|s| s.max_concurrency = Some(0)), "max_concurrency"),
        (with(&|s| s.max_concurrency = Some(limits::MAX_CONCURRENCY + 1)), "max_concurrency"),
        (with(&|s| s.redact_fields = vec!["f".into(); limits::MAX_REDACT_FIELDS + 1]), "redact_fields"),
        (with(&|s| s.redact_fields = vec![String::new()]), "redact_fields"),
        (with(&|s| s.tool_weights = BTreeMap::from([("t".into(), 0.0)])), "tool_weights"),
        (with(&|s| s.tool_weights = BTreeMap::from([("t".into(), -1.0)])), "tool_weights"),
        (with(&|s| s.tool_weights = BTreeMap::from([("t".into(), 1000.5)])), "tool_weights"),
        (with(&|s| s.tool_weights = BTreeMap::from([("t".into(), f64::NAN)])), "tool_weights"),
        (with(&|s| s.tool_weights = BTreeMap::from([("t".into(), f64::INFINITY)])), "tool_weights"),
        (with(&|s| s.tool_weights = BTreeMap::from([(String::new(), 1.0)])), "tool_weights"),
    ];
    for (new, field) in cases {
        let what = format!("{field}: {new:?}");
        assert_invalid(store.create_mcp_server(new).await, field, &what);
    }
    not_found(store.get_mcp_server("bad").await, "MCP server", "a refused server is not stored");
}

/// Patches: absent fields stay, `credential: null` clears, a refused patch changes nothing.
async fn server_updates(store: &dyn ControlPlaneStore) {
    let s = store.create_mcp_server(http("patched")).await.expect("create");
    let patch: McpServerPatch = serde_json::from_value(json!({
        "credential": "sk-mcp", "call_timeout_ms": 5, "tool_weights": {"big": 8.0}, "require_approval": true,
        "url": "https://other.example/mcp",
    }))
    .expect("patch json");
    let p = store.update_mcp_server("patched", patch).await.expect("patch");
    assert_eq!((p.call_timeout_ms, p.list_timeout_ms), (5, 2_000), "untouched fields stay");
    assert_eq!((p.url.as_deref(), p.require_approval), (Some("https://other.example/mcp"), true));
    assert_eq!(p.credential.as_ref().map(|c| c.expose_secret().to_owned()).as_deref(), Some("sk-mcp"));
    assert_eq!((p.id.as_str(), p.created_at), (s.id.as_str(), s.created_at));
    assert!(p.updated_at >= s.updated_at);
    assert_eq!(whole(&store.get_mcp_server(&s.id).await.expect("get")), whole(&p));

    let kept: McpServerPatch = serde_json::from_value(json!({ "enabled": false })).expect("json");
    assert!(store.update_mcp_server("patched", kept).await.expect("patch").has_credential(), "absent keeps it");
    let cleared: McpServerPatch = serde_json::from_value(json!({ "credential": null })).expect("json");
    assert!(!store.update_mcp_server("patched", cleared).await.expect("patch").has_credential(), "null clears it");

    let before = whole(&store.get_mcp_server("patched").await.expect("get"));
    for (patch, field) in [
        (json!({ "command": "everything" }), "command"),
        (json!({ "url": "gopher://x" }), "url"),
        (json!({ "max_concurrency": 0 }), "max_concurrency"),
        (json!({ "tool_weights": {"t": 0} }), "tool_weights"),
    ] {
        let patch: McpServerPatch = serde_json::from_value(patch).expect("json");
        assert_invalid(store.update_mcp_server("patched", patch).await, field, field);
    }
    let st = store.create_mcp_server(stdio("patched-stdio")).await.expect("stdio");
    let url: McpServerPatch = serde_json::from_value(json!({ "url": "http://x.example/mcp" })).expect("json");
    assert_invalid(store.update_mcp_server(&st.id, url).await, "url", "a url on a stdio server");
    assert_eq!(whole(&store.get_mcp_server("patched").await.expect("get")), before, "refused patches change nothing");
    store.delete_mcp_server("patched").await.expect("cleanup");
    store.delete_mcp_server("patched-stdio").await.expect("cleanup");
}

fn grant(tenant: &str, key: Option<&str>, server: &str, tool: Option<&str>) -> NewMcpGrant {
    NewMcpGrant {
        tenant: tenant.into(),
        key_id: key.map(str::to_owned),
        server: server.into(),
        tool: tool.map(str::to_owned),
    }
}

/// A key of `tenant_id`, stored.
async fn stored_key(store: &dyn ControlPlaneStore, tenant_id: &str) -> String {
    let (k, hash) = new_key(tenant_id, None, now_millis(), None);
    store.insert_key(&k, hash).await.expect("key");
    k.id
}

/// Grants: tenant by id or name, keys only of that tenant, duplicates refused, filters,
/// the restricted mark set by a key grant and kept after its last grant goes.
async fn grants(store: &dyn ControlPlaneStore) {
    let a = store.create_tenant(tenant("mcp-ta")).await.expect("tenant");
    let b = store.create_tenant(tenant("mcp-tb")).await.expect("tenant");
    let (ka, kb) = (stored_key(store, &a.id).await, stored_key(store, &b.id).await);
    for name in ["g1", "g2"] {
        store.create_mcp_server(http(name)).await.expect("server");
    }

    let whole_server = store.create_mcp_grant(grant("mcp-ta", None, "g1", None)).await.expect("by name");
    assert!(whole_server.id.starts_with("mgr_"), "{}", whole_server.id);
    assert_eq!((whole_server.tenant_id.as_str(), whole_server.server.as_str()), (a.id.as_str(), "g1"));
    assert_eq!((whole_server.key_id.as_deref(), whole_server.tool.as_deref()), (None, None));
    let by_id = store.create_mcp_grant(grant(&a.id, None, "g2", Some("read"))).await.expect("by id");
    let key_grant = store.create_mcp_grant(grant("mcp-ta", Some(&ka), "g1", Some("read"))).await.expect("key");
    assert_eq!(key_grant.key_id.as_deref(), Some(ka.as_str()));
    store.create_mcp_grant(grant("mcp-tb", None, "g1", Some("read"))).await.expect("another tenant, same tool");

    for dup in [
        grant("mcp-ta", None, "g1", None),
        grant(&a.id, None, "g2", Some("read")),
        grant("mcp-ta", Some(&ka), "g1", Some("read")),
    ] {
        match store.create_mcp_grant(dup.clone()).await {
            Err(StoreError::Conflict(_)) => {}
            other => panic!("duplicate {dup:?}: {other:?}"),
        }
    }
    assert_invalid(store.create_mcp_grant(grant("mcp-ta", Some(&kb), "g1", None)).await, "key_id", "another's key");
    assert_invalid(store.create_mcp_grant(grant("mcp-ta", Some("key_none"), "g1", None)).await, "key_id", "no key");
    assert_invalid(store.create_mcp_grant(grant("mcp-ta", None, "g1", Some(""))).await, "tool", "empty tool");
    assert_invalid(store.create_mcp_grant(grant("mcp-ta", None, "g1", Some("a\nb"))).await, "tool", "control");
    not_found(store.create_mcp_grant(grant("mcp-ta", None, "nothere", None)).await, "MCP server", "missing server");
    not_found(store.create_mcp_grant(grant("nobody", None, "g1", None)).await, "tenant", "missing tenant");

    let ids = |filter: McpGrantFilter| async move {
        store.list_mcp_grants(filter).await.expect("list").into_iter().map(|g| g.id).collect::<Vec<_>>()
    };
    // Listed by creation time, then id (grants made in one millisecond are ordered by id).
    let in_order = |grants: &[&crate::McpGrant]| {
        let mut grants = grants.to_vec();
        grants.sort_by(|x, y| (x.created_at, &x.id).cmp(&(y.created_at, &y.id)));
        grants.into_iter().map(|g| g.id.clone()).collect::<Vec<_>>()
    };
    let of_a = McpGrantFilter { tenant_id: Some(a.id.clone()), ..Default::default() };
    assert_eq!(ids(of_a.clone()).await, in_order(&[&whole_server, &by_id, &key_grant]));
    let key_only = McpGrantFilter { key_id: Some(ka.clone()), ..Default::default() };
    assert_eq!(store.list_mcp_grants(key_only.clone()).await.expect("list"), vec![key_grant.clone()]);
    let g2 = McpGrantFilter { server: Some("g2".into()), ..Default::default() };
    assert_eq!(ids(g2).await, vec![by_id.id.clone()]);
    let g1_of_a = McpGrantFilter { server: Some("g1".into()), ..of_a.clone() };
    assert_eq!(ids(g1_of_a).await, in_order(&[&whole_server, &key_grant]));

    let all = store.mcp_grants().await.expect("all");
    assert!(all.grants.contains(&key_grant) && all.grants.len() >= 4, "{all:?}");
    assert!(all.restricted_keys.contains(&(a.id.clone(), ka.clone())));
    assert!(!all.restricted_keys.iter().any(|(_, k)| *k == kb), "no key grant, not restricted");

    // Revoking the key's last grant keeps it restricted (it never widens to its tenant's).
    assert_eq!(store.delete_mcp_grant(&key_grant.id).await.expect("delete"), key_grant);
    not_found(store.delete_mcp_grant(&key_grant.id).await, "MCP grant", "deleted twice");
    assert!(ids(key_only).await.is_empty());
    assert!(store.mcp_grants().await.expect("all").restricted_keys.contains(&(a.id.clone(), ka.clone())));

    store.delete_tenant("mcp-ta").await.expect("cleanup");
    store.delete_tenant("mcp-tb").await.expect("cleanup");
    store.delete_mcp_server("g1").await.expect("cleanup");
    store.delete_mcp_server("g2").await.expect("cleanup");
    let left = store.mcp_grants().await.expect("all");
    assert!(left.grants.is_empty() && left.restricted_keys.is_empty(), "{left:?}");
}

/// Deleting a server, a tenant (and with it its keys) takes their grants and marks; a
/// rotation gives the new key the old one's grants and mark.
async fn grant_cascades_and_rotation(store: &dyn ControlPlaneStore) {
    let t = store.create_tenant(tenant("mcp-rot")).await.expect("tenant");
    let other = store.create_tenant(tenant("mcp-other")).await.expect("tenant");
    let (k, k_hash) = new_key(&t.id, Some("ci"), now_millis(), None);
    store.insert_key(&k, k_hash).await.expect("key");
    let plain = stored_key(store, &t.id).await;
    let other_key = stored_key(store, &other.id).await;
    for name in ["c1", "c2"] {
        store.create_mcp_server(http(name)).await.expect("server");
    }
    store.create_mcp_grant(grant("mcp-rot", None, "c1", None)).await.expect("tenant grant");
    for (server, tool) in [("c1", Some("read")), ("c2", None), ("c1", Some("write"))] {
        store.create_mcp_grant(grant("mcp-rot", Some(&k.id), server, tool)).await.expect("key grant");
    }
    store.create_mcp_grant(grant("mcp-other", Some(&other_key), "c1", None)).await.expect("other");

    let (rotation, _) = concurrent_rotation();
    let rotated = store.rotate_key(&k.id, rotation).await.expect("rotate");
    let of_key = |id: String| async move {
        let filter = McpGrantFilter { key_id: Some(id), ..Default::default() };
        let grants = store.list_mcp_grants(filter).await.expect("list");
        let mut grants: Vec<_> = grants.into_iter().map(|g| (g.tenant_id, g.server, g.tool)).collect();
        grants.sort();
        grants
    };
    let old = of_key(k.id.clone()).await;
    assert_eq!(old.len(), 3);
    assert_eq!(of_key(rotated.new.id.clone()).await, old, "every grant copied");
    let marks = store.mcp_grants().await.expect("all").restricted_keys;
    assert!(marks.contains(&(t.id.clone(), rotated.new.id.clone())), "the new key is restricted too");
    // A key with no grants and no mark gives its successor none.
    let (rotation, _) = concurrent_rotation();
    let plain_new = store.rotate_key(&plain, rotation).await.expect("rotate plain").new.id;
    assert!(of_key(plain_new.clone()).await.is_empty());
    assert!(!store.mcp_grants().await.expect("all").restricted_keys.iter().any(|(_, k)| *k == plain_new));
    // A restricted key whose grants were all revoked passes its mark on.
    let lone = stored_key(store, &t.id).await;
    let g = store.create_mcp_grant(grant("mcp-rot", Some(&lone), "c2", None)).await.expect("grant");
    store.delete_mcp_grant(&g.id).await.expect("revoke");
    let (rotation, _) = concurrent_rotation();
    let lone_new = store.rotate_key(&lone, rotation).await.expect("rotate lone").new.id;
    assert!(store.mcp_grants().await.expect("all").restricted_keys.contains(&(t.id.clone(), lone_new)));

    // A server's delete takes its grants.
    store.delete_mcp_server("c2").await.expect("delete server");
    assert!(of_key(k.id.clone()).await.iter().all(|(_, s, _)| s == "c1"));
    assert_eq!(of_key(k.id.clone()).await.len(), 2);
    // A tenant's delete takes its grants, its keys' grants and their marks; others stay.
    store.delete_tenant("mcp-rot").await.expect("delete tenant");
    let all = store.mcp_grants().await.expect("all");
    assert!(all.grants.iter().all(|g| g.tenant_id == other.id), "{all:?}");
    assert_eq!(all.restricted_keys, vec![(other.id.clone(), other_key.clone())]);
    store.delete_tenant("mcp-other").await.expect("cleanup");
    store.delete_mcp_server("c1").await.expect("cleanup");
}

fn hash(n: u32) -> String {
    format!("sha256:{n:064x}")
}

fn def(n: u32) -> Value {
    json!({"name": "read", "description": format!("version {n}: ünï ✓"), "inputSchema": {"type": "object",
           "properties": {"n": {"type": "integer", "maximum": 9_007_199_254_740_993_u64, "multipleOf": 0.1}}}})
}

/// A pin approved at `n`, first seen now.
fn approved(server: &str, tool: &str, n: u32) -> McpToolPin {
    McpToolPin {
        server: server.into(),
        tool: tool.into(),
        approved_hash: Some(hash(n)),
        approved_def: Some(def(n)),
        pending_hash: None,
        pending_def: None,
        first_seen_at: 1_700_000_000_000,
        changed_at: None,
        approved_at: None,
        approved_by: None,
    }
}

/// Pins: insert only where none is, update only from the version read, definitions kept
/// exactly, refusals named, gone with their server.
async fn pins(store: &dyn ControlPlaneStore) {
    let s = store.create_mcp_server(http("pinned")).await.expect("server");
    let v1 = approved("pinned", "read", 1);
    assert!(store.put_mcp_pin(&v1, None).await.expect("insert"), "inserted where none was");
    assert!(!store.put_mcp_pin(&approved("pinned", "read", 9), None).await.expect("insert again"), "one is stored");
    assert_eq!(store.list_mcp_pins("pinned").await.expect("list"), vec![v1.clone()], "kept as written");
    assert_eq!(store.list_mcp_pins(&s.id).await.expect("by id"), vec![v1.clone()]);

    // Quarantined: a pending definition beside the approved one.
    let quarantined = McpToolPin {
        pending_hash: Some(hash(2)),
        pending_def: Some(def(2)),
        changed_at: Some(1_700_000_001_000),
        ..v1.clone()
    };
    assert!(store.put_mcp_pin(&quarantined, Some(&v1.version())).await.expect("cas"));
    // A writer that read v1 is too late now, and changes nothing.
    let stale = McpToolPin { pending_hash: Some(hash(3)), pending_def: Some(def(3)), ..v1.clone() };
    assert!(!store.put_mcp_pin(&stale, Some(&v1.version())).await.expect("stale"));
    assert_eq!(store.list_mcp_pins("pinned").await.expect("list"), vec![quarantined.clone()]);
    // Approval: the compare matches a NULL-free version, then one with a NULL pending.
    let approval = McpToolPin {
        approved_hash: Some(hash(2)),
        approved_def: Some(def(2)),
        pending_hash: None,
        pending_def: None,
        approved_at: Some(1_700_000_002_000),
        approved_by: Some("ops@example.com".into()),
        ..quarantined.clone()
    };
    assert!(store.put_mcp_pin(&approval, Some(&quarantined.version())).await.expect("approve"));
    assert!(!store.put_mcp_pin(&approval, Some(&(Some(hash(2)), Some(hash(2))))).await.expect("no such version"));
    assert_eq!(store.list_mcp_pins("pinned").await.expect("list"), vec![approval.clone()]);
    // Never approved (a server requiring approval): the compare matches a NULL approved hash.
    let held = McpToolPin {
        approved_hash: None,
        approved_def: None,
        pending_hash: Some(hash(5)),
        pending_def: Some(def(5)),
        ..approved("pinned", "a-first", 0)
    };
    assert!(store.put_mcp_pin(&held, None).await.expect("held"));
    let rehash = McpToolPin { pending_hash: Some(hash(6)), pending_def: Some(def(6)), ..held.clone() };
    assert!(store.put_mcp_pin(&rehash, Some(&(None, Some(hash(5))))).await.expect("null-safe"));
    assert!(!store.put_mcp_pin(&rehash, Some(&(Some(hash(5)), None))).await.expect("not that one"));
    // No row: an update never inserts.
    assert!(!store.put_mcp_pin(&approved("pinned", "ghost", 1), Some(&(Some(hash(1)), None))).await.expect("ghost"));
    let tools: Vec<_> = store.list_mcp_pins("pinned").await.expect("list").into_iter().map(|p| p.tool).collect();
    assert_eq!(tools, ["a-first", "read"], "ordered by tool");

    let bad = |f: &dyn Fn(&mut McpToolPin)| {
        let mut p = approved("pinned", "bad", 1);
        f(&mut p);
        p
    };
    for (pin, field) in [
        (bad(&|p| p.approved_hash = Some("md5:abc".into())), "approved_hash"),
        (bad(&|p| p.approved_hash = Some(format!("sha256:{}", "A".repeat(64)))), "approved_hash"),
        (bad(&|p| p.approved_hash = Some(format!("sha256:{}", "a".repeat(63)))), "approved_hash"),
        (bad(&|p| p.approved_def = None), "approved_def"),
        (bad(&|p| p.pending_def = Some(def(1))), "pending_def"),
        (bad(&|p| (p.approved_hash, p.approved_def) = (None, None)), "pending_hash"),
        (bad(&|p| p.tool = String::new()), "tool"),
        (bad(&|p| p.approved_by = Some("a b".into())), "approved_by"),
    ] {
        assert_invalid(store.put_mcp_pin(&pin, None).await, field, &format!("{pin:?}"));
    }
    not_found(store.put_mcp_pin(&approved("no-server", "read", 1), None).await, "MCP server", "pin of no server");
    not_found(store.list_mcp_pins("no-server").await, "MCP server", "pins of no server");

    // A server's delete takes its pins; a new server of that name starts with none.
    store.delete_mcp_server("pinned").await.expect("delete");
    store.create_mcp_server(http("pinned")).await.expect("again");
    assert!(store.list_mcp_pins("pinned").await.expect("list").is_empty());
    store.delete_mcp_server("pinned").await.expect("cleanup");
}

/// How many writers race one compare-and-set.
const WRITERS: u32 = 16;

/// Sixteen pods seeing the same tool at once: of writers with the same expectation,
/// exactly one writes, the others learn that the pin moved; the stored pin is the winner's.
async fn racing_pins(store: &dyn ControlPlaneStore) {
    store.create_mcp_server(http("raced")).await.expect("server");
    for round in 0..3u32 {
        let tool = format!("tool-{round}");
        let first = approved("raced", &tool, 0);
        let first = &first;
        // Each writer writes a pending hash of its own (`base + n`), so that no two write the
        // same version and the winner's write always moves the pin.
        let race = |expected: Option<(Option<String>, Option<String>)>, base: u32| async move {
            let writes = (1..=WRITERS).map(|n| {
                let pin = McpToolPin {
                    pending_hash: Some(hash(base + n)),
                    pending_def: Some(def(base + n)),
                    ..first.clone()
                };
                let expected = expected.clone();
                async move {
                    let written = store.put_mcp_pin(&pin, expected.as_ref()).await;
                    (written, pin)
                }
            });
            let results = futures_util::future::join_all(writes).await;
            let mut won = vec![];
            for (result, pin) in results {
                match result {
                    Ok(true) => won.push(pin),
                    Ok(false) => {}
                    Err(e) => panic!("round {round}: a racing writer failed: {e:?}"),
                }
            }
            assert_eq!(won.len(), 1, "round {round}: exactly one writer wins");
            won.remove(0)
        };
        // Racing inserts, then racing updates from the one version they all read.
        let inserted = race(None, 0).await;
        assert_eq!(store.list_mcp_pins("raced").await.expect("list").iter().find(|p| p.tool == tool), Some(&inserted));
        let updated = race(Some(inserted.version()), 100).await;
        assert_eq!(store.list_mcp_pins("raced").await.expect("list").iter().find(|p| p.tool == tool), Some(&updated));
    }
    store.delete_mcp_server("raced").await.expect("cleanup");
}
