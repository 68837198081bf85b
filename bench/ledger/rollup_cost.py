#!/usr/bin/env python3
"""What the SQLite ledger's hourly sums cost its inserts.

Runs the ledger's own schema and trigger SQL (read from crates/obleth-ledger/src/sqlite.rs)
in two files, one with the trigger and one without, and inserts the same rows into both
the way the ledger does (INSERT OR IGNORE, 64 rows per statement, 1,000 rows per
transaction), alternating the two over ROUNDS rounds. Prints rows/s for each and the ratio.
Python's sqlite3 binding adds the same per-row cost to both sides, so the ratio understates
SQLite's own slowdown a little; the ledger_bench (Rust) is the end-to-end figure.

Usage: python3 bench/ledger/rollup_cost.py [ROWS_PER_ROUND=200000] [ROUNDS=3]
"""
import os
import random
import re
import sqlite3
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SRC = open(os.path.join(ROOT, "crates/obleth-ledger/src/sqlite.rs")).read()
SCHEMA = re.search(r'const SCHEMA: &str = r#"(.*?)"#;', SRC, re.S).group(1)
TRIGGER = re.search(r'const ROLLUP_TRIGGER: &str = r#"(.*?)"#;', SRC, re.S).group(1)
COLUMNS = [c.strip() for c in re.search(r'const COLUMNS: &str = "(.*?)";', SRC, re.S).group(1).replace("\\\n", " ").split(",")]

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
TENANTS = [f"ten_{i:04d}" for i in range(200)]
MODELS = ["mock-model", "gpt-4o-mini", "llama-3.1-8b", "qwen2.5-7b", "mistral-7b"]


def rows(start_ms, n, seed):
    rnd = random.Random(seed)
    for i in range(n):
        ms = start_ms + i * 250
        yield (f"{seed}-{i:09d}", ms // 1000, ms, ms + 5, ms + 40, ms + 900, rnd.choice(TENANTS), "obl_abcdefgh",
               "default", "chat_completions", "auto", rnd.choice(MODELS), "up", 100, 20, 0, 0, 0.0001, 3, 40, 900,
               rnd.choice(["fast", "queued", "brownout", "rejected"]), 200, "", 1, 0)


def open_db(path, trigger):
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=NORMAL")
    c.execute("PRAGMA cache_size=-512")
    c.executescript(SCHEMA)
    if trigger:
        for statement in TRIGGER.split("\n\n"):
            c.execute(statement)
    return c


def insert(c, batch):
    one = "(" + ",".join("?" * len(COLUMNS)) + ")"
    sql64 = f"INSERT OR IGNORE INTO usage ({', '.join(COLUMNS)}) VALUES " + ",".join([one] * 64)
    t0 = time.perf_counter()
    for tx in range(0, len(batch), 1000):
        c.execute("BEGIN")
        chunk = batch[tx:tx + 1000]
        for s in range(0, len(chunk), 64):
            part = chunk[s:s + 64]
            if len(part) == 64:
                c.execute(sql64, [v for r in part for v in r])
            else:
                c.execute(f"INSERT OR IGNORE INTO usage ({', '.join(COLUMNS)}) VALUES " + ",".join([one] * len(part)),
                          [v for r in part for v in r])
        c.execute("COMMIT")
    return time.perf_counter() - t0


def main():
    with tempfile.TemporaryDirectory(prefix="obleth-rollup-cost-") as d:
        dbs = {"without sums": open_db(os.path.join(d, "plain.db"), False),
               "with sums (trigger)": open_db(os.path.join(d, "sums.db"), True)}
        rates = {k: [] for k in dbs}
        start = 1_796_000_000_000
        for r in range(ROUNDS):
            batch = list(rows(start + r * N * 250, N, r))
            order = list(dbs) if r % 2 == 0 else list(reversed(list(dbs)))
            for name in order:
                rates[name].append(N / insert(dbs[name], batch))
        print(f"# {N} rows per round, {ROUNDS} rounds, alternated; rows/s per round")
        for name, rs in rates.items():
            print(f"{name:22s} median {sorted(rs)[len(rs) // 2]:>9,.0f}   " + "  ".join(f"{x:,.0f}" for x in rs))
        med = {k: sorted(v)[len(v) // 2] for k, v in rates.items()}
        print(f"ratio with/without: {med['with sums (trigger)'] / med['without sums']:.2f}")
        c = dbs["with sums (trigger)"]
        hourly, total = c.execute("SELECT count(*), sum(requests) FROM usage_hourly").fetchone()
        rows_n = c.execute("SELECT count(*) FROM usage").fetchone()[0]
        print(f"sums: {hourly} hourly rows for {rows_n} rows; requests summed {total} (must equal the rows)")


main()
