//! Token estimates with the real BPE tokenizers (`obleth-tokens`: exact tiktoken counts,
//! vocabularies compiled in, nothing fetched at run time).
//!
//! Used at admission to estimate the tokens of an OpenAI-compatible request
//! ([`input_tokens`], [`OutputRequest`]) and, after a response whose upstream reported
//! no usage, to count the output text ([`count_text`]).
//!
//! The encodings are process-wide and built on first use (a `OnceLock`, no lock on the
//! hot path): about 3 ms and 0.5 MiB of heap for `cl100k_base`, 11 ms and 1 MiB for
//! `o200k_base`, plus the vocabulary's pages of the binary it reads (1.4 and 2.7 MiB).
//! [`warm`] loads one ahead of the first request; an encoding no model uses is never
//! loaded.
//!
//! Counting is exact for text; the chat framing follows OpenAI's cookbook approximation,
//! and parts the tokenizer cannot see (images, audio, files) count fixed amounts. JSON
//! schemas (tools, functions, response formats) count the tokens of their compact JSON
//! serialization, which over-estimates what the model is actually shown. Malformed parts
//! of a request count 0; nothing here panics on any input.

use serde_json::{Map, Value};

/// Framing tokens of each chat message (cookbook: `<|start|>{role}\n{content}<|end|>`).
pub const TOKENS_PER_MESSAGE: u64 = 3;
/// Extra token of a message that has a `name`.
pub const TOKENS_PER_NAME: u64 = 1;
/// Tokens priming the reply (`<|start|>assistant<|message|>`).
pub const REPLY_PRIMING_TOKENS: u64 = 3;
/// An `image_url` content part: the cost of a low-detail image. High-detail images cost
/// more (85 + 170 per 512 px tile), but that needs the image's size, which the gateway
/// does not fetch.
pub const IMAGE_PART_TOKENS: u64 = 85;
/// Any other non-text content part (`input_audio`, `file`, unknown types): a placeholder,
/// since the real cost depends on content the gateway does not decode (audio length,
/// file pages). Expect it to under-estimate such requests.
pub const OTHER_PART_TOKENS: u64 = 16;

/// The standard chat roles, each a single token in both encodings.
const KNOWN_ROLES: [&str; 6] = ["system", "developer", "user", "assistant", "tool", "function"];

/// Which BPE encoding to count with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// GPT-4o, GPT-4.1, GPT-4.5, GPT-5 and the o-series.
    O200kBase,
    /// GPT-4, GPT-3.5 and the OpenAI embedding models.
    Cl100kBase,
}

impl Encoding {
    /// Parses `"o200k_base"` / `"cl100k_base"` (for config).
    pub fn parse(s: &str) -> Option<Encoding> {
        match s {
            "o200k_base" => Some(Encoding::O200kBase),
            "cl100k_base" => Some(Encoding::Cl100kBase),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::O200kBase => "o200k_base",
            Encoding::Cl100kBase => "cl100k_base",
        }
    }

    /// The encoding of an upstream model name, or `None` for models that do not use an
    /// OpenAI tokenizer (llama, qwen, mistral, unknown names): the caller falls back to
    /// a configured default.
    ///
    /// Matching is by prefix and ignores ASCII case. Provider prefixes
    /// (`openai/gpt-4o`, `openrouter/openai/gpt-4o`) and the fine-tune prefix
    /// (`ft:gpt-4o-mini:org::id`) are skipped.
    pub fn for_model(upstream_model: &str) -> Option<Encoding> {
        let name = upstream_model.trim();
        let name = name.rsplit('/').next().unwrap_or(name);
        let name = strip_prefix_ignore_case(name, "ft:").unwrap_or(name);
        const O200K: &[&str] = &["gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o"];
        // Azure spells gpt-3.5 "gpt-35".
        const CL100K: &[&str] = &["gpt-4", "gpt-3.5", "gpt-35", "text-embedding-3", "text-embedding-ada-002"];
        if O200K.iter().any(|p| strip_prefix_ignore_case(name, p).is_some()) {
            Some(Encoding::O200kBase)
        } else if CL100K.iter().any(|p| strip_prefix_ignore_case(name, p).is_some()) {
            Some(Encoding::Cl100kBase)
        } else {
            None
        }
    }

