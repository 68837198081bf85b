//! The SQLite ledger against the conformance suite, and the whole ledger (queue, log,
//! shipper) writing into it.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use obleth_core::UsageSink;
use obleth_ledger::sqlite::SqliteLedger;
use obleth_ledger::wal::fs::DirFs;
use obleth_ledger::wal::{Wal, WalConfig};
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

/// A batch that holds rows already stored (inserted twice, partly or wholly) adds only
/// its new rows to the hourly sums, and a file from before the sums gets them filled
/// from its rows when it is opened: the 30-hour totals, read from the sums, equal the
/// distinct rows.
#[tokio::test]
async fn hourly_sums_count_each_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(&dir).await;
    let start = 1_796_000_400_000 / 3_600_000 * 3_600_000;
    let rows: Vec<_> = (0..300u32)
        .map(|n| {
            let mut r = conformance::row("sums", n, if n % 2 == 0 { "a" } else { "b" }, "m1", 0);
            r.received_at_ms = start + u64::from(n) * 6 * 60_000;
            r.received_at = r.received_at_ms / 1000;
            r
        })
        .collect();
    ledger.insert(&rows[..200]).await.unwrap();
    ledger.insert(&rows[150..]).await.unwrap(); // 50 stored already, in one chunk with new ones
    ledger.insert(&rows[..64]).await.unwrap(); // a whole chunk stored already
    let all = Filter { from_ms: start, to_ms: start + 30 * 3_600_000, tenant_id: None, model: None };
    let totals = ledger.totals(&all, GroupBy::Tenant).await.unwrap();
    let requests: u64 = totals.iter().map(|t| t.requests).sum();
    assert_eq!(requests, 300, "{totals:?}");
    let input: u64 = totals.iter().map(|t| t.input_tokens).sum();
    assert_eq!(input, rows.iter().map(|r| u64::from(r.input_tokens)).sum::<u64>());

    // A ledger file from before the sums: its rows are summed when it is opened again.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("usage.db").display())).await.unwrap();
    sqlx::query("DROP TABLE usage_hourly").execute(&pool).await.unwrap();
    pool.close().await;
    let reopened = open(&dir).await;
    let totals = reopened.totals(&all, GroupBy::None).await.unwrap();
    assert_eq!(totals.first().map(|t| t.requests), Some(300), "{totals:?}");
}

/// A ledger file from before the tool-call columns (its rows in it) gets them when it is
/// opened: its rows read back with them empty, tool calls keep them, the hourly sums count
/// both, and opening it again changes nothing.
#[tokio::test]
async fn a_file_from_before_tool_calls_gets_their_columns() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(&dir).await;
    let old: Vec<_> = (0..20u32).map(|n| conformance::row("up", n, "a", "m1", u64::from(n))).collect();
    ledger.insert(&old).await.unwrap();
    drop(ledger);
    // The file as the previous release left it: the same rows, without the columns.
    let url = format!("sqlite://{}", dir.path().join("usage.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    for c in ["mcp_server", "args_sha256", "result_bytes", "upstream_error", "capture"] {
        sqlx::query(&format!("ALTER TABLE usage DROP COLUMN {c}")).execute(&pool).await.unwrap();
    }
    pool.close().await;

    let ledger = open(&dir).await;
    let tools: Vec<_> = (20..30u32).map(|n| conformance::tool_row("up", n, "a", u64::from(n))).collect();
    ledger.insert(&tools).await.unwrap();
    let mut want = old.clone();
    want.extend(tools);
    let all = Filter { from_ms: 0, to_ms: u64::MAX / 2, ..Filter::default() };
    let mut got = ledger.recent(&all, 100).await.unwrap();
    got.reverse();
    assert_eq!(got, want);
    let totals = ledger.totals(&all, GroupBy::None).await.unwrap();
    assert_eq!(totals[0].requests, 30, "{totals:?}");
    drop(ledger);
    let again = open(&dir).await;
    assert_eq!(again.recent(&all, 100).await.unwrap().len(), 30);
}

/// Batches a previous release left in the write-ahead log (lines without the tool-call
/// columns) ship after an upgrade, beside new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_log_lines_ship_after_an_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn LedgerBackend> = Arc::new(open(&dir).await);
    let fs = Arc::new(DirFs::new(dir.path().join("wal")).unwrap());
    let start = 1_796_000_400_000;
    let mut want = Vec::new();
    {
        let (mut wal, _) = Wal::open(fs.clone(), WalConfig::default()).unwrap();
        for b in 0..3u32 {
            let mut payload = Vec::new();
            for n in 0..10 {
                let (line, row) = conformance::old_log_line("wal", b * 10 + n, start + u64::from(b * 10 + n) * 1000);
                payload.extend_from_slice(line.as_bytes());
                payload.push(b'\n');
                want.push(row);
            }
            wal.append(&payload).unwrap();
        }
    }
    let config = LedgerConfig { flush_interval: Duration::from_millis(20), ..LedgerConfig::default() };
    let (ledger, recovered) = Ledger::start(backend.clone(), fs, config).unwrap();
    assert_eq!(recovered.pending_batches, 3);
    let mut call = record(1, "wal-a");
    call.received_at = (start + 60_000) as i64;
    call.finished_at = call.received_at + 10;
    call.tool = Some(obleth_core::ToolCallUsage {
        server: "files".into(),
        args_sha256: format!("sha256:{}", "0".repeat(64)),
        result_bytes: 42,
        upstream_error: String::new(),
        capture: r#"{"arguments":{},"result":null}"#.into(),
    });
    ledger.record(call.clone());
    assert!(ledger.close(Duration::from_secs(10)).await, "{:?}", ledger.status());
    assert_eq!((ledger.status().rows_written, ledger.status().rows_dropped), (31, 0));
    want.push(obleth_ledger::LedgerRow::from(call));
    let all = Filter { from_ms: 0, to_ms: u64::MAX / 2, ..Filter::default() };
    let mut got = backend.recent(&all, 100).await.unwrap();
    got.reverse();
    assert_eq!(got, want);
}
