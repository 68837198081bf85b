//! The control-plane store: tenants, API keys and the model registry.
//!
//! [`ControlPlaneStore`] is the one seam; [`SqliteStore`] is the embedded default and
//! [`PostgresStore`] the shared one for several replicas ([`connect`] picks by URL).
//! Every implementation must pass [`conformance::run`], which is what makes them
//! interchangeable. The data plane never calls the store per request: it reads through
//! the caches in `obleth-gateway`, and the admin API writes here and then announces the
//! change (see `obleth_core::change`).

use async_trait::async_trait;
use obleth_core::{ApiKey, Group, KeyHash, Model, Quota, Tenant};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

pub mod conformance;
mod postgres;
mod rules;
mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Opens the store named by `url`: SQLite for `sqlite:` URLs (`sqlite://cp.db`,
/// `sqlite::memory:`), Postgres for `postgres://` and `postgresql://`. Either applies
/// its pending migrations.
pub async fn connect(url: &str) -> Result<std::sync::Arc<dyn ControlPlaneStore>> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(PostgresStore::connect(url).await?))
    } else {
        // Name only the scheme: the rest of a URL may hold a password.
        let scheme = url
            .split_once(':')
            .map(|(s, _)| s)
            .filter(|s| s.len() <= 16 && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .unwrap_or("(none)");
        Err(invalid(
            "database.url",
            format!("unsupported scheme '{scheme}': use sqlite://<file>, sqlite::memory: or postgres://<host>/<db>"),
        ))
    }
}

/// Errors of the store. Each says what the admin API should answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A field has an invalid value (400); names the field.
    #[error("invalid {field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// The addressed row does not exist (404).
    #[error("{kind} '{id}' not found")]
    NotFound { kind: &'static str, id: String },
    /// A uniqueness or reference constraint failed (409).
    #[error("{0}")]
    Conflict(String),
    /// The database cannot be reached; retryable (503).
    #[error("control-plane store unavailable: {0}")]
    Unavailable(String),
    /// Anything else the database reported (500).
    #[error("control-plane store error: {0}")]
    Backend(String),
}

impl StoreError {
    pub(crate) fn not_found(kind: &'static str, id: &str) -> Self {
        StoreError::NotFound { kind, id: id.to_owned() }
    }
}

pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> StoreError {
    StoreError::Invalid { field, message: message.into() }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A tenant to create. Defaults make `{"name": "x"}` enough.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    pub name: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default = "default_group")]
    pub group: String,
    #[serde(default)]
    pub allowed_models: Vec<String>,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub never_degrade: bool,
    #[serde(default)]
    pub quota: Quota,
}

fn default_weight() -> u32 {
    1
}

/// The group a tenant joins when none is given.
pub const DEFAULT_GROUP: &str = "default";

fn default_group() -> String {
    DEFAULT_GROUP.to_owned()
}

/// A partial update of a tenant; absent fields are left as they are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantPatch {
    pub name: Option<String>,
    pub weight: Option<u32>,
    pub group: Option<String>,
    pub allowed_models: Option<Vec<String>>,
    pub disabled: Option<bool>,
    pub never_degrade: Option<bool>,
    pub quota: Option<Quota>,
}

/// A model to register.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewModel {
    pub model_name: String,
    /// Defaults to `model_name`.
    pub upstream_model: Option<String>,
    pub api_base: Option<String>,
    pub api_key: Option<SecretString>,
    #[serde(default)]
    pub input_cost_per_token: f64,
    #[serde(default)]
    pub output_cost_per_token: f64,
    pub context_window: Option<u32>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_admission_weight")]
    pub admission_weight: f64,
    pub max_in_flight: Option<u32>,
}

fn default_true() -> bool {
    true
}

fn default_admission_weight() -> f64 {
    1.0
}

/// A partial update of a model. For nullable fields, an explicit `null` clears the
/// value and an absent field keeps it (hence the nested `Option`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPatch {
    pub upstream_model: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub api_base: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub api_key: Option<Option<SecretString>>,
    pub input_cost_per_token: Option<f64>,
    pub output_cost_per_token: Option<f64>,
    #[serde(default, deserialize_with = "present")]
    pub context_window: Option<Option<u32>>,
    pub enabled: Option<bool>,
    pub admission_weight: Option<f64>,
    #[serde(default, deserialize_with = "present")]
    pub max_in_flight: Option<Option<u32>>,
}

/// Marks a field that was present in the JSON, even as `null`.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Filters for key listings.
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    pub tenant_id: Option<String>,
    /// Keys whose prefix starts with this.
    pub prefix: Option<String>,
    pub include_revoked: bool,
}

/// The control plane's persistent state.
#[async_trait]
pub trait ControlPlaneStore: Send + Sync + 'static {
    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;

    async fn create_tenant(&self, new: NewTenant) -> Result<Tenant>;
    /// Looks a tenant up by id (`ten_…`) or by name.
    async fn get_tenant(&self, id_or_name: &str) -> Result<Tenant>;
    async fn list_tenants(&self) -> Result<Vec<Tenant>>;
    async fn update_tenant(&self, id_or_name: &str, patch: TenantPatch) -> Result<Tenant>;
    /// Deletes a tenant and its keys; returns the tenant and the hashes of its keys
    /// so that caches can drop them.
    async fn delete_tenant(&self, id_or_name: &str) -> Result<(Tenant, Vec<KeyHash>)>;

    /// Stores a key whose secret was generated by the caller (only the hash is kept).
    async fn insert_key(&self, key: &ApiKey, hash: KeyHash) -> Result<()>;
    async fn list_keys(&self, filter: KeyFilter) -> Result<Vec<ApiKey>>;
    /// Revokes a key (idempotent); returns it with its hash.
    async fn revoke_key(&self, id: &str) -> Result<(ApiKey, KeyHash)>;
    /// Finds the key with this hash, revoked or not.
    async fn lookup_key(&self, hash: &KeyHash) -> Result<Option<ApiKey>>;

    async fn create_model(&self, new: NewModel) -> Result<Model>;
    async fn get_model(&self, name: &str) -> Result<Model>;
    async fn list_models(&self) -> Result<Vec<Model>>;
    async fn update_model(&self, name: &str, patch: ModelPatch) -> Result<Model>;
    async fn delete_model(&self, name: &str) -> Result<Model>;

    /// Creates or updates a fairshare group.
    async fn put_group(&self, name: &str, weight: u32) -> Result<Group>;
    async fn get_group(&self, name: &str) -> Result<Group>;
    async fn list_groups(&self) -> Result<Vec<Group>>;
    async fn delete_group(&self, name: &str) -> Result<Group>;
}
