#!/usr/bin/env python3
"""The Docker Compose stack as processes on loopback, checked end to end; run by
scripts/deploy-check.sh (no container daemon on CI machines).

What it starts is read from deploy/compose/docker-compose.yml as `docker-compose config`
resolves it with a .env of fresh secrets: the mock's arguments, the migrate step, each
pod's environment and its configuration file (deploy/compose/obleth.toml), HAProxy's
file (deploy/compose/haproxy.cfg), Prometheus's file and rules (deploy/prometheus/),
the seeding script and the load script. Only addresses and paths are changed: service
names become 127.0.0.1 and free ports, volumes become directories under a temporary one.
The stores are real servers of the run's own: redis-server with a password, a fresh
database and role on the machine's Postgres (127.0.0.1:5432, trust), clickhouse-server
(if installed; else the SQLite ledger), and Prometheus scraping every second.

Then it seeds the tenants, runs the contention load through HAProxy, signs in to the
console through HAProxy (the pod cookie must keep the session), and asks Prometheus:
- every target up, both pods among them;
- every dashboard panel's expression returns data over the load's window (an empty panel
  fails), and every metric selector in it has data, and every label it groups or
  matches by exists on the metrics it names;
- every alert rule evaluates without error, and every metric and label it names exists
  (alerts are expected to be quiet on a healthy cluster, so their result is not asked).
Last it stops Redis: requests keep succeeding on the pods' local share, the pods stay
ready, and the metrics the Redis alerts read appear.
Metrics the gateway does not export yet, or only after a first event, are listed in
AWAITING with the reason; they are reported, and the check fails once one appears (so the
list cannot outlive the fix).

Usage: topology.py --obleth BIN [--duration 35]
"""

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPOSE = os.path.join(ROOT, "deploy", "compose", "docker-compose.yml")
ENV_EXAMPLE = os.path.join(ROOT, "deploy", "compose", ".env.example")
DASHBOARDS = os.path.join(ROOT, "deploy", "grafana", "dashboards")
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"

# Metrics the dashboards and alerts name that a healthy gateway does not show (yet): the
# check reports them instead of failing, and fails when one shows up (remove it then).
AWAITING: dict[str, str] = {}

# Grafana's variables, as a panel would send them for "All pods" and the last minutes.
GRAFANA_VARS = {"$__rate_interval": "10s", "$__range": "1m", "$pod": ".+", "${pod}": ".+"}

PROM_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                 "offset", "inf", "nan"}


