#!/usr/bin/env bash
# End-to-end tests: the official OpenAI Python SDK against the real obleth binary
# (gateway + bundled mock backend), and the official MCP Python SDK against its /mcp
# endpoint with real upstream MCP servers, all on 127.0.0.1.
#
#   bash scripts/e2e.sh [extra pytest arguments]
#
# Builds the binary (debug profile), creates or reuses the virtualenv .venv in the repo
# root, installs tests/e2e/requirements.txt into it, installs the MCP tests' Node packages
# (tests/mcp, `npm ci`; Node.js from scripts/setup.sh), then runs pytest on tests/e2e.
# The script's exit code is pytest's. Runnable from any directory, and idempotent.
# Honours CARGO_TARGET_DIR; PYTHON picks the interpreter for a new venv (default:
# python3.11 if present, else python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# A relative CARGO_TARGET_DIR means relative to the caller's directory.
if [[ -n "${CARGO_TARGET_DIR:-}" && "${CARGO_TARGET_DIR}" != /* ]]; then
    CARGO_TARGET_DIR="$PWD/$CARGO_TARGET_DIR"
    export CARGO_TARGET_DIR
fi
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

cd "$ROOT"

echo "e2e: building obleth (debug)" >&2
cargo build -p obleth --locked
OBLETH_BIN="$TARGET_DIR/debug/obleth"
if [[ ! -x "$OBLETH_BIN" ]]; then
    echo "e2e: the build did not produce $OBLETH_BIN" >&2
    exit 1
fi

VENV="$ROOT/.venv"
REQUIREMENTS="$ROOT/tests/e2e/requirements.txt"
STAMP="$VENV/.e2e-requirements.sha256"

if [[ -z "${PYTHON:-}" ]]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi

# Reuse the venv only if its interpreter still runs (a venv outlives a removed Python).
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    echo "e2e: creating $VENV with $("$PYTHON" --version 2>&1)" >&2
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" - <<'EOF'
import sys
if sys.version_info < (3, 9):
    sys.exit(f"e2e: the virtualenv's Python {sys.version.split()[0]} is too old; 3.11 is expected")
EOF

# Install only when the requirements changed since the last successful install.
want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$want" ]]; then
    echo "e2e: installing $REQUIREMENTS" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    echo "$want" >"$STAMP"
fi

# The MCP tests' Node packages (@modelcontextprotocol/server-everything), pinned by
# tests/mcp/package-lock.json: `npm ci` when node_modules is missing or the lockfile
# changed since the last successful install. Without npm the MCP tests fail and say so.
MCP_DIR="$ROOT/tests/mcp"
MCP_STAMP="$MCP_DIR/node_modules/.e2e-lock.sha256"
if command -v npm >/dev/null 2>&1; then
    want="$(cat "$MCP_DIR/package.json" "$MCP_DIR/package-lock.json" | sha256sum | cut -d' ' -f1)"
    if [[ ! -f "$MCP_STAMP" || "$(cat "$MCP_STAMP")" != "$want" ]]; then
        echo "e2e: npm ci in $MCP_DIR" >&2
        (cd "$MCP_DIR" && npm ci --no-audit --no-fund --loglevel=error)
        echo "$want" >"$MCP_STAMP"
    fi
else
    echo "e2e: npm is not installed (scripts/setup.sh installs it); tests/e2e/test_mcp.py will fail" >&2
fi

echo "e2e: running pytest with OBLETH_BIN=$OBLETH_BIN" >&2
export OBLETH_BIN
status=0
"$VENV/bin/python" -m pytest "$ROOT/tests/e2e" -q -p no:cacheprovider "$@" || status=$?
exit "$status"
