//! The model registry entry: how a public model name maps to an upstream.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::UnixMillis;

/// One registered model. `model_name` is what clients send; the request is forwarded
/// to `api_base` (or the gateway's default upstream) with `upstream_model` in its place.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Model {
    pub model_name: String,
    pub upstream_model: String,
    /// Base URL of the upstream (`http://host:port` or `…/v1`); `None` uses the default.
    pub api_base: Option<String>,
    /// Credential sent upstream. Serialized only by the stores, never by the admin API.
    #[serde(skip_serializing)]
    #[schema(ignore)]
    pub api_key: Option<SecretString>,
    pub input_cost_per_token: f64,
    pub output_cost_per_token: f64,
    pub context_window: Option<u32>,
    pub enabled: bool,
    /// Fairshare credit multiplier: a request to this model costs the tenant
    /// `admission_weight` times the credit of the same tokens on a weight-1 model.
    pub admission_weight: f64,
    /// The model's own cap on requests in flight (within the global pool).
    pub max_in_flight: Option<u32>,
    /// Labels for operators and for routing by tag (e.g. `fast`, `code`, `eu`), in the
    /// order given.
    #[serde(default)]
    pub tags: Vec<String>,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

/// The highest price of one token a model may have (in the registry's currency unit):
/// far above any real model's, low enough that a typo like `1e308` is refused.
pub const MAX_COST_PER_TOKEN: f64 = 1000.0;

/// The most one request may cost: finite, and within what budgets count in nanos.
pub const MAX_REQUEST_COST: f64 = 1e9;

impl Model {
    /// An enabled model named `name` (upstream the same name) with the registry's
    /// defaults: free, admission weight 1, no window, cap, base or key. For tests and tools.
    pub fn named(name: &str) -> Model {
        Model {
            model_name: name.into(),
            upstream_model: name.into(),
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
        }
    }

    /// Cost of a request in the registry's currency unit, in `[0, MAX_REQUEST_COST]`
    /// whatever the prices and counts (a price stored before they were bounded included).
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        let cost = input_tokens as f64 * self.input_cost_per_token + output_tokens as f64 * self.output_cost_per_token;
        bounded_cost(cost)
    }
}

/// `cost` within `[0, MAX_REQUEST_COST]`; NaN is 0.
pub fn bounded_cost(cost: f64) -> f64 {
    if cost.is_nan() { 0.0 } else { cost.clamp(0.0, MAX_REQUEST_COST) }
}

/// Checks a public model name: 1–128 printable ASCII characters without spaces
/// (model names such as `meta-llama/Llama-3.1-8B:free` must pass).
pub fn validate_model_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err("must be 1 to 128 characters".into());
    }
    if !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_are_finite_and_bounded() {
        let mut m: Model = serde_json::from_value(serde_json::json!({
            "model_name": "m", "upstream_model": "m", "api_base": null, "input_cost_per_token": 1e308,
            "output_cost_per_token": 0.002, "context_window": null, "enabled": true, "admission_weight": 1.0,
            "max_in_flight": null, "created_at": 0, "updated_at": 0
        }))
        .expect("model");
        assert_eq!(m.cost(10, 0), MAX_REQUEST_COST, "1e308 per token is not recorded as 0");
        m.input_cost_per_token = f64::NAN;
        assert_eq!(m.cost(10, 1), 0.0);
        m.input_cost_per_token = 0.001;
        assert!((m.cost(1000, 1000) - 3.0).abs() < 1e-9);
        assert_eq!(m.cost(u64::MAX, u64::MAX), MAX_REQUEST_COST);
        m.input_cost_per_token = -1.0;
        assert_eq!(m.cost(10, 0), 0.0);
    }

    #[test]
    fn model_names() {
        assert!(validate_model_name("meta-llama/Llama-3.1-8B:free").is_ok());
        assert!(validate_model_name("a b").is_err());
        assert!(validate_model_name("").is_err());
    }
}
