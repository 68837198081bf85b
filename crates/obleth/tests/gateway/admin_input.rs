//! Malformed admin input, end to end: every body, path and query refusal is a 400 in the
//! OpenAI error shape whose `param` names the field, and changes nothing.

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use crate::support::*;

/// One admin call with a raw body and an optional `Content-Type`.
async fn raw(
    h: &Harness,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (StatusCode, HeaderMap, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("{}{path}", h.admin.admin_url))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"));
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let res = h.http.request(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap()).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("{method} {path}: not JSON: {}", String::from_utf8_lossy(&bytes)));
    (parts.status, parts.headers, v)
}

async fn json_call(h: &Harness, method: &str, path: &str, body: &str) -> (StatusCode, HeaderMap, Value) {
    raw(h, method, path, Some("application/json"), body).await
}

/// Checks a refusal: 400, JSON, the OpenAI shape, and `param` as expected.
fn assert_refused(what: &str, (status, headers, v): &(StatusCode, HeaderMap, Value), param: Option<&str>) {
    assert_eq!(*status, StatusCode::BAD_REQUEST, "{what}: {v}");
    assert_eq!(headers["content-type"], "application/json", "{what}");
    let e = &v["error"];
    assert_eq!(e["type"], "invalid_request_error", "{what}: {v}");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {v}");
    assert!(e["code"].is_string(), "{what}: {v}");
    assert_eq!(e["param"].as_str(), param, "{what}: {v}");
}

async fn ok(h: &Harness, method: &str, path: &str, body: Value) -> Value {
    let (s, _, v) = json_call(h, method, path, &body.to_string()).await;
    assert!(s.is_success(), "{method} {path}: {s} {v}");
    v
}

async fn keys(h: &Harness) -> Vec<Value> {
    let (_, _, v) = raw(h, "GET", "/api/v1/keys?tenant=t1&include_revoked=true", None, "").await;
    v["data"].as_array().unwrap().clone()
}

async fn audit_len(h: &Harness) -> usize {
    let (s, _, v) = raw(h, "GET", "/api/v1/audit?limit=1000", None, "").await;
    assert_eq!(s, StatusCode::OK);
    v["data"].as_array().unwrap().len()
}

