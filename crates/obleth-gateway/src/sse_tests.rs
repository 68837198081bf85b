//! Tests of the SSE scanner against a recorded vLLM-style stream, split at every byte.

use super::*;
use crate::usage::Count;

const FIXTURE: &str = include_str!("../tests/fixtures/chat_stream_usage.sse");

/// The fixture without its usage-only event.
fn without_usage_event() -> String {
    FIXTURE.split_inclusive("\n\n").filter(|e| !e.contains("\"choices\":[]")).collect()
}

fn run(frames: &[&[u8]], drop_usage: bool) -> (Vec<u8>, SseScanner) {
    let mut s = SseScanner::new(drop_usage, DEFAULT_MAX_EVENT);
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
        let u = s.usage.expect("usage");
        assert_eq!((u.input, u.output, u.cached), (Count::Valid(12), Count::Valid(2), Count::Valid(8)), "cut at {cut}");
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
        assert_eq!(s.usage.map(|u| u.output), Some(Count::Valid(2)));
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
    let mut s = SseScanner::new(false, DEFAULT_MAX_EVENT);
    let frame = Bytes::from_static(b"data: {\"choices\":[{\"delta\":{}}]}\n\n");
    let out = s.push(frame.clone());
    assert_eq!(out.as_ptr(), frame.as_ptr());
}

#[test]
fn crlf_separators_and_garbage_are_tolerated() {
    let stream = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\r\n\r\ndata: not json\n\n: comment\n\n";
    let (out, s) = run(&[stream], true);
    assert_eq!(out, b"data: not json\n\n: comment\n\n");
    assert_eq!(s.usage.map(|u| (u.input, u.output)), Some((Count::Valid(3), Count::Valid(4))));
}

#[test]
fn stream_error_events_are_noticed() {
    let (_, s) = run(&[b"data: {\"error\":{\"message\":\"boom\"}}\n\n"], false);
    assert!(s.upstream_error);
}

#[test]
fn unterminated_events_pass_through_as_they_come() {
    // A long event goes out as it arrives, a copy is kept only to parse it at its end.
    let mut s = SseScanner::new(false, DEFAULT_MAX_EVENT);
    let mut head = b"data: {\"choices\":[{\"delta\":{\"content\":\"".to_vec();
    head.extend(std::iter::repeat_n(b'h', HOLD_MAX));
    let head = Bytes::from(head);
    let out = s.push(head.clone());
    assert_eq!(out.as_ptr(), head.as_ptr(), "forwarded at once, without a copy");
    assert_eq!(&s.push(Bytes::from_static(b"\"}}]}\n"))[..], b"\"}}]}\n");
    assert_eq!(&s.push(Bytes::from_static(b"\n"))[..], b"\n");
    assert_eq!(s.text.len(), HOLD_MAX, "the event was still parsed once it ended");
    // A short one may be an error event to rewrite: it waits for its end (microseconds,
    // from a backend that splits an event).
    assert!(s.push(Bytes::from_static(b"data: {\"choices\":[{\"delta\":{\"content\":\"he")).is_empty());
    assert_eq!(
        &s.push(Bytes::from_static(b"llo\"}}]}\n\n"))[..],
        b"data: {\"choices\":[{\"delta\":{\"content\":\"hello\"}}]}\n\n"
    );
}

#[test]
fn a_held_event_is_released_once_it_cannot_be_the_usage_chunk() {
    let mut s = SseScanner::new(true, DEFAULT_MAX_EVENT);
    let mut event = b"data: {\"choices\":[{\"delta\":{\"content\":\"".to_vec();
    event.extend(std::iter::repeat_n(b'x', HOLD_MAX));
    let (head, rest) = event.split_at(100);
    assert!(s.push(Bytes::copy_from_slice(head)).is_empty(), "small: it might be the usage chunk");
    let out = s.push(Bytes::copy_from_slice(rest));
    assert_eq!(&out[..], &event[..], "past HOLD_MAX the held bytes go out first, in order");
    let out = s.push(Bytes::from_static(b"\"}}]}\n\n"));
    assert_eq!(&out[..], b"\"}}]}\n\n");
    assert_eq!(s.text.len(), HOLD_MAX);
}

