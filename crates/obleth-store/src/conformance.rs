//! The behavioural suite every [`ControlPlaneStore`] must pass.
//!
//! Each implementation's tests call [`run`] on a fresh, empty store. It panics (like
//! any test) on the first behaviour that differs from the contract. The MCP tables have
//! a part of their own (`conformance/mcp.rs`).

mod mcp;

use obleth_core::{ApiKey, Quota, key, now_millis};
use secrecy::{ExposeSecret, SecretString};

use crate::{
    AuditFilter, ControlPlaneStore, GroupSettings, KeyFilter, KeyRotation, ModelFilter, ModelPatch, NewAuditEntry,
    NewModel, NewTenant, PageRequest, StoreError, TenantFilter, TenantPatch,
};

fn tenant(name: &str) -> NewTenant {
    NewTenant {
        name: name.into(),
        weight: 1,
        group: "default".into(),
        allowed_models: vec![],
        disabled: false,
        never_degrade: false,
        quota: Quota::default(),
    }
}

fn model(name: &str) -> NewModel {
    NewModel {
        model_name: name.into(),
        upstream_model: None,
        api_base: None,
        api_key: None,
        input_cost_per_token: 0.0,
        output_cost_per_token: 0.0,
        context_window: None,
        enabled: true,
        admission_weight: 1.0,
        max_in_flight: None,
        tags: vec![],
    }
}

/// Runs the whole suite against an empty store.
pub async fn run(store: &dyn ControlPlaneStore) {
    store.ping().await.expect("ping");
    tenants(store).await;
    keys(store).await;
    models(store).await;
    groups(store).await;
    round_trips(store).await;
    names_and_order(store).await;
    paging(store).await;
    rotation(store).await;
    audit(store).await;
    concurrent_patches(store).await;
    model_tags(store).await;
    concurrent_clients(store).await;
    mcp::run(store).await;
}

