//! The OpenAI-compatible proxy: the hot path of every inference request.
//!
//! `auth -> budget -> cache -> schedule -> proxy -> stream -> reconcile -> record`.
//! The cache is a seam a later layer fills; this module performs the others in order
//! and makes sure that whatever happens, the admission slot is released, the budget
//! reservation is reconciled, and one usage record is emitted (see [`Tracker`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::Stream;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body::Body as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use obleth_budget::{Held, Limits, to_nanos};
use obleth_core::upstream::ApiBase;
use obleth_core::{AdmissionRequest, Admitted, Model, Rejection, Usage};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};
use tokio::time::Sleep;

use crate::error::ApiError;
use crate::estimate::{self, Encoding};
use crate::identity::Caller;
use crate::listener::{BodyReadTimeout, Connection};
use crate::sse::SseScanner;
use crate::tracker::Tracker;
use crate::usage::{self, Bounds, Checked, usage_of_body};
use crate::{Gateway, RequestId, Route, telemetry, upstream};

/// Response header telling the client how its request was admitted.
pub const ADMISSION_HEADER: &str = "x-obleth-admission";
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Upstream error bodies are read up to this size.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Axum handler for the three proxied routes.
pub async fn handle(State(gw): State<Arc<Gateway>>, route: Route, req: Request) -> Response {
    let request_id = match req.extensions().get::<RequestId>() {
        Some(id) => id.0.clone(),
        None => crate::new_request_id(),
    };
    let conn = req.extensions().get::<Connection>().map(|c| c.0.clone());
    let mut tracker = Tracker::new(gw.sink.clone(), route, request_id, conn);
    let mut body_read = false;
    match forward(&gw, route, req, &mut tracker, &mut body_read).await {
        Ok(res) => res,
        Err(e) => {
            tracker.failed(&e);
            let mut res = e.into_response();
            if !body_read {
                // hyper closes a connection whose request body was left unread; say so,
                // or the client would send its next request into a closing socket.
                res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            res
        }
    }
}

async fn forward(
    gw: &Gateway,
    route: Route,
    req: Request,
    tracker: &mut Tracker,
    body_read: &mut bool,
) -> Result<Response, ApiError> {
    // === auth ===
    let caller = authenticate(gw, req.headers()).await?;
    tracker.caller(&caller);
    if !gw.sink.accepting() {
        // The ledger is full and configured to refuse what it could not record.
        return Err(ApiError::overloaded(
            "ledger_unavailable",
            "The gateway cannot record usage right now and is configured to refuse requests meanwhile; retry later.",
            Duration::from_secs(5),
        ));
    }

    // Only kept when the operator asked to forward it (off by default).
    let client_authorization =
        if gw.config.forward_client_authorization { req.headers().get(header::AUTHORIZATION).cloned() } else { None };

    // === parse ===
    let body = read_body(req.into_body(), gw.config.max_body_bytes).await?;
    *body_read = true;
    let mut obj: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(Value::Object(obj)) => obj,
        Ok(_) => {
            return Err(ApiError::bad_request("invalid_json", "The request body must be a JSON object."));
        }
        Err(e) => {
            return Err(ApiError::bad_request("invalid_json", format!("The request body is not valid JSON: {e}.")));
        }
    };
    let requested = match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(_) => {
            return Err(
                ApiError::bad_request("invalid_model", "'model' must be a non-empty string.").with_param("model")
            );
        }
        None => {
            return Err(ApiError::bad_request("missing_model", "'model' is required.").with_param("model"));
        }
    };
    tracker.requested_model(&requested);
    let stream = match (route, obj.get("stream")) {
        (Route::Embeddings, _) | (_, None | Some(Value::Null)) => false,
        (_, Some(Value::Bool(b))) => *b,
        (_, Some(_)) => {
            return Err(ApiError::bad_request("invalid_stream", "'stream' must be a boolean.").with_param("stream"));
        }
    };

    // === model and policy ===
    let model = gw.registry.get(&requested).await?;
    if !caller.tenant.may_use(&requested) {
        return Err(ApiError::model_not_allowed(&requested));
    }
    tracker.model(&model);

    // === estimate ===
    let encoding = Encoding::for_model(&model.upstream_model).unwrap_or(gw.config.default_encoding);
    let kind = route.request_kind();
    let output = estimate::OutputRequest::parse(kind, &obj)
        .map_err(|e| ApiError::bad_request("invalid_value", e.message).with_param(e.field))?;
    let limits = Limits::from_quota(&caller.tenant.quota);
    // Limits in tokens or money are a hard stop: count the prompt with the tokenizer.
    // Without them the estimate only holds the scheduler's place until the reported usage
    // replaces it, and bytes / 4 does (tokenizing costs ~10-25 µs even for a small prompt).
    let input_exact = limits.needs_tokens();
    let estimated_input =
        if input_exact { count_input(encoding, kind, &body, &obj).await } else { byte_estimate(&body) };
    let room = model.context_window.map(|w| u64::from(w).saturating_sub(estimated_input));
    let estimated_output = output.reserve(gw.config.default_output_tokens, room);
    tracker.estimated_input = estimated_input;

    // === budget ===
    // Every limit of the tenant is checked and reserved in one step before any upstream
    // work; `held` reconciles the reservation with the actual use when it is dropped.
    let tokens = estimated_input.saturating_add(estimated_output);
    let cost = to_nanos(model.cost(estimated_input, estimated_output));
    let mut held = gw
        .budget
        .reserve(&caller.tenant.id, &caller.tenant.name, tracker.request_id(), &limits, tokens, cost)
        .await
        .map_err(|r| crate::limits::refusal(r, tokens))?;

    // === rewrite ===
    obj.insert("model".into(), Value::String(model.upstream_model.clone()));
    let client_wants_usage = stream && wants_usage(&obj);
    if stream && !client_wants_usage {
        let opts = obj.entry("stream_options").or_insert_with(|| Value::Object(Map::new()));
        if !opts.is_object() {
            *opts = Value::Object(Map::new());
        }
        if let Value::Object(o) = opts {
            o.insert("include_usage".into(), Value::Bool(true));
        }
    }

    // === schedule ===
    let mut admitted = gw
        .admission
        .admit(AdmissionRequest {
            tenant: caller.tenant.name.clone(),
            tenant_id: caller.tenant.id.clone(),
            group: caller.tenant.group.clone(),
            tenant_weight: caller.tenant.weight,
            tenant_max_in_flight: caller.tenant.quota.max_in_flight,
            never_degrade: caller.tenant.never_degrade,
            model: requested.clone(),
            model_admission_weight: model.admission_weight,
            model_max_in_flight: model.max_in_flight,
            estimated_input_tokens: estimated_input,
            estimated_output_tokens: estimated_output,
        })
        .await
        .map_err(rejection)?;
    tracker.admitted(admitted.class, admitted.waited);
    // Until the outcome is known, a request that fails costs its prompt only: the
    // backend produced nothing for it.
    settle(&mut admitted, &mut held, &model, estimated_input, 0);
    let mut max_tokens = output.max_tokens;
    if let Some(cap) = admitted.max_tokens_cap {
        cap_max_tokens(&mut obj, cap);
        max_tokens = Some(max_tokens.map_or(u64::from(cap), |m| m.min(u64::from(cap))));
    }
    let bounds = Bounds::new(model.context_window, max_tokens, output.choices, output.prompts);

    // === proxy ===
    let upstream_body =
        serde_json::to_vec(&obj).map_err(|e| ApiError::internal(format!("re-encoding the request failed: {e}")))?;
    let upstream_req =
        build_upstream_request(gw, route, &model, upstream_body, client_authorization, tracker.request_id())?;
    let sent = Instant::now();
    let res = match tokio::time::timeout(gw.config.response_timeout, gw.client.request(upstream_req)).await {
        Ok(Ok(res)) => res,
        Ok(Err(e)) => {
            // The request never reached a model: it cost nothing.
            settle(&mut admitted, &mut held, &model, 0, 0);
            return Err(client_error(e));
        }
        Err(_) => return Err(ApiError::upstream_timeout(gw.config.response_timeout)),
    };
    telemetry::upstream_responded(route.as_str(), sent.elapsed());
    let status = res.status();
    if !status.is_success() {
        // A refusal by the backend produced nothing.
        settle(&mut admitted, &mut held, &model, 0, 0);
        return Err(upstream_status(status, res.into_body(), gw.config.response_timeout).await);
    }
    let admission_value = HeaderValue::from_static(admitted.class.as_str());

    if stream {
        // === stream ===
        tracker.streamed();
        let mut response_headers = HeaderMap::new();
        crate::limits::write_headers(&mut response_headers, &held.status);
        let body = ProxyStream {
            body: res.into_body(),
            scanner: SseScanner::new(!client_wants_usage, gw.config.max_sse_event_bytes),
            tracker: tracker.hand_off(),
            model,
            encoding,
            kind,
            request: if input_exact { None } else { Some(body.clone()) },
            bounds,
            admitted,
            held,
            idle: Box::pin(tokio::time::sleep(gw.config.stream_idle_timeout)),
            idle_timeout: gw.config.stream_idle_timeout,
            received: 0,
            max_response_bytes: gw.config.max_response_bytes,
            route,
            sent,
            first_chunk_seen: false,
            done: false,
        };
        let mut response = Response::new(Body::from_stream(body));
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert(ADMISSION_HEADER, admission_value);
        h.extend(response_headers);
        return Ok(response);
    }

    // === reconcile (non-streamed) ===
    let content_type = res.headers().get(header::CONTENT_TYPE).cloned();
    let remaining = gw.config.response_timeout.saturating_sub(sent.elapsed());
    let collected =
        tokio::time::timeout(remaining, Limited::new(res.into_body(), gw.config.max_response_bytes).collect());
    let bytes = match collected.await {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            telemetry::response_too_large(route.as_str());
            return Err(ApiError::upstream_response_too_large(gw.config.max_response_bytes));
        }
        Ok(Err(e)) => {
            return Err(ApiError::upstream_error(format!("reading the model backend's response failed: {e}")));
        }
        Err(_) => return Err(ApiError::upstream_timeout(gw.config.response_timeout)),
    };
    tracker.first_token();
    let checked = usage::check(
        usage_of_body(&bytes),
        &bounds.with_response_bytes(bytes.len()),
        || if input_exact { tracker.estimated_input } else { count_request(encoding, kind, &body) },
        || output_of_body(encoding, &bytes),
    );
    let usage = bill(tracker, status.as_u16(), checked, &model);
    settle(&mut admitted, &mut held, &model, usage.input_tokens, usage.output_tokens);
    let mut response = Response::new(Body::from(bytes));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type.unwrap_or(HeaderValue::from_static("application/json")));
    h.insert(ADMISSION_HEADER, admission_value);
    crate::limits::write_headers(h, &held.status);
    drop(admitted);
    drop(held);
    Ok(response)
}

