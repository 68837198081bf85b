//! The shared control-plane store: Postgres, for several gateway replicas behind one
//! database. Same contract as [`crate::SqliteStore`] (see [`crate::conformance`]).
//!
//! Differences that only show under concurrency, all in the safer direction: read-modify-
//! write updates run in a transaction holding the row lock (no lost updates between
//! replicas), deleting a tenant locks it first (a key inserted concurrently is either
//! reported or refused), and revocation is a single statement.
//!
//! Lock order: a transaction that locks a tenant and some of its keys locks the tenant
//! first (a delete locks it `FOR UPDATE`, a rotation `FOR KEY SHARE`, the lock a key's
//! foreign key takes anyway), so a delete and a rotation of the same tenant wait for
//! each other instead of deadlocking. Deadlocks and serialization failures that still
//! happen are run again by [`retry`], like every write.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use obleth_core::{ApiKey, Group, KeyHash, Model, Quota, Tenant, now_millis, tenant::TENANT_ID_PREFIX};
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgExecutor, PgPool, Row};

use crate::retry::{Failure, retry};
use crate::rules::{Arg, MODEL_CURSOR, TENANT_CURSOR};
use crate::schema::{self, Schema, SchemaStatus};
use crate::{
    AuditEntry, AuditFilter, ControlPlaneStore, GroupSettings, KeyFilter, KeyRotation, ModelFilter, ModelPatch,
    NewAuditEntry, NewModel, NewTenant, Page, PageRequest, Result, RotatedKey, StoreError, TenantFilter, TenantPatch,
    rules,
};

mod mcp;

fn migrator() -> sqlx::migrate::Migrator {
    schema::lenient(sqlx::migrate!("./migrations/postgres"))
}

/// Connections in the pool: admin traffic is light and the data plane reads through caches.
const MAX_CONNECTIONS: u32 = 8;
/// Bounds both opening a connection and waiting for a free one, so that an unreachable
/// server is reported as unavailable within seconds instead of hanging the caller.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

const TENANT_COLUMNS: &str = "id, name, weight, group_name, allowed_models::text AS allowed_models, disabled,
    never_degrade, quota_tpm, quota_rpm, quota_max_in_flight, quota_monthly_budget, quota_lifetime_budget,
    quota_fail_closed, quota_tool_calls_per_minute, quota_tool_calls_in_flight, created_at, updated_at";
const KEY_COLUMNS: &str = "id, tenant_id, name, prefix, key_hash, created_at, expires_at, revoked_at";
const MODEL_COLUMNS: &str = "model_name, upstream_model, api_base, api_key, input_cost_per_token,
    output_cost_per_token, context_window, enabled, admission_weight, max_in_flight, tags::text AS tags,
    created_at, updated_at";
const GROUP_COLUMNS: &str = "name, weight, reserved_slots, max_slots, created_at, updated_at";
const AUDIT_COLUMNS: &str =
    "id, at, actor, action, resource_kind, resource_id, before::text AS before, after::text AS after";

/// The Postgres-backed store.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://` or `postgresql://`, libpq-style parameters such
    /// as `?sslmode=` accepted) and applies pending migrations. Several replicas may
    /// start at once: the migrator serialises them with an advisory lock.
    pub async fn connect(url: &str) -> Result<Self> {
        Ok(Self::open(url, Schema::Migrate).await?.0)
    }

    /// Connects to `url` and migrates or checks its schema as `schema` says.
    pub async fn open(url: &str, schema: Schema) -> Result<(Self, SchemaStatus)> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(crate::invalid("database.url", "must start with postgres:// or postgresql://"));
        }
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| crate::invalid("database.url", e.to_string()))?
            .application_name("obleth");
        // Never echo the URL: it may carry a password.
        let target = format!("{}:{}/{}", options.get_host(), options.get_port(), options.get_database().unwrap_or("-"));
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| match db_err(e).error {
                StoreError::Unavailable(m) => {
                    StoreError::Unavailable(format!("cannot connect to Postgres at {target}: {m}"))
                }
                // E.g. a refused login or a missing database.
                StoreError::Backend(m) => StoreError::Backend(format!("connecting to Postgres at {target}: {m}")),
                other => other,
            })?;
        let migrator = migrator();
        let before = applied(&pool).await?;
        let applied_now = match schema {
            Schema::Migrate => {
                migrator.run(&pool).await.map_err(|e| match e {
                    sqlx::migrate::MigrateError::Execute(e) => match db_err(e).error {
                        StoreError::Backend(m) => StoreError::Backend(format!("migration failed: {m}")),
                        other => other,
                    },
                    other => StoreError::Backend(format!("migration failed: {other}")),
                })?;
                schema::newly_applied(before.as_deref(), applied(&pool).await?.as_deref())
            }
            Schema::Require => {
                schema::check(&migrator, before.as_deref())?;
                Vec::new()
            }
        };
        Ok((PostgresStore { pool }, SchemaStatus { latest: schema::latest(&migrator), applied_now }))
    }

    /// Closes the pool and waits for its connections to end.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The migrations applied to the database; `None` before the first.
