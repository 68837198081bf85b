//! Tests of the SSE scanner against a recorded vLLM-style stream, split at every byte.

use super::*;

const FIXTURE: &str = include_str!("../tests/fixtures/chat_stream_usage.sse");

/// The fixture without its usage-only event.
fn without_usage_event() -> String {
    FIXTURE.split_inclusive("\n\n").filter(|e| !e.contains("\"choices\":[]")).collect()
}

fn run(frames: &[&[u8]], drop_usage: bool) -> (Vec<u8>, SseScanner) {
    let mut s = SseScanner::new(drop_usage);
    let mut out = Vec::new();
    for f in frames {
        out.extend_from_slice(&s.push(Bytes::copy_from_slice(f)));
    }
    out.extend_from_slice(&s.finish());
    (out, s)
}

#[test]
fn passes_through_and_reads_usage_at_every_split() {
    let bytes = FIXTURE.as_bytes();
    for cut in 0..=bytes.len() {
        let (out, s) = run(&[&bytes[..cut], &bytes[cut..]], false);
        assert_eq!(out, bytes, "cut at {cut}");
        assert_eq!(s.usage, Some(Usage { input_tokens: 12, output_tokens: 2, cached_tokens: 8 }), "cut at {cut}");
        assert!(s.done);
        assert_eq!(s.content_events, 2, "the role chunk carries no text");
    }
}

#[test]
fn drops_only_the_usage_chunk_at_every_split() {
    let bytes = FIXTURE.as_bytes();
    let expected = without_usage_event();
    for cut in 0..=bytes.len() {
        let (out, s) = run(&[&bytes[..cut], &bytes[cut..]], true);
        assert_eq!(String::from_utf8(out).expect("utf8"), expected, "cut at {cut}");
        assert_eq!(s.usage.map(|u| u.output_tokens), Some(2));
    }
}

#[test]
fn byte_by_byte() {
    let bytes = FIXTURE.as_bytes();
    let frames: Vec<&[u8]> = bytes.chunks(1).collect();
    let (out, s) = run(&frames, true);
    assert_eq!(String::from_utf8(out).expect("utf8"), without_usage_event());
    assert!(s.done);
}

#[test]
fn whole_frames_are_forwarded_without_copy() {
    let mut s = SseScanner::new(false);
    let frame = Bytes::from_static(b"data: {\"choices\":[{\"delta\":{}}]}\n\n");
    let out = s.push(frame.clone());
    assert_eq!(out.as_ptr(), frame.as_ptr());
}

#[test]
fn crlf_separators_and_garbage_are_tolerated() {
    let stream = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\r\n\r\ndata: not json\n\n: comment\n\n";
    let (out, s) = run(&[stream], true);
    assert_eq!(out, b"data: not json\n\n: comment\n\n");
    assert_eq!(s.usage.map(|u| (u.input_tokens, u.output_tokens)), Some((3, 4)));
}

#[test]
fn stream_error_events_are_noticed() {
    let (_, s) = run(&[b"data: {\"error\":{\"message\":\"boom\"}}\n\n"], false);
    assert!(s.upstream_error);
}

#[test]
fn usage_of_whole_body() {
    let body = br#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#;
    assert_eq!(usage_of_body(body), Some(Usage { input_tokens: 5, output_tokens: 7, cached_tokens: 0 }));
    let emb = br#"{"data":[],"usage":{"prompt_tokens":9,"total_tokens":9}}"#;
    assert_eq!(usage_of_body(emb).map(|u| (u.input_tokens, u.output_tokens)), Some((9, 0)));
    assert_eq!(usage_of_body(b"{}"), None);
    assert_eq!(usage_of_body(b"garbage"), None);
}
