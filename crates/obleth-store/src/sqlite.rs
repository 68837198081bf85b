//! The embedded control-plane store: one SQLite file, created and migrated at start.
//!
//! Writers take SQLite's write lock up front. A deferred transaction that reads first
//! and writes later must upgrade its read lock; if another connection wrote in between,
//! SQLite refuses the upgrade at once with `SQLITE_BUSY` (its busy timeout cannot help:
//! waiting could deadlock), which left tenants in place under concurrent admin clients.
//! So every write is one statement, or a transaction opened with `BEGIN IMMEDIATE`
//! ([`SqliteStore::begin_write`]), which waits for the lock (up to the busy timeout)
//! before reading anything; and each runs through [`retry`], which runs it again if
//! SQLite still answered busy.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use obleth_core::{ApiKey, Group, KeyHash, Model, Quota, Tenant, now_millis, tenant::TENANT_ID_PREFIX};
use secrecy::{ExposeSecret, SecretString};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow};
use sqlx::{Row, Sqlite, SqliteExecutor, SqlitePool, Transaction};

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
    schema::lenient(sqlx::migrate!("./migrations/sqlite"))
}

/// The SQLite-backed store.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://path.db` or
    /// `sqlite::memory:`) and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        Ok(Self::open(url, Schema::Migrate).await?.0)
    }

    /// Opens the database at `url` and migrates or checks its schema as `schema` says.
    pub async fn open(url: &str, schema: Schema) -> Result<(Self, SchemaStatus)> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| crate::invalid("database.url", e.to_string()))?
            // A pod that only checks the schema must not leave an empty file behind.
            .create_if_missing(schema == Schema::Migrate)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            // SQLite's default page cache is 2 MiB per connection, filled as the tables grow:
            // 8 MiB for the pool. The request path reads the store only on cache misses (a
            // key by its hash, a tenant by its id: a few pages of an index each), so 128 KiB
            // each is enough; pages come back from the OS's cache.
            .pragma("cache_size", "-128");
        // An in-memory database exists per connection, so it must have exactly one.
        let max = if url.contains(":memory:") { 1 } else { 4 };
        let pool = SqlitePoolOptions::new().max_connections(max).connect_with(options).await.map_err(|e| {
            match (schema, db_err(e).error) {
                (Schema::Require, StoreError::Backend(m) | StoreError::Unavailable(m)) => StoreError::Backend(format!(
                    "cannot open the control-plane database ({m}); with database.migrate = false it must exist: \
                     run `obleth migrate` first"
                )),
                (_, other) => other,
            }
        })?;
        let migrator = migrator();
        let before = applied(&pool).await?;
        let applied_now = match schema {
            Schema::Migrate => {
                migrator.run(&pool).await.map_err(|e| StoreError::Backend(format!("migration failed: {e}")))?;
                schema::newly_applied(before.as_deref(), applied(&pool).await?.as_deref())
            }
            Schema::Require => {
                schema::check(&migrator, before.as_deref())?;
                Vec::new()
            }
        };
        Ok((SqliteStore { pool }, SchemaStatus { latest: schema::latest(&migrator), applied_now }))
    }

    /// A transaction holding SQLite's write lock from its first statement on.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, Failure> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)
    }
}

/// The migrations applied to the database; `None` before the first.
async fn applied(pool: &SqlitePool) -> Result<Option<Vec<schema::Applied>>> {
    let table = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'";
    let exists: i64 = sqlx::query_scalar(table).fetch_one(pool).await.map_err(db_err)?;
    if exists == 0 {
        return Ok(None);
    }
    let rows = sqlx::query_as("SELECT version, checksum, success FROM _sqlx_migrations").fetch_all(pool).await;
    Ok(Some(rows.map_err(db_err)?))
}

/// Reads a tenant by id or name.
async fn tenant_row<'e>(exec: impl SqliteExecutor<'e>, id_or_name: &str) -> Result<Tenant, Failure> {
    let column = if id_or_name.starts_with(TENANT_ID_PREFIX) { "id" } else { "name" };
    let row = sqlx::query(&format!("SELECT * FROM tenants WHERE {column} = ?"))
        .bind(id_or_name)
        .fetch_optional(exec)
        .await
        .map_err(db_err)?;
    Ok(row.map(tenant_from_row).transpose()?.ok_or_else(|| StoreError::not_found("tenant", id_or_name))?)
}