    /// The tokenizer's encoding (loaded on first use).
    fn tokens(self) -> obleth_tokens::Encoding {
        match self {
            Encoding::O200kBase => obleth_tokens::Encoding::O200kBase,
            Encoding::Cl100kBase => obleth_tokens::Encoding::Cl100kBase,
        }
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.as_bytes().get(..prefix.len())?;
    // `prefix` is ASCII, so an equal head ends on a char boundary.
    if head.eq_ignore_ascii_case(prefix.as_bytes()) { s.get(prefix.len()..) } else { None }
}

/// Loads `enc`'s vocabulary now, so that the first request does not pay for it.
pub fn warm(enc: Encoding) {
    obleth_tokens::load(enc.tokens());
}

/// Bytes of text that one [`count_text`] or [`input_tokens`] call tokenizes exactly.
/// Text beyond it is extrapolated at the tokens-per-byte ratio of the text counted so
/// far. Tokenizing runs at about 30 (CJK, emoji) to 250 (JSON, code) MB/s and never
/// fails, so this bounds the CPU one request can cost to about 2 ms, where a 4 MB body
/// would otherwise take up to 130 ms. Callers should still keep large bodies off the
/// async workers (`spawn_blocking`).
pub const EXACT_BYTES: usize = 64 * 1024;

/// Counts the tokens of plain text. Uses the ordinary encoding: special tokens in the
/// text (`<|endoftext|>`) count as the text they are, never as one special token.
///
/// Exact up to [`EXACT_BYTES`], extrapolated beyond.
pub fn count_text(enc: Encoding, text: &str) -> u64 {
    let mut counter = Counter::new(enc);
    counter.text(text);
    counter.total()
}

/// Accumulates the tokens of one request: text counted exactly within the byte budget,
/// text past it (estimated at the end), and fixed amounts.
struct Counter {
    enc: obleth_tokens::Encoding,
    budget: usize,
    exact_bytes: u64,
    exact_tokens: u64,
    approx_bytes: u64,
    fixed: u64,
}

impl Counter {
    fn new(enc: Encoding) -> Counter {
        Counter { enc: enc.tokens(), budget: EXACT_BYTES, exact_bytes: 0, exact_tokens: 0, approx_bytes: 0, fixed: 0 }
    }

    fn fixed(&mut self, tokens: u64) {
        self.fixed = self.fixed.saturating_add(tokens);
    }

    fn text(&mut self, text: &str) {
        // The exact part ends on a char boundary at most `budget` bytes in; the cut may
        // split a word, which may move the count by a token or two.
        let mut cut = text.len().min(self.budget);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let (exact, rest) = text.split_at(cut);
        if !exact.is_empty() {
            let tokens = obleth_tokens::count(self.enc, exact);
            self.exact_tokens = self.exact_tokens.saturating_add(tokens as u64);
            self.exact_bytes = self.exact_bytes.saturating_add(exact.len() as u64);
            self.budget -= exact.len();
        }
        self.approx_bytes = self.approx_bytes.saturating_add(rest.len() as u64);
    }

    fn total(&self) -> u64 {
        let approx = if self.approx_bytes == 0 {
            0
        } else if self.exact_bytes == 0 || self.exact_tokens == 0 {
            // About 4 bytes a token for English text.
            self.approx_bytes.div_ceil(4)
        } else {
            let t = u128::from(self.approx_bytes) * u128::from(self.exact_tokens);
            u64::try_from(t.div_ceil(u128::from(self.exact_bytes))).unwrap_or(u64::MAX)
        };
        self.exact_tokens.saturating_add(self.fixed).saturating_add(approx)
    }
}

/// What a request is expected to use, estimated once, before admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// The prompt's tokens: the tokenizer's count if `exact`, else bytes / 4.
    pub input: u64,
    pub exact: bool,
    /// Output tokens it may produce.
    pub output: u64,
    pub encoding: Encoding,
}

/// The kind of request (the caller maps its own route to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Chat,
    Completion,
    Embedding,
}

