#!/usr/bin/env bash
# Runs every test obleth has: the Rust workspace (unit, property and integration tests
# against real servers on 127.0.0.1:0) and the end-to-end suite with the official
# OpenAI Python SDK against the real binary. Installs what it needs on first run.
set -euo pipefail
cd "$(dirname "$0")/.."

# The budget tests need a Redis at 127.0.0.1:6379 (tests that kill Redis start their own).
if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "Redis is needed at 127.0.0.1:6379 (apt-get install redis-server)" >&2
    exit 1
  fi
  echo "== starting redis-server on 127.0.0.1:6379"
  redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no --daemonize yes >/dev/null
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && break; sleep 0.1; done
fi

# The ledger's tests start a clickhouse-server of their own on free ports: it only has to
# be installed, not running. Debian puts it in /usr/sbin, off a non-root user's PATH.
if ! command -v clickhouse-server >/dev/null 2>&1 && [ ! -x /usr/sbin/clickhouse-server ]; then
  echo "clickhouse-server is needed (apt-get install clickhouse-server); the tests start their own" >&2
  exit 1
fi

# The Postgres store's tests and the multi-pod tests use the Postgres at 127.0.0.1:5432
# (each creates and drops a database of its own).
if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "== starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && break; sleep 0.1; done
fi

echo "== Rust tests"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

echo "== OpenAI SDK end-to-end tests"
bash scripts/e2e.sh
