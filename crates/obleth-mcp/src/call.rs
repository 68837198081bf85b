//! One tool call's accounting: its ledger row and its place in the server's fair queue.
//!
//! A [`ToolCall`] is made when the call arrives and owns both. It writes exactly one
//! ledger row, in [`Drop`], whatever happens: refused, answered, timed out, or the
//! client gone (the handler's future dropped mid-call). Its slot in the server's
//! scheduler is settled with the measured call time, so tenants share a busy server by
//! the time their calls take (weighted), as they share the model pool by tokens.

use std::sync::Arc;
use std::time::{Duration, Instant};

use obleth_core::admission::{Admission, AdmissionRequest, Admitted, Rejection, TokenEstimate};
use obleth_core::{Model, UsageRecord, UsageSink, now_millis};

use crate::McpCaller;

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
    server: Option<Arc<str>>,
    started: Instant,
    admitted: Option<(Admitted, Instant)>,
    outcome: Option<Outcome>,
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
        ToolCall { record, sink, server: None, started: Instant::now(), admitted: None, outcome: None }
    }

    /// The call was routed to `tool` of `server`.
    pub fn routed(&mut self, server: &str, tool: &str) {
        self.server = Some(server.into());
        self.record.model = self.record.requested_model.clone();
        self.record.upstream_model = Some(tool.to_owned());
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
        if let Some(server) = &self.server {
            crate::telemetry::tool_call(server, outcome.label(), self.started.elapsed());
        }
        self.sink.record(std::mem::take(&mut self.record));
    }
}
