//! Upstream URLs as a policy: how an `api_base` is parsed and normalised, and which
//! addresses the gateway may send a request to.
//!
//! A model's `api_base` decides where the gateway sends its tenants' prompts, with the
//! registry's credential. Anyone who can register a model could otherwise point it at the
//! gateway's own admin API, at the cloud metadata service or at any host the gateway can
//! reach. Two parts keep that in check:
//!
//! - [`ApiBase::parse`]: the one parser of upstream URLs (model registry, config, data
//!   plane). It follows the WHATWG URL standard, which canonicalises numeric hosts the way
//!   `getaddrinfo` would read them (`http://2852039166/`, `http://0251.0376.0251.0376/`,
//!   `http://0xA9FEA9FE/` and `http://169.254.43518/` are all `169.254.169.254`), and it
//!   refuses credentials in the URL (they belong in `api_key`), a query or a fragment
//!   (the request path is appended to the base, so `…/v1?` or `…/v1#` would swallow it).
//! - [`UpstreamPolicy`]: the verdict on one destination address, checked when a model is
//!   registered and again when the data plane connects, after DNS, so that a name cannot
//!   later resolve to a forbidden address. Its rules, in order:
//!   1. the gateway's own listeners are refused: a loopback, unspecified or local address
//!      on the port of the data, admin or metrics listener;
//!   2. link-local and cloud metadata addresses are refused unless an allowlist entry
//!      that lies inside that range (e.g. `169.254.169.254/32`) covers the address; a
//!      broad entry such as `0.0.0.0/0` does not unlock them, nor does a host name;
//!   3. when the allowlist (`upstream.allowed_hosts`) is not empty, a destination must be
//!      in it: its host name matches a name entry, or its address lies in a CIDR entry.
//!      The default upstream (its host and port) is allowed without an entry.
//!
//!   IPv4-mapped (`::ffff:a.b.c.d`) and NAT64 (`64:ff9b::a.b.c.d`) addresses are judged as
//!   the IPv4 address they carry.
//!
//! Everything here is pure: resolving names and asking whether an address belongs to this
//! host are the callers' I/O (the latter is injected with [`UpstreamPolicy::with_local_probe`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, LazyLock};

use ipnet::IpNet;

/// The longest `api_base` accepted.
pub const MAX_API_BASE_LEN: usize = 2048;

// === ApiBase ===

/// A parsed, normalised upstream base URL: `http` or `https`, a host, an optional port
/// and path; no credentials, query or fragment; lowercase scheme and host; IPv4 hosts in
/// dotted-quad form; no trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiBase {
    normalised: String,
    host: UpstreamHost,
    port: u16,
}

/// The host of an [`ApiBase`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamHost {
    /// A DNS name, lowercase (IDNA names in their `xn--` form).
    Name(String),
    /// An IP literal (IPv4 canonicalised; IPv6 without brackets).
    Ip(IpAddr),
}

impl fmt::Display for UpstreamHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamHost::Name(n) => f.write_str(n),
            UpstreamHost::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl ApiBase {
    /// Parses and normalises an upstream base URL; the error says what is wrong.
    pub fn parse(raw: &str) -> Result<ApiBase, String> {
        let raw = raw.trim();
        if raw.len() > MAX_API_BASE_LEN {
            return Err(format!("must be at most {MAX_API_BASE_LEN} characters"));
        }
        let url = url::Url::parse(raw).map_err(|e| format!("is not a valid URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("must be an http:// or https:// URL".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not hold credentials (user:password@): put the credential in api_key".into());
        }
        // The request path is appended to the base: after a `?` or `#` it would not be a
        // path at all, and the upstream would see whatever the base's path names.
        if url.query().is_some() {
            return Err("must not have a query (?…): the request path is appended to it".into());
        }
        if url.fragment().is_some() {
            return Err("must not have a fragment (#…): the request path is appended to it".into());
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => UpstreamHost::Name(d.trim_end_matches('.').to_owned()),
            Some(url::Host::Ipv4(ip)) => UpstreamHost::Ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => UpstreamHost::Ip(IpAddr::V6(ip)),
            _ => return Err("must name a host".into()),
        };
        if matches!(&host, UpstreamHost::Name(n) if n.is_empty()) {
            return Err("must name a host".into());
        }
        let port = url.port_or_known_default().ok_or("must name a port")?;
        let normalised = url.as_str().trim_end_matches('/').to_owned();
        Ok(ApiBase { normalised, host, port })
    }

    /// The normalised URL, e.g. `http://vllm:8000/v1`.
    pub fn as_str(&self) -> &str {
        &self.normalised
    }

    pub fn host(&self) -> &UpstreamHost {
        &self.host
    }

    /// The port, explicit or the scheme's.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether both reach the same endpoints (`…` and `…/v1` do: the data plane adds the
    /// `/v1` when it is missing).
    pub fn same_upstream(&self, other: &ApiBase) -> bool {
        let strip = |s: &str| s.strip_suffix("/v1").unwrap_or(s).to_owned();
        strip(&self.normalised) == strip(&other.normalised)
    }
}

impl fmt::Display for ApiBase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normalised)
    }
}

