#!/usr/bin/env bash
# The tail at one connection: wrk -c1 through obleth, started the way
# ../shared/peers/compare.sh starts it (SQLite store and ledger, one tenant with a token
# limit, the aiohttp mock at 0 ms on :9100), printing p50 to p99.9; the mock direct first.
# With SCHED=1, each run also records `perf sched` for 5 s and prints, per thread, how
# often it held a CPU for long, and what ran before each long wait of a data-plane thread.
#
# Usage: bench/tail/run.sh BIN [BIN...]      (binaries alternate, ROUNDS times)
# Env:   D (s per run, default 12), ROUNDS (2), SCHED (0), GATEWAY_ENV ("K=V ..."),
#        PEERS (default /work/shared/peers). Loopback only.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PEERS=${PEERS:-/work/shared/peers}
D=${D:-12}; (( D > 30 )) && D=30
ROUNDS=${ROUNDS:-2}; SCHED=${SCHED:-0}; GATEWAY_ENV=${GATEWAY_ENV:-}
(( SCHED == 1 && D < 8 )) && D=8   # the recording starts 2 s in and lasts 5 s
export WORK=${WORK:-/tmp/obleth-tail}; mkdir -p "$WORK"
[[ -x /tmp/obleth-peers/venv/bin/python ]] || { echo "run ../shared/peers/compare.sh once (it makes the venv)" >&2; exit 1; }
PY=/tmp/obleth-peers/venv/bin/python
curl -s -o /dev/null 127.0.0.1:9100/health || {
  "$PY" "$PEERS/mock_openai.py" --port 9100 --latency-ms 0 > "$WORK/mock.log" 2>&1 & MOCK=$!
  trap 'kill $MOCK 2>/dev/null' EXIT
  for _ in $(seq 1 40); do curl -s -o /dev/null 127.0.0.1:9100/health && break; sleep 0.25; done; }
run() { # run LABEL URL AUTH
  local sched_pid=
  AUTH=$3 wrk -t1 -c1 -d3s -s "$HERE/percentiles.lua" "$2" >/dev/null 2>&1
  if [[ $SCHED == 1 ]]; then
    ( sleep 2; perf sched record -o "$WORK/sched.data" -- sleep 5 >/dev/null 2>&1 ) & sched_pid=$!
  fi
  printf '%s\t%s\n' "$1" "$(AUTH=$3 wrk -t1 -c1 -d"${D}s" -s "$HERE/percentiles.lua" "$2" 2>&1 | grep '^RESULT' | sed 's/^RESULT //')"
  if [[ -n $sched_pid ]]; then
    wait "$sched_pid"
    perf sched timehist -i "$WORK/sched.data" 2>/dev/null > "$WORK/timehist.txt"
    python3 "$HERE/sched.py" "$WORK/timehist.txt"
  fi
}
run "direct" http://127.0.0.1:9100/v1/chat/completions ""
for r in $(seq 1 "$ROUNDS"); do
  for bin in "$@"; do
    ( cd "$WORK" && env $GATEWAY_ENV OBLETH_BIN="$bin" "$PEERS/start_obleth.sh" embedded >/dev/null ) || { echo "obleth did not start" >&2; continue; }
    run "$r $(basename "$(dirname "$bin")")/$(basename "$bin")" http://127.0.0.1:8090/v1/chat/completions "$(cat "$WORK/key.txt")"
    kill "$(cat "$WORK/obleth.pid")"; sleep 0.5
  done
done
