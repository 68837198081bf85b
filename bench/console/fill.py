#!/usr/bin/env python3
"""Synthetic ledger rows for the console benchmark, the same distribution in both backends.

  fill.py sqlite DB TENANTS_TSV N NOW_MS         inserts N rows into DB's `usage` table
  fill.py clickhouse TABLE TENANTS_TSV N NOW_MS  prints the INSERT ... SELECT for ClickHouse

TENANTS_TSV: one tenant a line, `id<TAB>name<TAB>key_prefix` (the real tenants, so that
names resolve and a tenant's key sees its own rows). Row i of N is received at
NOW_MS - 30 days + i * (30 days / N) plus a jitter below one step, so rows are spread
evenly over the last 30 days, in time order (as the gateway appends them; request ids
are time-ordered like its UUIDv7s). From one 63-bit random number r per row:
tenant r % T (uniform), model (r / 200) % 5, input 20..2019 tokens, output 1..500,
class fast 80 % / queued 17 % / brownout 2 % / rejected 1 % (status 429, no tokens),
0.5 % of the rest status 502, a quarter with half the input cached, half streamed.
"""
import sqlite3
import sys
import time

SPAN_MS = 30 * 86_400_000
MODELS = ["mock-model", "gpt-4o-mini", "llama-3.1-8b", "qwen2.5-7b", "mistral-7b"]


def columns(r, model_of):
    """The 26 columns as SQL expressions over r (a non-negative integer), i, ms and the
    tenant's id and prefix (tid, tprefix): one text for both dialects."""
    cls = f"(({r} / 1000000000) % 100)"
    klass = f"(CASE WHEN {cls} < 80 THEN 'fast' WHEN {cls} < 97 THEN 'queued' WHEN {cls} < 99 THEN 'brownout' ELSE 'rejected' END)"
    rejected = f"({cls} >= 99)"
    status = f"(CASE WHEN {rejected} THEN 429 WHEN ({r} / 100000000000) % 200 = 0 THEN 502 ELSE 200 END)"
    inp = f"(CASE WHEN {rejected} THEN 0 ELSE 20 + ({r} / 1000) % 2000 END)"
    out = f"(CASE WHEN {rejected} THEN 0 ELSE 1 + ({r} / 2000000) % 500 END)"
    wait = f"(CASE WHEN {cls} < 80 THEN 0 WHEN {cls} < 97 THEN ({r} / 7) % 800 ELSE ({r} / 7) % 2000 END)"
    ttft = f"(30 + ({r} / 11) % 300)"
    dur = f"({wait} + {ttft} + {out} * 5)"
    m = f"(({r} / 200) % 5)"
    return {
        "received_at_ms": "ms",
        "admitted_at_ms": f"(CASE WHEN {rejected} THEN NULL ELSE ms + {wait} END)",
        "first_token_at_ms": f"(CASE WHEN {rejected} THEN NULL ELSE ms + {wait} + {ttft} END)",
        "finished_at_ms": f"(ms + {dur})",
        "tenant_id": "tid",
        "key_prefix": "tprefix",
        "group_name": "'default'",
        "route": "'chat_completions'",
        "requested_model": model_of(m),
        "model": model_of(m),
        "upstream_model": model_of(m),
        "input_tokens": inp,
        "output_tokens": out,
        "cached_tokens": f"(CASE WHEN ({r} / 17) % 4 = 0 THEN {inp} / 2 ELSE 0 END)",
        "tokens_estimated": "0",
        "cost": f"(({inp} * 0.15 + {out} * 0.6) / 1000000.0 * ({m} + 1))",
        "queue_wait_ms": wait,
        "ttft_ms": f"(CASE WHEN {rejected} THEN NULL ELSE {wait} + {ttft} END)",
        "duration_ms": dur,
        "admission_class": klass,
        "status": status,
        "error_type": f"(CASE WHEN {rejected} THEN 'rate_limited' WHEN {status} = 502 THEN 'upstream_error' ELSE '' END)",
        "streamed": f"(({r} / 13) % 2)",
        "client_disconnected": f"(CASE WHEN ({r} / 19) % 500 = 0 THEN 1 ELSE 0 END)",
    }


def tenants(path):
    rows = [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
    return [(r[0], r[2]) for r in rows]


def sqlite_fill(db, tpath, n, now):
    ts = tenants(tpath)
    start = now - SPAN_MS
    step = SPAN_MS // n
    c = sqlite3.connect(db, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=OFF")
    c.execute("PRAGMA cache_size=-262144")
    c.execute("CREATE TEMP TABLE tn(idx INTEGER PRIMARY KEY, tid TEXT, tprefix TEXT)")
    c.executemany("INSERT INTO tn VALUES (?, ?, ?)", [(i, t, p) for i, (t, p) in enumerate(ts)])
    model_of = lambda m: "(CASE %s %s END)" % (m, " ".join(f"WHEN {i} THEN '{x}'" for i, x in enumerate(MODELS)))
    cols = columns("r", model_of)
    names = ", ".join(["request_id", "received_at"] + list(cols))
    exprs = ", ".join(["printf('%012x-%08x-%s', ms, i, lower(hex(randomblob(6))))", "ms / 1000"] + list(cols.values()))
    sql = f"""
    WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {n - 1}),
    g AS MATERIALIZED (SELECT i, {start} + i * {step} + abs(random()) % {step} AS ms, abs(random()) AS r FROM n)
    INSERT INTO usage ({names})
    SELECT {exprs} FROM g JOIN tn ON tn.idx = g.r % {len(ts)}"""
    t0 = time.time()
    c.execute("BEGIN")
    c.execute(sql)
    c.execute("COMMIT")
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    got = c.execute("SELECT count(*), min(received_at_ms), max(received_at_ms) FROM usage").fetchone()
    print(f"sqlite: {got[0]} rows from {got[1]} to {got[2]} in {time.time() - t0:.1f} s")


def clickhouse_sql(table, tpath, n, now):
    ts = tenants(tpath)
    start = now - SPAN_MS
    step = SPAN_MS // n
    arr = lambda xs: "[" + ",".join("'%s'" % x.replace("'", "\\'") for x in xs) + "]"
    model_of = lambda m: f"arrayElement({arr(MODELS)}, toUInt64({m}) + 1)"
    cols = columns("r", model_of)
    exprs = ",\n  ".join(
        ["concat(lower(hex(ms)), '-', toString(number)) AS request_id", "toDateTime(intDiv(ms, 1000)) AS received_at"]
        + [f"{v} AS {k}" if k != "received_at_ms" else "ms AS received_at_ms" for k, v in cols.items()]
    )
    # toUInt64 where ClickHouse would otherwise pick a narrower or signed type.
    return f"""INSERT INTO {table}
SELECT
  {exprs}
FROM (
  SELECT number,
    toUInt64({start} + number * {step} + cityHash64(number, 7) % {step}) AS ms,
    intDiv(cityHash64(number), 2) AS r,
    arrayElement({arr([t for t, _ in ts])}, toUInt64(r % {len(ts)}) + 1) AS tid,
    arrayElement({arr([p for _, p in ts])}, toUInt64(r % {len(ts)}) + 1) AS tprefix
  FROM numbers({n})
)"""


if __name__ == "__main__":
    kind, target, tpath, n, now = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    if kind == "sqlite":
        sqlite_fill(target, tpath, n, now)
    else:
        print(clickhouse_sql(target, tpath, n, now))
