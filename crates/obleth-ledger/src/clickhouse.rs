//! The production ledger: ClickHouse over its HTTP interface.
//!
//! Rows are inserted as `JSONEachRow` with every column given (old servers do not apply
//! column defaults to omitted JSON fields). The schema ([`SCHEMA`], `schema.sql`) is
//! created at the first insert and versioned in a small `obleth_ledger_migrations` table
//! (1: the rows, 2: the hourly sums, 3: the tool-call columns); it avoids everything
//! newer than Debian's 18.16 server (DateTime64, LowCardinality, `toStartOfInterval`,
//! `ADD COLUMN IF NOT EXISTS`), and is checked against a current engine by
//! `scripts/check-clickhouse-schema.sh`.
//!
//! The table is a `ReplacingMergeTree` keyed by request: a row that reaches it twice is
//! merged away eventually, and every query reads with `FINAL` so that it is never
//! counted twice meanwhile. The shipper's duplicate check keeps such rows rare.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::rollup::{self, SUMS};
use crate::{Filter, GroupBy, LedgerBackend, LedgerError, LedgerRow, Result, SeriesPoint, SeriesQuery, Totals};

/// Schema version 3, the tool-call columns of a table made before them.
pub const TOOLS_SCHEMA: &str = include_str!("clickhouse/tools.sql");

/// Schema version 2, the hourly sums (see `rollup`).
pub const ROLLUP_SCHEMA: &str = include_str!("clickhouse/rollup.sql");

/// Schema version 1 (`{db}` and `{table}` substituted).
pub const SCHEMA: &str = include_str!("clickhouse/schema.sql");

/// Request ids per duplicate-check query: the server parses at most 256 KiB of SQL.
const IDS_PER_QUERY: usize = 2000;

/// Where the ledger lives.
#[derive(Debug, Clone)]
pub struct ClickHouseConfig {
    /// `http://host:8123` (or `https://`).
    pub url: String,
    pub database: String,
    pub table: String,
    pub user: Option<String>,
    pub password: Option<SecretString>,
    /// Per request.
    pub timeout: Duration,
    /// CA certificates (PEM) to trust for an `https://` URL instead of the public roots
    /// (a private CA, or a self-signed server).
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:8123".into(),
            database: "default".into(),
            table: "obleth_usage".into(),
            user: None,
            password: None,
            timeout: Duration::from_secs(10),
            ca_file: None,
        }
    }
}

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The ClickHouse ledger.
pub struct ClickHouse {
    http: HttpClient,
    config: ClickHouseConfig,
    base: String,
    authorization: Option<String>,
    /// From when (ms) the hourly sums are complete: rows inserted before the sums existed
    /// are not in them. `u64::MAX` until the schema was checked (queries read rows only).
    rollup_since_ms: AtomicU64,
}

impl std::fmt::Debug for ClickHouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouse").field("url", &self.base).field("table", &self.table()).finish_non_exhaustive()
    }
}

