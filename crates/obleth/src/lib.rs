//! The obleth binary's library half: configuration, wiring and the admin CLI, kept in a
//! library so that integration tests start the real gateway in-process.

pub mod client;
pub mod config;
pub mod mcp;
pub mod ops;
pub mod server;
pub mod telemetry;
pub mod traffic;