#[tokio::test]
async fn malformed_bodies_are_400_naming_the_field_and_change_nothing() {
    let h = Harness::start(fast_mock()).await;
    let before = ok(&h, "PATCH", "/api/v1/tenants/t1", json!({"quota": {"tpm": 1000, "monthly_budget": 5.0}})).await;
    ok(&h, "PUT", "/api/v1/groups/g", json!({"weight": 2, "max_slots": 4})).await;
    let changes = audit_len(&h).await;

    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        // Wrong types and out-of-range numbers, at any depth.
        ("PATCH", "/api/v1/tenants/t1", r#"{"quota": {"tpm": -5}}"#, Some("quota.tpm")),
        ("PATCH", "/api/v1/tenants/t1", r#"{"quota": {"monthly_budget": "lots"}}"#, Some("quota.monthly_budget")),
        ("PATCH", "/api/v1/tenants/t1", r#"{"weight": "heavy"}"#, Some("weight")),
        ("PATCH", "/api/v1/tenants/t1", r#"{"allowed_models": ["a", 5]}"#, Some("allowed_models[1]")),
        ("POST", "/api/v1/tenants", r#"{"name": "x1", "quota": {"rpm": 1.5}}"#, Some("quota.rpm")),
        ("PUT", "/api/v1/groups/g", r#"{"weight": 2, "reserved_slots": -1}"#, Some("reserved_slots")),
        ("PUT", "/api/v1/groups/g", r#"{"weight": 2, "max_slots": "many"}"#, Some("max_slots")),
        ("POST", "/api/v1/models", r#"{"model_name": "m1", "max_in_flight": -3}"#, Some("max_in_flight")),
        ("PATCH", "/api/v1/models/mock-model", r#"{"tags": ["ok", 5]}"#, Some("tags[1]")),
        ("PATCH", "/api/v1/models/mock-model", r#"{"input_cost_per_token": "free"}"#, Some("input_cost_per_token")),
        // Unknown fields, top level and nested.
        ("POST", "/api/v1/tenants", r#"{"name": "x2", "wieght": 2}"#, Some("wieght")),
        ("PATCH", "/api/v1/tenants/t1", r#"{"quota": {"tmp": 5}}"#, Some("quota.tmp")),
        ("PUT", "/api/v1/groups/g", r#"{"weight": 2, "slots": 3}"#, Some("slots")),
        // Missing required fields.
        ("POST", "/api/v1/tenants", r#"{"weight": 2}"#, Some("name")),
        ("POST", "/api/v1/models", r#"{"enabled": true}"#, Some("model_name")),
        ("PUT", "/api/v1/groups/g", r#"{"max_slots": 8}"#, Some("weight")),
        // Syntax: broken, trailing data, not an object, empty where a body is required.
        ("POST", "/api/v1/tenants", r#"{"name": "x3","#, None),
        ("POST", "/api/v1/tenants", r#"{"name": "x4"} {"name": "x5"}"#, None),
        ("PATCH", "/api/v1/tenants/t1", "[1, 2]", None),
        ("PATCH", "/api/v1/tenants/t1", "", None),
    ];
    for (method, path, body, param) in cases {
        let res = json_call(&h, method, path, body).await;
        assert_refused(&format!("{method} {path} {body}"), &res, *param);
    }
    // Missing or wrong content type.
    for ct in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
        let res = raw(&h, "PATCH", "/api/v1/tenants/t1", ct, r#"{"weight": 9}"#).await;
        assert_refused(&format!("content type {ct:?}"), &res, Some("Content-Type"));
    }
    // `application/*+json` and parameters are JSON too.
    let (s, _, _) =
        raw(&h, "PATCH", "/api/v1/tenants/t1", Some("application/merge-patch+json; charset=utf-8"), "{}").await;
    assert_eq!(s, StatusCode::OK);

    // Nothing changed: the tenant keeps its quota, no tenant, model or group appeared,
    // and the trail records nothing.
    let (_, _, after) = raw(&h, "GET", "/api/v1/tenants/t1", None, "").await;
    assert_eq!(after["quota"], before["quota"], "{after}");
    assert_eq!(after["weight"], before["weight"]);
    for path in ["/api/v1/tenants/x1", "/api/v1/tenants/x2", "/api/v1/tenants/x4", "/api/v1/models/m1"] {
        let (s, _, _) = raw(&h, "GET", path, None, "").await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    let (_, _, g) = raw(&h, "GET", "/api/v1/groups/g", None, "").await;
    assert_eq!((g["weight"].as_u64(), g["max_slots"].as_u64(), g["reserved_slots"].as_u64()), (Some(2), Some(4), None));
    let (_, _, m) = raw(&h, "GET", "/api/v1/models/mock-model", None, "").await;
    assert_eq!((m["tags"].clone(), m["input_cost_per_token"].as_f64()), (json!([]), Some(0.001)));
    // The merge-patch `{}` above changed no value but is an update: one entry.
    assert_eq!(audit_len(&h).await, changes + 1);
}

#[tokio::test]
async fn key_bodies_may_be_empty_but_not_wrong() {
    let h = Harness::start(fast_mock()).await;
    let existing = keys(&h).await;
    let id = existing[0]["id"].as_str().unwrap().to_owned();
    let changes = audit_len(&h).await;
    for (body, param) in [
        (r#"{"expires_in_secs": -1}"#, Some("expires_in_secs")),
        (r#"{"expires_in_secs": "soon"}"#, Some("expires_in_secs")),
        (r#"{"expires_in_secs": 0}"#, Some("expires_in_secs")),
        (r#"{"expires_at": 1}"#, Some("expires_at")),
        (r#"{"name": 7}"#, Some("name")),
        (r#"{"nmae": "ci"}"#, Some("nmae")),
        (r#"{"name": "ci""#, None),
    ] {
        let res = json_call(&h, "POST", "/api/v1/tenants/t1/keys", body).await;
        assert_refused(&format!("create {body}"), &res, param);
        if body.contains(": 0}") {
            assert!(res.2["error"]["message"].as_str().unwrap().contains("at least 1"), "{}", res.2);
        }
    }
    for (body, param) in [
        (r#"{"overlap_secs": "soon"}"#, Some("overlap_secs")),
        (r#"{"overlap_secs": -60}"#, Some("overlap_secs")),
        (r#"{"overlap": 60}"#, Some("overlap")),
    ] {
        let res = json_call(&h, "POST", &format!("/api/v1/keys/{id}/rotate"), body).await;
        assert_refused(&format!("rotate {body}"), &res, param);
    }
    let res = raw(&h, "POST", "/api/v1/tenants/t1/keys", Some("text/plain"), r#"{"name": "ci"}"#).await;
    assert_refused("create as text/plain", &res, Some("Content-Type"));
    assert_eq!(keys(&h).await, existing, "no key was created, rotated or changed");
    assert_eq!(audit_len(&h).await, changes);

    // An empty body, with or without a content type, takes the defaults.
    for ct in [None, Some("application/json")] {
        let (s, _, v) = raw(&h, "POST", "/api/v1/tenants/t1/keys", ct, "").await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert!(v["expires_at"].is_null() && v["name"].is_null(), "{v}");
    }
    let (s, _, v) = json_call(&h, "POST", "/api/v1/tenants/t1/keys", r#"{"expires_in_secs": 1}"#).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, _, v) = raw(&h, "POST", &format!("/api/v1/keys/{id}/rotate"), None, "").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

#[tokio::test]
async fn query_and_path_refusals_name_the_parameter() {
    let h = Harness::start(fast_mock()).await;
    // The harness keeps no ledger (usage answers 503), but parameters are checked first.
    for (path, param) in [
        ("/api/v1/usage/totals?bogus=1", "bogus"),
        ("/api/v1/usage/totals?limit=5", "limit"),
        ("/api/v1/usage/totals?from=1h&from=2h", "from"),
        ("/api/v1/usage/series?limit=5", "limit"),
        ("/api/v1/usage/recent?limit=abc", "limit"),
        ("/api/v1/usage/recent?limit=-1", "limit"),
        ("/api/v1/usage/recent?limit=1001", "limit"),
        ("/api/v1/usage/recent?group_by=model", "group_by"),
        ("/api/v1/tenants?limit=ten", "limit"),
        ("/api/v1/tenants?disabled=maybe", "disabled"),
        ("/api/v1/models?colour=red", "colour"),
        ("/api/v1/keys?limit=2&limit=3", "limit"),
        ("/api/v1/tenants/t1/keys?cursor=zz&extra=1", "extra"),
        ("/api/v1/audit?from=soon", "from"),
    ] {
        let res = raw(&h, "GET", path, None, "").await;
        assert_refused(path, &res, Some(param));
    }
    let (s, _, v) = raw(&h, "GET", "/api/v1/usage/totals?from=1h", None, "").await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("ledger_unavailable")));

    // A path segment that is not UTF-8 once percent-decoded.
    for (method, path, param) in [
        ("GET", "/api/v1/tenants/%FF", "tenant"),
        ("PATCH", "/api/v1/tenants/%C3%28", "tenant"),
        ("GET", "/api/v1/models/a/%FF", "name"),
        ("POST", "/api/v1/keys/%FE/revoke", "id"),
        ("PUT", "/api/v1/groups/%FF", "name"),
    ] {
        let res = json_call(&h, method, path, r#"{"weight": 1}"#).await;
        assert_refused(&format!("{method} {path}"), &res, Some(param));
    }
}
