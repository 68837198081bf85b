//! Bounded retries of writes that lost a race with concurrent transactions.
//!
//! Both databases sometimes refuse a transaction only because another one got in its
//! way, and roll it back: SQLite answers `SQLITE_BUSY`/`SQLITE_LOCKED` when it cannot
//! take a lock (after its own busy timeout, or at once where waiting could deadlock),
//! Postgres aborts a transaction that lost a serialization race (40001) or was picked
//! as a deadlock's victim (40P01). Nothing of the attempt is kept, so running it again
//! is safe and usually succeeds at once. Errors that may have left a commit behind (a
//! connection lost mid-transaction) are never retried here: a second attempt could
//! then report a conflict or a missing row for a change that did happen.
//!
//! Every write of both stores runs through [`retry`], the one place that decides how
//! often and how long. When the bound is spent the caller gets
//! [`StoreError::Unavailable`] (503, retryable), never a server error.

use std::future::Future;
use std::time::Duration;

use crate::{Result, StoreError};

/// Attempts of one operation, the first included.
pub(crate) const MAX_ATTEMPTS: u32 = 5;
/// The wait before the second attempt; doubled before each next one (5, 10, 20, 40 ms).
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(5);
/// No attempt starts later than this after the first one began. An attempt can itself
/// wait longer (SQLite's busy timeout, Postgres's deadlock timeout), so a contended
/// write answers within about this plus one such wait, far below an admin client's
/// patience; an attempt that already waited out the busy timeout is not run again.
pub(crate) const BUDGET: Duration = Duration::from_secs(2);

/// Why one attempt failed, and whether it was only contention (rolled back, safe to run
/// again). A contended failure is always [`StoreError::Unavailable`].
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) error: StoreError,
    pub(crate) contended: bool,
}

impl Failure {
    /// The database refused the attempt because of concurrent transactions.
    pub(crate) fn contended(message: String) -> Failure {
        Failure {
            error: StoreError::Unavailable(format!("the database is busy with concurrent writes: {message}")),
            contended: true,
        }
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Failure {
        Failure { error, contended: false }
    }
}

impl From<Failure> for StoreError {
    fn from(f: Failure) -> StoreError {
        f.error
    }
}

/// Runs `attempt` until it succeeds, fails for another reason than contention, or the
/// bound ([`MAX_ATTEMPTS`], [`BUDGET`]) is spent. `what` names the operation in logs.
pub(crate) async fn retry<T, F, Fut>(what: &'static str, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let started = tokio::time::Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let failure = match attempt().await {
            Ok(v) => return Ok(v),
            Err(f) => f,
        };
        if !failure.contended {
            return Err(failure.error);
        }
        if attempts >= MAX_ATTEMPTS || started.elapsed() + backoff > BUDGET {
            tracing::warn!(operation = what, attempts, after = ?started.elapsed(), error = %failure.error, "store write still contended; giving up");
            return Err(failure.error);
        }
        tracing::debug!(operation = what, attempts, error = %failure.error, "store write contended; trying again");
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// Counts attempts; each fails with `fail(n)` (n from 1) or succeeds on `None`.
    async fn run(fail: impl Fn(u32) -> Option<Failure>) -> (Result<u32>, u32) {
        let calls = AtomicU32::new(0);
        let result = retry("test", || {
            let n = calls.fetch_add(1, Ordering::Relaxed) + 1;
            let outcome = fail(n);
            async move {
                match outcome {
                    Some(f) => Err(f),
                    None => Ok(n),
                }
            }
        })
        .await;
        (result, calls.load(Ordering::Relaxed))
    }

    #[tokio::test(start_paused = true)]
    async fn contention_is_retried_until_it_clears() {
        let (result, calls) = run(|n| (n < 3).then(|| Failure::contended("locked".into()))).await;
        assert_eq!((result.ok(), calls), (Some(3), 3));
    }

    #[tokio::test(start_paused = true)]
    async fn lasting_contention_ends_unavailable_after_the_bound() {
        let started = tokio::time::Instant::now();
        let (result, calls) = run(|_| Some(Failure::contended("locked".into()))).await;
        assert_eq!(calls, MAX_ATTEMPTS);
        match result {
            Err(StoreError::Unavailable(m)) => assert!(m.contains("locked"), "{m}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
        // 5 + 10 + 20 + 40 ms of backoff, on the paused clock.
        assert_eq!(started.elapsed(), Duration::from_millis(75));
    }

    #[tokio::test(start_paused = true)]
    async fn no_attempt_starts_past_the_budget() {
        // Each attempt waits 1.5 s (as if SQLite's busy timeout ran), then is refused.
        let calls = AtomicU32::new(0);
        let result: Result<()> = retry("test", || {
            calls.fetch_add(1, Ordering::Relaxed);
            async {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                Err(Failure::contended("busy".into()))
            }
        })
        .await;
        assert!(matches!(result, Err(StoreError::Unavailable(_))), "{result:?}");
        assert_eq!(calls.load(Ordering::Relaxed), 2, "a second attempt at 1.5 s, none at 3 s");
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_are_not_retried() {
        for error in [
            StoreError::Unavailable("connection reset".into()),
            StoreError::Backend("boom".into()),
            StoreError::Conflict("taken".into()),
        ] {
            let text = error.to_string();
            let failure = std::sync::Mutex::new(Some(Failure::from(error)));
            let (result, calls) = run(|_| failure.lock().ok()?.take()).await;
            assert_eq!(calls, 1, "{text}");
            assert_eq!(result.err().map(|e| e.to_string()), Some(text));
        }
    }
}
