//! The MCP gateway's admin API and CLI, end to end: servers (the credential never shown,
//! not even in the audit trail), grants, the review and approval of tool pins, errors in
//! the OpenAI shape, and `obleth mcp …` run as a process against the same API.

use http::StatusCode;
use obleth_store::McpToolPin;
use serde_json::{Value, json};

use crate::support::*;

/// The credential of the test's servers: must never come back.
const SECRET: &str = "sk-mcp-upstream-5e1d9a";
/// What every credential of these tests starts with (a replaced one included).
const SECRETS: &str = "sk-mcp-upstream";
const ACTOR: &str = "ops@example.com";

async fn admin(h: &Harness, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let (status, bytes) = admin_request(h, method, path, body, Some(ACTOR)).await;
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains(SECRETS), "{method} {path} answered a credential: {text}");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn ok(h: &Harness, method: &str, path: &str, body: Option<Value>) -> Value {
    let (s, v) = admin(h, method, path, body).await;
    assert!(s.is_success(), "{method} {path}: {s} {v}");
    v
}

/// Checks an error answer: its status, the OpenAI shape, its code and `param`.
fn assert_error((status, v): &(StatusCode, Value), want: StatusCode, code: &str, param: Option<&str>) {
    assert_eq!(*status, want, "{v}");
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e["type"].is_string(), "{v}");
    assert_eq!((e["code"].as_str(), e["param"].as_str()), (Some(code), param), "{v}");
}

/// Every audit entry about MCP resources, newest first.
async fn mcp_audit(h: &Harness) -> Vec<Value> {
    let v = ok(h, "GET", "/api/v1/audit?limit=1000", None).await;
    let all = v["data"].as_array().unwrap().clone();
    let text = Value::Array(all.clone()).to_string();
    assert!(!text.contains(SECRETS), "a credential leaked into the audit trail");
    all.into_iter().filter(|e| e["resource_kind"].as_str().unwrap().starts_with("mcp_")).collect()
}

