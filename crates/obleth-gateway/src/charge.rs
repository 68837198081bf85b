//! One charge per request: what a request holds and what it will be billed, settled once.
//!
//! A [`Charge`] is made when a request arrives, around its [`Tracker`]. Once the request
//! is admitted it also holds the scheduler's slot ([`Admitted`]), the budget's
//! reservation ([`Held`]) and the model they are priced at. Along the way the pipeline
//! tells it what the request would cost if it ended now: its prompt once admitted (a
//! request that fails later cost its prompt: the backend may have read it), nothing
//! when the backend was never reached or refused it, the checked usage once known, or
//! what a stream produced before it broke off. The charge travels into a streamed
//! response's body, so the stream carries it instead of repeating the accounting.
//!
//! When the charge is dropped (the answer is sent, the stream ended or the client left),
//! it prices that usage once and reports it to the slot and the reservation, then emits
//! the tracker's row. That drop is the one place a request is settled.

use std::sync::Arc;

use obleth_budget::{Held, to_nanos};
use obleth_core::{Admitted, Model, Usage};

use crate::error::ApiError;
use crate::identity::Caller;
use crate::telemetry;
use crate::tracker::Tracker;
use crate::usage::Checked;

/// A request's record, slot, reservation and model (see the module docs). A charge
/// taken by [`Charge::take`] is empty and settles nothing.
pub struct Charge(Option<Inner>);

struct Inner {
    tracker: Tracker,
    hold: Option<Hold>,
}

/// What an admitted request holds.
struct Hold {
    admitted: Admitted,
    held: Held,
    model: Arc<Model>,
    /// What the request is billed if it ends now.
    usage: Usage,
}

impl Charge {
    pub fn new(tracker: Tracker) -> Self {
        Charge(Some(Inner { tracker, hold: None }))
    }

    /// The charge, moved out (into a response body); this one is left empty.
    pub fn take(&mut self) -> Charge {
        Charge(self.0.take())
    }

    fn record(&mut self, f: impl FnOnce(&mut Tracker)) {
        if let Some(inner) = self.0.as_mut() {
            f(&mut inner.tracker);
        }
    }

    pub fn request_id(&self) -> &str {
        self.0.as_ref().map_or("", |i| i.tracker.request_id())
    }

    pub fn caller(&mut self, caller: &Caller) {
        self.record(|t| t.caller(caller));
    }

    pub fn requested(&mut self, model: &str) {
        self.record(|t| t.requested_model(model));
    }

    pub fn model(&mut self, model: &Model) {
        self.record(|t| t.model(model));
    }

    pub fn streamed(&mut self) {
        self.record(Tracker::streamed);
    }

    pub fn first_token(&mut self) {
        self.record(Tracker::first_token);
    }

    /// The request got its slot and its reservation; until its outcome is known it
    /// costs its prompt.
    pub fn admitted(&mut self, admitted: Admitted, held: Held, model: Arc<Model>, prompt: u64) {
        let Some(inner) = self.0.as_mut() else { return };
        inner.tracker.admitted(admitted.class, admitted.waited);
        let usage = Usage { input_tokens: prompt, ..Usage::default() };
        inner.hold = Some(Hold { admitted, held, model, usage });
    }

    /// The backend produced nothing for this request (never reached, or refused it).
    pub fn nothing_produced(&mut self) {
        self.spent(Usage::default());
    }

    /// What the request produced so far (a stream that broke off).
    pub fn spent(&mut self, usage: Usage) {
        if let Some(hold) = self.0.as_mut().and_then(|i| i.hold.as_mut()) {
            hold.usage = usage;
        }
    }

    /// The request was refused or failed.
    pub fn failed(&mut self, error: &ApiError) {
        self.record(|t| t.failed(error));
    }

    /// The request succeeded with `status`; bills the checked usage, and counts and
    /// logs what the upstream reported that was not believed.
    pub fn succeeded(&mut self, status: u16, checked: Checked) {
        let Some(inner) = self.0.as_mut() else { return };
        for r in &checked.rejections {
            telemetry::usage_rejected(r.field, r.reason);
        }
        if !checked.rejections.is_empty() {
            tracing::warn!(
                request_id = inner.tracker.request_id(),
                model = inner.hold.as_ref().map_or("-", |h| h.model.model_name.as_str()),
                rejected = ?checked.rejections,
                "the model backend reported usage that is not plausible; billing the gateway's own count"
            );
        }
        inner.tracker.succeeded(status, checked.usage, checked.estimated);
        if let Some(hold) = inner.hold.as_mut() {
            hold.usage = checked.usage;
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        let Some(Inner { mut tracker, hold }) = self.0.take() else { return };
        if let Some(Hold { mut admitted, mut held, model, usage }) = hold {
            let (input, output) = (usage.input_tokens, usage.output_tokens);
            let cost = model.cost(input, output);
            admitted.permit.settle(input, output);
            held.settle(input.saturating_add(output), to_nanos(cost));
            tracker.cost(cost);
            // The slot and the reservation are released before the row is written.
            drop(admitted);
            drop(held);
        }
        tracker.emit();
    }
}
