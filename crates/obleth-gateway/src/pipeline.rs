//! The request pipeline of the proxied routes, one way from the client to the backend:
//!
//! `auth -> budget -> cache -> schedule -> proxy -> stream -> reconcile -> record`
//!
//! [`forward`] reads as that line. Each step is a plain async function with narrow, typed
//! inputs (the identity cache, the budget, the admission policy; never the whole
//! [`Gateway`]) and returns a typed value or the [`ApiError`] the client gets. What the
//! request holds once admitted travels in its [`Charge`], which settles it once, whatever
//! happens (see `charge.rs`). The cache is a seam a later layer fills.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, header};
use http_body::Body as _;
use http_body_util::{BodyExt, Limited};
use obleth_budget::{Budget, Held, Limits, to_nanos};
use obleth_core::{Admission, AdmissionRequest, Admitted, Model, Rejection, Tenant, TokenEstimate, UsageSink};

use crate::answer::{self, Answer};
use crate::charge::Charge;
use crate::codec::{Codec, Parsed, Rewrite};
use crate::error::{ApiError, ErrorCode};
use crate::estimate::{Encoding, Estimate};
use crate::identity::{Caller, Identity};
use crate::listener::{BodyReadTimeout, Connection};
use crate::registry::Registry;
use crate::tracker::Tracker;
use crate::{Gateway, GatewayConfig, RequestId, Route, proxy, stream};

/// Axum handler of the proxied routes.
pub async fn handle(State(gw): State<Arc<Gateway>>, route: Route, req: Request) -> Response {
    let request_id = match req.extensions().get::<RequestId>() {
        Some(id) => id.0.clone(),
        None => crate::new_request_id(),
    };
    let conn = req.extensions().get::<Connection>().map(|c| c.0.clone());
    let mut charge = Charge::new(Tracker::new(gw.sink.clone(), route, request_id, conn));
    match forward(&gw, route.codec(), req, &mut charge).await {
        Ok(res) => res,
        Err(e) => {
            charge.failed(&e);
            e.into_response()
        }
    }
}

/// One request, from its arrival to the response handed to the client.
async fn forward(
    gw: &Gateway,
    codec: &'static dyn Codec,
    req: Request,
    charge: &mut Charge,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    // === auth ===
    let caller = authenticate(&gw.identity, &parts.headers).await.map_err(unread)?;
    charge.caller(&caller);
    ledger_accepts(gw.sink.as_ref()).map_err(unread)?;
    let mut request = read(codec, body, gw.config.max_body_bytes).await?;
    charge.requested(&request.model);
    let model = resolve(&gw.registry, &caller.tenant, &request.model).await?;
    charge.model(&model);
    // === budget ===
    let estimate = estimate(&gw.config, &caller.tenant, &model, &mut request).await?;
    let (held, rate_headers) = reserve(&gw.budget, &caller.tenant, charge.request_id(), &model, &estimate).await?;
    // === cache === (planned: the exact-match response cache answers here, unadmitted)
    // === schedule ===
    let admitted = schedule(gw.admission.as_ref(), &caller.tenant, &model, &estimate).await?;
    let (max_tokens_cap, headers) = (admitted.max_tokens_cap, answer_headers(rate_headers, &admitted));
    charge.admitted(admitted, held, model.clone(), estimate.input);
    // === proxy ===
    let rewrite = Rewrite { upstream_model: &model.upstream_model, max_tokens_cap };
    let upstream_body = codec.upstream_body(&mut request, &rewrite)?;
    let client_authorization = forwarded_authorization(&gw.config, &parts.headers);
    let sent = proxy::send(&gw.client, &gw.config, codec.route(), &model, upstream_body, client_authorization, charge);
    let upstream = sent.await?;
    // === stream | reconcile, then record (when the charge is dropped) ===
    let answer = Answer::new(upstream, request, &estimate, &model, max_tokens_cap, headers);
    if answer.stream {
        return Ok(stream::respond(answer, charge.take(), &gw.config));
    }
    answer::reconcile(answer, charge, &gw.config).await
}

/// The caller of a request, from its bearer key.
pub(crate) async fn authenticate(identity: &Identity, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::missing_key());
    };
    let secret = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or_else(ApiError::invalid_key)?;
    identity.resolve(secret).await
}

/// An answer given before the request's body was read. hyper closes a connection whose
/// request body was left unread; say so, or the client would send its next request into
/// a closing socket.
fn unread(e: ApiError) -> ApiError {
    e.with_header(header::CONNECTION, HeaderValue::from_static("close"))
}

/// The ledger is full and configured to refuse what it could not record.
fn ledger_accepts(sink: &dyn UsageSink) -> Result<(), ApiError> {
    if sink.accepting() {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::LedgerUnavailable,
        "The gateway cannot record usage right now and is configured to refuse requests meanwhile; retry later.",
    )
    .with_retry_after(Duration::from_secs(5)))
}

/// Reads the body under the size limit and parses it, once.
async fn read(codec: &'static dyn Codec, body: Body, limit: usize) -> Result<Parsed, ApiError> {
    if body.size_hint().lower() > limit as u64 {
        return Err(unread(payload_too_large(limit)));
    }
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return Err(unread(payload_too_large(limit)));
        }
        Err(e) if BodyReadTimeout::is_cause_of(e.as_ref()) => {
            return Err(unread(ApiError::new(ErrorCode::RequestTimeout, "The request body did not arrive in time.")));
        }
        Err(e) => {
            let message = format!("The request body could not be read: {e}");
            return Err(unread(ApiError::new(ErrorCode::UnreadableBody, message)));
        }
    };
    codec.parse(bytes)
}

