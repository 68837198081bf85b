#!/usr/bin/env bash
# The MCP gateway's overhead, side by side with the upstream direct (bench/mcp/bench.py).
#
#   bench/mcp/run.sh                 # build (release), then ~3 minutes of load
#
# Knobs: DURATION (s per round and target, 10), ROUNDS (3), SKIP_BUILD=1,
# OBLETH_BIN=path. Needs python3, cargo and wrk (installed with apt-get if missing).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
if ! command -v wrk >/dev/null 2>&1; then
    apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$root" && cargo build --release -p obleth --locked)
fi
export OBLETH_BIN="${OBLETH_BIN:-$root/target/release/obleth}"
exec python3 "$here/bench.py"
