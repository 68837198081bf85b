#!/usr/bin/env python3
"""Gateway-overhead benchmark driver (called by bench/overhead/run.sh).

Starts two bundled mocks (zero latency, and 20 ms to first token), the obleth gateway
in front of them, seeds a tenant, two models and a key through the admin API, then
measures the same workloads against the mock DIRECTLY and THROUGH obleth, side by side:

  1. closed loop with wrk (1 connection / 1 thread, and 32 connections / 1 thread),
     non-streamed chat completions with `max_tokens: 16`;
  2. open loop at fixed rates with obleth-loadgen (latency measured from the
     scheduled send time, i.e. corrected for coordinated omission);
  3. streamed time to the first SSE data chunk, sequential requests on one
     connection, against the zero-latency mock and the 20 ms-TTFT mock;
  4. obleth's CPU per request (/proc/PID/stat utime+stime delta / requests the
     gateway counted) and resident memory (VmRSS at rest, after load, VmHWM peak).

Direct and obleth measurements alternate in short rounds (ABAB...) so that a change
in machine speed during the run (this is a shared VM) hits both sides alike; "added"
figures are computed per round and reported as the median with the min–max range.
Machine CPU used by anything other than the benchmark's own processes is recorded
("background CPU") so that a disturbed run can be recognised.

Prints a markdown summary and writes it, with the raw JSON, to bench/results/.
Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
ADMIN_TOKEN = "bench-admin-token-0123456789abcdefXYZ"
CHAT_BODY = {
    "model": "mock-model",
    "messages": [{"role": "user", "content": "Say hello to the benchmark."}],
    "max_tokens": 16,
}
TARGETS = ("direct", "obleth")


def log(msg: str) -> None:
    print(f"[overhead {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: dict | None = None, token: str | None = None, timeout: float = 5.0):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout) as res:
        return res.status, res.read()


def wait_http(url: str, proc: subprocess.Popen, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited early with status {proc.returncode}; see its log")
        try:
            if http("GET", url, timeout=1.0)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{what} did not become ready at {url} within {timeout:.0f}s")


# === /proc sampling ===


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), in seconds (10 ms resolution)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_seconds() -> dict[str, float]:
    """Machine-wide CPU time (all CPUs), in seconds: busy (not idle), user, steal."""
    v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = v[3] + v[4]  # idle + iowait
    return {
        "busy": (sum(v[:7]) - idle) / CLK_TCK,  # guest time is already part of user
        "user": (v[0] + v[1]) / CLK_TCK,
        "steal": v[7] / CLK_TCK,
    }


def others_cpu_seconds(exclude: set[int]) -> dict[int, float]:
    """utime + stime + cutime + cstime of every process but `exclude`, by pid: the
    work of other users of the machine (builds, tests), including short-lived
    processes once their parent has reaped them."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in exclude:
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        f = stat[stat.rindex(")") + 2 :].split()
        out[int(d)] = sum(int(x) for x in f[11:15]) / CLK_TCK
    return out


def machine_busy_seconds() -> float:
    return machine_seconds()["busy"]


