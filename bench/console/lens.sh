#!/usr/bin/env bash
# Target 1 of issue 14: what ten open scheduler lenses cost the gateway, with 1,000 tenants.
#
# Starts the mock and the gateway (SQLite store and ledger, 32 slots), seeds N tenants with
# a key each (bench/footprint/seed.py), sends one request per tenant so that the scheduler
# knows all of them, then keeps ACTIVE of them busy with wrk (CONNS connections rotating
# their keys, max_tokens 16: about 100 ms a request at the mock's 20 ms + 16 x 5 ms).
# Measures the gateway's CPU (utime+stime of /proc/PID/stat, % of one core) over D seconds
# in each phase, in this order:
#   idle, idle+lens, load, load+lens, load, load+lens, idle, idle+lens
# where "lens" is LENSES concurrent `curl -N .../api/v1/scheduler/stream?top=50` (admin
# token) held open for the whole phase. The wrk load is the same command in every loaded
# phase. Each lens capture is checked (events/s, 50 tenants shown, others, tenant_count).
#
# Usage: bench/console/lens.sh [BIN]     (default target/release/obleth; never builds)
# Env:   N (1000), ACTIVE (200), CONNS (24), LENSES (10), D (30 s per phase, at most 60)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${1:-$ROOT/target/release/obleth}
N=${N:-1000}; ACTIVE=${ACTIVE:-200}; CONNS=${CONNS:-24}; LENSES=${LENSES:-10}
D=${D:-30}; (( D > 60 )) && D=60
[[ -x $BIN ]] || { echo "no binary at $BIN" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }
TMP=$(mktemp -d /tmp/obleth-console-lens.XXXXXX)
source "$HERE/lib.sh"
trap cleanup EXIT
TOKEN=$(new_token)

echo "# lens.sh: $(date -u +%FT%TZ), $(nproc) cores, binary $BIN ($(stat -c %y "$BIN" | cut -d. -f1))"
echo "# N=$N ACTIVE=$ACTIVE CONNS=$CONNS LENSES=$LENSES D=${D}s"
start_mock
start_gateway
admin POST /api/v1/models '{"model_name":"mock-model"}' > /dev/null
python3 "$ROOT/bench/footprint/seed.py" "http://127.0.0.1:$ADMIN" "$TOKEN" "$N" "$TMP/keys.txt" 8
head -n "$ACTIVE" "$TMP/keys.txt" > "$TMP/active.txt"
URL=http://127.0.0.1:$DATA/v1/chat/completions

# Every tenant sends requests once (wrk -t1 walks the key list in order), so the scheduler knows all N.
KEYS=$TMP/keys.txt wrk -t1 -c32 -d$(( N / 150 + 4 ))s --timeout 10s -s "$HERE/keys.lua" "$URL" | grep '^RESULT' | sed 's/^/# warm-up all keys: /'
known=$(admin GET /api/v1/scheduler | python3 -c 'import json,sys; d=json.load(sys.stdin); s=d.get("scheduler", d); print(len(s["tenants"]))')
echo "# tenants known to the scheduler: $known"
(( known >= N )) || { echo "only $known of $N tenants known to the scheduler" >&2; exit 1; }
for _ in 1 2 3; do
  echo "# GET /api/v1/scheduler (all $known tenants, no top): $(curl -s -o /dev/null -w '%{size_download} bytes in %{time_total} s' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$ADMIN/api/v1/scheduler")"
done
KEYS=$TMP/active.txt wrk -t1 -c"$CONNS" -d10s --timeout 10s -s "$HERE/keys.lua" "$URL" | grep '^RESULT' | sed 's/^/# warm-up active keys: /'

phase() { # NAME LOAD(0/1) LENS(0/1)
  local name=$1 load=$2 lens=$3 wpid= pids=() i
  rm -f "$TMP"/lens.*.sse "$TMP/wrk.out"
  if (( load )); then
    KEYS=$TMP/active.txt wrk -t1 -c"$CONNS" -d$(( D + 4 ))s --timeout 10s -s "$HERE/keys.lua" "$URL" > "$TMP/wrk.out" 2>&1 &
    wpid=$!; PIDS+=($wpid)
  fi
  if (( lens )); then
    for i in $(seq 1 "$LENSES"); do
      curl -sN --max-time $(( D + 4 )) -H "Authorization: Bearer $TOKEN" \
        "http://127.0.0.1:$ADMIN/api/v1/scheduler/stream?top=50" > "$TMP/lens.$i.sse" 2>/dev/null &
      pids+=($!); PIDS+=($!)
    done
  fi
  sleep 2
  local c0 t0 c1 t1; c0=$(cpu_ticks "$GW_PID"); t0=$(date +%s.%N)
  sleep "$D"
  c1=$(cpu_ticks "$GW_PID"); t1=$(date +%s.%N)
  local rss; rss=$(awk '/^VmRSS/ {printf "%.1f", $2/1024}' "/proc/$GW_PID/status")
  for i in "${pids[@]}"; do wait "$i" 2>/dev/null || true; done
  [[ -n $wpid ]] && { wait "$wpid" || true; }
  local cpu; cpu=$(python3 -c "print('%.2f' % (($c1 - $c0) / $CLK_TCK / ($t1 - $t0) * 100))")
  local reqs=- p50=- p99=- errs=-
  if (( load )); then
    local r; r=$(grep '^RESULT' "$TMP/wrk.out")
    reqs=$(sed -E 's/.*requests=([0-9]+) duration_s=([0-9.]+).*/\1 \2/' <<<"$r" | awk '{printf "%.0f", $1/$2}')
    p50=$(sed -E 's/.*p50_ms=([0-9.]+).*/\1/' <<<"$r"); p99=$(sed -E 's/.*p99_ms=([0-9.]+).*/\1/' <<<"$r")
    errs=$(sed -E 's/.*non2xx=([0-9]+) errors=([0-9]+).*/\1+\2/' <<<"$r")
  fi
  local lensinfo=-
  if (( lens )); then lensinfo=$(python3 "$HERE/sse.py" $(( D + 4 )) "$TMP"/lens.*.sse); fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$load" "$lens" "$cpu" "$reqs" "$p50/$p99" "$errs" "$rss" "$lensinfo" | tee -a "$TMP/phases.tsv"
  sleep 3   # the lens producer stops at its next tick; requests drain
}

printf 'phase\tload\tlens\tgateway_cpu_%%core\treq_per_s\tp50/p99_ms\tnon2xx+err\trss_MiB\tlens_check\n'
phase idle 0 0
phase idle+lens 0 1
phase load 1 0
phase load+lens 1 1
phase load 1 0
phase load+lens 1 1
phase idle 0 0
phase idle+lens 0 1

python3 - "$TMP/phases.tsv" "$LENSES" <<'PY'
import sys, statistics
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
by = {}
for r in rows: by.setdefault(r[0], []).append(float(r[3]))
m = {k: statistics.mean(v) for k, v in by.items()}
print()
print("| phase | gateway CPU, % of one core (each run) | mean |")
print("|---|---|---:|")
for k in ("idle", "idle+lens", "load", "load+lens"):
    print(f"| {k} | {' / '.join('%.2f' % x for x in by[k])} | {m[k]:.2f} |")
print(f"lenses_cost_no_load={m['idle+lens'] - m['idle']:.2f}%core  lenses_cost_under_load={m['load+lens'] - m['load']:.2f}%core"
      f"  (lenses={sys.argv[2]}; target < 1 %)")
PY
