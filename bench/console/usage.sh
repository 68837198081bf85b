#!/usr/bin/env bash
# Target 2 of issue 14: the console's pages against a large ledger, SQLite (1,000,000 rows)
# and ClickHouse (10,000,000 rows).
#
# Starts the mock and the gateway once to create T tenants with a key each (and the five
# models the rows name), stops it, fills the ledger straight in the database with rows
# spread over the last 30 days (fill.py: the real tenant ids, time-ordered), starts the
# gateway on it, and times every call of every console page (pages.py: RUNS runs each,
# then each page's calls at once), checking the answers against counts taken straight from
# the database. Then the same against a ClickHouse server of its own. For SQLite it also
# prints EXPLAIN QUERY PLAN of the totals, series and recent queries.
#
# Usage: bench/console/usage.sh [BIN]    (default target/release/obleth; never builds)
# Env:   SQLITE_ROWS (1000000), CH_ROWS (10000000), T (200 tenants), RUNS (5),
#        BACKENDS ("sqlite clickhouse"), DIAGNOSE (0; 1 also times the raw-row queries the
#        pages made before the hourly sums, and a covering index)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${1:-$ROOT/target/release/obleth}
SQLITE_ROWS=${SQLITE_ROWS:-1000000}; CH_ROWS=${CH_ROWS:-10000000}; T=${T:-200}; RUNS=${RUNS:-5}
BACKENDS=${BACKENDS:-"sqlite clickhouse"}; DIAGNOSE=${DIAGNOSE:-0}
[[ -x $BIN ]] || { echo "no binary at $BIN" >&2; exit 1; }
TMP=$(mktemp -d /tmp/obleth-console-usage.XXXXXX)
source "$HERE/lib.sh"
trap cleanup EXIT
TOKEN=$(new_token)
MODELS="mock-model gpt-4o-mini llama-3.1-8b qwen2.5-7b mistral-7b"

echo "# usage.sh: $(date -u +%FT%TZ), $(nproc) cores, binary $BIN ($(stat -c %y "$BIN" | cut -d. -f1))"
echo "# SQLITE_ROWS=$SQLITE_ROWS CH_ROWS=$CH_ROWS T=$T RUNS=$RUNS BACKENDS=$BACKENDS"
start_mock
start_gateway
for m in $MODELS; do admin POST /api/v1/models "{\"model_name\":\"$m\"}" > /dev/null; done
python3 "$ROOT/bench/footprint/seed.py" "http://127.0.0.1:$ADMIN" "$TOKEN" "$T" "$TMP/keys.txt" 8
# id, name, key prefix (the first 12 characters of the secret), in the seed's order (fp-00000 ...).
admin GET "/api/v1/tenants?limit=1000" | python3 -c '
import json, sys
keys = [l.strip() for l in open(sys.argv[1]) if l.strip()]
ts = sorted(json.load(sys.stdin)["data"], key=lambda t: t["name"])
assert len(ts) == len(keys), (len(ts), len(keys))
for t, k in zip(ts, keys): print(t["id"], t["name"], k[:12], sep="\t")' "$TMP/keys.txt" > "$TMP/tenants.tsv"
TKEY=$(head -1 "$TMP/keys.txt"); TID=$(head -1 "$TMP/tenants.tsv" | cut -f1)
# One real request, to compare its ledger row's shape with the synthetic ones.
curl -s -o /dev/null -H "Authorization: Bearer $TKEY" -H 'content-type: application/json' \
  -d '{"model":"mock-model","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}' "http://127.0.0.1:$DATA/v1/chat/completions"
sleep 3
stop_gateway
echo "# a real row: $(sqlite3 "$TMP/usage.db" 'SELECT * FROM usage LIMIT 1')"

