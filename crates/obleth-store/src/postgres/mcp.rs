//! The MCP gateway's tables in the Postgres store: servers, grants, restricted keys and
//! pins.
//!
//! Lock order, extending the store's (tenant before keys): tenant, then key, then
//! server, each `FOR KEY SHARE` (the lock a foreign key takes anyway) before a row that
//! refers to them is written. A delete of any of them then waits for the write instead
//! of failing it half-way, and no two writers wait for each other in a cycle. A pin's
//! compare-and-set is one `UPDATE … WHERE` (or `INSERT … ON CONFLICT DO NOTHING`): under
//! READ COMMITTED, a writer that waited for the row lock checks the condition again on
//! the row as the winner left it, so of racing writers with the same expectation exactly
//! one matches.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgExecutor, Row};

use super::{PostgresStore, Sql, conflict_or, db_err};
use crate::mcp::{
    McpGrant, McpGrantFilter, McpGrants, McpServer, McpServerPatch, McpStore, McpToolPin, McpTransport, NewMcpGrant,
    NewMcpServer, PinVersion,
};
use crate::retry::{Failure, retry};
use crate::rules::Arg;
use crate::rules::mcp as rules;
use crate::{Result, StoreError};

const SERVER_COLUMNS: &str = "id, name, transport, url, command, args::text AS args, credential, credential_header,
    call_timeout_ms, list_timeout_ms, max_concurrency, require_approval, capture,
    redact_fields::text AS redact_fields, tool_weights::text AS tool_weights, enabled, created_at, updated_at";
/// The columns of a grant, with its server's name.
const GRANT_SELECT: &str = "SELECT g.id, g.tenant_id, g.key_id, s.name AS server, g.tool, g.created_at
    FROM mcp_grants g JOIN mcp_servers s ON s.id = g.server_id";
const PIN_COLUMNS: &str = "tool, approved_hash, approved_def, pending_hash, pending_def, first_seen_at, changed_at,
    approved_at, approved_by";

/// Reads a server by id or name, with `lock` (`""`, or a locking clause) in a transaction.
async fn fetch_server<'e>(exec: impl PgExecutor<'e>, id_or_name: &str, lock: &str) -> Result<McpServer, Failure> {
    let missing = || StoreError::not_found("MCP server", id_or_name);
    // Postgres text cannot hold NUL (the lookup would fail as a server error): no such server.
    if id_or_name.contains('\0') {
        return Err(missing().into());
    }
    let column = if id_or_name.starts_with(rules::SERVER_ID_PREFIX) { "id" } else { "name" };
    let row = sqlx::query(&format!("SELECT {SERVER_COLUMNS} FROM mcp_servers WHERE {column} = $1{lock}"))
        .bind(id_or_name)
        .fetch_optional(exec)
        .await
        .map_err(db_err)?;
    Ok(row.as_ref().map(server_from_row).transpose()?.ok_or_else(missing)?)
}

/// Inserts a server, or updates every column but its id and name (which never change, so
/// the update takes no key lock and never waits for writers of grants and pins).
async fn write_server<'e>(exec: impl PgExecutor<'e>, s: &McpServer, insert: bool) -> Result<(), Failure> {
    let sql = if insert {
        "INSERT INTO mcp_servers (transport, url, command, args, credential, credential_header, call_timeout_ms,
            list_timeout_ms, max_concurrency, require_approval, capture, redact_fields, tool_weights, enabled,
            created_at, updated_at, id, name)
         VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13::jsonb, $14, $15, $16, $17, $18)"
    } else {
        "UPDATE mcp_servers SET transport = $1, url = $2, command = $3, args = $4::jsonb, credential = $5,
            credential_header = $6, call_timeout_ms = $7, list_timeout_ms = $8, max_concurrency = $9,
            require_approval = $10, capture = $11, redact_fields = $12::jsonb, tool_weights = $13::jsonb,
            enabled = $14, created_at = $15, updated_at = $16
         WHERE id = $17 AND name = $18"
    };
    sqlx::query(sql)
        .bind(s.transport.as_str())
        .bind(&s.url)
        .bind(&s.command)
        .bind(json(&s.args)?)
        .bind(s.credential.as_ref().map(|c| c.expose_secret().to_owned()))
        .bind(&s.credential_header)
        .bind(int(s.call_timeout_ms)?)
        .bind(int(s.list_timeout_ms)?)
        .bind(int(s.max_concurrency)?)
        .bind(s.require_approval)
        .bind(s.capture)
        .bind(json(&s.redact_fields)?)
        .bind(json(&s.tool_weights)?)
        .bind(s.enabled)
        .bind(s.created_at)
        .bind(s.updated_at)
        .bind(&s.id)
        .bind(&s.name)
        .execute(exec)
        .await
        .map_err(|e| conflict_or(e, format!("an MCP server named '{}' already exists", s.name)))?;
    Ok(())
}

