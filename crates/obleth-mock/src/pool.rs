//! The simulated GPU: a FIFO-fair pool of `max_num_seqs` sequence slots, and the counters
//! served at `/mock/stats`.
//!
//! Like vLLM's scheduler, each *choice* being generated occupies one sequence slot, so a
//! request with `n = 4` takes four. A request that cannot get its slots immediately waits in
//! strict arrival order (tokio's `Semaphore` hands released permits to the oldest waiter and
//! never lets a `try_acquire` jump the queue), so the mock itself adds no unfairness that a
//! fairness benchmark would then blame on the gateway.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// Counters behind `/mock/stats`.
///
/// `Relaxed` ordering throughout: each counter is independent and readers only want a
/// recent value, not a consistent cut across counters.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) requests_total: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) errors_injected: AtomicU64,
    pub(crate) stalls_injected: AtomicU64,
    pub(crate) aborts_injected: AtomicU64,
    pub(crate) client_disconnects: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) running: AtomicU64,
    pub(crate) waiting: AtomicU64,
    pub(crate) peak_running: AtomicU64,
    pub(crate) prompt_tokens_total: AtomicU64,
    pub(crate) completion_tokens_total: AtomicU64,
}

/// A point-in-time copy of the mock's counters, as served by `GET /mock/stats`.
///
/// Counters count since start or the last `POST /mock/reset`; `running` and `waiting` are
/// gauges of the present and are not reset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Requests received on the three inference endpoints, whatever became of them.
    pub requests_total: u64,
    /// Requests whose full response was produced (last token and `[DONE]` for streams).
    pub completed: u64,
    /// Injected 500 errors.
    pub errors_injected: u64,
    /// Injected stalls.
    pub stalls_injected: u64,
    /// Injected mid-response connection cuts.
    pub aborts_injected: u64,
    /// Requests abandoned by the client (connection dropped) before the mock finished them,
    /// whether they were waiting, generating or stalled.
    pub client_disconnects: u64,
    /// Requests refused with 503 because `max_waiting` requests were already queued.
    pub rejected: u64,
    /// Sequence slots in use now (one per choice being generated).
    pub running: u64,
    /// Requests queued for slots now.
    pub waiting: u64,
    /// Highest `running` seen.
    pub peak_running: u64,
    /// Sum of `usage.prompt_tokens` over completed requests. Counted even when usage was
    /// omitted from the response (it is what would have been reported).
    pub prompt_tokens_total: u64,
    /// Sum of `usage.completion_tokens` over completed requests, counted the same way.
    pub completion_tokens_total: u64,
}

