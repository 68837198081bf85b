//! The default admission policy until the fairshare scheduler lands: a global FIFO cap
//! on in-flight requests with a bounded wait.
//!
//! It implements the same [`Admission`] seam the scheduler will, so the proxy already
//! holds a slot from admission to the end of the stream and frees it on every path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use obleth_core::{Admission, AdmissionClass, AdmissionRequest, Admitted, Rejection};
use tokio::sync::Semaphore;

/// A global cap of `max_in_flight` requests (`None`: unlimited).
pub struct ConcurrencyLimit {
    slots: Option<Arc<Semaphore>>,
    max_wait: Duration,
}

impl ConcurrencyLimit {
    pub fn new(max_in_flight: Option<usize>, max_wait: Duration) -> Self {
        ConcurrencyLimit { slots: max_in_flight.map(|n| Arc::new(Semaphore::new(n))), max_wait }
    }
}

#[async_trait]
impl Admission for ConcurrencyLimit {
    async fn admit(&self, _request: AdmissionRequest) -> Result<Admitted, Rejection> {
        let Some(slots) = &self.slots else {
            return Ok(Admitted {
                class: AdmissionClass::Fast,
                waited: Duration::ZERO,
                max_tokens_cap: None,
                permit: Box::new(()),
            });
        };
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            return Ok(Admitted {
                class: AdmissionClass::Fast,
                waited: Duration::ZERO,
                max_tokens_cap: None,
                permit: Box::new(permit),
            });
        }
        let start = Instant::now();
        match tokio::time::timeout(self.max_wait, slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Admitted {
                class: AdmissionClass::Queued,
                waited: start.elapsed(),
                max_tokens_cap: None,
                permit: Box::new(permit),
            }),
            Ok(Err(_closed)) => Err(Rejection::ShuttingDown),
            Err(_elapsed) => Err(Rejection::QueueTimeout { retry_after: Duration::from_secs(1) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> AdmissionRequest {
        AdmissionRequest {
            tenant_id: "t".into(),
            group: "g".into(),
            tenant_weight: 1,
            model: "m".into(),
            model_admission_weight: 1.0,
            estimated_tokens: 1,
            never_degrade: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn caps_and_releases_on_drop() {
        let limit = ConcurrencyLimit::new(Some(1), Duration::from_secs(5));
        let first = limit.admit(req()).await.expect("first");
        assert_eq!(first.class, AdmissionClass::Fast);
        // The second waits until the first is dropped.
        let limit = Arc::new(limit);
        let waiter = tokio::spawn({
            let limit = limit.clone();
            async move { limit.admit(req()).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished(), "second request must wait while the slot is held");
        drop(first);
        let second = waiter.await.expect("join").expect("second");
        assert_eq!(second.class, AdmissionClass::Queued);
        // A third times out while the second holds the slot.
        assert!(matches!(limit.admit(req()).await, Err(Rejection::QueueTimeout { .. })));
        drop(second);
        assert_eq!(limit.admit(req()).await.expect("again").class, AdmissionClass::Fast);
    }
}
