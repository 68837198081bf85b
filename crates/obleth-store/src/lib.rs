//! The control-plane store: tenants, API keys, the model registry, and the MCP gateway's
//! servers, grants and tool pins ([`McpStore`]).
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
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

pub mod conformance;
mod guard;
mod mcp;
mod postgres;
mod retry;
mod rules;
mod schema;
mod sqlite;

pub use guard::{GuardConfig, StoreGuard, StoreHealth};
pub use mcp::{
    McpGrant, McpGrantFilter, McpGrants, McpServer, McpServerPatch, McpStore, McpToolPin, McpTransport, NewMcpGrant,
    NewMcpServer, PinVersion,
};
pub use postgres::PostgresStore;
pub use rules::validate_actor;
pub use schema::{Schema, SchemaStatus};
pub use sqlite::SqliteStore;

/// Opens the store named by `url`: SQLite for `sqlite:` URLs (`sqlite://cp.db`,
/// `sqlite::memory:`), Postgres for `postgres://` and `postgresql://`. Either applies
/// its pending migrations.
pub async fn connect(url: &str) -> Result<std::sync::Arc<dyn ControlPlaneStore>> {
    Ok(open(url, Schema::Migrate).await?.0)
}

/// Opens the store named by `url` (as [`connect`]) and migrates or checks its schema as
/// `schema` says.
pub async fn open(url: &str, schema: Schema) -> Result<(std::sync::Arc<dyn ControlPlaneStore>, SchemaStatus)> {
    if url.starts_with("sqlite:") {
        let (store, status) = SqliteStore::open(url, schema).await?;
        Ok((std::sync::Arc::new(store), status))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (store, status) = PostgresStore::open(url, schema).await?;
        Ok((std::sync::Arc::new(store), status))
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

/// How a store error answers on the admin API (the one error table of `obleth-core`).
impl From<StoreError> for obleth_core::ApiError {
    fn from(e: StoreError) -> Self {
        use obleth_core::{ApiError, ErrorCode};
        match &e {
            StoreError::Invalid { field, .. } => {
                ApiError::new(ErrorCode::InvalidValue, e.to_string()).with_param(*field)
            }
            StoreError::NotFound { .. } => ApiError::new(ErrorCode::NotFound, e.to_string()),
            StoreError::Conflict(_) => ApiError::new(ErrorCode::Conflict, e.to_string()),
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "admin request failed: store unavailable");
                ApiError::new(ErrorCode::StoreUnavailable, "The control-plane store is unavailable.")
            }
            StoreError::Backend(_) => {
                tracing::error!(error = %e, "admin request failed");
                ApiError::new(ErrorCode::StoreError, "The control-plane store failed.")
            }
        }
    }
}

pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> StoreError {
    StoreError::Invalid { field, message: message.into() }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A tenant to create. Defaults make `{"name": "x"}` enough.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
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

/// A fairshare group's settings, as `PUT /api/v1/groups/{name}` sets them: all at once
/// (an absent limit is no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupSettings {
    /// Fairshare weight (1 to 1000000).
    pub weight: u32,
    /// Slots guaranteed while the group has requests waiting (≥ 1, at most `max_slots`).
    #[serde(default)]
    pub reserved_slots: Option<u32>,
    /// Most requests the group may have in flight (≥ 1).
    #[serde(default)]
    pub max_slots: Option<u32>,
}

/// A model to register.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewModel {
    pub model_name: String,
    /// Defaults to `model_name`.
    pub upstream_model: Option<String>,
    pub api_base: Option<String>,
    /// Credential sent upstream; never shown again.
    #[schema(value_type = Option<String>)]
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
    /// Up to 32 tags of 1–64 characters `[a-z0-9._:/-]`, no repeats.
    #[serde(default)]
    pub tags: Vec<String>,
}

fn default_true() -> bool {
    true
}

fn default_admission_weight() -> f64 {
    1.0
}

/// A partial update of a model. For nullable fields, an explicit `null` clears the
/// value and an absent field keeps it (hence the nested `Option`).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelPatch {
    pub upstream_model: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub api_base: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub api_key: Option<Option<SecretString>>,
    pub input_cost_per_token: Option<f64>,
    pub output_cost_per_token: Option<f64>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub context_window: Option<Option<u32>>,
    pub enabled: Option<bool>,
    pub admission_weight: Option<f64>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub max_in_flight: Option<Option<u32>>,
    /// Replaces the tags (`[]` clears them).
    pub tags: Option<Vec<String>>,
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

/// Filters for paged tenant listings.
#[derive(Debug, Clone, Default)]
pub struct TenantFilter {
    /// Only tenants of this fairshare group.
    pub group: Option<String>,
    /// Only disabled (`true`) or only enabled (`false`) tenants.
    pub disabled: Option<bool>,
    /// Only tenants whose name contains this text (names are lowercase; so is the
    /// search).
    pub search: Option<String>,
}