#[tokio::test]
async fn mcp_servers_are_managed_and_their_credential_never_shown() {
    // One stdio command is configured; a server may name it and no other.
    let h = &Harness::with_config(fast_mock(), "[mcp.stdio.commands]\neverything = [\"/bin/cat\"]\n", &[]).await;
    let unknown = json!({"name": "sh", "command": "sh"});
    let refused = admin(h, "POST", "/api/v1/mcp/servers", Some(unknown)).await;
    assert_error(&refused, StatusCode::BAD_REQUEST, "invalid_value", Some("command"));
    let new =
        json!({"name": "fs", "url": "http://fs.mcp.internal:8000/mcp", "credential": SECRET, "max_concurrency": 4});
    let (s, fs) = admin(h, "POST", "/api/v1/mcp/servers", Some(new.clone())).await;
    assert_eq!(s, StatusCode::CREATED, "{fs}");
    assert_eq!((fs["has_credential"].as_bool(), fs.get("credential")), (Some(true), None), "{fs}");
    assert_eq!((fs["transport"].as_str(), fs["max_concurrency"].as_u64()), (Some("http"), Some(4)));
    assert!(fs["id"].as_str().unwrap().starts_with("mcp_"));
    let stdio = json!({"name": "everything", "command": "everything", "args": ["--stdio"]});
    assert_eq!(ok(h, "POST", "/api/v1/mcp/servers", Some(stdio)).await["transport"], "stdio");

    let list = ok(h, "GET", "/api/v1/mcp/servers", None).await;
    let names: Vec<_> = list["data"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["everything", "fs"]);
    assert_eq!(ok(h, "GET", "/api/v1/mcp/servers/fs", None).await, fs);
    assert_eq!(ok(h, "GET", &format!("/api/v1/mcp/servers/{}", fs["id"].as_str().unwrap()), None).await, fs);

    // Refusals: the error shape, with the field.
    let bad = |patch: Value| {
        let mut body = new.clone();
        body.as_object_mut().unwrap().extend(patch.as_object().unwrap().clone());
        body
    };
    let conflict = admin(h, "POST", "/api/v1/mcp/servers", Some(new.clone())).await;
    assert_error(&conflict, StatusCode::CONFLICT, "conflict", None);
    for (body, param) in [
        (bad(json!({"name": "a__b"})), "name"),
        (bad(json!({"name": "a_"})), "name"),
        (bad(json!({"name": "Fs"})), "name"),
        (bad(json!({"name": "x", "url": "ftp://x/mcp"})), "url"),
        (bad(json!({"name": "x", "command": "everything"})), "transport"),
        (bad(json!({"name": "x", "max_concurrency": 0})), "max_concurrency"),
        (bad(json!({"name": "x", "tool_weights": {"t": 1001}})), "tool_weights"),
        (bad(json!({"name": "x", "credential_header": "Host"})), "credential_header"),
        (bad(json!({"name": "x", "surprise": true})), "surprise"),
    ] {
        let got = admin(h, "POST", "/api/v1/mcp/servers", Some(body.clone())).await;
        assert_error(&got, StatusCode::BAD_REQUEST, "invalid_value", Some(param));
    }
    // The upstream policy applies to MCP URLs as to models' api_base.
    let metadata =
        admin(h, "POST", "/api/v1/mcp/servers", Some(bad(json!({"name": "x", "url": "http://169.254.169.254/mcp"}))))
            .await;
    assert_error(&metadata, StatusCode::BAD_REQUEST, "upstream_forbidden", Some("url"));
    assert!(metadata.1["error"]["message"].as_str().unwrap().contains("metadata"), "{}", metadata.1);

    // Changes: absent fields stay; a new credential is still never shown.
    let patch = json!({"credential": "sk-mcp-upstream-rotated-2", "call_timeout_ms": 5000, "enabled": false});
    let patched = ok(h, "PATCH", "/api/v1/mcp/servers/fs", Some(patch)).await;
    assert_eq!((patched["call_timeout_ms"].as_u64(), patched["max_concurrency"].as_u64()), (Some(5000), Some(4)));
    assert_eq!((patched["enabled"].as_bool(), patched["has_credential"].as_bool()), (Some(false), Some(true)));
    let url =
        admin(h, "PATCH", "/api/v1/mcp/servers/fs", Some(json!({"url": "http://[::ffff:169.254.169.254]/mcp"}))).await;
    assert_error(&url, StatusCode::BAD_REQUEST, "upstream_forbidden", Some("url"));
    let cleared = ok(h, "PATCH", "/api/v1/mcp/servers/fs", Some(json!({"credential": null}))).await;
    assert_eq!(cleared["has_credential"], false);

    let deleted = ok(h, "DELETE", "/api/v1/mcp/servers/everything", None).await;
    assert_eq!(deleted["deleted"]["name"], "everything");
    for (method, path) in [("GET", "/api/v1/mcp/servers/everything"), ("DELETE", "/api/v1/mcp/servers/everything")] {
        assert_error(&admin(h, method, path, None).await, StatusCode::NOT_FOUND, "not_found", None);
    }

    // One audit entry per change, by the actor, with has_credential and never the credential.
    let entries = mcp_audit(h).await;
    let actions: Vec<_> = entries.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["mcp_server.delete", "mcp_server.update", "mcp_server.update", "mcp_server.create", "mcp_server.create"]
    );
    assert!(entries.iter().all(|e| e["actor"] == ACTOR));
    let replaced = &entries[2];
    assert_eq!(
        (replaced["resource_id"].as_str(), replaced["after"]["credential_replaced"].as_bool()),
        (Some("fs"), Some(true))
    );
    assert_eq!(entries[1]["after"]["has_credential"], false);
    let only_fs = ok(h, "GET", "/api/v1/audit?resource=mcp_server:fs", None).await;
    assert_eq!(only_fs["data"].as_array().unwrap().len(), 3);
}

