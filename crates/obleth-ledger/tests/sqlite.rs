//! The SQLite ledger against the conformance suite, and the whole ledger (queue, log,
//! shipper) writing into it.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use obleth_core::UsageSink;
use obleth_ledger::sqlite::SqliteLedger;
use obleth_ledger::wal::fs::DirFs;
use obleth_ledger::{Filter, GroupBy, Ledger, LedgerBackend, LedgerConfig, conformance};

mod common;
use common::record;

async fn open(dir: &tempfile::TempDir) -> SqliteLedger {
    SqliteLedger::connect(&format!("sqlite://{}", dir.path().join("usage.db").display())).await.unwrap()
}

#[tokio::test]
async fn sqlite_conformance() {
    let dir = tempfile::tempdir().unwrap();
    conformance::run(&open(&dir).await, "sq").await;
}

/// Rows recorded through the sink land once each, including across a restart that
/// leaves batches in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_rows_land_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn LedgerBackend> = Arc::new(open(&dir).await);
    let fs = Arc::new(DirFs::new(dir.path().join("wal")).unwrap());
    let config = LedgerConfig { flush_interval: Duration::from_millis(20), ..LedgerConfig::default() };
    let (ledger, recovered) = Ledger::start(backend.clone(), fs.clone(), config.clone()).unwrap();
    assert_eq!(recovered.pending_batches, 0);
    for n in 0..500 {
        ledger.record(record(n, "t1"));
    }
    assert!(ledger.close(Duration::from_secs(10)).await, "flushed: {:?}", ledger.status());
    let status = ledger.status();
    assert_eq!((status.rows_written, status.rows_dropped, status.pending_batches), (500, 0, 0), "{status:?}");

    let all = Filter { from_ms: 0, to_ms: u64::MAX / 2, ..Filter::default() };
    let totals = backend.totals(&all, GroupBy::Tenant).await.unwrap();
    assert_eq!(totals[0].requests, 500);
    assert_eq!(totals[0].output_tokens, (0..500).sum::<u64>());

    // Rows after close are refused and counted, not lost silently.
    ledger.record(record(999, "t1"));
    assert_eq!(ledger.status().rows_dropped, 1);

    // A new process on the same log finds nothing to replay.
    let (again, recovered) = Ledger::start(backend.clone(), fs, config).unwrap();
    assert_eq!(recovered.pending_batches, 0);
    assert!(again.close(Duration::from_secs(5)).await);
    assert_eq!(backend.totals(&all, GroupBy::None).await.unwrap()[0].requests, 500);
}

/// The queue's bound holds: a burst larger than it is partly dropped and counted, and
/// every row is either written or counted as dropped, none both and none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn LedgerBackend> = Arc::new(open(&dir).await);
    let fs = Arc::new(DirFs::new(dir.path().join("wal")).unwrap());
    let config = LedgerConfig { queue_rows: 8, flush_interval: Duration::from_millis(20), ..LedgerConfig::default() };
    let (ledger, _) = Ledger::start(backend.clone(), fs, config).unwrap();
    // The appender takes the queue every 5 ms; 20,000 back-to-back records overrun 8 slots.
    const SENT: u64 = 20_000;
    for n in 0..SENT {
        ledger.record(record(n, "t1"));
    }
    assert!(ledger.close(Duration::from_secs(10)).await, "flushed: {:?}", ledger.status());
    let status = ledger.status();
    assert!(status.rows_dropped > 0, "a burst past the bound is dropped: {status:?}");
    assert_eq!(status.rows_written + status.rows_dropped, SENT, "{status:?}");
    let all = Filter { from_ms: 0, to_ms: u64::MAX / 2, ..Filter::default() };
    assert_eq!(backend.totals(&all, GroupBy::None).await.unwrap()[0].requests, status.rows_written);
}
