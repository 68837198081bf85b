-- The ledger's hourly sums in ClickHouse, schema version 2 (`{db}` and `{table}`
-- substituted; statements run one by one). As old as version 1 (Debian's 18.16).
--
-- One row per (hour, tenant, model) per insert, summed as parts merge
-- (SummingMergeTree); queries add them up with sum() and GROUP BY, so they never need
-- FINAL. The materialized view fills it from every insert into the rows' table. The
-- hour is seconds since the epoch (a UInt32, not a DateTime: no server time zone can
-- shift it), rounded down to the hour.
CREATE TABLE IF NOT EXISTS {db}.{table}_hourly (
    hour UInt32,
    tenant_id String,
    model String,
    requests UInt64,
    errors UInt64,
    rejected UInt64,
    brownout UInt64,
    input_tokens UInt64,
    output_tokens UInt64,
    cached_tokens UInt64,
    cost Float64,
    queue_wait_ms UInt64
) ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(toDateTime(hour))
ORDER BY (hour, tenant_id, model);
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{table}_hourly_mv TO {db}.{table}_hourly AS
SELECT
    toUInt32(intDiv(toUInt32(received_at), 3600) * 3600) AS hour,
    tenant_id,
    model,
    count() AS requests,
    countIf(status >= 400) AS errors,
    countIf(admission_class = 'rejected') AS rejected,
    countIf(admission_class = 'brownout') AS brownout,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cached_tokens) AS cached_tokens,
    sum(cost) AS cost,
    sum(queue_wait_ms) AS queue_wait_ms
FROM {db}.{table}
GROUP BY hour, tenant_id, model;
