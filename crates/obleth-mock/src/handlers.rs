//! HTTP handlers: parse and validate a request, decide its faults and timing, admit it to
//! the pool, then hand it to the engine.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use rand::Rng;

use crate::Shared;
use crate::engine::{self, Fault, Job, Kind, Plan, Simulated};
use crate::error::ApiError;
use crate::openai::{self, Prompt};
use crate::pool::{Admission, Stats, StatsSnapshot};
use crate::tokens;

/// Header forcing a fault: a comma-separated list of `error`, `stall`, `abort`, `no-usage`.
pub const FAULT_HEADER: &str = "x-mock-fault";
/// Header overriding the base time to first token, in milliseconds.
pub const TTFT_HEADER: &str = "x-mock-ttft-ms";
/// Header overriding the inter-token latency, in milliseconds.
pub const ITL_HEADER: &str = "x-mock-itl-ms";

/// Upper bounds that keep a single request from exhausting memory.
const MAX_OUTPUT_TOKENS: u32 = 1 << 20;
const MAX_N: u32 = 128;
const MAX_EMBEDDING_DIMS: usize = 1 << 16;

/// A fault decision that includes the ones decided before admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decided {
    Error,
    Deliver(Option<Fault>),
}

// === inference endpoints ===

pub(crate) async fn chat(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    Stats::bump(&shared.stats.requests_total);
    let mut req: openai::ChatRequest = openai::parse(&body_bytes(body)?)?;
    let model = openai::require_model(req.model.take())?;
    let prompt = req.prompt(shared.config.seed)?;
    let (len, finish_reason) = output_len(&shared, req.max_completion_tokens.or(req.max_tokens))?;
    let job = Job {
        kind: Kind::Chat,
        id: format!("chatcmpl-mock-{}", shared.next_id()),
        created: unix_now(),
        model,
        prompt_tokens: prompt.tokens,
        choices: choices(&[prompt], req.n)?,
        len,
        finish_reason,
        stream: req.stream.unwrap_or(false),
        include_usage: include_usage(req.stream_options.as_ref()),
    };
    run(shared, &headers, job).await
}

pub(crate) async fn completions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    Stats::bump(&shared.stats.requests_total);
    let req: openai::CompletionRequest = openai::parse(&body_bytes(body)?)?;
    let model = openai::require_model(req.model)?;
    let prompts = openai::prompts(req.prompt.as_ref(), shared.config.seed, "prompt")?;
    let (len, finish_reason) = output_len(&shared, req.max_tokens)?;
    let job = Job {
        kind: Kind::Text,
        id: format!("cmpl-mock-{}", shared.next_id()),
        created: unix_now(),
        model,
        prompt_tokens: prompts.iter().fold(0, |a, p| a.saturating_add(p.tokens)),
        choices: choices(&prompts, req.n)?,
        len,
        finish_reason,
        stream: req.stream.unwrap_or(false),
        include_usage: include_usage(req.stream_options.as_ref()),
    };
    run(shared, &headers, job).await
}

pub(crate) async fn embeddings(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    Stats::bump(&shared.stats.requests_total);
    let req: openai::EmbeddingRequest = openai::parse(&body_bytes(body)?)?;
    let model = openai::require_model(req.model)?;
    let inputs = openai::prompts(req.input.as_ref(), shared.config.seed, "input")?;
    let dims = req.dimensions.unwrap_or(shared.config.embedding_dims);
    if dims == 0 || dims > MAX_EMBEDDING_DIMS {
        return Err(ApiError::bad(
            format!("dimensions must be between 1 and {MAX_EMBEDDING_DIMS}"),
            Some("dimensions"),
        ));
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad(
                format!("encoding_format must be \"float\" or \"base64\", not {other:?}"),
                Some("encoding_format"),
            ));
        }
    };
    let prompt_tokens = inputs.iter().fold(0, |a: u32, p| a.saturating_add(p.tokens));
    let (plan, decided) = plan(&shared, &headers, prompt_tokens)?;
    let fault = deliver(&shared, decided)?;
    // An embedding is a prefill-only request: one slot, ready after `ttft + prefill`.
    let admission = admit(&shared, fault, 1)?;
    match engine::simulate(&shared, &plan, admission, 0).await {
        Simulated::Cut => Ok(engine::cut_response()),
        Simulated::Finished => {
            shared.stats.finish(prompt_tokens, 0);
            let data = inputs
                .iter()
                .zip(0u32..)
                .map(|(p, index)| {
                    let v = tokens::embedding(p.hash, dims);
                    openai::Embedding {
                        object: "embedding",
                        index,
                        embedding: if base64 {
                            openai::EmbeddingData::Base64(tokens::base64_f32_le(&v))
                        } else {
                            openai::EmbeddingData::Float(v)
                        },
                    }
                })
                .collect();
            Ok(Json(openai::EmbeddingList {
                object: "list",
                data,
                model: &model,
                usage: (!plan.omit_usage).then(|| openai::Usage::prompt_only(prompt_tokens)),
            })
            .into_response())
        }
    }
}