pub(crate) async fn authenticate(gw: &Gateway, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::missing_key());
    };
    let secret = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or_else(ApiError::invalid_key)?;
    gw.identity.resolve(secret).await
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    if body.size_hint().lower() > limit as u64 {
        return Err(ApiError::payload_too_large(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(ApiError::payload_too_large(limit))
        }
        Err(e) if BodyReadTimeout::is_cause_of(e.as_ref()) => Err(ApiError::request_timeout()),
        Err(e) => Err(ApiError::bad_request("unreadable_body", format!("The request body could not be read: {e}"))),
    }
}

fn wants_usage(obj: &Map<String, Value>) -> bool {
    obj.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false)
}

/// Reports a request's use so far to the scheduler and the budget; the last report
/// before they are dropped counts.
fn settle(admitted: &mut Admitted, held: &mut Held, model: &Model, input: u64, output: u64) {
    admitted.permit.settle(input, output);
    held.settle(input.saturating_add(output), to_nanos(model.cost(input, output)));
}

/// Records the checked usage as the request's outcome; counts and logs what the
/// upstream reported that was not believed.
fn bill(tracker: &mut Tracker, status: u16, checked: Checked, model: &Model) -> Usage {
    for r in &checked.rejections {
        telemetry::usage_rejected(r.field, r.reason);
    }
    if !checked.rejections.is_empty() {
        tracing::warn!(
            request_id = tracker.request_id(),
            model = %model.model_name,
            rejected = ?checked.rejections,
            "the model backend reported usage that is not plausible; billing the gateway's own count"
        );
    }
    tracker.succeeded(status, checked.usage, checked.estimated, model)
}

