//! The HTTP client that talks to model backends, and what it will connect to.
//!
//! One pooled hyper client (HTTP/1.1, keep-alive, TCP_NODELAY, HTTPS via rustls with
//! the Mozilla roots) is shared by every request. Base URLs are accepted with or
//! without a trailing `/v1`: `http://vllm:8000` and `http://vllm:8000/v1` both reach
//! `http://vllm:8000/v1/chat/completions`.
//!
//! Every new connection passes the [`UpstreamPolicy`] (see `obleth_core::upstream`): the
//! [`PolicyConnector`] checks IP-literal hosts itself and resolves names through a
//! [`PolicyResolver`], which drops the addresses the policy refuses (with the port of the
//! URL, so that the gateway's own listeners are recognised) and fails when none is left.
//! A name that resolved to an allowed address when its model was registered and to a
//! forbidden one later is therefore refused here, before any byte is sent.

use std::error::Error as StdError;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::rt::{TokioExecutor, TokioIo};
use obleth_core::upstream::{Refusal, UpstreamPolicy};
use tokio::net::TcpStream;
use tower::{Service, ServiceExt};

pub type HttpClient = Client<HttpsConnector<PolicyConnector>, Full<Bytes>>;

type BoxError = Box<dyn StdError + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

/// Builds the shared client; every connection it opens passes `policy`.
pub fn client(connect_timeout: Duration, policy: Arc<UpstreamPolicy>) -> HttpClient {
    client_with_resolver(connect_timeout, policy, GaiResolver::new())
}

/// [`client`] with a resolver of the caller's (tests give names the addresses they need).
pub fn client_with_resolver<R: Clone>(
    connect_timeout: Duration,
    policy: Arc<UpstreamPolicy>,
    resolver: R,
) -> Client<HttpsConnector<PolicyConnector<R>>, Full<Bytes>>
where
    PolicyConnector<R>: Service<Uri, Response = TokioIo<TcpStream>, Error = BoxError, Future = BoxFuture<TokioIo<TcpStream>>>
        + Clone
        + Send
        + Sync
        + 'static,
{
    let connector = PolicyConnector { policy, resolver, connect_timeout };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
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

/// The policy's refusal behind a client error, if that is why it failed.
pub fn refusal_of<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a Refusal> {
    obleth_core::find_cause(e)
}

// === impl PolicyConnector ===

/// A TCP connector that connects only where the policy allows (see the module doc).
#[derive(Clone)]
pub struct PolicyConnector<R = GaiResolver> {
    policy: Arc<UpstreamPolicy>,
    resolver: R,
    connect_timeout: Duration,
}

impl<R> Service<Uri> for PolicyConnector<R>
where
    R: Service<Name> + Clone + Send + Sync + 'static,
    R::Response: Iterator<Item = SocketAddr> + Send,
    R::Error: Into<BoxError>,
    R::Future: Send,
{
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = BoxFuture<TokioIo<TcpStream>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let port = uri.port_u16().unwrap_or(if uri.scheme() == Some(&http::uri::Scheme::HTTPS) { 443 } else { 80 });
        // hyper connects to IP literals without asking the resolver: judge them here.
        let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>()
            && let Err(refusal) = self.policy.check_addr(None, SocketAddr::new(ip, port))
        {
            tracing::warn!(address = %SocketAddr::new(ip, port), reason = %refusal, "upstream address refused by the policy");
            return Box::pin(std::future::ready(Err(refusal.into())));
        }
        // A connector per connection, so that the resolver knows the port (hyper's
        // resolvers see only the name): cheap next to the connection it opens.
        let resolver = PolicyResolver { inner: self.resolver.clone(), policy: self.policy.clone(), port };
        let mut http = HttpConnector::new_with_resolver(resolver);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(self.connect_timeout));
        http.enforce_http(false);
        http.set_keepalive(Some(Duration::from_secs(60)));
        Box::pin(async move { http.call(uri).await.map_err(Into::into) })
    }
}

// === impl PolicyResolver ===

/// Resolves a name with `inner` and keeps only the addresses the policy allows on `port`.
#[derive(Clone)]
pub struct PolicyResolver<R = GaiResolver> {
    inner: R,
    policy: Arc<UpstreamPolicy>,
    port: u16,
}

impl<R> PolicyResolver<R> {
    pub fn new(inner: R, policy: Arc<UpstreamPolicy>, port: u16) -> Self {
        PolicyResolver { inner, policy, port }
    }
}

impl<R> Service<Name> for PolicyResolver<R>
where
    R: Service<Name> + Clone + Send + 'static,
    R::Response: Iterator<Item = SocketAddr> + Send,
    R::Error: Into<BoxError>,
    R::Future: Send,
{
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let (inner, policy, port) = (self.inner.clone(), self.policy.clone(), self.port);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            if let Err(refusal) = policy.check_name(&host) {
                tracing::warn!(host = %host, reason = %refusal, "upstream host refused by the policy");
                return Err(refusal.into());
            }
            let resolved = inner.oneshot(name).await.map_err(Into::into)?;
            let mut allowed = vec![];
            let mut refused = None;
            for mut addr in resolved {
                // As hyper does after resolving: the URL's port, unless the resolver gave one.
                if addr.port() == 0 {
                    addr.set_port(port);
                }
                match policy.check_addr(Some(&host), addr) {
                    Ok(()) => allowed.push(addr),
                    Err(refusal) => {
                        tracing::warn!(host = %host, address = %addr, reason = %refusal, "upstream address refused by the policy");
                        refused.get_or_insert(refusal);
                    }
                }
            }
            match (allowed.is_empty(), refused) {
                (true, Some(refusal)) => Err(refusal.into()),
                (true, None) => Err(format!("{host} resolved to no address").into()),
                (false, _) => Ok(allowed.into_iter()),
            }
        })
    }
}

// === relayed messages ===

// Shared with the MCP gateway, which relays its upstreams' errors too.
pub use obleth_core::relay::{MAX_RELAYED_MESSAGE, relayable_message};

#[cfg(test)]
#[path = "upstream_tests.rs"]
mod tests;