/// A TLS client configuration trusting exactly the CA certificates in `path`.
fn trusting(path: &std::path::Path) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let invalid = |why: String| LedgerError::Invalid(format!("ledger.clickhouse_ca_file {}: {why}", path.display()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| invalid(e.to_string()))? {
        roots.add(cert.map_err(|e| invalid(e.to_string()))?).map_err(|e| invalid(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(invalid("holds no certificate".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl ClickHouse {
    /// Configures the client; connects nothing (a gateway starts while ClickHouse is down
    /// and spills to its log).
    pub fn new(config: ClickHouseConfig) -> Result<ClickHouse> {
        let base = config.url.trim_end_matches('/').to_owned();
        let uri: http::Uri = base.parse().map_err(|e| LedgerError::Invalid(format!("ledger.clickhouse_url: {e}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(LedgerError::Invalid(format!(
                "ledger.clickhouse_url must be http://host:port or https://host:port, not {base}"
            )));
        }
        for (what, name) in [("database", &config.database), ("table", &config.table)] {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(LedgerError::Invalid(format!(
                    "ledger.clickhouse_{what} must be letters, digits and underscores, not {name:?}"
                )));
            }
        }
        let authorization = config.user.as_ref().map(|user| {
            use base64::Engine;
            let password = config.password.as_ref().map(|p| p.expose_secret().to_owned()).unwrap_or_default();
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
        });
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.timeout.min(Duration::from_secs(5))));
        connector.enforce_http(false);
        let https = match &config.ca_file {
            None => hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots(),
            Some(path) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(trusting(path)?),
        };
        let https = https.https_or_http().enable_http1().wrap_connector(connector);
        let http = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(https);
        Ok(ClickHouse { http, config, base, authorization, rollup_since_ms: AtomicU64::new(u64::MAX) })
    }

    fn table(&self) -> String {
        format!("{}.{}", self.config.database, self.config.table)
    }

    /// Runs `sql` (in the body, or in the URL when `body` carries insert data) and returns
    /// the answer.
    async fn execute(&self, sql: &str, body: Option<Vec<u8>>) -> Result<Bytes> {
        // Built before any await: the serializer is not `Send`.
        let (query, body) = {
            let mut params = form_urlencoded::Serializer::new(String::new());
            params.append_pair("output_format_json_quote_64bit_integers", "0");
            params.append_pair("input_format_skip_unknown_fields", "1");
            let body = match body {
                Some(data) => {
                    params.append_pair("query", sql);
                    data
                }
                None => sql.as_bytes().to_vec(),
            };
            (params.finish(), body)
        };
        let mut request =
            Request::post(format!("{}/?{query}", self.base)).header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
        if let Some(auth) = &self.authorization {
            request = request.header(header::AUTHORIZATION, auth);
        }
        let request = request.body(Full::new(Bytes::from(body))).map_err(|e| LedgerError::Invalid(e.to_string()))?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| LedgerError::Unavailable(chain(&e)))?;
            let status = response.status();
            let body =
                response.into_body().collect().await.map_err(|e| LedgerError::Unavailable(e.to_string()))?.to_bytes();
            Ok::<_, LedgerError>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.config.timeout, exchange).await.map_err(|_| {
            LedgerError::Unavailable(format!("no answer within {}s", self.config.timeout.as_secs_f64()))
        })??;
        if status != StatusCode::OK {
            let message = String::from_utf8_lossy(&body).trim().chars().take(500).collect();
            return Err(LedgerError::Database { status: status.as_u16(), message });
        }
        Ok(body)
    }

    async fn select<T: for<'de> Deserialize<'de>>(&self, sql: &str) -> Result<Vec<T>> {
        let body = self.execute(&format!("{sql} FORMAT JSONEachRow"), None).await?;
        body.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|line| serde_json::from_slice(line).map_err(|e| LedgerError::Decode(e.to_string())))
            .collect()
    }

    async fn migrate(&self) -> Result<()> {
        let db = &self.config.database;
        self.execute(&format!("CREATE DATABASE IF NOT EXISTS {db}"), None).await?;
        self.execute(
            &format!(
                "CREATE TABLE IF NOT EXISTS {db}.obleth_ledger_migrations (tbl String, version UInt32, applied_at DateTime) ENGINE = TinyLog"
            ),
            None,
        )
        .await?;
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let table = quote(&self.config.table);
        let applied: Vec<Version> = self
            .select(&format!("SELECT max(version) AS version FROM {db}.obleth_ledger_migrations WHERE tbl = {table}"))
            .await?;
        let current = applied.first().map_or(0, |v| v.version);
        // Version 1 is `CREATE TABLE IF NOT EXISTS`: run every time, so that a table lost
        // since (a server that came back empty) is created again. Later versions (ALTERs)
        // run once, by the version recorded.
        for statement in sql_statements(SCHEMA, db, &self.config.table) {
            self.execute(&statement, None).await?;
        }
        if current < 1 {
            self.record_version(1).await?;
            tracing::info!(table = %self.table(), "created the ClickHouse ledger table");
        }
        // Version 2, the hourly sums: created once. Rows inserted before the view existed
        // are not in the sums, so they are used only from a little after it was made.
        if current < 2 {
            for statement in sql_statements(ROLLUP_SCHEMA, db, &self.config.table) {
                self.execute(&statement, None).await?;
            }
            self.record_version(2).await?;
            tracing::info!(table = %self.table(), "created the ClickHouse ledger's hourly sums");
        }
        // Version 3, the tool-call columns. Each is added only if missing (see tools.sql).
        // Two pods upgrading at once may both try one: the loser's `prepare` fails, and
        // its retry finds the column there.
        if current < 3 {
            let present = self.columns().await?;
            for statement in sql_statements(TOOLS_SCHEMA, db, &self.config.table) {
                let Some(column) = added_column(&statement) else {
                    return Err(LedgerError::Invalid(format!("tools.sql: not one ADD COLUMN: {statement}")));
                };
                if !present.contains(column) {
                    self.execute(&statement, None).await?;
                }
            }
            self.record_version(3).await?;
            tracing::info!(table = %self.table(), "added the tool-call columns to the ClickHouse ledger");
        }
        #[derive(Deserialize)]
        struct Since {
            at: u64,
        }
        let since: Vec<Since> = self
            .select(&format!(
                "SELECT toUInt32(min(applied_at)) AS at FROM {db}.obleth_ledger_migrations WHERE tbl = {table} AND version = 2"
            ))
            .await?;
        if let Some(s) = since.first() {
            self.rollup_since_ms.store(rollup_start_ms(s.at), Ordering::Relaxed);
        }
        Ok(())
    }

    /// The names of the rows' table's columns.
    async fn columns(&self) -> Result<HashSet<String>> {
        #[derive(Deserialize)]
        struct Column {
            name: String,
        }
        let sql = format!(
            "SELECT name FROM system.columns WHERE database = {} AND table = {}",
            quote(&self.config.database),
            quote(&self.config.table)
        );
        Ok(self.select::<Column>(&sql).await?.into_iter().map(|c| c.name).collect())
    }

    async fn record_version(&self, version: u32) -> Result<()> {
        let (db, table) = (&self.config.database, quote(&self.config.table));
        let sql = format!(
            "INSERT INTO {db}.obleth_ledger_migrations (tbl, version, applied_at) VALUES ({table}, {version}, now())"
        );
        self.execute(&sql, None).await.map(drop)
    }

    fn since(&self) -> u64 {
        self.rollup_since_ms.load(Ordering::Relaxed)
    }

    /// The `WHERE` of a query on the hourly sums (`f`'s bounds are whole hours).
    fn hours_clause(&self, f: &Filter) -> String {
        let w = format!(" WHERE hour >= {} AND hour < {}", f.from_ms / 1000, (f.to_ms / 1000).min(u32::MAX as u64));
        with_keys(w, f)
    }

    fn where_clause(&self, f: &Filter) -> String {
        // The DateTime bounds let the primary key and partitions prune; the millisecond
        // bounds are exact.
        let w = format!(
            " WHERE received_at >= toDateTime({}) AND received_at <= toDateTime({}) AND received_at_ms >= {} AND received_at_ms < {}",
            f.from_ms / 1000,
            (f.to_ms / 1000).min(u32::MAX as u64),
            f.from_ms,
            f.to_ms
        );
        with_keys(w, f)
    }
}

