#!/usr/bin/env bash
# Validates the deployment artifacts without a container daemon (docs/deploy.md, "What is
# validated here and what is not"):
#   0. the Dockerfile's stages and the build context .dockerignore leaves (statically);
#   1. the Compose file resolves (`docker-compose config`, Debian's 1.29), and refuses to
#      without its secrets;
#   2. every HAProxy configuration parses (`haproxy -c`);
#   3. Prometheus's configuration and rules parse and the rules' unit tests pass
#      (`promtool check config|rules`, `promtool test rules`);
#   4. the Grafana dashboards are what scripts/deploy/dashboards.py generates, and the
#      provisioning files parse;
#   5. the Helm chart lints, renders and validates (scripts/deploy/chart.py);
#   6. the Compose topology runs as processes on loopback and Prometheus proves every
#      panel and alert against it (scripts/deploy/topology.py).
# Needs: docker-compose, haproxy, promtool and prometheus, redis-server, psql and a
# Postgres at 127.0.0.1:5432 (trust), python3 with venv; clickhouse-server if installed
# (else the pods use the SQLite ledger). scripts/setup.sh installs them.
#
#   scripts/deploy-check.sh                  # uses target/release/obleth
#   OBLETH_BIN=/path/to/obleth scripts/deploy-check.sh
#   DEPLOY_CHECK_DURATION=60 scripts/deploy-check.sh   # a longer load (seconds)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
started=$(date +%s)

OBLETH_BIN=${OBLETH_BIN:-target/release/obleth}
if [ ! -x "$OBLETH_BIN" ]; then
  echo "deploy-check: no obleth binary at $OBLETH_BIN (cargo build --release -p obleth, or set OBLETH_BIN)" >&2
  exit 1
fi
OBLETH_BIN=$(cd "$(dirname "$OBLETH_BIN")" && pwd)/$(basename "$OBLETH_BIN")
for tool in docker-compose haproxy promtool prometheus redis-server psql python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "deploy-check: $tool is missing (scripts/setup.sh installs it)" >&2; exit 1; }
done

