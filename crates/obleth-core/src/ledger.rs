//! The usage ledger's read side: the seam between whichever ledger the binary configures
//! (`obleth-ledger`: SQLite or ClickHouse behind a write-ahead log) and its readers (the
//! admin API's usage routes and readiness, the console).
//!
//! The row, the queries and the status live here so that a reader depends on this
//! contract, not on the ledger that answers it.

mod query;
mod row;

use async_trait::async_trait;
use serde::Serialize;

pub use query::{Bucket, Filter, GroupBy, SeriesPoint, SeriesQuery, Totals};
pub use row::LedgerRow;

/// Why a usage query was not answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A query parameter is unacceptable: the caller's mistake, which the message names.
    #[error("{0}")]
    Invalid(String),
    /// The ledger could not answer (its database is away or failed); the message says why.
    #[error("{0}")]
    Unavailable(String),
}

/// The ledger's state, for the admin API and readiness.
#[derive(Debug, Clone, Serialize)]
pub struct LedgerStatus {
    pub backend: &'static str,
    /// Whether the last insert (or schema check) succeeded.
    pub backend_up: bool,
    pub last_error: Option<String>,
    pub wal_bytes: u64,
    pub wal_max_bytes: u64,
    pub wal_segments: usize,
    /// Batches in the log not yet in the database.
    pub pending_batches: u64,
    /// Rows appended to the log (by this process).
    pub rows_appended: u64,
    /// Rows inserted into the database (by this process; replays of batches the database
    /// already had are not counted).
    pub rows_written: u64,
    pub rows_dropped: u64,
    /// Whether the last append found the log full (its rows were dropped).
    pub wal_full: bool,
    /// Whether new requests are refused (`on_full = "reject"` and the log over 90% full).
    pub refusing: bool,
}

/// What a reader may ask of the usage ledger.
#[async_trait]
pub trait UsageLedger: Send + Sync + 'static {
    /// The database that answers (`sqlite` or `clickhouse`).
    fn kind(&self) -> &'static str;

    /// The ledger's state now (its log, its database, whether it refuses requests).
    fn status(&self) -> LedgerStatus;

    /// Totals over the filter's range (per tenant or model, or overall).
    async fn totals(&self, filter: &Filter, group_by: GroupBy) -> Result<Vec<Totals>, QueryError>;

    /// Usage per time bucket (and per tenant or model).
    async fn series(&self, query: &SeriesQuery) -> Result<Vec<SeriesPoint>, QueryError>;

    /// The most recent rows, newest first.
    async fn recent(&self, filter: &Filter, limit: u32) -> Result<Vec<LedgerRow>, QueryError>;
}
