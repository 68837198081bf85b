#!/usr/bin/env bash
# Resident memory of obleth, the way ../shared/peers/compare.sh starts it (SQLite store,
# SQLite ledger, one tenant with a token limit, the aiohttp mock at 0 ms on :9100):
# at rest, peak under D s of wrk at 1 and at 32 connections, and with N tenants and keys
# seeded through the admin API and all used (wrk rotating the keys).
#
# Usage: bench/footprint/run.sh BIN [BIN...]     (binaries alternate, ROUNDS times)
# Env:   D (s of load, default 15, at most 30), N (tenants, default 10000), ROUNDS (1),
#        PHASES ("rest c1 c32 tenants"), GATEWAY_ENV ("K=V ..." added to obleth's env),
#        PEERS (the peers harness, default /work/shared/peers), QUOTA (the tenants' quota JSON,
#        default a token limit: {"tpm":1000000000000})
# Prints one TSV line per binary and round. Everything stays on 127.0.0.1.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PEERS=${PEERS:-/work/shared/peers}
D=${D:-15}; (( D > 30 )) && D=30
N=${N:-10000}; ROUNDS=${ROUNDS:-1}; PHASES=${PHASES:-"rest c1 c32 tenants"}
export WORK=${WORK:-/tmp/obleth-footprint}; mkdir -p "$WORK"
[[ -x /tmp/obleth-peers/venv/bin/python ]] || { echo "run ../shared/peers/compare.sh once (it makes the venv)" >&2; exit 1; }
PY=/tmp/obleth-peers/venv/bin/python
rss() { awk '/^VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
peak() { python3 "$PEERS/procstat.py" "$1" "$2" 0.2 | sed -E 's/.*rss_peak_mb=([0-9]+).*/\1/'; }
load() { # load PID CONNS LUA [AUTH] -> "peak_mib p50 p99"
  local pid=$1 c=$2 lua=$3
  wrk -t1 -c"$c" -d3s --timeout 10s -s "$lua" http://127.0.0.1:8090/v1/chat/completions >/dev/null 2>&1
  python3 "$PEERS/procstat.py" "$pid" "$D" 0.2 > "$WORK/ps" & local sp=$!
  local res; res=$(wrk -t1 -c"$c" -d"${D}s" --timeout 10s -s "$lua" http://127.0.0.1:8090/v1/chat/completions 2>&1 | grep '^RESULT')
  wait $sp
  local pk; pk=$(sed -E 's/.*rss_peak_mb=([0-9]+).*/\1/' "$WORK/ps")
  echo "$pk $(rss "$pid") $(sed -E 's/.*p50_ms=([0-9.]+).*p99_ms=([0-9.]+).*/\1 \2/' <<<"$res") $(grep -o 'errors_status=[0-9]*' <<<"$res")"
}
curl -s -o /dev/null 127.0.0.1:9100/health || {
  "$PY" "$PEERS/mock_openai.py" --port 9100 --latency-ms 0 > "$WORK/mock.log" 2>&1 & MOCK=$!
  trap 'kill $MOCK 2>/dev/null' EXIT   # the mock this run started goes with it
  for _ in $(seq 1 40); do curl -s -o /dev/null 127.0.0.1:9100/health && break; sleep 0.25; done; }
start() { # start BIN -> pid; what ../shared/peers/start_obleth.sh does, with the tenant's quota from QUOTA
  if curl -s -o /dev/null 127.0.0.1:8090/healthz; then echo "something already listens on :8090" >&2; return 1; fi
  ( cd "$WORK" && rm -rf data && mkdir -p data
    export OBLETH_LISTEN_DATA=127.0.0.1:8090 OBLETH_LISTEN_ADMIN=127.0.0.1:8091 OBLETH_LISTEN_METRICS=127.0.0.1:8092 \
      OBLETH_ADMIN_TOKEN=$TOKEN OBLETH_DATABASE_URL=sqlite://$WORK/data/cp.db \
      OBLETH_LEDGER_SQLITE_URL=sqlite://$WORK/data/usage.db OBLETH_LEDGER_WAL_DIR=$WORK/data/wal \
      OBLETH_UPSTREAM_BASE_URL=http://127.0.0.1:9100/v1 OBLETH_LOG_LEVEL=warn
    env $GATEWAY_ENV "$1" serve > obleth.log 2>&1 & echo $! > obleth.pid )
  for _ in $(seq 1 50); do curl -s -o /dev/null 127.0.0.1:8090/healthz && break; sleep 0.2; done
  local A=(-s -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json')
  curl "${A[@]}" -d '{"model_name":"gpt-4o-mini"}' 127.0.0.1:8091/api/v1/models >/dev/null
  curl "${A[@]}" -d "{\"name\":\"bench\",\"weight\":1,\"quota\":$QUOTA}" 127.0.0.1:8091/api/v1/tenants >/dev/null
  curl "${A[@]}" -d '{}' 127.0.0.1:8091/api/v1/tenants/bench/keys | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])' > "$WORK/key.txt" \
    || { echo "start failed: $(tail -3 "$WORK/obleth.log")" >&2; return 1; }
  cat "$WORK/obleth.pid"; }
stop() { kill "$1" 2>/dev/null; for _ in $(seq 1 75); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.2; done; echo "obleth $1 did not stop" >&2; }
TOKEN=peers-admin-token-0123456789abcdef
QUOTA=${QUOTA:-'{"tpm":1000000000000}'}
GATEWAY_ENV=${GATEWAY_ENV:-}
printf 'round\tbinary\tphase\tpeak_or_rest_MiB\tend_MiB\tp50_ms\tp99_ms\terrors\n'
for r in $(seq 1 "$ROUNDS"); do
  for bin in "$@"; do
    name=$(basename "$(dirname "$bin")")/$(basename "$bin")
    export AUTH MODEL=gpt-4o-mini
    if [[ $PHASES == *rest* || $PHASES == *c1* || $PHASES == *c32* ]]; then
      pid=$(start "$bin") || continue
      AUTH=$(cat "$WORK/key.txt")
      sleep 2
      [[ $PHASES == *rest* ]] && printf '%s\t%s\trest\t%s\n' "$r" "$name" "$(rss "$pid")"
      for c in 1 32; do [[ $PHASES == *c$c* ]] || continue
        printf '%s\t%s\tc%s\t%s\n' "$r" "$name" "$c" "$(load "$pid" "$c" "$PEERS/chat.lua" | tr ' ' '\t')"; done
      stop "$pid"
    fi
    if [[ $PHASES == *tenants* ]]; then
      pid=$(start "$bin") || continue
      QUOTA=$QUOTA "$HERE/seed.py" http://127.0.0.1:8091 "$TOKEN" "$N" "$WORK/keys.txt" 8 >/dev/null
      printf '%s\t%s\tseeded%s\t%s\n' "$r" "$name" "$N" "$(rss "$pid")"
      printf '%s\t%s\ttenants-c32\t%s\n' "$r" "$name" "$(KEYS=$WORK/keys.txt load "$pid" 32 "$HERE/keys.lua" | tr ' ' '\t')"
      stop "$pid"
    fi
  done
done
