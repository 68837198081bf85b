//! Upstream usage, checked before it is billed.
//!
//! The usage an upstream reports decides what a tenant pays, what its budgets are
//! charged and how far behind its fair share it falls. A buggy or hostile backend must
//! not be able to bill `10^15` tokens, a negative count or a float, so every reported
//! count is first read without trusting its type ([`ReportedUsage::from_json`]) and then
//! held against what the request and the response make possible ([`Bounds`]). A count
//! that fails either check is replaced by the gateway's own tokenizer count and the row is
//! marked `tokens_estimated`; the rejection is logged and counted
//! (`obleth_upstream_usage_rejected_total`).

use obleth_core::Usage;
use serde_json::Value;

/// No request is billed more than this many tokens on either side, whatever the model
/// (the largest context windows are about 10 M tokens).
pub const MAX_TOKENS_PER_REQUEST: u64 = 1 << 24;

/// Output tokens a choice may report beyond its `max_tokens`: servers count an end-of-
/// sequence or stop token that the limit does not include.
pub const OUTPUT_MARGIN_PER_CHOICE: u64 = 16;

/// One reported count, as the upstream wrote it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Count {
    /// Not reported (absent or `null`).
    #[default]
    Absent,
    /// A non-negative integer that fits in a `u64`.
    Valid(u64),
    /// Anything else: negative, fractional, too large, a string, an object.
    Invalid,
}

impl Count {
    fn of(v: Option<&Value>) -> Count {
        match v {
            None | Some(Value::Null) => Count::Absent,
            Some(Value::Number(n)) => n.as_u64().map_or(Count::Invalid, Count::Valid),
            Some(_) => Count::Invalid,
        }
    }
}

/// The usage object of a response or of a stream's usage chunk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportedUsage {
    pub input: Count,
    pub output: Count,
    pub cached: Count,
    /// Hidden reasoning tokens (`completion_tokens_details.reasoning_tokens`): part of
    /// the output that no streamed byte carries.
    pub reasoning: Count,
}

impl ReportedUsage {
    /// Reads an OpenAI `usage` object; `None` if there is none (`null` or absent).
    pub fn from_json(v: &Value) -> Option<ReportedUsage> {
        match v {
            Value::Null => None,
            Value::Object(o) => Some(ReportedUsage {
                input: Count::of(o.get("prompt_tokens")),
                output: Count::of(o.get("completion_tokens")),
                cached: Count::of(o.get("prompt_tokens_details").and_then(|d| d.get("cached_tokens"))),
                reasoning: Count::of(o.get("completion_tokens_details").and_then(|d| d.get("reasoning_tokens"))),
            }),
            // A usage that is not an object is reported, and every count in it invalid.
            _ => Some(ReportedUsage {
                input: Count::Invalid,
                output: Count::Invalid,
                cached: Count::Invalid,
                reasoning: Count::Invalid,
            }),
        }
    }
}

/// Extracts `usage` from a whole (non-streamed) response body.
pub fn usage_of_body(body: &[u8]) -> Option<ReportedUsage> {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        usage: Value,
    }
    ReportedUsage::from_json(&serde_json::from_slice::<Body>(body).ok()?.usage)
}

/// What a request and its response make possible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Most input tokens the request can have had.
    pub max_input: u64,
    /// Most output tokens the request allowed.
    pub max_output: u64,
    /// Bytes of the response body: every visible output token arrived in them.
    pub response_bytes: u64,
}

impl Bounds {
    /// `max_tokens` is the per-choice limit the upstream was sent (if any), `choices` the
    /// number of sequences generated (`n`, or `best_of`; 0 for embeddings, which generate
    /// none), `prompts` the number of prompts or inputs in the request (each bounded by
    /// the context window). The response's size is not known yet: see
    /// [`Bounds::with_response_bytes`].
    pub fn new(context_window: Option<u32>, max_tokens: Option<u64>, choices: u64, prompts: u64) -> Bounds {
        let window = context_window.map(u64::from);
        let per_choice = match (max_tokens, window) {
            (Some(m), _) => m.saturating_add(OUTPUT_MARGIN_PER_CHOICE),
            (None, Some(w)) => w,
            (None, None) => MAX_TOKENS_PER_REQUEST,
        };
        let max_output = per_choice.saturating_mul(choices).min(MAX_TOKENS_PER_REQUEST);
        let max_input = window.map_or(MAX_TOKENS_PER_REQUEST, |w| w.saturating_mul(prompts.max(1)));
        Bounds { max_input: max_input.min(MAX_TOKENS_PER_REQUEST), max_output, response_bytes: 0 }
    }

