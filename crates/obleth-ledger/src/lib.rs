//! The usage ledger: one row per request, kept without ever slowing a request down and
//! without losing a row when the ledger database is away.
//!
//! ```text
//! request path ──try_send──▶ bounded queue ──▶ appender thread ──▶ write-ahead log (disk)
//!                                                                         │ read in order
//!                                              ledger database ◀── shipper task (insert, then ack)
//! ```
//!
//! - [`Ledger`] is the gateway's [`obleth_core::UsageSink`]: `record` moves the row into a
//!   bounded channel and returns. A full channel drops the row and counts it.
//! - The appender (a plain thread: it does blocking file I/O) batches rows by count and
//!   time and appends each batch to the [`wal`].
//! - The shipper reads batches after the log's watermark, inserts them into the
//!   [`LedgerBackend`] and acknowledges them, which lets the log delete its segments.
//!   While the database is down batches simply accumulate in the log; when it returns
//!   they are shipped in order. Batches that may already be in the database (recovered at
//!   start, or retried after an ambiguous failure) are checked first and only missing rows
//!   are inserted.
//! - Backends: [`sqlite::SqliteLedger`] (the embedded default) and
//!   [`clickhouse::ClickHouse`] (production). Both answer the usage queries.

pub mod clickhouse;
mod pace;
mod rollup;
pub mod sqlite;
pub mod telemetry;
pub mod wal;
mod writer;

use std::collections::HashSet;

use async_trait::async_trait;

// The row, the queries and the status are the read side's contract (`obleth-core`).
pub use obleth_core::ledger::{
    Bucket, Filter, GroupBy, LedgerRow, LedgerStatus, QueryError, SeriesPoint, SeriesQuery, Totals,
};
pub use writer::{Ledger, LedgerConfig, OnFull};

/// Errors of the ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database could not be reached or did not answer in time; the outcome of a
    /// write is unknown.
    #[error("the ledger database is unavailable: {0}")]
    Unavailable(String),
    /// The database answered with an error.
    #[error("the ledger database refused the request ({status}): {message}")]
    Database { status: u16, message: String },
    /// A query parameter is unacceptable.
    #[error("{0}")]
    Invalid(String),
    /// The database's answer could not be read.
    #[error("unexpected answer from the ledger database: {0}")]
    Decode(String),
    /// The local disk failed.
    #[error("ledger I/O: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = LedgerError> = std::result::Result<T, E>;

/// A query's own check (an empty range) fails as the ledger's `Invalid`.
impl From<QueryError> for LedgerError {
    fn from(e: QueryError) -> LedgerError {
        match e {
            QueryError::Invalid(m) => LedgerError::Invalid(m),
            QueryError::Unavailable(m) => LedgerError::Unavailable(m),
        }
    }
}

/// What readers see: `Invalid` stays the caller's mistake, anything else is the ledger
/// unable to answer, with the ledger's own message.
impl From<LedgerError> for QueryError {
    fn from(e: LedgerError) -> QueryError {
        match e {
            LedgerError::Invalid(m) => QueryError::Invalid(m),
            e => QueryError::Unavailable(e.to_string()),
        }
    }
}

/// Where rows are kept and queried.
#[async_trait]
pub trait LedgerBackend: Send + Sync + 'static {
    /// `sqlite` or `clickhouse`, for metrics and logs.
    fn kind(&self) -> &'static str;

    /// Creates or migrates the schema. Called before the first insert and again after a
    /// failure, until it succeeds.
    async fn prepare(&self) -> Result<()>;

    /// Inserts rows. All or nothing as far as the backend allows; an error may still
    /// have written them (the shipper checks before retrying).
    async fn insert(&self, rows: &[LedgerRow]) -> Result<()>;

    /// The request ids among `rows` that are already stored.
    async fn existing(&self, rows: &[LedgerRow]) -> Result<HashSet<String>>;

    /// Usage per time bucket (and per tenant or model).
    async fn series(&self, query: &SeriesQuery) -> Result<Vec<SeriesPoint>>;

    /// Totals over the filter's range (per tenant or model, or overall).
    async fn totals(&self, filter: &Filter, group_by: GroupBy) -> Result<Vec<Totals>>;

    /// The most recent rows, newest first.
    async fn recent(&self, filter: &Filter, limit: u32) -> Result<Vec<LedgerRow>>;
}

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
