//! Tests of a tool call's ledger row: its tool-call columns on every way a call ends.

#![allow(clippy::unwrap_used)]

use std::sync::Mutex;

use obleth_core::Tenant;
use obleth_store::McpTransport;
use rmcp::model::ContentBlock;
use serde_json::json;

use super::*;

#[derive(Default)]
struct Rows(Mutex<Vec<UsageRecord>>);

impl UsageSink for Rows {
    fn record(&self, record: UsageRecord) {
        self.0.lock().unwrap().push(record);
    }
}

impl Rows {
    fn take(&self) -> UsageRecord {
        let mut rows = self.0.lock().unwrap();
        assert_eq!(rows.len(), 1, "one row per call");
        rows.pop().unwrap()
    }
}

fn caller() -> McpCaller {
    McpCaller {
        tenant: Arc::new(Tenant::named("t1", "acme", "default")),
        key_id: "k1".into(),
        key_prefix: "obk_abcd".into(),
        key_created_at: 0,
    }
}

fn server(capture: bool, redact: &[&str]) -> Arc<McpServer> {
    Arc::new(McpServer {
        id: "s1".into(),
        name: "files".into(),
        transport: McpTransport::Http,
        url: Some("http://10.0.0.5:9000/mcp".into()),
        command: None,
        args: Vec::new(),
        credential: None,
        credential_header: "authorization".into(),
        call_timeout_ms: 1000,
        list_timeout_ms: 1000,
        max_concurrency: 4,
        require_approval: false,
        capture,
        redact_fields: redact.iter().map(|f| (*f).to_owned()).collect(),
        tool_weights: Default::default(),
        enabled: true,
        created_at: 0,
        updated_at: 0,
    })
}

