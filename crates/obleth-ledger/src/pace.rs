//! Batch work that shares the CPUs with the request path gives them up often.
//!
//! Linux's fair scheduler lets a running thread use up its slice (0.75 ms and more) before
//! a thread it has just woken gets the CPU, and a CPU that goes idle meanwhile rarely
//! pulls the woken thread over. The ledger's batches (a thousand rows serialized, then
//! parsed back) ran for 1–3 ms at a time, and a data-plane thread woken by an upstream's
//! answer behind one waited that long: on two CPUs that was the gateway's p99 at one
//! connection (docs/benchmarks.md, "The tail at one connection"). Yielding every
//! [`SLICE`] bounds that wait. The thread stays runnable and keeps its fair share, so a
//! saturated machine still ships every row; with nothing else waiting, a yield returns at
//! once.

use std::time::{Duration, Instant};

/// The longest a batch runs before it lets a waiting thread have the CPU.
pub(crate) const SLICE: Duration = Duration::from_micros(50);

pub(crate) struct Pacer {
    since: Instant,
}

impl Pacer {
    /// Starts timing at the beginning of a batch.
    pub(crate) fn start() -> Pacer {
        Pacer { since: Instant::now() }
    }

    /// Called between units of work: yields the CPU if this batch has run for a slice.
    pub(crate) fn pace(&mut self) {
        if self.since.elapsed() >= SLICE {
            std::thread::yield_now();
            self.since = Instant::now();
        }
    }
}