async fn applied(pool: &PgPool) -> Result<Option<Vec<schema::Applied>>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await
        .map_err(|e| db_err(e).error)?;
    if !exists {
        return Ok(None);
    }
    let rows = sqlx::query_as("SELECT version, checksum, success FROM _sqlx_migrations").fetch_all(pool).await;
    Ok(Some(rows.map_err(|e| db_err(e).error)?))
}

/// Reads a tenant by id or name; `lock` takes the row lock (inside a transaction).
async fn fetch_tenant<'e>(exec: impl PgExecutor<'e>, id_or_name: &str, lock: bool) -> Result<Tenant, Failure> {
    let column = if id_or_name.starts_with(TENANT_ID_PREFIX) { "id" } else { "name" };
    let lock = if lock { " FOR UPDATE" } else { "" };
    Ok(sqlx::query(&format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE {column} = $1{lock}"))
        .bind(id_or_name)
        .fetch_optional(exec)
        .await
        .map_err(db_err)?
        .map(|r| tenant_from_row(&r))
        .transpose()?
        .ok_or_else(|| StoreError::not_found("tenant", id_or_name))?)
}

async fn write_tenant<'e>(exec: impl PgExecutor<'e>, t: &Tenant, insert: bool) -> Result<(), Failure> {
    let sql = if insert {
        "INSERT INTO tenants (name, weight, group_name, allowed_models, disabled, never_degrade,
            quota_tpm, quota_rpm, quota_max_in_flight, quota_monthly_budget, quota_lifetime_budget,
            quota_fail_closed, quota_tool_calls_per_minute, quota_tool_calls_in_flight, created_at, updated_at, id)
         VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
    } else {
        "UPDATE tenants SET name = $1, weight = $2, group_name = $3, allowed_models = $4::jsonb, disabled = $5,
            never_degrade = $6, quota_tpm = $7, quota_rpm = $8, quota_max_in_flight = $9,
            quota_monthly_budget = $10, quota_lifetime_budget = $11, quota_fail_closed = $12,
            quota_tool_calls_per_minute = $13, quota_tool_calls_in_flight = $14, created_at = $15, updated_at = $16
         WHERE id = $17"
    };
    let allowed = serde_json::to_string(&t.allowed_models).map_err(|e| StoreError::Backend(e.to_string()))?;
    sqlx::query(sql)
        .bind(&t.name)
        // The rules cap weights far below i32::MAX.
        .bind(i32::try_from(t.weight).map_err(|_| Failure::from(crate::invalid("weight", "out of range")))?)
        .bind(&t.group)
        .bind(allowed)
        .bind(t.disabled)
        .bind(t.never_degrade)
        // `as i64` like the SQLite store, so both keep the same values.
        .bind(t.quota.tpm.map(|v| v as i64))
        .bind(t.quota.rpm.map(|v| v as i64))
        .bind(t.quota.max_in_flight.map(i64::from))
        .bind(t.quota.monthly_budget)
        .bind(t.quota.lifetime_budget)
        .bind(t.quota.fail_closed)
        .bind(t.quota.tool_calls_per_minute.map(|v| v as i64))
        .bind(t.quota.tool_calls_in_flight.map(i64::from))
        .bind(t.created_at)
        .bind(t.updated_at)
        .bind(&t.id)
        .execute(exec)
        .await
        .map_err(|e| conflict_or(e, format!("a tenant named '{}' already exists", t.name)))?;
    Ok(())
}

async fn fetch_model<'e>(exec: impl PgExecutor<'e>, name: &str, lock: bool) -> Result<Model, Failure> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    Ok(sqlx::query(&format!("SELECT {MODEL_COLUMNS} FROM models WHERE model_name = $1{lock}"))
        .bind(name)
        .fetch_optional(exec)
        .await
        .map_err(db_err)?
        .map(|r| model_from_row(&r))
        .transpose()?
        .ok_or_else(|| StoreError::not_found("model", name))?)
}

