//! The per-request record, filled in along the hot path.
//!
//! A [`Tracker`] is created when a request arrives; the request's [`Charge`] owns it and
//! emits it exactly once, when the charge is dropped (see `charge.rs`), so every request
//! leaves one row whatever path it took: an early refusal, an upstream failure, a
//! finished stream, or a client that left.
//!
//! [`Charge`]: crate::charge::Charge

use std::sync::Arc;
use std::time::Instant;

use obleth_core::{AdmissionClass, Model, Usage, UsageRecord, UsageSink, now_millis};

use crate::Route;
use crate::error::ApiError;
use crate::identity::Caller;
use crate::listener::ConnState;
use crate::telemetry;

/// Status recorded for a client that went away before the response ended (nginx's 499).
pub const CLIENT_CLOSED: u16 = 499;

pub struct Tracker {
    sink: Arc<dyn UsageSink>,
    route: Route,
    started: Instant,
    record: UsageRecord,
    /// Set once the outcome is known; a tracker emitted while unset was abandoned.
    settled: bool,
    /// The client's connection: tells a client that stopped reading from one that left.
    conn: Option<Arc<ConnState>>,
}

impl Tracker {
    pub fn new(sink: Arc<dyn UsageSink>, route: Route, request_id: String, conn: Option<Arc<ConnState>>) -> Self {
        telemetry::request_started();
        Tracker {
            sink,
            route,
            started: Instant::now(),
            record: UsageRecord {
                request_id,
                received_at: now_millis(),
                route: route.as_str(),
                status: CLIENT_CLOSED,
                ..UsageRecord::default()
            },
            settled: false,
            conn,
        }
    }

    pub fn request_id(&self) -> &str {
        &self.record.request_id
    }

    pub fn caller(&mut self, caller: &Caller) {
        self.record.tenant_id = Some(caller.tenant.id.clone());
        self.record.group = Some(caller.tenant.group.clone());
        self.record.key_prefix = Some(caller.key_prefix.to_string());
    }

    pub fn model(&mut self, model: &Model) {
        self.record.model = Some(model.model_name.clone());
        self.record.upstream_model = Some(model.upstream_model.clone());
    }

    pub fn requested_model(&mut self, requested: &str) {
        self.record.requested_model = Some(requested.to_owned());
    }

    pub fn admitted(&mut self, class: AdmissionClass, waited: std::time::Duration) {
        self.record.admitted_at = Some(now_millis());
        self.record.admission_class = class;
        self.record.queue_wait_ms = waited.as_millis() as u64;
        telemetry::admission(class.as_str(), waited);
    }

    pub fn streamed(&mut self) {
        self.record.streamed = true;
    }

    pub fn first_token(&mut self) {
        if self.record.first_token_at.is_none() {
            self.record.first_token_at = Some(now_millis());
        }
    }

    /// The request ended with `status`, billed `usage` (`estimated` if any count is the
    /// gateway's own).
    pub fn succeeded(&mut self, status: u16, usage: Usage, estimated: bool) {
        self.record.usage = Some(usage);
        self.record.tokens_estimated = estimated;
        self.record.status = status;
        self.settled = true;
    }

    /// The request was refused or failed with `error`.
    pub fn failed(&mut self, error: &ApiError) {
        self.record.status = error.status().as_u16();
        self.record.error_type = Some(error.code.as_str().to_owned());
        self.settled = true;
        telemetry::request_error(error.code);
    }

    /// The cost of the billed usage (set by the charge, which prices it once).
    pub fn cost(&mut self, cost: f64) {
        if self.record.usage.is_some() {
            self.record.cost = cost;
        }
    }

    /// Emits the record and the request's metrics.
    pub fn emit(mut self) {
        if !self.settled {
            self.record.client_disconnected = true;
            self.record.status = CLIENT_CLOSED;
            if self.conn.as_ref().is_some_and(|c| c.stalled()) {
                // Cut by the gateway: the client stopped reading (limits.client_stall_timeout).
                self.record.error_type = Some("client_stalled".to_owned());
            }
        }
        self.record.finished_at = now_millis();
        if let Some(u) = &self.record.usage {
            telemetry::tokens(u.input_tokens, u.output_tokens);
        }
        telemetry::request_finished(self.route.as_str(), self.record.status, self.started.elapsed());
        self.sink.record(self.record);
    }
}