async fn write_tenant<'e>(exec: impl SqliteExecutor<'e>, t: &Tenant, insert: bool) -> Result<(), Failure> {
    let sql = if insert {
        "INSERT INTO tenants (name, weight, group_name, allowed_models, disabled, never_degrade,
            quota_tpm, quota_rpm, quota_max_in_flight, quota_monthly_budget, quota_lifetime_budget,
            quota_fail_closed, quota_tool_calls_per_minute, quota_tool_calls_in_flight, created_at, updated_at, id)
            VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
    } else {
        "UPDATE tenants SET name=?, weight=?, group_name=?, allowed_models=?, disabled=?, never_degrade=?,
            quota_tpm=?, quota_rpm=?, quota_max_in_flight=?, quota_monthly_budget=?, quota_lifetime_budget=?,
            quota_fail_closed=?, quota_tool_calls_per_minute=?, quota_tool_calls_in_flight=?, created_at=?,
            updated_at=? WHERE id=?"
    };
    let allowed = serde_json::to_string(&t.allowed_models).map_err(|e| StoreError::Backend(e.to_string()))?;
    sqlx::query(sql)
        .bind(&t.name)
        .bind(t.weight as i64)
        .bind(&t.group)
        .bind(allowed)
        .bind(t.disabled)
        .bind(t.never_degrade)
        .bind(t.quota.tpm.map(|v| v as i64))
        .bind(t.quota.rpm.map(|v| v as i64))
        .bind(t.quota.max_in_flight.map(|v| v as i64))
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

async fn model_row<'e>(exec: impl SqliteExecutor<'e>, name: &str) -> Result<Model, Failure> {
    Ok(sqlx::query("SELECT * FROM models WHERE model_name = ?")
        .bind(name)
        .fetch_optional(exec)
        .await
        .map_err(db_err)?
        .map(model_from_row)
        .transpose()?
        .ok_or_else(|| StoreError::not_found("model", name))?)
}

async fn write_model<'e>(exec: impl SqliteExecutor<'e>, m: &Model, insert: bool) -> Result<(), Failure> {
    let sql = if insert {
        "INSERT INTO models (upstream_model, api_base, api_key, input_cost_per_token,
            output_cost_per_token, context_window, enabled, admission_weight, max_in_flight, tags,
            created_at, updated_at, model_name) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
    } else {
        "UPDATE models SET upstream_model=?, api_base=?, api_key=?, input_cost_per_token=?,
            output_cost_per_token=?, context_window=?, enabled=?, admission_weight=?, max_in_flight=?,
            tags=?, created_at=?, updated_at=? WHERE model_name=?"
    };
    sqlx::query(sql)
        .bind(&m.upstream_model)
        .bind(&m.api_base)
        .bind(m.api_key.as_ref().map(|k| k.expose_secret().to_owned()))
        .bind(m.input_cost_per_token)
        .bind(m.output_cost_per_token)
        .bind(m.context_window.map(|v| v as i64))
        .bind(m.enabled)
        .bind(m.admission_weight)
        .bind(m.max_in_flight.map(|v| v as i64))
        .bind(serde_json::to_string(&m.tags).map_err(|e| StoreError::Backend(e.to_string()))?)
        .bind(m.created_at)
        .bind(m.updated_at)
        .bind(&m.model_name)
        .execute(exec)
        .await
        .map_err(|e| conflict_or(e, format!("model '{}' already exists", m.model_name)))?;
    Ok(())
}

#[async_trait]
impl ControlPlaneStore for SqliteStore {
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
        Ok(tenant_row(&self.pool, id_or_name).await?)
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        sqlx::query("SELECT * FROM tenants ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(tenant_from_row)
            .collect()
    }

    async fn update_tenant(&self, id_or_name: &str, patch: TenantPatch) -> Result<Tenant> {
        // Read and write in one write transaction, so that concurrent patches of the
        // same tenant cannot undo each other.
        let patch = &patch;
        retry("update_tenant", move || async move {
            let mut tx = self.begin_write().await?;
            let current = tenant_row(&mut *tx, id_or_name).await?;
            let updated = rules::patch_tenant(current, patch.clone())?;
            write_tenant(&mut *tx, &updated, false).await?;
            tx.commit().await.map_err(db_err)?;
            Ok(updated)
        })
        .await
    }