/// Prompts larger than this are counted on the blocking pool, not on the data-plane
/// thread (a 4 KB prompt takes about half a millisecond).
const INLINE_COUNT_BYTES: usize = 16 * 1024;

/// The prompt's tokens, counted with the tokenizer.
async fn count_input(encoding: Encoding, kind: estimate::RequestKind, body: &Bytes, obj: &Map<String, Value>) -> u64 {
    if body.len() <= INLINE_COUNT_BYTES {
        return estimate::input_tokens(encoding, kind, obj);
    }
    let body = body.clone();
    let fallback = byte_estimate(&body);
    tokio::task::spawn_blocking(move || count_request(encoding, kind, &body)).await.unwrap_or(fallback)
}

/// The prompt's tokens, from the raw request body.
fn count_request(encoding: Encoding, kind: estimate::RequestKind, body: &[u8]) -> u64 {
    match serde_json::from_slice::<Map<String, Value>>(body) {
        Ok(obj) => estimate::input_tokens(encoding, kind, &obj),
        Err(_) => byte_estimate(body),
    }
}

/// The prompt's tokens without a tokenizer: about 4 bytes a token.
fn byte_estimate(body: &[u8]) -> u64 {
    (body.len() as u64).div_ceil(4)
}

/// Output tokens of a whole response that reported no usage, counted with the tokenizer.
fn output_of_body(encoding: Encoding, body: &[u8]) -> u64 {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return 0;
    };
    let choices = v.get("choices").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    choices
        .iter()
        .filter_map(|c| c.pointer("/message/content").or_else(|| c.get("text")).and_then(Value::as_str))
        .map(|t| estimate::count_text(encoding, t))
        .sum()
}