fn args(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

/// A routed call of `files__read`.
fn call(rows: &Arc<Rows>, server: &Arc<McpServer>) -> ToolCall {
    let mut call = ToolCall::new(rows.clone(), &caller(), "files__read");
    call.routed(server, "read");
    call
}

#[test]
fn a_call_answered_keeps_its_server_hash_and_size_but_not_what_it_said() {
    let rows = Arc::new(Rows::default());
    let mut c = call(&rows, &server(false, &[]));
    c.arguments(Some(&args(json!({"path": "/etc/motd", "opts": {"z": 1, "a": [true, null]}}))));
    let result = CallToolResult::success(vec![ContentBlock::text("hello")]);
    c.answered(&result, Outcome::Ok);
    drop(c);
    let r = rows.take();
    assert_eq!((r.route, r.status, r.error_type.as_deref()), (ROUTE, 200, None));
    assert_eq!((r.model.as_deref(), r.upstream_model.as_deref()), (Some("files__read"), Some("read")));
    let tool = r.tool.unwrap();
    assert_eq!(tool.server, "files");
    // Keys sorted at every depth, no whitespace.
    let canonical = r#"{"opts":{"a":[true,null],"z":1},"path":"/etc/motd"}"#;
    assert_eq!(tool.args_sha256, pin::sha256(canonical));
    assert_eq!(tool.result_bytes, serde_json::to_vec(&result).unwrap().len() as u64);
    assert_eq!((tool.upstream_error.as_str(), tool.capture.as_str()), ("", ""), "nothing captured unless asked");
}

#[test]
fn absent_arguments_hash_as_an_empty_object() {
    let rows = Arc::new(Rows::default());
    let mut c = call(&rows, &server(false, &[]));
    c.arguments(None);
    drop(c);
    let tool = rows.take().tool.unwrap();
    // sha256("{}"), as `printf '{}' | sha256sum` prints it.
    assert_eq!(tool.args_sha256, "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
    let mut c = call(&rows, &server(false, &[]));
    c.arguments(Some(&Map::new()));
    drop(c);
    assert_eq!(rows.take().tool.unwrap().args_sha256, tool.args_sha256);
}

#[test]
fn a_capture_is_redacted_and_the_hash_is_not() {
    let rows = Arc::new(Rows::default());
    let server = server(true, &["token", "/result/structuredContent/rows/0/ssn"]);
    let raw = args(json!({"path": "/srv/a", "auth": {"token": "sk-live-1"}}));
    let mut c = call(&rows, &server);
    c.arguments(Some(&raw));
    let mut result = CallToolResult::success(vec![ContentBlock::text("2 rows")]);
    result.structured_content = Some(json!({"rows": [{"ssn": "123-45"}, {"ssn": "678-90"}], "token": "echo"}));
    c.answered(&result, Outcome::Ok);
    drop(c);
    let tool = rows.take().tool.unwrap();
    assert_eq!(tool.args_sha256, pin::sha256(&pin::canonical_object(&raw)), "over the arguments as they came");
    let captured: Value = serde_json::from_str(&tool.capture).unwrap();
    assert_eq!(captured["arguments"], json!({"path": "/srv/a", "auth": {"token": "[redacted]"}}));
    assert_eq!(
        captured["result"]["structuredContent"],
        json!({"rows": [{"ssn": "[redacted]"}, {"ssn": "678-90"}], "token": "[redacted]"})
    );
    assert!(!tool.capture.contains("sk-live") && !tool.capture.contains("123-45"));
}

#[test]
fn a_large_capture_is_bounded() {
    let rows = Arc::new(Rows::default());
    let mut c = call(&rows, &server(true, &[]));
    c.arguments(Some(&args(json!({"text": "€".repeat(10_000)}))));
    drop(c);
    let tool = rows.take().tool.unwrap();
    assert!(tool.capture.len() <= obleth_core::MAX_CAPTURE_BYTES);
    assert!(tool.capture.len() > obleth_core::MAX_CAPTURE_BYTES - 4, "{}", tool.capture.len());
}

#[test]
fn an_upstream_failure_keeps_why_scrubbed_and_bounded() {
    let rows = Arc::new(Rows::default());
    let server = server(true, &[]);
    let mut c = call(&rows, &server);
    c.arguments(None);
    let why = format!(
        "upstream MCP server 'files' failed: error sending request for url (http://10.0.0.5:9000/mcp): {}",
        "é".repeat(600)
    );
    let result = CallToolResult::error(vec![ContentBlock::text(why)]);
    c.answered(&result, Outcome::UpstreamError);
    drop(c);
    let r = rows.take();
    assert_eq!((r.status, r.error_type.as_deref()), (502, Some("upstream_error")));
    let tool = r.tool.unwrap();
    assert!(
        tool.upstream_error.starts_with("upstream MCP server 'files' failed: error sending request for url ([url])")
    );
    assert!(!tool.upstream_error.contains("10.0.0.5"));
    assert!(tool.upstream_error.len() <= obleth_core::MAX_UPSTREAM_ERROR_BYTES, "{}", tool.upstream_error.len());
    assert_eq!(tool.result_bytes, 0, "no result came from the upstream");
    assert_eq!(tool.capture, r#"{"arguments":{},"result":null}"#);
}

#[test]
fn a_tools_own_error_is_its_result_not_an_upstream_error() {
    let rows = Arc::new(Rows::default());
    let mut c = call(&rows, &server(false, &[]));
    let result = CallToolResult::error(vec![ContentBlock::text("no such file: /home/ann/secret")]);
    c.answered(&result, Outcome::ToolError);
    drop(c);
    let r = rows.take();
    assert_eq!((r.status, r.error_type.as_deref()), (200, Some("tool_error")));
    let tool = r.tool.unwrap();
    assert_eq!(tool.upstream_error, "");
    assert_eq!(tool.result_bytes, serde_json::to_vec(&result).unwrap().len() as u64);
}

#[test]
fn calls_that_never_got_an_answer_still_write_their_row() {
    let rows = Arc::new(Rows::default());
    // The client went away mid-call: routed, never answered.
    let mut c = call(&rows, &server(true, &[]));
    c.arguments(Some(&args(json!({"q": 1}))));
    drop(c);
    let r = rows.take();
    assert_eq!((r.status, r.client_disconnected), (499, true));
    let tool = r.tool.unwrap();
    assert_eq!((tool.server.as_str(), tool.result_bytes), ("files", 0));
    assert_eq!(tool.capture, r#"{"arguments":{"q":1},"result":null}"#);

    // An unknown tool: never routed, so no server and no tool-call columns.
    let mut c = ToolCall::new(rows.clone(), &caller(), "nope__x");
    c.finish(Outcome::Unknown);
    drop(c);
    let r = rows.take();
    assert_eq!((r.status, r.tool), (404, None));
}
