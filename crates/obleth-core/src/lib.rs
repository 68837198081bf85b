//! Shared domain types of obleth and the seams between its crates.
//!
//! Everything here is plain data or a trait. The data plane, the admin API and the
//! stores depend on these types; only the binary picks the concrete implementations
//! behind the traits (see `ARCHITECTURE.md`).

pub mod admission;
pub mod budget;
pub mod cache;
pub mod change;
pub mod error;
pub mod key;
pub mod ledger;
pub mod model;
pub mod prom;
pub mod pulse;
pub mod relay;
pub mod scheduler;
pub mod tenant;
pub mod upstream;
pub mod usage;

pub use admission::{Admission, AdmissionClass, AdmissionRequest, Admitted, Rejection, SlotPermit, TokenEstimate};
pub use cache::{Shared, SharedCache, SharedKind};
pub use change::{ChangeEvent, ChangeNotifier};
pub use error::{ApiError, ErrorCode, Source};
pub use key::{ApiKey, GeneratedKey, KeyHash};
pub use model::{MAX_COST_PER_TOKEN, MAX_REQUEST_COST, Model, bounded_cost};
pub use scheduler::{
    ClusterStatus, ClusterView, ModelView, NextPick, PodSlots, SchedulerSnapshot, ServedWork, SlotPool,
};
pub use tenant::{Group, Quota, Tenant};
pub use usage::{
    MAX_CAPTURE_BYTES, MAX_UPSTREAM_ERROR_BYTES, ToolCallUsage, Usage, UsageRecord, UsageSink, truncate_to_bytes,
};

/// Milliseconds since the Unix epoch: the one timestamp representation stored and
/// exchanged by obleth (JSON, SQLite, Postgres and ClickHouse all handle it natively).
pub type UnixMillis = i64;

/// The wall clock in [`UnixMillis`]. Only edges (stores, handlers) read the clock;
/// pure cores take time as an argument.
pub fn now_millis() -> UnixMillis {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A connection URL fit for logs: credentials (everything before the host's `@`) and
/// the query (which may hold a password too) are replaced.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    // Credentials end at the last `@`, whatever the password contains.
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let rest = match rest.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => rest.to_owned(),
    };
    match scheme {
        Some(s) => format!("{s}://{rest}"),
        None => rest,
    }
}

/// A new random identifier: `prefix` followed by 16 base62 characters (≈95 bits).
pub fn new_id(prefix: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let mut id = String::with_capacity(prefix.len() + 16);
    id.push_str(prefix);
    for _ in 0..16 {
        id.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
    }
    id
}

/// A request body did not arrive within the listener's `limits.body_read_timeout`: the
/// error a timed-out body yields, so that handlers answer 408 rather than 400.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyReadTimeout;

impl BodyReadTimeout {
    /// Whether `e`, or an error it wraps, is a body read timeout.
    pub fn is_cause_of(e: &(dyn std::error::Error + 'static)) -> bool {
        find_cause::<BodyReadTimeout>(e).is_some()
    }
}

/// The first error of type `T` in `e`'s chain of sources (`e` included).
pub fn find_cause<'a, T: std::error::Error + 'static>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        cur = e.source();
    }
    None
}
