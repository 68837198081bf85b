//! One tool call's accounting: its ledger row and its place in the server's fair queue.
//!
//! A [`ToolCall`] is made when the call arrives and owns both. It writes exactly one
//! ledger row, in [`Drop`], whatever happens: refused, answered, timed out, or the
//! client gone (the handler's future dropped mid-call). Its slot in the server's
//! scheduler is settled with the measured call time, so tenants share a busy server by
//! the time their calls take (weighted), as they share the model pool by tokens.
//!
//! The row's tool-call columns: the server, a hash of the arguments (never the
//! arguments themselves), the size of the result, why the upstream failed, and, only on
//! a server that captures calls, the arguments and result with its `redact_fields`
//! hidden ([`crate::redact`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use obleth_core::admission::{Admission, AdmissionRequest, Admitted, Rejection, TokenEstimate};
use obleth_core::{Model, ToolCallUsage, UsageRecord, UsageSink, now_millis};
use obleth_store::McpServer;
use rmcp::model::CallToolResult;
use serde_json::{Map, Value};

use crate::{McpCaller, pin, redact};

/// The ledger's route of a tool call.
pub const ROUTE: &str = "mcp_tools_call";

/// How a call ended, as the ledger keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The tool ran and reported a failure (`isError`).
    ToolError,
    /// Unknown, not granted, or quarantined (one answer for all three).
    Unknown,
    /// Refused by a limit of the tenant (tool calls per minute or in flight).
    RateLimited,
    QueueFull,
    QueueTimeout,
    UpstreamError,
    UpstreamTimeout,
    /// The client went away before the answer.
    ClientGone,
}

impl Outcome {
    fn status(self) -> u16 {
        match self {
            Outcome::Ok | Outcome::ToolError => 200,
            Outcome::Unknown => 404,
            Outcome::RateLimited | Outcome::QueueFull => 429,
            Outcome::QueueTimeout => 503,
            Outcome::UpstreamError => 502,
            Outcome::UpstreamTimeout => 504,
            Outcome::ClientGone => 499,
        }
    }

    /// The ledger's `error_type` and the metric's outcome label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ToolError => "tool_error",
            Outcome::Unknown => "unknown_tool",
            Outcome::RateLimited => "rate_limited",
            Outcome::QueueFull => "queue_full",
            Outcome::QueueTimeout => "queue_timeout",
            Outcome::UpstreamError => "upstream_error",
            Outcome::UpstreamTimeout => "upstream_timeout",
            Outcome::ClientGone => "client_disconnected",
        }
    }
}

/// One tool call in flight.
pub struct ToolCall {
    record: UsageRecord,
    sink: Arc<dyn UsageSink>,
    /// The server's configuration as the call was routed (a later change of `capture`
    /// or `redact_fields` applies to later calls).
    server: Option<Arc<McpServer>>,
    started: Instant,
    admitted: Option<(Admitted, Instant)>,
    outcome: Option<Outcome>,
    /// The arguments and the result, kept only while the server captures calls.
    captured: Captured,
}

#[derive(Default)]
struct Captured {
    arguments: Option<Map<String, Value>>,
    result: Option<Value>,
}

impl ToolCall {
    /// A call of `name` (as the client named it) by `caller`.
    pub fn new(sink: Arc<dyn UsageSink>, caller: &McpCaller, name: &str) -> ToolCall {
        let record = UsageRecord {
            request_id: uuid::Uuid::now_v7().to_string(),
            received_at: now_millis(),
            tenant_id: Some(caller.tenant.id.clone()),
            key_prefix: Some(caller.key_prefix.to_string()),
            group: Some(caller.tenant.group.clone()),
            route: ROUTE,
            requested_model: Some(name.to_owned()),
            ..UsageRecord::default()
        };
        ToolCall {
            record,
            sink,
            server: None,
            started: Instant::now(),
            admitted: None,
            outcome: None,
            captured: Captured::default(),
        }
    }

    /// The call was routed to `tool` of `server`.
    pub fn routed(&mut self, server: &Arc<McpServer>, tool: &str) {
        self.record.model = self.record.requested_model.clone();
        self.record.upstream_model = Some(tool.to_owned());
        self.record.tool = Some(ToolCallUsage { server: server.name.clone(), ..ToolCallUsage::default() });
        self.server = Some(server.clone());
    }

    /// The call's arguments (absent: `{}`), hashed as they came, before any redaction.
    /// Called after [`ToolCall::routed`]: whether to keep them for a capture is the
    /// server's choice.
    pub fn arguments(&mut self, arguments: Option<&Map<String, Value>>) {
        let canonical = arguments.map_or_else(|| "{}".to_owned(), pin::canonical_object);
        self.tool().args_sha256 = pin::sha256(&canonical);
        if self.capturing() {
            self.captured.arguments = arguments.cloned();
        }
    }