/// A tenant's limits on MCP tool calls are part of its quota: set by create and patch,
/// answered, checked (0 and past the maximum are refused, naming the field), documented.
#[tokio::test]
async fn mcp_tool_call_limits_are_part_of_a_tenants_quota() {
    let h = &Harness::start(fast_mock()).await;
    let created =
        ok(h, "POST", "/api/v1/tenants", Some(json!({"name": "lim", "quota": {"tool_calls_per_minute": 3}}))).await;
    assert_eq!(
        (created["quota"]["tool_calls_per_minute"].as_u64(), created["quota"]["tool_calls_in_flight"].is_null()),
        (Some(3), true),
        "{created}"
    );
    let both = json!({"quota": {"tool_calls_per_minute": 1_000_000, "tool_calls_in_flight": 2}});
    ok(h, "PATCH", "/api/v1/tenants/lim", Some(both)).await;
    let got = ok(h, "GET", "/api/v1/tenants/lim", None).await;
    assert_eq!(got["quota"]["tool_calls_per_minute"], 1_000_000, "{got}");
    assert_eq!(got["quota"]["tool_calls_in_flight"], 2, "{got}");
    for (quota, field) in [
        (json!({"tool_calls_in_flight": 0}), "quota.tool_calls_in_flight"),
        (json!({"tool_calls_per_minute": 1_000_001}), "quota.tool_calls_per_minute"),
    ] {
        let refused = admin(h, "PATCH", "/api/v1/tenants/lim", Some(json!({"quota": quota}))).await;
        assert_error(&refused, StatusCode::BAD_REQUEST, "invalid_value", Some(field));
    }
    assert_eq!(ok(h, "GET", "/api/v1/tenants/lim", None).await, got, "a refused patch changes nothing");

    let doc = ok(h, "GET", "/api/v1/openapi.json", None).await;
    let quota = &doc["components"]["schemas"]["Quota"]["properties"];
    for field in ["tool_calls_per_minute", "tool_calls_in_flight"] {
        assert!(quota[field].is_object(), "{field} is not in the OpenAPI schema: {quota}");
    }
}

