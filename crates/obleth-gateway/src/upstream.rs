//! The HTTP client that talks to model backends.
//!
//! One pooled hyper client (HTTP/1.1, keep-alive, TCP_NODELAY, HTTPS via rustls with
//! the Mozilla roots) is shared by every request. Base URLs are accepted with or
//! without a trailing `/v1`: `http://vllm:8000` and `http://vllm:8000/v1` both reach
//! `http://vllm:8000/v1/chat/completions`.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Builds the shared client.
pub fn client(connect_timeout: Duration) -> HttpClient {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.enforce_http(false);
    http.set_keepalive(Some(Duration::from_secs(60)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .build(https)
}

/// The full URL of `path` (e.g. `/chat/completions`) on an upstream base URL.
pub fn endpoint(base: &str, path: &str) -> Result<http::Uri, http::uri::InvalidUri> {
    let base = base.trim_end_matches('/');
    let url = if base.ends_with("/v1") { format!("{base}{path}") } else { format!("{base}/v1{path}") };
    url.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        for base in ["http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/"] {
            assert_eq!(endpoint(base, "/chat/completions").expect("uri"), "http://h:8000/v1/chat/completions");
        }
        assert_eq!(
            endpoint("https://api.example.com/openai/v1", "/embeddings").expect("uri"),
            "https://api.example.com/openai/v1/embeddings"
        );
        assert!(endpoint("http://bad host", "/x").is_err());
    }
}