/// An `api_base` fit to show: credentials and query replaced. New entries cannot hold
/// either ([`ApiBase::parse`] refuses them); rows stored before that rule may.
pub fn redact_api_base(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw.trim()) else {
        return crate::redact_url(raw);
    };
    if url.username().is_empty() && url.password().is_none() && url.query().is_none() {
        return raw.to_owned();
    }
    if !url.username().is_empty() || url.password().is_some() {
        let _ = url.set_password(None);
        let _ = url.set_username("redacted");
    }
    if url.query().is_some() {
        url.set_query(Some("redacted"));
    }
    url.to_string()
}

// === allowlist ===

/// One entry of `upstream.allowed_hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowEntry {
    /// Exactly this host name (lowercase, no trailing dot).
    Name(String),
    /// Any name below this domain (`*.svc.cluster.local`, stored as `.svc.cluster.local`).
    Suffix(String),
    /// Any address in this network (`10.0.0.0/8`; a bare address is a /32 or /128).
    Net(IpNet),
}

impl AllowEntry {
    /// Parses a host name, `*.domain`, an IP address or a CIDR.
    pub fn parse(raw: &str) -> Result<AllowEntry, String> {
        let s = raw.trim();
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(AllowEntry::Net(net.trunc()));
        }
        if let Ok(ip) = s.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            return Ok(AllowEntry::Net(IpNet::from(ip)));
        }
        let (suffix, name) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let label_ok = |l: &str| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err("is not a host name, *.domain, IP address or CIDR (e.g. vllm.internal, 10.0.0.0/8)".into());
        }
        // A name made of digits and dots would be read as an address by getaddrinfo.
        if name.split('.').all(|l| l.bytes().all(|b| b.is_ascii_digit())) {
            return Err("looks like an IPv4 address but is not one".into());
        }
        Ok(if suffix { AllowEntry::Suffix(format!(".{name}")) } else { AllowEntry::Name(name) })
    }

    fn matches_name(&self, name: &str) -> bool {
        match self {
            AllowEntry::Name(n) => n.eq_ignore_ascii_case(name),
            AllowEntry::Suffix(s) => {
                name.len() > s.len()
                    && name.get(name.len() - s.len()..).is_some_and(|tail| tail.eq_ignore_ascii_case(s))
            }
            AllowEntry::Net(_) => false,
        }
    }
}

impl fmt::Display for AllowEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowEntry::Name(n) => f.write_str(n),
            AllowEntry::Suffix(s) => write!(f, "*{s}"),
            AllowEntry::Net(n) => write!(f, "{n}"),
        }
    }
}

// === the policy ===

