#!/usr/bin/env bash
# The operator console (console/): rebuilds its assets from the lockfile and fails if
# they differ from the committed console/dist (the binary embeds the committed build, so
# the two must be the same), then runs its Chromium tests against the real binary.
#
#   bash scripts/console.sh            # OBLETH_BIN defaults to target/debug/obleth
#
# Needs Node.js 20 with npm and Debian's chromium (scripts/setup.sh installs it); never
# downloads a browser.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export OBLETH_BIN="${OBLETH_BIN:-$TARGET_DIR/debug/obleth}"
cd "$ROOT/console"

echo "console: npm ci" >&2
npm ci --no-audit --no-fund --loglevel=error
echo "console: npm run build" >&2
npm run build --silent
if [ -n "$(git -C "$ROOT" status --porcelain -- console/dist)" ]; then
  echo "console: the build differs from the committed console/dist:" >&2
  git -C "$ROOT" status --porcelain -- console/dist >&2
  echo "console: rebuild with (cd console && npm ci && npm run build) and commit console/dist" >&2
  exit 1
fi

if [[ ! -x "$OBLETH_BIN" ]]; then
  echo "console: no obleth binary at $OBLETH_BIN (build it with cargo build -p obleth)" >&2
  exit 1
fi
echo "console: Chromium tests with OBLETH_BIN=$OBLETH_BIN" >&2
npm test
