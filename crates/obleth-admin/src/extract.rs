//! The admin API's extractors: JSON bodies, path segments and query strings.
//!
//! axum's own extractors answer their rejections in plain text, with 415 or 422 and no
//! field name. Every admin handler reads its input through these instead, so that every
//! refusal is a 400 (413 for a body over the limit) in the OpenAI error shape whose
//! `param` names the offending field (`quota.tpm`, `allowed_models[1]`), path segment
//! (`tenant`) or query parameter (`limit`), before anything is read from or written to
//! the store.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::{ApiError, ErrorCode};

// === bodies ===

/// A JSON body that must be present.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub T);

/// A JSON body that may be absent: an empty body (with or without a `Content-Type`)
/// stands for `T::default()`.
#[derive(Debug)]
pub(crate) struct OptionalJsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match read_json(req, state).await? {
            Some(v) => Ok(JsonBody(v)),
            None => Err(body_error(None, ErrorCode::InvalidBody, "a JSON body is required")),
        }
    }
}

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Ok(OptionalJsonBody(read_json(req, state).await?.unwrap_or_default()))
    }
}

/// The body as `T`, or `None` when it is empty.
async fn read_json<T: DeserializeOwned, S: Send + Sync>(req: Request, state: &S) -> Result<Option<T>, ApiError> {
    let json_type = content_type_is_json(&req);
    let bytes = Bytes::from_request(req, state).await.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
            ApiError::new(ErrorCode::RequestTooLarge, "The request body exceeds the admin API's limit of 2 MiB.")
        }
        e if obleth_core::BodyReadTimeout::is_cause_of(&e) => {
            ApiError::new(ErrorCode::RequestTimeout, "The request body did not arrive in time.")
        }
        e => body_error(None, ErrorCode::InvalidBody, &format!("the body could not be read: {}", e.body_text())),
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match json_type {
        Some(true) => {}
        Some(false) => {
            return Err(ApiError::invalid_with(
                ErrorCode::InvalidContentType,
                "Content-Type",
                "must be application/json",
            ));
        }
        None => {
            return Err(ApiError::invalid_with(
                ErrorCode::InvalidContentType,
                "Content-Type",
                "is required: send the body as application/json",
            ));
        }
    }
    // serde reads a struct from an array too (`["t1", 2]`): every admin body is an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(body_error(None, ErrorCode::InvalidJson, "the body must be a JSON object"));
    }
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(deserialize_error)?;
    // Trailing data (`{"a":1} x`) is as malformed as a syntax error inside the object.
    de.end().map_err(|e| body_error(None, ErrorCode::InvalidJson, &format!("the body is not valid JSON: {e}")))?;
    Ok(Some(value))
}

/// `Some(true)` for `application/json` and `application/*+json`, `Some(false)` for any
/// other type, `None` without the header.
fn content_type_is_json(req: &Request) -> Option<bool> {
    let value = req.headers().get(http::header::CONTENT_TYPE)?;
    let essence = value.to_str().ok().and_then(|v| v.split(';').next()).map(|v| v.trim().to_ascii_lowercase());
    Some(essence.is_some_and(|m| m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))))
}

/// A serde error with the path of the value it is about. Missing fields are reported at
/// the object that lacks them, so the field's name (from serde's message) is appended.
fn deserialize_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.inner();
    // `.` is the body itself; `?` marks a segment serde could not name.
    let path = if path == "." || path.contains('?') { None } else { Some(path) };
    match inner.classify() {
        serde_json::error::Category::Data => {
            let message = inner.to_string();
            let missing = message.strip_prefix("missing field `").and_then(|rest| rest.split_once('`')).map(|(f, _)| f);
            let param = match (path, missing) {
                (Some(p), Some(field)) => Some(format!("{p}.{field}")),
                (None, Some(field)) => Some(field.to_owned()),
                (p, None) => p,
            };
            body_error(param, ErrorCode::InvalidValue, &strip_position(&message))
        }
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof | serde_json::error::Category::Io => {
            // Where a broken document stops parsing names no field; the position does.
            body_error(None, ErrorCode::InvalidJson, &format!("the body is not valid JSON: {inner}"))
        }
    }
}