async fn write_model<'e>(exec: impl PgExecutor<'e>, m: &Model, insert: bool) -> Result<(), Failure> {
    let sql = if insert {
        "INSERT INTO models (upstream_model, api_base, api_key, input_cost_per_token,
            output_cost_per_token, context_window, enabled, admission_weight, max_in_flight,
            created_at, updated_at, model_name, tags)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb)"
    } else {
        "UPDATE models SET upstream_model = $1, api_base = $2, api_key = $3, input_cost_per_token = $4,
            output_cost_per_token = $5, context_window = $6, enabled = $7, admission_weight = $8,
            max_in_flight = $9, created_at = $10, updated_at = $11, tags = $13::jsonb
         WHERE model_name = $12"
    };
    let api_key = m.api_key.as_ref().map(|k| k.expose_secret().to_owned());
    // Postgres text cannot hold NUL (SQLite can); refuse it as input rather than fail as a 500.
    if api_key.as_ref().is_some_and(|k| k.contains('\0')) {
        return Err(crate::invalid("api_key", "must not contain NUL characters").into());
    }
    sqlx::query(sql)
        .bind(&m.upstream_model)
        .bind(&m.api_base)
        .bind(api_key)
        .bind(m.input_cost_per_token)
        .bind(m.output_cost_per_token)
        .bind(m.context_window.map(i64::from))
        .bind(m.enabled)
        .bind(m.admission_weight)
        .bind(m.max_in_flight.map(i64::from))
        .bind(m.created_at)
        .bind(m.updated_at)
        .bind(&m.model_name)
        .bind(serde_json::to_string(&m.tags).map_err(|e| StoreError::Backend(e.to_string()))?)
        .execute(exec)
        .await
        .map_err(|e| conflict_or(e, format!("model '{}' already exists", m.model_name)))?;
    Ok(())
}

