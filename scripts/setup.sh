#!/usr/bin/env bash
# Installs and starts what the tests need on a fresh Debian machine, and does nothing
# on one that has it all. Called by scripts/test.sh (the README's test command) and so
# by .ci/run.
#
# - packages: redis-server, clickhouse-server (the ledger's tests start their own),
#   haproxy (the multi-pod test), the PostgreSQL server binaries and psql (tests start
#   servers of their own, one on TLS), openssl (its certificates), prometheus (promtool
#   checks the /metrics text; scripts/deploy-check.sh runs the server), docker-compose
#   (deploy-check validates the Compose file with it), python3-venv (the OpenAI SDK
#   end-to-end tests, deploy-check's tools), chromium (the console's browser tests);
# - services: Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 with trust auth
#   for local TCP clients (the Postgres store's tests create a database each).
#
# Packages come from apt-get, as root or through sudo; without either, it says what is
# missing and stops.
set -euo pipefail

say() { echo "== setup: $*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    return 1
  fi
}

has() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }

need=()
has python3 || need+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
has redis-server || need+=(redis-server)
has clickhouse-server || need+=(clickhouse-server)
has haproxy || need+=(haproxy)
has psql || need+=(postgresql-client)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
has openssl || need+=(openssl)
has promtool || need+=(prometheus)
# scripts/deploy-check.sh validates deploy/compose/ with Debian's docker-compose (1.29; no
# daemon needed for `config`) and runs a real Prometheus server (the prometheus package).
has docker-compose || need+=(docker-compose)
# The console's browser tests drive Debian's Chromium (never a downloaded browser).
has chromium || need+=(chromium)
has npm || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  # Services' post-install scripts must not try to start daemons the tests start.
  if ! as_root env DEBIAN_FRONTEND=noninteractive sh -c \
    "apt-get update -qq && apt-get install -y -qq --no-install-recommends $(printf '%q ' "${need[@]}") >/dev/null"; then
    echo "setup: cannot install ${need[*]} (run as root, or with sudo, or install them: apt-get install ${need[*]})" >&2
    exit 1
  fi
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 100); do port_open "$1" && return 0; sleep 0.1; done
  return 1
}

# Redis at 127.0.0.1:6379 (the budget tests; tests that kill Redis start their own).
if ! port_open 6379; then
  say "starting redis-server on 127.0.0.1:6379"
  redis_server=$(command -v redis-server || echo /usr/bin/redis-server)
  "$redis_server" --port 6379 --bind 127.0.0.1 --save '' --appendonly no --daemonize yes >/dev/null
  wait_port 6379 || { echo "setup: redis-server did not start" >&2; exit 1; }
fi

# PostgreSQL at 127.0.0.1:5432: the packaged cluster if there is one, made to trust
# local TCP clients (the tests connect as postgres without a password).
if ! port_open 5432; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ] && [ -n "$(ls /etc/postgresql)" ]; then
    version=$(ls /etc/postgresql | sort -V | tail -1)
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    if [ -f "$hba" ] && ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
      say "trusting 127.0.0.1 in $hba (a test machine's database)"
      as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    fi
    say "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  fi
  wait_port 5432 || { echo "setup: no PostgreSQL at 127.0.0.1:5432 (start one with trust auth)" >&2; exit 1; }
  for db in test; do
    psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" postgres 2>/dev/null | grep -q 1 ||
      psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE $db" postgres >/dev/null 2>&1 || true
  done
fi