/// Tags round-trip in order, are replaced by a patch, filter listings, and are validated.
async fn model_tags(store: &dyn ControlPlaneStore) {
    let mut new = model("tagged-a");
    new.tags = vec!["fast".into(), "eu".into(), "code/python".into()];
    let a = store.create_model(new).await.expect("create");
    assert_eq!(a.tags, ["fast", "eu", "code/python"]);
    assert_eq!(store.get_model("tagged-a").await.expect("get").tags, a.tags);
    let mut new = model("tagged-b");
    new.tags = vec!["eu".into()];
    store.create_model(new).await.expect("create b");
    store.create_model(model("tagged-c")).await.expect("create c");

    let names = |f: ModelFilter| async move {
        let page = store.list_models_page(f, page(1000, None)).await.expect("list");
        page.items.into_iter().map(|m| m.model_name).filter(|n| n.starts_with("tagged-")).collect::<Vec<_>>()
    };
    let tag = |t: &str| ModelFilter { tag: Some(t.into()), ..Default::default() };
    assert_eq!(names(tag("eu")).await, ["tagged-a", "tagged-b"]);
    assert_eq!(names(tag("fast")).await, ["tagged-a"]);
    assert!(names(tag("code")).await.is_empty(), "whole tags only");
    assert_eq!(names(ModelFilter::default()).await, ["tagged-a", "tagged-b", "tagged-c"]);

    let patched = store
        .update_model("tagged-a", ModelPatch { tags: Some(vec!["slow".into()]), ..Default::default() })
        .await
        .expect("patch");
    assert_eq!(patched.tags, ["slow"]);
    assert_eq!(names(tag("eu")).await, ["tagged-b"]);
    let kept = store.update_model("tagged-a", ModelPatch { enabled: Some(false), ..Default::default() }).await;
    assert_eq!(kept.expect("patch").tags, ["slow"], "a patch without tags keeps them");

    for bad in [vec!["Fast".to_owned()], vec!["".to_owned()], vec!["a b".to_owned()], vec!["x".into(), "x".into()]] {
        let mut new = model("tagged-bad");
        new.tags = bad.clone();
        match store.create_model(new).await {
            Err(StoreError::Invalid { field: "tags", .. }) => {}
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    let too_many = (0..=crate::rules::MAX_TAGS).map(|i| format!("t{i}")).collect();
    assert!(
        store.update_model("tagged-b", ModelPatch { tags: Some(too_many), ..Default::default() }).await.is_err(),
        "at most {} tags",
        crate::rules::MAX_TAGS
    );
}

/// Patches of different fields of one tenant, made at the same time, all land: each patch
/// reads and writes in one step, so none writes back a stale copy over another.
async fn concurrent_patches(store: &dyn ControlPlaneStore) {
    for round in 0..10u32 {
        let t = store.create_tenant(tenant(&format!("racy-{round}"))).await.expect("create");
        let patch = |p: TenantPatch| store.update_tenant(&t.id, p);
        let (a, b, c, d) = tokio::join!(
            patch(TenantPatch { weight: Some(7), ..Default::default() }),
            patch(TenantPatch { disabled: Some(true), ..Default::default() }),
            patch(TenantPatch { never_degrade: Some(true), ..Default::default() }),
            patch(TenantPatch { group: Some("batch".into()), ..Default::default() }),
        );
        for r in [a, b, c, d] {
            r.expect("patch");
        }
        let got = store.get_tenant(&t.id).await.expect("get");
        assert_eq!(
            (got.weight, got.disabled, got.never_degrade, got.group.as_str()),
            (7, true, true, "batch"),
            "round {round}: a concurrent patch was lost"
        );
    }
}

fn weight(weight: u32) -> GroupSettings {
    GroupSettings { weight, ..GroupSettings::default() }
}

async fn groups(store: &dyn ControlPlaneStore) {
    let g = store.put_group("chatbot", weight(500)).await.expect("put");
    assert_eq!((g.weight, g.reserved_slots, g.max_slots), (500, None, None));
    let g2 = store.put_group("chatbot", weight(400)).await.expect("update");
    assert_eq!(g2.weight, 400);
    assert_eq!(g2.created_at, g.created_at, "an update keeps created_at");
    store.put_group("api", weight(50)).await.expect("second");
    let names: Vec<_> = store.list_groups().await.expect("list").into_iter().map(|g| (g.name, g.weight)).collect();
    assert_eq!(names, [("api".to_owned(), 50), ("chatbot".to_owned(), 400)]);
    match store.put_group("api", weight(0)).await {
        Err(StoreError::Invalid { field: "weight", .. }) => {}
        other => panic!("weight 0: {other:?}"),
    }
    match store.put_group("Bad", weight(1)).await {
        Err(StoreError::Invalid { field: "name", .. }) => {}
        other => panic!("bad name: {other:?}"),
    }
    store.delete_group("api").await.expect("delete");
    match store.get_group("api").await {
        Err(StoreError::NotFound { kind: "group", .. }) => {}
        other => panic!("deleted group: {other:?}"),
    }
    group_limits(store).await;
}

/// Reserved and max slots: stored, read back by every read, replaced by a put, validated.
async fn group_limits(store: &dyn ControlPlaneStore) {
    let limited = GroupSettings { weight: 3, reserved_slots: Some(2), max_slots: Some(5) };
    let g = store.put_group("limited", limited).await.expect("put with limits");
    assert_eq!((g.weight, g.reserved_slots, g.max_slots), (3, Some(2), Some(5)));
    assert_eq!(store.get_group("limited").await.expect("get"), g);
    let listed = store.list_groups().await.expect("list").into_iter().find(|g| g.name == "limited");
    assert_eq!(listed.as_ref(), Some(&g));
    // Only one of them; the other is cleared (a put replaces every setting).
    let g = store.put_group("limited", GroupSettings { max_slots: Some(1), ..weight(3) }).await.expect("max only");
    assert_eq!((g.reserved_slots, g.max_slots), (None, Some(1)));
    let g = store.put_group("limited", GroupSettings { reserved_slots: Some(7), ..weight(3) }).await.expect("reserved");
    assert_eq!((g.reserved_slots, g.max_slots), (Some(7), None));
    let g = store.put_group("limited", weight(3)).await.expect("cleared");
    assert_eq!((g.reserved_slots, g.max_slots), (None, None));
    assert_eq!(store.get_group("limited").await.expect("get"), g);
    let max = crate::rules::MAX_GROUP_SLOTS;
    let g = store
        .put_group("limited", GroupSettings { weight: 3, reserved_slots: Some(max), max_slots: Some(max) })
        .await
        .expect("largest");
    assert_eq!((g.reserved_slots, g.max_slots), (Some(max), Some(max)));
    for (bad, field) in [
        (GroupSettings { max_slots: Some(0), ..weight(1) }, "max_slots"),
        (GroupSettings { reserved_slots: Some(0), ..weight(1) }, "reserved_slots"),
        (GroupSettings { max_slots: Some(max + 1), ..weight(1) }, "max_slots"),
        (GroupSettings { reserved_slots: Some(3), max_slots: Some(2), ..weight(1) }, "reserved_slots"),
    ] {
        match store.put_group("limited", bad).await {
            Err(StoreError::Invalid { field: f, .. }) if f == field => {}
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    // A refused put changes nothing.
    assert_eq!(store.get_group("limited").await.expect("get").max_slots, Some(max));
    let deleted = store.delete_group("limited").await.expect("delete");
    assert_eq!(deleted.reserved_slots, Some(max), "delete returns the group as it was");
}

async fn tenants(store: &dyn ControlPlaneStore) {
    let mut new = tenant("chatbot");
    new.weight = 500;
    new.group = "prod".into();
    new.allowed_models = vec!["m1".into()];
    new.quota.tpm = Some(10_000);
    new.quota.monthly_budget = Some(12.5);
    new.quota.fail_closed = true;
    let t = store.create_tenant(new).await.expect("create");
    assert!(t.id.starts_with("ten_"));
    assert_eq!(store.get_tenant(&t.id).await.expect("by id"), t);
    assert_eq!(store.get_tenant("chatbot").await.expect("by name"), t);

    // Names are unique.
    match store.create_tenant(tenant("chatbot")).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("duplicate name: {other:?}"),
    }
    // Validation names the field.
    let mut bad = tenant("ok-name");
    bad.weight = 0;
    match store.create_tenant(bad).await {
        Err(StoreError::Invalid { field: "weight", .. }) => {}
        other => panic!("weight 0: {other:?}"),
    }
    match store.create_tenant(tenant("Bad Name")).await {
        Err(StoreError::Invalid { field: "name", .. }) => {}
        other => panic!("bad name: {other:?}"),
    }

    let patched = store
        .update_tenant(
            "chatbot",
            TenantPatch {
                weight: Some(7),
                disabled: Some(true),
                quota: Some(Quota { rpm: Some(3), tool_calls_in_flight: Some(1), ..Quota::default() }),
                ..TenantPatch::default()
            },
        )
        .await
        .expect("patch");
    assert_eq!(patched.weight, 7);
    assert!(patched.disabled);
    assert_eq!(patched.group, "prod", "untouched fields stay");
    assert_eq!(patched.quota, Quota { rpm: Some(3), tool_calls_in_flight: Some(1), ..Quota::default() });
    assert!(patched.updated_at >= t.updated_at);
    assert_eq!(store.get_tenant(&t.id).await.expect("get"), patched);

    let other = store.create_tenant(tenant("api-batch")).await.expect("second");
    match store.update_tenant(&other.id, TenantPatch { name: Some("chatbot".into()), ..Default::default() }).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("rename onto existing: {other:?}"),
    }
    let names: Vec<_> = store.list_tenants().await.expect("list").into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["api-batch", "chatbot"]);

    match store.get_tenant("nobody").await {
        Err(StoreError::NotFound { kind: "tenant", .. }) => {}
        other => panic!("missing tenant: {other:?}"),
    }
    match store.update_tenant("ten_missing", TenantPatch::default()).await {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("patch missing: {other:?}"),
    }
}

async fn keys(store: &dyn ControlPlaneStore) {
    let t = store.create_tenant(tenant("keyholder")).await.expect("tenant");
    let generated = key::generate();
    let record = ApiKey {
        id: obleth_core::new_id("key_"),
        tenant_id: t.id.clone(),
        name: Some("ci".into()),
        prefix: generated.prefix.clone(),
        created_at: now_millis(),
        expires_at: None,
        revoked_at: None,
    };
    store.insert_key(&record, generated.hash).await.expect("insert");
    assert_eq!(store.lookup_key(&generated.hash).await.expect("lookup"), Some(record.clone()));
    assert_eq!(store.lookup_key(&key::KeyHash::of("obl_nope")).await.expect("lookup"), None);

    // A key for a tenant that does not exist is refused.
    let orphan = ApiKey { id: obleth_core::new_id("key_"), tenant_id: "ten_none".into(), ..record.clone() };
    match store.insert_key(&orphan, key::generate().hash).await {
        Err(StoreError::NotFound { kind: "tenant", .. }) => {}
        other => panic!("orphan key: {other:?}"),
    }

    let second = key::generate();
    let record2 = ApiKey { id: obleth_core::new_id("key_"), prefix: second.prefix.clone(), ..record.clone() };
    store.insert_key(&record2, second.hash).await.expect("insert second");
    let listed =
        store.list_keys(KeyFilter { tenant_id: Some(t.id.clone()), ..Default::default() }).await.expect("list");
    assert_eq!(listed.len(), 2);
    let by_prefix = store
        .list_keys(KeyFilter { prefix: Some(generated.prefix.clone()), ..Default::default() })
        .await
        .expect("by prefix");
    assert_eq!(by_prefix, vec![record.clone()]);

    let (revoked, hash) = store.revoke_key(&record.id).await.expect("revoke");
    assert_eq!(hash, generated.hash);
    let at = revoked.revoked_at.expect("revoked_at set");
    let (again, _) = store.revoke_key(&record.id).await.expect("revoke twice");
    assert_eq!(again.revoked_at, Some(at), "revocation is idempotent");
    assert!(!store.lookup_key(&generated.hash).await.expect("lookup").expect("still found").is_active(now_millis()));
    let active =
        store.list_keys(KeyFilter { tenant_id: Some(t.id.clone()), ..Default::default() }).await.expect("list");
    assert_eq!(active, vec![record2.clone()]);
    let all = store
        .list_keys(KeyFilter { tenant_id: Some(t.id.clone()), include_revoked: true, ..Default::default() })
        .await
        .expect("list all");
    assert_eq!(all.len(), 2);
    match store.revoke_key("key_missing").await {
        Err(StoreError::NotFound { kind: "key", .. }) => {}
        other => panic!("revoke missing: {other:?}"),
    }

    // Deleting a tenant deletes its keys and reports their hashes.
    let (deleted, hashes) = store.delete_tenant("keyholder").await.expect("delete");
    assert_eq!(deleted.id, t.id);
    assert_eq!(hashes.len(), 2);
    assert!(hashes.contains(&second.hash));
    assert_eq!(store.lookup_key(&second.hash).await.expect("lookup"), None);
}

async fn models(store: &dyn ControlPlaneStore) {
    let mut new = model("llama-3-70b");
    new.upstream_model = Some("llama-3-70b-instruct".into());
    new.api_base = Some("http://aibrix-gateway:8080".into());
    new.api_key = Some(SecretString::from("sk-upstream"));
    new.input_cost_per_token = 0.000_000_5;
    new.output_cost_per_token = 0.000_001_5;
    new.context_window = Some(131_072);
    new.admission_weight = 4.0;
    new.max_in_flight = Some(6);
    let m = store.create_model(new).await.expect("create model");
    let got = store.get_model("llama-3-70b").await.expect("get");
    assert_eq!(got.upstream_model, "llama-3-70b-instruct");
    assert_eq!(got.api_key.as_ref().map(|k| k.expose_secret().to_owned()), Some("sk-upstream".into()));
    assert_eq!(got.admission_weight, 4.0);
    assert_eq!(got.context_window, Some(131_072));
    assert_eq!(got.max_in_flight, Some(6));
    assert_eq!(got.created_at, m.created_at);

    let defaulted = store.create_model(model("plain")).await.expect("plain");
    assert_eq!(defaulted.upstream_model, "plain", "upstream_model defaults to model_name");
    assert!(defaulted.enabled);
    assert_eq!(defaulted.admission_weight, 1.0);

    match store.create_model(model("plain")).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("duplicate model: {other:?}"),
    }
    let mut bad = model("bad");
    bad.admission_weight = 0.0;
    match store.create_model(bad).await {
        Err(StoreError::Invalid { field: "admission_weight", .. }) => {}
        other => panic!("bad weight: {other:?}"),
    }
    // Upstream URLs: http(s) with a host; no credentials, query or fragment (which would
    // swallow the appended path); stored normalised.
    for base in ["ftp://x", "http://user:pass@host/", "http://host/v1?", "http://host/v1#", "not a url"] {
        let mut bad = model("bad");
        bad.api_base = Some(base.into());
        match store.create_model(bad).await {
            Err(StoreError::Invalid { field: "api_base", .. }) => {}
            other => panic!("bad base {base}: {other:?}"),
        }
        let patch = ModelPatch { api_base: Some(Some(base.into())), ..Default::default() };
        match store.update_model("plain", patch).await {
            Err(StoreError::Invalid { field: "api_base", .. }) => {}
            other => panic!("bad base {base} in a patch: {other:?}"),
        }
    }
    let mut odd = model("normalised");
    odd.api_base = Some("HTTP://Upstream.Example:8000/v1/".into());
    let m2 = store.create_model(odd).await.expect("create");
    assert_eq!(m2.api_base.as_deref(), Some("http://upstream.example:8000/v1"));
    let patch = ModelPatch { api_base: Some(Some("http://2852039166/".into())), ..Default::default() };
    let m2 = store.update_model("normalised", patch).await.expect("patch");
    assert_eq!(m2.api_base.as_deref(), Some("http://169.254.169.254"), "numeric hosts canonicalised");
    assert_eq!(store.get_model("normalised").await.expect("get").api_base, m2.api_base);
    store.delete_model("normalised").await.expect("delete");

    // Absent fields stay; explicit null clears.
    let patched = store
        .update_model(
            "llama-3-70b",
            ModelPatch { enabled: Some(false), api_key: Some(None), max_in_flight: Some(None), ..Default::default() },
        )
        .await
        .expect("patch");
    assert!(!patched.enabled);
    assert!(patched.api_key.is_none());
    assert_eq!(patched.max_in_flight, None);
    assert_eq!(patched.api_base.as_deref(), Some("http://aibrix-gateway:8080"));
    let names: Vec<_> = store.list_models().await.expect("list").into_iter().map(|m| m.model_name).collect();
    assert_eq!(names, ["llama-3-70b", "plain"]);

    store.delete_model("plain").await.expect("delete");
    match store.get_model("plain").await {
        Err(StoreError::NotFound { kind: "model", .. }) => {}
        other => panic!("deleted model: {other:?}"),
    }
}

