//! The proxy step: the request sent to the model's backend, and the backend's refusals
//! turned into the client's answer.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use obleth_core::Model;
use obleth_core::upstream::ApiBase;
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::charge::Charge;
use crate::error::{ApiError, ErrorCode};
use crate::{GatewayConfig, REQUEST_ID_HEADER, Route, telemetry, upstream};

/// Upstream error bodies are read up to this size.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The backend's successful answer, its body still to come.
pub(crate) struct Upstream {
    pub response: http::Response<Incoming>,
    /// When the request was sent (the response's deadlines count from it).
    pub sent: Instant,
}

/// Sends the request upstream and waits for the response's head. A backend that was never
/// reached or refused the request produced nothing, and the charge is told so.
pub(crate) async fn send(
    client: &upstream::HttpClient,
    config: &GatewayConfig,
    route: Route,
    model: &Model,
    body: Bytes,
    client_authorization: Option<HeaderValue>,
    charge: &mut Charge,
) -> Result<Upstream, ApiError> {
    let request = build(config, route, model, body, client_authorization, charge.request_id())?;
    let sent = Instant::now();
    let response = match tokio::time::timeout(config.response_timeout, client.request(request)).await {
        Ok(Ok(res)) => res,
        Ok(Err(e)) => {
            charge.nothing_produced();
            return Err(client_error(e));
        }
        // The backend may be working on it: the request keeps costing its prompt.
        Err(_) => return Err(ApiError::upstream_timeout(config.response_timeout)),
    };
    telemetry::upstream_responded(route.as_str(), sent.elapsed());
    let status = response.status();
    if !status.is_success() {
        charge.nothing_produced();
        return Err(upstream_status(status, response.into_body(), config.response_timeout).await);
    }
    Ok(Upstream { response, sent })
}

/// Where the model's requests go: its own `api_base`, or the default upstream.
fn base<'a>(config: &'a GatewayConfig, model: &Model, own: &'a mut Option<ApiBase>) -> Result<&'a ApiBase, ApiError> {
    // A model's own base is parsed again here, not trusted as stored: rows written before
    // the registry refused credentials, queries and non-canonical hosts may still hold
    // them. The default upstream was parsed once, at start.
    match (&model.api_base, config.default_upstream.as_ref()) {
        (Some(raw), _) => Ok(own.insert(ApiBase::parse(raw).map_err(|_| invalid_base(model))?)),
        (None, Some(d)) => Ok(d),
        (None, None) => {
            Err(ApiError::upstream_error(format!("No upstream is configured for the model '{}'.", model.model_name)))
        }
    }
}

fn invalid_base(model: &Model) -> ApiError {
    ApiError::upstream_error(format!("The upstream URL of the model '{}' is invalid.", model.model_name))
}

fn build(
    config: &GatewayConfig,
    route: Route,
    model: &Model,
    body: Bytes,
    client_authorization: Option<HeaderValue>,
    request_id: &str,
) -> Result<http::Request<Full<Bytes>>, ApiError> {
    let mut own = None;
    let base = base(config, model, &mut own)?;
    // The connector judges names after DNS; it judges IP literals too, but this answers
    // the common case before a connection is even looked for.
    if let Some(Err(refusal)) = config.upstream_policy.check_literal(base) {
        tracing::warn!(model = %model.model_name, reason = %refusal, "upstream refused by the policy");
        return Err(forbidden());
    }
    let uri = upstream::endpoint(base.as_str(), route.upstream_path()).map_err(|_| invalid_base(model))?;
    let accept = if route == Route::Embeddings { "application/json" } else { "application/json, text/event-stream" };
    let builder = http::Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, accept)
        .header(REQUEST_ID_HEADER, request_id);
    let builder = match credential(config, model, base)? {
        Some(v) => builder.header(header::AUTHORIZATION, v),
        None => match client_authorization {
            Some(v) => builder.header(header::AUTHORIZATION, v),
            None => builder,
        },
    };
    builder.body(Full::new(body)).map_err(|e| ApiError::internal(format!("building the upstream request failed: {e}")))
}

/// The model's own credential, or the global key when the request goes to the default
/// upstream (it goes nowhere else, or any model's `api_base` would receive it).
fn credential(config: &GatewayConfig, model: &Model, base: &ApiBase) -> Result<Option<HeaderValue>, ApiError> {
    let to_default = match (&model.api_base, &config.default_upstream) {
        (None, _) => true,
        (Some(_), Some(d)) => d.same_upstream(base),
        (Some(_), None) => false,
    };
    let Some(key) = model.api_key.as_ref().or(config.upstream_api_key.as_ref().filter(|_| to_default)) else {
        return Ok(None);
    };
    HeaderValue::from_str(&format!("Bearer {}", key.expose_secret()))
        .map(Some)
        .map_err(|_| ApiError::internal("The configured upstream API key is not a valid header value."))
}

fn forbidden() -> ApiError {
    ApiError::new(
        ErrorCode::UpstreamForbidden,
        "The gateway's upstream policy does not allow this model's backend address.",
    )
}

fn client_error(e: hyper_util::client::legacy::Error) -> ApiError {
    // What failed, and where, goes to the log: the message names the gateway's internal
    // addresses, which are not the client's business.
    let detail = std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_else(|| e.to_string());
    if let Some(refusal) = upstream::refusal_of(&e) {
        tracing::warn!(reason = %refusal, "upstream connection refused by the policy");
        forbidden()
    } else if e.is_connect() {
        tracing::warn!(error = %detail, "the model backend could not be reached");
        ApiError::new(ErrorCode::UpstreamUnreachable, "The model backend could not be reached.")
    } else {
        tracing::warn!(error = %detail, "the model backend closed the connection");
        ApiError::upstream_error("The model backend closed the connection.")
    }
}

/// Maps a non-2xx upstream answer. Errors about the request itself (400, 404, 413,
/// 422, 429) are passed through with the upstream's message, as a client of the backend
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
    let rejected = match status.as_u16() {
        400 => ErrorCode::UpstreamBadRequest,
        404 => ErrorCode::UpstreamNotFound,
        413 => ErrorCode::UpstreamPayloadTooLarge,
        422 => ErrorCode::UpstreamUnprocessable,
        429 => ErrorCode::UpstreamRateLimited,
        401 | 403 => {
            return ApiError::upstream_error(format!(
                "The model backend refused the gateway's credentials ({status})."
            ));
        }
        _ => return ApiError::upstream_error(format!("The model backend failed with status {status}.")),
    };
    let e = ApiError::new(rejected, message.unwrap_or_else(|| format!("The model backend answered {status}.")));
    if rejected == ErrorCode::UpstreamRateLimited { e.with_retry_after(Duration::from_secs(1)) } else { e }
}