def children_cpu_seconds() -> tuple[float, float]:
    """(user + system, user) of the waited-for children (the load generators)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime, r.ru_utime


def mem_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def gateway_requests(metrics_url: str) -> int:
    """Requests the gateway finished (obleth_requests_total, chat route, all statuses)."""
    _, raw = http("GET", metrics_url)
    total = 0.0
    for line in raw.decode().splitlines():
        if line.startswith("obleth_requests_total{") and 'route="chat_completions"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def mock_requests(port: int) -> int:
    _, raw = http("GET", f"http://127.0.0.1:{port}/mock/stats")
    return int(json.loads(raw)["requests_total"])


class Probe:
    """CPU of obleth, of the mock in use, of the load generator and of everything
    else, and the requests served, between entering and leaving the block."""

    def __init__(self, bench: Bench, mock_port: int):
        self.b, self.mock_port = bench, mock_port

    def snapshot(self) -> dict:
        b = self.b
        ours = {os.getpid(), *(p.pid for p in b.procs)}  # every process the benchmark started
        return {
            "t": time.monotonic(),
            "gw": cpu_seconds(b.gw.pid),
            "mock": cpu_seconds(b.mock_proc(self.mock_port).pid),
            "others": others_cpu_seconds(ours),
            "children": children_cpu_seconds(),
            "machine": machine_seconds(),
            "gw_req": gateway_requests(b.metrics_url),
            "mock_req": mock_requests(self.mock_port),
        }

    def __enter__(self):
        self.s0 = self.snapshot()
        return self

    def __exit__(self, *exc):
        s0, s1 = self.s0, self.snapshot()
        wall = s1["t"] - s0["t"]
        m0, m1 = s0["machine"], s1["machine"]
        # Other processes' work, summed per process (not machine busy minus ours: the
        # kernel's interrupt and wake-up work in the idle task belongs to no process
        # and would be mistaken for someone else's load).
        others = sum(v - s0["others"].get(pid, 0.0) for pid, v in s1["others"].items())
        self.result = {
            "wall_s": round(wall, 3),
            "obleth_cpu_s": round(s1["gw"] - s0["gw"], 3),
            "obleth_requests": s1["gw_req"] - s0["gw_req"],
            "mock_cpu_s": round(s1["mock"] - s0["mock"], 3),
            "mock_requests": s1["mock_req"] - s0["mock_req"],
            "loadgen_cpu_s": round(s1["children"][0] - s0["children"][0], 3),
            "machine_busy_s": round(m1["busy"] - m0["busy"], 3),
            "steal_s": round(m1["steal"] - m0["steal"], 3),
            "background_cpu_s": round(max(0.0, others), 3),
        }
        return False


def per_req_us(cpu_s: float, requests: int) -> float | None:
    return round(1e6 * cpu_s / requests, 1) if requests else None


# === statistics ===


def pct(sorted_vals: list[float], p: float) -> float:
    if not sorted_vals:
        return float("nan")
    rank = max(1, min(len(sorted_vals), math.ceil(p * len(sorted_vals) / 100 - 1e-9)))
    return sorted_vals[rank - 1]


def summarize_ns(ns: list[int]) -> dict:
    v = sorted(x / 1000 for x in ns)
    return {
        "n": len(v),
        "mean": round(statistics.fmean(v), 1) if v else None,
        **{k: round(pct(v, p), 1) for k, p in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9), ("max", 100))},
    }


def read_samples(path: Path) -> tuple[list[int], list[int]]:
    a, b = [], []
    for line in path.read_text().splitlines():
        x, y = line.split()
        a.append(int(x))
        b.append(int(y))
    return a, b


def spread(values: list[float], digits: int = 1) -> dict:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def wait_for_quiet(max_wait: float, threshold_pct: float = 10.0) -> float:
    """Waits (up to max_wait s) until the machine is nearly idle: other users' builds
    on a shared box distort every figure. Returns the busy % last seen."""
    deadline = time.monotonic() + max_wait
    ncpu = os.cpu_count() or 1
    last_log = 0.0
    while True:
        b0 = machine_busy_seconds()
        time.sleep(2.0)
        busy = 100 * (machine_busy_seconds() - b0) / 2.0 / ncpu
        if busy < threshold_pct or time.monotonic() >= deadline:
            if busy >= threshold_pct:
                log(f"machine still {busy:.0f}% busy after waiting {max_wait:.0f}s; starting anyway")
            return round(busy, 1)
        if time.monotonic() - last_log >= 30:
            log(f"machine {busy:.0f}% busy (others' work); waiting up to {max_wait:.0f}s for it to calm down")
            last_log = time.monotonic()


# === the benchmark ===


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="obleth-overhead-"))
        self.procs: list[subprocess.Popen] = []
        self.results: dict = {"closed": {}, "open": {}, "stream": {}}
        self.seq = 0

    # --- processes ---

    def spawn(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        logf = open(self.tmp / f"{name}.log", "wb")
        p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def start_gateway(
        self, name: str, data_port: int, admin_port: int, metrics_port: int, extra_env: dict | None = None
    ) -> subprocess.Popen:
        """Starts `obleth serve` (its own SQLite database) in front of the zero-latency mock
        and waits until its data plane and admin API answer."""
        a = self.args
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("OBLETH_")}
        env = dict(base_env, **dict(kv.split("=", 1) for kv in a.gateway_env))
        env.update(
            OBLETH_LISTEN_DATA=f"127.0.0.1:{data_port}",
            OBLETH_LISTEN_ADMIN=f"127.0.0.1:{admin_port}",
            OBLETH_LISTEN_METRICS=f"127.0.0.1:{metrics_port}",
            OBLETH_ADMIN_TOKEN=ADMIN_TOKEN,
            OBLETH_DATABASE_URL=f"sqlite://{self.tmp / (name + '.db')}",
            OBLETH_UPSTREAM_BASE_URL=f"http://127.0.0.1:{self.mock0_port}/v1",
            OBLETH_ADMISSION_MAX_IN_FLIGHT="0",
            OBLETH_LOG_LEVEL="warn",
            **(extra_env or {}),
        )
        # The usage ledger's files (SQLite file and write-ahead log; relative to the working
        # directory by default) in the run's temporary directory, unless GATEWAY_ENV says.
        env.setdefault("OBLETH_LEDGER_SQLITE_URL", f"sqlite://{self.tmp / (name + '-usage.db')}")
        env.setdefault("OBLETH_LEDGER_WAL_DIR", str(self.tmp / (name + "-wal")))
        gw = self.spawn(name, [a.obleth, "serve"], env)
        wait_http(f"http://127.0.0.1:{data_port}/healthz", gw, f"{name} (data plane)")
        wait_http(f"http://127.0.0.1:{admin_port}/healthz", gw, f"{name} (admin API)")
        return gw

    def mock_proc(self, port: int) -> subprocess.Popen:
        return self.mock0 if port == self.mock0_port else self.mock20

    def start(self) -> None:
        a = self.args
        self.results["busy_pct_before"] = wait_for_quiet(a.quiet_wait)
        # The machine's noise floor: how often one spinning thread is kept off the CPU.
        out = subprocess.run([a.loadgen, "hiccup", "--threads", "1", "--duration", "3"], capture_output=True, text=True)
        self.results["hiccup"] = json.loads(out.stdout)
        h = self.results["hiccup"]
        log(f"noise floor: {h['per_s_over_200us']}/s gaps >= 200 us, max gap {h['gaps_us']['max']} us")
        self.mock0_port, self.mock20_port = free_port(), free_port()
        self.data_port, self.admin_port, self.metrics_port = free_port(), free_port(), free_port()
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("OBLETH_")}
        mock_env = dict(base_env, **dict(kv.split("=", 1) for kv in a.mock_env))
        mock_common = ["--itl-ms", "0", "--max-num-seqs", "0", "--default-output-tokens", "16"]
        self.mock0 = self.spawn(
            "mock0",
            [a.obleth, "mock", "--listen", f"127.0.0.1:{self.mock0_port}", "--ttft-ms", "0", *mock_common],
            mock_env,
        )
        self.mock20 = self.spawn(
            "mock20",
            [a.obleth, "mock", "--listen", f"127.0.0.1:{self.mock20_port}", "--ttft-ms", "20", *mock_common],
            mock_env,
        )
        wait_http(f"http://127.0.0.1:{self.mock0_port}/health", self.mock0, "mock (ttft 0)")
        wait_http(f"http://127.0.0.1:{self.mock20_port}/health", self.mock20, "mock (ttft 20)")

        self.gw = self.start_gateway("obleth", self.data_port, self.admin_port, self.metrics_port)

        admin = f"http://127.0.0.1:{self.admin_port}/api/v1"
        http("POST", f"{admin}/tenants", {"name": "bench"}, ADMIN_TOKEN)
        http("POST", f"{admin}/models", {"model_name": "mock-model"}, ADMIN_TOKEN)
        http(
            "POST",
            f"{admin}/models",
            {"model_name": "mock-model-ttft20", "api_base": f"http://127.0.0.1:{self.mock20_port}/v1"},
            ADMIN_TOKEN,
        )
        _, raw = http("POST", f"{admin}/tenants/bench/keys", {}, ADMIN_TOKEN)
        self.secret = json.loads(raw)["secret"]
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"

        def body(name: str, doc: dict) -> str:
            path = self.tmp / name
            path.write_text(json.dumps(doc))
            return str(path)

        self.body_plain = body("chat.json", CHAT_BODY)
        self.body_stream0 = body("chat-stream.json", {**CHAT_BODY, "stream": True})
        self.body_stream20 = body("chat-stream-20.json", {**CHAT_BODY, "model": "mock-model-ttft20", "stream": True})

        time.sleep(1.0)
        self.results["memory_at_rest_kib"] = mem_kib(self.gw.pid)
        log(f"obleth at rest (seeded, no data-plane request yet): {self.results['memory_at_rest_kib']} KiB")

        # Sanity: one request each way, both mocks, streamed and not.
        for target in TARGETS:
            for b, port in ((self.body_plain, self.mock0_port), (self.body_stream20, self.mock20_port)):
                url, token = self.target(target, port)
                status, raw = http("POST", f"{url}/v1/chat/completions", json.loads(Path(b).read_text()), token)
                if status != 200 or not raw:
                    raise SystemExit(f"sanity request {target} failed: {status} {raw[:200]!r}")

    def target(self, name: str, mock_port: int) -> tuple[str, str | None]:
        if name == "direct":
            return f"http://127.0.0.1:{mock_port}", None
        return f"http://127.0.0.1:{self.data_port}", self.secret

    # --- load generators ---

    def wrk(self, target: str, conns: int, seconds: int) -> dict:
        url, token = self.target(target, self.mock0_port)
        env = dict(os.environ, BENCH_BODY_FILE=self.body_plain, BENCH_BEARER=token or "")
        argv = [
            "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s",
            "-s", str(Path(__file__).with_name("post.lua")), f"{url}/v1/chat/completions",
        ]  # fmt: skip
        out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60)
        m = re.search(r"^WRKJSON (\{.*\})$", out.stdout, re.M)
        if out.returncode != 0 or not m:
            raise SystemExit(f"wrk failed: {out.stdout}\n{out.stderr}")
        r = json.loads(m.group(1))
        r["rps"] = round(r["requests"] / (r["duration_us"] / 1e6), 1)
        r["errors"] = sum(r[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts", "non2xx"))
        return r

    def loadgen(self, mode: str, target: str, mock_port: int, body: str, *extra: str, timeout: float):
        url, token = self.target(target, mock_port)
        self.seq += 1
        samples = self.tmp / f"samples-{self.seq}.txt"
        argv = [
            self.args.loadgen, mode, "--addr", url.removeprefix("http://"), "--body-file", body,
            "--samples-out", str(samples), *extra,
        ]  # fmt: skip
        if token:
            argv += ["--bearer", token]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise SystemExit(f"loadgen failed: {out.stdout}\n{out.stderr}")
        if out.stderr.strip():
            log(f"loadgen ({target}): {out.stderr.strip()}")
        return json.loads(out.stdout), read_samples(samples)

    # --- workloads ---

    def closed_loop(self) -> None:
        a = self.args
        secs = max(1, round(a.duration / a.rounds))
        for conns in (1, 32):
            rounds = {t: [] for t in TARGETS}
            for target in TARGETS:
                log(f"closed loop, {conns} conn(s), {target}: warm-up {a.warmup:g}s")
                self.wrk(target, conns, max(1, round(a.warmup)))
            for i in range(a.rounds):
                for target in TARGETS:
                    with Probe(self, self.mock0_port) as probe:
                        r = self.wrk(target, conns, secs)
                    r["proc"] = probe.result
                    rounds[target].append(r)
                    log(
                        f"closed loop, {conns} conn(s), round {i + 1}/{a.rounds}, {target}: {r['rps']:.0f} req/s, "
                        f"p50 {r['p50']} us, p99 {r['p99']} us, errors {r['errors']}"
                    )
            self.results["closed"][str(conns)] = rounds

    def open_loop(self) -> None:
        a = self.args
        secs = a.duration / a.rounds
        for rate in a.rates:
            rounds = {t: [] for t in TARGETS}
            for i in range(a.rounds):
                for target in TARGETS:
                    with Probe(self, self.mock0_port) as probe:
                        r, samples = self.loadgen(
                            "open", target, self.mock0_port, self.body_plain,
                            "--rate", str(rate), "--duration", str(secs), "--warmup", str(a.open_warmup),
                            "--conns", str(a.open_conns),
                            timeout=secs + a.open_warmup + 120,
                        )  # fmt: skip
                    r["proc"], r["samples"] = probe.result, samples
                    rounds[target].append(r)
                    lat = r["latency_us"]
                    log(
                        f"open loop, {rate} req/s, round {i + 1}/{a.rounds}, {target}: achieved "
                        f"{r['achieved_rps']:.0f} req/s, p50 {lat['p50']} us, p99 {lat['p99']} us, errors {r['errors']}"
                    )
            self.results["open"][str(rate)] = rounds

    def streaming(self) -> None:
        a = self.args
        for label, port, body, n in (
            ("ttft0", self.mock0_port, self.body_stream0, a.ttft_requests),
            ("ttft20", self.mock20_port, self.body_stream20, a.ttft20_requests),
        ):
            per_round = max(1, n // a.rounds)
            rounds = {t: [] for t in TARGETS}
            for i in range(a.rounds):
                for target in TARGETS:
                    warm = a.ttft_warmup if i == 0 else min(20, a.ttft_warmup)
                    with Probe(self, port) as probe:
                        r, samples = self.loadgen(
                            "ttft", target, port, body, "--requests", str(per_round), "--warmup", str(warm),
                            timeout=600,
                        )  # fmt: skip
                    r["proc"], r["samples"] = probe.result, samples
                    rounds[target].append(r)
                    t = r["ttft_us"]
                    log(
                        f"streaming, mock {label}, round {i + 1}/{a.rounds}, {target}: {per_round} requests, "
                        f"ttft p50 {t['p50']} us, p99 {t['p99']} us, errors {r['errors']}"
                    )
            self.results["stream"][label] = rounds

    def run(self) -> dict:
        try:
            self.start()
            if "closed" in self.args.phases:
                self.closed_loop()
            if "open" in self.args.phases:
                self.open_loop()
            if "stream" in self.args.phases:
                self.streaming()
            time.sleep(1.0)
            self.results["memory_after_load_kib"] = mem_kib(self.gw.pid)
            if self.gw.poll() is not None:
                raise SystemExit("obleth died during the benchmark")
        finally:
            self.stop_all()
            if self.args.keep_tmp:
                log(f"logs, samples and database kept in {self.tmp}")
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)
        return self.results


# === aggregation ===


def cpu_totals(rounds: list[dict]) -> dict:
    p = [r["proc"] for r in rounds]
    wall = sum(x["wall_s"] for x in p)
    o_cpu, o_req = sum(x["obleth_cpu_s"] for x in p), sum(x["obleth_requests"] for x in p)
    m_cpu, m_req = sum(x["mock_cpu_s"] for x in p), sum(x["mock_requests"] for x in p)
    return {
        "obleth_cpu_us_per_req": per_req_us(o_cpu, o_req),
        "obleth_cpu_pct": round(100 * o_cpu / wall, 1) if wall else None,
        "mock_cpu_us_per_req": per_req_us(m_cpu, m_req),
        "background_cpu_pct": round(100 * sum(x["background_cpu_s"] for x in p) / wall, 1) if wall else None,
        "steal_pct": round(100 * sum(x["steal_s"] for x in p) / wall, 1) if wall else None,
    }


def aggregate(res: dict) -> dict:
    """Summaries of every workload; raw samples are dropped afterwards."""
    agg: dict = {"closed": {}, "open": {}, "stream": {}}
    for conns, rounds in res["closed"].items():
        d, o = rounds["direct"], rounds["obleth"]
        agg["closed"][conns] = {
            **{
                f"{t}_{k}": round(statistics.median(r[k] for r in rounds[t]), 1)
                for t in TARGETS
                for k in ("p50", "p99", "rps")
            },
            "added_p50": spread([y["p50"] - x["p50"] for x, y in zip(d, o)]),
            "added_p99": spread([y["p99"] - x["p99"] for x, y in zip(d, o)]),
            "throughput_ratio": spread([y["rps"] / x["rps"] for x, y in zip(d, o)], 3),
            "errors": sum(r["errors"] for t in TARGETS for r in rounds[t]),
            "direct_cpu": cpu_totals(d),
            "obleth_cpu": cpu_totals(o),
        }
    for key, rounds, field in [(k, v, "latency") for k, v in res["open"].items()] + [
        (k, v, "ttft") for k, v in res["stream"].items()
    ]:
        section = "open" if field == "latency" else "stream"
        merged = {}
        for t in TARGETS:
            first = [x for r in rounds[t] for x in r["samples"][0]]
            second = [x for r in rounds[t] for x in r["samples"][1]]
            merged[t] = {
                field: summarize_ns(first),
                "service" if field == "latency" else "total": summarize_ns(second),
                "errors": sum(r["errors"] for r in rounds[t]),
                "cpu": cpu_totals(rounds[t]),
            }
            if field == "latency":
                merged[t]["achieved_rps"] = round(statistics.median(r["achieved_rps"] for r in rounds[t]), 1)
                merged[t]["send_lateness_p99"] = round(
                    statistics.median(r["send_lateness_us"]["p99"] for r in rounds[t]), 1
                )
        us = f"{field}_us"
        for p in ("p50", "p99"):
            merged[f"added_{p}"] = round(merged["obleth"][field][p] - merged["direct"][field][p], 1)
            merged[f"added_{p}_rounds"] = spread(
                [y[us][p] - x[us][p] for x, y in zip(rounds["direct"], rounds["obleth"])]
            )
        agg[section][key] = merged
    return agg


# === report ===


def machine() -> dict:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            mem = int(line.split()[1]) // 1024
    return {"cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(), "mem_mib": mem}


def git_rev(root: Path) -> str:
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", "crates", "Cargo.lock"],
            capture_output=True,
            text=True,
        )
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def f1(x) -> str:
    return "–" if x is None else f"{x:,.1f}"


def f0(x) -> str:
    return "–" if x is None else f"{x:,.0f}"


def rng(s: dict) -> str:
    return f"{s['median']:+,.1f} [{s['min']:+,.0f} … {s['max']:+,.0f}]"


def verdict(value: float, limit: float) -> str:
    if value <= limit:
        return f"**met** ({limit - value:,.1f} below)"
    return f"**missed** (by {value - limit:,.1f}, {value / limit:.1f}×)"


def report(res: dict, agg: dict, args) -> str:
    m = res["machine"]
    lines = [
        f"### Gateway overhead — {res['date']}",
        "",
        f"obleth `{res['git']}`, release build; {m['cpus']} CPUs ({m['cpu_model']}), {m['mem_mib']} MiB, "
        f"Linux {m['kernel']}; loopback; load generator, mock and gateway share the machine. "
        f"Direct and obleth alternate in {args.rounds} rounds; {args.duration:g} s (or the request count) per "
        f"target in total. Times in µs; \"added\" = obleth − direct, median of the rounds [min … max]. "
        f"Load average before / after: {res['loadavg_before']} / {res['loadavg_after']}; machine busy "
        f"{res.get('busy_pct_before', 0):g} % just before the start. \"background CPU\" = CPU used by processes "
        "other than the benchmark's own (gateway, mocks, load generator, driver), in % of one CPU. "
        + (
            f"Noise floor (one thread spinning for 3 s on the idle machine): {res['hiccup']['per_s_over_200us']:g} "
            f"gaps ≥ 200 µs per second, {res['hiccup']['per_s_over_1ms']:g} ≥ 1 ms, longest "
            f"{res['hiccup']['gaps_us']['max']:,.0f} µs."
            if "hiccup" in res
            else ""
        ),
        "",
    ]
    if agg["closed"]:
        lines += [
            "**Closed loop (wrk, 1 thread, non-streamed chat completion, `max_tokens: 16`)**",
            "",
            "| conns | direct p50 | direct p99 | direct req/s | obleth p50 | obleth p99 | obleth req/s "
            "| added p50 | added p99 | throughput ratio | obleth CPU/req | mock CPU/req | background CPU |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for c, a in agg["closed"].items():
            oc = a["obleth_cpu"]
            lines.append(
                f"| {c} | {f1(a['direct_p50'])} | {f1(a['direct_p99'])} | {f0(a['direct_rps'])} "
                f"| {f1(a['obleth_p50'])} | {f1(a['obleth_p99'])} | {f0(a['obleth_rps'])} "
                f"| {rng(a['added_p50'])} | {rng(a['added_p99'])} | {a['throughput_ratio']['median']:.2f} "
                f"| {f1(oc['obleth_cpu_us_per_req'])} µs | {f1(a['direct_cpu']['mock_cpu_us_per_req'])} µs "
                f"| {f1(max(oc['background_cpu_pct'], a['direct_cpu']['background_cpu_pct']))} % |"
            )
        lines.append("")
    if agg["open"]:
        lines += [
            f"**Open loop (obleth-loadgen, {args.open_conns} connections; latency from the scheduled send time, "
            "i.e. corrected for coordinated omission; percentiles over all rounds' samples)**",
            "",
            "| rate | target | achieved req/s | p50 | p90 | p99 | p99.9 | max | added p50 | added p99 "
            "| service p50 / p99 | client send lateness p99 | obleth CPU/req | background CPU |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for rate, a in agg["open"].items():
            for t in TARGETS:
                r = a[t]
                lat, svc = r["latency"], r["service"]
                added = (
                    f"{a['added_p50']:+,.1f} | {a['added_p99']:+,.1f}" if t == "obleth" else " | "
                )
                err = f" ({r['errors']} errors)" if r["errors"] else ""
                cpu = f"{f1(r['cpu']['obleth_cpu_us_per_req'])} µs" if t == "obleth" else ""
                cpu += f" | {f1(r['cpu']['background_cpu_pct'])} %"
                lines.append(
                    f"| {rate} | {t} | {f0(r['achieved_rps'])}{err} | {f1(lat['p50'])} | {f1(lat['p90'])} "
                    f"| {f1(lat['p99'])} | {f1(lat['p999'])} | {f1(lat['max'])} | {added} "
                    f"| {f1(svc['p50'])} / {f1(svc['p99'])} | {f1(r['send_lateness_p99'])} | {cpu} |"
                )
        lines.append("")
    if agg["stream"]:
        lines += [
            "**Streaming: time to the first SSE data chunk (sequential requests, one connection, 16 tokens)**",
            "",
            "| mock | requests | direct p50 | direct p99 | obleth p50 | obleth p99 | added p50 | added p99 "
            "| whole stream direct / obleth p50 | obleth CPU/req | mock CPU/req | background CPU |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for label, desc in (("ttft0", "ttft 0, itl 0"), ("ttft20", "ttft 20 ms, itl 0")):
            a = agg["stream"].get(label)
            if not a:
                continue
            d, o = a["direct"], a["obleth"]
            lines.append(
                f"| {desc} | {o['ttft']['n']} | {f1(d['ttft']['p50'])} | {f1(d['ttft']['p99'])} "
                f"| {f1(o['ttft']['p50'])} | {f1(o['ttft']['p99'])} | {a['added_p50']:+,.1f} | {a['added_p99']:+,.1f} "
                f"| {f1(d['total']['p50'])} / {f1(o['total']['p50'])} | {f1(o['cpu']['obleth_cpu_us_per_req'])} µs "
                f"| {f1(d['cpu']['mock_cpu_us_per_req'])} µs "
                f"| {f1(max(d['cpu']['background_cpu_pct'], o['cpu']['background_cpu_pct']))} % |"
            )
        lines.append("")
    bg = [
        a[k]["background_cpu_pct"]
        for a in agg["closed"].values()
        for k in ("direct_cpu", "obleth_cpu")
        if a[k]["background_cpu_pct"] is not None
    ] + [
        a[t]["cpu"]["background_cpu_pct"]
        for sec in ("open", "stream")
        for a in agg[sec].values()
        for t in TARGETS
        if a[t]["cpu"]["background_cpu_pct"] is not None
    ]
    steal = [
        a[k]["steal_pct"] for a in agg["closed"].values() for k in ("direct_cpu", "obleth_cpu")
    ] + [a[t]["cpu"]["steal_pct"] for sec in ("open", "stream") for a in agg[sec].values() for t in TARGETS]
    steal = [x for x in steal if x is not None]
    if steal:
        lines += [f"Hypervisor steal time: at most {max(steal):.1f} % of a CPU during any workload.", ""]
    if bg and max(bg) > 10:
        lines += [
            f"> **Disturbed run:** other processes used up to {max(bg):.0f} % of a CPU during some workloads "
            "(background CPU); treat this run's figures with care.",
            "",
        ]
    rest, after = res.get("memory_at_rest_kib", {}), res.get("memory_after_load_kib", {})
    lines += [
        "**obleth resident memory**",
        "",
        "| at rest (VmRSS) | after load (VmRSS) | peak (VmHWM) |",
        "|---:|---:|---:|",
        f"| {rest.get('VmRSS', 0) / 1024:.1f} MiB | {after.get('VmRSS', 0) / 1024:.1f} MiB "
        f"| {after.get('VmHWM', 0) / 1024:.1f} MiB |",
        "",
    ]
    checks = []
    if "1" in agg["closed"]:
        a = agg["closed"]["1"]
        checks.append(("added latency p50, 1 connection, zero-latency mock", "≤ 70 µs", a["added_p50"], 70, "µs"))
        checks.append(("added latency p99, 1 connection, zero-latency mock", "≤ 250 µs", a["added_p99"], 250, "µs"))
    for label, desc in (("ttft0", "zero-latency mock"), ("ttft20", "mock ttft 20 ms")):
        if label in agg["stream"]:
            a = agg["stream"][label]
            checks.append((f"streaming TTFT added p99 ({desc})", "≤ 1 ms", a["added_p99_rounds"], 1000, "µs"))
    if rest:
        v = rest["VmRSS"] / 1024
        checks.append(("resident memory at rest", "< 40 MiB", {"median": v, "min": v, "max": v}, 40, "MiB"))
    if checks:
        lines += [
            "**Targets**",
            "",
            "| target | limit | measured (median of rounds) | range over rounds | verdict |",
            "|---|---|---:|---:|---|",
        ]
        for name, limit, s, lim, unit in checks:
            lines.append(
                f"| {name} | {limit} | {s['median']:,.1f} {unit} | {s['min']:,.1f} … {s['max']:,.1f} "
                f"| {verdict(s['median'], lim)} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--obleth", required=True)
    p.add_argument("--loadgen", required=True)
    p.add_argument("--results-dir", required=True)
    p.add_argument("--duration", type=float, default=15.0, help="seconds per target and workload, all rounds")
    p.add_argument("--warmup", type=float, default=3.0, help="closed-loop warm-up per target, seconds")
    p.add_argument("--open-warmup", type=float, default=1.0, help="open-loop warm-up per round, seconds")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--rates", type=lambda s: [int(x) for x in s.split(",")], default=[500, 2000])
    p.add_argument("--open-conns", type=int, default=64)
    p.add_argument("--ttft-requests", type=int, default=2000)
    p.add_argument("--ttft20-requests", type=int, default=1000)
    p.add_argument("--ttft-warmup", type=int, default=200)
    p.add_argument("--phases", default="closed,open,stream")
    p.add_argument("--gateway-env", action="append", default=[], help="extra K=V for obleth serve")
    p.add_argument("--mock-env", action="append", default=[], help="extra K=V for the mocks")
    p.add_argument("--keep-tmp", action="store_true")
    p.add_argument("--quiet-wait", type=float, default=300, help="wait up to this long for an idle machine")
    args = p.parse_args()
    args.phases = set(args.phases.split(","))

    root = Path(__file__).resolve().parents[2]
    now = dt.datetime.now()
    loadavg_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    res = Bench(args).run()
    res.update(
        date=now.strftime("%Y-%m-%d %H:%M:%S"),
        git=git_rev(root),
        machine=machine(),
        loadavg_before=loadavg_before,
        loadavg_after=" ".join(Path("/proc/loadavg").read_text().split()[:3]),
        settings={k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(args).items()},
    )
    agg = aggregate(res)
    for section in ("open", "stream"):
        for rounds in res[section].values():
            for t in TARGETS:
                for r in rounds[t]:
                    r.pop("samples", None)
    write_results(args.results_dir, f"overhead-{now.strftime('%Y-%m-%d-%H%M%S')}", report(res, agg, args), agg, res)


def write_results(results_dir: str, stem: str, md: str, agg, res) -> None:
    """Prints the markdown summary and writes it, with every round as JSON, to `results_dir`."""
    out_dir = Path(results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.md").write_text(md + "\n")
    (out_dir / f"{stem}.json").write_text(json.dumps({"summary": agg, "raw": res}, indent=1) + "\n")
    print(md)
    log(f"wrote {out_dir / (stem + '.md')} and {stem}.json")


if __name__ == "__main__":
    main()