#[tokio::test]
async fn mcp_grants_are_managed_and_audited() {
    let h = &Harness::start(fast_mock()).await;
    ok(h, "POST", "/api/v1/mcp/servers", Some(json!({"name": "fs", "url": "http://fs.mcp.internal/mcp"}))).await;
    ok(h, "POST", "/api/v1/tenants", Some(json!({"name": "t2"}))).await;
    let key_of = |tenant: &str| {
        let path = format!("/api/v1/keys?tenant={tenant}");
        async move { ok(h, "GET", &path, None).await["data"][0]["id"].as_str().unwrap().to_owned() }
    };
    ok(h, "POST", "/api/v1/tenants/t2/keys", Some(json!({}))).await;
    let (k1, k2) = (key_of("t1").await, key_of("t2").await);

    let (s, whole) = admin(h, "POST", "/api/v1/mcp/grants", Some(json!({"tenant": "t1", "server": "fs"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{whole}");
    assert!(whole["id"].as_str().unwrap().starts_with("mgr_"));
    assert_eq!((whole["server"].as_str(), whole["key_id"].as_str()), (Some("fs"), None));
    let narrow = json!({"tenant": "t1", "key_id": k1, "server": "fs", "tool": "read"});
    let key_grant = ok(h, "POST", "/api/v1/mcp/grants", Some(narrow.clone())).await;
    assert_eq!(key_grant["key_id"], k1.as_str());

    assert_error(&admin(h, "POST", "/api/v1/mcp/grants", Some(narrow)).await, StatusCode::CONFLICT, "conflict", None);
    let foreign = json!({"tenant": "t1", "key_id": k2, "server": "fs"});
    assert_error(
        &admin(h, "POST", "/api/v1/mcp/grants", Some(foreign)).await,
        StatusCode::BAD_REQUEST,
        "invalid_value",
        Some("key_id"),
    );
    let nowhere = json!({"tenant": "t1", "server": "nowhere"});
    assert_error(
        &admin(h, "POST", "/api/v1/mcp/grants", Some(nowhere)).await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    let nobody = json!({"tenant": "nobody", "server": "fs"});
    assert_error(&admin(h, "POST", "/api/v1/mcp/grants", Some(nobody)).await, StatusCode::NOT_FOUND, "not_found", None);
    let missing = json!({"server": "fs"});
    assert_error(
        &admin(h, "POST", "/api/v1/mcp/grants", Some(missing)).await,
        StatusCode::BAD_REQUEST,
        "invalid_value",
        Some("tenant"),
    );

    let ids = |q: &str| {
        let path = format!("/api/v1/mcp/grants{q}");
        async move {
            let v = ok(h, "GET", &path, None).await;
            v["data"].as_array().unwrap().iter().map(|g| g["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    };
    let both = ids("?tenant=t1&server=fs").await;
    assert_eq!(both.len(), 2);
    assert_eq!(ids(&format!("?key={k1}")).await, [key_grant["id"].as_str().unwrap()]);
    assert!(ids("?tenant=t2").await.is_empty());
    assert_error(
        &admin(h, "GET", "/api/v1/mcp/grants?tenant=nobody", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert_error(
        &admin(h, "GET", "/api/v1/mcp/grants?server=nowhere", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert_error(
        &admin(h, "GET", "/api/v1/mcp/grants?color=red", None).await,
        StatusCode::BAD_REQUEST,
        "invalid_value",
        Some("color"),
    );

    let gone = ok(h, "DELETE", &format!("/api/v1/mcp/grants/{}", key_grant["id"].as_str().unwrap()), None).await;
    assert_eq!(gone["deleted"], key_grant);
    let again = admin(h, "DELETE", &format!("/api/v1/mcp/grants/{}", key_grant["id"].as_str().unwrap()), None).await;
    assert_error(&again, StatusCode::NOT_FOUND, "not_found", None);
    // The key stays restricted to its (now no) grants: revoking never widens it.
    let marks = h.store().mcp_grants().await.unwrap().restricted_keys;
    assert!(marks.iter().any(|(_, k)| *k == k1), "{marks:?}");

    // A rotation passes the grants and the restriction to the new key.
    ok(h, "POST", "/api/v1/mcp/grants", Some(json!({"tenant": "t1", "key_id": k1, "server": "fs", "tool": "write"})))
        .await;
    let rotated = ok(h, "POST", &format!("/api/v1/keys/{k1}/rotate"), None).await;
    let new_key = rotated["id"].as_str().unwrap();
    let copied = ok(h, "GET", &format!("/api/v1/mcp/grants?key={new_key}"), None).await;
    assert_eq!(copied["data"][0]["tool"], "write");
    // A tenant's delete takes its grants.
    ok(h, "DELETE", "/api/v1/tenants/t1", None).await;
    assert!(ids("").await.is_empty());

    let entries = mcp_audit(h).await;
    let actions: Vec<_> = entries.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["mcp_grant.create", "mcp_grant.delete", "mcp_grant.create", "mcp_grant.create", "mcp_server.create"]
    );
    assert_eq!(entries[1]["before"], key_grant);
    assert_eq!(entries[1]["resource_id"], key_grant["id"]);
}

fn hash(n: u32) -> String {
    format!("sha256:{n:064x}")
}

fn def(n: u32) -> Value {
    json!({"name": "read", "description": format!("Reads a file (v{n})"), "inputSchema": {"type": "object"}})
}

/// A pin as a gateway would write it: approved at `approved`, `pending` waiting.
fn pin(tool: &str, approved: Option<u32>, pending: Option<u32>) -> McpToolPin {
    McpToolPin {
        server: "fs".into(),
        tool: tool.into(),
        approved_hash: approved.map(hash),
        approved_def: approved.map(def),
        pending_hash: pending.map(hash),
        pending_def: pending.map(def),
        first_seen_at: 1_700_000_000_000,
        changed_at: pending.map(|_| 1_700_000_100_000),
        approved_at: None,
        approved_by: None,
    }
}

#[tokio::test]
async fn changed_tools_are_reviewed_and_approved_by_their_hash() {
    let h = &Harness::start(fast_mock()).await;
    ok(h, "POST", "/api/v1/mcp/servers", Some(json!({"name": "fs", "url": "http://fs.mcp.internal/mcp"}))).await;
    // The gateway's side (observing upstream lists) writes the pins.
    let store = h.store();
    for p in [pin("read", Some(1), Some(2)), pin("list", Some(3), None), pin("held", None, Some(4))] {
        assert!(store.put_mcp_pin(&p, None).await.unwrap());
    }

    let tools = ok(h, "GET", "/api/v1/mcp/servers/fs/tools", None).await;
    let states: Vec<_> = tools["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["tool"].as_str().unwrap(), t["name"].as_str().unwrap(), t["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [("held", "fs__held", "unapproved"), ("list", "fs__list", "approved"), ("read", "fs__read", "quarantined")]
    );
    assert!(tools["data"][0].get("pending_def").is_none(), "a listing leaves the definitions out");
    let read = ok(h, "GET", "/api/v1/mcp/servers/fs/tools/read", None).await;
    assert_eq!((&read["approved_def"], &read["pending_def"]), (&def(1), &def(2)), "both sides of the change");
    assert_eq!(read["pending_hash"], hash(2));

    let approve = |tool: &str, hash: Value| {
        let path = format!("/api/v1/mcp/servers/fs/tools/{tool}/approve");
        async move { admin(h, "POST", &path, Some(json!({ "hash": hash }))).await }
    };
    // A hash other than the one waiting: refused, naming the one waiting.
    let stale = approve("read", json!(hash(9))).await;
    assert_error(&stale, StatusCode::CONFLICT, "conflict", Some("hash"));
    assert!(stale.1["error"]["message"].as_str().unwrap().contains(&hash(2)), "{}", stale.1);
    assert_error(&approve("read", json!("sha256:XYZ")).await, StatusCode::BAD_REQUEST, "invalid_value", Some("hash"));
    assert_error(&approve("read", json!(7)).await, StatusCode::BAD_REQUEST, "invalid_value", Some("hash"));
    assert_error(&approve("list", json!(hash(3))).await, StatusCode::CONFLICT, "conflict", None);
    assert_error(&approve("ghost", json!(hash(3))).await, StatusCode::NOT_FOUND, "not_found", None);
    let no_server = admin(h, "GET", "/api/v1/mcp/servers/nowhere/tools", None).await;
    assert_error(&no_server, StatusCode::NOT_FOUND, "not_found", None);

    let (s, approved) = approve("read", json!(hash(2))).await;
    assert_eq!(s, StatusCode::OK, "{approved}");
    assert_eq!(
        (approved["state"].as_str(), approved["approved_hash"].as_str()),
        (Some("approved"), Some(hash(2).as_str()))
    );
    assert_eq!((&approved["approved_def"], &approved["pending_def"]), (&def(2), &Value::Null));
    assert_eq!(approved["approved_by"], ACTOR);
    assert_eq!(ok(h, "GET", "/api/v1/mcp/servers/fs/tools/read", None).await, approved);
    let (s, held) = approve("held", json!(hash(4))).await;
    assert_eq!((s, held["state"].as_str()), (StatusCode::OK, Some("approved")), "a held tool is approved the same way");

    let entries = mcp_audit(h).await;
    assert_eq!(
        (entries[1]["action"].as_str(), entries[1]["resource_id"].as_str()),
        (Some("mcp_tool.approve"), Some("fs/read"))
    );
    assert_eq!(
        (&entries[1]["before"]["state"], &entries[1]["after"]["state"]),
        (&json!("quarantined"), &json!("approved"))
    );
    let trail = ok(h, "GET", "/api/v1/audit?resource=mcp_tool:fs/held", None).await;
    assert_eq!(trail["data"].as_array().unwrap().len(), 1);
}

/// Runs `obleth mcp <args>` against the harness's admin API; returns its exit status and
/// output (stdout, else stderr).
async fn cli(h: &Harness, args: &[&str]) -> (bool, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_obleth"));
    command
        .arg("mcp")
        .args(args)
        .env("OBLETH_ADMIN_URL", &h.admin.admin_url)
        .env("OBLETH_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("OBLETH_TEST_MCP_CREDENTIAL", SECRET);
    let out = tokio::task::spawn_blocking(move || command.output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let text = if out.status.success() { stdout } else { String::from_utf8_lossy(&out.stderr).into_owned() };
    assert!(!text.contains(SECRET), "obleth mcp {args:?} printed the credential: {text}");
    (out.status.success(), text)
}

async fn cli_ok(h: &Harness, args: &[&str]) -> Value {
    let (ok, out) = cli(h, args).await;
    assert!(ok, "obleth mcp {args:?}: {out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("obleth mcp {args:?}: not JSON ({e}): {out}"))
}

#[tokio::test]
async fn the_cli_manages_servers_grants_and_tools() {
    let h = &Harness::with_config(fast_mock(), "[mcp.stdio.commands]\neverything = [\"/bin/cat\"]\n", &[]).await;
    let url = "http://fs.mcp.internal:8000/mcp";
    let added = cli_ok(
        h,
        &[
            "servers",
            "add",
            "fs",
            "--url",
            url,
            "--credential-env",
            "OBLETH_TEST_MCP_CREDENTIAL",
            "--max-concurrency",
            "3",
            "--require-approval",
        ],
    )
    .await;
    assert_eq!((added["has_credential"].as_bool(), added["require_approval"].as_bool()), (Some(true), Some(true)));
    cli_ok(h, &["servers", "add", "ev", "--command", "everything", "--arg", "--stdio", "--list-timeout-ms", "500"])
        .await;
    let (refused, message) = cli(h, &["servers", "add", "bad__name", "--url", url]).await;
    assert!(!refused && message.contains("400") && message.contains("separator"), "{message}");

    let set = cli_ok(h, &["servers", "set", "ev", "--arg", "--verbose", "--call-timeout-ms", "900", "--disable"]).await;
    assert_eq!(
        (&set["args"], set["call_timeout_ms"].as_u64(), set["enabled"].as_bool()),
        (&json!(["--verbose"]), Some(900), Some(false))
    );
    assert_eq!(cli_ok(h, &["servers", "show", "ev"]).await["list_timeout_ms"], 500);
    let listed = cli_ok(h, &["servers", "list"]).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    assert_eq!(cli_ok(h, &["servers", "set", "fs", "--clear-credential"]).await["has_credential"], false);

    let keys = ok(h, "GET", "/api/v1/keys?tenant=t1", None).await;
    let key = keys["data"][0]["id"].as_str().unwrap();
    let grant = cli_ok(h, &["grants", "add", "--tenant", "t1", "--key", key, "--server", "fs", "--tool", "read"]).await;
    assert_eq!((grant["key_id"].as_str(), grant["tool"].as_str()), (Some(key), Some("read")));
    cli_ok(h, &["grants", "add", "--tenant", "t1", "--server", "ev"]).await;
    assert_eq!(
        cli_ok(h, &["grants", "list", "--tenant", "t1", "--server", "fs"]).await["data"].as_array().unwrap().len(),
        1
    );
    assert_eq!(cli_ok(h, &["grants", "list"]).await["data"].as_array().unwrap().len(), 2);
    cli_ok(h, &["grants", "rm", grant["id"].as_str().unwrap()]).await;
    assert_eq!(cli_ok(h, &["grants", "list", "--server", "fs"]).await["data"], json!([]));

    assert!(h.store().put_mcp_pin(&pin("read file", None, Some(4)), None).await.unwrap());
    let tools = cli_ok(h, &["tools", "list", "fs"]).await;
    assert_eq!(
        (tools["data"][0]["tool"].as_str(), tools["data"][0]["state"].as_str()),
        (Some("read file"), Some("unapproved"))
    );
    assert_eq!(cli_ok(h, &["tools", "show", "fs", "read file"]).await["pending_def"], def(4));
    let (refused, message) = cli(h, &["tools", "approve", "fs", "read file", "--hash", &hash(5)]).await;
    assert!(!refused && message.contains("409") && message.contains(&hash(4)), "{message}");
    let approved = cli_ok(h, &["tools", "approve", "fs", "read file", "--hash", &hash(4)]).await;
    assert_eq!((approved["state"].as_str(), approved["approved_by"].as_str()), (Some("approved"), Some("admin")));

    assert_eq!(cli_ok(h, &["servers", "rm", "ev"]).await["deleted"]["name"], "ev");
    let (gone, message) = cli(h, &["servers", "show", "ev"]).await;
    assert!(!gone && message.contains("404"), "{message}");
}
