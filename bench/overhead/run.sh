#!/usr/bin/env bash
# Gateway-overhead benchmark: one command reproduces everything.
#
#   bench/overhead/run.sh            # full run (~4 minutes of load, plus the build)
#
# Measures the bundled zero-latency mock DIRECTLY and THROUGH obleth, side by side:
# closed loop (wrk, 1 and 32 connections), open loop at fixed rates (obleth-loadgen,
# latency corrected for coordinated omission), streamed time to first token (mock at
# ttft 0 and ttft 20 ms), obleth's CPU per request and resident memory. Prints a
# markdown summary and writes it to bench/results/overhead-<date>.md (+ raw JSON).
#
# Direct and obleth alternate in ROUNDS short rounds so that drifts in machine speed
# (a shared VM) hit both alike; "added" figures are per-round differences.
#
# Knobs (environment): DURATION (s per target and workload, default 15), ROUNDS (3),
# WARMUP (closed-loop warm-up s, 3), OPEN_WARMUP (s per open-loop round, 1),
# RATES (500,2000), OPEN_CONNS (64), TTFT_REQUESTS (2000), TTFT20_REQUESTS (1000),
# PHASES (closed,open,stream), GATEWAY_ENV / MOCK_ENV (space-separated K=V added to
# the gateway's / the mocks' environment, e.g. GATEWAY_ENV=TOKIO_WORKER_THREADS=1),
# QUIET_WAIT (s to wait for an idle machine before starting, 300),
# SKIP_BUILD=1, OBLETH_BIN=path (benchmark that binary instead of target/release/obleth),
# KEEP_TMP=1 (keep logs, raw samples and the database), BUILD_ONLY=1 (install wrk and
# build, then exit: bench/budget/run.sh uses it).
#
# Needs: cargo, python3 (3.11+), wrk (installed with apt-get if missing).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

log() { printf '[overhead %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- tools ---
if ! command -v wrk >/dev/null 2>&1; then
    log "installing wrk"
    sudo_cmd=""
    if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
    if ! $sudo_cmd apt-get install -y wrk >/dev/null; then
        $sudo_cmd apt-get update >/dev/null
        $sudo_cmd apt-get install -y wrk >/dev/null
    fi
fi
python3 -c 'import sys; assert sys.version_info >= (3, 11), sys.version' \
    || { echo "python 3.11+ is required" >&2; exit 1; }

# --- builds (one cargo at a time) ---
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "building obleth (release)"
    cargo build --release -p obleth --locked
    log "building obleth-loadgen (release, bench/overhead/loadgen)"
    cargo build --release --locked --manifest-path "$here/loadgen/Cargo.toml" \
        --target-dir "$here/loadgen/target"
fi
obleth="${OBLETH_BIN:-$root/target/release/obleth}"
loadgen="$here/loadgen/target/release/obleth-loadgen"
[ -x "$obleth" ] || { echo "missing $obleth" >&2; exit 1; }
[ -x "$loadgen" ] || { echo "missing $loadgen" >&2; exit 1; }
if [ "${BUILD_ONLY:-0}" = 1 ]; then exit 0; fi

# --- run ---
args=(
    --obleth "$obleth"
    --loadgen "$loadgen"
    --results-dir "$root/bench/results"
    --duration "${DURATION:-15}"
    --warmup "${WARMUP:-3}"
    --open-warmup "${OPEN_WARMUP:-1}"
    --rounds "${ROUNDS:-3}"
    --rates "${RATES:-500,2000}"
    --open-conns "${OPEN_CONNS:-64}"
    --ttft-requests "${TTFT_REQUESTS:-2000}"
    --ttft20-requests "${TTFT20_REQUESTS:-1000}"
    --phases "${PHASES:-closed,open,stream}"
    --quiet-wait "${QUIET_WAIT:-300}"
)
for kv in ${GATEWAY_ENV:-}; do args+=(--gateway-env "$kv"); done
for kv in ${MOCK_ENV:-}; do args+=(--mock-env "$kv"); done
if [ "${KEEP_TMP:-0}" = 1 ]; then args+=(--keep-tmp); fi
exec python3 "$here/overhead.py" "${args[@]}"
