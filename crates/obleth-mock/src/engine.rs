//! The timing engine: turns an admitted request into tokens on a schedule, for streamed
//! (SSE) and non-streamed answers, and injects stalls and connection cuts.
//!
//! Timing model, measured from the moment the request holds its sequence slots (`start`):
//! token `i` (0-based) is due at `start + ttft + prefill_per_token × prompt_tokens + i × itl`.
//! Deadlines are absolute, so timer rounding and scheduling delays do not accumulate over a
//! long stream. A zero offset, or a deadline already passed, never touches the timer: the
//! overhead benchmark runs a zero-latency mock and must measure the gateway, not tokio's
//! timer wheel (which rounds every sleep up to the next millisecond).

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::time::Instant;

use crate::Shared;
use crate::openai::{self, ChunkChoice, Completion, DONE, Delta, Head, TextChoice, Usage};
use crate::pool::{Admission, Slot, Stats};
use crate::tokens;

/// Longest delay the engine will schedule; keeps `Instant` arithmetic from overflowing when
/// a header or config asks for something absurd.
const MAX_DELAY: Duration = Duration::from_secs(365 * 24 * 3600);

/// A fault that changes how the response is delivered (injected errors never get this far).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Send nothing (after the headers, for streams) for `stall`, then cut the connection.
    Stall,
    /// Deliver about half the tokens, then cut the connection.
    Abort,
}

/// Per-request timing and fault decisions, after header overrides.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) fault: Option<Fault>,
    pub(crate) omit_usage: bool,
    /// Time from holding the slot to the first token: ttft plus prefill.
    pub(crate) first: Duration,
    pub(crate) itl: Duration,
    pub(crate) stall: Duration,
}

impl Plan {
    /// Offset from `start` at which token `pos` is due.
    fn token_offset(&self, pos: u32) -> Duration {
        let decode = self.itl.checked_mul(pos).unwrap_or(MAX_DELAY);
        self.first.saturating_add(decode).min(MAX_DELAY)
    }
}

/// Whether the generated items are chat messages or plain text completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Chat,
    Text,
}

/// Everything needed to produce one completion response, decided before any waiting.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) kind: Kind,
    pub(crate) id: String,
    pub(crate) created: u64,
    pub(crate) model: String,
    pub(crate) prompt_tokens: u32,
    /// Per choice, in `index` order: the prompt hash and the choice number within its prompt.
    pub(crate) choices: Vec<(u64, u32)>,
    /// Output tokens per choice; at least 1.
    pub(crate) len: u32,
    pub(crate) finish_reason: &'static str,
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
}

impl Job {
    /// Sequence slots this job occupies: one per choice.
    pub(crate) fn seqs(&self) -> u32 {
        tokens::saturate(self.choices.len())
    }

    pub(crate) fn completion_tokens(&self) -> u64 {
        self.choices.len() as u64 * u64::from(self.len)
    }

    pub(crate) fn usage(&self) -> Usage {
        Usage::new(self.prompt_tokens, self.completion_tokens())
    }

    fn head(&self, object: &'static str) -> Head<'_> {
        Head { id: &self.id, object, created: self.created, model: &self.model }
    }

    /// The non-streamed `chat.completion` / `text_completion` object.
    pub(crate) fn full_response(&self, omit_usage: bool) -> Response {
        let usage = (!omit_usage).then_some(Some(self.usage()));
        let texts = self.choices.iter().map(|&(hash, choice)| tokens::output_text(hash, choice, self.len));
        match self.kind {
            Kind::Chat => {
                let choices: Vec<_> = texts
                    .zip(0u32..)
                    .map(|(content, index)| openai::ChatChoice {
                        index,
                        message: openai::AssistantMessage { role: "assistant", content },
                        logprobs: None,
                        finish_reason: self.finish_reason,
                    })
                    .collect();
                let head = self.head("chat.completion");
                axum::Json(Completion { head: &head, choices, usage }).into_response()
            }
            Kind::Text => {
                let texts: Vec<String> = texts.collect();
                let choices: Vec<_> = texts
                    .iter()
                    .zip(0u32..)
                    .map(|(text, index)| TextChoice {
                        index,
                        text,
                        logprobs: None,
                        finish_reason: Some(self.finish_reason),
                    })
                    .collect();
                let head = self.head("text_completion");
                axum::Json(Completion { head: &head, choices, usage }).into_response()
            }
        }
    }
}

// === timing helpers ===

/// Waits until `start + offset`, without touching the timer when nothing needs waiting.
async fn sleep_to(start: Instant, offset: Duration) {
    if offset.is_zero() {
        return;
    }
    let deadline = start + offset;
    if deadline <= Instant::now() {
        return;
    }
    tokio::time::sleep_until(deadline).await;
}

/// A stall: waits `d`, or less if the server is shutting down (so graceful shutdown is not
/// held hostage by a five-minute injected hang).
async fn stall(shared: &Shared, d: Duration) {
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        () = shared.shutdown.cancelled() => {}
    }
}

