//! Server-sent-event scanning for streamed responses.
//!
//! The proxy forwards upstream frames as they arrive. It scans them to find the usage
//! the upstream reports and, when the client did not ask for usage (the gateway asked
//! for it on the client's behalf), to drop the extra usage-only chunk.
//!
//! The scanner is built for an upstream that is buggy or hostile:
//! - each byte is looked at once: the search for an event's end resumes where it stopped,
//!   with the last newline carried across frames;
//! - only the event that is still unterminated is kept (to parse it once it ends), and
//!   only up to `max_event` bytes: a longer event sets [`SseScanner::overflowed`] and the
//!   proxy ends the stream with an error event;
//! - bytes reach the client as they come. An unterminated event is held back only while it
//!   is small ([`HOLD_MAX`]), since it may be the usage-only chunk to drop or an error event
//!   to rewrite; a longer one goes out as it arrives. A frame made of whole events that
//!   needs no change is forwarded as the very same `Bytes` (no copy);
//! - an `error` event the upstream sends is rewritten before the client sees it: its
//!   message bounded and cleared of URLs and addresses (they name the gateway's internal
//!   network), as for error bodies that are not streamed.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;

use crate::usage::ReportedUsage;

/// Output text kept per stream for the fallback count; beyond it the count is short
/// (and marked estimated anyway).
pub const MAX_TEXT: usize = 1 << 20;

/// The longest unterminated event held back from the client because it might be the
/// usage-only chunk or an error event (a few hundred bytes each).
pub const HOLD_MAX: usize = 4 * 1024;

/// The default bound on one event (`limits.max_sse_event_bytes`).
pub const DEFAULT_MAX_EVENT: usize = 1 << 20;

/// What becomes of one event.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Forward,
    Drop,
    Replace(Bytes),
}

/// Where the scan stands in the separator that ends an event (`\n\n` or `\n\r\n`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Newline {
    #[default]
    None,
    /// The last byte was `\n`.
    Lf,
    /// The last bytes were `\n\r`.
    LfCr,
}

/// Incremental scanner of one SSE response.
#[derive(Debug)]
pub struct SseScanner {
    /// The unterminated event's bytes from earlier frames (and this one's tail), kept to
    /// parse it when it ends. Events that start and end in one frame are parsed in place.
    pending: BytesMut,
    /// Bytes of the unterminated event seen so far.
    event_len: usize,
    /// Whether some of the unterminated event already went to the client (then it is
    /// forwarded to its end, whatever it turns out to be).
    event_forwarded: bool,
    newline: Newline,
    /// Drop the usage-only chunk (the client did not ask for usage).
    drop_usage_chunk: bool,
    max_event: usize,
    /// The last usage the upstream reported.
    pub usage: Option<ReportedUsage>,
    /// Data events carrying output text.
    pub content_events: u64,
    /// The output text streamed so far (up to [`MAX_TEXT`]), for counting its tokens
    /// when the upstream reports no usage.
    pub text: String,
    /// Whether `data: [DONE]` was seen.
    pub done: bool,
    /// An `error` object the upstream sent inside the stream.
    pub upstream_error: bool,
    /// An event outgrew `max_event`: the stream must end (see [`SseScanner::close`]).
    pub overflowed: bool,
}

impl SseScanner {
    pub fn new(drop_usage_chunk: bool, max_event: usize) -> Self {
        SseScanner {
            pending: BytesMut::new(),
            event_len: 0,
            event_forwarded: false,
            newline: Newline::None,
            drop_usage_chunk,
            max_event: max_event.max(1),
            usage: None,
            content_events: 0,
            text: String::new(),
            done: false,
            upstream_error: false,
            overflowed: false,
        }
    }

    /// Feeds one upstream frame and returns what to forward to the client now. After
    /// [`SseScanner::overflowed`] is set, nothing more is scanned or forwarded.
    pub fn push(&mut self, frame: Bytes) -> Bytes {
        if self.overflowed {
            return Bytes::new();
        }
        let mut out = Output::default();
        let mut start = 0;
        let mut last = None;
        for i in memchr::memchr2_iter(b'\n', b'\r', &frame) {
            // Any other byte since the last newline breaks a separator.
            if last.map_or(i != 0, |j: usize| j + 1 != i) {
                self.newline = Newline::None;
            }
            last = Some(i);
            if !self.ends_event(frame[i]) {
                continue;
            }
            let end = i + 1;
            if !self.complete_event(&frame, start, end, &mut out) {
                return out.finish(&frame);
            }
            start = end;
        }
        if frame.last().is_some_and(|b| !matches!(b, b'\n' | b'\r')) {
            self.newline = Newline::None;
        }
        if start < frame.len() {
            self.event_tail(&frame, start, &mut out);
        }
        out.finish(&frame)
    }

