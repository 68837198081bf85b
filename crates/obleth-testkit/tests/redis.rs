//! `OwnRedis` against the real `redis-server`.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};

use obleth_testkit::OwnRedis;

/// Sends one inline command and returns the first reply line (enough for SET/GET of short values).
fn cmd(r: &OwnRedis, line: &str) -> String {
    let s = std::net::TcpStream::connect(("127.0.0.1", r.port())).unwrap();
    (&s).write_all(format!("{line}\r\n").as_bytes()).unwrap();
    let mut reader = BufReader::new(&s);
    let mut reply = String::new();
    reader.read_line(&mut reply).unwrap();
    if reply.starts_with('$') && reply.trim() != "$-1" {
        reply.clear();
        reader.read_line(&mut reply).unwrap();
    }
    reply.trim().to_string()
}

/// A write acknowledged before a SIGKILL is there after the restart (AOF, fsync always).
#[test]
fn data_survives_kill_and_restart() {
    let mut r = OwnRedis::start();
    assert!(r.url().starts_with("redis://127.0.0.1:"));
    assert_eq!(cmd(&r, "SET k v1"), "+OK");
    r.kill();
    assert!(!r.is_running());
    assert!(std::net::TcpStream::connect(("127.0.0.1", r.port())).is_err());
    r.restart();
    assert!(r.is_running());
    assert_eq!(cmd(&r, "GET k"), "v1");
}
