//! The ClickHouse ledger against a real `clickhouse-server` of the test's own (Debian's
//! 18.16 in CI): the conformance suite, rows landing exactly, the server stopped under a
//! steady stream of rows, and a replay of batches the server already has.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use obleth_core::UsageSink;
use obleth_ledger::clickhouse::{ClickHouse, ClickHouseConfig};
use obleth_ledger::wal::fs::DirFs;
use obleth_ledger::wal::{Wal, WalConfig};
use obleth_ledger::{Ledger, LedgerBackend, LedgerConfig, LedgerRow, conformance};
use obleth_testkit::OwnClickHouse;

mod common;

fn backend(server: &OwnClickHouse, database: &str) -> Arc<ClickHouse> {
    Arc::new(
        ClickHouse::new(ClickHouseConfig {
            url: server.http_url(),
            database: database.into(),
            timeout: Duration::from_secs(5),
            ..ClickHouseConfig::default()
        })
        .unwrap(),
    )
}

fn count(server: &OwnClickHouse, database: &str) -> (u64, u64) {
    let out = server.query(&format!("SELECT count(), uniqExact(request_id) FROM {database}.obleth_usage"));
    let mut it = out.split_whitespace().map(|v| v.parse::<u64>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

fn fast() -> LedgerConfig {
    LedgerConfig {
        flush_interval: Duration::from_millis(20),
        insert_interval: Duration::from_millis(100),
        retry_max: Duration::from_millis(500),
        ..LedgerConfig::default()
    }
}

#[tokio::test]
async fn clickhouse_conformance() {
    let server = OwnClickHouse::start();
    conformance::run(backend(&server, "conf").as_ref(), "ch").await;
}

/// Rows recorded through the sink land exactly, field for field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_land_exactly() {
    let server = OwnClickHouse::start();
    let dir = tempfile::tempdir().unwrap();
    let ch = backend(&server, "exact");
    let (ledger, _) = Ledger::start(ch.clone(), Arc::new(DirFs::new(dir.path()).unwrap()), fast()).unwrap();
    let records: Vec<_> = (0..300).map(|n| common::record(n, "t1")).collect();
    for r in &records {
        ledger.record(r.clone());
    }
    assert!(ledger.close(Duration::from_secs(20)).await, "{:?}", ledger.status());
    assert_eq!(count(&server, "exact"), (300, 300));
    let filter = obleth_ledger::Filter { from_ms: 0, to_ms: u64::MAX / 2, ..Default::default() };
    let mut got = ch.recent(&filter, 1000).await.unwrap();
    got.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    let mut want: Vec<LedgerRow> = records.into_iter().map(LedgerRow::from).collect();
    want.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    assert_eq!(got, want);
}

/// ClickHouse stopped for a while under a steady stream of rows, then started again:
/// every row lands once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_under_load_then_back() {
    let mut server = OwnClickHouse::start();
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _) =
        Ledger::start(backend(&server, "outage"), Arc::new(DirFs::new(dir.path()).unwrap()), fast()).unwrap();
    let mut sent = 0u64;
    let mut send = |ledger: &Ledger, n: u64| {
        for _ in 0..n {
            ledger.record(common::record(sent, "t1"));
            sent += 1;
        }
    };
    for _ in 0..10 {
        send(&ledger, 50);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    server.kill();
    for _ in 0..40 {
        send(&ledger, 50);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let status = ledger.status();
    assert!(!status.backend_up, "the outage was noticed: {status:?}");
    assert!(status.pending_batches > 0, "rows wait in the log: {status:?}");
    server.restart();
    for _ in 0..10 {
        send(&ledger, 50);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(ledger.close(Duration::from_secs(60)).await, "{:?}", ledger.status());
    assert_eq!(ledger.status().rows_dropped, 0);
    assert_eq!(count(&server, "outage"), (sent, sent));
}

/// Batches a previous process inserted but did not acknowledge (it died in between) are
/// checked on replay: only the missing rows are inserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_skips_rows_already_inserted() {
    let server = OwnClickHouse::start();
    let dir = tempfile::tempdir().unwrap();
    let ch = backend(&server, "replay");
    ch.prepare().await.unwrap();
    let fs = Arc::new(DirFs::new(dir.path()).unwrap());
    {
        let (mut wal, _) = Wal::open(fs.clone(), WalConfig::default()).unwrap();
        for b in 0..10u64 {
            let rows: Vec<LedgerRow> = (0..100).map(|n| LedgerRow::from(common::record(b * 100 + n, "t1"))).collect();
            let mut payload = Vec::new();
            rows.iter().for_each(|r| r.write_json_line(&mut payload));
            wal.append(&payload).unwrap();
            // The dead process got the first six batches in, and acknowledged four.
            if b < 6 {
                ch.insert(&rows).await.unwrap();
            }
        }
        wal.ack(4).unwrap();
    }
    let (ledger, recovered) = Ledger::start(ch.clone(), fs, fast()).unwrap();
    assert_eq!((recovered.watermark, recovered.pending_batches), (4, 6));
    let deadline = Instant::now() + Duration::from_secs(30);
    while ledger.status().pending_batches > 0 {
        assert!(Instant::now() < deadline, "replay finished: {:?}", ledger.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ledger.status().rows_written, 400, "only the four missing batches were inserted");
    assert!(ledger.close(Duration::from_secs(10)).await);
    assert_eq!(count(&server, "replay"), (1000, 1000));
}

/// A server that comes back without the table (its volume lost, or dropped by hand)
/// gets it again: the failed insert re-runs the schema before its retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_table_is_created_again() {
    let server = OwnClickHouse::start();
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _) =
        Ledger::start(backend(&server, "lost"), Arc::new(DirFs::new(dir.path()).unwrap()), fast()).unwrap();
    for n in 0..10 {
        ledger.record(common::record(n, "t1"));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while ledger.status().rows_written < 10 {
        assert!(Instant::now() < deadline, "{:?}", ledger.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.query("DROP TABLE lost.obleth_usage");
    for n in 10..30 {
        ledger.record(common::record(n, "t1"));
    }
    while ledger.status().rows_written < 30 {
        assert!(Instant::now() < deadline, "{:?}", ledger.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ledger.close(Duration::from_secs(20)).await, "{:?}", ledger.status());
    assert_eq!(count(&server, "lost"), (20, 20));
}

/// ClickHouse over HTTPS: trusting the private CA that signed the server's certificate
/// (`ledger.clickhouse_ca_file`), the whole suite passes; with only the public roots,
/// the server is refused rather than trusted.
#[tokio::test]
async fn https_with_a_private_ca() {
    let server = OwnClickHouse::start_https();
    let config = ClickHouseConfig {
        url: server.https_url(),
        database: "tls".into(),
        timeout: Duration::from_secs(5),
        ..ClickHouseConfig::default()
    };
    let trusted = ClickHouse::new(ClickHouseConfig { ca_file: Some(server.ca().ca_cert()), ..config.clone() }).unwrap();
    conformance::run(&trusted, "tls").await;

    let untrusted = ClickHouse::new(config).unwrap();
    let err = untrusted.prepare().await.expect_err("a certificate no public root signed").to_string();
    assert!(err.to_lowercase().contains("certificate") || err.contains("invalid peer"), "{err}");

    let missing = ClickHouseConfig { ca_file: Some("/nonexistent/ca.pem".into()), ..ClickHouseConfig::default() };
    let err = ClickHouse::new(missing).expect_err("no such file").to_string();
    assert!(err.contains("ledger.clickhouse_ca_file") && err.contains("/nonexistent/ca.pem"), "{err}");
}

/// A table from schema version 2 (its rows and hourly sums in it) is upgraded to version 3
/// at the next start: the tool-call columns are added, its rows read back with them
/// empty, tool calls keep them, the hourly sums go on counting every insert, and a start
/// after that changes nothing.
#[tokio::test]
async fn a_version_2_table_gets_the_tool_columns() {
    let server = OwnClickHouse::start();
    let ch = backend(&server, "upgrade");
    ch.prepare().await.unwrap();
    let old: Vec<LedgerRow> = (0..20u32).map(|n| conformance::row("up", n, "a", "m1", u64::from(n))).collect();
    ch.insert(&old).await.unwrap();
    // The database as the previous release left it.
    for c in ["mcp_server", "args_sha256", "result_bytes", "upstream_error", "capture"] {
        server.query(&format!("ALTER TABLE upgrade.obleth_usage DROP COLUMN {c}"));
    }
    server.query("DROP TABLE upgrade.obleth_ledger_migrations");
    server.query(
        "CREATE TABLE upgrade.obleth_ledger_migrations (tbl String, version UInt32, applied_at DateTime) ENGINE = TinyLog",
    );
    server.query(
        "INSERT INTO upgrade.obleth_ledger_migrations VALUES ('obleth_usage', 1, now()), ('obleth_usage', 2, now())",
    );
    let columns = |server: &OwnClickHouse| {
        server.query(
            "SELECT count() FROM system.columns WHERE database = 'upgrade' AND table = 'obleth_usage' \
             AND name IN ('mcp_server', 'args_sha256', 'result_bytes', 'upstream_error', 'capture')",
        )
    };
    assert_eq!(columns(&server).trim(), "0");

    let ch = backend(&server, "upgrade");
    ch.prepare().await.unwrap();
    assert_eq!(columns(&server).trim(), "5");
    let version = server.query("SELECT max(version) FROM upgrade.obleth_ledger_migrations WHERE tbl = 'obleth_usage'");
    assert_eq!(version.trim(), "3");
    let tools: Vec<LedgerRow> = (20..30u32).map(|n| conformance::tool_row("up", n, "a", u64::from(n))).collect();
    ch.insert(&tools).await.unwrap();
    let mut want = old;
    want.extend(tools);
    let all = obleth_ledger::Filter { from_ms: 0, to_ms: u64::MAX / 2, ..Default::default() };
    let mut got = ch.recent(&all, 100).await.unwrap();
    got.reverse();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((g.cost - w.cost).abs() < 1e-15, "cost {} vs {}", g.cost, w.cost);
        assert_eq!(LedgerRow { cost: 0.0, ..g.clone() }, LedgerRow { cost: 0.0, ..w.clone() });
    }
    // The view behind the hourly sums saw the inserts on both sides of the upgrade.
    let summed = server.query("SELECT sum(requests), sum(input_tokens) FROM upgrade.obleth_usage_hourly");
    let input: u32 = want.iter().map(|r| r.input_tokens).sum();
    assert_eq!(summed.split_whitespace().collect::<Vec<_>>(), ["30", input.to_string().as_str()]);

    backend(&server, "upgrade").prepare().await.unwrap();
    assert_eq!(columns(&server).trim(), "5");
}
