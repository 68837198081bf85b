//! Shared by the cluster crate's tests.

use std::sync::Arc;

use obleth_core::{AdmissionRequest, Model, Tenant, TokenEstimate};

/// A small request of `tenant` (weight 1, default group, model `m`).
pub fn req(tenant: &str) -> AdmissionRequest {
    AdmissionRequest {
        // No id: the scheduler knows the tenant by name only.
        tenant: Arc::new(Tenant::named("", tenant, "default")),
        model: Arc::new(Model::named("m")),
        estimate: TokenEstimate { input: 10, output: 10 },
    }
}
