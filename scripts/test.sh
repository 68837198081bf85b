#!/usr/bin/env bash
# Runs every test obleth has: the Rust workspace (unit, property and integration tests
# against real servers on 127.0.0.1:0), the end-to-end suite with the official OpenAI and
# MCP Python SDKs against the real binary, the MCP conformance suite against /mcp, the
# console's Chromium tests, and the deployment
# artifacts (Compose, Helm, Prometheus rules, dashboards; the Compose topology run as
# processes). Installs what it needs on first run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Installs what a fresh machine lacks (Redis, ClickHouse, HAProxy, the Postgres server
# binaries, OpenSSL, promtool) and starts Redis and Postgres if they are not running.
bash scripts/setup.sh

echo "== Rust tests"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

echo "== End-to-end tests: the official OpenAI and MCP SDKs"
bash scripts/e2e.sh

echo "== MCP conformance suite against /mcp"
OBLETH_BIN=target/debug/obleth bash scripts/mcp-conformance.sh

echo "== Operator console: committed build and Chromium tests"
bash scripts/console.sh

echo "== Deployment artifacts: Compose, Helm, alerts, dashboards, the topology as processes"
# The debug binary the Rust tests built: the checks are functional, not timed.
cargo build --locked -p obleth
OBLETH_BIN=target/debug/obleth bash scripts/deploy-check.sh
