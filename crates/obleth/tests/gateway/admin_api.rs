//! The admin API's audit trail, paged listings and key rotation, end to end.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use obleth_core::KeyHash;
use serde_json::{Value, json};

use crate::support::*;

/// One admin call with an optional `X-Obleth-Actor`; returns the status and JSON body.
async fn admin(h: &Harness, method: &str, path: &str, body: Option<Value>, actor: Option<&str>) -> (StatusCode, Value) {
    let (status, bytes) = admin_request(h, method, path, body, actor).await;
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn ok(h: &Harness, method: &str, path: &str, body: Option<Value>) -> Value {
    let (s, v) = admin(h, method, path, body, Some("ops@example.com")).await;
    assert!(s.is_success(), "{method} {path}: {s} {v}");
    v
}

/// Every audit entry, newest first (walking all pages).
async fn audit_all(h: &Harness) -> Vec<Value> {
    let (mut all, mut cursor) = (vec![], None::<String>);
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/audit?limit=2&cursor={c}"),
            None => "/api/v1/audit?limit=2".to_owned(),
        };
        let v = ok(h, "GET", &path, None).await;
        all.extend(v["data"].as_array().unwrap().iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return all,
        }
    }
}

/// Sends a chat request with `key`; returns the status.
async fn chat_with(h: &Harness, key: &str) -> StatusCode {
    h.send(h.request("/v1/chat/completions", Some(key), chat(false, 1).to_string())).await.0
}

#[tokio::test]
async fn a_rotated_key_works_until_its_overlap_ends() {
    let h = Harness::start(fast_mock()).await;
    let keys = ok(&h, "GET", "/api/v1/keys", None).await;
    let old_id = keys["data"][0]["id"].as_str().unwrap().to_owned();
    // The old key is cached before the rotation: the rotation must reach the cache.
    assert_eq!(chat_with(&h, &h.key).await, StatusCode::OK);

    let (s, rotated) =
        admin(&h, "POST", &format!("/api/v1/keys/{old_id}/rotate"), Some(json!({"overlap_secs": 1})), None).await;
    assert_eq!(s, StatusCode::CREATED, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, h.key);
    assert_eq!(rotated["tenant_id"], keys["data"][0]["tenant_id"]);
    assert_eq!(rotated["old_key"]["id"], old_id.as_str());
    let expires = rotated["old_key"]["expires_at"].as_i64().unwrap();
    assert!(rotated["old_key"]["revoked_at"].is_null());

    // Both work during the overlap.
    assert_eq!(chat_with(&h, &h.key).await, StatusCode::OK);
    assert_eq!(chat_with(&h, &new_secret).await, StatusCode::OK);
    // After it, only the new one (the old one is still in the identity cache).
    let wait = (expires - obleth_core::now_millis()).max(0) as u64 + 50;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    assert_eq!(chat_with(&h, &h.key).await, StatusCode::UNAUTHORIZED);
    assert_eq!(chat_with(&h, &new_secret).await, StatusCode::OK);

    // The rotation is one audit entry, before/after without any secret.
    let entries: Vec<_> = audit_all(&h).await.into_iter().filter(|e| e["action"] == "key.rotate").collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["resource_id"], old_id.as_str());
    assert!(entries[0]["before"]["old_key"]["expires_at"].is_null());
    assert_eq!(entries[0]["after"]["old_key"]["expires_at"], expires);
    assert_eq!(entries[0]["after"]["new_key"]["id"], rotated["id"]);

    // Defaults and refusals.
    let (s, again) =
        admin(&h, "POST", &format!("/api/v1/keys/{}/rotate", rotated["id"].as_str().unwrap()), None, None).await;
    assert_eq!(s, StatusCode::CREATED);
    let overlap = again["old_key"]["expires_at"].as_i64().unwrap() - obleth_core::now_millis();
    assert!((3_590_000..=3_600_000).contains(&overlap), "default overlap is an hour: {overlap}");
    let (s, v) = admin(&h, "POST", "/api/v1/keys/key_nope/rotate", None, None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (s, v) =
        admin(&h, "POST", &format!("/api/v1/keys/{old_id}/rotate"), Some(json!({"overlap_secs": 99_999_999})), None)
            .await;
    assert_eq!((s, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("overlap_secs")));
    ok(&h, "POST", &format!("/api/v1/keys/{old_id}/revoke"), None).await;
    let (s, _) = admin(&h, "POST", &format!("/api/v1/keys/{old_id}/rotate"), None, None).await;
    assert_eq!(s, StatusCode::CONFLICT, "a revoked key cannot be rotated");
}

