#!/usr/bin/env bash
# Checks the usage ledger's ClickHouse schema against a current ClickHouse engine (chdb,
# embedded in a Python package), beside the Rust tests that run it on Debian's 18.16.
#
#   bash scripts/check-clickhouse-schema.sh
#
# Not part of CI or scripts/test.sh: chdb and its dependencies are a ~270 MB download
# (~900 MB installed). Creates the venv target/chdb-venv (under CARGO_TARGET_DIR if set)
# on first run and reuses it after.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${CARGO_TARGET_DIR:-}" && "${CARGO_TARGET_DIR}" != /* ]]; then
    CARGO_TARGET_DIR="$PWD/$CARGO_TARGET_DIR"
fi
VENV="${CARGO_TARGET_DIR:-$ROOT/target}/chdb-venv"

if ! "$VENV/bin/python" -c 'import chdb' >/dev/null 2>&1; then
    echo "check-clickhouse-schema: installing chdb into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check chdb
fi
exec "$VENV/bin/python" "$ROOT/scripts/check-clickhouse-schema.py"
