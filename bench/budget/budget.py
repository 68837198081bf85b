#!/usr/bin/env python3
"""Budget admission cost (called by bench/budget/run.sh).

Reuses the overhead benchmark's driver (bench/overhead/overhead.py): the same mock, the
same gateway settings, the same wrk script, the same quiet-machine wait, noise floor and
CPU accounting. On top of it, it starts a second gateway whose budgets live in Redis and
measures, side by side, non-streamed chat completions (`max_tokens: 16`) with wrk:

  direct      the zero-latency mock, no gateway                      (config 1)
  none        obleth, tenant without limits: the budget layer is
              skipped                                                (config 2)
  memory      obleth, tenant with limits, in-process budget store    (config 3)
  redis       obleth with OBLETH_BUDGET_STORE=redis, tenant with
              the same limits                                        (config 4)
  redis-none  the Redis gateway, tenant without limits (control:
              a Redis-configured gateway costs nothing for tenants
              without limits)

The limits are set so that nothing is ever refused (tpm 1e12, rpm 1e9, max_in_flight
10000, monthly and lifetime budget 1e9, with a priced model so that the spend counters
really move): every limit is checked and reserved on every request, and reconciled after.

Closed loop at 1 connection (latency) and at 8 connections (throughput); the targets
alternate in ROUNDS rounds, each round in a rotated order, and "added" figures are
per-round differences against `none`, reported as the median [min … max] of the rounds.

Then it counts the Redis round trips per request: a fixed number of sequential requests
to `redis` (and to `redis-none`), with `INFO commandstats` before and after and a
`MONITOR` filtered by the run's own key prefix, and the bare loopback round trip to
Redis (redis-benchmark, PING, one client). The run's keys are deleted at the end.

Prints a markdown summary and writes it, with the raw JSON, to bench/results/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "overhead"))
import overhead as oh  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ("direct", "none", "memory", "redis", "redis-none")
LIMITED = ("memory", "redis")
DESC = {
    "direct": "1. mock directly",
    "none": "2. obleth, no limits (budget skipped)",
    "memory": "3. obleth, limits, in-process store",
    "redis": "4. obleth, limits, Redis store",
    "redis-none": "control: Redis gateway, no limits",
}
QUOTA = {
    "tpm": 10**12,
    "rpm": 10**9,
    "max_in_flight": 10_000,
    "monthly_budget": 1e9,
    "lifetime_budget": 1e9,
}
PRICES = {"input_cost_per_token": 0.0000005, "output_cost_per_token": 0.0000015}
SCRIPTS = ("reserve", "reconcile", "absorb", "usage")


def log(msg: str) -> None:
    print(f"[budget {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# === Redis ===


def redis_cli(url: str, *args: str, timeout: float = 30) -> str:
    out = subprocess.run(["redis-cli", "-u", url, *args], capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise SystemExit(f"redis-cli {' '.join(args)} failed: {out.stderr}")
    return out.stdout


def commandstats(url: str) -> dict[str, dict[str, float]]:
    """INFO commandstats: {command: {calls, usec}}."""
    stats = {}
    for line in redis_cli(url, "info", "commandstats").splitlines():
        m = re.match(r"cmdstat_([^:]+):calls=(\d+),usec=(\d+)", line.strip())
        if m:
            stats[m.group(1)] = {"calls": int(m.group(2)), "usec": int(m.group(3))}
    return stats


def stats_delta(a: dict, b: dict) -> dict[str, dict[str, int]]:
    out = {}
    for cmd, v in b.items():
        calls = v["calls"] - a.get(cmd, {}).get("calls", 0)
        if calls:
            out[cmd] = {"calls": calls, "usec": v["usec"] - a.get(cmd, {}).get("usec", 0)}
    return out


def script_shas() -> dict[str, str]:
    """SHA1 of each budget script as the gateway sends it (common.lua + the script)."""
    d = ROOT / "crates/obleth-budget/src/redis"
    common = (d / "common.lua").read_bytes()
    return {hashlib.sha1(common + (d / f"{n}.lua").read_bytes()).hexdigest(): n for n in SCRIPTS}


def ctx_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of every thread of `pid`."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            text = Path(f"/proc/{pid}/task/{task}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def metric_lines(metrics_url: str, prefix: str) -> list[str]:
    _, raw = oh.http("GET", metrics_url)
    return [line for line in raw.decode().splitlines() if line.startswith(prefix)]


# === the benchmark ===


class Probe(oh.Probe):
    """The overhead benchmark's probe, plus Redis's CPU (taken out of the background
    CPU) and the context switches of the gateway and of Redis."""

    def snapshot(self) -> dict:
        s = super().snapshot()
        b = self.b
        s["redis"] = oh.cpu_seconds(b.redis_pid)
        s["redis_ctx"] = ctx_switches(b.redis_pid)
        s["gw_ctx"] = ctx_switches(b.gw.pid)
        s["cmdstats"] = commandstats(b.args.redis_url)
        self.last = s
        return s

    def __exit__(self, *exc):
        super().__exit__(*exc)
        s0, s1, r = self.s0, self.last, self.result
        r["redis_cpu_s"] = round(s1["redis"] - s0["redis"], 3)
        r["background_cpu_s"] = round(max(0.0, r["background_cpu_s"] - r["redis_cpu_s"]), 3)
        r["redis_ctx"] = s1["redis_ctx"] - s0["redis_ctx"]
        r["obleth_ctx"] = s1["gw_ctx"] - s0["gw_ctx"]
        # The whole server's commands (other users' included, if any): EVALSHA calls and
        # the time Redis spent in them (the scripts' own commands included).
        r["redis_commands"] = stats_delta(s0["cmdstats"], s1["cmdstats"])
        return False


class BudgetBench(oh.Bench):
    def start(self) -> None:
        a = self.args
        # The overhead benchmark's stack: quiet wait, noise floor, both mocks, one gateway
        # (in-process budget store) with tenant `bench` (no limits) and its key.
        super().start()
        self.redis_pid = int(re.search(r"process_id:(\d+)", redis_cli(a.redis_url, "info", "server")).group(1))
        self.gws = {
            "memory": {
                "proc": self.gw,
                "data": self.data_port,
                "admin": self.admin_port,
                "metrics": self.metrics_port,
                "keys": {"none": self.secret},
            }
        }
        ports = [oh.free_port() for _ in range(3)]
        proc = self.start_gateway(
            "obleth-redis",
            *ports,
            extra_env={
                "OBLETH_BUDGET_STORE": "redis",
                "OBLETH_BUDGET_REDIS_URL": a.redis_url,
                "OBLETH_BUDGET_KEY_PREFIX": a.key_prefix,
            },
        )
        self.gws["redis"] = {"proc": proc, "data": ports[0], "admin": ports[1], "metrics": ports[2], "keys": {}}
        for name, g in self.gws.items():
            admin = f"http://127.0.0.1:{g['admin']}/api/v1"
            if name == "redis":
                oh.http("POST", f"{admin}/tenants", {"name": "bench"}, oh.ADMIN_TOKEN)
                oh.http("POST", f"{admin}/models", {"model_name": "mock-model"}, oh.ADMIN_TOKEN)
                _, raw = oh.http("POST", f"{admin}/tenants/bench/keys", {}, oh.ADMIN_TOKEN)
                g["keys"]["none"] = json.loads(raw)["secret"]
            oh.http("PATCH", f"{admin}/models/mock-model", PRICES, oh.ADMIN_TOKEN)
            oh.http("POST", f"{admin}/tenants", {"name": "bench-limits", "quota": QUOTA}, oh.ADMIN_TOKEN)
            _, raw = oh.http("POST", f"{admin}/tenants/bench-limits/keys", {}, oh.ADMIN_TOKEN)
            g["keys"]["limits"] = json.loads(raw)["secret"]
        # Each target answers 200; only the limited ones carry rate-limit headers.
        body = json.loads(Path(self.body_plain).read_text())
        for t in TARGETS:
            url, token = self.target(t, self.mock0_port)
            req = urllib.request.Request(f"{url}/v1/chat/completions", json.dumps(body).encode(), method="POST")
            req.add_header("Content-Type", "application/json")
            if token:
                req.add_header("Authorization", f"Bearer {token}")
            with urllib.request.urlopen(req, timeout=5) as res:
                limited = res.headers.get("x-ratelimit-limit-requests") is not None
                if res.status != 200 or limited != (t in LIMITED):
                    raise SystemExit(f"sanity request to {t}: status {res.status}, rate-limit headers {limited}")
        self.results["key_prefix"] = a.key_prefix
        log(f"two gateways up (in-process and Redis budgets); Redis keys under {a.key_prefix!r}")

    def target(self, name: str, mock_port: int) -> tuple[str, str | None]:
        if name in oh.TARGETS:  # "direct", and "obleth" for the overhead driver's own sanity checks
            return super().target(name, mock_port)
        g = self.gws["redis" if name.startswith("redis") else "memory"]
        return f"http://127.0.0.1:{g['data']}", g["keys"]["limits" if name in LIMITED else "none"]

    def use(self, name: str) -> None:
        """Points the probe at the gateway that serves `name`."""
        g = self.gws["redis" if name.startswith("redis") else "memory"]
        self.gw = g["proc"]
        self.metrics_url = f"http://127.0.0.1:{g['metrics']}/metrics"

    # --- workloads ---

    def closed(self) -> None:
        a = self.args
        secs = max(1, round(a.duration / a.rounds))
        for conns in a.conns:
            rounds = {t: [] for t in TARGETS}
            for t in TARGETS:
                log(f"{conns} conn(s), {t}: warm-up {a.warmup:g}s")
                self.wrk(t, conns, max(1, round(a.warmup)))
            for i in range(a.rounds):
                order = TARGETS[i % len(TARGETS) :] + TARGETS[: i % len(TARGETS)]
                for t in order:
                    self.use(t)
                    with Probe(self, self.mock0_port) as probe:
                        r = self.wrk(t, conns, secs)
                    r["proc"], r["order"] = probe.result, order.index(t)
                    rounds[t].append(r)
                    log(
                        f"{conns} conn(s), round {i + 1}/{a.rounds}, {t}: {r['rps']:.0f} req/s, "
                        f"p50 {r['p50']} us, p99 {r['p99']} us, errors {r['errors']}"
                    )
            self.results["closed"][str(conns)] = rounds

    def roundtrips(self) -> None:
        """Redis commands per request: commandstats before/after and MONITOR."""
        a = self.args
        n = a.rt_requests
        shas = script_shas()
        out = {}
        for t in ("redis", "redis-none"):
            self.use(t)
            mon_path = self.tmp / f"monitor-{t}.txt"
            with open(mon_path, "w") as mon_out:
                mon = subprocess.Popen(["redis-cli", "-u", a.redis_url, "monitor"], stdout=mon_out, text=True)
                time.sleep(0.5)
                req0, cs0 = oh.gateway_requests(self.metrics_url), commandstats(a.redis_url)
                r, _ = self.loadgen("ttft", t, self.mock0_port, self.body_plain, "--requests", str(n),
                                    "--warmup", "0", timeout=300)  # fmt: skip
                time.sleep(1.0)  # reconciles run after the response
                cs1, req1 = commandstats(a.redis_url), oh.gateway_requests(self.metrics_url)
                time.sleep(0.2)
                mon.terminate()
                mon.wait(timeout=10)
            delta = stats_delta(cs0, cs1)
            ours = {"clients": {}, "lua": {}, "evalsha_by_script": {}}
            for line in mon_path.read_text().splitlines():
                if a.key_prefix not in line:
                    continue
                m = re.match(r'[\d.]+ \[\d+ ([^\]]+)\] "([^"]+)"(?: "([^"]*)")?', line)
                if not m:
                    continue
                who = "lua" if m.group(1) == "lua" else "clients"
                cmd = m.group(2).lower()
                ours[who][cmd] = ours[who].get(cmd, 0) + 1
                if who == "clients" and cmd == "evalsha":
                    name = shas.get(m.group(3) or "", "unknown script")
                    ours["evalsha_by_script"][name] = ours["evalsha_by_script"].get(name, 0) + 1
            ev = delta.get("evalsha", {"calls": 0, "usec": 0})
            out[t] = {
                "requests_sent": r["requests"],
                "errors": r["errors"],
                "gateway_requests": req1 - req0,
                "commandstats_delta": delta,
                "evalsha_per_request": round(ev["calls"] / n, 3),
                "evalsha_usec_per_call": round(ev["usec"] / ev["calls"], 2) if ev["calls"] else None,
                "monitor_own_prefix": ours,
                "latency_us": r["ttft_us"],
            }
            log(f"round trips, {t}: {n} requests, EVALSHA +{ev['calls']}, ours (MONITOR) {ours['clients']}")
        self.results["roundtrips"] = out
        # The bare loopback round trip to Redis from one C client.
        o = subprocess.run(
            ["redis-benchmark", "-u", a.redis_url, "-c", "1", "-n", str(a.ping_requests), "-t", "ping_mbulk", "--csv"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        rows = [line.replace('"', "").split(",") for line in o.stdout.strip().splitlines()]
        if len(rows) >= 2:
            self.results["redis_ping"] = dict(zip(rows[0], rows[1]))
            log(f"redis-benchmark PING, 1 client: {self.results['redis_ping']}")

    def verify(self) -> None:
        """Budget decisions each gateway made: all allowed, none degraded or failed."""
        self.results["budget_metrics"] = {
            name: metric_lines(f"http://127.0.0.1:{g['metrics']}/metrics", "obleth_budget_")
            for name, g in self.gws.items()
        }

    def cleanup_redis(self) -> None:
        a = self.args
        keys = redis_cli(a.redis_url, "--scan", "--pattern", a.key_prefix + "*").split()
        for i in range(0, len(keys), 500):
            redis_cli(a.redis_url, "del", *keys[i : i + 500])
        log(f"deleted {len(keys)} Redis keys under {a.key_prefix!r}")

    def run(self) -> dict:
        try:
            self.start()
            self.closed()
            self.roundtrips()
            self.verify()
            for name, g in self.gws.items():
                if g["proc"].poll() is not None:
                    raise SystemExit(f"gateway {name} died during the benchmark")
        finally:
            self.stop_all()
            try:
                self.cleanup_redis()
            except Exception as e:  # noqa: BLE001
                log(f"could not delete the run's Redis keys: {e}")
            if self.args.keep_tmp:
                log(f"logs kept in {self.tmp}")
            else:
                import shutil

                shutil.rmtree(self.tmp, ignore_errors=True)
        return self.results


# === aggregation and report ===


def per(x: float, n: int) -> float | None:
    return round(x / n, 2) if n else None


def aggregate(res: dict) -> dict:
    agg = {}
    for conns, rounds in res["closed"].items():
        a = {}
        for t in TARGETS:
            rs = rounds[t]
            p = [r["proc"] for r in rs]
            served = sum(x["mock_requests"] if t == "direct" else x["obleth_requests"] for x in p)
            a[t] = {
                **{k: oh.spread([r[k] for r in rs]) for k in ("p50", "p99", "rps")},
                "errors": sum(r["errors"] for r in rs),
                **oh.cpu_totals(rs),
                "redis_cpu_us_per_req": oh.per_req_us(sum(x["redis_cpu_s"] for x in p), served),
                "obleth_ctx_per_req": per(sum(x["obleth_ctx"] for x in p), served),
                "redis_ctx_per_req": per(sum(x["redis_ctx"] for x in p), served),
            }
            ev = [x["redis_commands"].get("evalsha", {"calls": 0, "usec": 0}) for x in p]
            calls = sum(e["calls"] for e in ev)
            a[t]["evalsha_per_req"] = per(calls, served)
            a[t]["evalsha_usec_per_call"] = per(sum(e["usec"] for e in ev), calls)
            if t not in ("none", "direct"):
                base = rounds["none"]
                a[t]["vs_none_p50"] = oh.spread([y["p50"] - x["p50"] for x, y in zip(base, rs)])
                a[t]["vs_none_p99"] = oh.spread([y["p99"] - x["p99"] for x, y in zip(base, rs)])
                a[t]["vs_none_rps"] = oh.spread([y["rps"] / x["rps"] for x, y in zip(base, rs)], 3)
        agg[conns] = a
    return agg


def rng(s: dict, sign: bool = False, digits: int = 0) -> str:
    f = f"{{:{'+' if sign else ''},.{digits}f}}"
    return f"{f.format(s['median'])} [{f.format(s['min'])} … {f.format(s['max'])}]"


def report(res: dict, agg: dict, args) -> str:
    m, h = res["machine"], res["hiccup"]
    lines = [
        f"### Budget admission cost — {res['date']}",
        "",
        f"obleth `{res['git']}`, release build; {m['cpus']} CPUs ({m['cpu_model']}), Linux {m['kernel']}; loopback; "
        f"wrk, mock, both gateways and Redis ({res.get('redis_version', '?')}) share the machine. "
        f"{args.rounds} interleaved rounds of {max(1, round(args.duration / args.rounds))} s per target, the order "
        f"rotated each round. Times in µs; figures are the median of the rounds [min … max]. Load average before / "
        f"after: {res['loadavg_before']} / {res['loadavg_after']}. Noise floor: {h['per_s_over_200us']:g} gaps "
        f"≥ 200 µs per second, {h['per_s_over_1ms']:g} ≥ 1 ms, longest {h['gaps_us']['max']:,.0f} µs.",
        "",
    ]
    for conns, a in agg.items():
        lines += [
            f"**Closed loop, {conns} connection(s) (wrk, non-streamed chat completion, `max_tokens: 16`)**",
            "",
            "| configuration | p50 | p99 | req/s | p50 vs 2 | p99 vs 2 | req/s vs 2 | obleth CPU/req "
            "| Redis CPU/req | EVALSHA/req | µs in Redis per EVALSHA | obleth ctx switches/req | background CPU |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for t in TARGETS:
            x = a[t]
            vs = (
                f"{rng(x['vs_none_p50'], True)} | {rng(x['vs_none_p99'], True)} | {rng(x['vs_none_rps'], False, 3)}"
                if t not in ("none", "direct")
                else " | | "
            )
            err = f" ({x['errors']} errors)" if x["errors"] else ""
            lines.append(
                f"| {DESC[t]} | {rng(x['p50'])} | {rng(x['p99'])} | {rng(x['rps'])}{err} | {vs} "
                f"| {oh.f1(x['obleth_cpu_us_per_req'] if t != 'direct' else None)} "
                f"| {oh.f1(x['redis_cpu_us_per_req'])} | {x['evalsha_per_req']} | {oh.f1(x['evalsha_usec_per_call'])} "
                f"| {x['obleth_ctx_per_req'] if t != 'direct' else '–'} "
                f"| {oh.f1(x['background_cpu_pct'])} % |"
            )
        lines.append("")
    rt = res.get("roundtrips", {})
    if rt:
        lines += [
            f"**Redis commands per request** ({args.rt_requests} sequential requests per line; commandstats is "
            "the whole server's, MONITOR counts only commands on this run's key prefix)",
            "",
            "| configuration | gateway requests | EVALSHA (commandstats) | per request | µs per EVALSHA in Redis, MONITOR attached "
            "| our commands from clients (MONITOR) | by script | script commands on our keys (MONITOR) |",
            "|---|---:|---:|---:|---:|---|---|---|",
        ]
        for t, r in rt.items():
            mo = r["monitor_own_prefix"]
            lines.append(
                f"| {DESC[t]} | {r['gateway_requests']} | {r['commandstats_delta'].get('evalsha', {}).get('calls', 0)} "
                f"| {r['evalsha_per_request']} | {r['evalsha_usec_per_call'] or '–'} "
                f"| {json.dumps(mo['clients']) if mo['clients'] else 'none'} "
                f"| {json.dumps(mo['evalsha_by_script']) if mo['evalsha_by_script'] else '–'} "
                f"| {sum(mo['lua'].values())} ({round(sum(mo['lua'].values()) / max(1, r['gateway_requests']), 1)}/req) |"
            )
        lines.append("")
    p = res.get("redis_ping")
    if p:
        lines += [
            f"Bare loopback round trip to Redis (redis-benchmark, PING, 1 client, {args.ping_requests} requests): "
            f"p50 {float(p['p50_latency_ms']) * 1000:.0f} µs, p99 {float(p['p99_latency_ms']) * 1000:.0f} µs, "
            f"{float(p['rps']):,.0f} req/s.",
            "",
        ]
    disturbed = [
        f"{conns} conn(s) {t} round {i + 1} (steal {100 * x['steal_s'] / x['wall_s']:.0f} %, "
        f"background {100 * x['background_cpu_s'] / x['wall_s']:.0f} %)"
        for conns, rounds in res["closed"].items()
        for t in TARGETS
        for i, x in enumerate(r["proc"] for r in rounds[t])
        if x["wall_s"] and (x["steal_s"] > 0.05 * x["wall_s"] or x["background_cpu_s"] > 0.10 * x["wall_s"])
    ]
    lines += [
        "> **Disturbed rounds** (hypervisor steal above 5 % or other processes above 10 % of a CPU): "
        + "; ".join(disturbed)
        + ". Compare such a run's figures with care, or run it again."
        if disturbed
        else "No round saw hypervisor steal above 5 % or other processes above 10 % of a CPU.",
        "",
    ]
    bm = res.get("budget_metrics", {})
    bad = [
        line
        for lines_ in bm.values()
        for line in lines_
        if ("degraded" in line or "reconcile_errors" in line or 'decision="denied"' in line
            or 'decision="unavailable"' in line or "expired" in line)
        and float(line.rsplit(" ", 1)[1]) > 0
    ]  # fmt: skip
    lines += [
        "Budget decisions: "
        + (
            "every decision was `allowed`; no degraded decision, no reconcile error, no expired reservation."
            if not bad
            else "**unexpected:** " + "; ".join(bad)
        ),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--obleth", required=True)
    p.add_argument("--loadgen", required=True)
    p.add_argument("--results-dir", required=True)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    p.add_argument("--key-prefix", default=None, help="Redis key prefix (default: a fresh one per run)")
    p.add_argument("--duration", type=float, default=15.0, help="seconds per target and connection count, all rounds")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--conns", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8])
    p.add_argument("--rt-requests", type=int, default=2000)
    p.add_argument("--ping-requests", type=int, default=50000)
    p.add_argument("--gateway-env", action="append", default=[])
    p.add_argument("--mock-env", action="append", default=[])
    p.add_argument("--keep-tmp", action="store_true")
    p.add_argument("--quiet-wait", type=float, default=300)
    args = p.parse_args()
    args.key_prefix = args.key_prefix or f"obleth-bench-{os.getpid()}-{int(time.time())}:"
    args.phases = set()
    args.ttft_warmup = 0

    now = dt.datetime.now()
    loadavg_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    res = BudgetBench(args).run()
    res.update(
        date=now.strftime("%Y-%m-%d %H:%M:%S"),
        git=oh.git_rev(ROOT),
        machine=oh.machine(),
        loadavg_before=loadavg_before,
        loadavg_after=" ".join(Path("/proc/loadavg").read_text().split()[:3]),
        redis_version=re.search(r"redis_version:(\S+)", redis_cli(args.redis_url, "info", "server")).group(1),
        settings=vars(args) | {"phases": []},
    )
    agg = aggregate(res)
    oh.write_results(args.results_dir, f"budget-{now.strftime('%Y-%m-%d-%H%M%S')}", report(res, agg, args), agg, res)


if __name__ == "__main__":
    main()