fn cut_error() -> io::Error {
    io::Error::other("obleth-mock: injected connection cut")
}

/// A response whose body fails at once, which makes hyper drop the connection. The client
/// sees the connection close, possibly after the status line and headers.
pub(crate) fn cut_response() -> Response {
    let body = Body::from_stream(futures_util::stream::once(async { Err::<Bytes, _>(cut_error()) }));
    let mut response = Response::new(body);
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Counts a client disconnect if dropped while still armed, i.e. if the request's future or
/// body stream was dropped by hyper before the mock finished with it.
#[derive(Debug)]
struct DisconnectGuard {
    stats: Arc<Stats>,
    armed: bool,
}

impl DisconnectGuard {
    fn new(stats: &Arc<Stats>) -> Self {
        Self { stats: Arc::clone(stats), armed: true }
    }

    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for DisconnectGuard {
    fn drop(&mut self) {
        if self.armed {
            Stats::bump(&self.stats.client_disconnects);
        }
    }
}

// === non-streamed ===

/// How a non-streamed simulation ended.
#[derive(Debug)]
pub(crate) enum Simulated {
    /// All `len` tokens were "generated"; the slots are already released.
    Finished,
    /// An injected stall or abort: answer with [`cut_response`].
    Cut,
}

/// Waits out a non-streamed request: queue, then until its last token is due (for `len` 0,
/// as for embeddings, until the first would be). If the client goes away, hyper drops this
/// future, which frees the slots (or queue place) and counts the disconnect.
pub(crate) async fn simulate(shared: &Shared, plan: &Plan, admission: Option<Admission>, len: u32) -> Simulated {
    let mut guard = DisconnectGuard::new(&shared.stats);
    let Some(admission) = admission.filter(|_| plan.fault != Some(Fault::Stall)) else {
        stall(shared, plan.stall).await;
        guard.disarm();
        return Simulated::Cut;
    };
    let slot = admission.into_slot().await;
    let start = Instant::now();
    let outcome = if plan.fault == Some(Fault::Abort) {
        sleep_to(start, plan.token_offset(len / 2)).await;
        Simulated::Cut
    } else {
        sleep_to(start, plan.token_offset(len.saturating_sub(1))).await;
        Simulated::Finished
    };
    drop(slot);
    guard.disarm();
    outcome
}

// === streamed ===

/// Builds the SSE response. Headers go out at once (as vLLM's do, before the request is
/// scheduled); the body then waits for slots and produces one frame per event.
pub(crate) fn stream_response(shared: Arc<Shared>, job: Job, plan: Plan, admission: Option<Admission>) -> Response {
    let phase = match admission {
        Some(a) if plan.fault != Some(Fault::Stall) => Phase::Admit(a),
        _ => Phase::Stall,
    };
    let guard = DisconnectGuard::new(&shared.stats);
    let generator =
        Generator { shared, job, plan, guard, phase, slot: None, start: Instant::now(), pos: 0, out: VecDeque::new() };
    let events = futures_util::stream::unfold(generator, |mut g| async move {
        let item = g.next().await?;
        Some((item, g))
    });
    let mut response = Response::new(Body::from_stream(events));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

enum Phase {
    /// Injected stall: nothing until the stall ends, then a cut.
    Stall,
    /// Waiting for (or holding ready) sequence slots.
    Admit(Admission),
    /// Emitting tokens.
    Tokens,
    /// Nothing more to send once `out` is drained.
    Done,
}

/// State of one SSE stream. Dropping it early (hyper does, when the client disconnects)
/// releases the slots at once and counts the disconnect through `guard`.
struct Generator {
    shared: Arc<Shared>,
    job: Job,
    plan: Plan,
    guard: DisconnectGuard,
    phase: Phase,
    slot: Option<Slot>,
    start: Instant,
    /// Next token position.
    pos: u32,
    /// Events ready to send; each becomes its own body frame.
    out: VecDeque<Bytes>,
}

impl Generator {
    async fn next(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            if let Some(event) = self.out.pop_front() {
                return Some(Ok(event));
            }
            match std::mem::replace(&mut self.phase, Phase::Done) {
                Phase::Done => return None,
                Phase::Stall => {
                    stall(&self.shared, self.plan.stall).await;
                    return Some(Err(self.cut()));
                }
                Phase::Admit(admission) => {
                    self.slot = Some(admission.into_slot().await);
                    self.start = Instant::now();
                    self.phase = Phase::Tokens;
                }
                Phase::Tokens => {
                    let due = self.plan.token_offset(self.pos);
                    sleep_to(self.start, due).await;
                    if self.plan.fault == Some(Fault::Abort) && self.pos == self.job.len / 2 {
                        // hyper flushes buffered frames only when the body is pending; an
                        // error straight after a frame (deadline already passed) would
                        // discard that frame, making "half the tokens" nondeterministic.
                        tokio::task::yield_now().await;
                        return Some(Err(self.cut()));
                    }
                    self.emit_position();
                    self.pos += 1;
                    if self.pos >= self.job.len {
                        self.finish();
                    } else {
                        self.phase = Phase::Tokens;
                    }
                }
            }
        }
    }

    /// Ends the stream with an error so hyper cuts the connection without a terminating
    /// chunk; the client sees a truncated stream and no `[DONE]`.
    fn cut(&mut self) -> io::Error {
        self.slot = None;
        self.out.clear();
        self.guard.disarm();
        cut_error()
    }

    /// `"usage": null` on every chunk when the final usage chunk will follow; absent otherwise.
    fn chunk_usage(&self) -> Option<Option<Usage>> {
        (self.job.include_usage && !self.plan.omit_usage).then_some(None)
    }

    /// Queues the events for token `pos` of every choice (preceded by the role chunks at the
    /// first token, which is when vLLM sends them too).
    fn emit_position(&mut self) {
        let last = self.pos + 1 >= self.job.len;
        let finish_reason = last.then_some(self.job.finish_reason);
        let usage = self.chunk_usage();
        match self.job.kind {
            Kind::Chat => {
                let head = self.job.head("chat.completion.chunk");
                if self.pos == 0 {
                    for index in 0..self.job.seqs() {
                        let choice = ChunkChoice {
                            index,
                            delta: Delta { role: Some("assistant"), content: "" },
                            logprobs: None,
                            finish_reason: None,
                        };
                        self.out.push_back(openai::sse(&Completion { head: &head, choices: [choice], usage }));
                    }
                }
                for (&(hash, n), index) in self.job.choices.iter().zip(0u32..) {
                    let choice = ChunkChoice {
                        index,
                        delta: Delta { role: None, content: tokens::output_token(hash, n, self.pos) },
                        logprobs: None,
                        finish_reason,
                    };
                    self.out.push_back(openai::sse(&Completion { head: &head, choices: [choice], usage }));
                }
            }
            Kind::Text => {
                let head = self.job.head("text_completion");
                for (&(hash, n), index) in self.job.choices.iter().zip(0u32..) {
                    let choice = TextChoice {
                        index,
                        text: tokens::output_token(hash, n, self.pos),
                        logprobs: None,
                        finish_reason,
                    };
                    self.out.push_back(openai::sse(&Completion { head: &head, choices: [choice], usage }));
                }
            }
        }
    }

    /// After the last token: free the slots, count the request, queue usage and `[DONE]`.
    fn finish(&mut self) {
        self.slot = None;
        self.shared.stats.finish(self.job.prompt_tokens, self.job.completion_tokens());
        if self.chunk_usage().is_some() {
            let object = match self.job.kind {
                Kind::Chat => "chat.completion.chunk",
                Kind::Text => "text_completion",
            };
            let head = self.job.head(object);
            self.out.push_back(openai::sse(&Completion::<[u8; 0]> {
                head: &head,
                choices: [],
                usage: Some(Some(self.job.usage())),
            }));
        }
        self.out.push_back(Bytes::from_static(DONE));
        self.guard.disarm();
        self.phase = Phase::Done;
    }
}