/// Filters for paged model listings.
#[derive(Debug, Clone, Default)]
pub struct ModelFilter {
    /// Only enabled (`true`) or only disabled (`false`) models.
    pub enabled: Option<bool>,
    /// Only models carrying this tag.
    pub tag: Option<String>,
}

/// Page size when none is given.
pub const DEFAULT_PAGE_LIMIT: u32 = 100;
/// Largest page size accepted.
pub const MAX_PAGE_LIMIT: u32 = 1000;

/// Which page of a listing to return: at most `limit` items after `cursor` (the
/// `next_cursor` of the previous page; `None` for the first page). Cursors are opaque,
/// specific to one listing, and keyset-based: items added or removed between two pages
/// never make a page repeat or skip the items that stayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub cursor: Option<String>,
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest { limit: DEFAULT_PAGE_LIMIT, cursor: None }
    }
}

/// One page of a listing; `next_cursor` is set when more items follow.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A key rotation: the new key (generated by the caller, like [`ControlPlaneStore::insert_key`])
/// and how long the old one keeps working.
#[derive(Debug, Clone)]
pub struct KeyRotation {
    pub new_id: String,
    pub new_prefix: String,
    pub new_hash: KeyHash,
    /// The new key's name; `None` derives it from the old one (`"<name> (rotated)"`).
    pub new_name: Option<String>,
    /// The new key's own expiry.
    pub new_expires_at: Option<obleth_core::UnixMillis>,
    /// The time of the rotation.
    pub now: obleth_core::UnixMillis,
    /// The old key expires at `now + overlap_ms`, or earlier if it already would.
    pub overlap_ms: i64,
}

/// The outcome of a rotation: the old key as it now is (with its new expiry) and its
/// hash (for cache invalidation), and the new key.
#[derive(Debug, Clone, PartialEq)]
pub struct RotatedKey {
    pub old: ApiKey,
    /// The old key's expiry before the rotation.
    pub previous_expires_at: Option<obleth_core::UnixMillis>,
    pub old_hash: KeyHash,
    pub new: ApiKey,
}

/// An admin change to record. `before`/`after` are snapshots of the resource (`None`
/// when it did not exist before or no longer exists after) and must hold no secret.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEntry {
    pub at: obleth_core::UnixMillis,
    /// Who made the change (validated by [`validate_actor`]).
    pub actor: String,
    /// What was done, `<kind>.<verb>`: `tenant.create`, `key.rotate`, …
    pub action: String,
    /// The kind of resource: `tenant`, `key`, `model`, `group`.
    pub resource_kind: String,
    /// Its id (tenants, keys) or name (models, groups).
    pub resource_id: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// A recorded admin change. `id` grows with every entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: obleth_core::UnixMillis,
    pub actor: String,
    pub action: String,
    pub resource_kind: String,
    pub resource_id: String,
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
}

/// Filters for the audit trail, listed newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub resource_kind: Option<String>,
    pub resource_id: Option<String>,
    pub actor: Option<String>,
    /// Entries at or after this time (Unix ms).
    pub from: Option<obleth_core::UnixMillis>,
    /// Entries before this time (Unix ms, exclusive).
    pub to: Option<obleth_core::UnixMillis>,
    pub page: PageRequest,
}

/// The control plane's persistent state (the MCP gateway's part is [`McpStore`]).
#[async_trait]
pub trait ControlPlaneStore: McpStore + Send + Sync + 'static {
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

    /// Creates a fairshare group or replaces its settings.
    async fn put_group(&self, name: &str, settings: GroupSettings) -> Result<Group>;
    async fn get_group(&self, name: &str) -> Result<Group>;
    async fn list_groups(&self) -> Result<Vec<Group>>;
    async fn delete_group(&self, name: &str) -> Result<Group>;

    /// A page of tenants, ordered by name (bytewise).
    async fn list_tenants_page(&self, filter: TenantFilter, page: PageRequest) -> Result<Page<Tenant>>;
    /// A page of keys, ordered by creation time, then id.
    async fn list_keys_page(&self, filter: KeyFilter, page: PageRequest) -> Result<Page<ApiKey>>;
    /// A page of models, ordered by name (bytewise).
    async fn list_models_page(&self, filter: ModelFilter, page: PageRequest) -> Result<Page<Model>>;

    /// Rotates key `id` in one transaction: inserts the new key for the same tenant and
    /// sets the old key's expiry to `now + overlap_ms`, never later than an expiry it
    /// already had. The new key gets copies of the old one's MCP grants and, if the old
    /// one was restricted to its own grants, is restricted too (else the new key would
    /// reach every tool of its tenant). A revoked key cannot be rotated (conflict).
    async fn rotate_key(&self, id: &str, rotation: KeyRotation) -> Result<RotatedKey>;

    /// Records an admin change.
    async fn append_audit(&self, entry: NewAuditEntry) -> Result<AuditEntry>;
    /// The audit trail, newest first.
    async fn list_audit(&self, filter: AuditFilter) -> Result<Page<AuditEntry>>;
}