/// Why a destination is refused. Its text names the rule (for the admin API and the logs;
/// the data plane's clients get a generic message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The address is one of the gateway's own listeners.
    #[error("{addr} is one of the gateway's own listeners (its data, admin or metrics port)")]
    OwnListener { addr: SocketAddr },
    /// A link-local address (169.254.0.0/16, fe80::/10), not explicitly allowed.
    #[error("{ip} is a link-local address; list it (e.g. {ip}/32) in upstream.allowed_hosts to allow it")]
    LinkLocal { ip: IpAddr },
    /// A cloud metadata address (169.254.169.254 and others), not explicitly allowed.
    #[error("{ip} is a cloud metadata address; list it in upstream.allowed_hosts to allow it")]
    Metadata { ip: IpAddr },
    /// The allowlist is set and does not hold the host or the address.
    #[error("{host}{} is not in upstream.allowed_hosts", .addr.map(|a| format!(" ({a})")).unwrap_or_default())]
    NotAllowed { host: String, addr: Option<IpAddr> },
}

/// Addresses refused unless an allowlist entry inside the same range covers them.
struct Special {
    net: IpNet,
    metadata: bool,
}

static SPECIAL: LazyLock<Vec<Special>> = LazyLock::new(|| {
    let ranges = [
        // Metadata first: inside link-local, the more precise name wins.
        ("169.254.169.254/32", true), // AWS, GCP, Azure, OpenStack, DigitalOcean
        ("169.254.170.2/32", true),   // AWS ECS task metadata
        ("fd00:ec2::254/128", true),  // AWS IMDS over IPv6
        ("100.100.100.200/32", true), // Alibaba Cloud
        ("192.0.0.192/32", true),     // Oracle Cloud (classic)
        ("169.254.0.0/16", false),
        ("fe80::/10", false),
    ];
    ranges.iter().filter_map(|(net, metadata)| Some(Special { net: net.parse().ok()?, metadata: *metadata })).collect()
});

/// The IPv4 address an IPv6 address carries, if it is IPv4-mapped or NAT64 (64:ff9b::/96);
/// otherwise the address itself.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return IpAddr::V4(Ipv4Addr::new(a, b, c, d));
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

type LocalProbe = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// Which upstream destinations the gateway may connect to (see the module doc).
#[derive(Clone)]
pub struct UpstreamPolicy {
    /// `upstream.allowed_hosts`; empty: everything but rules 1 and 2.
    allowed: Vec<AllowEntry>,
    /// The default upstream (host and port): allowed by rule 3 without being listed (the
    /// operator configured it), still subject to rules 1 and 2. Only its port: trusting
    /// the whole host would open its other services to every model.
    trusted: Vec<(UpstreamHost, u16)>,
    /// Ports of the gateway's own listeners.
    own_ports: Vec<u16>,
    /// Whether an address belongs to this host (I/O, injected by the binary).
    is_local: LocalProbe,
}

impl Default for UpstreamPolicy {
    fn default() -> Self {
        UpstreamPolicy::new(vec![])
    }
}

impl fmt::Debug for UpstreamPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamPolicy")
            .field("allowed", &self.allowed)
            .field("trusted", &self.trusted)
            .field("own_ports", &self.own_ports)
            .finish_non_exhaustive()
    }
}

impl UpstreamPolicy {
    /// A policy with this allowlist, no own listeners and no local addresses (set them
    /// with [`Self::with_own_ports`] and [`Self::with_local_probe`]).
    pub fn new(allowed: Vec<AllowEntry>) -> Self {
        UpstreamPolicy { allowed, trusted: vec![], own_ports: vec![], is_local: Arc::new(|_| false) }
    }

    /// The ports of the gateway's own listeners (data, admin, metrics).
    pub fn with_own_ports(mut self, ports: impl IntoIterator<Item = u16>) -> Self {
        self.own_ports = ports.into_iter().collect();
        self.own_ports.sort_unstable();
        self.own_ports.dedup();
        self
    }

    /// How to tell whether an address belongs to this host (beyond loopback and unspecified).
    pub fn with_local_probe(mut self, probe: impl Fn(IpAddr) -> bool + Send + Sync + 'static) -> Self {
        self.is_local = Arc::new(probe);
        self
    }

