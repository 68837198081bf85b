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

/// The most of an upstream's error message relayed to a client.
pub const MAX_RELAYED_MESSAGE: usize = 512;

/// An upstream's error message fit to relay to a client: URLs and network addresses
/// (`http://…`, `10.1.2.3:8000`, `[fd00::1]:8000`, `vllm-0.vllm:8000`) replaced, since
/// they name the gateway's internal network, and at most [`MAX_RELAYED_MESSAGE`]
/// characters, cut on a character boundary.
pub fn relayable_message(message: &str) -> String {
    let scrubbed = scrub_addresses(&scrub_urls(message));
    let mut out: String = scrubbed.chars().take(MAX_RELAYED_MESSAGE).collect();
    if out.len() < scrubbed.len() {
        out.push('…');
    }
    out
}

/// Replaces every `scheme://…` with `[url]`.
fn scrub_urls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        // The scheme: the letters, digits, `+`, `-` and `.` just before `://`.
        let scheme_start = rest[..i]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            .last()
            .map_or(i, |(j, _)| j);
        let after = &rest[i + 3..];
        if scheme_start == i {
            out.push_str(&rest[..i + 3]);
            rest = after;
            continue;
        }
        let end =
            after.find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`')).unwrap_or(after.len());
        // Sentence punctuation after a URL is not part of it.
        let url_len = after[..end].trim_end_matches(['.', ',', ';', ':', ')', '!', '?']).len();
        out.push_str(&rest[..scheme_start]);
        out.push_str("[url]");
        rest = &after[url_len..];
    }
    out.push_str(rest);
    out
}

/// Replaces IP addresses (with an optional port), bracketed IPv6 and `host:port` with `[address]`.
fn scrub_addresses(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let (core, trail) = split_trailing_punctuation(word);
        out.push_str(if is_address(core) { "[address]" } else { core });
        out.push_str(trail);
        word.clear();
    };
    for c in s.chars() {
        if c.is_whitespace() || matches!(c, '"' | '\'' | '(' | ')' | ',' | '<' | '>' | '`' | '=') {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn split_trailing_punctuation(word: &str) -> (&str, &str) {
    let core = word.trim_end_matches(['.', ';', '!', '?']);
    let core = if core.ends_with(':') && !core.ends_with("::") { &core[..core.len() - 1] } else { core };
    (core, &word[core.len()..])
}

/// An IP address, `[IPv6]`, or `host:port` with a numeric port (1-65535).
fn is_address(w: &str) -> bool {
    if w.parse::<IpAddr>().is_ok() || w.parse::<SocketAddr>().is_ok() {
        return true;
    }
    if let Some(inner) = w.strip_prefix('[').and_then(|r| r.split(']').next()) {
        return inner.parse::<IpAddr>().is_ok();
    }
    match w.rsplit_once(':') {
        Some((host, port)) => {
            let Ok(port) = port.parse::<u16>() else { return false };
            let host_ok = host.chars().any(|c| c.is_ascii_alphabetic())
                && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
            // `status:404` is not an address; `vllm:8000` and `db.internal:80` are.
            let address_like = host.contains('.') || host == "localhost" || port >= 1024;
            port > 0 && host_ok && address_like
        }
        None => false,
    }
}

#[cfg(test)]
#[path = "upstream_tests.rs"]
mod tests;
