//! Tests of `api_base` parsing and of the upstream policy's rules.

#![allow(clippy::unwrap_used)]

use super::*;

fn base(s: &str) -> ApiBase {
    ApiBase::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|_| panic!("{s}"))
}

fn entries(list: &[&str]) -> Vec<AllowEntry> {
    list.iter().map(|e| AllowEntry::parse(e).unwrap_or_else(|m| panic!("{e}: {m}"))).collect()
}

#[test]
fn api_bases_are_normalised() {
    for (raw, normalised) in [
        ("http://vllm:8000/v1", "http://vllm:8000/v1"),
        ("http://vllm:8000/v1/", "http://vllm:8000/v1"),
        ("HTTP://VLLM.Internal:8000/", "http://vllm.internal:8000"),
        ("  https://api.example.com/openai/v1  ", "https://api.example.com/openai/v1"),
        ("http://h:80/v1", "http://h/v1"),
        ("http://h/a/../v1", "http://h/v1"),
        ("http://[::1]:8000", "http://[::1]:8000"),
    ] {
        assert_eq!(base(raw).as_str(), normalised, "{raw}");
    }
    assert_eq!(base("https://h/v1").port(), 443);
    assert_eq!(base("http://h/v1").port(), 80);
    assert_eq!(base("http://Vllm.:9/").host(), &UpstreamHost::Name("vllm".into()));
}

#[test]
fn numeric_hosts_are_canonicalised_as_getaddrinfo_reads_them() {
    let metadata = IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254));
    for raw in [
        "http://2852039166/",
        "http://0251.0376.0251.0376/",
        "http://0xA9FEA9FE/",
        "http://169.254.43518/",
        "http://0xa9.0xfe.0xa9.0xfe/",
        "http://%31%36%39.254.169.254/",
    ] {
        let b = base(raw);
        assert_eq!(b.host(), &UpstreamHost::Ip(metadata), "{raw}");
        assert_eq!(b.as_str(), "http://169.254.169.254", "{raw}");
    }
    assert_eq!(base("http://[::ffff:169.254.169.254]/").host(), &UpstreamHost::Ip("::ffff:a9fe:a9fe".parse().unwrap()));
}

#[test]
fn api_bases_with_credentials_query_or_fragment_are_refused() {
    for (raw, says) in [
        ("http://user:pass@host/", "api_key"),
        ("http://user@host/", "credentials"),
        ("http://:pass@host/", "credentials"),
        ("http://host/v1?", "query"),
        ("http://host/v1?x=1", "query"),
        ("http://host/v1#", "fragment"),
        ("http://host/v1#frag", "fragment"),
        ("ftp://host/", "http"),
        ("file:///etc/passwd", "http"),
        ("host:8000", "http"),
        ("not a url", "valid URL"),
        ("http://", "valid URL"),
        ("http://bad host/", "valid URL"),
    ] {
        let e = ApiBase::parse(raw).expect_err(raw);
        assert!(e.contains(says), "{raw}: {e}");
    }
    assert!(ApiBase::parse(&format!("http://h/{}", "a".repeat(MAX_API_BASE_LEN))).is_err());
}

#[test]
fn same_upstream_ignores_a_trailing_v1() {
    assert!(base("http://h:8000").same_upstream(&base("http://H:8000/v1/")));
    assert!(!base("http://h:8000").same_upstream(&base("http://h:8001/v1")));
    assert!(!base("http://h:8000/a/v1").same_upstream(&base("http://h:8000/v1")));
}

#[test]
fn redaction_hides_credentials_and_queries_only() {
    assert_eq!(redact_api_base("http://vllm:8000/v1"), "http://vllm:8000/v1");
    let r = redact_api_base("http://alice:s3cret@vllm:8000/v1?key=abc");
    assert!(!r.contains("s3cret") && !r.contains("alice") && !r.contains("abc"), "{r}");
    assert!(r.contains("vllm:8000/v1"), "{r}");
    let r = redact_api_base("not a url with user:pw@x");
    assert!(!r.contains("pw"), "{r}");
}