    /// Trusts `base`'s host and port by rule 3 (the operator's default upstream).
    pub fn trusting(mut self, base: &ApiBase) -> Self {
        let host = match base.host() {
            UpstreamHost::Ip(ip) => UpstreamHost::Ip(canonical_ip(*ip)),
            name => name.clone(),
        };
        self.trusted.push((host, base.port()));
        self
    }

    pub fn allowed_hosts(&self) -> &[AllowEntry] {
        &self.allowed
    }

    fn name_listed(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.');
        self.allowed.iter().any(|e| e.matches_name(name))
    }

    fn trusted_name(&self, name: &str, port: Option<u16>) -> bool {
        let name = name.trim_end_matches('.');
        self.trusted.iter().any(|(h, p)| {
            matches!(h, UpstreamHost::Name(n) if n.eq_ignore_ascii_case(name)) && port.is_none_or(|port| port == *p)
        })
    }

    /// The verdict on a host name before it is resolved: refused only when no address it
    /// could resolve to would be allowed (an allowlist without networks that does not name it).
    pub fn check_name(&self, name: &str) -> Result<(), Refusal> {
        let has_nets = self.allowed.iter().any(|e| matches!(e, AllowEntry::Net(_)));
        if self.allowed.is_empty() || has_nets || self.name_listed(name) || self.trusted_name(name, None) {
            Ok(())
        } else {
            Err(Refusal::NotAllowed { host: name.to_owned(), addr: None })
        }
    }

    /// The verdict on connecting to `addr` for a URL whose host is `name` (`None` for an
    /// IP literal).
    pub fn check_addr(&self, name: Option<&str>, addr: SocketAddr) -> Result<(), Refusal> {
        let ip = canonical_ip(addr.ip());
        // 1. Never the gateway itself, whatever the allowlist says.
        if self.own_ports.contains(&addr.port()) && (ip.is_loopback() || ip.is_unspecified() || (self.is_local)(ip)) {
            return Err(Refusal::OwnListener { addr: SocketAddr::new(ip, addr.port()) });
        }
        // 2. Link-local and metadata addresses: only an entry inside their range unlocks them.
        if let Some(special) = SPECIAL.iter().find(|s| s.net.contains(&ip)) {
            let unlocked = self.allowed.iter().any(|e| match e {
                AllowEntry::Net(n) => n.contains(&ip) && special_enclosing(&ip).is_some_and(|r| r.contains(n)),
                _ => false,
            });
            if !unlocked {
                return Err(if special.metadata { Refusal::Metadata { ip } } else { Refusal::LinkLocal { ip } });
            }
            return Ok(());
        }
        // 3. The allowlist, by name or by address, and the default upstream.
        let trusted = match name {
            Some(n) => self.trusted_name(n, Some(addr.port())),
            None => self.trusted.contains(&(UpstreamHost::Ip(ip), addr.port())),
        };
        if self.allowed.is_empty()
            || trusted
            || name.is_some_and(|n| self.name_listed(n))
            || self.allowed.iter().any(|e| matches!(e, AllowEntry::Net(n) if n.contains(&ip)))
        {
            return Ok(());
        }
        Err(Refusal::NotAllowed { host: name.map_or_else(|| ip.to_string(), str::to_owned), addr: name.map(|_| ip) })
    }

    /// The verdict on `base` when its host is an IP literal (`None` for a name, which is
    /// judged after DNS by [`Self::check_name`] and [`Self::check_addr`]).
    pub fn check_literal(&self, base: &ApiBase) -> Option<Result<(), Refusal>> {
        match base.host() {
            UpstreamHost::Ip(ip) => Some(self.check_addr(None, SocketAddr::new(*ip, base.port()))),
            UpstreamHost::Name(_) => None,
        }
    }
}

/// The widest special range holding `ip` (link-local for the metadata addresses inside
/// it): an allowlist entry must lie inside it to unlock `ip`.
fn special_enclosing(ip: &IpAddr) -> Option<IpNet> {
    let widest = SPECIAL.iter().filter(|s| s.net.contains(ip)).min_by_key(|s| s.net.prefix_len())?;
    Some(widest.net)
}

#[cfg(test)]
#[path = "upstream_tests.rs"]
mod tests;