fn payload_too_large(limit: usize) -> ApiError {
    ApiError::new(ErrorCode::RequestTooLarge, format!("The request body exceeds the limit of {limit} bytes."))
}

/// The model the request names, if the tenant may use it.
async fn resolve(registry: &Registry, tenant: &Tenant, requested: &str) -> Result<Arc<Model>, ApiError> {
    let model = registry.get(requested).await?;
    if !tenant.may_use(requested) {
        let message = format!("This key's tenant may not use the model '{requested}'.");
        return Err(ApiError::new(ErrorCode::ModelNotAllowed, message).with_param("model"));
    }
    Ok(model)
}

/// Prompts larger than this are counted on the blocking pool, not on the data-plane
/// thread (a 4 KB prompt takes about half a millisecond).
const INLINE_COUNT_BYTES: usize = 16 * 1024;

/// Estimates the request's tokens. Limits in tokens or money are a hard stop: the prompt
/// is counted with the tokenizer. Without them the estimate only holds the scheduler's
/// place until the reported usage replaces it, and bytes / 4 does (tokenizing costs
/// ~10-25 µs even for a small prompt).
async fn estimate(
    config: &GatewayConfig,
    tenant: &Tenant,
    model: &Model,
    request: &mut Parsed,
) -> Result<Estimate, ApiError> {
    let encoding = Encoding::for_model(&model.upstream_model).unwrap_or(config.default_encoding);
    let exact = Limits::from_quota(&tenant.quota).needs_tokens();
    let input = match exact {
        false => byte_estimate(&request.raw),
        true if request.raw.len() <= INLINE_COUNT_BYTES => request.codec.prompt_tokens(encoding, &request.json),
        true => count_off_thread(encoding, request).await?,
    };
    let room = model.context_window.map(|w| u64::from(w).saturating_sub(input));
    let output = request.output.reserve(config.default_output_tokens, room);
    Ok(Estimate { input, exact, output, encoding })
}

/// Counts a large prompt on the blocking pool; the JSON goes there and back.
async fn count_off_thread(encoding: Encoding, request: &mut Parsed) -> Result<u64, ApiError> {
    let (codec, json) = (request.codec, std::mem::take(&mut request.json));
    let counted = tokio::task::spawn_blocking(move || (codec.prompt_tokens(encoding, &json), json)).await;
    let (tokens, json) =
        counted.map_err(|_| ApiError::new(ErrorCode::ShuttingDown, "The gateway is shutting down."))?;
    request.json = json;
    Ok(tokens)
}

/// The prompt's tokens without a tokenizer: about 4 bytes a token.
pub(crate) fn byte_estimate(body: &[u8]) -> u64 {
    (body.len() as u64).div_ceil(4)
}

/// Checks and reserves every limit of the tenant in one step, before any upstream work.
/// Returns the reservation and the `x-ratelimit-*` headers of the answer.
async fn reserve(
    budget: &Budget,
    tenant: &Tenant,
    request_id: &str,
    model: &Model,
    estimate: &Estimate,
) -> Result<(Held, HeaderMap), ApiError> {
    let limits = Limits::from_quota(&tenant.quota);
    let tokens = estimate.input.saturating_add(estimate.output);
    let cost = to_nanos(model.cost(estimate.input, estimate.output));
    let held = budget
        .reserve(&tenant.id, &tenant.name, request_id, &limits, tokens, cost)
        .await
        .map_err(|r| crate::limits::refusal(r, tokens))?;
    let headers = crate::limits::headers(&held.status);
    Ok((held, headers))
}

/// Waits for an upstream slot.
async fn schedule(
    admission: &dyn Admission,
    tenant: &Arc<Tenant>,
    model: &Arc<Model>,
    estimate: &Estimate,
) -> Result<Admitted, ApiError> {
    let request = AdmissionRequest {
        tenant: tenant.clone(),
        model: model.clone(),
        estimate: TokenEstimate { input: estimate.input, output: estimate.output },
    };
    admission.admit(request).await.map_err(rejection)
}

fn rejection(r: Rejection) -> ApiError {
    let (code, message, retry_after) = match r {
        Rejection::QueueFull { retry_after } => (
            ErrorCode::QueueFull,
            "Too many requests are waiting for this tenant or the gateway; retry later.",
            retry_after,
        ),
        Rejection::QueueTimeout { retry_after } => {
            (ErrorCode::QueueTimeout, "The request waited too long for a free slot; retry later.", retry_after)
        }
        Rejection::ShuttingDown => (ErrorCode::ShuttingDown, "The gateway is shutting down.", Duration::from_secs(1)),
    };
    ApiError::new(code, message).with_retry_after(retry_after)
}

/// The headers every answer of an admitted request carries: the budget's rate-limit
/// windows and how the request was admitted.
fn answer_headers(mut headers: HeaderMap, admitted: &Admitted) -> HeaderMap {
    headers.insert(crate::ADMISSION_HEADER, HeaderValue::from_static(admitted.class.as_str()));
    headers
}

/// The client's own `Authorization`, kept only when the operator asked to forward it.
fn forwarded_authorization(config: &GatewayConfig, headers: &HeaderMap) -> Option<HeaderValue> {
    if config.forward_client_authorization { headers.get(header::AUTHORIZATION).cloned() } else { None }
}