    /// The upstream's result: its size (as serialized) and, when captured, the result.
    pub fn result(&mut self, result: &CallToolResult) {
        let mut bytes = ByteCount(0);
        // Serializing into a counter allocates nothing and cannot fail but on a broken
        // `Serialize`, which would leave the count short.
        let _ = serde_json::to_writer(&mut bytes, result);
        self.tool().result_bytes = bytes.0;
        if self.capturing() {
            self.captured.result = serde_json::to_value(result).ok();
        }
    }

    /// Why the upstream failed: scrubbed of the internal network's addresses (as errors
    /// relayed to clients are) and bounded.
    pub fn upstream_error(&mut self, why: &str) {
        let mut why = obleth_core::relay::relayable_message(why);
        obleth_core::truncate_to_bytes(&mut why, obleth_core::MAX_UPSTREAM_ERROR_BYTES);
        self.tool().upstream_error = why;
    }

    /// The call ended with `result`, as the client gets it. A result of the tool (`Ok`,
    /// `ToolError`) is the upstream's; on a failure of the upstream the result is the
    /// gateway's own message of why, which the row keeps instead. A tool's own error
    /// stays in its result, not in `upstream_error`: that is the tool's output, kept
    /// only by a capture, redacted.
    pub fn answered(&mut self, result: &CallToolResult, outcome: Outcome) {
        match outcome {
            Outcome::Ok | Outcome::ToolError => self.result(result),
            Outcome::UpstreamError | Outcome::UpstreamTimeout => {
                let why: Vec<&str> =
                    result.content.iter().filter_map(|c| c.as_text()).map(|t| t.text.as_str()).collect();
                self.upstream_error(&why.join("\n"));
            }
            Outcome::Unknown
            | Outcome::RateLimited
            | Outcome::QueueFull
            | Outcome::QueueTimeout
            | Outcome::ClientGone => {}
        }
        self.finish(outcome);
    }

    fn tool(&mut self) -> &mut ToolCallUsage {
        self.record.tool.get_or_insert_default()
    }

    fn capturing(&self) -> bool {
        self.server.as_ref().is_some_and(|s| s.capture)
    }

    /// Waits for a slot of the server (its concurrency cap, shared fairly between
    /// tenants); the estimate is the call's timeout, the most it can cost.
    pub async fn admit(
        &mut self,
        admission: &dyn Admission,
        caller: &McpCaller,
        tool: Arc<Model>,
        timeout: Duration,
    ) -> Result<(), Rejection> {
        let estimate = TokenEstimate { input: 0, output: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX) };
        let admitted = admission.admit(AdmissionRequest { tenant: caller.tenant.clone(), model: tool, estimate }).await;
        match admitted {
            Ok(admitted) => {
                self.record.admitted_at = Some(now_millis());
                self.record.queue_wait_ms = u64::try_from(admitted.waited.as_millis()).unwrap_or(u64::MAX);
                self.record.admission_class = admitted.class;
                self.admitted = Some((admitted, Instant::now()));
                Ok(())
            }
            Err(rejection) => {
                self.finish(match rejection {
                    Rejection::QueueFull { .. } => Outcome::QueueFull,
                    _ => Outcome::QueueTimeout,
                });
                Err(rejection)
            }
        }
    }

    pub fn finish(&mut self, outcome: Outcome) {
        self.outcome.get_or_insert(outcome);
    }
}

impl Drop for ToolCall {
    fn drop(&mut self) {
        let outcome = self.outcome.unwrap_or(Outcome::ClientGone);
        if let Some((admitted, since)) = self.admitted.as_mut() {
            // The measured time is the call's cost; at least 1 ms, so that a failing
            // server answering at once still costs its callers something.
            let took = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX).max(1);
            admitted.permit.settle(0, took);
        }
        self.record.finished_at = now_millis();
        self.record.status = outcome.status();
        self.record.error_type = (outcome != Outcome::Ok).then(|| outcome.label().to_owned());
        self.record.client_disconnected = outcome == Outcome::ClientGone;
        match (self.server.clone(), &self.record.upstream_model) {
            (Some(server), Some(tool)) => {
                crate::telemetry::tool_call(&server.name, tool, outcome.label(), self.started.elapsed());
                if server.capture {
                    let captured = std::mem::take(&mut self.captured);
                    let capture = redact::capture(
                        captured.arguments.as_ref(),
                        captured.result.as_ref(),
                        &server.redact_fields,
                        obleth_core::MAX_CAPTURE_BYTES,
                    );
                    self.tool().capture = capture;
                }
            }
            _ => crate::telemetry::tool_call_refused(outcome.label()),
        }
        self.sink.record(std::mem::take(&mut self.record));
    }
}

/// Counts the bytes written to it.
struct ByteCount(u64);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
#[path = "call_tests.rs"]
mod tests;