    /// The same bounds for a response of `bytes` bytes.
    pub fn with_response_bytes(self, bytes: usize) -> Bounds {
        Bounds { response_bytes: bytes as u64, ..self }
    }
}

/// Which reported count was not believed, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub field: &'static str,
    pub reason: &'static str,
    /// The reported value, when it was a valid integer.
    pub reported: Option<u64>,
}

/// The usage to bill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub usage: Usage,
    /// Some count is the gateway's own (not reported, or not believed).
    pub estimated: bool,
    pub rejections: Vec<Rejection>,
}

/// Holds `reported` against `bounds`; counts that fail are replaced by `own_input()` and
/// `own_output()` (the gateway's tokenizer counts, computed only if needed).
pub fn check(
    reported: Option<ReportedUsage>,
    bounds: &Bounds,
    own_input: impl FnOnce() -> u64,
    own_output: impl FnOnce() -> u64,
) -> Checked {
    let Some(r) = reported else {
        let output_tokens = own_output().min(bounds.max_output);
        let usage = Usage { input_tokens: own_input(), output_tokens, cached_tokens: 0 };
        return Checked { usage, estimated: true, rejections: Vec::new() };
    };
    let mut rejections = Vec::new();
    let input = input(r.input, bounds, &mut rejections);
    let output = output(r.output, r.reasoning, bounds, &mut rejections);
    let estimated = input.is_none() || output.is_none();
    let input_tokens = input.unwrap_or_else(own_input);
    // The gateway's own count is what was streamed, but never more than the request
    // allowed: a backend that ignores max_tokens is not the tenant's bill.
    let output_tokens = output.unwrap_or_else(|| own_output().min(bounds.max_output));
    let cached_tokens = cached(r.cached, input_tokens, &mut rejections);
    Checked { usage: Usage { input_tokens, output_tokens, cached_tokens }, estimated, rejections }
}

fn reject(rejections: &mut Vec<Rejection>, field: &'static str, reason: &'static str, reported: Option<u64>) {
    rejections.push(Rejection { field, reason, reported });
}

/// The reported prompt tokens, if believed.
fn input(count: Count, bounds: &Bounds, rejections: &mut Vec<Rejection>) -> Option<u64> {
    match count {
        Count::Valid(n) if n <= bounds.max_input => Some(n),
        Count::Valid(n) => {
            reject(rejections, "input", "above_bound", Some(n));
            None
        }
        Count::Invalid => {
            reject(rejections, "input", "invalid", None);
            None
        }
        Count::Absent => None,
    }
}

/// The reported output tokens, if believed.
fn output(count: Count, reasoning: Count, bounds: &Bounds, rejections: &mut Vec<Rejection>) -> Option<u64> {
    let reasoning = match reasoning {
        Count::Valid(n) => n,
        _ => 0,
    };
    match count {
        // Embeddings have no output and report no completion tokens: that is a zero.
        Count::Absent if bounds.max_output == 0 => Some(0),
        Count::Valid(n) if n > bounds.max_output => {
            reject(rejections, "output", "above_bound", Some(n));
            None
        }
        // Every token the client saw arrived in the response's bytes (at least one each);
        // hidden reasoning tokens are bounded by max_output only.
        Count::Valid(n) if n.saturating_sub(reasoning) > bounds.response_bytes => {
            reject(rejections, "output", "above_response_bytes", Some(n));
            None
        }
        Count::Valid(n) => Some(n),
        Count::Invalid => {
            reject(rejections, "output", "invalid", None);
            None
        }
        Count::Absent => None,
    }
}

/// The reported cached prompt tokens, at most the prompt's.
fn cached(count: Count, input_tokens: u64, rejections: &mut Vec<Rejection>) -> u64 {
    match count {
        Count::Valid(n) if n <= input_tokens => n,
        Count::Valid(n) => {
            reject(rejections, "cached", "above_input", Some(n));
            0
        }
        Count::Invalid => {
            reject(rejections, "cached", "invalid", None);
            0
        }
        Count::Absent => 0,
    }
}

#[cfg(test)]
#[path = "usage_tests.rs"]
mod tests;