/// Caps the request's output length (brownout).
fn cap_max_tokens(obj: &mut Map<String, Value>, cap: u32) {
    let field = if obj.contains_key("max_completion_tokens") { "max_completion_tokens" } else { "max_tokens" };
    let current = obj.get(field).and_then(Value::as_u64).unwrap_or(u64::MAX);
    obj.insert(field.into(), Value::from(current.min(cap as u64)));
}

fn rejection(r: Rejection) -> ApiError {
    match r {
        Rejection::QueueFull { retry_after } => ApiError::queue_full(retry_after),
        Rejection::QueueTimeout { retry_after } => ApiError::overloaded(
            "queue_timeout",
            "The request waited too long for a free slot; retry later.",
            retry_after,
        ),
        Rejection::ShuttingDown => {
            ApiError::overloaded("shutting_down", "The gateway is shutting down.", Duration::from_secs(1))
        }
    }
}

fn build_upstream_request(
    gw: &Gateway,
    route: Route,
    model: &Model,
    body: Vec<u8>,
    client_authorization: Option<HeaderValue>,
    request_id: &str,
) -> Result<http::Request<Full<Bytes>>, ApiError> {
    let default = gw.config.default_upstream.as_ref();
    let invalid =
        || ApiError::upstream_error(format!("The upstream URL of the model '{}' is invalid.", model.model_name));
    // A model's own base is parsed again here, not trusted as stored: rows written before
    // the registry refused credentials, queries and non-canonical hosts may still hold
    // them. The default upstream was parsed once, at start.
    let own;
    let base = match (&model.api_base, default) {
        (Some(raw), _) => {
            own = ApiBase::parse(raw).map_err(|_| invalid())?;
            &own
        }
        (None, Some(d)) => d,
        (None, None) => {
            return Err(ApiError::upstream_error(format!(
                "No upstream is configured for the model '{}'.",
                model.model_name
            )));
        }
    };
    // The connector judges names after DNS; it judges IP literals too, but this answers
    // the common case before a connection is even looked for.
    if let Some(Err(refusal)) = gw.config.upstream_policy.check_literal(base) {
        tracing::warn!(model = %model.model_name, reason = %refusal, "upstream refused by the policy");
        return Err(ApiError::upstream_forbidden());
    }
    let uri = upstream::endpoint(base.as_str(), route.upstream_path()).map_err(|_| invalid())?;
    let mut builder = http::Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::ACCEPT,
            if route == Route::Embeddings { "application/json" } else { "application/json, text/event-stream" },
        )
        .header(REQUEST_ID_HEADER, request_id);
    // The global key belongs to the default upstream: it goes nowhere else, or any
    // model's api_base would receive it.
    let to_default = match (&model.api_base, default) {
        (None, _) => true,
        (Some(_), Some(d)) => d.same_upstream(base),
        (Some(_), None) => false,
    };
    let credential = model.api_key.as_ref().or(gw.config.upstream_api_key.as_ref().filter(|_| to_default));
    if let Some(key) = credential {
        let v = HeaderValue::from_str(&format!("Bearer {}", key.expose_secret()))
            .map_err(|_| ApiError::internal("The configured upstream API key is not a valid header value."))?;
        builder = builder.header(header::AUTHORIZATION, v);
    } else if let Some(v) = client_authorization {
        builder = builder.header(header::AUTHORIZATION, v);
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| ApiError::internal(format!("building the upstream request failed: {e}")))
}

