//! Validation and patch application shared by every store implementation, so that
//! SQLite and Postgres accept and reject exactly the same input.

use obleth_core::{Model, Tenant, model::validate_model_name, now_millis, tenant::validate_name};
use secrecy::ExposeSecret;

use crate::{ModelPatch, NewModel, NewTenant, Result, TenantPatch, invalid};

/// Largest accepted tenant weight: keeps weighted arithmetic far from overflow.
pub const MAX_WEIGHT: u32 = 1_000_000;

pub(crate) fn new_tenant(new: NewTenant) -> Result<Tenant> {
    let now = now_millis();
    let tenant = Tenant {
        id: obleth_core::new_id(obleth_core::tenant::TENANT_ID_PREFIX),
        name: new.name,
        weight: new.weight,
        group: new.group,
        allowed_models: new.allowed_models,
        disabled: new.disabled,
        never_degrade: new.never_degrade,
        quota: new.quota,
        created_at: now,
        updated_at: now,
    };
    check_tenant(&tenant)?;
    Ok(tenant)
}

pub(crate) fn patch_tenant(mut t: Tenant, p: TenantPatch) -> Result<Tenant> {
    if let Some(v) = p.name {
        t.name = v;
    }
    if let Some(v) = p.weight {
        t.weight = v;
    }
    if let Some(v) = p.group {
        t.group = v;
    }
    if let Some(v) = p.allowed_models {
        t.allowed_models = v;
    }
    if let Some(v) = p.disabled {
        t.disabled = v;
    }
    if let Some(v) = p.never_degrade {
        t.never_degrade = v;
    }
    if let Some(v) = p.quota {
        t.quota = v;
    }
    t.updated_at = now_millis().max(t.updated_at);
    check_tenant(&t)?;
    Ok(t)
}

fn check_tenant(t: &Tenant) -> Result<()> {
    validate_name(&t.name).map_err(|m| invalid("name", m))?;
    validate_name(&t.group).map_err(|m| invalid("group", m))?;
    if t.weight == 0 || t.weight > MAX_WEIGHT {
        return Err(invalid("weight", format!("must be between 1 and {MAX_WEIGHT}")));
    }
    for m in &t.allowed_models {
        validate_model_name(m).map_err(|e| invalid("allowed_models", format!("'{m}': {e}")))?;
    }
    let q = &t.quota;
    for (field, v) in [("quota.monthly_budget", q.monthly_budget), ("quota.lifetime_budget", q.lifetime_budget)] {
        if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
            return Err(invalid(field, "must be a non-negative number"));
        }
    }
    if q.max_in_flight == Some(0) {
        return Err(invalid("quota.max_in_flight", "must be at least 1 (omit it for no limit)"));
    }
    Ok(())
}

pub(crate) fn new_model(new: NewModel) -> Result<Model> {
    let now = now_millis();
    let model = Model {
        upstream_model: new.upstream_model.unwrap_or_else(|| new.model_name.clone()),
        model_name: new.model_name,
        api_base: new.api_base,
        api_key: new.api_key,
        input_cost_per_token: new.input_cost_per_token,
        output_cost_per_token: new.output_cost_per_token,
        context_window: new.context_window,
        enabled: new.enabled,
        admission_weight: new.admission_weight,
        max_in_flight: new.max_in_flight,
        created_at: now,
        updated_at: now,
    };
    check_model(&model)?;
    Ok(model)
}

pub(crate) fn patch_model(mut m: Model, p: ModelPatch) -> Result<Model> {
    if let Some(v) = p.upstream_model {
        m.upstream_model = v;
    }
    if let Some(v) = p.api_base {
        m.api_base = v;
    }
    if let Some(v) = p.api_key {
        m.api_key = v;
    }
    if let Some(v) = p.input_cost_per_token {
        m.input_cost_per_token = v;
    }
    if let Some(v) = p.output_cost_per_token {
        m.output_cost_per_token = v;
    }
    if let Some(v) = p.context_window {
        m.context_window = v;
    }
    if let Some(v) = p.enabled {
        m.enabled = v;
    }
    if let Some(v) = p.admission_weight {
        m.admission_weight = v;
    }
    if let Some(v) = p.max_in_flight {
        m.max_in_flight = v;
    }
    m.updated_at = now_millis().max(m.updated_at);
    check_model(&m)?;
    Ok(m)
}

fn check_model(m: &Model) -> Result<()> {
    validate_model_name(&m.model_name).map_err(|e| invalid("model_name", e))?;
    validate_model_name(&m.upstream_model).map_err(|e| invalid("upstream_model", e))?;
    if let Some(base) = &m.api_base {
        if !(base.starts_with("http://") || base.starts_with("https://")) || base.len() < 10 {
            return Err(invalid("api_base", "must be an http:// or https:// URL"));
        }
        if base.parse::<http::Uri>().is_err() {
            return Err(invalid("api_base", "is not a valid URL"));
        }
    }
    if m.api_key.as_ref().is_some_and(|k| k.expose_secret().is_empty()) {
        return Err(invalid("api_key", "must not be empty (use null to clear it)"));
    }
    for (field, v) in
        [("input_cost_per_token", m.input_cost_per_token), ("output_cost_per_token", m.output_cost_per_token)]
    {
        if !v.is_finite() || v < 0.0 {
            return Err(invalid(field, "must be a non-negative number"));
        }
    }
    if !m.admission_weight.is_finite() || m.admission_weight <= 0.0 || m.admission_weight > 1000.0 {
        return Err(invalid("admission_weight", "must be greater than 0 and at most 1000"));
    }
    if m.max_in_flight == Some(0) {
        return Err(invalid("max_in_flight", "must be at least 1 (or null for no model cap)"));
    }
    if m.context_window == Some(0) {
        return Err(invalid("context_window", "must be positive (or null)"));
    }
    Ok(())
}

pub(crate) fn check_group(name: &str, weight: u32) -> Result<()> {
    validate_name(name).map_err(|m| invalid("name", m))?;
    if weight == 0 || weight > MAX_WEIGHT {
        return Err(invalid("weight", format!("must be between 1 and {MAX_WEIGHT}")));
    }
    Ok(())
}
