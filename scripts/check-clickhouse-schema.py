#!/usr/bin/env python3
"""Checks the usage ledger's ClickHouse schema against a current ClickHouse engine.

The DDL in crates/obleth-ledger/src/clickhouse/schema.sql is written for Debian's 18.16
(what CI installs; the Rust tests run it there) and for current releases alike. This runs
it in chdb, ClickHouse's engine embedded in a Python package, so a current release is
checked too without a server: the DDL applies (twice, as obleth applies it at every
start), a row with every column and one with nulls in the Nullable columns insert as
JSONEachRow (as obleth sends them), a row sent twice counts once under FINAL, and a table
from before schema version 3 gets the tool-call columns from tools.sql.

Needs `pip install chdb` (large: scripts/check-clickhouse-schema.sh makes a venv for it).
"""
import json
import pathlib
import re
import sys
import tempfile

import chdb
from chdb import session as chs

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "crates/obleth-ledger/src/clickhouse/schema.sql"
TOOLS = ROOT / "crates/obleth-ledger/src/clickhouse/tools.sql"
DB, TABLE = "obleth_check", "usage"
FQ = f"{DB}.{TABLE}"
TOOL_COLUMNS = ["mcp_server", "args_sha256", "result_bytes", "upstream_error", "capture"]

FULL = {
    "request_id": "req-0001",
    "received_at": "2025-06-01 12:00:00",
    "received_at_ms": 1748779200123,
    "admitted_at_ms": 1748779200130,
    "first_token_at_ms": 1748779200450,
    "finished_at_ms": 1748779201900,
    "tenant_id": "tenant-a",
    "key_prefix": "obk_ab12",
    "group_name": "default",
    "route": "/v1/chat/completions",
    "requested_model": "gpt-4o-mini",
    "model": "gpt-4o-mini",
    "upstream_model": "gpt-4o-mini-2024-07-18",
    "input_tokens": 120,
    "output_tokens": 340,
    "cached_tokens": 64,
    "tokens_estimated": 0,
    "cost": 0.000222,
    "queue_wait_ms": 7,
    "ttft_ms": 327,
    "duration_ms": 1777,
    "admission_class": "interactive",
    "status": 200,
    "error_type": "",
    "streamed": 1,
    "client_disconnected": 0,
    # The tool-call columns (schema version 3): empty on a model request's row.
    "mcp_server": "",
    "args_sha256": "",
    "result_bytes": 0,
    "upstream_error": "",
    "capture": "",
}
# Rejected before admission: nothing admitted, no first token.
NULLS = {
    **FULL,
    "request_id": "req-0002",
    "received_at_ms": 1748779205000,
    "admitted_at_ms": None,
    "first_token_at_ms": None,
    "finished_at_ms": 1748779205001,
    "input_tokens": 0,
    "output_tokens": 0,
    "cached_tokens": 0,
    "tokens_estimated": 1,
    "cost": 0.0,
    "ttft_ms": None,
    "duration_ms": 1,
    "status": 429,
    "error_type": "rate_limited",
    "streamed": 0,
}


def statements(text: str, table: str = TABLE) -> list[str]:
    """The schema's statements: `--` comments dropped, placeholders filled, split on `;`."""
    sql = "\n".join(re.sub(r"--.*$", "", line) for line in text.splitlines())
    sql = sql.replace("{db}", DB).replace("{table}", table)
    return [s.strip() for s in sql.split(";") if s.strip()]


def main() -> int:
    ddl = statements(SCHEMA.read_text())
    with tempfile.TemporaryDirectory(prefix="obleth-chdb-") as path:
        sess = chs.Session(path)
        try:

            def q(sql: str) -> str:
                return str(sess.query(sql, "TSV")).strip()

            version = q("SELECT version()")
            q(f"CREATE DATABASE IF NOT EXISTS {DB}")
            for _ in range(2):
                for stmt in ddl:
                    q(stmt)

            columns = set(q(f"SELECT name FROM system.columns WHERE database = '{DB}' AND table = '{TABLE}'").split())
            missing, extra = columns - FULL.keys(), FULL.keys() - columns
            assert not missing and not extra, f"rows out of step with the schema: missing {missing}, extra {extra}"

            rows = "\n".join(json.dumps(r) for r in (FULL, NULLS))
            q(f"INSERT INTO {FQ} FORMAT JSONEachRow\n{rows}\n")
            q(f"INSERT INTO {FQ} FORMAT JSONEachRow\n{json.dumps(FULL)}\n")  # the replay

            count = q(f"SELECT count() FROM {FQ} FINAL")
            assert count == "2", f"count() FINAL is {count}, want 2"
            uniq = q(f"SELECT uniqExact(request_id) FROM {FQ} FINAL")
            assert uniq == "2", f"uniqExact(request_id) is {uniq}, want 2"
            nulls = q(f"SELECT isNull(admitted_at_ms), isNull(first_token_at_ms), isNull(ttft_ms) FROM {FQ} FINAL "
                      f"WHERE request_id = 'req-0002'")
            assert nulls.split() == ["1", "1", "1"], f"nulls did not round-trip: {nulls!r}"
            q(f"OPTIMIZE TABLE {FQ} FINAL")
            merged = q(f"SELECT count() FROM {FQ}")
            assert merged == "2", f"after a merge count() is {merged}, want 2"

            # A table from before version 3 (its rows in it), upgraded as obleth does.
            old = "usage_v2"
            for stmt in statements(SCHEMA.read_text(), old):
                q(stmt)
            for column in TOOL_COLUMNS:
                q(f"ALTER TABLE {DB}.{old} DROP COLUMN {column}")
            old_row = {k: v for k, v in FULL.items() if k not in TOOL_COLUMNS}
            q(f"INSERT INTO {DB}.{old} FORMAT JSONEachRow\n{json.dumps(old_row)}\n")
            for stmt in statements(TOOLS.read_text(), old):
                q(stmt)
            upgraded = set(q(f"SELECT name FROM system.columns WHERE database = '{DB}' AND table = '{old}'").split())
            assert upgraded == columns, f"the upgraded table differs: {upgraded ^ columns}"
            tool_row = {**FULL, "request_id": "req-0003", "mcp_server": "files", "result_bytes": 5000000000}
            q(f"INSERT INTO {DB}.{old} FORMAT JSONEachRow\n{json.dumps(tool_row)}\n")
            got = q(f"SELECT request_id, mcp_server, result_bytes FROM {DB}.{old} FINAL ORDER BY request_id")
            want = "req-0001\t\t0\nreq-0003\tfiles\t5000000000"
            assert got == want, f"the upgraded table holds {got!r}, want {want!r}"
        finally:
            sess.close()
    print(f"chdb {chdb.__version__}, ClickHouse engine {version}")
    print("schema OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
