#!/usr/bin/env bash
# Usage-ledger benchmark: one command reproduces everything.
#
#   bench/ledger/run.sh            # the build, then about 2 minutes
#
# Runs crates/obleth-ledger/examples/ledger_bench.rs (release): the request-path cost of
# `Ledger::record` against a no-op sink and against building the record (bursts on 1 and
# 2 threads, and paced at 10,000 calls/s with every call timed), then the rows per second
# the ledger's pipeline (queue, appender, write-ahead log with fsync "always", shipper)
# sustains into ClickHouse and SQLite, next to direct 10,000-row inserts, in alternating
# rounds. It starts a clickhouse-server of its own (Debian's `clickhouse-server` must be
# installed) and keeps every file in a temporary directory. Prints a markdown report and
# writes it to bench/results/ledger-<date>.md.
#
# Knobs (environment): DURATION (s per throughput phase, default 6), ROUNDS (2), REPS
# (request-path repetitions, 7), QUIET_WAIT (s to wait for an idle machine before
# starting, 300), SKIP_BUILD=1.
#
# Needs: cargo, clickhouse-server.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

log() { printf '[ledger %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

command -v clickhouse-server >/dev/null 2>&1 \
    || { echo "clickhouse-server is required (apt-get install clickhouse-server)" >&2; exit 1; }

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "building the ledger benchmark (release)"
    cargo build --release --locked -p obleth-ledger --example ledger_bench
fi
bin="${CARGO_TARGET_DIR:-$root/target}/release/examples/ledger_bench"
[ -x "$bin" ] || { echo "missing $bin" >&2; exit 1; }

# Wait (up to QUIET_WAIT s) until the machine's CPUs have been under 15 % busy for 2 s.
busy_pct() {
    local a b
    read -r -a a < /proc/stat
    sleep 2
    read -r -a b < /proc/stat
    local busy=$(( (b[1] + b[2] + b[3] + b[6] + b[7]) - (a[1] + a[2] + a[3] + a[6] + a[7]) ))
    # ticks over 2 s, in % of one CPU
    echo $(( busy / 2 ))
}
deadline=$(( $(date +%s) + ${QUIET_WAIT:-300} ))
while :; do
    busy=$(busy_pct)
    if [ "$busy" -lt 15 ]; then
        log "machine quiet (${busy} % of a CPU busy)"
        break
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        log "machine still busy (${busy} % of a CPU) after ${QUIET_WAIT:-300} s; running anyway"
        break
    fi
    sleep 3
done

mkdir -p "$root/bench/results"
out="$root/bench/results/ledger-$(date +%Y-%m-%d-%H%M%S).md"
{
    echo "<!-- bench/ledger/run.sh, $(date '+%Y-%m-%d %H:%M:%S %Z'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo ' (with uncommitted changes)') -->"
    "$bin" --seconds "${DURATION:-6}" --rounds "${ROUNDS:-2}" --reps "${REPS:-7}"
} | tee "$out"
log "written to $out"
