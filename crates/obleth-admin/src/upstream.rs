//! The upstream policy at registration: a model's `api_base` and an MCP server's `url`
//! are checked when they are created or changed, so that an operator learns at once that
//! a destination is refused rather than from the first failed request.
//!
//! The data plane checks every connection again after its own DNS lookup (a name may
//! resolve elsewhere later); this check is the early, explanatory one. A name that does
//! not resolve here is allowed with a warning: backends are often registered before their
//! DNS record exists (a Kubernetes Service created after the model, split-horizon DNS the
//! admin listener does not see), and refusing them would make registration order matter
//! without making anything safer, since the connect-time check decides.

use std::net::SocketAddr;
use std::time::Duration;

use obleth_core::upstream::{ApiBase, Refusal, UpstreamHost, UpstreamPolicy};

use crate::{ApiError, ErrorCode};

/// Longest wait for the system resolver while registering a model.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Checks `raw` (an `api_base`) against the policy: a 400 naming `api_base` and the rule
/// that refused it.
pub(crate) async fn check_api_base(policy: &UpstreamPolicy, raw: &str) -> Result<(), ApiError> {
    check_url(policy, "api_base", raw).await
}

/// Checks `raw`, the upstream URL in `field`, against the policy: a 400 naming `field`.
pub(crate) async fn check_url(policy: &UpstreamPolicy, field: &str, raw: &str) -> Result<(), ApiError> {
    let base = ApiBase::parse(raw).map_err(|e| ApiError::invalid(field, &e))?;
    let refused =
        |what: String, r: Refusal| ApiError::invalid_with(ErrorCode::ApiBaseForbidden, field, &format!("{what}{r}"));
    let name = match base.host() {
        UpstreamHost::Ip(ip) => {
            return policy.check_addr(None, SocketAddr::new(*ip, base.port())).map_err(|r| refused(String::new(), r));
        }
        UpstreamHost::Name(name) => name,
    };
    policy.check_name(name).map_err(|r| refused(String::new(), r))?;
    let lookup = tokio::net::lookup_host((name.as_str(), base.port()));
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
        Ok(Ok(addrs)) => addrs.collect(),
        Ok(Err(e)) => {
            tracing::warn!(host = %name, field, error = %e, "upstream does not resolve; registered anyway (checked again at connect)");
            return Ok(());
        }
        Err(_) => {
            tracing::warn!(host = %name, field, "upstream did not resolve in time; registered anyway (checked again at connect)");
            return Ok(());
        }
    };
    // Stricter than the data plane, which skips refused addresses and tries the others:
    // a name with any refused address is most likely a mistake worth hearing about now.
    for addr in addrs {
        policy.check_addr(Some(name), addr).map_err(|r| match r {
            // Already says "name (address)".
            Refusal::NotAllowed { .. } => refused(String::new(), r),
            r => refused(format!("{name} resolves to {}: ", addr.ip()), r),
        })?;
    }
    Ok(())
}
