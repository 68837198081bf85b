//! The behavioural suite on the in-process store.

use std::sync::Arc;

use obleth_budget::{ManualClock, MemoryBudget, conformance};

#[tokio::test]
async fn memory_store_passes_the_suite() {
    let clock = Arc::new(ManualClock::new(conformance::START));
    let store = MemoryBudget::new(clock.clone(), conformance::TTL);
    conformance::run(&store, &clock).await;
}