/// Every field comes back exactly as written, at the edges of its range.
async fn round_trips(store: &dyn ControlPlaneStore) {
    let mut new = tenant("full");
    new.weight = crate::rules::MAX_WEIGHT;
    new.group = "batch".into();
    // Order is kept, not sorted.
    new.allowed_models = vec!["zeta".into(), "alpha/7b:q4".into()];
    new.disabled = true;
    new.never_degrade = true;
    new.quota = Quota {
        tpm: Some(i64::MAX as u64),
        rpm: Some(1),
        max_in_flight: Some(u32::MAX),
        monthly_budget: Some(0.1 + 0.2),
        lifetime_budget: Some(1e12),
        fail_closed: true,
        tool_calls_per_minute: Some(crate::rules::MAX_TOOL_CALLS_PER_MINUTE),
        tool_calls_in_flight: Some(crate::rules::MAX_TOOL_CALLS_IN_FLIGHT),
    };
    // One past the largest storable rate is refused, not stored negative; MCP tool-call
    // limits are refused at zero and past their maxima.
    let tool_rate = |v| Quota { tool_calls_per_minute: Some(v), ..Quota::default() };
    let tool_slots = |v| Quota { tool_calls_in_flight: Some(v), ..Quota::default() };
    for (field, quota) in [
        ("quota.tpm", Quota { tpm: Some(i64::MAX as u64 + 1), ..Quota::default() }),
        ("quota.rpm", Quota { rpm: Some(u64::MAX), ..Quota::default() }),
        ("quota.tool_calls_per_minute", tool_rate(0)),
        ("quota.tool_calls_per_minute", tool_rate(crate::rules::MAX_TOOL_CALLS_PER_MINUTE + 1)),
        ("quota.tool_calls_in_flight", tool_slots(0)),
        ("quota.tool_calls_in_flight", tool_slots(crate::rules::MAX_TOOL_CALLS_IN_FLIGHT + 1)),
    ] {
        let mut too_big = tenant("too-big");
        too_big.quota = quota;
        match store.create_tenant(too_big).await {
            Err(StoreError::Invalid { field: f, .. }) if f == field => {}
            other => panic!("{field}: {other:?}"),
        }
    }
    let t = store.create_tenant(new).await.expect("create full tenant");
    assert_eq!(store.get_tenant(&t.id).await.expect("get"), t);
    assert!(store.list_tenants().await.expect("list").contains(&t));
    // A patch that clears a list and every limit.
    let cleared = store
        .update_tenant(
            &t.id,
            TenantPatch { allowed_models: Some(vec![]), quota: Some(Quota::default()), ..Default::default() },
        )
        .await
        .expect("clear");
    assert_eq!(store.get_tenant("full").await.expect("get"), cleared);
    assert!(cleared.allowed_models.is_empty() && cleared.quota == Quota::default());

    let mut new = model("edge/model:v1");
    new.api_key = Some(SecretString::from("sk-ünïcode ✓"));
    new.input_cost_per_token = 1e-9;
    new.output_cost_per_token = 0.1 + 0.2;
    new.context_window = Some(u32::MAX);
    new.enabled = false;
    new.admission_weight = 1000.0;
    new.max_in_flight = Some(u32::MAX);
    let m = store.create_model(new).await.expect("create edge model");
    let got = store.get_model(&m.model_name).await.expect("get");
    assert_eq!(
        (got.api_key.as_ref().map(|k| k.expose_secret().to_owned()), got.input_cost_per_token),
        (Some("sk-ünïcode ✓".to_owned()), 1e-9)
    );
    assert_eq!((got.output_cost_per_token, got.context_window, got.enabled), (0.1 + 0.2, Some(u32::MAX), false));
    assert_eq!((got.admission_weight, got.max_in_flight), (1000.0, Some(u32::MAX)));
    assert_eq!((got.created_at, got.updated_at, got.api_base), (m.created_at, m.updated_at, None));
    let deleted = store.delete_model(&m.model_name).await.expect("delete");
    assert_eq!(deleted.max_in_flight, Some(u32::MAX), "delete returns the model");

    let generated = key::generate();
    let record = ApiKey {
        id: obleth_core::new_id("key_"),
        tenant_id: t.id.clone(),
        name: None,
        prefix: generated.prefix.clone(),
        created_at: now_millis(),
        expires_at: Some(now_millis() + 86_400_000),
        revoked_at: None,
    };
    store.insert_key(&record, generated.hash).await.expect("insert");
    assert_eq!(store.lookup_key(&generated.hash).await.expect("lookup"), Some(record.clone()));
    // Inserting the same hash twice is a conflict.
    let dup = ApiKey { id: obleth_core::new_id("key_"), ..record.clone() };
    match store.insert_key(&dup, generated.hash).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("duplicate hash: {other:?}"),
    }
    // The prefix filter is a literal prefix match: part of a prefix finds the key, and
    // LIKE wildcards match nothing.
    let part = KeyFilter { prefix: Some(generated.prefix[..6].to_owned()), ..Default::default() };
    assert!(store.list_keys(part).await.expect("by part").contains(&record));
    for wildcard in ["%", "_", "obl%"] {
        let f = KeyFilter { prefix: Some(wildcard.to_owned()), include_revoked: true, ..Default::default() };
        assert_eq!(store.list_keys(f).await.expect("wildcard"), vec![], "prefix {wildcard:?}");
    }
    let (revoked, _) = store.revoke_key(&record.id).await.expect("revoke");
    assert_eq!(ApiKey { revoked_at: None, ..revoked }, record, "revocation changes only revoked_at");
    // Deleting by id works as by name, and reports revoked keys' hashes too.
    let (_, hashes) = store.delete_tenant(&t.id).await.expect("delete by id");
    assert_eq!(hashes, vec![generated.hash]);
}