impl Stats {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            requests_total: r(&self.requests_total),
            completed: r(&self.completed),
            errors_injected: r(&self.errors_injected),
            stalls_injected: r(&self.stalls_injected),
            aborts_injected: r(&self.aborts_injected),
            client_disconnects: r(&self.client_disconnects),
            rejected: r(&self.rejected),
            running: r(&self.running),
            waiting: r(&self.waiting),
            peak_running: r(&self.peak_running),
            prompt_tokens_total: r(&self.prompt_tokens_total),
            completion_tokens_total: r(&self.completion_tokens_total),
        }
    }

    /// Zeroes the counters. Gauges keep their value, and the peak restarts from the present.
    pub(crate) fn reset(&self) {
        for c in [
            &self.requests_total,
            &self.completed,
            &self.errors_injected,
            &self.stalls_injected,
            &self.aborts_injected,
            &self.client_disconnects,
            &self.rejected,
            &self.prompt_tokens_total,
            &self.completion_tokens_total,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        self.peak_running.store(self.running.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Records a finished request and what its `usage` said (or would have said).
    pub(crate) fn finish(&self, prompt_tokens: u32, completion_tokens: u64) {
        Self::bump(&self.completed);
        self.prompt_tokens_total.fetch_add(u64::from(prompt_tokens), Ordering::Relaxed);
        self.completion_tokens_total.fetch_add(completion_tokens, Ordering::Relaxed);
    }
}

// === impl Pool ===

/// The sequence-slot pool.
#[derive(Debug)]
pub(crate) struct Pool {
    /// `None` when `max_num_seqs` is 0 (unlimited).
    sem: Option<Arc<Semaphore>>,
    capacity: usize,
    /// 0 = unbounded.
    max_waiting: u64,
    stats: Arc<Stats>,
}

/// Result of asking for slots without waiting.
pub(crate) enum Admission {
    /// Slots were free.
    Ready(Slot),
    /// The request is queued; await [`Queued::acquire`].
    Queued(Queued),
}

/// Held sequence slots; dropping it frees them at once.
#[derive(Debug)]
pub(crate) struct Slot {
    _permit: Option<OwnedSemaphorePermit>,
    seqs: u64,
    stats: Arc<Stats>,
}

/// A place in the queue; dropping it (e.g. on client disconnect) leaves the queue.
#[derive(Debug)]
pub(crate) struct Queued {
    sem: Arc<Semaphore>,
    seqs: u32,
    stats: Arc<Stats>,
}

impl Pool {
    pub(crate) fn new(max_num_seqs: usize, max_waiting: usize, stats: Arc<Stats>) -> Self {
        Self {
            sem: (max_num_seqs > 0).then(|| Arc::new(Semaphore::new(max_num_seqs))),
            capacity: max_num_seqs,
            max_waiting: max_waiting as u64,
            stats,
        }
    }

    /// Takes `seqs` slots if free, else joins the queue, else (queue full) refuses.
    pub(crate) fn admit(&self, seqs: u32) -> Result<Admission, ApiError> {
        let Some(sem) = &self.sem else {
            return Ok(Admission::Ready(Slot::new(None, seqs, &self.stats)));
        };
        if seqs as usize > self.capacity {
            return Err(ApiError::bad(
                format!("n × prompts = {seqs} sequences exceeds the mock's max_num_seqs of {}", self.capacity),
                Some("n"),
            ));
        }
        if let Ok(permit) = Arc::clone(sem).try_acquire_many_owned(seqs) {
            return Ok(Admission::Ready(Slot::new(Some(permit), seqs, &self.stats)));
        }
        let max = self.max_waiting;
        let joined = self
            .stats
            .waiting
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| (max == 0 || w < max).then_some(w + 1));
        match joined {
            Ok(_) => Ok(Admission::Queued(Queued { sem: Arc::clone(sem), seqs, stats: Arc::clone(&self.stats) })),
            Err(waiting) => {
                Stats::bump(&self.stats.rejected);
                Err(ApiError::QueueFull { waiting })
            }
        }
    }
}

impl Admission {
    /// Waits (if queued) until the slots are held.
    pub(crate) async fn into_slot(self) -> Slot {
        match self {
            Self::Ready(slot) => slot,
            Self::Queued(q) => q.acquire().await,
        }
    }
}

impl Queued {
    async fn acquire(self) -> Slot {
        // The semaphore is never closed, so the error arm cannot happen; if it somehow did,
        // serving without a permit is a better failure for a mock than hanging or panicking.
        let permit = Arc::clone(&self.sem).acquire_many_owned(self.seqs).await.ok();
        Slot::new(permit, self.seqs, &self.stats)
        // `self` drops here, leaving the waiting count only once running has been counted.
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.stats.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Slot {
    fn new(permit: Option<OwnedSemaphorePermit>, seqs: u32, stats: &Arc<Stats>) -> Self {
        let seqs = u64::from(seqs);
        let now = stats.running.fetch_add(seqs, Ordering::Relaxed) + seqs;
        stats.peak_running.fetch_max(now, Ordering::Relaxed);
        Self { _permit: permit, seqs, stats: Arc::clone(stats) }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stats.running.fetch_sub(self.seqs, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queue_is_bounded_and_slots_are_released() {
        let stats = Arc::new(Stats::default());
        let pool = Pool::new(1, 1, Arc::clone(&stats));
        let first = match pool.admit(1) {
            Ok(Admission::Ready(s)) => s,
            _ => panic!("first request should get the free slot"),
        };
        let queued = match pool.admit(1) {
            Ok(q @ Admission::Queued(_)) => q,
            _ => panic!("second request should queue"),
        };
        assert!(matches!(pool.admit(1), Err(ApiError::QueueFull { waiting: 1 })));
        assert_eq!(stats.snapshot().rejected, 1);
        drop(first);
        let second = queued.into_slot().await;
        let s = stats.snapshot();
        assert_eq!((s.running, s.waiting, s.peak_running), (1, 0, 1));
        drop(second);
        assert_eq!(stats.snapshot().running, 0);
    }

    #[test]
    fn more_sequences_than_capacity_is_a_bad_request() {
        let pool = Pool::new(2, 0, Arc::default());
        assert!(matches!(pool.admit(3), Err(ApiError::BadRequest { .. })));
        assert!(Pool::new(0, 0, Arc::default()).admit(1000).is_ok());
    }
}
