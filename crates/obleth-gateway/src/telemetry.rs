//! Named telemetry events of the data plane.
//!
//! Business logic calls these functions, never the `metrics` macros directly, so that
//! every metric name and label set is defined once, here, and documented in the README.

use std::time::Duration;

use metrics::{counter, gauge, histogram};

/// Metric names, for the exporter's bucket configuration and the docs.
pub mod names {
    pub const REQUESTS: &str = "obleth_requests_total";
    pub const REQUEST_ERRORS: &str = "obleth_request_errors_total";
    pub const REQUEST_DURATION: &str = "obleth_request_duration_seconds";
    pub const IN_FLIGHT: &str = "obleth_in_flight_requests";
    pub const UPSTREAM_LATENCY: &str = "obleth_upstream_latency_seconds";
    pub const UPSTREAM_TTFT: &str = "obleth_upstream_first_chunk_seconds";
    pub const KEY_CACHE: &str = "obleth_key_cache_lookups_total";
    pub const TOKENS: &str = "obleth_tokens_total";
    pub const ADMISSIONS: &str = "obleth_admissions_total";
    pub const QUEUE_WAIT: &str = "obleth_queue_wait_seconds";
    pub const USAGE_REJECTED: &str = "obleth_upstream_usage_rejected_total";
    pub const SSE_EVENTS_TOO_LARGE: &str = "obleth_sse_events_too_large_total";
    pub const RESPONSES_TOO_LARGE: &str = "obleth_upstream_responses_too_large_total";
    pub const CONNECTIONS_OPEN: &str = "obleth_connections_open";
    pub const CONNECTIONS_ACCEPTED: &str = "obleth_connections_accepted_total";
    pub const CONNECTIONS_CUT: &str = "obleth_connections_cut_total";

    /// The histograms, all measured in seconds.
    pub const HISTOGRAMS: &[&str] = &[REQUEST_DURATION, UPSTREAM_LATENCY, UPSTREAM_TTFT, QUEUE_WAIT];
}

/// A request entered the data plane.
pub fn request_started() {
    gauge!(names::IN_FLIGHT).increment(1.0);
}

/// A request left the data plane (its response ended, failed, or its client went away).
pub fn request_finished(route: &'static str, status: u16, duration: Duration) {
    gauge!(names::IN_FLIGHT).decrement(1.0);
    counter!(names::REQUESTS, "route" => route, "status" => status_label(status)).increment(1);
    histogram!(names::REQUEST_DURATION, "route" => route).record(duration.as_secs_f64());
}

/// A request was refused or failed, by the error table's label and source.
pub fn request_error(code: crate::error::ErrorCode) {
    let spec = code.spec();
    counter!(names::REQUEST_ERRORS, "code" => spec.label, "source" => spec.source.as_str()).increment(1);
}

/// The upstream answered with response headers.
pub fn upstream_responded(route: &'static str, latency: Duration) {
    histogram!(names::UPSTREAM_LATENCY, "route" => route).record(latency.as_secs_f64());
}

/// The first body chunk of a streamed response arrived from the upstream.
pub fn upstream_first_chunk(route: &'static str, since_sent: Duration) {
    histogram!(names::UPSTREAM_TTFT, "route" => route).record(since_sent.as_secs_f64());
}

/// One key-cache lookup: `hit`, `miss` or `negative_hit`.
pub fn key_cache(result: &'static str) {
    counter!(names::KEY_CACHE, "result" => result).increment(1);
}

/// Tokens of a finished request.
pub fn tokens(input: u64, output: u64) {
    counter!(names::TOKENS, "kind" => "input").increment(input);
    counter!(names::TOKENS, "kind" => "output").increment(output);
}

/// A request was admitted (or refused) by the scheduler.
pub fn admission(class: &'static str, waited: Duration) {
    counter!(names::ADMISSIONS, "class" => class).increment(1);
    histogram!(names::QUEUE_WAIT).record(waited.as_secs_f64());
}

/// A count the upstream reported was not believed (`field`: input, output, cached;
/// `reason`: invalid, above_bound, above_response_bytes, above_input).
pub fn usage_rejected(field: &'static str, reason: &'static str) {
    counter!(names::USAGE_REJECTED, "field" => field, "reason" => reason).increment(1);
}

/// A streamed event outgrew `limits.max_sse_event_bytes`; its stream was ended.
pub fn sse_event_too_large() {
    counter!(names::SSE_EVENTS_TOO_LARGE).increment(1);
}

/// A response outgrew `limits.max_response_bytes` (`streamed` or not).
pub fn response_too_large(route: &'static str) {
    counter!(names::RESPONSES_TOO_LARGE, "route" => route).increment(1);
}

/// A listener's open connections and how many it accepted (set at scrape time).
pub fn connections(listener: &'static str, open: usize, accepted: u64) {
    gauge!(names::CONNECTIONS_OPEN, "listener" => listener).set(open as f64);
    counter!(names::CONNECTIONS_ACCEPTED, "listener" => listener).absolute(accepted);
}

/// A connection was cut (`reason`: over_capacity, idle_timeout, header_timeout,
/// body_timeout, client_stalled).
pub fn connection_cut(listener: &'static str, reason: &'static str) {
    counter!(names::CONNECTIONS_CUT, "listener" => listener, "reason" => reason).increment(1);
}

/// Status codes as static labels, so that recording allocates nothing.
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        499 => "499",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        s if s < 300 => "2xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}
