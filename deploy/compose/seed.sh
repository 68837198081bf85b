#!/usr/bin/env bash
# Seeds the demo through the admin API with the obleth CLI: the model `mock-model`, the
# tenants `noisy` (weight 1) and `quiet` (weight 3), each with limits so the budget
# dashboard has something to show, and one new key each, written to $SEED_OUT/keys.env
# for the load (`LOAD_KEY_NOISY=…`, `LOAD_KEY_QUIET=…`).
#
# Run by Compose's `seed` service (obleth image) and by scripts/deploy-check.sh (the same
# file, with `obleth` on PATH). Needs OBLETH_ADMIN_URL and OBLETH_ADMIN_TOKEN. Safe to
# run again: an existing model or tenant is kept as it is; a new key is made each run.
set -euo pipefail

out=${SEED_OUT:?the directory for keys.env}
obleth=${OBLETH_BIN:-obleth}

# The pods are ready when Compose starts this, but the admin API may still be behind
# HAProxy's first health check: wait up to 60 s for it to answer.
for i in $(seq 1 60); do
  if "$obleth" models list >/dev/null 2>&1; then break; fi
  [ "$i" = 60 ] && { echo "seed: the admin API at $OBLETH_ADMIN_URL did not answer in 60 s" >&2; exit 1; }
  sleep 1
done

# Prices per token, so spend and the monthly budgets move.
if ! "$obleth" models get mock-model >/dev/null 2>&1; then
  "$obleth" models create mock-model --upstream-model mock-model \
    --input-cost-per-token 0.000001 --output-cost-per-token 0.000002 >/dev/null
  echo "seed: model mock-model created"
fi

tenant() {
  local name=$1
  shift
  if "$obleth" tenants get "$name" >/dev/null 2>&1; then
    echo "seed: tenant $name exists; kept as it is"
  else
    "$obleth" tenants create "$name" "$@" >/dev/null
    echo "seed: tenant $name created ($*)"
  fi
}
# Same group (the default), weights 1:3: when both are backlogged quiet is entitled to
# three quarters of the slots. The limits are far above what the demo load uses.
tenant noisy --weight 1 --tpm 5000000 --rpm 100000 --monthly-budget 1000
tenant quiet --weight 3 --tpm 2000000 --rpm 50000 --monthly-budget 500

# The CLI prints the API's JSON; the secret is its "secret" field (shown only once).
secret() {
  "$obleth" keys create "$1" --name demo-load | sed -n 's/^ *"secret": *"\([^"]*\)".*/\1/p'
}
noisy=$(secret noisy)
quiet=$(secret quiet)
if [ -z "$noisy" ] || [ -z "$quiet" ]; then
  echo "seed: could not read the new keys from the CLI's answer" >&2
  exit 1
fi
umask 077
printf 'LOAD_KEY_NOISY=%s\nLOAD_KEY_QUIET=%s\n' "$noisy" "$quiet" >"$out/keys.env.tmp"
mv "$out/keys.env.tmp" "$out/keys.env"
echo "seed: keys for noisy and quiet written to $out/keys.env"
