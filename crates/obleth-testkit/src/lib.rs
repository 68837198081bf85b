//! Test support for obleth: real servers of a test's own.
//!
//! A test that kills its backing store, restarts it, or reads what was persisted cannot
//! share the machine's long-running service with every other test: it would take that
//! service down under them. So each such test starts its own server here, on free
//! loopback ports (picked by binding `127.0.0.1:0`, so parallel tests never collide and
//! a server already on the standard port is left alone), with its data in a temporary
//! directory that lives as long as the handle. The data outliving a kill is the point:
//! restarting on the same ports and the same directory is what a crashed production
//! server does, and it is what the tests check obleth survives.
//!
//! Everything is synchronous and std-only, so it works from plain `#[test]`s and from
//! inside any async runtime alike (the calls block briefly; they are test set-up).
#![allow(clippy::unwrap_used)]

mod clickhouse;
mod postgres;
mod redis;
mod tls;
mod util;

pub use clickhouse::OwnClickHouse;
pub use postgres::OwnPostgres;
pub use redis::OwnRedis;
pub use tls::TestCa;
