//! Tests of the usage checks: what an upstream reports is billed only when it is a
//! plausible non-negative integer.

use serde_json::json;

use super::*;

fn reported(v: serde_json::Value) -> Option<ReportedUsage> {
    ReportedUsage::from_json(&v)
}

const OWN_INPUT: u64 = 11;
const OWN_OUTPUT: u64 = 22;

fn run(r: Option<ReportedUsage>, bounds: Bounds) -> Checked {
    check(r, &bounds, || OWN_INPUT, || OWN_OUTPUT)
}

fn chat_bounds() -> Bounds {
    // max_tokens 100, one choice, one prompt, a 10 KB response, a 4096-token window.
    Bounds::new(Some(4096), Some(100), 1, 1).with_response_bytes(10_000)
}

#[test]
fn counts_are_read_without_trusting_their_type() {
    let r =
        reported(json!({"prompt_tokens": 5, "completion_tokens": -3, "prompt_tokens_details": {"cached_tokens": 2.5}}))
            .expect("usage");
    assert_eq!(r.input, Count::Valid(5));
    assert_eq!(r.output, Count::Invalid);
    assert_eq!(r.cached, Count::Invalid);
    for bad in [json!("12"), json!(12.0), json!(1e300), json!({"a": 1}), json!([1])] {
        let r = reported(json!({"prompt_tokens": bad})).expect("usage");
        assert_eq!(r.input, Count::Invalid, "{bad}");
    }
    assert_eq!(reported(json!(null)), None);
    assert_eq!(reported(json!(7)).map(|r| r.output), Some(Count::Invalid));
    // u64::MAX is a valid integer; the bounds, not the parser, refuse it.
    assert_eq!(reported(json!({"prompt_tokens": u64::MAX})).map(|r| r.input), Some(Count::Valid(u64::MAX)));
}

#[test]
fn plausible_usage_is_billed_as_reported() {
    let c = run(
        reported(json!({"prompt_tokens": 40, "completion_tokens": 100, "prompt_tokens_details": {"cached_tokens": 8}})),
        chat_bounds(),
    );
    assert_eq!(c.usage, Usage { input_tokens: 40, output_tokens: 100, cached_tokens: 8 });
    assert!(!c.estimated);
    assert!(c.rejections.is_empty());
}

#[test]
fn absurd_counts_are_replaced_by_the_gateways_own() {
    // The review's case: 10^15 completion tokens.
    let c = run(reported(json!({"prompt_tokens": 40, "completion_tokens": 1_000_000_000_000_000u64})), chat_bounds());
    assert_eq!(c.usage, Usage { input_tokens: 40, output_tokens: OWN_OUTPUT, cached_tokens: 0 });
    assert!(c.estimated);
    assert_eq!(
        c.rejections,
        [Rejection { field: "output", reason: "above_bound", reported: Some(1_000_000_000_000_000) }]
    );

    // Past max_tokens plus the margin.
    let c = run(
        reported(json!({"prompt_tokens": 40, "completion_tokens": 100 + OUTPUT_MARGIN_PER_CHOICE + 1})),
        chat_bounds(),
    );
    assert_eq!(c.usage.output_tokens, OWN_OUTPUT);
    // Within the margin.
    let c =
        run(reported(json!({"prompt_tokens": 40, "completion_tokens": 100 + OUTPUT_MARGIN_PER_CHOICE})), chat_bounds());
    assert_eq!(c.usage.output_tokens, 116);

    // More input than the context window.
    let c = run(reported(json!({"prompt_tokens": 4097, "completion_tokens": 3})), chat_bounds());
    assert_eq!(c.usage, Usage { input_tokens: OWN_INPUT, output_tokens: 3, cached_tokens: 0 });
    assert_eq!(c.rejections[0].field, "input");

    // Negative, fractional and overflowing counts.
    let c = run(reported(json!({"prompt_tokens": -1, "completion_tokens": 2.0})), chat_bounds());
    assert_eq!(c.usage, Usage { input_tokens: OWN_INPUT, output_tokens: OWN_OUTPUT, cached_tokens: 0 });
    assert_eq!(c.rejections.len(), 2);
    let c = run(reported(json!({"prompt_tokens": 9223372036854775813u64, "completion_tokens": 1})), chat_bounds());
    assert_eq!(c.usage.input_tokens, OWN_INPUT);

    // Cached tokens cannot exceed the input.
    let c = run(
        reported(json!({"prompt_tokens": 10, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 11}})),
        chat_bounds(),
    );
    assert_eq!(c.usage.cached_tokens, 0);
    assert!(!c.estimated, "the billed counts are the reported ones");
}

