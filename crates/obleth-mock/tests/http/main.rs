//! End-to-end tests of the mock over real HTTP on 127.0.0.1:0.
//!
//! None of these assert on wall-clock durations: timing is checked through counters
//! (`/mock/stats`) and through the order and shape of what arrives.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod faults;
mod support;