    async fn delete_tenant(&self, id_or_name: &str) -> Result<(Tenant, Vec<KeyHash>)> {
        // The lookup, the keys' hashes and the delete under one write lock: no key can be
        // added in between and go unreported (the cascade would delete it unseen).
        retry("delete_tenant", move || async move {
            let mut tx = self.begin_write().await?;
            let tenant = tenant_row(&mut *tx, id_or_name).await?;
            let hashes: Vec<String> = sqlx::query_scalar("SELECT key_hash FROM api_keys WHERE tenant_id = ?")
                .bind(&tenant.id)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?;
            sqlx::query("DELETE FROM tenants WHERE id = ?").bind(&tenant.id).execute(&mut *tx).await.map_err(db_err)?;
            tx.commit().await.map_err(db_err)?;
            Ok((tenant, hashes.iter().filter_map(|h| KeyHash::from_hex(h)).collect()))
        })
        .await
    }

    async fn insert_key(&self, key: &ApiKey, hash: KeyHash) -> Result<()> {
        retry("insert_key", move || async move {
            sqlx::query(
                "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, created_at, expires_at, revoked_at)
                 VALUES (?,?,?,?,?,?,?,?)",
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
        let (mut sql, args) = key_query(&filter);
        sql.push_str(" ORDER BY created_at, id");
        bind(sqlx::query(&sql), args).fetch_all(&self.pool).await.map_err(db_err)?.iter().map(key_from_row).collect()
    }

    async fn revoke_key(&self, id: &str) -> Result<(ApiKey, KeyHash)> {
        // One statement; COALESCE keeps the first revocation time (revoking again
        // changes nothing).
        let now = now_millis();
        let row = retry("revoke_key", move || async move {
            sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? RETURNING *")
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
        sqlx::query("SELECT * FROM api_keys WHERE key_hash = ?")
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
        Ok(model_row(&self.pool, name).await?)
    }

    async fn list_models(&self) -> Result<Vec<Model>> {
        sqlx::query("SELECT * FROM models ORDER BY model_name")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(model_from_row)
            .collect()
    }

    async fn update_model(&self, name: &str, patch: ModelPatch) -> Result<Model> {
        let patch = &patch;
        retry("update_model", move || async move {
            let mut tx = self.begin_write().await?;
            let current = model_row(&mut *tx, name).await?;
            let updated = rules::patch_model(current, patch.clone())?;
            write_model(&mut *tx, &updated, false).await?;
            tx.commit().await.map_err(db_err)?;
            Ok(updated)
        })
        .await
    }

    async fn put_group(&self, name: &str, settings: GroupSettings) -> Result<Group> {
        rules::check_group(name, &settings)?;
        let now = now_millis();
        let row = retry("put_group", move || async move {
            sqlx::query(
                "INSERT INTO groups (name, weight, reserved_slots, max_slots, created_at, updated_at)
                 VALUES (?,?,?,?,?,?)
                 ON CONFLICT(name) DO UPDATE SET weight = excluded.weight, reserved_slots = excluded.reserved_slots,
                 max_slots = excluded.max_slots, updated_at = excluded.updated_at
                 RETURNING *",
            )
            .bind(name)
            .bind(settings.weight as i64)
            .bind(settings.reserved_slots.map(i64::from))
            .bind(settings.max_slots.map(i64::from))
            .bind(now)
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)
        })
        .await?;
        group_from_row(&row)
    }

    async fn get_group(&self, name: &str) -> Result<Group> {
        self.group_row(name).await?.ok_or_else(|| StoreError::not_found("group", name))
    }

    async fn list_groups(&self) -> Result<Vec<Group>> {
        sqlx::query("SELECT * FROM groups ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?
            .iter()
            .map(group_from_row)
            .collect()
    }

    async fn delete_group(&self, name: &str) -> Result<Group> {
        // One statement that returns the row it deleted: no read-then-delete race.
        let row = retry("delete_group", move || async move {
            sqlx::query("DELETE FROM groups WHERE name = ? RETURNING *")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)
        })
        .await?;
        row.as_ref().map(group_from_row).transpose()?.ok_or_else(|| StoreError::not_found("group", name))
    }

    async fn delete_model(&self, name: &str) -> Result<Model> {
        let row = retry("delete_model", move || async move {
            sqlx::query("DELETE FROM models WHERE model_name = ? RETURNING *")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)
        })
        .await?;
        row.map(model_from_row).transpose()?.ok_or_else(|| StoreError::not_found("model", name))
    }

    async fn list_tenants_page(&self, filter: TenantFilter, page: PageRequest) -> Result<Page<Tenant>> {
        let after = rules::name_after(TENANT_CURSOR, &page)?;
        let mut sql = String::from("SELECT * FROM tenants WHERE 1=1");
        let mut args = vec![];
        if let Some(g) = filter.group {
            sql.push_str(" AND group_name = ?");
            args.push(Arg::Text(g));
        }
        if let Some(d) = filter.disabled {
            sql.push_str(" AND disabled = ?");
            args.push(Arg::Bool(d));
        }
        if let Some(text) = filter.search {
            // instr, not LIKE: `_` and `%` in the search are plain characters.
            sql.push_str(" AND instr(name, ?) > 0");
            args.push(Arg::Text(text.to_lowercase()));
        }
        if let Some(a) = after {
            sql.push_str(" AND name > ?");
            args.push(Arg::Text(a));
        }
        sql.push_str(" ORDER BY name LIMIT ?");
        args.push(Arg::Int(i64::from(page.limit) + 1));
        let rows = bind(sqlx::query(&sql), args).fetch_all(&self.pool).await.map_err(db_err)?;
        let items = rows.into_iter().map(tenant_from_row).collect::<Result<Vec<_>>>()?;
        Ok(rules::finish_page(items, page.limit, |t| rules::name_cursor(TENANT_CURSOR, &t.name)))
    }

    async fn list_keys_page(&self, filter: KeyFilter, page: PageRequest) -> Result<Page<ApiKey>> {
        let after = rules::key_after(&page)?;
        let (mut sql, mut args) = key_query(&filter);
        if let Some((at, id)) = after {
            sql.push_str(" AND (created_at > ? OR (created_at = ? AND id > ?))");
            args.extend([Arg::Int(at), Arg::Int(at), Arg::Text(id)]);
        }
        sql.push_str(" ORDER BY created_at, id LIMIT ?");
        args.push(Arg::Int(i64::from(page.limit) + 1));
        let rows = bind(sqlx::query(&sql), args).fetch_all(&self.pool).await.map_err(db_err)?;
        let items = rows.iter().map(key_from_row).collect::<Result<Vec<_>>>()?;
        Ok(rules::finish_page(items, page.limit, rules::key_cursor))
    }

    async fn list_models_page(&self, filter: ModelFilter, page: PageRequest) -> Result<Page<Model>> {
        let after = rules::name_after(MODEL_CURSOR, &page)?;
        let mut sql = String::from("SELECT * FROM models WHERE 1=1");
        let mut args = vec![];
        if let Some(e) = filter.enabled {
            sql.push_str(" AND enabled = ?");
            args.push(Arg::Bool(e));
        }
        if let Some(t) = filter.tag {
            sql.push_str(" AND EXISTS (SELECT 1 FROM json_each(models.tags) WHERE json_each.value = ?)");
            args.push(Arg::Text(t));
        }
        if let Some(a) = after {
            sql.push_str(" AND model_name > ?");
            args.push(Arg::Text(a));
        }
        sql.push_str(" ORDER BY model_name LIMIT ?");
        args.push(Arg::Int(i64::from(page.limit) + 1));
        let rows = bind(sqlx::query(&sql), args).fetch_all(&self.pool).await.map_err(db_err)?;
        let items = rows.into_iter().map(model_from_row).collect::<Result<Vec<_>>>()?;
        Ok(rules::finish_page(items, page.limit, |m| rules::name_cursor(MODEL_CURSOR, &m.model_name)))
    }

    async fn rotate_key(&self, id: &str, rotation: KeyRotation) -> Result<RotatedKey> {
        rules::check_rotation(&rotation)?;
        let rotation = &rotation;
        retry("rotate_key", move || async move {
            let mut tx = self.begin_write().await?;
            let row = sqlx::query("SELECT * FROM api_keys WHERE id = ?")
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
            sqlx::query("UPDATE api_keys SET expires_at = ? WHERE id = ?")
                .bind(old.expires_at)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            let new = rules::rotated_key(&old, rotation);
            sqlx::query(
                "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, created_at, expires_at, revoked_at)
                 VALUES (?,?,?,?,?,?,?,?)",
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
                 VALUES (?,?,?,?,?,?,?) RETURNING id",
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
        let mut sql = String::from("SELECT * FROM audit_log WHERE 1=1");
        let mut args = vec![];
        for (column, value) in
            [("resource_kind", filter.resource_kind), ("resource_id", filter.resource_id), ("actor", filter.actor)]
        {
            if let Some(v) = value {
                sql.push_str(&format!(" AND {column} = ?"));
                args.push(Arg::Text(v));
            }
        }
        if let Some(from) = filter.from {
            sql.push_str(" AND at >= ?");
            args.push(Arg::Int(from));
        }
        if let Some(to) = filter.to {
            sql.push_str(" AND at < ?");
            args.push(Arg::Int(to));
        }
        if let Some(b) = before {
            sql.push_str(" AND id < ?");
            args.push(Arg::Int(b));
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        args.push(Arg::Int(i64::from(filter.page.limit) + 1));
        let rows = bind(sqlx::query(&sql), args).fetch_all(&self.pool).await.map_err(db_err)?;
        let items = rows.iter().map(audit_from_row).collect::<Result<Vec<_>>>()?;
        Ok(rules::finish_page(items, filter.page.limit, rules::audit_cursor))
    }
}

/// The WHERE clause of a key listing (without ORDER BY).
fn key_query(filter: &KeyFilter) -> (String, Vec<Arg>) {
    let mut sql = String::from("SELECT * FROM api_keys WHERE 1=1");
    let mut args = vec![];
    if let Some(t) = &filter.tenant_id {
        sql.push_str(" AND tenant_id = ?");
        args.push(Arg::Text(t.clone()));
    }
    if let Some(p) = &filter.prefix {
        sql.push_str(" AND substr(prefix, 1, length(?)) = ?");
        args.extend([Arg::Text(p.clone()), Arg::Text(p.clone())]);
    }
    if !filter.include_revoked {
        sql.push_str(" AND revoked_at IS NULL");
    }
    (sql, args)
}

fn bind<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    args: Vec<Arg>,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    for a in args {
        q = match a {
            Arg::Text(v) => q.bind(v),
            Arg::Int(v) => q.bind(v),
            Arg::Bool(v) => q.bind(v),
        };
    }
    q
}

fn audit_from_row(row: &SqliteRow) -> Result<AuditEntry> {
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

// === groups ===

impl SqliteStore {
    async fn group_row(&self, name: &str) -> Result<Option<Group>> {
        sqlx::query("SELECT * FROM groups WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .map(|r| group_from_row(&r))
            .transpose()
    }
}

fn slots(row: &SqliteRow, column: &str) -> Result<Option<u32>> {
    Ok(row.try_get::<Option<i64>, _>(column).map_err(db_err)?.map(|v| v.clamp(1, u32::MAX as i64) as u32))
}

fn group_from_row(row: &SqliteRow) -> Result<Group> {
    Ok(Group {
        name: row.try_get("name").map_err(db_err)?,
        weight: row.try_get::<i64, _>("weight").map_err(db_err)?.clamp(1, u32::MAX as i64) as u32,
        reserved_slots: slots(row, "reserved_slots")?,
        max_slots: slots(row, "max_slots")?,
        created_at: row.try_get("created_at").map_err(db_err)?,
        updated_at: row.try_get("updated_at").map_err(db_err)?,
    })
}

// === rows ===

fn tenant_from_row(row: SqliteRow) -> Result<Tenant> {
    let allowed: String = row.try_get("allowed_models").map_err(db_err)?;
    let opt_u64 = |col: &str| -> Result<Option<u64>> {
        Ok(row.try_get::<Option<i64>, _>(col).map_err(db_err)?.map(|v| v.max(0) as u64))
    };
    Ok(Tenant {
        id: row.try_get("id").map_err(db_err)?,
        name: row.try_get("name").map_err(db_err)?,
        weight: row.try_get::<i64, _>("weight").map_err(db_err)?.clamp(1, u32::MAX as i64) as u32,
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

fn key_from_row(row: &SqliteRow) -> Result<ApiKey> {
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

fn model_from_row(row: SqliteRow) -> Result<Model> {
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

/// `SQLITE_BUSY` (5) and `SQLITE_LOCKED` (6), with their extended codes (the primary
/// code is the low byte): another connection holds a lock this statement needs.
fn is_contention(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| matches!(c & 0xff, 5 | 6))
        }
        _ => false,
    }
}

fn db_err(e: sqlx::Error) -> Failure {
    if is_contention(&e) {
        return Failure::contended(e.to_string());
    }
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            StoreError::Unavailable(e.to_string()).into()
        }
        other => StoreError::Backend(other.to_string()).into(),
    }
}

fn conflict_or(e: sqlx::Error, conflict: String) -> Failure {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(conflict).into(),
        _ => db_err(e),
    }
}
