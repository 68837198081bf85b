# Shared by lens.sh and usage.sh: free ports, the mock, the gateway, the admin API,
# a ClickHouse server of our own, and cleanup. Everything stays on 127.0.0.1.
# Sourced; expects TMP (a temp dir the caller removes) and BIN.

PIDS=()          # every process started here, killed by cleanup (by pid, never by name)

cleanup() {
  set +e   # a process already gone must not stop the cleanup
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$p" 2>/dev/null
  done
  [[ -n ${TMP:-} && -d $TMP && $TMP == /tmp/obleth-console-* ]] && rm -rf "$TMP"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() { # URL [tries of 0.2 s]
  for _ in $(seq 1 "${2:-150}"); do curl -s -o /dev/null "$1" && return 0; sleep 0.2; done
  echo "no answer from $1" >&2; return 1
}

start_mock() { # -> MOCK port, mock pid in PIDS
  MOCK=$(free_port)
  "$BIN" mock --listen "127.0.0.1:$MOCK" --max-num-seqs 64 --ttft-ms 20 --itl-ms 5 > "$TMP/mock.log" 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$MOCK/v1/models"
}

# start_gateway [ENV=VAL ...]: the gateway on fresh ports with the SQLite store in $TMP;
# the ledger is SQLite unless the arguments say otherwise. Sets DATA ADMIN METRICS GW_PID.
start_gateway() {
  DATA=$(free_port); ADMIN=$(free_port); METRICS=$(free_port)
  env OBLETH_LISTEN_DATA=127.0.0.1:$DATA OBLETH_LISTEN_ADMIN=127.0.0.1:$ADMIN OBLETH_LISTEN_METRICS=127.0.0.1:$METRICS \
    OBLETH_ADMIN_TOKEN="$TOKEN" OBLETH_DATABASE_URL="sqlite://$TMP/cp.db" \
    OBLETH_LEDGER_SQLITE_URL="sqlite://$TMP/usage.db" OBLETH_LEDGER_WAL_DIR="$TMP/wal" \
    OBLETH_UPSTREAM_BASE_URL="http://127.0.0.1:$MOCK/v1" OBLETH_ADMISSION_MAX_IN_FLIGHT=32 OBLETH_LOG_LEVEL=warn \
    "$@" "$BIN" serve >> "$TMP/obleth.log" 2>&1 &
  GW_PID=$!; PIDS+=($GW_PID)
  wait_http "http://127.0.0.1:$DATA/healthz" || { tail -20 "$TMP/obleth.log" >&2; return 1; }
  wait_http "http://127.0.0.1:$ADMIN/readyz"
}

stop_gateway() {
  kill "$GW_PID" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$GW_PID" 2>/dev/null || return 0; sleep 0.2; done
  kill -9 "$GW_PID" 2>/dev/null; echo "gateway $GW_PID did not stop in 20 s (killed)" >&2
}

admin() { # METHOD PATH [JSON]
  curl -sS -X "$1" -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    ${3:+-d "$3"} "http://127.0.0.1:$ADMIN$2"
}

new_token() { python3 -c 'import secrets; print("bench-console-" + secrets.token_hex(24))'; }

# cpu_ticks PID: utime+stime of the process (all its threads), in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK)

# start_clickhouse: a server of our own in $TMP/ch on free ports (as obleth-testkit does).
# Sets CH_HTTP (port).
start_clickhouse() {
  local d=$TMP/ch; CH_HTTP=$(free_port); local tcp; tcp=$(free_port)
  mkdir -p "$d"/{data,tmp,user_files,format_schemas,log}
  cat > "$d/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>$d/log/server.log</log><errorlog>$d/log/err.log</errorlog><console>0</console></logger>
    <http_port>$CH_HTTP</http_port>
    <tcp_port>$tcp</tcp_port>
    <listen_host>127.0.0.1</listen_host>
    <path>$d/data/</path>
    <tmp_path>$d/tmp/</tmp_path>
    <user_files_path>$d/user_files/</user_files_path>
    <format_schema_path>$d/format_schemas/</format_schema_path>
    <mark_cache_size>5368709</mark_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
    <users_config>$d/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
</yandex>
XML
  cat > "$d/users.xml" <<'XML'
<?xml version="1.0"?>
<yandex>
    <profiles><default></default></profiles>
    <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
        <profile>default</profile><quota>default</quota></default></users>
    <quotas><default></default></quotas>
</yandex>
XML
  ( cd "$d" && exec clickhouse-server --config-file="$d/config.xml" ) < /dev/null > /dev/null 2>> "$d/log/stderr.log" &
  PIDS+=($!)
  for _ in $(seq 1 600); do
    [[ $(curl -s "http://127.0.0.1:$CH_HTTP/?query=SELECT%201") == 1 ]] && return 0; sleep 0.1
  done
  echo "clickhouse-server not ready" >&2; tail -20 "$d/log/err.log" "$d/log/stderr.log" >&2; return 1
}

ch() { curl -sS --fail-with-body "http://127.0.0.1:$CH_HTTP/" --data-binary "$1"; }