#[tokio::test]
async fn every_change_leaves_one_audit_entry_and_no_secret() {
    let h = Harness::start(fast_mock()).await;
    // The harness made three changes as the default actor.
    let seeded = audit_all(&h).await;
    let actions: Vec<_> = seeded.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["key.create", "model.create", "tenant.create"]);
    assert!(seeded.iter().all(|e| e["actor"] == "admin"));

    let mut secrets = vec![h.key.clone()];
    let upstream_keys = ["sk-upstream-first-8f3a", "sk-upstream-second-77c1"];
    let mut seen = seeded.len();
    // Each step: the call, then the action, resource kind, and checks of before/after.
    let mut step = async |method: &str, path: &str, body: Option<Value>, action: &str, kind: &str| -> (Value, Value) {
        let v = ok(&h, method, path, body).await;
        let all = audit_all(&h).await;
        assert_eq!(all.len(), seen + 1, "{method} {path} leaves exactly one entry");
        seen += 1;
        let e = all[0].clone();
        assert_eq!((e["action"].as_str(), e["resource_kind"].as_str()), (Some(action), Some(kind)), "{e}");
        assert_eq!(e["actor"], "ops@example.com");
        assert!(e["at"].as_i64().unwrap() > 0 && e["id"].is_i64());
        (v, e)
    };

    let (t, e) = step("POST", "/api/v1/tenants", Some(json!({"name": "aud"})), "tenant.create", "tenant").await;
    assert_eq!(
        (e["resource_id"].clone(), e["before"].clone(), e["after"].clone()),
        (t["id"].clone(), Value::Null, t.clone())
    );
    let (t2, e) = step("PATCH", "/api/v1/tenants/aud", Some(json!({"weight": 9})), "tenant.update", "tenant").await;
    assert_eq!((e["before"]["weight"].as_u64(), e["after"]["weight"].as_u64()), (Some(1), Some(9)));
    assert_eq!(e["after"], t2);
    let (k, e) = step("POST", "/api/v1/tenants/aud/keys", Some(json!({"name": "ci"})), "key.create", "key").await;
    secrets.push(k["secret"].as_str().unwrap().to_owned());
    assert_eq!((e["resource_id"].clone(), e["before"].clone()), (k["id"].clone(), Value::Null));
    assert_eq!(e["after"]["prefix"], k["prefix"]);
    let kid = k["id"].as_str().unwrap().to_owned();
    let (r, e) =
        step("POST", &format!("/api/v1/keys/{kid}/rotate"), Some(json!({"overlap_secs": 60})), "key.rotate", "key")
            .await;
    secrets.push(r["secret"].as_str().unwrap().to_owned());
    assert_eq!(e["after"]["new_key"]["id"], r["id"]);
    let (_, e) = step("POST", &format!("/api/v1/keys/{kid}/revoke"), None, "key.revoke", "key").await;
    assert!(e["before"]["revoked_at"].is_null() && e["after"]["revoked_at"].is_i64(), "{e}");
    let rid = r["id"].as_str().unwrap().to_owned();
    let (_, e) = step("DELETE", &format!("/api/v1/keys/{rid}"), None, "key.revoke", "key").await;
    assert_eq!(e["resource_id"], rid.as_str());

    let model = json!({"model_name": "aud/m:1", "api_key": upstream_keys[0], "api_base": "http://10.0.0.8:8000"});
    let (_, e) = step("POST", "/api/v1/models", Some(model), "model.create", "model").await;
    assert_eq!((e["resource_id"].as_str(), e["after"]["api_key"].as_str()), (Some("aud/m:1"), Some("[redacted]")));
    let patch = json!({"api_key": upstream_keys[1], "enabled": false});
    let (_, e) = step("PATCH", "/api/v1/models/aud/m:1", Some(patch), "model.update", "model").await;
    assert_eq!((e["before"]["enabled"].as_bool(), e["after"]["enabled"].as_bool()), (Some(true), Some(false)));
    assert_eq!(e["before"]["api_key"], "[redacted]");
    assert_eq!(e["after"]["api_key"], "[redacted: replaced]");
    let (_, e) = step("DELETE", "/api/v1/models/aud/m:1", None, "model.delete", "model").await;
    assert!(e["after"].is_null() && e["before"]["model_name"] == "aud/m:1");

    let (_, e) = step("PUT", "/api/v1/groups/batch", Some(json!({"weight": 5})), "group.put", "group").await;
    assert!(e["before"].is_null() && e["after"]["weight"] == 5);
    let (_, e) = step("PUT", "/api/v1/groups/batch", Some(json!({"weight": 7})), "group.put", "group").await;
    assert_eq!((e["before"]["weight"].as_u64(), e["after"]["weight"].as_u64()), (Some(5), Some(7)));
    let limits = json!({"weight": 7, "reserved_slots": 2, "max_slots": 4});
    let (g, e) = step("PUT", "/api/v1/groups/batch", Some(limits), "group.put", "group").await;
    assert_eq!((g["reserved_slots"].as_u64(), g["max_slots"].as_u64()), (Some(2), Some(4)));
    assert!(e["before"]["reserved_slots"].is_null() && e["before"]["max_slots"].is_null(), "{e}");
    assert_eq!((e["after"]["reserved_slots"].as_u64(), e["after"]["max_slots"].as_u64()), (Some(2), Some(4)));
    let g = ok(&h, "GET", "/api/v1/groups", None).await;
    assert_eq!(g["data"][0]["max_slots"], 4, "{g}");
    // Refused limits say which field is wrong, and change (and record) nothing.
    for (body, param) in [
        (json!({"weight": 7, "max_slots": 0}), "max_slots"),
        (json!({"weight": 7, "reserved_slots": 0}), "reserved_slots"),
        (json!({"weight": 7, "reserved_slots": 5, "max_slots": 4}), "reserved_slots"),
    ] {
        let (s, v) = admin(&h, "PUT", "/api/v1/groups/batch", Some(body), None).await;
        assert_eq!((s, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some(param)), "{v}");
        assert_eq!(v["error"]["code"], "invalid_value");
    }
    let (_, e) = step("DELETE", "/api/v1/groups/batch", None, "group.delete", "group").await;
    assert!(e["after"].is_null() && e["before"]["weight"] == 7 && e["before"]["max_slots"] == 4);
    let (_, e) = step("DELETE", "/api/v1/tenants/aud", None, "tenant.delete", "tenant").await;
    assert_eq!((e["resource_id"].clone(), e["before"]["weight"].as_u64()), (t["id"].clone(), Some(9)));

    // A failed change records nothing; reads record nothing.
    let (s, _) = admin(&h, "POST", "/api/v1/tenants", Some(json!({"name": "Bad Name"})), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    ok(&h, "GET", "/api/v1/tenants", None).await;
    // An invalid actor is refused before anything changes.
    for bad in ["has space", "x".repeat(129).as_str(), "tab\there"] {
        let (s, v) = admin(&h, "POST", "/api/v1/tenants", Some(json!({"name": "by-bad-actor"})), Some(bad)).await;
        assert_eq!((s, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("X-Obleth-Actor")), "{bad:?}");
    }
    let (s, _) = admin(&h, "GET", "/api/v1/tenants/by-bad-actor", None, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let all = audit_all(&h).await;
    assert_eq!(all.len(), seen);

    // No secret anywhere in the trail: key secrets, their hashes, upstream credentials.
    let text = serde_json::to_string(&all).unwrap();
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "a key secret leaked into the audit trail");
        assert!(!text.contains(&KeyHash::of(secret).to_hex()), "a key hash leaked into the audit trail");
        assert!(!text.contains(&secret[4..]), "part of a key secret leaked");
    }
    for k in upstream_keys {
        assert!(!text.contains(k), "an upstream api_key leaked into the audit trail");
    }

    // Filters.
    let by = |q: &str| {
        let h = &h;
        let q = q.to_owned();
        async move { ok(h, "GET", &format!("/api/v1/audit?{q}"), None).await["data"].as_array().unwrap().clone() }
    };
    let tenant_entries = by(&format!("resource=tenant:{}", t["id"].as_str().unwrap())).await;
    let actions: Vec<_> = tenant_entries.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["tenant.delete", "tenant.update", "tenant.create"]);
    assert_eq!(by("resource=model:aud/m:1").await.len(), 3);
    assert_eq!(by("resource=group").await.len(), 4);
    assert_eq!(by("actor=admin").await.len(), 3);
    assert_eq!(by("actor=ops@example.com&resource=key").await.len(), 4);
    let first_at = all.last().unwrap()["at"].as_i64().unwrap();
    assert_eq!(by(&format!("to={first_at}")).await.len(), 0, "to is exclusive");
    assert_eq!(by(&format!("from={}", obleth_core::now_millis() + 60_000)).await.len(), 0);
    assert_eq!(by("from=1h").await.len(), all.len());
    for (q, param) in [
        ("resource=widget", "resource"),
        ("limit=0", "limit"),
        ("cursor=zz", "cursor"),
        ("from=soon", "from"),
        ("nope=1", "nope"),
    ] {
        let (s, v) = admin(&h, "GET", &format!("/api/v1/audit?{q}"), None, None).await;
        assert_eq!((s, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some(param)), "{q}: {v}");
    }
}

