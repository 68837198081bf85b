//! The embedded ledger: one SQLite file, so that the demo and single-node installs
//! record usage with no external service.
//!
//! `request_id` is the primary key and rows are inserted with `INSERT OR IGNORE`, so a
//! batch replayed after a crash never counts twice; [`LedgerBackend::existing`] is
//! answered anyway, for the shipper's metrics. The file is separate from the control
//! plane's database: the ledger's write load must not contend with key lookups.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool};

use crate::rollup::{self, SUMS};
use crate::{Filter, GroupBy, LedgerBackend, LedgerError, LedgerRow, Result, SeriesPoint, SeriesQuery, Totals};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS usage (
    request_id TEXT PRIMARY KEY NOT NULL,
    received_at INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL,
    admitted_at_ms INTEGER,
    first_token_at_ms INTEGER,
    finished_at_ms INTEGER NOT NULL,
    tenant_id TEXT NOT NULL,
    key_prefix TEXT NOT NULL,
    group_name TEXT NOT NULL,
    route TEXT NOT NULL,
    requested_model TEXT NOT NULL,
    model TEXT NOT NULL,
    upstream_model TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    tokens_estimated INTEGER NOT NULL,
    cost REAL NOT NULL,
    queue_wait_ms INTEGER NOT NULL,
    ttft_ms INTEGER,
    duration_ms INTEGER NOT NULL,
    admission_class TEXT NOT NULL,
    status INTEGER NOT NULL,
    error_type TEXT NOT NULL,
    streamed INTEGER NOT NULL,
    client_disconnected INTEGER NOT NULL,
    mcp_server TEXT NOT NULL DEFAULT '',
    args_sha256 TEXT NOT NULL DEFAULT '',
    result_bytes INTEGER NOT NULL DEFAULT 0,
    upstream_error TEXT NOT NULL DEFAULT '',
    capture TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS usage_tenant_time ON usage (tenant_id, received_at_ms);
CREATE INDEX IF NOT EXISTS usage_time ON usage (received_at_ms);
"#;

/// The tool-call columns, which files made before them lack (see [`add_tool_columns`]):
/// `ADD COLUMN` with a constant default only rewrites the schema, not the rows, so the
/// upgrade of a large file is instant.
const TOOL_COLUMNS: [(&str, &str); 5] = [
    ("mcp_server", "TEXT NOT NULL DEFAULT ''"),
    ("args_sha256", "TEXT NOT NULL DEFAULT ''"),
    ("result_bytes", "INTEGER NOT NULL DEFAULT 0"),
    ("upstream_error", "TEXT NOT NULL DEFAULT ''"),
    ("capture", "TEXT NOT NULL DEFAULT ''"),
];

/// The hourly sums (see `rollup`), created once with a fill from the rows already there
/// (a ledger file from before the sums), in one transaction holding the write lock; from
/// then on [`SqliteLedger::insert`] adds each batch's new rows in the batch's own
/// transaction, so the sums never disagree with the rows. Statements are separated by
/// blank lines.
const ROLLUP: &str = r#"
CREATE TABLE usage_hourly (
    hour INTEGER NOT NULL,
    tenant_id TEXT NOT NULL,
    model TEXT NOT NULL,
    requests INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    rejected INTEGER NOT NULL,
    brownout INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    cost REAL NOT NULL,
    queue_wait_ms INTEGER NOT NULL,
    PRIMARY KEY (hour, tenant_id, model)
) WITHOUT ROWID;

INSERT INTO usage_hourly
    SELECT received_at_ms / 3600000 * 3600 AS hour, tenant_id, model, count(*), sum(status >= 400),
        sum(admission_class = 'rejected'), sum(admission_class = 'brownout'), sum(input_tokens),
        sum(output_tokens), sum(cached_tokens), sum(cost), sum(queue_wait_ms)
    FROM usage GROUP BY hour, tenant_id, model
"#;

/// How a batch's sums are added to an hour, tenant and model already there.
const ADD_SUMS_CONFLICT: &str = " ON CONFLICT (hour, tenant_id, model) DO UPDATE SET
        requests = requests + excluded.requests, errors = errors + excluded.errors,
        rejected = rejected + excluded.rejected, brownout = brownout + excluded.brownout,
        input_tokens = input_tokens + excluded.input_tokens,
        output_tokens = output_tokens + excluded.output_tokens,
        cached_tokens = cached_tokens + excluded.cached_tokens, cost = cost + excluded.cost,
        queue_wait_ms = queue_wait_ms + excluded.queue_wait_ms";

const COLUMNS: &str = "request_id, received_at, received_at_ms, admitted_at_ms, first_token_at_ms, finished_at_ms, \
     tenant_id, key_prefix, group_name, route, requested_model, model, upstream_model, input_tokens, output_tokens, \
     cached_tokens, tokens_estimated, cost, queue_wait_ms, ttft_ms, duration_ms, admission_class, status, error_type, \
     streamed, client_disconnected, mcp_server, args_sha256, result_bytes, upstream_error, capture";

/// Rows per `INSERT` statement (SQLite binds at most 32766 variables; 31 columns per row).
/// A prepared statement costs SQLite about 8 KiB per row of `VALUES`: 1000 rows held 8 MiB
/// while each insert ran. A statement of 64 rows holds about 0.5 MiB, and since every
/// full chunk has the same text, it is prepared once per connection and cached.
const ROWS_PER_STATEMENT: usize = 64;

/// The SQLite ledger.
#[derive(Clone)]
pub struct SqliteLedger {
    pool: SqlitePool,
}

impl std::fmt::Debug for SqliteLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteLedger").finish_non_exhaustive()
    }
}