    /// The bound on one event.
    pub fn max_event(&self) -> usize {
        self.max_event
    }

    /// Called at the end of the stream: returns the held tail of an unterminated event.
    pub fn finish(&mut self) -> Bytes {
        if self.overflowed || self.event_len == 0 {
            return Bytes::new();
        }
        let rest = self.pending.split().freeze();
        let verdict = self.inspect(&rest);
        let held = !self.event_forwarded;
        self.reset_event();
        match verdict {
            _ if !held => Bytes::new(),
            Verdict::Replace(with) => with,
            // An unterminated tail is forwarded as it came, even a usage chunk.
            Verdict::Forward | Verdict::Drop => rest,
        }
    }

    /// What the client needs before an error event when the stream is cut short: the
    /// end of an event it received only part of.
    pub fn close(&mut self) -> &'static [u8] {
        let partial = self.event_forwarded && self.event_len > 0;
        self.pending = BytesMut::new();
        self.reset_event();
        if partial { b"\n\n" } else { b"" }
    }

    /// Advances the separator state by one `\n` or `\r`; true if it ends an event.
    fn ends_event(&mut self, b: u8) -> bool {
        let ends = b == b'\n' && self.newline != Newline::None;
        self.newline = match (b, self.newline) {
            (b'\n', Newline::None) => Newline::Lf,
            (b'\r', Newline::Lf) => Newline::LfCr,
            _ => Newline::None,
        };
        ends
    }

    /// An event ends at `frame[..end]` (its part in this frame starts at `start`). Returns
    /// false if it was too large (the stream must end).
    fn complete_event(&mut self, frame: &Bytes, start: usize, end: usize, out: &mut Output) -> bool {
        self.event_len += end - start;
        if self.event_len > self.max_event {
            self.overflow(start, out);
            return false;
        }
        let verdict = if self.pending.is_empty() {
            self.inspect(&frame[start..end])
        } else {
            // The event began in an earlier frame (so `start` is 0); its first bytes are
            // in `pending`, sent already or held back.
            let mut event = std::mem::take(&mut self.pending);
            let earlier = event.len();
            event.extend_from_slice(&frame[start..end]);
            let verdict = self.inspect(&event);
            if verdict == Verdict::Forward && !self.event_forwarded {
                out.prefix = Some(event.split_to(earlier).freeze());
            }
            event.clear();
            self.pending = event;
            verdict
        };
        // An event the client already has part of goes on as it is.
        if !self.event_forwarded {
            match verdict {
                Verdict::Forward => {}
                Verdict::Drop => out.cuts.push((start, end, None)),
                Verdict::Replace(with) => out.cuts.push((start, end, Some(with))),
            }
        }
        self.reset_event();
        true
    }

    /// The unterminated tail `frame[start..]`: kept to parse, and held or forwarded.
    fn event_tail(&mut self, frame: &Bytes, start: usize, out: &mut Output) {
        let earlier = self.pending.len();
        self.event_len += frame.len() - start;
        if self.event_len > self.max_event {
            self.overflow(start, out);
            return;
        }
        self.pending.extend_from_slice(&frame[start..]);
        if self.event_forwarded {
            return;
        }
        if self.event_len <= HOLD_MAX {
            out.cuts.push((start, frame.len(), None));
        } else {
            // Too long to be the usage chunk or an error: the client gets it now, after
            // what was held of it.
            if earlier > 0 {
                out.prefix = Some(Bytes::copy_from_slice(&self.pending[..earlier]));
            }
            self.event_forwarded = true;
        }
    }

    fn overflow(&mut self, start: usize, out: &mut Output) {
        self.overflowed = true;
        out.prefix = None;
        out.cuts.push((start, usize::MAX, None));
        crate::telemetry::sse_event_too_large();
    }

    fn reset_event(&mut self) {
        self.event_len = 0;
        self.event_forwarded = false;
        self.newline = Newline::None;
    }

    /// Looks at one event (with or without its terminating blank line): what to send on.
    fn inspect(&mut self, event: &[u8]) -> Verdict {
        for line in event.split(|&b| b == b'\n') {
            let Some(data) = line.strip_prefix(b"data:") else {
                continue;
            };
            let data = data.trim_ascii();
            if data == b"[DONE]" {
                self.done = true;
                continue;
            }
            return self.inspect_data(data);
        }
        Verdict::Forward
    }

    fn inspect_data(&mut self, data: &[u8]) -> Verdict {
        #[derive(Deserialize)]
        struct Chunk<'a> {
            #[serde(default, borrow)]
            choices: Option<Vec<Choice<'a>>>,
            #[serde(default)]
            usage: serde_json::Value,
            #[serde(default)]
            error: Option<serde::de::IgnoredAny>,
        }
        #[derive(Deserialize)]
        struct Choice<'a> {
            #[serde(default, borrow)]
            delta: Option<Delta<'a>>,
            /// Completions stream `text` instead of a delta.
            #[serde(default, borrow)]
            text: Option<Cow<'a, str>>,
        }
        #[derive(Deserialize)]
        struct Delta<'a> {
            #[serde(default, borrow)]
            content: Option<Cow<'a, str>>,
        }
        let Ok(chunk) = serde_json::from_slice::<Chunk>(data) else {
            return Verdict::Forward;
        };
        if chunk.error.is_some() {
            self.upstream_error = true;
            return Verdict::Replace(relayable_error_event(data));
        }
        let choices = chunk.choices.unwrap_or_default();
        // The role chunk and the finish chunk carry no text: only chunks with text count.
        let has_text = choices.iter().any(|c| {
            let delta = c.delta.as_ref().and_then(|d| d.content.as_deref());
            delta.or(c.text.as_deref()).is_some_and(|t| !t.is_empty())
        });
        if has_text {
            self.content_events += 1;
            for c in &choices {
                if let Some(t) = c.delta.as_ref().and_then(|d| d.content.as_deref()).or(c.text.as_deref())
                    && self.text.len() + t.len() <= MAX_TEXT
                {
                    self.text.push_str(t);
                }
            }
        }
        if let Some(u) = ReportedUsage::from_json(&chunk.usage) {
            self.usage = Some(u);
            if self.drop_usage_chunk && choices.is_empty() {
                return Verdict::Drop;
            }
        }
        Verdict::Forward
    }
}

