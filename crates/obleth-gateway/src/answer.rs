//! The answer of an admitted request: streamed on as it comes (`stream.rs`), or read
//! whole and reconciled here. Either way the usage is checked (`usage.rs`) and told to
//! the request's charge, which bills it when it is dropped.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, header};
use http_body_util::{BodyExt, Limited};
use obleth_core::Model;
use serde_json::{Map, Value};

use crate::charge::Charge;
use crate::codec::{Codec, Parsed};
use crate::error::{ApiError, ErrorCode};
use crate::estimate::{Encoding, Estimate};
use crate::proxy::Upstream;
use crate::usage::{self, Bounds, usage_of_body};
use crate::{GatewayConfig, telemetry};

/// What the answer is checked and billed against.
pub(crate) struct Answer {
    pub upstream: Upstream,
    pub prompt: Prompt,
    /// What the request allowed (the answer's size is added at the end).
    pub bounds: Bounds,
    /// The budget's and the admission's headers.
    pub headers: HeaderMap,
    pub stream: bool,
    /// The client did not ask for a stream's usage chunk (it is dropped).
    pub hide_usage: bool,
}

impl Answer {
    pub fn new(
        upstream: Upstream,
        request: Parsed,
        estimate: &Estimate,
        model: &Model,
        max_tokens_cap: Option<u32>,
        headers: HeaderMap,
    ) -> Answer {
        let out = &request.output;
        let bounds = Bounds::new(model.context_window, request.max_tokens(max_tokens_cap), out.choices, out.prompts);
        let (stream, hide_usage) = (request.stream, request.stream && !request.wants_usage);
        let json = (!estimate.exact).then_some(request.json);
        let prompt =
            Prompt { tokens: estimate.input, pending: json, encoding: estimate.encoding, codec: request.codec };
        Answer { upstream, prompt, bounds, headers, stream, hide_usage }
    }
}

/// The prompt's tokens: the tokenizer's count made at admission, or an estimate and the
/// request to count them from, once, if the backend's report is not believed.
pub(crate) struct Prompt {
    tokens: u64,
    pending: Option<Map<String, Value>>,
    pub encoding: Encoding,
    pub codec: &'static dyn Codec,
}

impl Prompt {
    pub fn counted(&mut self) -> u64 {
        if let Some(json) = self.pending.take() {
            self.tokens = self.codec.prompt_tokens(self.encoding, &json);
        }
        self.tokens
    }
}

/// Reads a whole answer and bills it.
pub(crate) async fn reconcile(
    answer: Answer,
    charge: &mut Charge,
    config: &GatewayConfig,
) -> Result<Response, ApiError> {
    let Answer { upstream, mut prompt, bounds, headers, .. } = answer;
    let (status, route) = (upstream.response.status(), prompt.codec.route());
    let content_type = upstream.response.headers().get(header::CONTENT_TYPE).cloned();
    let bytes = read_whole(upstream, route.as_str(), config).await?;
    charge.first_token();
    let (encoding, codec) = (prompt.encoding, prompt.codec);
    let checked = usage::check(
        usage_of_body(&bytes),
        &bounds.with_response_bytes(bytes.len()),
        || prompt.counted(),
        || codec.answer_tokens(encoding, &bytes),
    );
    charge.succeeded(status.as_u16(), checked);
    let mut response = Response::new(Body::from(bytes));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type.unwrap_or(HeaderValue::from_static("application/json")));
    h.extend(headers);
    Ok(response)
}

/// The answer's body, within the response timeout and size limit.
async fn read_whole(upstream: Upstream, route: &'static str, config: &GatewayConfig) -> Result<bytes::Bytes, ApiError> {
    let remaining = config.response_timeout.saturating_sub(upstream.sent.elapsed());
    let limited = Limited::new(upstream.response.into_body(), config.max_response_bytes);
    match tokio::time::timeout(remaining, limited.collect()).await {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            telemetry::response_too_large(route);
            Err(response_too_large(config.max_response_bytes))
        }
        Ok(Err(e)) => Err(ApiError::upstream_error(format!("reading the model backend's response failed: {e}"))),
        Err(_) => Err(ApiError::upstream_timeout(config.response_timeout)),
    }
}

pub(crate) fn response_too_large(limit: usize) -> ApiError {
    let message = format!("The model backend's response exceeded the gateway's limit of {limit} bytes.");
    ApiError::new(ErrorCode::UpstreamResponseTooLarge, message)
}