/// Estimated input tokens of a parsed request body.
///
/// - Chat: for each message, [`TOKENS_PER_MESSAGE`] + its `role`, `content` (a string
///   or an array of parts), `name` (+[`TOKENS_PER_NAME`]), `tool_calls` and the legacy
///   `function_call` (function name and arguments) and `tool_call_id`; then
///   [`REPLY_PRIMING_TOKENS`]; plus the compact JSON of `tools`, `functions` and
///   `response_format.json_schema`.
/// - Completion: `prompt` and `suffix`.
/// - Embedding: `input`.
///
/// A `prompt` or `input` may be a string, an array of strings, an array of token ids or
/// an array of arrays of token ids; token ids count one each.
///
/// The request's text is counted exactly up to [`EXACT_BYTES`] in all, extrapolated beyond.
pub fn input_tokens(enc: Encoding, kind: RequestKind, body: &Map<String, Value>) -> u64 {
    let mut c = Counter::new(enc);
    match kind {
        RequestKind::Chat => chat_input(&mut c, body),
        RequestKind::Completion => {
            prompt_like(&mut c, body.get("prompt"));
            text(&mut c, body.get("suffix"));
        }
        RequestKind::Embedding => prompt_like(&mut c, body.get("input")),
    }
    c.total()
}

/// The largest `max_tokens` / `max_completion_tokens` accepted (what backends that
/// read it into a 32-bit integer accept).
pub const MAX_OUTPUT_TOKENS: u64 = i32::MAX as u64;
/// The most sequences one request may ask for (`n`, `best_of`), as OpenAI allows.
pub const MAX_CHOICES: u64 = 128;

/// What a request asks the model to generate, validated: every field the budget reads
/// is an integer in range, so that what the budget reserves for is what goes upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputRequest {
    /// `max_completion_tokens` (preferred) or `max_tokens`, per choice, if given.
    pub max_tokens: Option<u64>,
    /// Sequences generated: `n`, and for completions `best_of` when larger (those
    /// candidates are generated and billed too); 0 for embeddings, which generate none.
    pub choices: u64,
    /// Prompts or inputs in the request (an array of them counts each).
    pub prompts: u64,
}

/// A field of the request that is not what the budget can reserve for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidField {
    pub field: &'static str,
    pub message: String,
}

impl OutputRequest {
    /// Reads and checks the output fields of a parsed request body. `null` is absent.
    pub fn parse(kind: RequestKind, body: &Map<String, Value>) -> Result<OutputRequest, InvalidField> {
        let prompts = prompt_count(kind, body);
        if kind == RequestKind::Embedding {
            return Ok(OutputRequest { max_tokens: None, choices: 0, prompts });
        }
        let max_completion = int_field(body, "max_completion_tokens", 1, MAX_OUTPUT_TOKENS)?;
        let max_tokens = int_field(body, "max_tokens", 1, MAX_OUTPUT_TOKENS)?;
        let n = int_field(body, "n", 1, MAX_CHOICES)?.unwrap_or(1);
        let best_of = match kind {
            RequestKind::Completion => int_field(body, "best_of", 1, MAX_CHOICES)?.unwrap_or(1),
            _ => 1,
        };
        Ok(OutputRequest { max_tokens: max_completion.or(max_tokens), choices: n.max(best_of), prompts })
    }

    /// Output tokens to reserve: the limit per choice (`default_max` when the request
    /// sets none), at most `room` (what the context window leaves after the prompt),
    /// times the choices.
    pub fn reserve(&self, default_max: u64, room: Option<u64>) -> u64 {
        let per_choice = self.max_tokens.unwrap_or(default_max);
        let per_choice = room.map_or(per_choice, |r| per_choice.min(r.max(1)));
        per_choice.saturating_mul(self.choices)
    }
}

/// An optional integer field in `min..=max`.
fn int_field(body: &Map<String, Value>, field: &'static str, min: u64, max: u64) -> Result<Option<u64>, InvalidField> {
    let value = match body.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    match value.as_u64() {
        Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => {
            let got = match value {
                Value::Number(n) if n.is_f64() => "a number with a fraction or exponent".to_owned(),
                Value::Number(n) => format!("{n}"),
                Value::String(_) => "a string".to_owned(),
                Value::Bool(_) => "a boolean".to_owned(),
                Value::Array(_) => "an array".to_owned(),
                Value::Object(_) => "an object".to_owned(),
                Value::Null => "null".to_owned(),
            };
            Err(InvalidField {
                field,
                message: format!("'{field}' must be an integer from {min} to {max}; got {got}."),
            })
        }
    }
}

