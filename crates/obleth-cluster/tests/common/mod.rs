//! Shared by the cluster crate's tests.

use std::sync::Arc;

use obleth_core::{AdmissionRequest, Model, Quota, Tenant, TokenEstimate};

/// A small request of `tenant` (weight 1, default group, model `m`).
pub fn req(tenant: &str) -> AdmissionRequest {
    AdmissionRequest {
        tenant: Arc::new(Tenant {
            // No id: the scheduler knows the tenant by name only.
            id: String::new(),
            name: tenant.into(),
            weight: 1,
            group: "default".into(),
            allowed_models: vec![],
            disabled: false,
            never_degrade: false,
            quota: Quota::default(),
            created_at: 0,
            updated_at: 0,
        }),
        model: Arc::new(Model {
            model_name: "m".into(),
            upstream_model: "m".into(),
            api_base: None,
            api_key: None,
            input_cost_per_token: 0.0,
            output_cost_per_token: 0.0,
            context_window: None,
            enabled: true,
            admission_weight: 1.0,
            max_in_flight: None,
            tags: vec![],
            created_at: 0,
            updated_at: 0,
        }),
        estimate: TokenEstimate { input: 10, output: 10 },
    }
}