#[test]
fn an_event_longer_than_the_limit_overflows() {
    let mut s = SseScanner::new(false, 1024);
    let ok = Bytes::from_static(b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n");
    assert_eq!(s.push(ok.clone()), ok);
    // 600 bytes at a time, never terminated: held while it is small, then gone past the limit.
    let junk = Bytes::from(vec![b'x'; 600]);
    let mut sent = s.push(Bytes::from_static(b"data: ")).len();
    sent += s.push(junk.clone()).len();
    assert!(!s.overflowed);
    let out = s.push(junk.clone());
    assert!(s.overflowed);
    assert!(out.is_empty(), "nothing past the limit is forwarded");
    assert_eq!(sent, 0, "606 bytes are small enough to be held");
    assert!(s.push(junk).is_empty(), "nothing after an overflow either");
    assert_eq!(s.close(), b"", "the client saw none of it");
    assert!(s.pending.capacity() <= 1024, "the buffer was let go");
}

#[test]
fn a_held_oversized_event_is_never_sent() {
    let mut s = SseScanner::new(true, 1024);
    assert!(s.push(Bytes::from_static(b"data: {\"x\":1")).is_empty());
    assert!(s.push(Bytes::from(vec![b' '; 2000])).is_empty());
    assert!(s.overflowed);
    assert_eq!(s.close(), b"", "the client saw none of it");
}

#[test]
fn each_byte_is_scanned_once() {
    // A 64 MiB unterminated event in 16 KiB frames: a rescan from the event's start on
    // every frame would look at about 128 GiB; this finishes at once and keeps 1 MiB.
    let mut s = SseScanner::new(false, DEFAULT_MAX_EVENT);
    let frame = Bytes::from(vec![b'x'; 16 * 1024]);
    let mut forwarded = 0;
    for _ in 0..4096 {
        forwarded += s.push(frame.clone()).len();
        if s.overflowed {
            break;
        }
    }
    assert!(s.overflowed);
    assert_eq!(forwarded, DEFAULT_MAX_EVENT);
    assert!(s.pending.len() <= DEFAULT_MAX_EVENT);
}

#[test]
fn separators_split_across_frames() {
    for sep in [&b"\n\n"[..], b"\r\n\r\n", b"\n\r\n"] {
        let mut stream = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}".to_vec();
        stream.extend_from_slice(sep);
        stream.extend_from_slice(b"data: [DONE]");
        stream.extend_from_slice(sep);
        for cut in 0..=stream.len() {
            let (out, s) = run(&[&stream[..cut], &stream[cut..]], true);
            assert!(s.done, "cut {cut}");
            assert!(s.usage.is_some(), "cut {cut}");
            assert!(out.starts_with(b"data: [DONE]"), "cut {cut}: {}", String::from_utf8_lossy(&out));
        }
    }
}

#[test]
fn closing_mid_event() {
    // Held (it may be the usage chunk): dropped, nothing to close.
    let mut s = SseScanner::new(true, DEFAULT_MAX_EVENT);
    assert!(s.push(Bytes::from_static(b"data: {\"choices\":[")).is_empty());
    assert_eq!(s.close(), b"");
    // Partly sent: closed, so that the error event that follows is an event of its own.
    let mut s = SseScanner::new(false, DEFAULT_MAX_EVENT);
    assert!(!s.push(Bytes::from(vec![b'x'; HOLD_MAX + 1])).is_empty());
    assert_eq!(s.close(), b"\n\n");
    // Between events: nothing.
    let mut s = SseScanner::new(false, DEFAULT_MAX_EVENT);
    s.push(Bytes::from_static(b"data: {}\n\n"));
    assert_eq!(s.close(), b"");
}

#[test]
fn upstream_error_events_are_scrubbed() {
    let event = b"data: {\"error\":{\"message\":\"litellm.APIConnectionError: http://10.1.2.3:8000/v1 refused\",\"type\":\"APIConnectionError\",\"code\":502,\"internal\":\"x\"}}\n\n";
    let before = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n";
    let mut stream = before.to_vec();
    stream.extend_from_slice(event);
    stream.extend_from_slice(b"data: [DONE]\n\n");
    for drop_usage in [false, true] {
        for cut in [0, before.len() + 10, stream.len()] {
            let (out, s) = run(&[&stream[..cut], &stream[cut..]], drop_usage);
            let text = String::from_utf8(out).expect("utf8");
            assert!(s.upstream_error);
            assert!(!text.contains("10.1.2.3"), "{text}");
            assert!(!text.contains("internal"), "{text}");
            assert!(text.starts_with(std::str::from_utf8(before).expect("utf8")), "order kept: {text}");
            assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
            let (events, _) = events(&text);
            let e = &events[1]["error"];
            assert_eq!(e["type"], "APIConnectionError");
            assert_eq!(e["code"], 502);
            assert!(e["message"].as_str().expect("message").contains("refused"), "{e}");
        }
    }
}

/// The JSON of each `data:` event (without `[DONE]`).
fn events(text: &str) -> (Vec<serde_json::Value>, bool) {
    let mut out = vec![];
    let mut done = false;
    for e in text.split("\n\n") {
        if let Some(d) = e.strip_prefix("data: ") {
            if d == "[DONE]" {
                done = true;
            } else {
                out.push(serde_json::from_str(d).expect("json"));
            }
        }
    }
    (out, done)
}