/// The id of the tenant named by id or name, locked `FOR KEY SHARE`.
async fn lock_tenant(conn: &mut PgConnection, id_or_name: &str) -> Result<String, Failure> {
    let missing = || StoreError::not_found("tenant", id_or_name);
    if id_or_name.contains('\0') {
        return Err(missing().into());
    }
    let column = if id_or_name.starts_with(obleth_core::tenant::TENANT_ID_PREFIX) { "id" } else { "name" };
    let id: Option<String> = sqlx::query_scalar(&format!("SELECT id FROM tenants WHERE {column} = $1 FOR KEY SHARE"))
        .bind(id_or_name)
        .fetch_optional(conn)
        .await
        .map_err(db_err)?;
    Ok(id.ok_or_else(missing)?)
}

/// Checks that `key_id` is a key of `tenant_id`, and locks it `FOR KEY SHARE`.
async fn lock_key(conn: &mut PgConnection, key_id: &str, tenant_id: &str) -> Result<(), Failure> {
    let owner: Option<String> = if key_id.contains('\0') {
        None
    } else {
        sqlx::query_scalar("SELECT tenant_id FROM api_keys WHERE id = $1 FOR KEY SHARE")
            .bind(key_id)
            .fetch_optional(conn)
            .await
            .map_err(db_err)?
    };
    Ok(rules::key_of_tenant(key_id, owner.as_deref(), tenant_id)?)
}