fn client_error(e: hyper_util::client::legacy::Error) -> ApiError {
    // What failed, and where, goes to the log: the message names the gateway's internal
    // addresses, which are not the client's business.
    let detail = std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_else(|| e.to_string());
    if let Some(refusal) = upstream::refusal_of(&e) {
        tracing::warn!(reason = %refusal, "upstream connection refused by the policy");
        ApiError::upstream_forbidden()
    } else if e.is_connect() {
        tracing::warn!(error = %detail, "the model backend could not be reached");
        ApiError::upstream_unreachable()
    } else {
        tracing::warn!(error = %detail, "the model backend closed the connection");
        ApiError::upstream_error("The model backend closed the connection.")
    }
}

/// Maps a non-2xx upstream answer. Errors about the request itself (400, 404, 413,
/// 422, 429) are passed through with the upstream's body, as a client of the backend
/// would have seen them; errors about the gateway's own credentials or the backend's
/// health become 502 so that clients do not blame their key.
async fn upstream_status(status: StatusCode, body: Incoming, timeout: Duration) -> ApiError {
    let bytes = match tokio::time::timeout(timeout, Limited::new(body, MAX_ERROR_BODY).collect()).await {
        Ok(Ok(c)) => c.to_bytes(),
        _ => Bytes::new(),
    };
    // Relayed to the client: bounded, and without the URLs and addresses the backend's
    // message may name (the gateway's internal network).
    let message = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(upstream::relayable_message));
    match status.as_u16() {
        400 | 404 | 413 | 422 | 429 => {
            let mut e =
                ApiError::upstream_error(message.unwrap_or_else(|| format!("The model backend answered {status}.")));
            e.status = status;
            e.kind = "invalid_request_error";
            e.code = "upstream_rejected";
            if status == StatusCode::TOO_MANY_REQUESTS {
                e.kind = "rate_limit_error";
                e.retry_after = Some(Duration::from_secs(1));
            }
            e
        }
        401 | 403 => {
            ApiError::upstream_error(format!("The model backend refused the gateway's credentials ({status})."))
        }
        _ => ApiError::upstream_error(format!("The model backend failed with status {status}.")),
    }
}

/// The prompt's tokens as the gateway counts them: the tokenizer's count made at
/// admission, or made now from the kept `request` (once; the count replaces the estimate).
fn counted_input(
    request: &mut Option<Bytes>,
    estimated_input: &mut u64,
    encoding: Encoding,
    kind: estimate::RequestKind,
) -> u64 {
    if let Some(request) = request.take() {
        *estimated_input = count_request(encoding, kind, &request);
    }
    *estimated_input
}

// === impl ProxyStream ===

/// The body of a streamed response: forwards upstream frames as they come, watches
/// for usage, enforces the idle timeout, and holds the admission slot and the tracker
/// until the stream ends or is dropped (client gone), which also drops the upstream
/// body and thereby cancels the upstream request.
struct ProxyStream {
    body: Incoming,
    scanner: SseScanner,
    tracker: Tracker,
    model: Arc<Model>,
    encoding: Encoding,
    kind: estimate::RequestKind,
    /// The request, kept to count its prompt if the upstream reports no usage and the
    /// admission estimate was not a tokenizer count.
    request: Option<Bytes>,
    /// What the request allowed (the response's size is added at the end).
    bounds: Bounds,
    admitted: Admitted,
    held: Held,
    idle: Pin<Box<Sleep>>,
    idle_timeout: Duration,
    /// Bytes received from the upstream so far, bounded by `max_response_bytes`.
    received: usize,
    max_response_bytes: usize,
    route: Route,
    sent: Instant,
    first_chunk_seen: bool,
    done: bool,
}