#[async_trait]
impl ControlPlaneStore for PostgresStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db_err)?;
        Ok(())
    }

    async fn create_tenant(&self, new: NewTenant) -> Result<Tenant> {
        let tenant = rules::new_tenant(new)?;
        let tenant = &tenant;
        retry("create_tenant", move || write_tenant(&self.pool, tenant, true)).await?;
        Ok(tenant.clone())
    }

    async fn get_tenant(&self, id_or_name: &str) -> Result<Tenant> {
        Ok(fetch_tenant(&self.pool, id_or_name, false).await?)
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        sqlx::query(&format!("SELECT {TENANT_COLUMNS} FROM tenants ORDER BY name"))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?
            .iter()
            .map(tenant_from_row)
            .collect()
    }

    async fn update_tenant(&self, id_or_name: &str, patch: TenantPatch) -> Result<Tenant> {
        let patch = &patch;
        retry("update_tenant", move || async move {
            let mut tx = self.pool.begin().await.map_err(db_err)?;
            let current = fetch_tenant(&mut *tx, id_or_name, true).await?;
            let updated = rules::patch_tenant(current, patch.clone())?;
            write_tenant(&mut *tx, &updated, false).await?;
            tx.commit().await.map_err(db_err)?;
            Ok(updated)
        })
        .await
    }

    async fn delete_tenant(&self, id_or_name: &str) -> Result<(Tenant, Vec<KeyHash>)> {
        retry("delete_tenant", move || async move {
            let mut tx = self.pool.begin().await.map_err(db_err)?;
            // The row lock conflicts with the key lock an INSERT INTO api_keys takes on its
            // tenant, so no key can slip in between collecting the hashes and the delete.
            let tenant = fetch_tenant(&mut *tx, id_or_name, true).await?;
            let hashes: Vec<String> =
                sqlx::query_scalar("DELETE FROM api_keys WHERE tenant_id = $1 RETURNING key_hash")
                    .bind(&tenant.id)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db_err)?;
            sqlx::query("DELETE FROM tenants WHERE id = $1")
                .bind(&tenant.id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            tx.commit().await.map_err(db_err)?;
            Ok((tenant, hashes.iter().filter_map(|h| KeyHash::from_hex(h)).collect()))
        })
        .await
    }

    async fn insert_key(&self, key: &ApiKey, hash: KeyHash) -> Result<()> {
        if key.name.as_ref().is_some_and(|n| n.contains('\0')) {
            return Err(crate::invalid("name", "must not contain NUL characters"));
        }
        retry("insert_key", move || async move {
            sqlx::query(
                "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, created_at, expires_at, revoked_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&key.id)
            .bind(&key.tenant_id)
            .bind(&key.name)
            .bind(&key.prefix)
            .bind(hash.to_hex())
            .bind(key.created_at)
            .bind(key.expires_at)
            .bind(key.revoked_at)
            .execute(&self.pool)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
                    StoreError::not_found("tenant", &key.tenant_id).into()
                }
                _ => conflict_or(e, "key already exists".into()),
            })?;
            Ok(())
        })
        .await
    }

    async fn list_keys(&self, filter: KeyFilter) -> Result<Vec<ApiKey>> {
        let mut q = key_query(&filter);
        q.sql.push_str(" ORDER BY created_at, id");
        q.fetch_all(&self.pool).await?.iter().map(key_from_row).collect()
    }

    async fn revoke_key(&self, id: &str) -> Result<(ApiKey, KeyHash)> {
        // COALESCE keeps the first revocation time: revoking again changes nothing.
        let now = now_millis();
        let row = retry("revoke_key", move || async move {
            sqlx::query(&format!(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 RETURNING {KEY_COLUMNS}"
            ))
            .bind(now)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)
        })
        .await?
        .ok_or_else(|| StoreError::not_found("key", id))?;
        let hash: String = row.try_get("key_hash").map_err(db_err)?;
        let hash = KeyHash::from_hex(&hash).ok_or_else(|| StoreError::Backend("corrupt key hash".into()))?;
        Ok((key_from_row(&row)?, hash))
    }

    async fn lookup_key(&self, hash: &KeyHash) -> Result<Option<ApiKey>> {
        sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1"))
            .bind(hash.to_hex())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(key_from_row)
            .transpose()
    }

    async fn create_model(&self, new: NewModel) -> Result<Model> {
        let model = rules::new_model(new)?;
        let model = &model;
        retry("create_model", move || write_model(&self.pool, model, true)).await?;
        Ok(model.clone())
    }

    async fn get_model(&self, name: &str) -> Result<Model> {
        Ok(fetch_model(&self.pool, name, false).await?)
    }

    async fn list_models(&self) -> Result<Vec<Model>> {
        sqlx::query(&format!("SELECT {MODEL_COLUMNS} FROM models ORDER BY model_name"))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?
            .iter()
            .map(model_from_row)
            .collect()
    }

    async fn update_model(&self, name: &str, patch: ModelPatch) -> Result<Model> {
        let patch = &patch;
        retry("update_model", move || async move {
            let mut tx = self.pool.begin().await.map_err(db_err)?;
            let current = fetch_model(&mut *tx, name, true).await?;
            let updated = rules::patch_model(current, patch.clone())?;
            write_model(&mut *tx, &updated, false).await?;
            tx.commit().await.map_err(db_err)?;
            Ok(updated)
        })
        .await
    }

    async fn delete_model(&self, name: &str) -> Result<Model> {
        retry("delete_model", move || async move {
            sqlx::query(&format!("DELETE FROM models WHERE model_name = $1 RETURNING {MODEL_COLUMNS}"))
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)
        })
        .await?
        .map(|r| model_from_row(&r))
        .transpose()?
        .ok_or_else(|| StoreError::not_found("model", name))
    }

    async fn put_group(&self, name: &str, settings: GroupSettings) -> Result<Group> {
        rules::check_group(name, &settings)?;
        let now = now_millis();
        let int = |field: &'static str, v: u32| i32::try_from(v).map_err(|_| crate::invalid(field, "out of range"));
        let weight = int("weight", settings.weight)?;
        let reserved = settings.reserved_slots.map(|v| int("reserved_slots", v)).transpose()?;
        let max = settings.max_slots.map(|v| int("max_slots", v)).transpose()?;
        let row = retry("put_group", move || async move {
            sqlx::query(&format!(
                "INSERT INTO groups (name, weight, reserved_slots, max_slots, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $5)
                 ON CONFLICT (name) DO UPDATE SET weight = EXCLUDED.weight, reserved_slots = EXCLUDED.reserved_slots,
                 max_slots = EXCLUDED.max_slots, updated_at = EXCLUDED.updated_at
                 RETURNING {GROUP_COLUMNS}"
            ))
            .bind(name)
            .bind(weight)
            .bind(reserved)
            .bind(max)
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)
        })
        .await?;
        group_from_row(&row)
    }

    async fn get_group(&self, name: &str) -> Result<Group> {
        sqlx::query(&format!("SELECT {GROUP_COLUMNS} FROM groups WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .map(|r| group_from_row(&r))
            .transpose()?
            .ok_or_else(|| StoreError::not_found("group", name))
    }

    async fn list_groups(&self) -> Result<Vec<Group>> {
        sqlx::query(&format!("SELECT {GROUP_COLUMNS} FROM groups ORDER BY name"))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?
            .iter()
            .map(group_from_row)
            .collect()
    }

    async fn delete_group(&self, name: &str) -> Result<Group> {
        retry("delete_group", move || async move {
            sqlx::query(&format!("DELETE FROM groups WHERE name = $1 RETURNING {GROUP_COLUMNS}"))
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)
        })
        .await?
        .map(|r| group_from_row(&r))
        .transpose()?
        .ok_or_else(|| StoreError::not_found("group", name))
    }

    async fn list_tenants_page(&self, filter: TenantFilter, page: PageRequest) -> Result<Page<Tenant>> {
        let after = rules::name_after(TENANT_CURSOR, &page)?;
        let mut q = Sql::new(format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE TRUE"));
        if let Some(g) = filter.group {
            q.and("group_name = ", Arg::Text(g));
        }
        if let Some(d) = filter.disabled {
            q.and("disabled = ", Arg::Bool(d));
        }
        if let Some(text) = filter.search {
            // strpos, not LIKE: `_` and `%` in the search are plain characters.
            let text = q.arg(Arg::Text(text.to_lowercase()));
            q.sql.push_str(&format!(" AND strpos(name, {text}) > 0"));
        }
        if let Some(a) = after {
            q.and("name > ", Arg::Text(a));
        }
        q.order_limit("name", page.limit);
        let items = q.fetch_all(&self.pool).await?.iter().map(tenant_from_row).collect::<Result<Vec<_>>>()?;
        Ok(rules::finish_page(items, page.limit, |t| rules::name_cursor(TENANT_CURSOR, &t.name)))
    }

    async fn list_keys_page(&self, filter: KeyFilter, page: PageRequest) -> Result<Page<ApiKey>> {
        let after = rules::key_after(&page)?;
        let mut q = key_query(&filter);
        if let Some((at, id)) = after {
            let at = q.arg(Arg::Int(at));
            let id = q.arg(Arg::Text(id));
            q.sql.push_str(&format!(" AND (created_at > {at} OR (created_at = {at} AND id > {id}))"));
        }
        q.order_limit("created_at, id", page.limit);
        let items = q.fetch_all(&self.pool).await?.iter().map(key_from_row).collect::<Result<Vec<_>>>()?;
        Ok(rules::finish_page(items, page.limit, rules::key_cursor))
    }

    async fn list_models_page(&self, filter: ModelFilter, page: PageRequest) -> Result<Page<Model>> {
        let after = rules::name_after(MODEL_CURSOR, &page)?;
        let mut q = Sql::new(format!("SELECT {MODEL_COLUMNS} FROM models WHERE TRUE"));
        if let Some(e) = filter.enabled {
            q.and("enabled = ", Arg::Bool(e));
        }
        if let Some(t) = filter.tag {
            // jsonb `?`: the array holds this string.
            q.and("tags ? ", Arg::Text(t));
        }
        if let Some(a) = after {
            q.and("model_name > ", Arg::Text(a));
        }
        q.order_limit("model_name", page.limit);
        let items = q.fetch_all(&self.pool).await?.iter().map(model_from_row).collect::<Result<Vec<_>>>()?;
        Ok(rules::finish_page(items, page.limit, |m| rules::name_cursor(MODEL_CURSOR, &m.model_name)))
    }

    async fn rotate_key(&self, id: &str, rotation: KeyRotation) -> Result<RotatedKey> {
        rules::check_rotation(&rotation)?;
        let rotation = &rotation;
        retry("rotate_key", move || async move {
            let mut tx = self.pool.begin().await.map_err(db_err)?;
            // The tenant first, as a delete takes it (see the module doc): with the key's row
            // locked first, a delete of its tenant holding the tenant's row and waiting for the
            // key's would deadlock with the new key's foreign-key check on the tenant. A key
            // never changes tenant, so reading it unlocked to find the tenant is enough.
            let tenant_id: Option<String> = sqlx::query_scalar("SELECT tenant_id FROM api_keys WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
            let tenant_id = tenant_id.ok_or_else(|| StoreError::not_found("key", id))?;
            // A tenant deleted meanwhile took its keys with it.
            sqlx::query("SELECT 1 FROM tenants WHERE id = $1 FOR KEY SHARE")
                .bind(&tenant_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?
                .ok_or_else(|| StoreError::not_found("key", id))?;
            // The key's row lock is held until the new key is in.
            let row = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1 FOR UPDATE"))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?
                .ok_or_else(|| StoreError::not_found("key", id))?;
            let mut old = key_from_row(&row)?;
            let old_hash: String = row.try_get("key_hash").map_err(db_err)?;
            let old_hash =
                KeyHash::from_hex(&old_hash).ok_or_else(|| StoreError::Backend("corrupt key hash".into()))?;
            let previous_expires_at = old.expires_at;
            old.expires_at = Some(rules::rotated_expiry(&old, rotation)?);
            sqlx::query("UPDATE api_keys SET expires_at = $1 WHERE id = $2")
                .bind(old.expires_at)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            let new = rules::rotated_key(&old, rotation);
            if new.name.as_ref().is_some_and(|n| n.contains('\0')) {
                return Err(crate::invalid("name", "must not contain NUL characters").into());
            }
            sqlx::query(
                "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, created_at, expires_at, revoked_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&new.id)
            .bind(&new.tenant_id)
            .bind(&new.name)
            .bind(&new.prefix)
            .bind(rotation.new_hash.to_hex())
            .bind(new.created_at)
            .bind(new.expires_at)
            .bind(new.revoked_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_or(e, "key already exists".into()))?;
            mcp::copy_key_grants(&mut tx, id, &new.id, rotation.now).await?;
            tx.commit().await.map_err(db_err)?;
            Ok(RotatedKey { old, previous_expires_at, old_hash, new })
        })
        .await
    }

    async fn append_audit(&self, entry: NewAuditEntry) -> Result<AuditEntry> {
        rules::check_audit(&entry)?;
        let json = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
        let (before, after) = (json(&entry.before), json(&entry.after));
        let (entry_ref, before, after) = (&entry, &before, &after);
        let id: i64 = retry("append_audit", move || async move {
            sqlx::query_scalar(
                "INSERT INTO audit_log (at, actor, action, resource_kind, resource_id, before, after)
                 VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb) RETURNING id",
            )
            .bind(entry_ref.at)
            .bind(&entry_ref.actor)
            .bind(&entry_ref.action)
            .bind(&entry_ref.resource_kind)
            .bind(&entry_ref.resource_id)
            .bind(before)
            .bind(after)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)
        })
        .await?;
        Ok(AuditEntry {
            id,
            at: entry.at,
            actor: entry.actor,
            action: entry.action,
            resource_kind: entry.resource_kind,
            resource_id: entry.resource_id,
            before: entry.before,
            after: entry.after,
        })
    }

    async fn list_audit(&self, filter: AuditFilter) -> Result<Page<AuditEntry>> {
        let before = rules::audit_before(&filter.page)?;
        let mut q = Sql::new(format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE TRUE"));
        for (column, value) in [
            ("resource_kind = ", filter.resource_kind),
            ("resource_id = ", filter.resource_id),
            ("actor = ", filter.actor),
        ] {
            if let Some(v) = value {
                q.and(column, Arg::Text(v));
            }
        }
        if let Some(from) = filter.from {
            q.and("at >= ", Arg::Int(from));
        }
        if let Some(to) = filter.to {
            q.and("at < ", Arg::Int(to));
        }
        if let Some(b) = before {
            q.and("id < ", Arg::Int(b));
        }
        q.order_limit("id DESC", filter.page.limit);
        let items = q.fetch_all(&self.pool).await?.iter().map(audit_from_row).collect::<Result<Vec<_>>>()?;
        Ok(rules::finish_page(items, filter.page.limit, rules::audit_cursor))
    }
}

/// A query built piece by piece, numbering its `$n` placeholders.
struct Sql {
    sql: String,
    args: Vec<Arg>,
}

impl Sql {
    fn new(sql: String) -> Self {
        Sql { sql, args: vec![] }
    }

    /// Adds `arg` and returns its placeholder.
    fn arg(&mut self, arg: Arg) -> String {
        self.args.push(arg);
        format!("${}", self.args.len())
    }

    /// Appends ` AND <condition><placeholder>`.
    fn and(&mut self, condition: &str, arg: Arg) {
        let p = self.arg(arg);
        self.sql.push_str(&format!(" AND {condition}{p}"));
    }

    /// Appends the order and a limit one beyond the page (to tell whether more follow).
    fn order_limit(&mut self, order: &str, limit: u32) {
        let p = self.arg(Arg::Int(i64::from(limit) + 1));
        self.sql.push_str(&format!(" ORDER BY {order} LIMIT {p}"));
    }

    async fn fetch_all(self, pool: &PgPool) -> Result<Vec<PgRow>> {
        let mut q = sqlx::query(&self.sql);
        for a in self.args {
            q = match a {
                Arg::Text(v) => q.bind(v),
                Arg::Int(v) => q.bind(v),
                Arg::Bool(v) => q.bind(v),
            };
        }
        Ok(q.fetch_all(pool).await.map_err(db_err)?)
    }
}

/// A key listing's query with its filters (without ORDER BY).
fn key_query(filter: &KeyFilter) -> Sql {
    let mut q = Sql::new(format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE TRUE"));
    if let Some(t) = &filter.tenant_id {
        q.and("tenant_id = ", Arg::Text(t.clone()));
    }
    if let Some(p) = &filter.prefix {
        // A literal prefix match (no LIKE wildcards), like SQLite's substr comparison.
        let p = q.arg(Arg::Text(p.clone()));
        q.sql.push_str(&format!(" AND starts_with(prefix, {p})"));
    }
    if !filter.include_revoked {
        q.sql.push_str(" AND revoked_at IS NULL");
    }
    q
}

fn audit_from_row(row: &PgRow) -> Result<AuditEntry> {
    let json = |col: &str| -> Result<Option<serde_json::Value>> {
        row.try_get::<Option<String>, _>(col)
            .map_err(db_err)?
            .map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Backend(format!("corrupt audit {col}: {e}"))))
            .transpose()
    };
    Ok(AuditEntry {
        id: row.try_get("id").map_err(db_err)?,
        at: row.try_get("at").map_err(db_err)?,
        actor: row.try_get("actor").map_err(db_err)?,
        action: row.try_get("action").map_err(db_err)?,
        resource_kind: row.try_get("resource_kind").map_err(db_err)?,
        resource_id: row.try_get("resource_id").map_err(db_err)?,
        before: json("before")?,
        after: json("after")?,
    })
}

// === rows ===

fn weight_from(row: &PgRow, column: &str) -> Result<u32> {
    Ok(row.try_get::<i32, _>(column).map_err(db_err)?.max(1) as u32)
}

fn group_from_row(row: &PgRow) -> Result<Group> {
    Ok(Group {
        name: row.try_get("name").map_err(db_err)?,
        weight: weight_from(row, "weight")?,
        reserved_slots: slots_from(row, "reserved_slots")?,
        max_slots: slots_from(row, "max_slots")?,
        created_at: row.try_get("created_at").map_err(db_err)?,
        updated_at: row.try_get("updated_at").map_err(db_err)?,
    })
}

fn slots_from(row: &PgRow, column: &str) -> Result<Option<u32>> {
    Ok(row.try_get::<Option<i32>, _>(column).map_err(db_err)?.map(|v| v.max(1) as u32))
}

fn tenant_from_row(row: &PgRow) -> Result<Tenant> {
    let allowed: String = row.try_get("allowed_models").map_err(db_err)?;
    let opt_u64 = |col: &str| -> Result<Option<u64>> {
        Ok(row.try_get::<Option<i64>, _>(col).map_err(db_err)?.map(|v| v.max(0) as u64))
    };
    Ok(Tenant {
        id: row.try_get("id").map_err(db_err)?,
        name: row.try_get("name").map_err(db_err)?,
        weight: weight_from(row, "weight")?,
        group: row.try_get("group_name").map_err(db_err)?,
        allowed_models: serde_json::from_str(&allowed)
            .map_err(|e| StoreError::Backend(format!("corrupt allowed_models: {e}")))?,
        disabled: row.try_get("disabled").map_err(db_err)?,
        never_degrade: row.try_get("never_degrade").map_err(db_err)?,
        quota: Quota {
            tpm: opt_u64("quota_tpm")?,
            rpm: opt_u64("quota_rpm")?,
            max_in_flight: opt_u64("quota_max_in_flight")?.map(|v| v.min(u32::MAX as u64) as u32),
            monthly_budget: row.try_get("quota_monthly_budget").map_err(db_err)?,
            lifetime_budget: row.try_get("quota_lifetime_budget").map_err(db_err)?,
            fail_closed: row.try_get("quota_fail_closed").map_err(db_err)?,
            tool_calls_per_minute: opt_u64("quota_tool_calls_per_minute")?,
            tool_calls_in_flight: opt_u64("quota_tool_calls_in_flight")?.map(|v| v.min(u32::MAX as u64) as u32),
        },
        created_at: row.try_get("created_at").map_err(db_err)?,
        updated_at: row.try_get("updated_at").map_err(db_err)?,
    })
}

fn key_from_row(row: &PgRow) -> Result<ApiKey> {
    Ok(ApiKey {
        id: row.try_get("id").map_err(db_err)?,
        tenant_id: row.try_get("tenant_id").map_err(db_err)?,
        name: row.try_get("name").map_err(db_err)?,
        prefix: row.try_get("prefix").map_err(db_err)?,
        created_at: row.try_get("created_at").map_err(db_err)?,
        expires_at: row.try_get("expires_at").map_err(db_err)?,
        revoked_at: row.try_get("revoked_at").map_err(db_err)?,
    })
}

fn model_from_row(row: &PgRow) -> Result<Model> {
    Ok(Model {
        model_name: row.try_get("model_name").map_err(db_err)?,
        upstream_model: row.try_get("upstream_model").map_err(db_err)?,
        api_base: row.try_get("api_base").map_err(db_err)?,
        api_key: row.try_get::<Option<String>, _>("api_key").map_err(db_err)?.map(SecretString::from),
        input_cost_per_token: row.try_get("input_cost_per_token").map_err(db_err)?,
        output_cost_per_token: row.try_get("output_cost_per_token").map_err(db_err)?,
        context_window: row
            .try_get::<Option<i64>, _>("context_window")
            .map_err(db_err)?
            .map(|v| v.clamp(0, u32::MAX as i64) as u32),
        enabled: row.try_get("enabled").map_err(db_err)?,
        admission_weight: row.try_get("admission_weight").map_err(db_err)?,
        max_in_flight: row
            .try_get::<Option<i64>, _>("max_in_flight")
            .map_err(db_err)?
            .map(|v| v.clamp(1, u32::MAX as i64) as u32),
        tags: serde_json::from_str(&row.try_get::<String, _>("tags").map_err(db_err)?)
            .map_err(|e| StoreError::Backend(format!("corrupt tags: {e}")))?,
        created_at: row.try_get("created_at").map_err(db_err)?,
        updated_at: row.try_get("updated_at").map_err(db_err)?,
    })
}

// === errors ===

/// SQLSTATEs after which retrying later can succeed: the connection or server is going
/// away or starting up (class 08, 57P01..57P03), too many connections (53300), or a
/// transaction lost a serialization race or a deadlock (40001, 40P01).
fn is_transient(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300") || is_contention(code)
}

/// The transaction was rolled back because of concurrent ones (a serialization failure
/// or a deadlock's victim): running it again is safe, and [`retry`] does.
fn is_contention(code: &str) -> bool {
    matches!(code, "40001" | "40P01")
}

fn db_err(e: sqlx::Error) -> Failure {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()).into(),
        sqlx::Error::Database(d) if d.code().is_some_and(|c| is_contention(&c)) => Failure::contended(d.to_string()),
        sqlx::Error::Database(d) if d.code().is_some_and(|c| is_transient(&c)) => {
            StoreError::Unavailable(d.to_string()).into()
        }
        other => StoreError::Backend(other.to_string()).into(),
    }
}

/// A unique violation (23505) is a conflict; anything else is mapped by [`db_err`].
fn conflict_or(e: sqlx::Error, conflict: String) -> Failure {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(conflict).into(),
        _ => db_err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_sqlstates() {
        for code in ["08006", "08001", "57P01", "57P03", "53300", "40001", "40P01"] {
            assert!(is_transient(code), "{code}");
        }
        for code in ["23505", "23503", "42P01", "22021", "28P01"] {
            assert!(!is_transient(code), "{code}");
        }
    }

    #[tokio::test]
    async fn rejects_other_schemes_without_connecting() {
        for url in ["mysql://localhost/x", "sqlite::memory:", "postgres:/nope", ""] {
            match PostgresStore::connect(url).await {
                Err(StoreError::Invalid { field: "database.url", .. }) => {}
                other => panic!("{url}: {other:?}"),
            }
        }
    }
}
