//! Tests of the upstream client: endpoints, the policy at connect time (through a resolver
//! seam that gives names the addresses a test needs); relayed messages are `obleth_core::relay`'s.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::ErrorKind;

use obleth_core::upstream::AllowEntry;

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

/// A resolver that answers from a table: what DNS says about a name today.
#[derive(Clone, Default)]
struct FakeDns(Arc<HashMap<&'static str, Vec<IpAddr>>>);

impl FakeDns {
    fn with(entries: &[(&'static str, &[&str])]) -> Self {
        FakeDns(Arc::new(
            entries.iter().map(|(n, ips)| (*n, ips.iter().map(|i| i.parse().unwrap()).collect())).collect(),
        ))
    }
}

impl Service<Name> for FakeDns {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Self::Response, std::io::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let addrs = self.0.get(name.as_str()).map(|ips| ips.iter().map(|ip| SocketAddr::new(*ip, 0)).collect());
        std::future::ready(
            addrs.map(Vec::into_iter).ok_or_else(|| std::io::Error::new(ErrorKind::NotFound, "no such name")),
        )
    }
}

/// A listener standing in for one of the gateway's own (nothing must ever connect to it).
fn quiet_listener() -> std::net::TcpListener {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    l
}

/// Whether anything connected to `l` (connections are queued by the kernel before
/// `connect` returns, so this needs no waiting).
fn was_connected(l: &std::net::TcpListener) -> bool {
    match l.accept() {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(e) => panic!("accept: {e}"),
    }
}

async fn connect(connector: &mut PolicyConnector<FakeDns>, url: &str) -> Result<TokioIo<TcpStream>, BoxError> {
    connector.call(url.parse().unwrap()).await
}

fn connector(policy: UpstreamPolicy, dns: FakeDns) -> PolicyConnector<FakeDns> {
    PolicyConnector { policy: Arc::new(policy), resolver: dns, connect_timeout: Duration::from_secs(5) }
}

#[tokio::test]
async fn a_name_that_resolves_to_the_gateway_itself_is_refused_before_connecting() {
    let admin = quiet_listener();
    let backend = quiet_listener();
    let (admin_port, backend_port) = (admin.local_addr().unwrap().port(), backend.local_addr().unwrap().port());
    // "rebound.test" was fine when its model was registered; today it points at loopback.
    let dns = FakeDns::with(&[("rebound.test", &["127.0.0.1"]), ("dual.test", &["169.254.169.254", "127.0.0.1"])]);
    let mut c = connector(UpstreamPolicy::default().with_own_ports([admin_port]), dns);

    let err = connect(&mut c, &format!("http://rebound.test:{admin_port}/v1/chat/completions")).await.unwrap_err();
    assert!(matches!(refusal_of(err.as_ref()), Some(Refusal::OwnListener { .. })), "{err:?}");
    let err = connect(&mut c, &format!("http://127.0.0.1:{admin_port}/")).await.unwrap_err();
    assert!(matches!(refusal_of(err.as_ref()), Some(Refusal::OwnListener { .. })), "literal hosts too: {err:?}");
    let err = connect(&mut c, &format!("http://[::ffff:127.0.0.1]:{admin_port}/")).await.unwrap_err();
    assert!(refusal_of(err.as_ref()).is_some(), "{err:?}");
    assert!(!was_connected(&admin), "the refused connections were never opened");

    // The same name on another port connects; a name with one forbidden address uses the other.
    connect(&mut c, &format!("http://rebound.test:{backend_port}/")).await.unwrap();
    assert!(was_connected(&backend));
    connect(&mut c, &format!("http://dual.test:{backend_port}/")).await.unwrap();
    assert!(was_connected(&backend));
    // A name that resolves only to the metadata service fails with the rule's reason.
    let mut c = connector(UpstreamPolicy::default(), FakeDns::with(&[("imds.test", &["169.254.169.254"])]));
    let err = connect(&mut c, "http://imds.test/latest/meta-data/").await.unwrap_err();
    assert!(matches!(refusal_of(err.as_ref()), Some(Refusal::Metadata { .. })), "{err:?}");
}

#[tokio::test]
async fn an_allowlist_is_enforced_on_the_resolved_addresses() {
    let backend = quiet_listener();
    let port = backend.local_addr().unwrap().port();
    let allowed = ["10.0.0.0/8", "listed.test"].iter().map(|e| AllowEntry::parse(e).unwrap()).collect();
    let dns = FakeDns::with(&[("listed.test", &["127.0.0.1"]), ("drifted.test", &["127.0.0.1"])]);
    let mut c = connector(UpstreamPolicy::new(allowed), dns);
    // A name the allowlist does not name, resolving outside its networks.
    let err = connect(&mut c, &format!("http://drifted.test:{port}/")).await.unwrap_err();
    assert!(matches!(refusal_of(err.as_ref()), Some(Refusal::NotAllowed { .. })), "{err:?}");
    let err = connect(&mut c, &format!("http://127.0.0.1:{port}/")).await.unwrap_err();
    assert!(matches!(refusal_of(err.as_ref()), Some(Refusal::NotAllowed { .. })), "{err:?}");
    assert!(!was_connected(&backend));
    connect(&mut c, &format!("http://listed.test:{port}/")).await.unwrap();
    assert!(was_connected(&backend), "a listed name connects");
}

#[tokio::test]
async fn the_client_reports_the_refusal_through_hyper() {
    let admin = quiet_listener();
    let port = admin.local_addr().unwrap().port();
    let policy = Arc::new(UpstreamPolicy::default().with_own_ports([port]));
    let client = client_with_resolver(Duration::from_secs(5), policy, FakeDns::with(&[("rebound.test", &["::1"])]));
    let req = http::Request::post(format!("http://rebound.test:{port}/v1/chat/completions"))
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let err = client.request(req).await.unwrap_err();
    assert!(err.is_connect());
    assert!(matches!(refusal_of(&err), Some(Refusal::OwnListener { .. })), "{err:?}");
    assert!(!was_connected(&admin));
}

#[tokio::test]
async fn the_resolver_filters_with_the_urls_port() {
    let dns = FakeDns::with(&[("h.test", &["127.0.0.1", "10.0.0.1", "169.254.169.254"])]);
    let policy = Arc::new(UpstreamPolicy::default().with_own_ports([9090]));
    let addrs: Vec<_> = PolicyResolver::new(dns.clone(), policy.clone(), 8000)
        .oneshot("h.test".parse().unwrap())
        .await
        .unwrap()
        .collect();
    assert_eq!(addrs, ["127.0.0.1:8000".parse::<SocketAddr>().unwrap(), "10.0.0.1:8000".parse().unwrap()]);
    let addrs: Vec<_> = PolicyResolver::new(dns.clone(), policy.clone(), 9090)
        .oneshot("h.test".parse().unwrap())
        .await
        .unwrap()
        .collect();
    assert_eq!(addrs, ["10.0.0.1:9090".parse::<SocketAddr>().unwrap()], "loopback on the admin port is dropped");
    let err = PolicyResolver::new(dns, policy, 80).oneshot("unknown.test".parse().unwrap()).await.unwrap_err();
    assert!(refusal_of(err.as_ref()).is_none(), "a failed lookup is not a refusal: {err}");
}
