#!/usr/bin/env bash
# Budget admission cost: what the budget layer adds per request, in-process and on Redis.
#
#   bench/budget/run.sh            # about 4 minutes of load, plus the build
#
# Side by side, in one run, on the overhead benchmark's stack (bench/overhead/): the
# zero-latency mock directly; obleth with a tenant without limits (budget layer skipped);
# obleth with a tenant whose limits never refuse, budgets in process; the same with
# budgets in Redis (OBLETH_BUDGET_STORE=redis); and, as a control, the Redis gateway
# with a tenant without limits. wrk closed loop at 1 and 8 connections, the targets
# interleaved over ROUNDS rounds. Then the Redis commands per request (INFO commandstats
# before/after, and MONITOR on the run's own key prefix) and the bare loopback round trip
# to Redis (redis-benchmark PING). Prints a markdown summary and writes it to
# bench/results/budget-<date>.md (+ raw JSON). The run's Redis keys are deleted at the end.
#
# Knobs (environment): DURATION (s per target and connection count over all rounds,
# default 15), ROUNDS (3), WARMUP (s per target, 3), CONNS (1,8), RT_REQUESTS (requests
# for the round-trip count, 2000), REDIS_URL (redis://127.0.0.1:6379), KEY_PREFIX
# (default: a fresh obleth-bench-<pid>-<time>: per run), GATEWAY_ENV / MOCK_ENV,
# QUIET_WAIT (300), SKIP_BUILD=1, OBLETH_BIN=path, KEEP_TMP=1.
#
# Needs: what bench/overhead/run.sh needs, plus a Redis 7 and redis-cli / redis-benchmark.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

# wrk, the builds (one cargo at a time) and the checks: the overhead benchmark's.
BUILD_ONLY=1 "$root/bench/overhead/run.sh"
for tool in redis-cli redis-benchmark; do
    command -v "$tool" >/dev/null 2>&1 || { echo "$tool is required" >&2; exit 1; }
done
redis_url="${REDIS_URL:-redis://127.0.0.1:6379}"
redis-cli -u "$redis_url" ping >/dev/null || { echo "no Redis at $redis_url" >&2; exit 1; }

args=(
    --obleth "${OBLETH_BIN:-$root/target/release/obleth}"
    --loadgen "$root/bench/overhead/loadgen/target/release/obleth-loadgen"
    --results-dir "$root/bench/results"
    --redis-url "$redis_url"
    --duration "${DURATION:-15}"
    --warmup "${WARMUP:-3}"
    --rounds "${ROUNDS:-3}"
    --conns "${CONNS:-1,8}"
    --rt-requests "${RT_REQUESTS:-2000}"
    --quiet-wait "${QUIET_WAIT:-300}"
)
if [ -n "${KEY_PREFIX:-}" ]; then args+=(--key-prefix "$KEY_PREFIX"); fi
for kv in ${GATEWAY_ENV:-}; do args+=(--gateway-env "$kv"); done
for kv in ${MOCK_ENV:-}; do args+=(--mock-env "$kv"); done
if [ "${KEEP_TMP:-0}" = 1 ]; then args+=(--keep-tmp); fi
exec python3 "$here/budget.py" "${args[@]}"