/// The part shared by chat and completions once the request is understood.
async fn run(shared: Arc<Shared>, headers: &HeaderMap, job: Job) -> Result<Response, ApiError> {
    let (plan, decided) = plan(&shared, headers, job.prompt_tokens)?;
    let fault = deliver(&shared, decided)?;
    let admission = admit(&shared, fault, job.seqs())?;
    if job.stream {
        return Ok(engine::stream_response(shared, job, plan, admission));
    }
    Ok(match engine::simulate(&shared, &plan, admission, job.len).await {
        Simulated::Cut => engine::cut_response(),
        Simulated::Finished => {
            shared.stats.finish(job.prompt_tokens, job.completion_tokens());
            job.full_response(plan.omit_usage)
        }
    })
}

/// Turns an injected error into the 500 and counts injections.
fn deliver(shared: &Shared, decided: Decided) -> Result<Option<Fault>, ApiError> {
    match decided {
        Decided::Error => {
            Stats::bump(&shared.stats.errors_injected);
            Err(ApiError::Injected)
        }
        Decided::Deliver(fault) => Ok(fault),
    }
}

/// Joins the pool, except for stalls, which model a hung backend rather than GPU work and
/// so occupy no sequence slot. Injections are counted only once the request is accepted.
fn admit(shared: &Shared, fault: Option<Fault>, seqs: u32) -> Result<Option<Admission>, ApiError> {
    let admission = match fault {
        Some(Fault::Stall) => None,
        _ => Some(shared.pool.admit(seqs)?),
    };
    match fault {
        Some(Fault::Stall) => Stats::bump(&shared.stats.stalls_injected),
        Some(Fault::Abort) => Stats::bump(&shared.stats.aborts_injected),
        None => {}
    }
    Ok(admission)
}

// === request interpretation ===

fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| ApiError::Body { status: e.status(), message: e.body_text() })
}

/// Output length and finish reason: a requested maximum is produced exactly (like vLLM's
/// `ignore_eos`) and ends with `length`; otherwise the default length ends with `stop`.
fn output_len(shared: &Shared, requested: Option<u32>) -> Result<(u32, &'static str), ApiError> {
    match requested {
        None => Ok((shared.config.default_output_tokens.max(1), "stop")),
        Some(n) if (1..=MAX_OUTPUT_TOKENS).contains(&n) => Ok((n, "length")),
        Some(_) => {
            Err(ApiError::bad(format!("max_tokens must be between 1 and {MAX_OUTPUT_TOKENS}"), Some("max_tokens")))
        }
    }
}

/// One choice per (prompt, n), indexed prompt-major as OpenAI does for batched prompts.
fn choices(prompts: &[Prompt], n: Option<u32>) -> Result<Vec<(u64, u32)>, ApiError> {
    let n = n.unwrap_or(1);
    if !(1..=MAX_N).contains(&n) {
        return Err(ApiError::bad(format!("n must be between 1 and {MAX_N}"), Some("n")));
    }
    Ok(prompts.iter().flat_map(|p| (0..n).map(move |i| (p.hash, i))).collect())
}