/// `w` narrowed to the filter's tenant and model, if it names them (both tables have both
/// columns).
fn with_keys(mut w: String, f: &Filter) -> String {
    if let Some(t) = &f.tenant_id {
        w.push_str(&format!(" AND tenant_id = {}", quote(t)));
    }
    if let Some(m) = &f.model {
        w.push_str(&format!(" AND model = {}", quote(m)));
    }
    w
}

#[async_trait]
impl LedgerBackend for ClickHouse {
    fn kind(&self) -> &'static str {
        "clickhouse"
    }

    async fn prepare(&self) -> Result<()> {
        // Not cached: the shipper calls it at start and after failures, and a server that
        // came back empty (its volume lost) needs the table again.
        self.migrate().await
    }

    async fn insert(&self, rows: &[LedgerRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut body = Vec::with_capacity(rows.len() * 512);
        for row in rows {
            row.write_json_line(&mut body);
        }
        self.execute(&format!("INSERT INTO {} FORMAT JSONEachRow", self.table()), Some(body)).await?;
        Ok(())
    }

    async fn existing(&self, rows: &[LedgerRow]) -> Result<HashSet<String>> {
        #[derive(Deserialize)]
        struct Id {
            request_id: String,
        }
        let mut found = HashSet::new();
        for chunk in rows.chunks(IDS_PER_QUERY) {
            let from = chunk.iter().map(|r| r.received_at).min().unwrap_or(0);
            let to = chunk.iter().map(|r| r.received_at).max().unwrap_or(0);
            let ids: Vec<String> = chunk.iter().map(|r| quote(&r.request_id)).collect();
            let sql = format!(
                "SELECT DISTINCT request_id FROM {} WHERE received_at >= toDateTime({from}) AND received_at <= toDateTime({to}) AND request_id IN ({})",
                self.table(),
                ids.join(",")
            );
            found.extend(self.select::<Id>(&sql).await?.into_iter().map(|i| i.request_id));
        }
        Ok(found)
    }

    async fn series(&self, query: &SeriesQuery) -> Result<Vec<SeriesPoint>> {
        query.filter.validate()?;
        let secs = query.bucket.seconds();
        let key = query.group_by.column().unwrap_or("''");
        let mut parts = Vec::new();
        for (filter, hours) in rollup::plan(&query.filter, Some(query.bucket), self.since()).parts() {
            let sql = if hours {
                format!(
                    "SELECT intDiv(hour, {secs}) * {secs} AS bucket_start, {key} AS key, {SUMS} FROM {}_hourly{} GROUP BY bucket_start, key",
                    self.table(),
                    self.hours_clause(filter)
                )
            } else {
                format!(
                    "SELECT intDiv(toUInt32(received_at), {secs}) * {secs} AS bucket_start, {key} AS key, {AGGREGATES} FROM {} FINAL{} GROUP BY bucket_start, key",
                    self.table(),
                    self.where_clause(filter)
                )
            };
            parts.extend(self.select::<SeriesPoint>(&sql).await?);
        }
        Ok(rollup::merge_series(parts))
    }

    async fn totals(&self, filter: &Filter, group_by: GroupBy) -> Result<Vec<Totals>> {
        filter.validate()?;
        let key = group_by.column().unwrap_or("''");
        let mut parts = Vec::new();
        for (filter, hours) in rollup::plan(filter, None, self.since()).parts() {
            let sql = if hours {
                format!(
                    "SELECT {key} AS key, {SUMS} FROM {}_hourly{} GROUP BY key",
                    self.table(),
                    self.hours_clause(filter)
                )
            } else {
                format!(
                    "SELECT {key} AS key, {AGGREGATES} FROM {} FINAL{} GROUP BY key",
                    self.table(),
                    self.where_clause(filter)
                )
            };
            parts.extend(self.select::<Totals>(&sql).await?);
        }
        Ok(rollup::merge_totals(parts))
    }

    async fn recent(&self, filter: &Filter, limit: u32) -> Result<Vec<LedgerRow>> {
        filter.validate()?;
        // `FINAL` over a month of rows is slow (one thread on older servers: 9 s for ten
        // million rows, docs/benchmarks.md). The newest rows lie at or after the
        // `limit`-th newest raw row, found without `FINAL`; only that tail is read with
        // it. Duplicates among the raw rows can put that row too late, so a tail that
        // holds fewer than `limit` rows is read again over the whole range.
        let cutoff: Vec<Cutoff> = self
            .select(&format!(
                "SELECT received_at_ms FROM {}{} ORDER BY received_at_ms DESC LIMIT 1 OFFSET {}",
                self.table(),
                self.where_clause(filter),
                limit.saturating_sub(1)
            ))
            .await?;
        if let Some(c) = cutoff.first().filter(|c| c.received_at_ms > filter.from_ms) {
            let tail = Filter { from_ms: c.received_at_ms, ..filter.clone() };
            let rows = self.newest(&tail, limit).await?;
            if rows.len() >= limit as usize {
                return Ok(rows);
            }
        }
        self.newest(filter, limit).await
    }
}