impl SqliteLedger {
    /// Opens (creating if missing) the ledger at `url` (`sqlite://usage.db` or `sqlite::memory:`).
    pub async fn connect(url: &str) -> Result<SqliteLedger> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| LedgerError::Invalid(format!("ledger.sqlite_url: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // The write-ahead log in front of it already made each batch durable.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            // SQLite's default page cache is 2 MiB per connection: 8 MiB for the pool, filled
            // within minutes of traffic. Appends touch the tail of the table and its indexes,
            // and queries are the admin's; 512 KiB each (pages come back from the OS's cache).
            .pragma("cache_size", "-512");
        let max = if url.contains(":memory:") { 1 } else { 4 };
        let pool = SqlitePoolOptions::new().max_connections(max).connect_with(options).await.map_err(db)?;
        let ledger = SqliteLedger { pool };
        ledger.prepare().await?;
        Ok(ledger)
    }
}

#[async_trait]
impl LedgerBackend for SqliteLedger {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn prepare(&self) -> Result<()> {
        sqlx::raw_sql(SCHEMA).execute(&self.pool).await.map_err(db)?;
        add_tool_columns(&self.pool).await?;
        add_rollup(&self.pool).await
    }

    async fn insert(&self, rows: &[LedgerRow]) -> Result<()> {
        // Nearly always every row is new (the shipper checks replays first): the rows go in
        // 64 a statement and all of them are summed. When some were stored already, that
        // is undone and the batch goes in row by row, to sum only the rows inserted.
        let mut tx = self.pool.begin().await.map_err(db)?;
        let mut inserted = 0;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            inserted += insert_rows(&mut tx, chunk).await?;
        }
        let mut sums = HashMap::new();
        if inserted == rows.len() as u64 {
            rows.iter().for_each(|r| add_to_hour(&mut sums, r));
        } else {
            tx.rollback().await.map_err(db)?;
            tx = self.pool.begin().await.map_err(db)?;
            for r in rows {
                if insert_rows(&mut tx, std::slice::from_ref(r)).await? == 1 {
                    add_to_hour(&mut sums, r);
                }
            }
        }
        add_sums(&mut tx, &sums).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn existing(&self, rows: &[LedgerRow]) -> Result<HashSet<String>> {
        let mut found = HashSet::new();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT request_id FROM usage WHERE request_id IN (");
            let mut ids = q.separated(", ");
            for r in chunk {
                ids.push_bind(r.request_id.as_str());
            }
            q.push(")");
            // Cached only at full size, like `insert`'s statements.
            let full = chunk.len() == ROWS_PER_STATEMENT;
            for row in q.build().persistent(full).fetch_all(&self.pool).await.map_err(db)? {
                found.insert(row.try_get::<String, _>(0).map_err(db)?);
            }
        }
        Ok(found)
    }