# Why the slow calls are slow: the 30-day totals and the newest rows, as the gateway asks them
# and in other ways (the gateway is stopped; the ledger is changed only after the first).
diagnose() {
  local now d30 t0 q
  now=$(date +%s%3N); d30=$(( now - 30 * 86400000 ))
  if [[ $1 == sqlite ]]; then
    local AGG="count(*) AS requests, coalesce(sum(status >= 400), 0) AS errors, coalesce(sum(admission_class = 'rejected'), 0) AS rejected, coalesce(sum(admission_class = 'brownout'), 0) AS brownout, coalesce(sum(input_tokens), 0) AS input_tokens, coalesce(sum(output_tokens), 0) AS output_tokens, coalesce(sum(cached_tokens), 0) AS cached_tokens, coalesce(sum(cost), 0.0) AS cost, coalesce(sum(queue_wait_ms), 0) AS queue_wait_ms"
    local W="WHERE received_at_ms >= $d30 AND received_at_ms < $now"
    sq() { # LABEL SQL: the best of 3, sqlite3 with the gateway's page cache (512 KiB)
      local best; best=$(for _ in 1 2 3; do s=$(date +%s%N); sqlite3 "$TMP/usage.db" "PRAGMA cache_size=-512; $2" > /dev/null; echo $(( ($(date +%s%N) - s) / 1000000 )); done | sort -n | head -1)
      echo "# sqlite3 $1: ${best} ms"; }
    sq "totals 30d by tenant, as the gateway asks (index usage_time)" "SELECT tenant_id AS key, $AGG FROM usage $W GROUP BY key ORDER BY cost DESC, key"
    sq "totals 30d by tenant, NOT INDEXED (table scan)" "SELECT tenant_id AS key, $AGG FROM usage NOT INDEXED $W GROUP BY key ORDER BY cost DESC, key"
    sq "series 30d day by tenant, as the gateway asks" "SELECT (received_at / 86400) * 86400 AS bucket, tenant_id AS key, $AGG FROM usage $W GROUP BY bucket, key ORDER BY bucket, key"
    sq "series 30d day by tenant, NOT INDEXED" "SELECT (received_at / 86400) * 86400 AS bucket, tenant_id AS key, $AGG FROM usage NOT INDEXED $W GROUP BY bucket, key ORDER BY bucket, key"
    local before; before=$(du -m "$TMP/usage.db" | cut -f1)
    s=$(date +%s%N)
    sqlite3 "$TMP/usage.db" "CREATE INDEX usage_time_cover ON usage (received_at_ms, tenant_id, model, received_at, status, admission_class, input_tokens, output_tokens, cached_tokens, cost, queue_wait_ms)"
    echo "# covering index built in $(( ($(date +%s%N) - s) / 1000000 )) ms; ledger file $before -> $(du -m "$TMP/usage.db" | cut -f1) MiB"
    sq "totals 30d by tenant, covering index" "SELECT tenant_id AS key, $AGG FROM usage INDEXED BY usage_time_cover $W GROUP BY key ORDER BY cost DESC, key"
    sq "series 30d day by tenant, covering index" "SELECT (received_at / 86400) * 86400 AS bucket, tenant_id AS key, $AGG FROM usage INDEXED BY usage_time_cover $W GROUP BY bucket, key ORDER BY bucket, key"
    sq "totals 7d by tenant, covering index" "SELECT tenant_id AS key, $AGG FROM usage INDEXED BY usage_time_cover WHERE received_at_ms >= $(( now - 7 * 86400000 )) AND received_at_ms < $now GROUP BY key ORDER BY cost DESC, key"
  else
    local AGG="count() AS requests, countIf(status >= 400) AS errors, countIf(admission_class = 'rejected') AS rejected, countIf(admission_class = 'brownout') AS brownout, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, sum(cached_tokens) AS cached_tokens, sum(cost) AS cost, sum(queue_wait_ms) AS queue_wait_ms"
    local W="WHERE received_at >= toDateTime($(( d30 / 1000 ))) AND received_at <= toDateTime($(( now / 1000 ))) AND received_at_ms >= $d30 AND received_at_ms < $now"
    local COLS="request_id, received_at_ms, admitted_at_ms, first_token_at_ms, finished_at_ms, tenant_id, key_prefix, group_name, route, requested_model, model, upstream_model, input_tokens, output_tokens, cached_tokens, tokens_estimated, cost, queue_wait_ms, ttft_ms, duration_ms, admission_class, status, error_type, streamed, client_disconnected"
    chq() { # LABEL SQL: the best of 3
      local best; best=$(for _ in 1 2 3; do curl -sS -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$CH_HTTP/" --data-binary "$2 FORMAT JSONEachRow"; done | sort -n | head -1)
      echo "# clickhouse $1: $(python3 -c "print('%.0f' % ($best * 1000))") ms"; }
    chq "totals 30d by tenant, as the gateway asks (FINAL)" "SELECT tenant_id AS key, $AGG FROM obleth.obleth_usage FINAL $W GROUP BY key ORDER BY cost DESC, key"
    chq "totals 30d by tenant, without FINAL" "SELECT tenant_id AS key, $AGG FROM obleth.obleth_usage $W GROUP BY key ORDER BY cost DESC, key"
    chq "recent 30d 100, as the gateway asks (FINAL, every column)" "SELECT $COLS FROM obleth.obleth_usage FINAL $W ORDER BY received_at_ms DESC, request_id DESC LIMIT 100"
    chq "recent 30d 100, without FINAL" "SELECT $COLS FROM obleth.obleth_usage $W ORDER BY received_at_ms DESC, request_id DESC LIMIT 100"
    chq "recent 30d step 1: the 100th newest time, one column, no FINAL" "SELECT min(t) FROM (SELECT received_at_ms AS t FROM obleth.obleth_usage $W ORDER BY t DESC LIMIT 100)"
    local cut; cut=$(ch "SELECT min(t) FROM (SELECT received_at_ms AS t FROM obleth.obleth_usage $W ORDER BY t DESC LIMIT 100)")
    chq "recent 30d step 2: FINAL on [that time, now)" "SELECT $COLS FROM obleth.obleth_usage FINAL WHERE received_at >= toDateTime($(( cut / 1000 ))) AND received_at <= toDateTime($(( now / 1000 ))) AND received_at_ms >= $cut AND received_at_ms < $now ORDER BY received_at_ms DESC, request_id DESC LIMIT 100"
  fi
}

for backend in $BACKENDS; do
  echo; echo "## $backend"
  if [[ $backend == sqlite ]]; then
    python3 "$HERE/fill.py" sqlite "$TMP/usage.db" "$TMP/tenants.tsv" "$SQLITE_ROWS" "$(date +%s%3N)"
    # The rows went in behind the gateway's back, so its hourly sums do not hold them: drop
    # the sums, and the gateway fills them from the rows at start, as it does for a ledger
    # file from before the sums (timed below as the gateway's start).
    sqlite3 "$TMP/usage.db" 'DROP TABLE IF EXISTS usage_hourly'
    s=$(date +%s.%N)
    start_gateway
    echo "# gateway ready in $(python3 -c "import time; print('%.1f' % (time.time() - $s))") s (the hourly sums filled from the rows)"
    echo "# ledger file: $(du -m "$TMP/usage.db" | cut -f1) MiB; hourly sums: $(sqlite3 "$TMP/usage.db" 'SELECT count(*) FROM usage_hourly') rows"
    COUNT="sqlite3 $TMP/usage.db \"SELECT count(*) FROM usage WHERE received_at_ms >= {from} AND received_at_ms < {to} AND {tenant}\""
  else
    start_clickhouse
    CHENV=(OBLETH_LEDGER_BACKEND=clickhouse OBLETH_LEDGER_CLICKHOUSE_URL=http://127.0.0.1:$CH_HTTP
           OBLETH_LEDGER_CLICKHOUSE_DATABASE=obleth OBLETH_LEDGER_WAL_DIR=$TMP/wal-ch)
    start_gateway "${CHENV[@]}"        # creates obleth.obleth_usage
    for _ in $(seq 1 100); do [[ $(ch 'EXISTS TABLE obleth.obleth_usage') == 1 ]] && break; sleep 0.2; done
    stop_gateway
    s=$(date +%s.%N)
    ch "$(python3 "$HERE/fill.py" clickhouse obleth.obleth_usage "$TMP/tenants.tsv" "$CH_ROWS" "$(date +%s%3N)")"
    echo "clickhouse: $(ch 'SELECT count() FROM obleth.obleth_usage') rows in $(python3 -c "import time; print('%.1f' % (time.time() - $s))") s"
    # Let background merges settle (at most 120 s), as a ledger that has been running would have.
    for _ in $(seq 1 60); do
      a=$(ch "SELECT count() FROM system.parts WHERE database = 'obleth' AND table = 'obleth_usage' AND active"); sleep 2
      b=$(ch "SELECT count() FROM system.parts WHERE database = 'obleth' AND table = 'obleth_usage' AND active")
      [[ $a == "$b" ]] && break
    done
    # The sums' view has existed since the gateway created it just now, so the gateway would
    # read these 30 back-dated days from the rows (it trusts the sums only from when the view
    # was made). A ledger that has run with its sums for 30 days has them all: say so by
    # back-dating the migration record (the earliest one counts). The rows above went
    # through the view, so the sums hold them.
    ch "INSERT INTO obleth.obleth_ledger_migrations (tbl, version, applied_at) VALUES ('obleth_usage', 2, now() - 31 * 86400)"
    echo "# hourly sums: $(ch 'SELECT count() FROM obleth.obleth_usage_hourly') rows before merges"
    echo "# active parts: $b; on disk: $(ch "SELECT formatReadableSize(sum(bytes_on_disk)) FROM system.parts WHERE database = 'obleth' AND table = 'obleth_usage' AND active")"
    start_gateway "${CHENV[@]}"
    COUNT="curl -sS http://127.0.0.1:$CH_HTTP/ --data-binary \"SELECT count() FROM obleth.obleth_usage WHERE received_at_ms >= {from} AND received_at_ms < {to} AND {tenant}\""
  fi
  TENANTS=$T python3 "$HERE/pages.py" "http://127.0.0.1:$ADMIN" "$TOKEN" "$TKEY" "$TID" "$backend" "$COUNT" "$RUNS" || echo "pages.py: checks failed" >&2
  if [[ $backend == sqlite ]]; then
    now=$(date +%s%3N); d1=$(( now - 86400000 )); d30=$(( now - 30 * 86400000 ))
    AGG="count(*) AS requests, coalesce(sum(status >= 400), 0), coalesce(sum(cost), 0.0)"
    for q in \
      "SELECT tenant_id AS key, $AGG FROM usage WHERE received_at_ms >= $d1 AND received_at_ms < $now GROUP BY key ORDER BY 3 DESC, key" \
      "SELECT tenant_id AS key, $AGG FROM usage WHERE received_at_ms >= $d30 AND received_at_ms < $now GROUP BY key ORDER BY 3 DESC, key" \
      "SELECT (received_at / 3600) * 3600 AS bucket, tenant_id AS key, $AGG FROM usage WHERE received_at_ms >= $d1 AND received_at_ms < $now GROUP BY bucket, key ORDER BY bucket, key" \
      "SELECT model AS key, $AGG FROM usage WHERE received_at_ms >= $d30 AND received_at_ms < $now AND tenant_id = '$TID' GROUP BY key" \
      "SELECT * FROM usage WHERE received_at_ms >= $d30 AND received_at_ms < $now ORDER BY received_at_ms DESC, request_id DESC LIMIT 100"; do
      echo "# EXPLAIN QUERY PLAN ${q:0:60}...: $(sqlite3 "$TMP/usage.db" "EXPLAIN QUERY PLAN $q" | tr '\n' ' ')"
    done
  fi
  stop_gateway
  if [[ $DIAGNOSE == 1 ]]; then diagnose "$backend"; fi
done
