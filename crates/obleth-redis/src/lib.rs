//! How every part of obleth opens Redis (budgets, the cluster's changes, slots, served
//! work and shared cache): [`client`] takes a `redis://` or `rediss://` URL.
//!
//! TLS is rustls. A `rediss://` URL trusts the system's roots unless a CA file is set,
//! and presents a client certificate when one is set. The material is one process-wide
//! setting (`[redis_tls]` in the configuration, for every Redis URL), installed once by
//! the binary with [`set_tls`] before anything connects, so that the crates that open
//! clients need no TLS plumbing of their own.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use redis::Client;
use redis::{ClientTlsConfig, TlsCertificates};

/// Where the TLS material is (PEM files).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificates to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// A client certificate (chain) and its key, for servers that require one
    /// (`tls-auth-clients yes`); both or neither.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// Errors of setting up TLS; each names the file or the setting.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("redis_tls: client_cert and client_key go together")]
    HalfClientIdentity,
    #[error("redis_tls is already set to other files in this process")]
    AlreadySet,
}

static TLS: OnceLock<(TlsFiles, TlsCertificates)> = OnceLock::new();

/// Reads the TLS material and makes it the one every `rediss://` client uses. Call at
/// start, before any client is opened; setting the same files again (several gateways
/// in one test process) is a no-op, other files an error.
pub fn set_tls(files: &TlsFiles) -> Result<(), TlsError> {
    if TLS.get().is_none() {
        // Another thread may set it meanwhile: what counts is what is set afterwards.
        let _ = TLS.set((files.clone(), load(files)?));
    }
    match TLS.get() {
        Some((set, _)) if set == files => Ok(()),
        _ => Err(TlsError::AlreadySet),
    }
}

fn load(files: &TlsFiles) -> Result<TlsCertificates, TlsError> {
    let read =
        |what, path: &Path| std::fs::read(path).map_err(|source| TlsError::Read { what, path: path.into(), source });
    let root_cert = files.ca_file.as_deref().map(|p| read("redis_tls.ca_file", p)).transpose()?;
    let client_tls = match (&files.client_cert, &files.client_key) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read("redis_tls.client_cert", cert)?,
            client_key: read("redis_tls.client_key", key)?,
        }),
        (None, None) => None,
        _ => return Err(TlsError::HalfClientIdentity),
    };
    Ok(TlsCertificates { client_tls, root_cert })
}

/// A client for `url` (`redis://`, `rediss://`, `unix://`): a `rediss://` one with the
/// process's TLS material when [`set_tls`] installed some, else with the system's roots.
/// Connects lazily, like [`redis::Client::open`].
pub fn client(url: &str) -> redis::RedisResult<Client> {
    match TLS.get() {
        Some((_, tls)) if url.starts_with("rediss://") => Client::build_with_tls(url, tls.clone()),
        _ => Client::open(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_a_client_identity_or_a_missing_file_is_refused_by_name() {
        let files = TlsFiles { client_cert: Some("/nonexistent/cert.pem".into()), ..TlsFiles::default() };
        assert!(matches!(load(&files), Err(TlsError::HalfClientIdentity)));
        let files = TlsFiles { ca_file: Some("/nonexistent/ca.pem".into()), ..TlsFiles::default() };
        let err = load(&files).expect_err("missing file").to_string();
        assert!(err.contains("redis_tls.ca_file") && err.contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn plain_and_tls_urls_open_without_material() {
        assert!(client("redis://127.0.0.1:6379").is_ok());
        assert!(client("rediss://127.0.0.1:6380").is_ok(), "system roots when no CA is set");
        assert!(client("http://127.0.0.1").is_err());
    }
}