    async fn series(&self, query: &SeriesQuery) -> Result<Vec<SeriesPoint>> {
        query.filter.validate()?;
        let plan = rollup::plan(&query.filter, Some(query.bucket), 0);
        let secs = query.bucket.seconds() as i64;
        let key = query.group_by.column().unwrap_or("''");
        let mut parts = Vec::new();
        for (filter, hours) in plan.parts() {
            let select = if hours {
                format!("SELECT (hour / {secs}) * {secs} AS bucket, {key} AS key, {SUMS} FROM usage_hourly")
            } else {
                format!("SELECT (received_at / {secs}) * {secs} AS bucket, {key} AS key, {AGGREGATES} FROM usage")
            };
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(select);
            push_filter(&mut q, filter, hours);
            q.push(" GROUP BY bucket, key");
            for row in q.build().fetch_all(&self.pool).await.map_err(db)? {
                parts.push(SeriesPoint { bucket_start: get_u64(&row, "bucket")?, totals: totals(&row)? });
            }
        }
        Ok(rollup::merge_series(parts))
    }

    async fn totals(&self, filter: &Filter, group_by: GroupBy) -> Result<Vec<Totals>> {
        filter.validate()?;
        let plan = rollup::plan(filter, None, 0);
        let key = group_by.column().unwrap_or("''");
        let mut parts = Vec::new();
        for (filter, hours) in plan.parts() {
            let (aggregates, table) = if hours { (SUMS, "usage_hourly") } else { (AGGREGATES, "usage") };
            let mut q: QueryBuilder<Sqlite> =
                QueryBuilder::new(format!("SELECT {key} AS key, {aggregates} FROM {table}"));
            push_filter(&mut q, filter, hours);
            q.push(" GROUP BY key");
            for row in q.build().fetch_all(&self.pool).await.map_err(db)? {
                parts.push(totals(&row)?);
            }
        }
        Ok(rollup::merge_totals(parts))
    }

    async fn recent(&self, filter: &Filter, limit: u32) -> Result<Vec<LedgerRow>> {
        filter.validate()?;
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!("SELECT {COLUMNS} FROM usage"));
        push_filter(&mut q, filter, false);
        q.push(" ORDER BY received_at_ms DESC, request_id DESC LIMIT ");
        q.push_bind(i64::from(limit));
        let rows = q.build().fetch_all(&self.pool).await.map_err(db)?;
        rows.iter().map(row).collect()
    }
}

/// Creates the hourly sums and fills them from the rows, once (see [`ROLLUP`]).
async fn add_rollup(pool: &SqlitePool) -> Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
    let table = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'usage_hourly'";
    let has: i64 = sqlx::query_scalar(table).fetch_one(&mut *tx).await.map_err(db)?;
    if has == 0 {
        for statement in ROLLUP.split("\n\n") {
            sqlx::query(statement).execute(&mut *tx).await.map_err(db)?;
        }
    }
    tx.commit().await.map_err(db)
}

/// Adds the tool-call columns a file made before them lacks, once: a column already
/// there is left alone, so this is a no-op on every later start, and a start that died
/// half-way finishes the job. One transaction holding the write lock, so two processes
/// opening the same old file do not both add a column.
async fn add_tool_columns(pool: &SqlitePool) -> Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
    let present: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pragma_table_info('usage')").fetch_all(&mut *tx).await.map_err(db)?;
    for (name, definition) in TOOL_COLUMNS {
        if !present.iter().any(|p| p == name) {
            let sql = format!("ALTER TABLE usage ADD COLUMN {name} {definition}");
            sqlx::query(&sql).execute(&mut *tx).await.map_err(db)?;
            tracing::info!(column = name, "added a tool-call column to the SQLite ledger");
        }
    }
    tx.commit().await.map_err(db)
}

/// One hour, tenant and model.
type HourKey<'a> = (i64, &'a str, &'a str);

/// Adds `row` to its hour's sums.
fn add_to_hour<'a>(sums: &mut HashMap<HourKey<'a>, Totals>, row: &'a LedgerRow) {
    let hour = (row.received_at_ms / 3_600_000 * 3600) as i64;
    let t = sums.entry((hour, row.tenant_id.as_str(), row.model.as_str())).or_default();
    t.requests += 1;
    t.errors += u64::from(row.status >= 400);
    t.rejected += u64::from(row.admission_class == "rejected");
    t.brownout += u64::from(row.admission_class == "brownout");
    t.input_tokens += u64::from(row.input_tokens);
    t.output_tokens += u64::from(row.output_tokens);
    t.cached_tokens += u64::from(row.cached_tokens);
    t.cost += row.cost;
    t.queue_wait_ms += row.queue_wait_ms;
}