# What the topology started, for the trap to end if topology.py itself cannot (killed):
# `pid N`, `db NAME`, `role NAME`, `dir PATH` lines.
STATE=$(mktemp -t obleth-deploy-check.XXXXXX)
PY=""
cleanup() {
  trap - EXIT INT TERM
  # Best effort from here on: one failure must not skip the rest.
  set +e
  if [ -n "$PY" ] && kill -0 "$PY" 2>/dev/null; then
    kill -TERM "$PY" 2>/dev/null
    for _ in $(seq 1 150); do kill -0 "$PY" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PY" 2>/dev/null
  fi
  # topology.py empties the file once it has ended everything itself; what is left here is
  # what it could not end (it was killed).
  local pids=() dbs=() roles=() dirs=() kind value pid
  while read -r kind value; do
    case "$kind" in
      # Only processes of the kinds topology.py starts (a pid may have been reused).
      pid) [[ "$(ps -p "$value" -o comm= 2>/dev/null)" =~ ^(obleth|haproxy|redis-server|prometheus|clickhouse-serv|python|bash) ]] &&
             pids+=("$value") ;;
      db) dbs+=("$value") ;;
      role) roles+=("$value") ;;
      dir) case "$value" in /tmp/obleth-deploy-check-*) dirs+=("$value") ;; esac ;;
    esac
  done <"$STATE"
  if [ ${#pids[@]} -gt 0 ]; then
    kill -TERM "${pids[@]}" 2>/dev/null
    for _ in $(seq 1 50); do
      local alive=0
      for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
      [ "$alive" = 0 ] && break
      sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null
    sleep 0.5
  fi
  for db in "${dbs[@]}"; do
    psql postgres://postgres@127.0.0.1:5432/postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
  done
  for role in "${roles[@]}"; do
    psql postgres://postgres@127.0.0.1:5432/postgres -qc "DROP ROLE IF EXISTS $role" >/dev/null 2>&1
  done
  for dir in "${dirs[@]}"; do rm -rf "$dir"; done
  rm -f "$STATE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PYTHON=target/deploy-venv/bin/python
results=()
failed=0
step() {
  local name=$1
  shift
  local t0
  t0=$(date +%s)
  echo "== $name"
  if "$@"; then
    results+=("ok    $name ($(( $(date +%s) - t0 )) s)")
  else
    results+=("FAIL  $name ($(( $(date +%s) - t0 )) s)")
    failed=1
  fi
}

compose_valid() {
  docker-compose --env-file deploy/compose/.env.example -f deploy/compose/docker-compose.yml config -q || return 1
  # Without .env (no secrets) it must refuse, naming what is missing.
  local out empty rc=0
  empty=$(mktemp)
  out=$(docker-compose --env-file "$empty" -f deploy/compose/docker-compose.yml config -q 2>&1) || rc=$?
  rm -f "$empty"
  if [ "$rc" = 0 ]; then
    echo "docker-compose config accepted the file without its secrets" >&2
    return 1
  fi
  grep -q "set it in .env" <<<"$out" || { echo "unexpected refusal: $out" >&2; return 1; }
  echo "  deploy/compose/docker-compose.yml: valid; refuses to start without its secrets"
}

haproxy_valid() {
  OBLETH_POD1=127.0.0.1 OBLETH_POD2=127.0.0.1 OBLETH_POD3=127.0.0.1 haproxy -c -f deploy/haproxy/haproxy.cfg &&
    OBLETH_POD1=127.0.0.1 OBLETH_POD2=127.0.0.1 haproxy -c -f deploy/compose/haproxy.cfg
}

prometheus_valid() {
  promtool check config deploy/prometheus/prometheus.yml &&
    promtool check rules deploy/prometheus/alerts.yml &&
    promtool test rules deploy/prometheus/alerts_test.yml
}

venv() {
  local venv=target/deploy-venv stamp
  stamp=$(sha256sum scripts/deploy/requirements.txt | cut -c1-16)
  if [ ! -f "$venv/.stamp-$stamp" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv" || return 1
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/deploy/requirements.txt || return 1
    touch "$venv/.stamp-$stamp"
  fi
  echo "  $("$venv/bin/python" -m pip freeze --disable-pip-version-check | grep -iE '^(helm-python-sdk|kubernetes-validate|jsonschema|pyyaml)=' | tr '\n' ' ')"
}

grafana_valid() {
  "$PYTHON" scripts/deploy/dashboards.py --check || return 1
  "$PYTHON" - <<'PY'
import glob, json, yaml
for f in glob.glob("deploy/grafana/provisioning/**/*.yml", recursive=True):
    doc = yaml.safe_load(open(f))
    assert doc.get("apiVersion") == 1, f
for f in glob.glob("deploy/grafana/dashboards/*.json"):
    d = json.load(open(f))
    assert d["uid"] and d["panels"], f
    for p in d["panels"]:
        for t in p.get("targets", []):
            assert t["datasource"]["uid"] == "${datasource}", (f, p["title"])
print("  dashboards current; provisioning and dashboards parse")
PY
}

topology() {
  # Bounded: the stack, the load and the queries take about a minute; `timeout` sends
  # SIGTERM, on which topology.py stops what it started.
  DEPLOY_CHECK_STATE=$STATE timeout -s TERM 300 "$PYTHON" scripts/deploy/topology.py --obleth "$OBLETH_BIN" \
    --duration "${DEPLOY_CHECK_DURATION:-35}" &
  PY=$!
  local rc=0
  wait "$PY" || rc=$?
  PY=""
  return "$rc"
}

step "Dockerfile and build context (no daemon: static)" python3 scripts/deploy/dockerfile.py
step "Compose file (docker-compose $(docker-compose version --short 2>/dev/null))" compose_valid
step "HAProxy configurations (haproxy -c)" haproxy_valid
step "Prometheus configuration, rules and rule tests (promtool)" prometheus_valid
step "Python tools (target/deploy-venv)" venv
step "Grafana dashboards and provisioning" grafana_valid
step "Helm chart (lint, template, Kubernetes schemas, check-config)" "$PYTHON" scripts/deploy/chart.py --obleth "$OBLETH_BIN"
step "The Compose topology as processes, proven through Prometheus" topology

echo
echo "== deploy-check summary ($(( $(date +%s) - started )) s)"
printf '  %s\n' "${results[@]}"
nfail=$(printf '%s\n' "${results[@]}" | grep -c '^FAIL' || true)
echo "deploy-check: $(( ${#results[@]} - nfail )) passed, $nfail failed"
exit $failed
