#!/usr/bin/env bash
# Live fairness runs (W1, W2) through the real gateway in front of the bundled mock.
# Prints markdown tables; extra arguments go to live.py (e.g. --duration 30 --mode weighted).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
cargo build --release -p obleth --locked >&2
if [[ ! -x .venv/bin/python ]]; then python3 -m venv .venv; fi
.venv/bin/python -c 'import httpx' 2>/dev/null || .venv/bin/python -m pip install --quiet httpx==0.28.1
exec .venv/bin/python bench/fairness/live.py --bin "${CARGO_TARGET_DIR:-$ROOT/target}/release/obleth" "$@"