/// `INSERT OR IGNORE`s `rows` in one statement; the number inserted.
async fn insert_rows(conn: &mut SqliteConnection, rows: &[LedgerRow]) -> Result<u64> {
    let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!("INSERT OR IGNORE INTO usage ({COLUMNS}) "));
    q.push_values(rows, |mut b, r| {
        b.push_bind(r.request_id.as_str())
            .push_bind(r.received_at as i64)
            .push_bind(r.received_at_ms as i64)
            .push_bind(r.admitted_at_ms.map(|v| v as i64))
            .push_bind(r.first_token_at_ms.map(|v| v as i64))
            .push_bind(r.finished_at_ms as i64)
            .push_bind(r.tenant_id.as_str())
            .push_bind(r.key_prefix.as_str())
            .push_bind(r.group_name.as_str())
            .push_bind(r.route.as_str())
            .push_bind(r.requested_model.as_str())
            .push_bind(r.model.as_str())
            .push_bind(r.upstream_model.as_str())
            .push_bind(i64::from(r.input_tokens))
            .push_bind(i64::from(r.output_tokens))
            .push_bind(i64::from(r.cached_tokens))
            .push_bind(r.tokens_estimated)
            .push_bind(r.cost)
            .push_bind(r.queue_wait_ms as i64)
            .push_bind(r.ttft_ms.map(|v| v as i64))
            .push_bind(r.duration_ms as i64)
            .push_bind(r.admission_class.as_str())
            .push_bind(r.status as i64)
            .push_bind(r.error_type.as_str())
            .push_bind(r.streamed)
            .push_bind(r.client_disconnected)
            .push_bind(r.mcp_server.as_str())
            .push_bind(r.args_sha256.as_str())
            .push_bind(r.result_bytes.min(i64::MAX as u64) as i64)
            .push_bind(r.upstream_error.as_str())
            .push_bind(r.capture.as_str());
    });
    // Only full chunks are cached: a shorter last chunk's text changes with its row
    // count, and sqlx keeps up to 100 prepared statements per connection (caching
    // every size of 1000-row inserts held ~20 MiB under load).
    let full = rows.len() == ROWS_PER_STATEMENT;
    Ok(q.build().persistent(full).execute(conn).await.map_err(db)?.rows_affected())
}

/// Adds a batch's sums to their hours, up to [`ROWS_PER_STATEMENT`] hours, tenants and
/// models a statement (a batch over many tenants has as many sums as rows; one statement
/// each would cost more than the rows' own insert).
async fn add_sums(conn: &mut SqliteConnection, sums: &HashMap<HourKey<'_>, Totals>) -> Result<()> {
    let sums: Vec<(&HourKey<'_>, &Totals)> = sums.iter().collect();
    for chunk in sums.chunks(ROWS_PER_STATEMENT) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("INSERT INTO usage_hourly ");
        q.push_values(chunk, |mut b, ((hour, tenant, model), t)| {
            b.push_bind(*hour)
                .push_bind(*tenant)
                .push_bind(*model)
                .push_bind(t.requests as i64)
                .push_bind(t.errors as i64)
                .push_bind(t.rejected as i64)
                .push_bind(t.brownout as i64)
                .push_bind(t.input_tokens as i64)
                .push_bind(t.output_tokens as i64)
                .push_bind(t.cached_tokens as i64)
                .push_bind(t.cost)
                .push_bind(t.queue_wait_ms as i64);
        });
        q.push(ADD_SUMS_CONFLICT);
        let full = chunk.len() == ROWS_PER_STATEMENT;
        q.build().persistent(full).execute(&mut *conn).await.map_err(db)?;
    }
    Ok(())
}

const AGGREGATES: &str = "count(*) AS requests, \
    coalesce(sum(status >= 400), 0) AS errors, \
    coalesce(sum(admission_class = 'rejected'), 0) AS rejected, \
    coalesce(sum(admission_class = 'brownout'), 0) AS brownout, \
    coalesce(sum(input_tokens), 0) AS input_tokens, \
    coalesce(sum(output_tokens), 0) AS output_tokens, \
    coalesce(sum(cached_tokens), 0) AS cached_tokens, \
    coalesce(sum(cost), 0.0) AS cost, \
    coalesce(sum(queue_wait_ms), 0) AS queue_wait_ms";

