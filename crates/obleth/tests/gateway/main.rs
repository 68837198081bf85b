//! Integration tests: the real gateway (as `obleth serve` wires it) in front of the
//! bundled mock backend, both on 127.0.0.1:0, talking real HTTP.

#![allow(clippy::unwrap_used)]

mod support;

mod admin_api;
mod admin_input;
mod admin_mcp;
mod admission;
mod budgets;
mod errors;
mod lifecycle;
mod proxy;
mod upstream_policy;