/// Inserts `grant` of server `server_id`; a key grant also marks its key restricted.
async fn insert_grant(conn: &mut PgConnection, grant: &McpGrant, server_id: &str) -> Result<(), Failure> {
    sqlx::query(
        "INSERT INTO mcp_grants (id, tenant_id, key_id, server_id, tool, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&grant.id)
    .bind(&grant.tenant_id)
    .bind(&grant.key_id)
    .bind(server_id)
    .bind(&grant.tool)
    .bind(grant.created_at)
    .execute(&mut *conn)
    .await
    .map_err(|e| conflict_or(e, rules::duplicate_grant(grant)))?;
    if let Some(key_id) = &grant.key_id {
        sqlx::query("INSERT INTO mcp_restricted_keys (key_id, tenant_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(key_id)
            .bind(&grant.tenant_id)
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

/// Gives key `new_id` copies of key `old_id`'s grants and its restricted mark (part of a
/// rotation's transaction, which holds the tenant and the old key). The grants' servers
/// are locked first: one deleted meanwhile is skipped rather than failing the rotation.
pub(super) async fn copy_key_grants(
    conn: &mut PgConnection,
    old_id: &str,
    new_id: &str,
    now: i64,
) -> Result<(), Failure> {
    let rows = sqlx::query(
        "SELECT g.tenant_id, g.server_id, g.tool FROM mcp_grants g JOIN mcp_servers s ON s.id = g.server_id
         WHERE g.key_id = $1 ORDER BY g.created_at, g.id FOR KEY SHARE OF s",
    )
    .bind(old_id)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    for row in rows {
        sqlx::query(
            "INSERT INTO mcp_grants (id, tenant_id, key_id, server_id, tool, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(obleth_core::new_id(rules::GRANT_ID_PREFIX))
        .bind(row.try_get::<String, _>("tenant_id").map_err(db_err)?)
        .bind(new_id)
        .bind(row.try_get::<String, _>("server_id").map_err(db_err)?)
        .bind(row.try_get::<Option<String>, _>("tool").map_err(db_err)?)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    }
    sqlx::query(
        "INSERT INTO mcp_restricted_keys (key_id, tenant_id)
         SELECT $1, tenant_id FROM mcp_restricted_keys WHERE key_id = $2",
    )
    .bind(new_id)
    .bind(old_id)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl McpStore for PostgresStore {
    async fn create_mcp_server(&self, new: NewMcpServer) -> Result<McpServer> {
        let server = rules::new_server(new)?;
        let server = &server;
        retry("create_mcp_server", move || write_server(&self.pool, server, true)).await?;
        Ok(server.clone())
    }

    async fn get_mcp_server(&self, id_or_name: &str) -> Result<McpServer> {
        Ok(fetch_server(&self.pool, id_or_name, "").await?)
    }

    async fn list_mcp_servers(&self) -> Result<Vec<McpServer>> {
        let sql = format!("SELECT {SERVER_COLUMNS} FROM mcp_servers ORDER BY name");
        sqlx::query(&sql).fetch_all(&self.pool).await.map_err(db_err)?.iter().map(server_from_row).collect()
    }

    async fn update_mcp_server(&self, id_or_name: &str, patch: McpServerPatch) -> Result<McpServer> {
        let patch = &patch;
        retry("update_mcp_server", move || async move {
            let mut tx = self.pool.begin().await.map_err(db_err)?;
            let current = fetch_server(&mut *tx, id_or_name, " FOR NO KEY UPDATE").await?;
            let updated = rules::patch_server(current, patch.clone())?;
            write_server(&mut *tx, &updated, false).await?;
            tx.commit().await.map_err(db_err)?;
            Ok(updated)
        })
        .await
    }

    async fn delete_mcp_server(&self, id_or_name: &str) -> Result<McpServer> {
        let missing = || StoreError::not_found("MCP server", id_or_name);
        if id_or_name.contains('\0') {
            return Err(missing());
        }
        let column = if id_or_name.starts_with(rules::SERVER_ID_PREFIX) { "id" } else { "name" };
        let sql = format!("DELETE FROM mcp_servers WHERE {column} = $1 RETURNING {SERVER_COLUMNS}");
        let sql = &sql;
        let row = retry("delete_mcp_server", move || async move {
            sqlx::query(sql).bind(id_or_name).fetch_optional(&self.pool).await.map_err(db_err)
        })
        .await?;
        row.as_ref().map(server_from_row).transpose()?.ok_or_else(missing)
    }

    async fn create_mcp_grant(&self, new: NewMcpGrant) -> Result<McpGrant> {
        rules::check_grant(&new)?;
        let new = &new;
        retry("create_mcp_grant", move || async move {
            let mut tx = self.pool.begin().await.map_err(db_err)?;
            let tenant_id = lock_tenant(&mut tx, &new.tenant).await?;
            if let Some(key_id) = &new.key_id {
                lock_key(&mut tx, key_id, &tenant_id).await?;
            }
            let server = fetch_server(&mut *tx, &new.server, " FOR KEY SHARE").await?;
            let grant = rules::new_grant(new, tenant_id, server.name);
            insert_grant(&mut tx, &grant, &server.id).await?;
            tx.commit().await.map_err(db_err)?;
            Ok(grant)
        })
        .await
    }

    async fn list_mcp_grants(&self, filter: McpGrantFilter) -> Result<Vec<McpGrant>> {
        let mut q = Sql::new(format!("{GRANT_SELECT} WHERE TRUE"));
        for (column, value) in
            [("g.tenant_id = ", filter.tenant_id), ("g.key_id = ", filter.key_id), ("s.name = ", filter.server)]
        {
            // NUL matches nothing (and Postgres would refuse it as a server error).
            match value {
                Some(v) if v.contains('\0') => return Ok(vec![]),
                Some(v) => q.and(column, Arg::Text(v)),
                None => {}
            }
        }
        q.sql.push_str(" ORDER BY g.created_at, g.id");
        q.fetch_all(&self.pool).await?.iter().map(grant_from_row).collect()
    }

    async fn delete_mcp_grant(&self, id: &str) -> Result<McpGrant> {
        if id.contains('\0') {
            return Err(StoreError::not_found("MCP grant", id));
        }
        let row = retry("delete_mcp_grant", move || async move {
            sqlx::query(
                "DELETE FROM mcp_grants g USING mcp_servers s WHERE g.id = $1 AND s.id = g.server_id
                 RETURNING g.id, g.tenant_id, g.key_id, s.name AS server, g.tool, g.created_at",
            )
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)
        })
        .await?;
        row.as_ref().map(grant_from_row).transpose()?.ok_or_else(|| StoreError::not_found("MCP grant", id))
    }

    async fn mcp_grants(&self) -> Result<McpGrants> {
        // One snapshot for both reads: a grant and its key's mark are seen together.
        let mut tx = self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await.map_err(db_err)?;
        let grants = sqlx::query(&format!("{GRANT_SELECT} ORDER BY g.created_at, g.id"))
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?
            .iter()
            .map(grant_from_row)
            .collect::<Result<Vec<_>>>()?;
        let restricted_keys: Vec<(String, String)> =
            sqlx::query_as("SELECT tenant_id, key_id FROM mcp_restricted_keys ORDER BY tenant_id, key_id")
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(McpGrants { grants, restricted_keys })
    }

    async fn list_mcp_pins(&self, server: &str) -> Result<Vec<McpToolPin>> {
        let server = fetch_server(&self.pool, server, "").await?;
        let sql = format!("SELECT {PIN_COLUMNS} FROM mcp_tool_pins WHERE server_id = $1 ORDER BY tool");
        let rows = sqlx::query(&sql).bind(&server.id).fetch_all(&self.pool).await.map_err(db_err)?;
        rows.iter().map(|r| pin_from_row(r, &server.name)).collect()
    }

    async fn put_mcp_pin(&self, pin: &McpToolPin, expected: Option<&PinVersion>) -> Result<bool> {
        rules::check_pin(pin)?;
        let approved_def = rules::def_text("approved_def", &pin.approved_def)?;
        let pending_def = rules::def_text("pending_def", &pin.pending_def)?;
        let defs = (&approved_def, &pending_def);
        retry("put_mcp_pin", move || async move {
            let mut tx = self.pool.begin().await.map_err(db_err)?;
            let server = fetch_server(&mut *tx, &pin.server, " FOR KEY SHARE").await?;
            let written = write_pin(&mut tx, &server.id, pin, defs, expected).await?;
            tx.commit().await.map_err(db_err)?;
            Ok(written)
        })
        .await
    }
}

/// Inserts the pin if none is stored (`expected` `None`), or updates it if the stored one
/// is still at `expected` (compared NULL-safe); whether it was written.
async fn write_pin(
    conn: &mut PgConnection,
    server_id: &str,
    pin: &McpToolPin,
    (approved_def, pending_def): (&Option<String>, &Option<String>),
    expected: Option<&PinVersion>,
) -> Result<bool, Failure> {
    let sql = match expected {
        None => {
            "INSERT INTO mcp_tool_pins (approved_hash, approved_def, pending_hash, pending_def, first_seen_at,
                changed_at, approved_at, approved_by, server_id, tool)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (server_id, tool) DO NOTHING"
        }
        Some(_) => {
            "UPDATE mcp_tool_pins SET approved_hash = $1, approved_def = $2, pending_hash = $3, pending_def = $4,
                first_seen_at = $5, changed_at = $6, approved_at = $7, approved_by = $8
             WHERE server_id = $9 AND tool = $10
               AND approved_hash IS NOT DISTINCT FROM $11 AND pending_hash IS NOT DISTINCT FROM $12"
        }
    };
    let mut q = sqlx::query(sql)
        .bind(&pin.approved_hash)
        .bind(approved_def)
        .bind(&pin.pending_hash)
        .bind(pending_def)
        .bind(pin.first_seen_at)
        .bind(pin.changed_at)
        .bind(pin.approved_at)
        .bind(&pin.approved_by)
        .bind(server_id)
        .bind(&pin.tool);
    if let Some((approved, pending)) = expected {
        q = q.bind(approved).bind(pending);
    }
    Ok(q.execute(&mut *conn).await.map_err(db_err)?.rows_affected() == 1)
}

// === rows ===

fn json<T: serde::Serialize>(v: &T) -> Result<String, Failure> {
    Ok(serde_json::to_string(v).map_err(|e| StoreError::Backend(e.to_string()))?)
}

/// The rules cap every u32 column far below i32::MAX.
fn int(v: u32) -> Result<i32, Failure> {
    Ok(i32::try_from(v).map_err(|_| StoreError::Backend(format!("{v} does not fit an INTEGER column")))?)
}

fn from_json<T: serde::de::DeserializeOwned>(row: &PgRow, column: &str) -> Result<T> {
    let text: String = row.try_get(column).map_err(db_err)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Backend(format!("corrupt mcp_servers.{column}: {e}")))
}

fn u32_from(row: &PgRow, column: &str) -> Result<u32> {
    Ok(row.try_get::<i32, _>(column).map_err(db_err)?.max(1) as u32)
}

fn server_from_row(row: &PgRow) -> Result<McpServer> {
    Ok(McpServer {
        id: row.try_get("id").map_err(db_err)?,
        name: row.try_get("name").map_err(db_err)?,
        transport: McpTransport::from_column(&row.try_get::<String, _>("transport").map_err(db_err)?)?,
        url: row.try_get("url").map_err(db_err)?,
        command: row.try_get("command").map_err(db_err)?,
        args: from_json(row, "args")?,
        credential: row.try_get::<Option<String>, _>("credential").map_err(db_err)?.map(SecretString::from),
        credential_header: row.try_get("credential_header").map_err(db_err)?,
        call_timeout_ms: u32_from(row, "call_timeout_ms")?,
        list_timeout_ms: u32_from(row, "list_timeout_ms")?,
        max_concurrency: u32_from(row, "max_concurrency")?,
        require_approval: row.try_get("require_approval").map_err(db_err)?,
        capture: row.try_get("capture").map_err(db_err)?,
        redact_fields: from_json(row, "redact_fields")?,
        tool_weights: from_json(row, "tool_weights")?,
        enabled: row.try_get("enabled").map_err(db_err)?,
        created_at: row.try_get("created_at").map_err(db_err)?,
        updated_at: row.try_get("updated_at").map_err(db_err)?,
    })
}

fn grant_from_row(row: &PgRow) -> Result<McpGrant> {
    Ok(McpGrant {
        id: row.try_get("id").map_err(db_err)?,
        tenant_id: row.try_get("tenant_id").map_err(db_err)?,
        key_id: row.try_get("key_id").map_err(db_err)?,
        server: row.try_get("server").map_err(db_err)?,
        tool: row.try_get("tool").map_err(db_err)?,
        created_at: row.try_get("created_at").map_err(db_err)?,
    })
}

fn pin_from_row(row: &PgRow, server: &str) -> Result<McpToolPin> {
    let def = |column: &str| -> Result<Option<serde_json::Value>> {
        row.try_get::<Option<String>, _>(column)
            .map_err(db_err)?
            .map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Backend(format!("corrupt pin {column}: {e}"))))
            .transpose()
    };
    Ok(McpToolPin {
        server: server.to_owned(),
        tool: row.try_get("tool").map_err(db_err)?,
        approved_hash: row.try_get("approved_hash").map_err(db_err)?,
        approved_def: def("approved_def")?,
        pending_hash: row.try_get("pending_hash").map_err(db_err)?,
        pending_def: def("pending_def")?,
        first_seen_at: row.try_get("first_seen_at").map_err(db_err)?,
        changed_at: row.try_get("changed_at").map_err(db_err)?,
        approved_at: row.try_get("approved_at").map_err(db_err)?,
        approved_by: row.try_get("approved_by").map_err(db_err)?,
    })
}