/// serde_json ends data errors with " at line L column C": noise for a field named by path.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) if message[i..].contains(" column ") => message[..i].to_owned(),
        _ => message.to_owned(),
    }
}

fn body_error(param: Option<String>, code: ErrorCode, message: &str) -> ApiError {
    let message = match &param {
        Some(p) => format!("invalid {p}: {message}"),
        None => format!("invalid body: {message}"),
    };
    let e = ApiError::new(code, message);
    match param {
        Some(p) => e.with_param(p),
        None => e,
    }
}

// === path ===

/// The one parameter of a path (`{tenant}`, `{id}`, `{*name}`), percent-decoded.
#[derive(Debug)]
pub(crate) struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state).await.map(|Path(v)| PathParam(v)).map_err(path_error)
    }
}

/// The two parameters of a path (`{name}/tools/{tool}`), percent-decoded.
#[derive(Debug)]
pub(crate) struct PathPair(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathPair {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map(|Path((a, b))| PathPair(a, b))
            .map_err(path_error)
    }
}

fn path_error(e: PathRejection) -> ApiError {
    use axum::extract::path::ErrorKind;
    let key = match &e {
        PathRejection::FailedToDeserializePathParams(f) => match f.kind() {
            ErrorKind::InvalidUtf8InPathParam { key }
            | ErrorKind::ParseErrorAtKey { key, .. }
            | ErrorKind::DeserializeError { key, .. } => Some(key.clone()),
            _ => None,
        },
        _ => None,
    };
    let message = match &e {
        PathRejection::FailedToDeserializePathParams(f)
            if matches!(f.kind(), ErrorKind::InvalidUtf8InPathParam { .. }) =>
        {
            "is not valid UTF-8 once percent-decoded".to_owned()
        }
        e => e.body_text(),
    };
    match key {
        Some(key) => ApiError::invalid_with(ErrorCode::InvalidPath, &key, &message),
        None => ApiError::new(ErrorCode::InvalidPath, message),
    }
}

// === query strings ===

/// A request's query parameters, taken one by one; any left over is refused.
pub(crate) struct Params(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::new(ErrorCode::InvalidQuery, e.body_text()))?;
        let mut map = HashMap::with_capacity(pairs.len());
        for (name, value) in pairs {
            // `limit=1&limit=1000` has no one meaning: refuse rather than pick one.
            if map.contains_key(&name) {
                return Err(ApiError::invalid(&name, "is given more than once"));
            }
            map.insert(name, value);
        }
        Ok(Params(map))
    }
}

impl Params {
    pub(crate) fn take(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }

    pub(crate) fn bool(&mut self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.take(name).as_deref() {
            None => Ok(None),
            Some("true" | "1") => Ok(Some(true)),
            Some("false" | "0") => Ok(Some(false)),
            Some(_) => Err(ApiError::invalid(name, "must be true or false")),
        }
    }

    /// An integer between `min` and `max`, or `None` when absent.
    pub(crate) fn u32_in(&mut self, name: &str, min: u32, max: u32) -> Result<Option<u32>, ApiError> {
        self.take(name)
            .map(|v| {
                v.trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| ApiError::invalid(name, &format!("must be an integer between {min} and {max}")))
            })
            .transpose()
    }

    /// `limit` (default 100, at most 1000) and `cursor`.
    pub(crate) fn page(&mut self) -> Result<obleth_store::PageRequest, ApiError> {
        let limit = self.u32_in("limit", 1, obleth_store::MAX_PAGE_LIMIT)?.unwrap_or(obleth_store::DEFAULT_PAGE_LIMIT);
        Ok(obleth_store::PageRequest { limit, cursor: self.take("cursor").filter(|c| !c.is_empty()) })
    }

    /// Refuses parameters nobody took.
    pub(crate) fn finish(self) -> Result<(), ApiError> {
        match self.0.into_keys().min() {
            None => Ok(()),
            Some(unknown) => Err(ApiError::invalid(&unknown, "is not a parameter of this request")),
        }
    }
}