/// Lookups are exact, renames move the name, and lists sort bytewise (as SQLite's
/// BINARY collation does), whatever the database's locale.
async fn names_and_order(store: &dyn ControlPlaneStore) {
    let t = store.create_tenant(tenant("before")).await.expect("create");
    let renamed = store.update_tenant("before", TenantPatch { name: Some("after".into()), ..Default::default() }).await;
    assert_eq!(renamed.expect("rename").id, t.id);
    assert_eq!(store.get_tenant("after").await.expect("new name").id, t.id);
    match store.get_tenant("before").await {
        Err(StoreError::NotFound { kind: "tenant", .. }) => {}
        other => panic!("old name: {other:?}"),
    }
    let (deleted, hashes) = store.delete_tenant("after").await.expect("delete");
    assert_eq!((deleted.id, hashes), (t.id, vec![]));

    for (result, kind) in [
        (store.delete_tenant("nobody").await.map(|_| ()), "tenant"),
        (store.delete_model("nothing").await.map(|_| ()), "model"),
        (store.update_model("nothing", ModelPatch::default()).await.map(|_| ()), "model"),
        (store.delete_group("nogroup").await.map(|_| ()), "group"),
    ] {
        match result {
            Err(StoreError::NotFound { kind: k, .. }) if k == kind => {}
            other => panic!("missing {kind}: {other:?}"),
        }
    }

    // '-' < '.' < digits < '_' < letters bytewise; a linguistic collation disagrees.
    let sorted = ["o-1", "o-b", "o.1", "o1", "o_1", "oa", "ob"];
    for name in ["ob", "o_1", "o.1", "oa", "o-b", "o1", "o-1"] {
        store.create_tenant(tenant(name)).await.expect("create");
        store.put_group(name, weight(1)).await.expect("group");
    }
    let names: Vec<_> =
        store.list_tenants().await.expect("list").into_iter().map(|t| t.name).filter(|n| n.starts_with('o')).collect();
    assert_eq!(names, sorted, "tenants sort bytewise");
    let names: Vec<_> =
        store.list_groups().await.expect("list").into_iter().map(|g| g.name).filter(|n| n.starts_with('o')).collect();
    assert_eq!(names, sorted, "groups sort bytewise");
    // Model names are case-sensitive; upper case sorts first.
    for name in ["Ob", "ob", "OA", "o-a", "oA"] {
        store.create_model(model(name)).await.expect("model");
    }
    let names: Vec<_> = store
        .list_models()
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.model_name)
        .filter(|n| n.starts_with(['o', 'O']))
        .collect();
    assert_eq!(names, ["OA", "Ob", "o-a", "oA", "ob"], "models sort bytewise");
    match store.get_model("OB").await {
        Err(StoreError::NotFound { kind: "model", .. }) => {}
        other => panic!("case-insensitive model lookup: {other:?}"),
    }
}

