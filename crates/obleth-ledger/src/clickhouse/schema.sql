-- The usage ledger's ClickHouse schema, version 1. Applied by obleth at start
-- (`{db}` and `{table}` are substituted). Written for the oldest server obleth supports
-- (Debian's 18.16) and current releases alike: no DateTime64, no LowCardinality, no
-- `IF NOT EXISTS` on columns, every column sent explicitly on insert.
--
-- ReplacingMergeTree keyed by (tenant_id, received_at, request_id): a row sent twice
-- (a replay after a crash between insert and acknowledgement) collapses to one when
-- parts merge, and queries read with FINAL so they never count it twice meanwhile.
-- Partitioned by month; ordered for per-tenant time-range queries.
--
-- The last five columns (tool calls) are version 3's: a table made before it gets them
-- from tools.sql; one made now, or made again after it was lost, has them from here.
CREATE TABLE IF NOT EXISTS {db}.{table} (
    request_id String,
    received_at DateTime,
    received_at_ms UInt64,
    admitted_at_ms Nullable(UInt64),
    first_token_at_ms Nullable(UInt64),
    finished_at_ms UInt64,
    tenant_id String,
    key_prefix String,
    group_name String,
    route String,
    requested_model String,
    model String,
    upstream_model String,
    input_tokens UInt64,
    output_tokens UInt64,
    cached_tokens UInt64,
    tokens_estimated UInt8,
    cost Float64,
    queue_wait_ms UInt64,
    ttft_ms Nullable(UInt64),
    duration_ms UInt64,
    admission_class String,
    status UInt16,
    error_type String,
    streamed UInt8,
    client_disconnected UInt8,
    mcp_server String DEFAULT '',
    args_sha256 String DEFAULT '',
    result_bytes UInt64 DEFAULT 0,
    upstream_error String DEFAULT '',
    capture String DEFAULT ''
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(received_at)
ORDER BY (tenant_id, received_at, request_id)
SETTINGS index_granularity = 8192