#[test]
fn allow_entries() {
    assert_eq!(entries(&["10.0.0.0/8"]), [AllowEntry::Net("10.0.0.0/8".parse().unwrap())]);
    assert_eq!(entries(&["10.1.2.3/8"]), [AllowEntry::Net("10.0.0.0/8".parse().unwrap())], "host bits dropped");
    assert_eq!(entries(&["192.168.1.5"]), [AllowEntry::Net("192.168.1.5/32".parse().unwrap())]);
    assert_eq!(entries(&["[fd00::1]"]), [AllowEntry::Net("fd00::1/128".parse().unwrap())]);
    assert_eq!(entries(&["VLLM.internal."]), [AllowEntry::Name("vllm.internal".into())]);
    assert_eq!(entries(&["*.svc.cluster.local"]), [AllowEntry::Suffix(".svc.cluster.local".into())]);
    for bad in ["", "http://x", "a b", "-x.y", "x..y", "*", "*.", "10.0.0.0/33", "1.2.3", "2852039166", "x_y"] {
        assert!(AllowEntry::parse(bad).is_err(), "{bad:?}");
    }
    assert_eq!(AllowEntry::Suffix(".a.b".into()).to_string(), "*.a.b");
}

#[test]
fn the_gateways_own_listeners_are_refused() {
    let p = UpstreamPolicy::default().with_own_ports([8080, 9090, 9091]).with_local_probe(|ip| {
        ip == IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)) // "this host's" address
    });
    for addr in ["127.0.0.1:9090", "127.3.4.5:8080", "0.0.0.0:9091", "[::1]:9090", "[::]:8080", "10.1.2.3:9090"] {
        assert!(matches!(p.check_addr(None, sock(addr)), Err(Refusal::OwnListener { .. })), "{addr}");
    }
    // IPv4-mapped and NAT64 forms are the same addresses.
    for addr in ["[::ffff:127.0.0.1]:9090", "[64:ff9b::7f00:1]:9090"] {
        assert_eq!(p.check_addr(None, sock(addr)), Err(Refusal::OwnListener { addr: sock("127.0.0.1:9090") }));
    }
    // Other ports on loopback (the demo's and the tests' mock), other hosts on these ports.
    for addr in ["127.0.0.1:8000", "[::1]:8000", "10.1.2.4:9090", "10.1.2.3:8000"] {
        assert_eq!(p.check_addr(None, sock(addr)), Ok(()), "{addr}");
    }
    // Not even the allowlist lets a request reach the gateway itself.
    let p = UpstreamPolicy::new(entries(&["127.0.0.0/8", "localhost"])).with_own_ports([9090]);
    assert!(matches!(p.check_addr(Some("localhost"), sock("127.0.0.1:9090")), Err(Refusal::OwnListener { .. })));
}

#[test]
fn link_local_and_metadata_need_an_entry_inside_their_range() {
    let p = UpstreamPolicy::default();
    for (addr, metadata) in [
        ("169.254.169.254:80", true),
        ("[::ffff:169.254.169.254]:80", true),
        ("[64:ff9b::a9fe:a9fe]:80", true),
        ("[fd00:ec2::254]:80", true),
        ("100.100.100.200:80", true),
        ("169.254.170.2:80", true),
        ("169.254.1.1:8000", false),
        ("[fe80::1]:8000", false),
    ] {
        match p.check_addr(Some("innocent.example"), sock(addr)) {
            Err(Refusal::Metadata { .. }) if metadata => {}
            Err(Refusal::LinkLocal { .. }) if !metadata => {}
            other => panic!("{addr}: {other:?}"),
        }
    }
    // A name entry or a broad network does not unlock them; an entry inside their range does.
    let broad = UpstreamPolicy::new(entries(&["0.0.0.0/0", "::/0", "metadata.google.internal"]));
    assert!(broad.check_addr(Some("metadata.google.internal"), sock("169.254.169.254:80")).is_err());
    assert!(broad.check_addr(None, sock("100.100.100.200:80")).is_err());
    let exact = UpstreamPolicy::new(entries(&["169.254.169.254/32", "169.254.10.0/24", "fe80::/64"]));
    assert_eq!(exact.check_addr(None, sock("169.254.169.254:80")), Ok(()));
    assert_eq!(exact.check_addr(None, sock("169.254.10.7:80")), Ok(()));
    assert_eq!(exact.check_addr(None, sock("[fe80::7]:80")), Ok(()));
    assert!(matches!(exact.check_addr(None, sock("169.254.11.1:80")), Err(Refusal::LinkLocal { .. })));
    assert!(matches!(exact.check_addr(None, sock("169.254.170.2:80")), Err(Refusal::Metadata { .. })));
}