fn page(limit: u32, cursor: Option<String>) -> PageRequest {
    PageRequest { limit, cursor }
}

fn new_key(tenant_id: &str, name: Option<&str>, created_at: i64, expires_at: Option<i64>) -> (ApiKey, key::KeyHash) {
    let generated = key::generate();
    let record = ApiKey {
        id: obleth_core::new_id("key_"),
        tenant_id: tenant_id.to_owned(),
        name: name.map(str::to_owned),
        prefix: generated.prefix,
        created_at,
        expires_at,
        revoked_at: None,
    };
    (record, generated.hash)
}

fn assert_invalid<T: std::fmt::Debug>(result: crate::Result<T>, field: &str, what: &str) {
    match result {
        Err(StoreError::Invalid { field: f, .. }) if f == field => {}
        other => panic!("{what}: expected invalid {field}, got {other:?}"),
    }
}

/// Keyset pagination: pages concatenate to the full listing in its order, filters
/// apply, the last page says so, and a page boundary survives concurrent changes.
async fn paging(store: &dyn ControlPlaneStore) {
    // Tenants: 25 in a group of their own, every third disabled.
    let names: Vec<String> = (0..25).map(|i| format!("pg-{i:02}")).collect();
    for (i, name) in names.iter().enumerate() {
        let mut t = tenant(name);
        t.group = "paging".into();
        t.disabled = i % 3 == 0;
        store.create_tenant(t).await.expect("create");
    }
    let by_group = TenantFilter { group: Some("paging".into()), disabled: None, search: None };
    let (mut got, mut cursor, mut pages) = (vec![], None, 0);
    loop {
        let p = store.list_tenants_page(by_group.clone(), page(5, cursor)).await.expect("page");
        assert!(p.items.len() <= 5);
        got.extend(p.items.into_iter().map(|t| t.name));
        pages += 1;
        cursor = p.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(got, names, "pages concatenate in name order");
    assert_eq!(pages, 5, "an exact last page has no next cursor");
    let disabled = store
        .list_tenants_page(TenantFilter { disabled: Some(true), ..by_group.clone() }, page(1000, None))
        .await
        .expect("disabled");
    let want: Vec<_> = names.iter().step_by(3).cloned().collect();
    assert_eq!(disabled.items.into_iter().map(|t| t.name).collect::<Vec<_>>(), want);
    assert_eq!(disabled.next_cursor, None);
    // A search matches a substring of the name, case-insensitively, and pages as well;
    // `_` and `%` are plain characters, not patterns.
    let search = |text: &str| TenantFilter { search: Some(text.into()), ..by_group.clone() };
    let ones = store.list_tenants_page(search("-1"), page(4, None)).await.expect("search");
    assert_eq!(ones.items.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["pg-10", "pg-11", "pg-12", "pg-13"]);
    let rest = store.list_tenants_page(search("-1"), page(100, ones.next_cursor)).await.expect("next");
    assert_eq!(rest.items.len(), 6, "pg-14 … pg-19");
    assert_eq!(store.list_tenants_page(search("PG-2"), page(100, None)).await.expect("upper").items.len(), 5);
    for pattern in ["%", "_", "pg_"] {
        let none = store.list_tenants_page(search(pattern), page(100, None)).await.expect("pattern");
        assert!(none.items.is_empty(), "{pattern} is not a pattern");
    }
    // Unfiltered pages equal the full listing.
    let (mut all, mut cursor) = (vec![], None);
    loop {
        let p = store.list_tenants_page(TenantFilter::default(), page(7, cursor)).await.expect("page");
        all.extend(p.items);
        cursor = p.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(all, store.list_tenants().await.expect("list"));
    // A boundary is a key, not an offset: changes before it shift nothing.
    let first = store.list_tenants_page(by_group.clone(), page(10, None)).await.expect("first");
    store.delete_tenant("pg-03").await.expect("delete");
    let mut t = tenant("pg-05a");
    t.group = "paging".into();
    store.create_tenant(t).await.expect("insert before the cursor");
    let second = store.list_tenants_page(by_group.clone(), page(10, first.next_cursor.clone())).await.expect("second");
    assert_eq!(second.items.first().map(|t| t.name.as_str()), Some("pg-10"));
    // Bad pages name the field.
    assert_invalid(store.list_tenants_page(by_group.clone(), page(0, None)).await, "limit", "limit 0");
    assert_invalid(store.list_tenants_page(by_group.clone(), page(1001, None)).await, "limit", "limit 1001");
    for bad in ["zz", "abc", "", "7a"] {
        assert_invalid(store.list_tenants_page(by_group.clone(), page(5, Some(bad.into()))).await, "cursor", bad);
    }

    // Models: pages equal the full listing; the enabled filter applies.
    for i in 0..12 {
        let mut m = model(&format!("pgm-{i:02}"));
        m.enabled = i % 4 != 0;
        store.create_model(m).await.expect("model");
    }
    let (mut all, mut cursor) = (vec![], None);
    loop {
        let p = store.list_models_page(ModelFilter::default(), page(5, cursor)).await.expect("page");
        all.extend(p.items.into_iter().map(|m| m.model_name));
        cursor = p.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let full: Vec<_> = store.list_models().await.expect("list").into_iter().map(|m| m.model_name).collect();
    assert_eq!(all, full);
    let off = store
        .list_models_page(ModelFilter { enabled: Some(false), ..Default::default() }, page(1000, None))
        .await
        .expect("off");
    let off: Vec<_> = off.items.into_iter().map(|m| m.model_name).filter(|n| n.starts_with("pgm-")).collect();
    assert_eq!(off, ["pgm-00", "pgm-04", "pgm-08"]);
    // A cursor of another listing is refused.
    let tenant_cursor = first.next_cursor.expect("more tenants");
    assert_invalid(
        store.list_models_page(ModelFilter::default(), page(5, Some(tenant_cursor.clone()))).await,
        "cursor",
        "a tenant cursor on models",
    );
    assert_invalid(
        store.list_keys_page(KeyFilter::default(), page(5, Some(tenant_cursor))).await,
        "cursor",
        "a tenant cursor on keys",
    );

    // Keys: ordered by (created_at, id), ties included; filters as in list_keys.
    let t = store.create_tenant(tenant("pg-keys")).await.expect("tenant");
    let base = now_millis();
    let mut ids = vec![];
    for i in 0..12 {
        let (record, hash) = new_key(&t.id, None, base + i / 3, None);
        store.insert_key(&record, hash).await.expect("insert");
        ids.push((record.created_at, record.id));
    }
    ids.sort();
    store.revoke_key(&ids[4].1).await.expect("revoke");
    let filter = KeyFilter { tenant_id: Some(t.id.clone()), prefix: None, include_revoked: true };
    let (mut got, mut cursor) = (vec![], None);
    loop {
        let p = store.list_keys_page(filter.clone(), page(5, cursor)).await.expect("page");
        got.extend(p.items.into_iter().map(|k| (k.created_at, k.id)));
        cursor = p.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(got, ids);
    let active = store
        .list_keys_page(KeyFilter { include_revoked: false, ..filter.clone() }, page(1000, None))
        .await
        .expect("active");
    assert_eq!(active.items.len(), 11);
    assert_eq!(active.items, store.list_keys(KeyFilter { include_revoked: false, ..filter }).await.expect("list"));
    store.delete_tenant("pg-keys").await.expect("cleanup");
}

/// Rotation: a new key for the same tenant and a bounded expiry on the old one, in one
/// transaction.
async fn rotation(store: &dyn ControlPlaneStore) {
    let t = store.create_tenant(tenant("rotator")).await.expect("tenant");
    let now = now_millis();
    let (old, old_hash) = new_key(&t.id, Some("ci"), now, None);
    store.insert_key(&old, old_hash).await.expect("insert");
    let rotation_of = |overlap_ms: i64| {
        let g = key::generate();
        (
            KeyRotation {
                new_id: obleth_core::new_id("key_"),
                new_prefix: g.prefix.clone(),
                new_hash: g.hash,
                new_name: None,
                new_expires_at: None,
                now,
                overlap_ms,
            },
            g.hash,
        )
    };

    let (r, new_hash) = rotation_of(3_600_000);
    let rotated = store.rotate_key(&old.id, r.clone()).await.expect("rotate");
    assert_eq!((rotated.old_hash, rotated.previous_expires_at), (old_hash, None));
    assert_eq!(rotated.old, ApiKey { expires_at: Some(now + 3_600_000), ..old.clone() });
    assert_eq!(rotated.new.tenant_id, t.id);
    assert_eq!((rotated.new.id.as_str(), rotated.new.prefix.as_str()), (r.new_id.as_str(), r.new_prefix.as_str()));
    assert_eq!(rotated.new.name.as_deref(), Some("ci (rotated)"));
    assert_eq!((rotated.new.created_at, rotated.new.expires_at, rotated.new.revoked_at), (now, None, None));
    assert_eq!(store.lookup_key(&new_hash).await.expect("lookup"), Some(rotated.new.clone()));
    assert_eq!(store.lookup_key(&old_hash).await.expect("lookup"), Some(rotated.old.clone()));
    assert!(rotated.old.is_active(now + 3_599_999) && !rotated.old.is_active(now + 3_600_000));

    // Rotating again never extends the expiry, and the name does not grow.
    let (r, _) = rotation_of(7_200_000);
    let again = store.rotate_key(&old.id, r).await.expect("rotate again");
    assert_eq!(again.old.expires_at, Some(now + 3_600_000), "never extended");
    assert_eq!(again.previous_expires_at, Some(now + 3_600_000));
    let (r, _) = rotation_of(0);
    let of_new = store.rotate_key(&rotated.new.id, r).await.expect("rotate the new key");
    assert_eq!(of_new.new.name.as_deref(), Some("ci (rotated)"));
    assert_eq!(of_new.old.expires_at, Some(now), "overlap 0 expires at once");
    assert!(!of_new.old.is_active(now));
    // An explicit name and expiry for the new key.
    let (mut r, _) = rotation_of(1000);
    r.new_name = Some("renamed".into());
    r.new_expires_at = Some(now + 99_000);
    let named = store.rotate_key(&of_new.new.id, r).await.expect("named");
    assert_eq!((named.new.name.as_deref(), named.new.expires_at), (Some("renamed"), Some(now + 99_000)));
    // An unnamed key gets a name that says where it came from.
    let (bare, bare_hash) = new_key(&t.id, None, now, None);
    store.insert_key(&bare, bare_hash).await.expect("insert");
    let (r, _) = rotation_of(1000);
    assert_eq!(store.rotate_key(&bare.id, r).await.expect("bare").new.name.as_deref(), Some("(rotated)"));

    let keys_now = || {
        let filter = KeyFilter { tenant_id: Some(t.id.clone()), prefix: None, include_revoked: true };
        async move { store.list_keys(filter).await.expect("list") }
    };
    // The new key's insert failing (a duplicate hash) undoes the old key's new expiry.
    let (fresh, fresh_hash) = new_key(&t.id, None, now, None);
    store.insert_key(&fresh, fresh_hash).await.expect("insert");
    let before = keys_now().await;
    let (mut r, _) = rotation_of(1000);
    r.new_hash = old_hash;
    match store.rotate_key(&fresh.id, r).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("duplicate new hash: {other:?}"),
    }
    assert_eq!(keys_now().await, before, "a failed rotation changes nothing");
    // Revoked and missing keys.
    store.revoke_key(&fresh.id).await.expect("revoke");
    let before = keys_now().await;
    match store.rotate_key(&fresh.id, rotation_of(1000).0).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("rotate revoked: {other:?}"),
    }
    match store.rotate_key("key_missing", rotation_of(1000).0).await {
        Err(StoreError::NotFound { kind: "key", .. }) => {}
        other => panic!("rotate missing: {other:?}"),
    }
    assert_invalid(store.rotate_key(&bare.id, rotation_of(-1).0).await, "overlap_secs", "negative overlap");
    assert_eq!(keys_now().await, before, "refused rotations change nothing");
    store.delete_tenant("rotator").await.expect("cleanup");
}

/// The audit trail: entries come back as written, newest first, filtered and paged.
async fn audit(store: &dyn ControlPlaneStore) {
    let entry = |at: i64, actor: &str, action: &str, kind: &str, id: &str| NewAuditEntry {
        at,
        actor: actor.into(),
        action: action.into(),
        resource_kind: kind.into(),
        resource_id: id.into(),
        before: None,
        after: None,
    };
    let t0 = 1_700_000_000_000;
    let mut first = entry(t0, "alice", "tenant.create", "tenant", "ten_a");
    first.after = Some(serde_json::json!({"name": "a", "quota": {"tpm": 5}, "list": [1, "x", null], "ü": "✓"}));
    let first = store.append_audit(first).await.expect("append");
    assert_eq!(first.after.as_ref().expect("after")["quota"]["tpm"], 5);
    let mut written = vec![first.clone()];
    for i in 1..10_i64 {
        let (actor, kind, id) = if i % 2 == 0 { ("alice", "tenant", "ten_a") } else { ("bob@ops", "model", "m:1") };
        let mut e = entry(t0 + i * 1000, actor, &format!("{kind}.update"), kind, id);
        e.before = Some(serde_json::json!({"i": i - 1}));
        e.after = Some(serde_json::json!({"i": i}));
        let got = store.append_audit(e.clone()).await.expect("append");
        assert!(got.id > written.last().expect("last").id, "ids grow");
        assert_eq!((got.before, got.after), (e.before, e.after));
        written.push(store.list_audit(AuditFilter::default()).await.expect("list").items[0].clone());
    }
    assert_eq!(written[0], first, "reads back as written");
    let newest_first: Vec<_> = written.iter().rev().cloned().collect();

    let all = |filter: AuditFilter| async move {
        let (mut got, mut cursor) = (vec![], None);
        loop {
            let f = AuditFilter { page: page(3, cursor), ..filter.clone() };
            let p = store.list_audit(f).await.expect("page");
            assert!(p.items.len() <= 3);
            got.extend(p.items);
            cursor = p.next_cursor;
            if cursor.is_none() {
                return got;
            }
        }
    };
    assert_eq!(all(AuditFilter::default()).await, newest_first, "newest first, paged");
    let alice = all(AuditFilter { actor: Some("alice".into()), ..Default::default() }).await;
    assert_eq!(alice, newest_first.iter().filter(|e| e.actor == "alice").cloned().collect::<Vec<_>>());
    let model =
        all(AuditFilter { resource_kind: Some("model".into()), resource_id: Some("m:1".into()), ..Default::default() })
            .await;
    assert_eq!(model.len(), 5);
    assert!(model.iter().all(|e| e.action == "model.update"));
    let window = all(AuditFilter { from: Some(t0 + 2000), to: Some(t0 + 5000), ..Default::default() }).await;
    assert_eq!(window.iter().map(|e| e.at - t0).collect::<Vec<_>>(), [4000, 3000, 2000], "from inclusive, to not");
    let none = store
        .list_audit(AuditFilter { resource_kind: Some("group".into()), ..Default::default() })
        .await
        .expect("none");
    assert!(none.items.is_empty() && none.next_cursor.is_none());

    assert_invalid(store.append_audit(entry(t0, "", "x.y", "tenant", "t")).await, "actor", "empty actor");
    assert_invalid(store.append_audit(entry(t0, "a b", "x.y", "tenant", "t")).await, "actor", "space in actor");
    assert_invalid(store.append_audit(entry(t0, "a", "", "tenant", "t")).await, "action", "empty action");
    let bad = AuditFilter { page: page(3, Some("00".into())), ..Default::default() };
    assert_invalid(store.list_audit(bad).await, "cursor", "bad audit cursor");
    let bad = AuditFilter { page: page(0, None), ..Default::default() };
    assert_invalid(store.list_audit(bad).await, "limit", "audit limit 0");
}

// === concurrent admin clients ===

/// How many admin clients write at once in [`concurrent_clients`].
const CLIENTS: usize = 16;
/// Rounds each client plays.
const ROUNDS: usize = 6;
/// Contested tenants per round; `CLIENTS / CONTESTED` clients share each.
const CONTESTED: usize = 4;

/// What the clients saw, shared between them (a plain mutex, never held across an await).
#[derive(Default)]
struct Seen {
    /// Operations by name: (answered, expected client errors).
    ops: std::collections::BTreeMap<&'static str, (u32, u32)>,
    /// Answers that break the contract: a server error, or a client error where none can be.
    bad: Vec<String>,
    /// Tenant id → the hashes of the keys stored for it (inserted, or made by a rotation).
    issued: std::collections::HashMap<String, Vec<key::KeyHash>>,
    /// Tenant id → the hashes each successful delete reported.
    deleted: std::collections::HashMap<String, Vec<Vec<key::KeyHash>>>,
}

impl Seen {
    /// Records one answer. `contested`: other clients act on the same tenant, so
    /// NotFound, Conflict and Invalid are answers it may get; on a tenant of its own a
    /// client expects success.
    fn note<T>(&mut self, op: &'static str, contested: bool, result: &crate::Result<T>) -> bool {
        let entry = self.ops.entry(op).or_default();
        entry.0 += 1;
        match result {
            Ok(_) => return true,
            Err(StoreError::NotFound { .. } | StoreError::Conflict(_) | StoreError::Invalid { .. }) if contested => {
                entry.1 += 1
            }
            Err(e) => self.bad.push(format!("{op}: {e:?}")),
        }
        false
    }
}

/// Sixteen admin clients at once, as the admin API runs them: each creates, patches,
/// keys, rotates, revokes and deletes tenants of its own, and four of them at a time act
/// on one contested tenant (two deletes racing a patch, a rotation, a key insert and a
/// revocation). Every answer is a success or an expected client error (never a server
/// error, never unavailable), and what is left is consistent: a deleted tenant is gone
/// with all its keys, and its delete reported every key that was ever stored for it.
async fn concurrent_clients(store: &dyn ControlPlaneStore) {
    let seen = std::sync::Mutex::new(Seen::default());
    let seen = &seen;

    // The contested tenants, each with one key, made before the clients start.
    let mut contested = vec![];
    for r in 0..ROUNDS {
        let mut row = vec![];
        for k in 0..CONTESTED {
            let t = store.create_tenant(tenant(&format!("cx-{r}-{k}"))).await.expect("contested tenant");
            let (k, hash) = new_key(&t.id, Some("seed"), now_millis(), None);
            store.insert_key(&k, hash).await.expect("seed key");
            lock(seen).issued.entry(t.id.clone()).or_default().push(hash);
            row.push((t.id, k.id));
        }
        contested.push(row);
    }
    let contested = &contested;

    let client = |c: usize| async move {
        let mut own = vec![];
        for (r, row) in contested.iter().enumerate() {
            // A tenant of its own, every operation expected to succeed.
            let created = store.create_tenant(tenant(&format!("cc-{c}-{r}"))).await;
            if !lock(seen).note("create_tenant", false, &created) {
                continue;
            }
            let Ok(t) = created else { continue };
            let mut keys = vec![];
            for _ in 0..2 {
                let (k, hash) = new_key(&t.id, None, now_millis(), None);
                let inserted = store.insert_key(&k, hash).await;
                if lock(seen).note("insert_key", false, &inserted) {
                    lock(seen).issued.entry(t.id.clone()).or_default().push(hash);
                    keys.push(k.id);
                }
            }
            let patched = store.update_tenant(&t.id, TenantPatch { weight: Some(2), ..Default::default() }).await;
            lock(seen).note("update_tenant", false, &patched);
            if let Some(first) = keys.first() {
                let (rotation, hash) = concurrent_rotation();
                let rotated = store.rotate_key(first, rotation).await;
                if lock(seen).note("rotate_key", false, &rotated) {
                    lock(seen).issued.entry(t.id.clone()).or_default().push(hash);
                }
            }
            if let Some(second) = keys.get(1) {
                let revoked = store.revoke_key(second).await;
                lock(seen).note("revoke_key", false, &revoked);
            }
            if r % 2 == 0 {
                let deleted = store.delete_tenant(&t.id).await;
                lock(seen).note("delete_tenant", false, &deleted);
                if let Ok((_, hashes)) = deleted {
                    lock(seen).deleted.entry(t.id.clone()).or_default().push(hashes.clone());
                }
            } else {
                own.push(t.id);
            }

            // This round's contested tenant, shared with three other clients.
            let (tenant_id, seed_key) = &row[c % CONTESTED];
            match c / CONTESTED {
                role @ (0 | 1) => {
                    if role == 1 {
                        let patch = TenantPatch { never_degrade: Some(true), ..Default::default() };
                        let patched = store.update_tenant(tenant_id, patch).await;
                        lock(seen).note("update_tenant", true, &patched);
                    }
                    let deleted = store.delete_tenant(tenant_id).await;
                    lock(seen).note("delete_tenant", true, &deleted);
                    if let Ok((_, hashes)) = deleted {
                        lock(seen).deleted.entry(tenant_id.clone()).or_default().push(hashes.clone());
                    }
                }
                2 => {
                    let (rotation, hash) = concurrent_rotation();
                    let rotated = store.rotate_key(seed_key, rotation).await;
                    if lock(seen).note("rotate_key", true, &rotated) {
                        lock(seen).issued.entry(tenant_id.clone()).or_default().push(hash);
                    }
                }
                _ => {
                    let (k, hash) = new_key(tenant_id, None, now_millis(), None);
                    let inserted = store.insert_key(&k, hash).await;
                    if lock(seen).note("insert_key", true, &inserted) {
                        lock(seen).issued.entry(tenant_id.clone()).or_default().push(hash);
                        let revoked = store.revoke_key(&k.id).await;
                        lock(seen).note("revoke_key", true, &revoked);
                    }
                }
            }
        }
        own
    };
    let kept: Vec<String> = futures_util::future::join_all((0..CLIENTS).map(client)).await.concat();

    let seen = std::mem::take(&mut *lock(seen));
    let answered: u32 = seen.ops.values().map(|(n, _)| n).sum();
    assert!(
        seen.bad.is_empty(),
        "{} of {answered} operations of {CLIENTS} concurrent clients broke the contract (answers by operation, \
         expected client errors: {:?}); first ones: {:#?}",
        seen.bad.len(),
        seen.ops,
        &seen.bad[..seen.bad.len().min(8)],
    );

    // Every contested tenant was deleted exactly once (two deletes raced; one found it gone).
    for (tenant_id, _) in contested.iter().flatten() {
        let deletes = seen.deleted.get(tenant_id).map_or(0, Vec::len);
        assert_eq!(deletes, 1, "contested tenant {tenant_id}: {deletes} successful deletes");
    }
    // A deleted tenant is gone with its keys, and its delete reported every key stored
    // for it: a key stored after the delete would have been refused.
    for (tenant_id, reports) in &seen.deleted {
        match store.get_tenant(tenant_id).await {
            Err(StoreError::NotFound { .. }) => {}
            other => panic!("deleted tenant {tenant_id} still answers: {other:?}"),
        }
        let filter = KeyFilter { tenant_id: Some(tenant_id.clone()), prefix: None, include_revoked: true };
        let left = store.list_keys(filter).await.expect("list keys");
        assert!(left.is_empty(), "deleted tenant {tenant_id} left keys behind: {left:?}");
        let reported: std::collections::HashSet<_> = reports.iter().flatten().copied().collect();
        for hash in seen.issued.get(tenant_id).into_iter().flatten() {
            assert_eq!(store.lookup_key(hash).await.expect("lookup"), None, "a key of deleted tenant {tenant_id}");
            assert!(reported.contains(hash), "the delete of {tenant_id} did not report a key stored for it");
        }
    }
    // A tenant nobody deleted has all its keys, and nothing else.
    for tenant_id in &kept {
        store.get_tenant(tenant_id).await.expect("kept tenant");
        let filter = KeyFilter { tenant_id: Some(tenant_id.clone()), prefix: None, include_revoked: true };
        let mut left: Vec<_> = store.list_keys(filter).await.expect("list keys").into_iter().map(|k| k.id).collect();
        left.sort();
        let issued = seen.issued.get(tenant_id).map_or(0, Vec::len);
        assert_eq!(left.len(), issued, "kept tenant {tenant_id}: keys {left:?}");
        store.delete_tenant(tenant_id).await.expect("cleanup");
    }
}

fn lock(seen: &std::sync::Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|p| p.into_inner())
}

/// A rotation of some key with the default overlap, and the new key's hash.
fn concurrent_rotation() -> (KeyRotation, key::KeyHash) {
    let g = key::generate();
    let rotation = KeyRotation {
        new_id: obleth_core::new_id("key_"),
        new_prefix: g.prefix,
        new_hash: g.hash,
        new_name: None,
        new_expires_at: None,
        now: now_millis(),
        overlap_ms: 3_600_000,
    };
    (rotation, g.hash)
}