#[tokio::test]
async fn listings_are_paged_and_filtered() {
    let h = Harness::start(fast_mock()).await;
    for i in 0..7 {
        let body =
            json!({"name": format!("p-{i}"), "group": if i % 2 == 0 { "even" } else { "odd" }, "disabled": i == 3});
        ok(&h, "POST", "/api/v1/tenants", Some(body)).await;
        let tags = if i % 2 == 0 { json!(["even", "fast"]) } else { json!(["odd"]) };
        let model = json!({"model_name": format!("pm-{i}"), "enabled": i % 3 != 0, "tags": tags});
        ok(&h, "POST", "/api/v1/models", Some(model)).await;
        ok(&h, "POST", "/api/v1/tenants/p-0/keys", Some(json!({"name": format!("k{i}")}))).await;
    }
    // Walks a listing 3 at a time; returns the names (by `field`) and the page count.
    let walk = |base: &str, field: &str| {
        let (h, base, field) = (&h, base.to_owned(), field.to_owned());
        async move {
            let sep = if base.contains('?') { '&' } else { '?' };
            let (mut names, mut cursor, mut pages) = (vec![], None::<String>, 0);
            loop {
                let path = match &cursor {
                    Some(c) => format!("{base}{sep}limit=3&cursor={c}"),
                    None => format!("{base}{sep}limit=3"),
                };
                let v = ok(h, "GET", &path, None).await;
                pages += 1;
                let data = v["data"].as_array().unwrap();
                assert!(data.len() <= 3);
                names.extend(data.iter().map(|x| x[field.as_str()].as_str().unwrap().to_owned()));
                match v["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_owned()),
                    None => return (names, pages),
                }
            }
        }
    };
    let (tenants, pages) = walk("/api/v1/tenants", "name").await;
    assert_eq!(tenants, ["p-0", "p-1", "p-2", "p-3", "p-4", "p-5", "p-6", "t1"]);
    assert_eq!(pages, 3);
    // The default page holds everything here, and still says where the end is.
    let v = ok(&h, "GET", "/api/v1/tenants", None).await;
    assert_eq!((v["data"].as_array().unwrap().len(), v["next_cursor"].clone()), (8, Value::Null));
    assert_eq!(walk("/api/v1/tenants?group=even", "name").await.0, ["p-0", "p-2", "p-4", "p-6"]);
    assert_eq!(walk("/api/v1/tenants?group=odd&disabled=false", "name").await.0, ["p-1", "p-5"]);
    assert_eq!(walk("/api/v1/tenants?disabled=true", "name").await.0, ["p-3"]);

    let (models, _) = walk("/api/v1/models", "model_name").await;
    assert_eq!(models, ["mock-model", "pm-0", "pm-1", "pm-2", "pm-3", "pm-4", "pm-5", "pm-6"]);
    assert_eq!(walk("/api/v1/models?enabled=false", "model_name").await.0, ["pm-0", "pm-3", "pm-6"]);
    assert_eq!(walk("/api/v1/models?tag=even", "model_name").await.0, ["pm-0", "pm-2", "pm-4", "pm-6"]);
    assert_eq!(walk("/api/v1/models?tag=odd&enabled=true", "model_name").await.0, ["pm-1", "pm-5"]);
    assert_eq!(ok(&h, "GET", "/api/v1/models/pm-2", None).await["tags"], json!(["even", "fast"]));
    let (s, v) =
        admin(&h, "POST", "/api/v1/models", Some(json!({"model_name": "bad", "tags": ["No Spaces"]})), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["param"], "tags", "{v}");

    let (keys, _) = walk("/api/v1/keys?tenant=p-0", "name").await;
    assert_eq!(keys, (0..7).map(|i| format!("k{i}")).collect::<Vec<_>>());
    let (keys, _) = walk("/api/v1/tenants/p-0/keys", "name").await;
    assert_eq!(keys.len(), 7);
    assert_eq!(walk("/api/v1/keys", "prefix").await.0.len(), 8);
    assert_eq!(walk("/api/v1/keys?include_revoked=true", "prefix").await.0.len(), 8);

    // Bad parameters: a 400 naming the parameter.
    for (path, param) in [
        ("/api/v1/tenants?limit=0", "limit"),
        ("/api/v1/tenants?limit=1001", "limit"),
        ("/api/v1/tenants?limit=ten", "limit"),
        ("/api/v1/keys?limit=-1", "limit"),
        ("/api/v1/models?limit=", "limit"),
        ("/api/v1/tenants?cursor=nonsense", "cursor"),
        ("/api/v1/tenants?disabled=maybe", "disabled"),
        ("/api/v1/models?enabled=yes", "enabled"),
        ("/api/v1/keys?include_revoked=2", "include_revoked"),
        ("/api/v1/tenants?colour=red", "colour"),
    ] {
        let (s, v) = admin(&h, "GET", path, None, None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {v}");
        assert_eq!(v["error"]["param"], param, "{path}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    // A cursor of one listing is refused by another.
    let v = ok(&h, "GET", "/api/v1/tenants?limit=1", None).await;
    let cursor = v["next_cursor"].as_str().unwrap();
    let (s, v) = admin(&h, "GET", &format!("/api/v1/models?cursor={cursor}"), None, None).await;
    assert_eq!((s, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("cursor")));
}

/// Sends `method url` with an optional bearer token and no body; returns status and JSON.
async fn probe(h: &Harness, method: &str, url: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = h.http.request(req.body(Full::new(Bytes::new())).unwrap()).await.unwrap();
    let status = res.status();
    // The scheduler lens never ends: its first event is enough.
    if res.headers().get("content-type").is_some_and(|v| v == "text/event-stream") {
        return (status, Value::Null);
    }
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Checks a served OpenAPI document against its router: the documented paths are the
/// router's paths, every documented operation is answered by a handler (not the router's
/// 404 or 405 fallback) and every other method on those paths gets the 405 fallback.
async fn check_document(h: &Harness, base: &str, doc: &Value, routes: Vec<&str>, token: &str, unknown: (&str, &str)) {
    let operations = obleth_admin::openapi::validate(doc).unwrap();
    let mut documented: Vec<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let mut served: Vec<String> = routes.iter().map(|p| p.replace("{*", "{")).collect();
    documented.sort();
    served.sort();
    assert_eq!(documented, served, "documented paths = routed paths");
    for path in &documented {
        // Ids and names that exist nowhere, so that no probe changes anything.
        // (A model name may hold slashes: the route takes the rest of the path.)
        let path_with_ids =
            if path.starts_with("/api/v1/models/") { path.replace("{name}", "probe/missing") } else { path.clone() };
        let url = format!("{base}{}", path_with_ids.replace('{', "probe-").replace('}', ""));
        for method in ["get", "post", "put", "patch", "delete"] {
            let (status, body) = probe(h, &method.to_uppercase(), &url, Some(token)).await;
            let fallback_404 = status == StatusCode::NOT_FOUND && body["error"][unknown.0] == unknown.1;
            let fallback_405 = status == StatusCode::METHOD_NOT_ALLOWED;
            if operations.iter().any(|(m, p)| m == method && p == path) {
                assert!(
                    !fallback_404 && !fallback_405,
                    "{method} {path} is documented but not served: {status} {body}"
                );
                let op = &doc["paths"][path][method];
                assert!(op["responses"].as_object().unwrap().keys().any(|c| c.starts_with('2')));
            } else {
                assert!(fallback_405, "{method} {path} is served ({status}) but not documented");
            }
        }
    }
}

#[tokio::test]
async fn the_openapi_documents_match_the_routers() {
    let h = Harness::start(fast_mock()).await;
    // The admin document needs no token.
    let (s, doc) = probe(&h, "GET", &format!("{}/api/v1/openapi.json", h.admin.admin_url), None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let admin_url = h.admin.admin_url.clone();
    check_document(&h, &admin_url, &doc, obleth_admin::route_paths(), ADMIN_TOKEN, ("message", "Unknown admin URL."))
        .await;
    // Bodies and answers refer to schemas that exist; every protected route says bearer.
    let text = doc.to_string();
    for schema in [
        "Tenant",
        "NewTenant",
        "TenantPatch",
        "ApiKey",
        "ModelView",
        "AuditEntry",
        "RotateBody",
        "Error",
        "McpServerView",
        "NewMcpServer",
        "McpServerPatch",
        "McpGrant",
        "NewMcpGrant",
        "McpTool",
        "McpToolSummary",
        "ApproveBody",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "schema {schema}");
        assert!(text.contains(&format!("#/components/schemas/{schema}\"")), "{schema} is used");
    }
    assert_eq!(doc["components"]["securitySchemes"]["admin_token"]["scheme"], "bearer");
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let public = ["/healthz", "/readyz", "/api/v1/openapi.json", "/api/v1/session"].contains(&path.as_str());
            assert_eq!(op["security"].as_array().unwrap().is_empty(), public, "{method} {path}");
        }
    }
    let model = &doc["components"]["schemas"]["Model"]["properties"];
    assert!(model.get("api_key").is_none(), "the credential is not part of the model's answer");
    let server = &doc["components"]["schemas"]["McpServer"]["properties"];
    assert!(server.get("credential").is_none(), "nor is an MCP server's");
    let rotate = &doc["paths"]["/api/v1/keys/{id}/rotate"]["post"];
    assert_eq!(
        rotate["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/RotateBody"
    );

    // The data plane's document, on the data listener.
    let data = format!("http://{}", h.data);
    let (s, doc) = probe(&h, "GET", &format!("{data}/v1/openapi.json"), None).await;
    assert_eq!(s, StatusCode::OK);
    let key = h.key.clone();
    check_document(&h, &data, &doc, obleth_gateway::route_paths(), &key, ("code", "unknown_url")).await;
    assert_eq!(doc["paths"]["/v1/chat/completions"]["post"]["security"][0]["api_key"], json!([]));
}