#[test]
fn output_must_fit_in_the_bytes_streamed() {
    // No max_tokens, no window: only the absolute cap and the bytes bound the output.
    let bounds = Bounds::new(None, None, 1, 1).with_response_bytes(500);
    let c = run(reported(json!({"prompt_tokens": 10, "completion_tokens": 501})), bounds);
    assert_eq!(c.usage.output_tokens, OWN_OUTPUT);
    assert_eq!(c.rejections[0].reason, "above_response_bytes");
    // Hidden reasoning tokens are not in the bytes.
    let c = run(
        reported(
            json!({"prompt_tokens": 10, "completion_tokens": 2500, "completion_tokens_details": {"reasoning_tokens": 2100}}),
        ),
        bounds,
    );
    assert_eq!(c.usage.output_tokens, 2500);
}

#[test]
fn bounds_follow_the_request() {
    let b = Bounds::new(Some(1000), Some(50), 4, 1).with_response_bytes(1 << 20);
    assert_eq!(b.max_output, (50 + OUTPUT_MARGIN_PER_CHOICE) * 4);
    assert_eq!(b.max_input, 1000);
    // Without max_tokens each choice may fill the window.
    assert_eq!(Bounds::new(Some(1000), None, 2, 1).max_output, 2000);
    // Three prompts, each up to the window.
    assert_eq!(Bounds::new(Some(1000), None, 1, 3).max_input, 3000);
    // Nothing known: the absolute cap.
    let b = Bounds::new(None, None, 1, 1);
    assert_eq!((b.max_input, b.max_output), (MAX_TOKENS_PER_REQUEST, MAX_TOKENS_PER_REQUEST));
    assert_eq!(Bounds::new(None, Some(u64::MAX), 128, 1).max_output, MAX_TOKENS_PER_REQUEST);
}

#[test]
fn embeddings_report_no_output() {
    let bounds = Bounds::new(Some(512), None, 0, 2).with_response_bytes(4000);
    let c = run(reported(json!({"prompt_tokens": 9, "total_tokens": 9})), bounds);
    assert_eq!(c.usage, Usage { input_tokens: 9, output_tokens: 0, cached_tokens: 0 });
    assert!(!c.estimated);
    let c = run(reported(json!({"prompt_tokens": 9, "completion_tokens": 5})), bounds);
    assert_eq!(c.usage.output_tokens, 0, "an embedding has no output tokens to report");
    assert!(c.estimated);
}

#[test]
fn the_gateways_count_is_bounded_by_the_request_too() {
    // A backend that ignores max_tokens streamed far more than was asked for.
    let c = check(None, &chat_bounds(), || 5, || 100_000);
    assert_eq!(c.usage.output_tokens, 100 + OUTPUT_MARGIN_PER_CHOICE);
    let c = check(reported(json!({"prompt_tokens": 5, "completion_tokens": -1})), &chat_bounds(), || 5, || 100_000);
    assert_eq!(c.usage.output_tokens, 100 + OUTPUT_MARGIN_PER_CHOICE);
}

#[test]
fn no_usage_is_the_gateways_count() {
    let c = run(None, chat_bounds());
    assert_eq!(c.usage, Usage { input_tokens: OWN_INPUT, output_tokens: OWN_OUTPUT, cached_tokens: 0 });
    assert!(c.estimated);
    assert!(c.rejections.is_empty());
}

#[test]
fn usage_of_whole_body() {
    let body = br#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#;
    let r = usage_of_body(body).expect("usage");
    assert_eq!((r.input, r.output), (Count::Valid(5), Count::Valid(7)));
    let emb = br#"{"data":[],"usage":{"prompt_tokens":9,"total_tokens":9}}"#;
    assert_eq!(usage_of_body(emb).map(|u| u.output), Some(Count::Absent));
    assert_eq!(usage_of_body(b"{}"), None);
    assert_eq!(usage_of_body(br#"{"usage":null}"#), None);
    assert_eq!(usage_of_body(b"garbage"), None);
}
