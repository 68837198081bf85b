//! The usage queries every ledger backend answers: the admin API's and the console's.

use serde::{Deserialize, Serialize};

use super::QueryError;

/// Which rows: a time range (milliseconds, `from` inclusive, `to` exclusive) and
/// optionally one tenant and one model (the routed model's name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    pub from_ms: u64,
    pub to_ms: u64,
    pub tenant_id: Option<String>,
    pub model: Option<String>,
}

impl Filter {
    pub fn validate(&self) -> Result<(), QueryError> {
        if self.to_ms <= self.from_ms {
            return Err(QueryError::Invalid(format!(
                "the range is empty: from ({}) must be before to ({})",
                self.from_ms, self.to_ms
            )));
        }
        Ok(())
    }
}

/// Time bucket width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    Minute,
    Hour,
    Day,
}

impl Bucket {
    pub fn seconds(self) -> u64 {
        match self {
            Bucket::Minute => 60,
            Bucket::Hour => 3600,
            Bucket::Day => 86_400,
        }
    }

    pub fn parse(s: &str) -> Option<Bucket> {
        match s {
            "minute" => Some(Bucket::Minute),
            "hour" => Some(Bucket::Hour),
            "day" => Some(Bucket::Day),
            _ => None,
        }
    }
}

/// What series and totals are split by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    #[default]
    None,
    Tenant,
    Model,
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        match s {
            "none" | "" => Some(GroupBy::None),
            "tenant" => Some(GroupBy::Tenant),
            "model" => Some(GroupBy::Model),
            _ => None,
        }
    }

    /// The row column the rows are grouped by (a [`LedgerRow`](super::LedgerRow) field).
    pub fn column(self) -> Option<&'static str> {
        match self {
            GroupBy::None => None,
            GroupBy::Tenant => Some("tenant_id"),
            GroupBy::Model => Some("model"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesQuery {
    pub filter: Filter,
    pub bucket: Bucket,
    pub group_by: GroupBy,
}

/// Aggregates over a set of rows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// The tenant id or model name grouped by; empty when not grouped.
    pub key: String,
    pub requests: u64,
    /// Requests that ended with a status of 400 or more (refusals included).
    pub errors: u64,
    /// Requests refused before admission.
    pub rejected: u64,
    /// Requests admitted degraded (brownout).
    pub brownout: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub cost: f64,
    /// Sum of queue waits (average = sum / requests).
    pub queue_wait_ms: u64,
}

impl Totals {
    /// Adds `t`'s counts to these (the key stays).
    pub fn add(&mut self, t: &Totals) {
        self.requests += t.requests;
        self.errors += t.errors;
        self.rejected += t.rejected;
        self.brownout += t.brownout;
        self.input_tokens += t.input_tokens;
        self.output_tokens += t.output_tokens;
        self.cached_tokens += t.cached_tokens;
        self.cost += t.cost;
        self.queue_wait_ms += t.queue_wait_ms;
    }
}

/// Totals in one time bucket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    /// Start of the bucket, seconds since the epoch.
    pub bucket_start: u64,
    #[serde(flatten)]
    pub totals: Totals,
}
