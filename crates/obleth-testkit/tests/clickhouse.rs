//! `OwnClickHouse` against the real `clickhouse-server` (Debian's 18.16 in CI).
#![allow(clippy::unwrap_used)]

use obleth_testkit::OwnClickHouse;

fn accepts(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn create_and_fill(ch: &OwnClickHouse) {
    ch.query("CREATE TABLE t (id UInt64, name String, at DateTime) ENGINE = MergeTree() PARTITION BY toYYYYMM(at) ORDER BY id");
    ch.query(
        "INSERT INTO t FORMAT JSONEachRow\n\
         {\"id\": 1, \"name\": \"one\", \"at\": \"2025-01-02 03:04:05\"}\n\
         {\"id\": 2, \"name\": \"two\", \"at\": \"2025-02-02 03:04:05\"}\n",
    );
}

/// What was inserted before a SIGKILL is there after the restart, on the same URL.
#[test]
fn data_survives_kill_and_restart() {
    let mut ch = OwnClickHouse::start();
    assert_eq!(ch.query("SELECT 1").trim(), "1");
    create_and_fill(&ch);
    let url = ch.http_url();

    ch.kill();
    assert!(!ch.is_running());
    assert!(!accepts(ch.http_port()), "nothing listens once killed");

    ch.restart();
    assert!(ch.is_running());
    assert_eq!(ch.http_url(), url);
    assert_eq!(ch.query("SELECT count() FROM t").trim(), "2");
    assert_eq!(ch.query("SELECT name FROM t ORDER BY id FORMAT TSV"), "one\ntwo\n");
    ch.query("INSERT INTO t VALUES (3, 'three', '2025-03-02 03:04:05')");
    assert_eq!(ch.query("SELECT count() FROM t").trim(), "3");
}

/// SIGTERM is honoured within the grace period, and a stopped server restarts with its data.
#[test]
fn stop_is_graceful() {
    let mut ch = OwnClickHouse::start();
    create_and_fill(&ch);
    assert!(ch.stop(), "clickhouse-server exits on SIGTERM without being killed");
    assert!(!ch.is_running());
    assert!(!accepts(ch.http_port()));
    assert!(ch.stop(), "stopping a stopped server is a no-op");

    ch.restart();
    assert_eq!(ch.query("SELECT sum(id) FROM t").trim(), "3");
    // Restarting a running server stops it first.
    ch.restart();
    assert_eq!(ch.query("SELECT count() FROM t").trim(), "2");
}

/// Two servers side by side on their own ports; dropping one kills it and leaves the other.
#[test]
fn servers_are_independent_and_drop_kills() {
    let a = OwnClickHouse::start();
    let b = OwnClickHouse::start();
    assert_ne!(a.http_port(), b.http_port());
    assert_ne!(a.tcp_port(), a.http_port());
    a.query("CREATE TABLE only_a (x UInt8) ENGINE = Memory");
    assert_eq!(b.query("EXISTS TABLE only_a").trim(), "0");
    let port = a.http_port();
    let dir = a.dir().to_path_buf();
    drop(a);
    assert!(!accepts(port), "dropped server is gone");
    assert!(!dir.exists(), "its directory is removed");
    assert_eq!(b.query("SELECT 1").trim(), "1");
}

/// An error from ClickHouse panics with its exception text.
#[test]
#[should_panic(expected = "doesn't exist")]
fn query_panics_on_error() {
    let ch = OwnClickHouse::start();
    ch.query("SELECT * FROM no_such_table");
}