/// How many prompts (completions) or inputs (embeddings) a request carries.
fn prompt_count(kind: RequestKind, body: &Map<String, Value>) -> u64 {
    let value = match kind {
        RequestKind::Chat => return 1,
        RequestKind::Completion => body.get("prompt"),
        RequestKind::Embedding => body.get("input"),
    };
    match value {
        // An array of strings or of token arrays is a batch; an array of ids is one.
        Some(Value::Array(items)) if items.iter().any(|i| i.is_string() || i.is_array()) => items.len().max(1) as u64,
        _ => 1,
    }
}

/// Counts `value` if it is a string.
fn text(c: &mut Counter, value: Option<&Value>) {
    if let Some(s) = value.and_then(Value::as_str) {
        c.text(s);
    }
}

fn chat_input(c: &mut Counter, body: &Map<String, Value>) {
    if let Some(messages) = body.get("messages").and_then(Value::as_array) {
        for message in messages {
            if let Some(m) = message.as_object() {
                chat_message(c, m);
            }
        }
        c.fixed(REPLY_PRIMING_TOKENS);
    }
    json(c, body.get("tools"));
    json(c, body.get("functions"));
    json(c, body.get("response_format").and_then(|f| f.get("json_schema")));
}

fn chat_message(c: &mut Counter, m: &Map<String, Value>) {
    c.fixed(TOKENS_PER_MESSAGE);
    match m.get("role").and_then(Value::as_str) {
        // One token each in both encodings; skips the tokenizer's per-call overhead (~1 µs).
        Some(role) if KNOWN_ROLES.contains(&role) => c.fixed(1),
        Some(role) => c.text(role),
        None => {}
    }
    if let Some(name) = m.get("name").and_then(Value::as_str) {
        c.fixed(TOKENS_PER_NAME);
        c.text(name);
    }
    match m.get("content") {
        Some(Value::String(s)) => c.text(s),
        Some(Value::Array(parts)) => parts.iter().for_each(|p| content_part(c, p)),
        _ => {}
    }
    if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
        for call in calls {
            function_call(c, call.get("function"));
        }
    }
    function_call(c, m.get("function_call"));
    text(c, m.get("tool_call_id"));
}

fn content_part(c: &mut Counter, part: &Value) {
    match part.get("type").and_then(Value::as_str) {
        Some("text") => text(c, part.get("text")),
        Some("refusal") => text(c, part.get("refusal")),
        Some("image_url") => c.fixed(IMAGE_PART_TOKENS),
        Some(_) => c.fixed(OTHER_PART_TOKENS),
        None => {}
    }
}

/// `{"name": ..., "arguments": ...}` of a tool call or legacy function call.
fn function_call(c: &mut Counter, function: Option<&Value>) {
    if let Some(f) = function {
        text(c, f.get("name"));
        text(c, f.get("arguments"));
    }
}

/// Counts `value`'s compact JSON serialization (nothing when absent or null).
fn json(c: &mut Counter, value: Option<&Value>) {
    match value {
        None | Some(Value::Null) => {}
        Some(v) => {
            if let Ok(s) = serde_json::to_string(v) {
                c.text(&s);
            }
        }
    }
}

/// A completion `prompt` or embedding `input`: a string, an array of strings, an array
/// of token ids, or an array of arrays of token ids. Elements of the wrong type count 0.
fn prompt_like(c: &mut Counter, value: Option<&Value>) {
    match value {
        Some(Value::String(s)) => c.text(s),
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::String(s) => c.text(s),
                    Value::Number(n) if n.is_u64() => c.fixed(1),
                    Value::Array(ids) => c.fixed(ids.iter().filter(|id| id.is_u64()).count() as u64),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
#[path = "estimate_tests.rs"]
mod tests;