impl ProxyStream {
    /// The usage to bill: what the upstream reported where it is plausible, the
    /// gateway's own count where it is not (or was not reported). The prompt is counted
    /// only if the reported input is not believed.
    fn checked_usage(&mut self) -> Checked {
        let bounds = self.bounds.with_response_bytes(self.received);
        let (encoding, kind) = (self.encoding, self.kind);
        let (request, estimated_input) = (&mut self.request, &mut self.tracker.estimated_input);
        let text = &self.scanner.text;
        usage::check(
            self.scanner.usage,
            &bounds,
            || counted_input(request, estimated_input, encoding, kind),
            || estimate::count_text(encoding, text),
        )
    }

    /// A stream that ends early (error, or client gone) cost what it streamed so far.
    fn settle_partial(&mut self) {
        let usage = self.checked_usage().usage;
        settle(&mut self.admitted, &mut self.held, &self.model, usage.input_tokens, usage.output_tokens);
    }

    fn end_with_error(&mut self, error: ApiError) -> Option<Result<Bytes, std::io::Error>> {
        self.done = true;
        self.settle_partial();
        // An event the client got part of is closed; one held back is dropped.
        let mut out = self.scanner.close().to_vec();
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&error.body());
        out.extend_from_slice(b"\n\n");
        self.tracker.failed(&error);
        Some(Ok(Bytes::from(out)))
    }

    /// The upstream's stream ended: bill it and send what is left.
    fn complete(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        self.done = true;
        let rest = self.scanner.finish();
        if self.scanner.upstream_error {
            self.tracker.failed(&ApiError::upstream_error("The model backend reported an error in the stream."));
            self.settle_partial();
        } else {
            let checked = self.checked_usage();
            let usage = bill(&mut self.tracker, 200, checked, &self.model);
            settle(&mut self.admitted, &mut self.held, &self.model, usage.input_tokens, usage.output_tokens);
        }
        (!rest.is_empty()).then_some(Ok(rest))
    }

    /// One frame from the upstream: bounded, scanned, and what to send on.
    fn frame(&mut self, data: Bytes) -> Result<Bytes, ApiError> {
        if !self.first_chunk_seen {
            self.first_chunk_seen = true;
            self.tracker.first_token();
            telemetry::upstream_first_chunk(self.route.as_str(), self.sent.elapsed());
        }
        self.received = self.received.saturating_add(data.len());
        if self.received > self.max_response_bytes {
            telemetry::response_too_large(self.route.as_str());
            return Err(ApiError::upstream_response_too_large(self.max_response_bytes));
        }
        let out = self.scanner.push(data);
        if self.scanner.overflowed {
            return Err(ApiError::upstream_event_too_large(self.scanner.max_event()));
        }
        Ok(out)
    }
}

impl Drop for ProxyStream {
    fn drop(&mut self) {
        if !self.done {
            self.settle_partial();
        }
    }
}

impl Stream for ProxyStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    let deadline = tokio::time::Instant::now() + this.idle_timeout;
                    this.idle.as_mut().reset(deadline);
                    match this.frame(data) {
                        Ok(out) if out.is_empty() => continue,
                        Ok(out) => return Poll::Ready(Some(Ok(out))),
                        Err(e) => return Poll::Ready(this.end_with_error(e)),
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let err = ApiError::upstream_error(format!("The model backend's stream broke off: {e}"));
                    return Poll::Ready(this.end_with_error(err));
                }
                Poll::Ready(None) => return Poll::Ready(this.complete()),
                Poll::Pending => {
                    ready!(this.idle.as_mut().poll(cx));
                    let err = ApiError::upstream_timeout(this.idle_timeout);
                    return Poll::Ready(this.end_with_error(err));
                }
            }
        }
    }
}