/// What one frame sends on: bytes released from an earlier hold, then the frame minus
/// the cut ranges.
#[derive(Default)]
struct Output {
    /// Held bytes of an event that began in an earlier frame and continues at this
    /// frame's first byte.
    prefix: Option<Bytes>,
    /// Ranges of the frame not sent as they are (dropped events, held tails, an oversized
    /// event, rewritten events with what goes in their place), in order; an end past the
    /// frame means "to its end".
    cuts: Vec<(usize, usize, Option<Bytes>)>,
}

impl Output {
    fn finish(self, frame: &Bytes) -> Bytes {
        match (&self.prefix, self.cuts.as_slice()) {
            (None, []) => return frame.clone(),
            (None, [(start, end, None)]) if *end >= frame.len() => return frame.slice(..*start),
            _ => {}
        }
        let mut out = BytesMut::with_capacity(self.prefix.as_ref().map_or(0, Bytes::len) + frame.len());
        if let Some(p) = &self.prefix {
            out.extend_from_slice(p);
        }
        let mut at = 0;
        for (start, end, with) in &self.cuts {
            out.extend_from_slice(&frame[at..*start]);
            if let Some(with) = with {
                out.extend_from_slice(with);
            }
            at = (*end).min(frame.len());
        }
        out.extend_from_slice(&frame[at..]);
        out.freeze()
    }
}

/// The upstream's error event as the client gets it: its message bounded and scrubbed of
/// URLs and addresses, its `type` and `code` kept when they are short, nothing else.
fn relayable_error_event(data: &[u8]) -> Bytes {
    let v: serde_json::Value = serde_json::from_slice(data).unwrap_or_default();
    let e = &v["error"];
    let message = match e.get("message").and_then(serde_json::Value::as_str).or(e.as_str()) {
        Some(m) => crate::upstream::relayable_message(m),
        None => "The model backend reported an error in the stream.".to_owned(),
    };
    let short = |v: Option<&serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) if s.len() <= 64 => serde_json::Value::String(s.clone()),
        Some(serde_json::Value::Number(n)) => serde_json::Value::Number(n.clone()),
        _ => serde_json::Value::Null,
    };
    let kind = match short(e.get("type")) {
        serde_json::Value::Null => serde_json::Value::String("server_error".into()),
        k => k,
    };
    let error =
        serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": short(e.get("code"))}});
    let mut out = b"data: ".to_vec();
    // Serializing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, &error);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

#[cfg(test)]
#[path = "sse_tests.rs"]
mod tests;
