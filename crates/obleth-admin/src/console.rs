//! The operator console under `/ui/`: the embedded build of `console/`, with the headers
//! that keep it to itself.
//!
//! Every console path that is not a file loads `index.html` (the page routes itself).
//! The Content-Security-Policy allows scripts, styles and connections from this origin
//! only, with no inline script or `eval`, and no framing: an injected string in a tenant
//! or model name cannot run, and no other site can frame the console to trick a click.
//! The page reads only the documented admin API, with the session cookie.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::{AdminState, ApiError, ErrorCode};

/// The console's Content-Security-Policy.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Adds the console's routes to the admin router.
pub(crate) fn routes(router: Router<AdminState>) -> Router<AdminState> {
    router
        .route("/", get(|| async { Redirect::temporary("/ui/") }))
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(|| async { page("") }))
        .route("/ui/{*path}", get(|Path(path): Path<String>| async move { page(&path) }))
}

fn page(path: &str) -> Response {
    if let Some(asset) = obleth_console::asset(path) {
        let cache = if asset.immutable { "public, max-age=31536000, immutable" } else { "no-cache" };
        return with_headers(asset.bytes, asset.content_type, cache);
    }
    // A missing file under assets/ (an old tab after an upgrade) is a 404, not the page.
    if path.starts_with("assets/") {
        return ApiError::new(ErrorCode::NotFound, "No such console file.").into_response();
    }
    match obleth_console::index() {
        Some(index) => with_headers(index.bytes, index.content_type, "no-cache"),
        None => (
            StatusCode::NOT_FOUND,
            "This obleth was built without its console (console/dist was missing at build time).",
        )
            .into_response(),
    }
}

fn with_headers(bytes: &'static [u8], content_type: &'static str, cache: &'static str) -> Response {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    (h, bytes).into_response()
}