/// The time of the `limit`-th newest raw row.
#[derive(Deserialize)]
struct Cutoff {
    received_at_ms: u64,
}

impl ClickHouse {
    /// The newest `limit` rows in `filter`, each request once.
    async fn newest(&self, filter: &Filter, limit: u32) -> Result<Vec<LedgerRow>> {
        // `received_at` is a DateTime (text in JSON): derived from the milliseconds instead.
        let columns = LEDGER_COLUMNS.replace("received_at, ", "");
        let sql = format!(
            "SELECT {columns} FROM {} FINAL{} ORDER BY received_at_ms DESC, request_id DESC LIMIT {limit}",
            self.table(),
            self.where_clause(filter)
        );
        let mut rows: Vec<LedgerRow> = self.select(&sql).await?;
        for r in &mut rows {
            r.received_at = r.received_at_ms / 1000;
        }
        Ok(rows)
    }
}

const LEDGER_COLUMNS: &str = "request_id, received_at, received_at_ms, admitted_at_ms, first_token_at_ms, \
    finished_at_ms, tenant_id, key_prefix, group_name, route, requested_model, model, upstream_model, input_tokens, \
    output_tokens, cached_tokens, tokens_estimated, cost, queue_wait_ms, ttft_ms, duration_ms, admission_class, status, \
    error_type, streamed, client_disconnected, mcp_server, args_sha256, result_bytes, upstream_error, capture";

