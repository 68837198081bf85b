//! Server-sent-event scanning for streamed responses.
//!
//! The proxy forwards upstream frames as they arrive. It scans them to find the usage
//! the upstream reports and, when the client did not ask for usage (the gateway asked
//! for it on the client's behalf), to drop the extra usage-only chunk. Splitting into
//! events needs to buffer only the tail of an incomplete event; a frame made of whole
//! events that needs no change is forwarded as the very same `Bytes` (no copy).

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use obleth_core::Usage;
use serde::Deserialize;

/// Usage as OpenAI-compatible servers report it.
#[derive(Debug, Deserialize)]
pub struct WireUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Debug, Deserialize)]
pub struct PromptDetails {
    #[serde(default)]
    pub cached_tokens: Option<u64>,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Usage {
        Usage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
            cached_tokens: u.prompt_tokens_details.and_then(|d| d.cached_tokens).unwrap_or(0),
        }
    }
}

/// Extracts `usage` from a whole (non-streamed) response body.
pub fn usage_of_body(body: &[u8]) -> Option<Usage> {
    #[derive(Deserialize)]
    struct Body {
        usage: Option<WireUsage>,
    }
    serde_json::from_slice::<Body>(body).ok()?.usage.map(Usage::from)
}

/// Output text kept per stream for the fallback count; beyond it the count is short
/// (and marked estimated anyway).
pub const MAX_TEXT: usize = 1 << 20;

/// Incremental scanner of one SSE response.
#[derive(Debug, Default)]
pub struct SseScanner {
    /// Bytes of an event not yet terminated by a blank line.
    pending: BytesMut,
    /// Drop the usage-only chunk (the client did not ask for usage).
    drop_usage_chunk: bool,
    /// The last usage the upstream reported.
    pub usage: Option<Usage>,
    /// Data events carrying output text: a fallback count of output tokens when the
    /// upstream reports no usage (servers send about one token per chunk).
    pub content_events: u64,
    /// The output text streamed so far (up to [`MAX_TEXT`]), for counting its tokens
    /// when the upstream reports no usage.
    pub text: String,
    /// Whether `data: [DONE]` was seen.
    pub done: bool,
    /// An `error` object the upstream sent inside the stream.
    pub upstream_error: bool,
}

impl SseScanner {
    pub fn new(drop_usage_chunk: bool) -> Self {
        SseScanner { drop_usage_chunk, ..Default::default() }
    }

    /// Feeds one upstream frame and returns what to forward to the client now.
    pub fn push(&mut self, frame: Bytes) -> Bytes {
        if self.pending.is_empty() {
            // Fast path: scan the frame in place.
            let mut start = 0;
            let mut dropped: Option<Vec<(usize, usize)>> = None;
            while let Some(end) = event_end(&frame[start..]) {
                let event = &frame[start..start + end.0];
                if !self.inspect(event) {
                    dropped.get_or_insert_with(Vec::new).push((start, start + end.1));
                }
                start += end.1;
            }
            let complete = start;
            if complete < frame.len() {
                self.pending.extend_from_slice(&frame[complete..]);
            }
            return match dropped {
                None if complete == frame.len() => frame,
                None => frame.slice(..complete),
                Some(ranges) => splice_out(&frame[..complete], &ranges),
            };
        }
        self.pending.extend_from_slice(&frame);
        self.drain_pending()
    }

    /// Called at the end of the stream: returns any unterminated tail.
    pub fn finish(&mut self) -> Bytes {
        let rest = self.pending.split().freeze();
        if !rest.is_empty() {
            self.inspect(&rest);
        }
        rest
    }

    fn drain_pending(&mut self) -> Bytes {
        let mut out = BytesMut::new();
        while let Some(end) = event_end(&self.pending) {
            let event = self.pending.split_to(end.1);
            if self.inspect(&event[..end.0]) {
                out.extend_from_slice(&event);
            }
        }
        out.freeze()
    }

    /// Looks at one event (without its terminating blank line); returns whether to
    /// forward it.
    fn inspect(&mut self, event: &[u8]) -> bool {
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
        true
    }

    fn inspect_data(&mut self, data: &[u8]) -> bool {
        #[derive(Deserialize)]
        struct Chunk<'a> {
            #[serde(default, borrow)]
            choices: Option<Vec<Choice<'a>>>,
            #[serde(default)]
            usage: Option<WireUsage>,
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
            return true;
        };
        if chunk.error.is_some() {
            self.upstream_error = true;
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
        if let Some(u) = chunk.usage {
            self.usage = Some(u.into());
            if self.drop_usage_chunk && choices.is_empty() {
                return false;
            }
        }
        true
    }
}

/// Finds the end of the first complete event: `(end of content, end incl. separator)`.
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some((i, i + 2));
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some((i, i + 3));
            }
        }
        i += 1;
    }
    None
}

fn splice_out(buf: &[u8], ranges: &[(usize, usize)]) -> Bytes {
    let mut out = BytesMut::with_capacity(buf.len());
    let mut at = 0;
    for &(s, e) in ranges {
        out.extend_from_slice(&buf[at..s]);
        at = e;
    }
    out.extend_from_slice(&buf[at..]);
    out.freeze()
}

#[cfg(test)]
#[path = "sse_tests.rs"]
mod tests;