class Run:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="obleth-deploy-check-")
        self.procs = []
        self.dbs = []
        self.roles = []
        self.state = args.state
        self.failures = []
        self.warnings = []
        self.passed = 0
        self.notes = []
        # Processes stopped on purpose (an outage the check stages).
        self.stopped = set()

    # === bookkeeping ===

    def record(self, line):
        if self.state:
            with open(self.state, "a") as f:
                f.write(line + "\n")

    def check(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failures.append(what)
            print(f"  FAIL {what}", flush=True)
        return ok

    def start(self, name, cmd, env=None, cwd=None):
        log = open(os.path.join(self.tmp, f"{name}.log"), "w")
        p = subprocess.Popen(cmd, env=env, cwd=cwd or self.tmp, stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        self.procs.append((name, p))
        self.record(f"pid {p.pid}")
        return p

    def run_child(self, cmd, env, timeout):
        """A short-lived child (seed, load), its pid recorded like the servers' so that the
        shell trap can end it if this process is killed."""
        p = subprocess.Popen(cmd, env=env, cwd=self.tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             stdin=subprocess.DEVNULL)
        self.record(f"pid {p.pid}")
        try:
            out, err = p.communicate(timeout=timeout)
        except BaseException:
            p.kill()
            p.wait()
            raise
        return subprocess.CompletedProcess(cmd, p.returncode, out, err)

    def log_tail(self, name, n=30):
        try:
            with open(os.path.join(self.tmp, f"{name}.log")) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def cleanup(self):
        for name, p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 10
        for name, p in reversed(self.procs):
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for sql in [f"DROP DATABASE IF EXISTS {db} WITH (FORCE)" for db in self.dbs] + \
                   [f"DROP ROLE IF EXISTS {role}" for role in self.roles]:
            try:
                psql(sql)
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                print(f"  cleanup: {e}", flush=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        # All ended here: the shell trap's net has nothing left to do (and must not act on
        # pids that may be reused by then).
        if self.state:
            open(self.state, "w").close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(sql):
    out = subprocess.run(["psql", PG_ADMIN, "-v", "ON_ERROR_STOP=1", "-qc", sql], capture_output=True, text=True,
                         timeout=30)
    if out.returncode != 0:
        raise RuntimeError(f"psql {sql!r}: {out.stderr.strip()}")


def http(method, url, body=None, headers=None, timeout=5):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def wait_for(what, probe, timeout, proc=None, run=None, log=None):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if probe():
                return
        except (OSError, urllib.error.URLError) as e:
            last = e
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: exited with {proc.returncode}\n{run.log_tail(log) if run else ''}")
        time.sleep(0.2)
    raise RuntimeError(f"{what}: not ready within {timeout} s ({last})\n{run.log_tail(log) if run and log else ''}")


def http_ok(url, status=200):
    return lambda: http("GET", url, timeout=2)[0] == status


# === the stack ===

def compose_config(run):
    """docker-compose's own resolution of the file, with a .env of fresh secrets."""
    env_file = os.path.join(run.tmp, ".env")
    secrets_ = {}
    with open(ENV_EXAMPLE) as f:
        for line in f:
            name, sep, _ = line.strip().partition("=")
            if sep and not name.startswith("#"):
                secrets_[name] = secrets.token_hex(24)
    with open(env_file, "w") as f:
        f.writelines(f"{k}={v}\n" for k, v in secrets_.items())
    out = subprocess.run(["docker-compose", "--env-file", env_file, "-f", COMPOSE, "config"], capture_output=True,
                         text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"docker-compose config: {out.stderr}")
    return yaml.safe_load(out.stdout), secrets_


def volume_source(service, target):
    for v in service.get("volumes", []):
        if isinstance(v, str):
            src, _, rest = v.partition(":")
            tgt = rest.split(":")[0]
        else:
            src, tgt = v.get("source"), v.get("target")
        if tgt == target:
            return src
    raise KeyError(f"no volume at {target}")


def clickhouse_binary():
    for path in (shutil.which("clickhouse-server"), "/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"):
        if path and os.access(path, os.X_OK):
            return path
    return None


def start_clickhouse(run, password):
    binary = clickhouse_binary()
    if not binary:
        return None
    d = os.path.join(run.tmp, "clickhouse")
    for sub in ("data", "tmp", "user_files", "format_schemas", "log"):
        os.makedirs(os.path.join(d, sub))
    http_port, tcp_port = free_port(), free_port()
    # The <yandex> form both Debian's 18.16 and current servers read (as obleth-testkit).
    with open(os.path.join(d, "config.xml"), "w") as f:
        f.write(f"""<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>{d}/log/server.log</log><errorlog>{d}/log/err.log</errorlog><console>0</console></logger>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <listen_host>127.0.0.1</listen_host>
    <path>{d}/data/</path>
    <tmp_path>{d}/tmp/</tmp_path>
    <user_files_path>{d}/user_files/</user_files_path>
    <format_schema_path>{d}/format_schemas/</format_schema_path>
    <mark_cache_size>5368709</mark_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
    <users_config>{d}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
</yandex>
""")
    # `obleth` with the password of .env, as the Compose image's CLICKHOUSE_USER makes it.
    with open(os.path.join(d, "users.xml"), "w") as f:
        f.write(f"""<?xml version="1.0"?>
<yandex>
    <profiles><default></default></profiles>
    <users>
        <default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default>
        <obleth><password>{password}</password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></obleth>
    </users>
    <quotas><default></default></quotas>
</yandex>
""")
    p = run.start("clickhouse", [binary, f"--config-file={d}/config.xml"], cwd=d)
    url = f"http://127.0.0.1:{http_port}"
    wait_for("clickhouse-server", lambda: http("GET", url + "/?query=SELECT%201")[1].strip() == "1", 60, p, run,
             "clickhouse")
    # The database the Compose image creates from CLICKHOUSE_DB.
    status, body = http("POST", url + "/", b"CREATE DATABASE IF NOT EXISTS obleth")
    if status != 200:
        raise RuntimeError(f"clickhouse: CREATE DATABASE: {body}")
    return url


def local_url(value, ports):
    """A Compose URL (`…//redis:6379…`) with the service's address on this machine."""
    def sub(m):
        key = (m.group(2), int(m.group(3)))
        return f"{m.group(1)}127.0.0.1:{ports[key]}" if key in ports else m.group(0)
    return re.sub(r"(//(?:[^@/]*@)?)([a-z0-9-]+):(\d+)", sub, value)


def start_stack(run):
    obleth = run.args.obleth
    cfg, env_secrets = compose_config(run)
    svc = cfg["services"]
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("OBLETH_", "LOAD_", "SEED_"))}
    base_env.pop("RUST_BACKTRACE", None)
    ports = {}

    # Redis with the .env password, as the `redis` service runs it.
    redis_port = free_port()
    ports[("redis", 6379)] = redis_port
    run.start("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                        "--appendonly", "no", "--requirepass", env_secrets["REDIS_PASSWORD"]])

    # A fresh database and role on the machine's Postgres, the role owning the database as
    # `obleth` does in the Compose `postgres` service.
    suffix = f"{os.getpid()}_{secrets.token_hex(3)}"
    db, role = f"obleth_deploy_{suffix}", f"obleth_deploy_{suffix}"
    run.record(f"db {db}")
    run.record(f"role {role}")
    psql(f"CREATE ROLE {role} LOGIN PASSWORD '{env_secrets['POSTGRES_PASSWORD']}'")
    run.roles.append(role)
    psql(f"CREATE DATABASE {db} OWNER {role}")
    run.dbs.append(db)
    database_url = f"postgres://{role}:{env_secrets['POSTGRES_PASSWORD']}@127.0.0.1:5432/{db}"

    clickhouse = start_clickhouse(run, env_secrets["CLICKHOUSE_PASSWORD"])
    if clickhouse:
        ports[("clickhouse", 8123)] = int(clickhouse.rsplit(":", 1)[1])
    else:
        run.notes.append("clickhouse-server is not installed: the pods used the SQLite ledger")

    # The mock, with the Compose service's arguments.
    mock_cmd = list(svc["mock"]["command"])
    mock_port = free_port()
    ports[("mock", 8000)] = mock_port
    i = mock_cmd.index("--listen")
    mock_cmd[i + 1] = f"127.0.0.1:{mock_port}"
    mock = run.start("mock", [obleth] + mock_cmd, env=base_env)
    wait_for("mock", http_ok(f"http://127.0.0.1:{mock_port}/health"), 20, mock, run, "mock")

    # The migrate step, if this binary has it.
    has_migrate = subprocess.run([obleth, "migrate", "--help"], capture_output=True, timeout=10).returncode == 0
    if has_migrate:
        env = dict(base_env, **{k: str(v) for k, v in (svc["migrate"].get("environment") or {}).items()})
        env["OBLETH_DATABASE_URL"] = database_url
        t0 = time.monotonic()
        out = subprocess.run([obleth] + list(svc["migrate"]["command"]), env=env, capture_output=True, text=True,
                             timeout=120)
        run.check(out.returncode == 0, f"obleth {' '.join(svc['migrate']['command'])}: {out.stderr[-800:]}")
        if out.returncode != 0:
            raise RuntimeError("the migrate step failed")
        print(f"  migrate: ok in {time.monotonic() - t0:.1f} s", flush=True)
    else:
        run.notes.append("this obleth has no `migrate`: the pods migrated themselves (OBLETH_DATABASE_MIGRATE=true)")

    # The pods, with their Compose environment and configuration file.
    pods = {}
    for name in ("pod1", "pod2"):
        s = svc[name]
        env = dict(base_env, **{k: str(v) for k, v in (s.get("environment") or {}).items()})
        d = os.path.join(run.tmp, name)
        os.makedirs(d)
        env["OBLETH_CONFIG"] = volume_source(s, env["OBLETH_CONFIG"])
        data, admin, metrics = free_port(), free_port(), free_port()
        env.update({
            "OBLETH_LISTEN_DATA": f"127.0.0.1:{data}",
            "OBLETH_LISTEN_ADMIN": f"127.0.0.1:{admin}",
            "OBLETH_LISTEN_METRICS": f"127.0.0.1:{metrics}",
            "OBLETH_DATABASE_URL": database_url,
            "OBLETH_BUDGET_REDIS_URL": local_url(env["OBLETH_BUDGET_REDIS_URL"], ports),
            "OBLETH_CLUSTER_REDIS_URL": local_url(env["OBLETH_CLUSTER_REDIS_URL"], ports),
            # The file's Compose host names, as addresses here.
            "OBLETH_UPSTREAM_BASE_URL": f"http://127.0.0.1:{mock_port}/v1",
            # The pod's volume (/var/lib/obleth): a directory of its own.
            "OBLETH_LEDGER_WAL_DIR": os.path.join(d, "wal"),
        })
        if clickhouse:
            env["OBLETH_LEDGER_CLICKHOUSE_URL"] = clickhouse
        else:
            env["OBLETH_LEDGER_BACKEND"] = "sqlite"
            env["OBLETH_LEDGER_SQLITE_URL"] = f"sqlite://{d}/usage.db"
        if not has_migrate:
            env["OBLETH_DATABASE_MIGRATE"] = "true"
        p = run.start(name, [obleth] + list(s["command"]), env=env, cwd=d)
        pods[name] = {"data": data, "admin": admin, "metrics": metrics, "proc": p, "env": env}
    for name, pod in pods.items():
        wait_for(f"{name} /readyz", http_ok(f"http://127.0.0.1:{pod['admin']}/readyz"), 40, pod["proc"], run, name)
        # The Compose health check is `obleth health`: run it as Compose would.
        hc = cfg["services"][name]["healthcheck"]["test"]
        cmd = [obleth] + hc[2:] if hc[:2] == ["CMD", "obleth"] else None
        if cmd:
            cmd = [c.replace("127.0.0.1:9090", f"127.0.0.1:{pod['admin']}") for c in cmd]
            out = subprocess.run(cmd, env=pod["env"], capture_output=True, text=True, timeout=15)
            run.check(out.returncode == 0, f"{name}: its health check `{' '.join(hc[1:])}`: {out.stderr[-300:]}")

    # HAProxy with the Compose file.
    hp_cfg = volume_source(svc["haproxy"], "/usr/local/etc/haproxy/haproxy.cfg")
    hp = {"data": free_port(), "admin": free_port(), "stats": free_port()}
    ports.update({("haproxy", 8080): hp["data"], ("haproxy", 9090): hp["admin"], ("haproxy", 8404): hp["stats"]})
    env = dict(base_env, OBLETH_HAPROXY_DATA_BIND=f"127.0.0.1:{hp['data']}",
               OBLETH_HAPROXY_ADMIN_BIND=f"127.0.0.1:{hp['admin']}",
               OBLETH_HAPROXY_STATS_BIND=f"127.0.0.1:{hp['stats']}")
    for i, (name, pod) in enumerate(pods.items(), 1):
        env.update({f"OBLETH_POD{i}": "127.0.0.1", f"OBLETH_POD{i}_DATA_PORT": str(pod["data"]),
                    f"OBLETH_POD{i}_ADMIN_PORT": str(pod["admin"])})
        ports[(name, 9091)] = pod["metrics"]
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    hproc = run.start("haproxy", [haproxy, "-db", "-f", hp_cfg], env=env)
    wait_for("haproxy", http_ok(f"http://127.0.0.1:{hp['stats']}/healthz"), 20, hproc, run, "haproxy")
    wait_for("haproxy → pods", http_ok(f"http://127.0.0.1:{hp['admin']}/readyz"), 20, hproc, run, "haproxy")
    time.sleep(1.5)  # both servers past their first check (inter 1s, rise 1)

    # Prometheus with the Compose file: targets as addresses here, every second.
    prom_src = volume_source(svc["prometheus"], "/etc/prometheus/prometheus.yml")
    rules_src = volume_source(svc["prometheus"], "/etc/prometheus/alerts.yml")
    prom = yaml.safe_load(open(prom_src))
    prom["global"]["scrape_interval"] = "1s"
    prom["global"]["evaluation_interval"] = "1s"
    prom["rule_files"] = [rules_src]
    for job in prom["scrape_configs"]:
        for sc in job.get("static_configs", []):
            new = []
            for t in sc["targets"]:
                host, port = t.rsplit(":", 1)
                new.append(f"127.0.0.1:{ports[(host, int(port))]}")
            sc["targets"] = new
    prom_cfg = os.path.join(run.tmp, "prometheus.yml")
    with open(prom_cfg, "w") as f:
        yaml.safe_dump(prom, f)
    prom_port = free_port()
    prometheus = shutil.which("prometheus") or "/usr/bin/prometheus"
    pproc = run.start("prometheus", [prometheus, f"--config.file={prom_cfg}",
                                     f"--storage.tsdb.path={run.tmp}/prometheus-data",
                                     f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"])
    prom_url = f"http://127.0.0.1:{prom_port}"
    wait_for("prometheus", http_ok(prom_url + "/-/ready"), 30, pproc, run, "prometheus")
    return {"cfg": cfg, "pods": pods, "hp": hp, "prom": prom_url, "ports": ports, "clickhouse": clickhouse,
            "secrets": env_secrets, "base_env": base_env, "db": db}


def seed_and_load(run, st):
    svc = st["cfg"]["services"]
    seed_dir = os.path.join(run.tmp, "seed")
    os.makedirs(seed_dir)
    s = svc["seed"]
    env = dict(st["base_env"], **{k: str(v) for k, v in (s.get("environment") or {}).items()})
    env["OBLETH_ADMIN_URL"] = local_url(env["OBLETH_ADMIN_URL"], st["ports"])
    env["SEED_OUT"] = seed_dir
    env["OBLETH_BIN"] = run.args.obleth
    script = volume_source(s, s["entrypoint"][-1])
    out = run.run_child([s["entrypoint"][0], script], env, 120)
    print("  " + out.stdout.strip().replace("\n", "\n  "), flush=True)
    if not run.check(out.returncode == 0, f"seed.sh: {out.stderr[-800:]}"):
        raise RuntimeError("seeding failed")
    # Run twice, as `docker compose up` again would: kept, not failed.
    out = run.run_child([s["entrypoint"][0], script], env, 120)
    run.check(out.returncode == 0 and "exists" in out.stdout, f"seed.sh a second time: {out.stdout}{out.stderr}")

    l = svc["load"]
    env = dict(st["base_env"], **{k: str(v) for k, v in (l.get("environment") or {}).items()})
    env["LOAD_BASE_URL"] = local_url(env["LOAD_BASE_URL"], st["ports"])
    env["LOAD_KEYS"] = os.path.join(seed_dir, "keys.env")
    env["LOAD_DURATION"] = str(run.args.duration)
    script = volume_source(l, l["command"][-1])
    start = time.time()
    out = run.run_child([sys.executable, script], env, run.args.duration + 90)
    end = time.time()
    print("  " + "\n  ".join(line for line in out.stdout.splitlines() if not line.startswith("LOAD-SUMMARY")),
          flush=True)
    summary = {}
    for line in out.stdout.splitlines():
        if line.startswith("LOAD-SUMMARY "):
            summary = json.loads(line[len("LOAD-SUMMARY "):])
    run.check(out.returncode == 0 and summary, f"load.py: {out.stderr[-800:]}")
    for tenant in ("noisy", "quiet"):
        t = summary.get(tenant, {})
        print(f"  load {tenant}: {json.dumps(t)}", flush=True)
        run.check(t.get("ok", 0) > 0, f"load: {tenant} completed requests")
    n, q = summary.get("noisy", {}), summary.get("quiet", {})
    # The product's claim in one line: the light, heavier-weighted tenant does not wait
    # behind the noisy one's queue.
    if n.get("p50_s") is not None and q.get("p50_s") is not None:
        run.check(q["p50_s"] < n["p50_s"], f"load: quiet's median latency ({q['p50_s']} s) is below noisy's "
                                           f"({n['p50_s']} s)")
    return start, end, summary


# === Prometheus ===

def prom_range(st, expr, start, end):
    q = urllib.parse.urlencode({"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "1s"})
    status, body = http("GET", f"{st['prom']}/api/v1/query_range?{q}", timeout=30)
    data = json.loads(body)
    if data.get("status") != "success":
        raise RuntimeError(f"{data.get('errorType')}: {data.get('error')}")
    return data["data"]["result"]


def substitute(expr):
    for k, v in GRAFANA_VARS.items():
        expr = expr.replace(k, v)
    return expr


def parse_selectors(expr):
    """(metric, [(label, op, value)]) of each vector selector; and the labels named in
    by/without/on/ignoring clauses."""
    grouping = set()
    for m in re.finditer(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", expr):
        grouping.update(x.strip() for x in m.group(2).split(",") if x.strip())
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    bare = re.sub(r"\[[^\]]*\]", " ", bare)
    selectors = []
    for m in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?(\s*\()?", bare):
        name, braces, call = m.group(1), m.group(2), m.group(3)
        if call and not braces:
            continue  # a function
        if name.lower() in PROM_KEYWORDS or re.fullmatch(r"\d.*", name):
            continue
        # Inside a quoted string (a label value) or a number like 1e3: not a selector.
        before = bare[:m.start()]
        if before.count('"') % 2 == 1:
            continue
        matchers = re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"', braces or "")
        selectors.append((name, matchers))
    return selectors, grouping


def check_expression(run, st, what, expr, start, end, whole_must_have_data, extra_labels=()):
    expr = substitute(expr)
    selectors, grouping = parse_selectors(expr)
    names = {s[0] for s in selectors}
    awaiting = sorted(n for n in names if n in AWAITING)
    ok = True
    for name, matchers in selectors:
        if name in AWAITING:
            continue
        sel = name + "{" + ",".join(f'{l}{op}"{v}"' for l, op, v in matchers) + "}"
        try:
            found = prom_range(st, f"count({sel})", start, end)
        except RuntimeError as e:
            ok &= run.check(False, f"{what}: {sel}: {e}")
            continue
        ok &= run.check(bool(found), f"{what}: no series for {sel}")
    # Every label the expression groups or matches by, or an annotation reads, exists on
    # one of the metrics it names.
    for label in sorted(set(grouping) | set(extra_labels)):
        if label in ("le",) and any(n.endswith("_bucket") for n in names):
            continue
        have = False
        for name in names - set(AWAITING):
            if prom_range(st, f'count({name}{{{label}!=""}})', start, end):
                have = True
                break
        if names - set(AWAITING):
            ok &= run.check(have, f"{what}: no metric of {sorted(names)} has the label `{label}`")
    if awaiting:
        run.warnings.append(f"{what}: {', '.join(awaiting)} not in a healthy cluster's scrape (see AWAITING)")
    elif whole_must_have_data:
        try:
            result = prom_range(st, expr, start, end)
            ok &= run.check(bool(result), f"{what}: the expression returned no data: {expr}")
        except RuntimeError as e:
            ok &= run.check(False, f"{what}: {e}: {expr}")
    return ok


def check_prometheus(run, st, start, end):
    print("== Prometheus: targets", flush=True)
    status, body = http("GET", f"{st['prom']}/api/v1/targets?state=active")
    targets = json.loads(body)["data"]["activeTargets"]
    for t in targets:
        run.check(t["health"] == "up", f"target {t['labels'].get('job')} {t['scrapeUrl']} is {t['health']}: "
                                       f"{t.get('lastError')}")
    pods = sorted(t["labels"].get("pod", "") for t in targets if t["labels"].get("job") == "obleth")
    run.check(pods == ["pod1", "pod2"], f"Prometheus scrapes both pods: {pods}")
    print(f"  {len(targets)} targets up: " + ", ".join(f"{t['labels'].get('job')}/{t['labels'].get('pod', '-')}"
                                                     for t in targets), flush=True)
    served = prom_range(st, 'sum by (pod) (increase(obleth_requests_total{job="obleth"}[20s]))', start, end)
    busy = sorted(r["metric"].get("pod") for r in served if max(float(v[1]) for v in r["values"]) > 0)
    run.check(busy == ["pod1", "pod2"], f"both pods served requests through HAProxy: {busy}")

    # Every name the gateway exports now, for the AWAITING check.
    status, body = http("GET", f"{st['prom']}/api/v1/label/__name__/values")
    exported = set(json.loads(body)["data"])
    for name, why in AWAITING.items():
        run.check(name not in exported, f"{name} is exported now: remove it from AWAITING in {__file__}")

    print("== Prometheus: alert rules", flush=True)
    status, body = http("GET", f"{st['prom']}/api/v1/rules?type=alert")
    groups = json.loads(body)["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    expected = [r["alert"] for g in yaml.safe_load(open(volume_source(st["cfg"]["services"]["prometheus"],
                                                                      "/etc/prometheus/alerts.yml")))["groups"]
                for r in g["rules"]]
    run.check(sorted(r["name"] for r in rules) == sorted(expected), "Prometheus loaded every alert rule")
    for r in rules:
        run.check(r.get("health") == "ok", f"alert {r['name']} evaluates: {r.get('health')} {r.get('lastError')}")
        labels = set()
        for text in r.get("annotations", {}).values():
            labels.update(re.findall(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)", text))
        runbook = r.get("annotations", {}).get("runbook", "")
        run.check(bool(r.get("annotations", {}).get("summary")) and bool(r.get("annotations", {}).get("description")),
                  f"alert {r['name']} has a summary and a description")
        anchor = runbook.partition("#")[2]
        docs = open(os.path.join(ROOT, "docs", "deploy.md")).read()
        headings = {re.sub(r"[^a-z0-9 _-]", "", h.strip().lower()).replace(" ", "-")
                    for h in re.findall(r"^#+\s+(.*)$", docs, re.M)}
        run.check(runbook.startswith("docs/deploy.md#") and anchor in headings,
                  f"alert {r['name']}: its runbook {runbook!r} is a heading of docs/deploy.md")
        ok = check_expression(run, st, f"alert {r['name']}", r["query"], start, end, False, labels)
        print(f"  {'ok  ' if ok else 'FAIL'} {r['name']} ({r['state']})", flush=True)

    print("== Prometheus: dashboard panels", flush=True)
    for fname in sorted(os.listdir(DASHBOARDS)):
        if not fname.endswith(".json"):
            continue
        dash = json.load(open(os.path.join(DASHBOARDS, fname)))
        count = bad = 0
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                count += 1
                what = f"{fname} / {panel['title']} [{target['refId']}]"
                if not check_expression(run, st, what, target["expr"], start, end, True):
                    bad += 1
        # The $pod variable's own query.
        for var in dash["templating"]["list"]:
            if var.get("type") == "query":
                m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", var["definition"])
                if run.check(bool(m), f"{fname}: ${var['name']} is label_values(metric, label)"):
                    found = prom_range(st, f'count by ({m.group(2)}) ({m.group(1)})', start, end)
                    vals = sorted(r["metric"].get(m.group(2), "") for r in found)
                    run.check(vals == ["pod1", "pod2"], f"{fname}: ${var['name']} lists both pods: {vals}")
        print(f"  {'ok  ' if not bad else 'FAIL'} {fname}: {count - bad}/{count} panel queries", flush=True)


def check_console_sticky(run, st):
    """The console through HAProxy's admin frontend: sessions live in the pod that signed
    the browser in, so every request after sign-in must reach that pod (the cookie
    HAProxy adds)."""
    base = f"http://127.0.0.1:{st['hp']['admin']}"
    token = st["secrets"]["OBLETH_ADMIN_TOKEN"]
    req = urllib.request.Request(base + "/api/v1/session", method="POST",
                                 data=json.dumps({"token": token}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        cookies = [c.split(";")[0] for c in r.headers.get_all("Set-Cookie") or []]
    names = sorted(c.split("=")[0] for c in cookies)
    if not run.check(names == ["obleth_pod", "obleth_session"], f"console sign-in through HAProxy sets the "
                                                                 f"session and pod cookies: {names}"):
        return

    def statuses(cookie_header, n=20):
        out = []
        for _ in range(n):
            out.append(http("GET", base + "/api/v1/session", headers={"Cookie": cookie_header})[0])
        return out
    sticky = statuses("; ".join(cookies))
    run.check(all(s == 200 for s in sticky), f"console: 20 requests with the pod cookie all keep the session: "
                                            f"{sticky}")
    unsticky = statuses(next(c for c in cookies if c.startswith("obleth_session=")))
    print(f"  console through HAProxy: {sticky.count(200)}/20 with the pod cookie, "
          f"{unsticky.count(200)}/20 without it (sessions are per pod)", flush=True)


def metric_values(port):
    """The pod's /metrics as {name: [(labels, value)]}."""
    status, body = http("GET", f"http://127.0.0.1:{port}/metrics")
    out = {}
    for line in body.splitlines():
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m and not line.startswith("#"):
            out.setdefault(m.group(1), []).append((m.group(2) or "", float(m.group(3))))
    return out


def check_redis_outage(run, st):
    """Redis goes away: the metrics the Redis alerts read appear (three of them only then,
    see AWAITING), and the pods stay ready and keep serving on their local share."""
    redis = next(p for name, p in run.procs if name == "redis")
    redis.terminate()
    redis.wait(timeout=10)
    run.stopped.add("redis")
    key = open(os.path.join(run.tmp, "seed", "keys.env")).read().split("LOAD_KEY_QUIET=")[1].strip()
    body = json.dumps({"model": "mock-model", "messages": [{"role": "user", "content": "hi"}],
                       "max_tokens": 4}).encode()
    codes = []
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        codes.append(http("POST", f"http://127.0.0.1:{st['hp']['data']}/v1/chat/completions", body,
                          {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}, timeout=10)[0])
    ok = sum(1 for c in codes if c == 200)
    print(f"  Redis stopped: {ok}/{len(codes)} requests answered 200 on the pods' local share", flush=True)
    run.check(ok > 0 and ok >= len(codes) - 3, f"requests keep succeeding while Redis is down: {codes}")
    for name, pod in st["pods"].items():
        run.check(http("GET", f"http://127.0.0.1:{pod['admin']}/readyz")[0] == 200,
                  f"{name} stays ready while Redis is down")
    seen = {}
    for name, pod in st["pods"].items():
        for metric, samples in metric_values(pod["metrics"]).items():
            seen.setdefault(metric, []).extend(samples)
    for metric, want in (("obleth_budget_breaker_open", "== 1"),
                         ("obleth_budget_degraded_decisions_total", "> 0"),
                         ("obleth_cluster_heartbeat_failures_total", "> 0")):
        values = [v for _, v in seen.get(metric, [])]
        good = any(v == 1 for v in values) if want == "== 1" else any(v > 0 for v in values)
        run.check(good, f"with Redis down, {metric} {want} on a pod: {values}")
    print("  with Redis down: " + ", ".join(f"{m} {[v for _, v in seen.get(m, [])]}" for m in (
        "obleth_budget_breaker_open", "obleth_budget_degraded_decisions_total",
        "obleth_cluster_heartbeat_failures_total")), flush=True)


def check_ledger(run, st):
    if not st["clickhouse"]:
        return
    # Rows reach ClickHouse within ledger.insert_interval (1 s); allow a few.
    deadline = time.monotonic() + 10
    rows = 0
    while time.monotonic() < deadline:
        status, body = http("POST", st["clickhouse"] + "/", b"SELECT count() FROM obleth.obleth_usage")
        if status == 200 and body.strip().isdigit():
            rows = int(body.strip())
            if rows > 0:
                break
        time.sleep(0.5)
    print(f"  ClickHouse: {rows} usage rows in obleth.obleth_usage", flush=True)
    run.check(rows > 0, "the pods wrote usage rows to ClickHouse")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--obleth", required=True)
    ap.add_argument("--duration", type=int, default=35)
    ap.add_argument("--state", default=os.environ.get("DEPLOY_CHECK_STATE"))
    args = ap.parse_args()

    def stop(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    run = Run(args)
    run.record(f"dir {run.tmp}")
    t0 = time.monotonic()
    try:
        print("== the Compose topology as processes", flush=True)
        st = start_stack(run)
        print(f"  up in {time.monotonic() - t0:.1f} s: mock, "
              f"{'clickhouse, ' if st['clickhouse'] else ''}redis, postgres database {st['db']}, pod1, pod2, "
              f"haproxy, prometheus", flush=True)
        print("== seed and load", flush=True)
        start, end, _ = seed_and_load(run, st)
        time.sleep(2)  # the last scrapes and rule evaluations
        check_ledger(run, st)
        check_console_sticky(run, st)
        check_prometheus(run, st, start + 5, time.time())
        print("== Redis outage", flush=True)
        check_redis_outage(run, st)
        for name, p in run.procs:
            if name not in run.stopped:
                run.check(p.poll() is None, f"{name} still running at the end ({run.log_tail(name, 10)})")
    except RuntimeError as e:
        run.check(False, str(e))
    finally:
        run.cleanup()
    for n in run.notes:
        print(f"  note: {n}")
    for w in run.warnings:
        print(f"  awaiting: {w}")
    if run.warnings:
        print("  AWAITING (reported, not failed):")
        # Whether the binary names the metric at all: an event-only metric does, a missing
        # one does not.
        binary = open(args.obleth, "rb").read()
        for name, why in AWAITING.items():
            where = "named in the binary" if name.encode() in binary else "NOT in the binary"
            print(f"    {name} ({where}): {why}")
    print(f"topology: {run.passed} checks passed, {len(run.failures)} failed, {len(run.warnings)} awaiting "
          f"({time.monotonic() - t0:.0f} s)")
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())
