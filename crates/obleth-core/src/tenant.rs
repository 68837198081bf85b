//! Tenants: who is asking, with what weight, in which fairshare group, under which limits.

use serde::{Deserialize, Serialize};

use crate::UnixMillis;

/// Prefix of generated tenant ids, so that an id can never be mistaken for a name.
pub const TENANT_ID_PREFIX: &str = "ten_";

/// A tenant of the gateway: a team, product or customer sharing the inference pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tenant {
    /// Stable generated id (`ten_…`).
    pub id: String,
    /// Unique human name, also accepted wherever an id is.
    pub name: String,
    /// Fairshare weight (≥ 1): the tenant's share of a saturated pool is proportional to it.
    pub weight: u32,
    /// Fairshare group (hierarchical mode splits slots between groups first).
    pub group: String,
    /// Models this tenant may use; empty means every enabled model.
    pub allowed_models: Vec<String>,
    /// A disabled tenant's keys are refused with 403.
    pub disabled: bool,
    /// Never degraded by brownout (used by the scheduler).
    pub never_degrade: bool,
    /// Limits enforced by the budget layer; `None` means unlimited.
    pub quota: Quota,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

impl Tenant {
    /// An enabled tenant of weight 1 in `group`, without limits or allowlist. For tests
    /// and tools.
    pub fn named(id: &str, name: &str, group: &str) -> Tenant {
        Tenant {
            id: id.into(),
            name: name.into(),
            weight: 1,
            group: group.into(),
            allowed_models: vec![],
            disabled: false,
            never_degrade: false,
            quota: Quota::default(),
            created_at: 0,
            updated_at: 0,
        }
    }

    /// Whether this tenant may call `model` (by its public registry name).
    pub fn may_use(&self, model: &str) -> bool {
        self.allowed_models.is_empty() || self.allowed_models.iter().any(|m| m == model)
    }
}

/// A fairshare group: in hierarchical admission, slots are split between active
/// groups in proportion to their weights before tenants compete inside a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Group {
    pub name: String,
    pub weight: u32,
    /// Slots guaranteed to the group while it has requests waiting: a freed slot goes to
    /// it before the weighted competition as long as it holds fewer. Not held idle (other
    /// groups use them while it has nothing waiting). `None`: no reservation.
    #[serde(default)]
    pub reserved_slots: Option<u32>,
    /// Most requests the group may have in flight, even when slots are free. `None`: only
    /// the pool bounds it.
    #[serde(default)]
    pub max_slots: Option<u32>,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

/// Per-tenant limits. Every field is optional: `None` is "no limit".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Tokens per minute (input + output).
    #[serde(default)]
    pub tpm: Option<u64>,
    /// Requests per minute.
    #[serde(default)]
    pub rpm: Option<u64>,
    /// Requests in flight at once.
    #[serde(default)]
    pub max_in_flight: Option<u32>,
    /// Spend per calendar month (UTC), in the registry's currency unit.
    #[serde(default)]
    pub monthly_budget: Option<f64>,
    /// Spend over the tenant's lifetime.
    #[serde(default)]
    pub lifetime_budget: Option<f64>,
    /// While the shared budget store is unreachable, refuse this tenant's requests
    /// (503) instead of admitting them on the pod's local share of its spend budget.
    #[serde(default)]
    pub fail_closed: bool,
    /// MCP tool calls per minute (a token bucket of this capacity, refilled
    /// continuously). Enforced by each pod on its own: a cluster of n pods admits up to
    /// n times this.
    #[serde(default)]
    pub tool_calls_per_minute: Option<u64>,
    /// MCP tool calls in flight at once, across every MCP server. Per pod, like
    /// `tool_calls_per_minute`.
    #[serde(default)]
    pub tool_calls_in_flight: Option<u32>,
}

/// Checks a tenant or group name: 1–64 chars of `[a-z0-9._-]`, starting alphanumeric,
/// and not shaped like a generated id. Returns what is wrong, for the admin API.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("must be 1 to 64 characters".into());
    }
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')) {
        return Err("may contain only lowercase letters, digits, '.', '_' and '-'".into());
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("must start with a letter or digit".into());
    }
    if name.starts_with(TENANT_ID_PREFIX) {
        return Err(format!("must not start with '{TENANT_ID_PREFIX}' (reserved for ids)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("chatbot").is_ok());
        assert!(validate_name("api-batch.2").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("Chatbot").is_err());
        assert!(validate_name("-x").is_err());
        assert!(validate_name("ten_abc").is_err());
        assert!(validate_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn quotas_written_before_the_mcp_limits_still_parse() {
        let quota: Quota = serde_json::from_str(r#"{"rpm": 5, "max_in_flight": 2}"#).expect("an older quota");
        assert_eq!((quota.tool_calls_per_minute, quota.tool_calls_in_flight), (None, None));
        let quota: Quota =
            serde_json::from_str(r#"{"tool_calls_per_minute": 3, "tool_calls_in_flight": 1}"#).expect("the MCP limits");
        assert_eq!((quota.tool_calls_per_minute, quota.tool_calls_in_flight), (Some(3), Some(1)));
    }

    #[test]
    fn allowlist() {
        let mut t = Tenant::named("ten_1", "a", "default");
        assert!(t.may_use("anything"));
        t.allowed_models = vec!["m1".into()];
        assert!(t.may_use("m1"));
        assert!(!t.may_use("m2"));
    }
}
