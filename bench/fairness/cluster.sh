#!/usr/bin/env bash
# Live fairness across pods: N release pods on a fresh Postgres database and Redis, behind
# HAProxy (deploy/haproxy/haproxy.cfg), the bundled mock as backend; cases A (round robin)
# and B (one tenant pinned to pod 1) for W1 and W2. Prints markdown tables; extra arguments
# go to cluster.py (e.g. --pods 2, --cap 12, --case B --workload W1 --pin api-batch).
# Needs Postgres at 127.0.0.1:5432 (user postgres, trust), Redis at 127.0.0.1:6379, haproxy, psql.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# OBLETH_BIN: a binary built elsewhere (e.g. from a clean checkout of a commit); else build here.
if [[ -z "${OBLETH_BIN:-}" ]]; then
  cargo build --release -p obleth --locked >&2
  OBLETH_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/obleth"
fi
if [[ ! -x .venv/bin/python ]]; then python3 -m venv .venv; fi
.venv/bin/python -c 'import httpx' 2>/dev/null || .venv/bin/python -m pip install --quiet httpx==0.28.1

# cluster.py stops what it started and drops its databases itself; this trap is the net for
# when it cannot (killed): it kills the pids and drops the databases cluster.py recorded.
STATE="$(mktemp -t obleth-cluster-bench.XXXXXX)"
PY=""
cleanup() {
  trap - EXIT INT TERM
  if [[ -n "$PY" ]] && kill -0 "$PY" 2>/dev/null; then
    kill -TERM "$PY" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$PY" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PY" 2>/dev/null || true
  fi
  while read -r kind value; do
    case "$kind" in
      pid) if [[ "$(ps -p "$value" -o comm= 2>/dev/null)" =~ ^(obleth|haproxy)$ ]]; then kill -TERM "$value" 2>/dev/null || true; sleep 0.5; kill -KILL "$value" 2>/dev/null || true; fi ;;
      db) psql postgres://postgres@127.0.0.1:5432/postgres -qc "DROP DATABASE IF EXISTS $value WITH (FORCE)" >/dev/null 2>&1 || true ;;
    esac
  done < "$STATE"
  rm -f "$STATE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
OBLETH_BENCH_STATE="$STATE" .venv/bin/python bench/fairness/cluster.py \
  --bin "$OBLETH_BIN" "$@" &
PY=$!
wait "$PY"
