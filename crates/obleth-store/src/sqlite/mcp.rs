//! The MCP gateway's tables in the SQLite store: servers, grants, restricted keys and
//! pins. Writes follow the store's rule (one statement, or a `BEGIN IMMEDIATE`
//! transaction, through [`retry`]), which also makes a pin's compare-and-set exact: the
//! comparison and the write happen under the one write lock.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqliteExecutor};

use super::{SqliteStore, conflict_or, db_err, tenant_row};
use crate::mcp::{
    McpGrant, McpGrantFilter, McpGrants, McpServer, McpServerPatch, McpStore, McpToolPin, McpTransport, NewMcpGrant,
    NewMcpServer, PinVersion,
};
use crate::retry::{Failure, retry};
use crate::rules::Arg;
use crate::rules::mcp as rules;
use crate::{Result, StoreError};

/// The columns of a grant, with its server's name.
const GRANT_SELECT: &str = "SELECT g.id, g.tenant_id, g.key_id, s.name AS server, g.tool, g.created_at
    FROM mcp_grants g JOIN mcp_servers s ON s.id = g.server_id";

/// Reads a server by id or name.
async fn server_row<'e>(exec: impl SqliteExecutor<'e>, id_or_name: &str) -> Result<McpServer, Failure> {
    let column = if id_or_name.starts_with(rules::SERVER_ID_PREFIX) { "id" } else { "name" };
    let row = sqlx::query(&format!("SELECT * FROM mcp_servers WHERE {column} = ?"))
        .bind(id_or_name)
        .fetch_optional(exec)
        .await
        .map_err(db_err)?;
    Ok(row.as_ref().map(server_from_row).transpose()?.ok_or_else(|| StoreError::not_found("MCP server", id_or_name))?)
}

/// Inserts a server, or updates every column but its id and name (which never change).
async fn write_server<'e>(exec: impl SqliteExecutor<'e>, s: &McpServer, insert: bool) -> Result<(), Failure> {
    let sql = if insert {
        "INSERT INTO mcp_servers (transport, url, command, args, credential, credential_header, call_timeout_ms,
            list_timeout_ms, max_concurrency, require_approval, capture, redact_fields, tool_weights, enabled,
            created_at, updated_at, id, name) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
    } else {
        "UPDATE mcp_servers SET transport=?, url=?, command=?, args=?, credential=?, credential_header=?,
            call_timeout_ms=?, list_timeout_ms=?, max_concurrency=?, require_approval=?, capture=?,
            redact_fields=?, tool_weights=?, enabled=?, created_at=?, updated_at=? WHERE id=? AND name=?"
    };
    sqlx::query(sql)
        .bind(s.transport.as_str())
        .bind(&s.url)
        .bind(&s.command)
        .bind(json(&s.args)?)
        .bind(s.credential.as_ref().map(|c| c.expose_secret().to_owned()))
        .bind(&s.credential_header)
        .bind(i64::from(s.call_timeout_ms))
        .bind(i64::from(s.list_timeout_ms))
        .bind(i64::from(s.max_concurrency))
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

/// Checks that `key_id` is a key of `tenant_id`.
async fn check_key<'e>(exec: impl SqliteExecutor<'e>, key_id: &str, tenant_id: &str) -> Result<(), Failure> {
    let owner: Option<String> = sqlx::query_scalar("SELECT tenant_id FROM api_keys WHERE id = ?")
        .bind(key_id)
        .fetch_optional(exec)
        .await
        .map_err(db_err)?;
    Ok(rules::key_of_tenant(key_id, owner.as_deref(), tenant_id)?)
}