fn include_usage(options: Option<&openai::StreamOptions>) -> bool {
    options.and_then(|o| o.include_usage).unwrap_or(false)
}

/// Resolves timing and faults from the config, the override headers and the fault RNG.
///
/// A request carrying `x-mock-fault` gets exactly the faults it names and no random ones, so
/// tests stay deterministic even against a mock configured with fault rates.
fn plan(shared: &Shared, headers: &HeaderMap, prompt_tokens: u32) -> Result<(Plan, Decided), ApiError> {
    let config = &shared.config;
    let ttft = header_ms(headers, TTFT_HEADER)?.unwrap_or(config.ttft);
    let itl = header_ms(headers, ITL_HEADER)?.unwrap_or(config.itl);
    let prefill = config.prefill_per_token.checked_mul(prompt_tokens).unwrap_or(Duration::MAX);
    let mut omit_usage = config.omit_usage;
    let decided = match header_str(headers, FAULT_HEADER)? {
        Some(list) => {
            let mut decided = Decided::Deliver(None);
            for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                match item {
                    "error" => decided = Decided::Error,
                    "stall" => decided = Decided::Deliver(Some(Fault::Stall)),
                    "abort" => decided = Decided::Deliver(Some(Fault::Abort)),
                    "no-usage" => omit_usage = true,
                    other => {
                        return Err(ApiError::bad(
                            format!(
                                "{FAULT_HEADER}: unknown fault {other:?} \
                                 (expected error, stall, abort or no-usage)"
                            ),
                            None,
                        ));
                    }
                }
            }
            decided
        }
        None => shared.draw_fault(),
    };
    let plan = Plan {
        fault: match decided {
            Decided::Deliver(f) => f,
            Decided::Error => None,
        },
        omit_usage,
        first: ttft.saturating_add(prefill),
        itl,
        stall: config.stall_duration,
    };
    Ok((plan, decided))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<Option<&'a str>, ApiError> {
    headers.get(name).map(|v| v.to_str().map_err(|_| ApiError::bad(format!("{name} must be ASCII"), None))).transpose()
}

fn header_ms(headers: &HeaderMap, name: &'static str) -> Result<Option<Duration>, ApiError> {
    header_str(headers, name)?
        .map(|s| {
            s.trim()
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| ApiError::bad(format!("{name} must be whole milliseconds"), None))
        })
        .transpose()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Shared {
    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// One draw from the seeded RNG decides error, stall, abort or nothing. The lock is only
    /// taken when some rate is non-zero, keeping the zero-fault hot path lock-free.
    fn draw_fault(&self) -> Decided {
        let c = &self.config;
        if c.error_rate <= 0.0 && c.stall_rate <= 0.0 && c.abort_rate <= 0.0 {
            return Decided::Deliver(None);
        }
        let u: f64 = self.rng.lock().unwrap_or_else(PoisonError::into_inner).random();
        if u < c.error_rate {
            Decided::Error
        } else if u < c.error_rate + c.stall_rate {
            Decided::Deliver(Some(Fault::Stall))
        } else if u < c.error_rate + c.stall_rate + c.abort_rate {
            Decided::Deliver(Some(Fault::Abort))
        } else {
            Decided::Deliver(None)
        }
    }
}

// === other endpoints ===

pub(crate) async fn models(State(shared): State<Arc<Shared>>) -> Response {
    let data = shared
        .config
        .models
        .iter()
        .map(|id| openai::ModelCard { id, object: "model", created: shared.started, owned_by: "obleth-mock" })
        .collect();
    Json(openai::ModelList { object: "list", data }).into_response()
}

pub(crate) async fn health() -> &'static str {
    "ok"
}

pub(crate) async fn stats(State(shared): State<Arc<Shared>>) -> Json<StatsSnapshot> {
    Json(shared.stats.snapshot())
}

pub(crate) async fn reset(State(shared): State<Arc<Shared>>) -> Json<StatsSnapshot> {
    shared.stats.reset();
    Json(shared.stats.snapshot())
}

pub(crate) async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_owned())
}