#[test]
fn an_allowlist_admits_listed_names_and_networks_only() {
    let p = UpstreamPolicy::new(entries(&["vllm.internal", "*.svc.cluster.local", "10.0.0.0/8"]));
    // Listed names go to any address but the forbidden ones.
    assert_eq!(p.check_addr(Some("vllm.internal"), sock("192.168.1.9:8000")), Ok(()));
    assert_eq!(p.check_addr(Some("VLLM.internal."), sock("192.168.1.9:8000")), Ok(()));
    assert_eq!(p.check_addr(Some("a.b.svc.cluster.local"), sock("172.16.0.1:80")), Ok(()));
    assert!(p.check_addr(Some("svc.cluster.local"), sock("172.16.0.1:80")).is_err(), "the suffix, not the apex");
    // Other names only where they resolve into a listed network.
    assert_eq!(p.check_addr(Some("other.example"), sock("10.9.8.7:8000")), Ok(()));
    assert_eq!(
        p.check_addr(Some("other.example"), sock("192.168.1.9:8000")),
        Err(Refusal::NotAllowed { host: "other.example".into(), addr: Some("192.168.1.9".parse().unwrap()) })
    );
    assert_eq!(p.check_addr(None, sock("10.1.1.1:80")), Ok(()));
    assert!(matches!(p.check_addr(None, sock("127.0.0.1:8000")), Err(Refusal::NotAllowed { addr: None, .. })));
    // With networks listed, any name may resolve into them: only DNS can tell.
    assert_eq!(p.check_name("other.example"), Ok(()));
    // Names only: an unlisted name is refused before DNS.
    let names = UpstreamPolicy::new(entries(&["vllm.internal"]));
    assert!(matches!(names.check_name("other.example"), Err(Refusal::NotAllowed { .. })));
    assert_eq!(names.check_name("vllm.internal"), Ok(()));
    assert!(names.check_addr(None, sock("10.1.1.1:80")).is_err(), "a literal address must be listed");
    // Empty: everything but rules 1 and 2.
    assert_eq!(UpstreamPolicy::default().check_name("anything"), Ok(()));
    assert_eq!(UpstreamPolicy::default().check_addr(Some("anything"), sock("8.8.8.8:443")), Ok(()));
}

#[test]
fn the_default_upstream_is_trusted_but_not_above_the_hard_rules() {
    let p = UpstreamPolicy::new(entries(&["10.0.0.0/8"]))
        .with_own_ports([9090])
        .trusting(&base("http://vllm.internal:8000/v1"))
        .trusting(&base("http://127.0.0.1:8001"));
    assert_eq!(p.check_name("vllm.internal"), Ok(()));
    assert_eq!(p.check_addr(Some("vllm.internal"), sock("192.168.0.4:8000")), Ok(()));
    assert_eq!(p.check_literal(&base("http://127.0.0.1:8001")), Some(Ok(())));
    // Its host and port only: the same host's other services are not opened to every model.
    assert!(matches!(p.check_addr(Some("vllm.internal"), sock("192.168.0.4:22")), Err(Refusal::NotAllowed { .. })));
    assert!(matches!(p.check_literal(&base("http://127.0.0.1:8002")), Some(Err(Refusal::NotAllowed { .. }))));
    let names_only = UpstreamPolicy::new(entries(&["listed.example"])).trusting(&base("http://vllm.internal:8000"));
    assert_eq!(names_only.check_name("vllm.internal"), Ok(()), "the default upstream's name passes before DNS");
    assert!(matches!(p.check_literal(&base("http://127.0.0.1:9090")), Some(Err(Refusal::OwnListener { .. }))));
    assert!(p.check_addr(Some("vllm.internal"), sock("169.254.169.254:80")).is_err());
    assert_eq!(p.check_literal(&base("http://vllm.internal")), None);
    // Trusting a host does not turn an empty allowlist into "only this host".
    let open = UpstreamPolicy::default().trusting(&base("http://vllm:8000"));
    assert_eq!(open.check_addr(Some("elsewhere"), sock("192.0.2.1:80")), Ok(()));
}

#[test]
fn refusals_name_their_rule() {
    let text = |r: Refusal| r.to_string();
    assert!(text(Refusal::OwnListener { addr: sock("127.0.0.1:9090") }).contains("own listeners"));
    assert!(text(Refusal::Metadata { ip: "169.254.169.254".parse().unwrap() }).contains("metadata"));
    assert!(text(Refusal::LinkLocal { ip: "169.254.1.1".parse().unwrap() }).contains("link-local"));
    let t = text(Refusal::NotAllowed { host: "x.example".into(), addr: Some("10.0.0.1".parse().unwrap()) });
    assert_eq!(t, "x.example (10.0.0.1) is not in upstream.allowed_hosts");
}
