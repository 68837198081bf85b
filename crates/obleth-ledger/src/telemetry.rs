//! The ledger's metrics, one function per event.

use std::time::Duration;

use metrics::{counter, gauge, histogram};

use crate::wal::WalStats;

/// Every counter an alert or a panel takes `increase()` of, at 0 from the start: a
/// series that appears only with its first event hides that event from `increase()`.
pub(crate) fn declare() {
    for reason in DROP_REASONS {
        counter!("obleth_ledger_rows_dropped_total", "reason" => reason).increment(0);
    }
    counter!("obleth_ledger_replayed_rows_total").increment(0);
    counter!("obleth_ledger_rows_already_present_total").increment(0);
}

/// Why rows are dropped (the `reason` label).
pub(crate) const DROP_REASONS: [&str; 5] = ["queue_full", "closed", "wal_full", "wal_error", "corrupt"];

pub(crate) fn rows_dropped(rows: u64, reason: &'static str) {
    debug_assert!(DROP_REASONS.contains(&reason), "declare {reason} at 0 too");
    counter!("obleth_ledger_rows_dropped_total", "reason" => reason).increment(rows);
}

pub(crate) fn appended(rows: u64) {
    counter!("obleth_ledger_wal_batches_appended_total").increment(1);
    counter!("obleth_ledger_wal_rows_appended_total").increment(rows);
}

pub(crate) fn inserted(backend: &'static str, rows: u64, took: Duration) {
    counter!("obleth_ledger_rows_written_total", "backend" => backend).increment(rows);
    counter!("obleth_ledger_batches_total", "backend" => backend, "outcome" => "ok").increment(1);
    histogram!("obleth_ledger_insert_duration_seconds", "backend" => backend).record(took.as_secs_f64());
}

pub(crate) fn insert_failed(backend: &'static str) {
    counter!("obleth_ledger_batches_total", "backend" => backend, "outcome" => "error").increment(1);
}

pub(crate) fn duplicates_skipped(rows: u64) {
    counter!("obleth_ledger_rows_already_present_total").increment(rows);
}

pub(crate) fn replayed(rows: u64) {
    counter!("obleth_ledger_replayed_rows_total").increment(rows);
}

pub(crate) fn wal_truncated(bytes: u64) {
    counter!("obleth_ledger_wal_truncated_bytes_total").increment(bytes);
}

pub(crate) fn wal(stats: &WalStats) {
    gauge!("obleth_ledger_wal_bytes").set(stats.bytes as f64);
    gauge!("obleth_ledger_wal_segments").set(stats.segments as f64);
    gauge!("obleth_ledger_wal_pending_batches").set(stats.pending_batches() as f64);
    gauge!("obleth_ledger_wal_corrupt_bytes").set(stats.corrupt_bytes as f64);
}

/// Gauges read at scrape time.
pub fn publish(status: &crate::LedgerStatus) {
    gauge!("obleth_ledger_wal_max_bytes").set(status.wal_max_bytes as f64);
    gauge!("obleth_ledger_backend_up", "backend" => status.backend).set(if status.backend_up { 1.0 } else { 0.0 });
    gauge!("obleth_ledger_wal_full").set(if status.wal_full { 1.0 } else { 0.0 });
}