const AGGREGATES: &str = "count() AS requests, \
    countIf(status >= 400) AS errors, \
    countIf(admission_class = 'rejected') AS rejected, \
    countIf(admission_class = 'brownout') AS brownout, \
    sum(input_tokens) AS input_tokens, \
    sum(output_tokens) AS output_tokens, \
    sum(cached_tokens) AS cached_tokens, \
    sum(cost) AS cost, \
    sum(queue_wait_ms) AS queue_wait_ms";

/// The first hour the sums are complete for, given when (seconds) their view was made:
/// the next whole hour after a five-minute margin for pods' clocks and for rows received
/// just before but inserted just after.
fn rollup_start_ms(created_at_s: u64) -> u64 {
    (created_at_s + 300).div_ceil(3600) * 3600 * 1000
}

/// The statements of a schema file, comments removed, names substituted.
fn sql_statements(file: &str, db: &str, table: &str) -> Vec<String> {
    let text: String = file.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
    text.split(';').map(|s| s.trim().replace("{db}", db).replace("{table}", table)).filter(|s| !s.is_empty()).collect()
}

/// The column an `ALTER TABLE … ADD COLUMN name …` statement adds.
fn added_column(statement: &str) -> Option<&str> {
    let mut words = statement.split_whitespace();
    words.by_ref().find(|w| w.eq_ignore_ascii_case("COLUMN"))?;
    words.next()
}

/// An error with its causes (a connection error says why: refused, TLS, DNS).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A ClickHouse string literal.
fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('\'');
    for c in s.chars() {
        match c {
            '\\' => q.push_str("\\\\"),
            '\'' => q.push_str("\\'"),
            '\0' => q.push_str("\\0"),
            '\n' => q.push_str("\\n"),
            '\r' => q.push_str("\\r"),
            c => q.push(c),
        }
    }
    q.push('\'');
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_what_would_end_the_literal() {
        assert_eq!(quote("a'b\\c"), r"'a\'b\\c'");
        assert_eq!(quote("x\0y\n"), r"'x\0y\n'");
    }

    #[test]
    fn every_version_3_statement_adds_one_named_column() {
        let statements = sql_statements(TOOLS_SCHEMA, "db", "t");
        let columns: Vec<_> = statements.iter().filter_map(|s| added_column(s)).collect();
        assert_eq!(columns, ["mcp_server", "args_sha256", "result_bytes", "upstream_error", "capture"]);
        // The file and the table made now agree: each column is in schema.sql too.
        for c in columns {
            assert!(SCHEMA.contains(&format!("\n    {c} ")), "{c} is missing from schema.sql");
        }
    }

    #[test]
    fn names_are_checked() {
        let bad = ClickHouseConfig { table: "usage; DROP".into(), ..ClickHouseConfig::default() };
        assert!(ClickHouse::new(bad).is_err());
        let bad = ClickHouseConfig { url: "redis://x".into(), ..ClickHouseConfig::default() };
        assert!(ClickHouse::new(bad).is_err());
        assert!(ClickHouse::new(ClickHouseConfig::default()).is_ok());
    }
}