/// The `WHERE` of a query on the rows, or on the hourly sums when `hours`.
fn push_filter(q: &mut QueryBuilder<Sqlite>, f: &Filter, hours: bool) {
    let (column, from, to) = if hours {
        ("hour", (f.from_ms / 1000) as i64, (f.to_ms / 1000).min(i64::MAX as u64) as i64)
    } else {
        ("received_at_ms", f.from_ms as i64, f.to_ms.min(i64::MAX as u64) as i64)
    };
    q.push(format!(" WHERE {column} >= "));
    q.push_bind(from);
    q.push(format!(" AND {column} < "));
    q.push_bind(to);
    if let Some(t) = &f.tenant_id {
        q.push(" AND tenant_id = ");
        q.push_bind(t.clone());
    }
    if let Some(m) = &f.model {
        q.push(" AND model = ");
        q.push_bind(m.clone());
    }
}

fn totals(row: &SqliteRow) -> Result<Totals> {
    Ok(Totals {
        key: row.try_get("key").map_err(db)?,
        requests: get_u64(row, "requests")?,
        errors: get_u64(row, "errors")?,
        rejected: get_u64(row, "rejected")?,
        brownout: get_u64(row, "brownout")?,
        input_tokens: get_u64(row, "input_tokens")?,
        output_tokens: get_u64(row, "output_tokens")?,
        cached_tokens: get_u64(row, "cached_tokens")?,
        cost: row.try_get("cost").map_err(db)?,
        queue_wait_ms: get_u64(row, "queue_wait_ms")?,
    })
}

fn row(r: &SqliteRow) -> Result<LedgerRow> {
    let opt = |name: &str| -> Result<Option<u64>> {
        Ok(r.try_get::<Option<i64>, _>(name).map_err(db)?.map(|v| v.max(0) as u64))
    };
    Ok(LedgerRow {
        request_id: r.try_get("request_id").map_err(db)?,
        received_at: get_u64(r, "received_at")?,
        received_at_ms: get_u64(r, "received_at_ms")?,
        admitted_at_ms: opt("admitted_at_ms")?,
        first_token_at_ms: opt("first_token_at_ms")?,
        finished_at_ms: get_u64(r, "finished_at_ms")?,
        tenant_id: r.try_get("tenant_id").map_err(db)?,
        key_prefix: r.try_get("key_prefix").map_err(db)?,
        group_name: r.try_get("group_name").map_err(db)?,
        route: r.try_get("route").map_err(db)?,
        requested_model: r.try_get("requested_model").map_err(db)?,
        model: r.try_get("model").map_err(db)?,
        upstream_model: r.try_get("upstream_model").map_err(db)?,
        input_tokens: get_u32(r, "input_tokens")?,
        output_tokens: get_u32(r, "output_tokens")?,
        cached_tokens: get_u32(r, "cached_tokens")?,
        tokens_estimated: r.try_get("tokens_estimated").map_err(db)?,
        cost: r.try_get("cost").map_err(db)?,
        queue_wait_ms: get_u64(r, "queue_wait_ms")?,
        ttft_ms: opt("ttft_ms")?,
        duration_ms: get_u64(r, "duration_ms")?,
        admission_class: r.try_get("admission_class").map_err(db)?,
        status: get_u64(r, "status")? as u16,
        error_type: r.try_get("error_type").map_err(db)?,
        streamed: r.try_get("streamed").map_err(db)?,
        client_disconnected: r.try_get("client_disconnected").map_err(db)?,
        mcp_server: r.try_get("mcp_server").map_err(db)?,
        args_sha256: r.try_get("args_sha256").map_err(db)?,
        result_bytes: get_u64(r, "result_bytes")?,
        upstream_error: r.try_get("upstream_error").map_err(db)?,
        capture: r.try_get("capture").map_err(db)?,
    })
}

fn get_u64(row: &SqliteRow, name: &str) -> Result<u64> {
    Ok(row.try_get::<i64, _>(name).map_err(db)?.max(0) as u64)
}

/// A token count, refused rather than wrapped if the column holds anything else.
fn get_u32(row: &SqliteRow, name: &str) -> Result<u32> {
    let v = row.try_get::<i64, _>(name).map_err(db)?;
    u32::try_from(v)
        .map_err(|_| LedgerError::Database { status: 0, message: format!("{name} {v} is not a token count") })
}

fn db(e: sqlx::Error) -> LedgerError {
    match e {
        sqlx::Error::Io(e) => LedgerError::Io(e),
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => LedgerError::Unavailable(e.to_string()),
        e => LedgerError::Database { status: 0, message: e.to_string() },
    }
}