/// Inserts `grant` of server `server_id`; a key grant also marks its key restricted.
async fn insert_grant(conn: &mut SqliteConnection, grant: &McpGrant, server_id: &str) -> Result<(), Failure> {
    sqlx::query("INSERT INTO mcp_grants (id, tenant_id, key_id, server_id, tool, created_at) VALUES (?,?,?,?,?,?)")
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
        sqlx::query("INSERT INTO mcp_restricted_keys (key_id, tenant_id) VALUES (?, ?) ON CONFLICT DO NOTHING")
            .bind(key_id)
            .bind(&grant.tenant_id)
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

/// Gives key `new_id` copies of key `old_id`'s grants and its restricted mark (part of a
/// rotation's transaction).
pub(super) async fn copy_key_grants(
    conn: &mut SqliteConnection,
    old_id: &str,
    new_id: &str,
    now: i64,
) -> Result<(), Failure> {
    let rows =
        sqlx::query("SELECT tenant_id, server_id, tool FROM mcp_grants WHERE key_id = ? ORDER BY created_at, id")
            .bind(old_id)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_err)?;
    for row in rows {
        sqlx::query("INSERT INTO mcp_grants (id, tenant_id, key_id, server_id, tool, created_at) VALUES (?,?,?,?,?,?)")
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
    sqlx::query("INSERT INTO mcp_restricted_keys (key_id, tenant_id) SELECT ?, tenant_id FROM mcp_restricted_keys WHERE key_id = ?")
        .bind(new_id)
        .bind(old_id)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl McpStore for SqliteStore {
    async fn create_mcp_server(&self, new: NewMcpServer) -> Result<McpServer> {
        let server = rules::new_server(new)?;
        let server = &server;
        retry("create_mcp_server", move || write_server(&self.pool, server, true)).await?;
        Ok(server.clone())
    }

    async fn get_mcp_server(&self, id_or_name: &str) -> Result<McpServer> {
        Ok(server_row(&self.pool, id_or_name).await?)
    }

    async fn list_mcp_servers(&self) -> Result<Vec<McpServer>> {
        let rows =
            sqlx::query("SELECT * FROM mcp_servers ORDER BY name").fetch_all(&self.pool).await.map_err(db_err)?;
        rows.iter().map(server_from_row).collect()
    }

    async fn update_mcp_server(&self, id_or_name: &str, patch: McpServerPatch) -> Result<McpServer> {
        let patch = &patch;
        retry("update_mcp_server", move || async move {
            let mut tx = self.begin_write().await?;
            let current = server_row(&mut *tx, id_or_name).await?;
            let updated = rules::patch_server(current, patch.clone())?;
            write_server(&mut *tx, &updated, false).await?;
            tx.commit().await.map_err(db_err)?;
            Ok(updated)
        })
        .await
    }

    async fn delete_mcp_server(&self, id_or_name: &str) -> Result<McpServer> {
        let column = if id_or_name.starts_with(rules::SERVER_ID_PREFIX) { "id" } else { "name" };
        let sql = format!("DELETE FROM mcp_servers WHERE {column} = ? RETURNING *");
        let sql = &sql;
        let row = retry("delete_mcp_server", move || async move {
            sqlx::query(sql).bind(id_or_name).fetch_optional(&self.pool).await.map_err(db_err)
        })
        .await?;
        row.as_ref().map(server_from_row).transpose()?.ok_or_else(|| StoreError::not_found("MCP server", id_or_name))
    }

    async fn create_mcp_grant(&self, new: NewMcpGrant) -> Result<McpGrant> {
        rules::check_grant(&new)?;
        let new = &new;
        retry("create_mcp_grant", move || async move {
            let mut tx = self.begin_write().await?;
            let tenant = tenant_row(&mut *tx, &new.tenant).await?;
            if let Some(key_id) = &new.key_id {
                check_key(&mut *tx, key_id, &tenant.id).await?;
            }
            let server = server_row(&mut *tx, &new.server).await?;
            let grant = rules::new_grant(new, tenant.id, server.name);
            insert_grant(&mut tx, &grant, &server.id).await?;
            tx.commit().await.map_err(db_err)?;
            Ok(grant)
        })
        .await
    }

    async fn list_mcp_grants(&self, filter: McpGrantFilter) -> Result<Vec<McpGrant>> {
        let mut sql = format!("{GRANT_SELECT} WHERE 1=1");
        let mut args = vec![];
        for (column, value) in
            [("g.tenant_id", filter.tenant_id), ("g.key_id", filter.key_id), ("s.name", filter.server)]
        {
            if let Some(v) = value {
                sql.push_str(&format!(" AND {column} = ?"));
                args.push(Arg::Text(v));
            }
        }
        sql.push_str(" ORDER BY g.created_at, g.id");
        let rows = super::bind(sqlx::query(&sql), args).fetch_all(&self.pool).await.map_err(db_err)?;
        rows.iter().map(grant_from_row).collect()
    }

    async fn delete_mcp_grant(&self, id: &str) -> Result<McpGrant> {
        // Read with the server's name, then delete, under one write lock.
        retry("delete_mcp_grant", move || async move {
            let mut tx = self.begin_write().await?;
            let row = sqlx::query(&format!("{GRANT_SELECT} WHERE g.id = ?"))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?
                .ok_or_else(|| StoreError::not_found("MCP grant", id))?;
            let grant = grant_from_row(&row)?;
            sqlx::query("DELETE FROM mcp_grants WHERE id = ?").bind(id).execute(&mut *tx).await.map_err(db_err)?;
            tx.commit().await.map_err(db_err)?;
            Ok(grant)
        })
        .await
    }

    async fn mcp_grants(&self) -> Result<McpGrants> {
        // One read transaction: both reads see the same snapshot of the WAL.
        let mut tx = self.pool.begin().await.map_err(db_err)?;
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
        let server = server_row(&self.pool, server).await?;
        let rows = sqlx::query("SELECT * FROM mcp_tool_pins WHERE server_id = ? ORDER BY tool")
            .bind(&server.id)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| pin_from_row(r, &server.name)).collect()
    }

    async fn put_mcp_pin(&self, pin: &McpToolPin, expected: Option<&PinVersion>) -> Result<bool> {
        rules::check_pin(pin)?;
        let approved_def = rules::def_text("approved_def", &pin.approved_def)?;
        let pending_def = rules::def_text("pending_def", &pin.pending_def)?;
        let defs = (&approved_def, &pending_def);
        retry("put_mcp_pin", move || async move {
            let mut tx = self.begin_write().await?;
            let server = server_row(&mut *tx, &pin.server).await?;
            let written = write_pin(&mut tx, &server.id, pin, defs, expected).await?;
            tx.commit().await.map_err(db_err)?;
            Ok(written)
        })
        .await
    }
}

/// Inserts the pin if none is stored (`expected` `None`), or updates it if the stored one
/// is still at `expected` (`IS` compares NULLs as equal); whether it was written.
async fn write_pin(
    conn: &mut SqliteConnection,
    server_id: &str,
    pin: &McpToolPin,
    (approved_def, pending_def): (&Option<String>, &Option<String>),
    expected: Option<&PinVersion>,
) -> Result<bool, Failure> {
    let sql = match expected {
        None => {
            "INSERT INTO mcp_tool_pins (approved_hash, approved_def, pending_hash, pending_def, first_seen_at,
                changed_at, approved_at, approved_by, server_id, tool) VALUES (?,?,?,?,?,?,?,?,?,?)
             ON CONFLICT (server_id, tool) DO NOTHING"
        }
        Some(_) => {
            "UPDATE mcp_tool_pins SET approved_hash=?, approved_def=?, pending_hash=?, pending_def=?,
                first_seen_at=?, changed_at=?, approved_at=?, approved_by=?
             WHERE server_id=? AND tool=? AND approved_hash IS ? AND pending_hash IS ?"
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

fn from_json<T: serde::de::DeserializeOwned>(row: &SqliteRow, column: &str) -> Result<T> {
    let text: String = row.try_get(column).map_err(db_err)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Backend(format!("corrupt mcp_servers.{column}: {e}")))
}

fn u32_from(row: &SqliteRow, column: &str) -> Result<u32> {
    Ok(row.try_get::<i64, _>(column).map_err(db_err)?.clamp(1, i64::from(u32::MAX)) as u32)
}

fn server_from_row(row: &SqliteRow) -> Result<McpServer> {
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

fn grant_from_row(row: &SqliteRow) -> Result<McpGrant> {
    Ok(McpGrant {
        id: row.try_get("id").map_err(db_err)?,
        tenant_id: row.try_get("tenant_id").map_err(db_err)?,
        key_id: row.try_get("key_id").map_err(db_err)?,
        server: row.try_get("server").map_err(db_err)?,
        tool: row.try_get("tool").map_err(db_err)?,
        created_at: row.try_get("created_at").map_err(db_err)?,
    })
}

fn pin_from_row(row: &SqliteRow, server: &str) -> Result<McpToolPin> {
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
