//! Shared by the cluster crate's tests.

use obleth_core::AdmissionRequest;

/// A small request of `tenant` (weight 1, default group, model `m`).
pub fn req(tenant: &str) -> AdmissionRequest {
    AdmissionRequest {
        tenant: tenant.into(),
        tenant_id: String::new(),
        group: "default".into(),
        tenant_weight: 1,
        tenant_max_in_flight: None,
        never_degrade: false,
        model: "m".into(),
        model_admission_weight: 1.0,
        model_max_in_flight: None,
        estimated_input_tokens: 10,
        estimated_output_tokens: 10,
    }
}
