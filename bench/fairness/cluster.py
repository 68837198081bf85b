"""Live fairness across pods: N `obleth serve` pods sharing Postgres and Redis behind HAProxy
(deploy/haproxy/haproxy.cfg), the bundled mock as backend, loaded by live.py's workloads.

    bench/fairness/cluster.sh          # builds release, runs cases A and B for W1 and W2

Each run starts from scratch: a fresh Postgres database, a Redis channel (and slot key) of
its own, the mock, the pods, HAProxy; tenants, model and keys are created through HAProxy's
admin frontend. The cluster cap (`admission.max_in_flight`) is 8 x pods unless --cap says
otherwise; the pods split it through Redis (obleth-cluster's slot share).

Cases:
  A  round robin: every tenant's traffic goes through HAProxy (round robin over the pods)
  B  skewed: one tenant (--pin, default chatbot) sends only to pod 1 directly; the others
     go through HAProxy

Workloads are live.py's W1 and W2 with the number of closed-loop workers scaled with the
pods (--workers per pod per tenant, 12 by default: the single-pod ratio of 36 workers per
8 slots) and W2's Poisson rate at ~30% of the cluster's capacity. Service is counted as in
live.py. A per-pod table shows how each pod split its own slots and how often each tenant
had nothing queued on it.

The backend's peak concurrency (GET /mock/stats, `peak_running`) is checked against the
cluster cap.
"""

import argparse
import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import httpx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from live import Proc, Tenant, closed_loop, free_port, poisson, targets, wait_http  # noqa: E402

TOKEN = "cluster-bench-admin-token-0123456789abcdef"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HAPROXY_CFG = os.path.join(ROOT, "deploy", "haproxy", "haproxy.cfg")


def record(args, line):
    """Appends to the state file cluster.sh's trap reads (pids to kill, databases to drop)."""
    if args.state:
        with open(args.state, "a") as f:
            f.write(line + "\n")


def psql(args, sql):
    out = subprocess.run(["psql", args.pg_admin_url, "-v", "ON_ERROR_STOP=1", "-qc", sql], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"psql {sql!r}: {out.stderr.strip()}")


def haproxy_config(tmp, pods):
    """The shipped configuration, as is for three pods; for another count, its server lines
    repeated (or cut) per pod."""
    if pods == 3:
        return HAPROXY_CFG
    lines = []
    for line in open(HAPROXY_CFG):
        if re.match(r"\s+server pod1 ", line):
            lines += [line.replace("POD1", f"POD{i}").replace("pod1", f"pod{i}") for i in range(1, pods + 1)]
        elif not re.match(r"\s+server pod\d ", line):
            lines.append(line)
    path = f"{tmp}/haproxy.cfg"
    with open(path, "w") as f:
        f.writelines(lines)
    return path


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))] if xs else float("nan")


async def admin_json(url, method, path, body=None):
    async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=10) as a:
        r = await a.request(method, path, json=body)
        r.raise_for_status()
        return r.json()


async def sample_pods(pods, t0, warmup, duration, samples):
    """Every 0.5 s of the measured window: each pod's per-tenant queue length and in-flight."""
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {TOKEN}"}, timeout=5) as c:
        while time.monotonic() - t0 < duration:
            if time.monotonic() - t0 >= warmup:
                snap = []
                for p in pods:
                    try:
                        s = (await c.get(f"http://127.0.0.1:{p['admin']}/api/v1/scheduler")).json()
                        snap.append({t["name"]: (t["queued"], t["in_flight"]) for t in s.get("tenants", [])})
                    except (httpx.HTTPError, ValueError):
                        snap.append(None)
                samples.append(snap)
            await asyncio.sleep(0.5)


async def run(args, case, workload):
    cap = args.cap or 8 * args.pods
    tmp = tempfile.mkdtemp(prefix=f"obleth-cluster-{case}-{workload}-")
    run_id = uuid.uuid4().hex[:12]
    db = f"obleth_bench_{run_id}"
    channel = f"obleth-bench-{run_id}"
    procs = []
    psql(args, f"CREATE DATABASE {db}")
    record(args, f"db {db}")
    try:
        mock_port = free_port()
        mock = Proc([args.bin, "mock", "--listen", f"127.0.0.1:{mock_port}", "--ttft-ms", str(args.ttft_ms),
                     "--itl-ms", str(args.itl_ms), "--max-num-seqs", "256"], dict(os.environ), f"{tmp}/mock.log")
        procs.append(mock)
        record(args, f"pid {mock.p.pid}")
        db_url = args.pg_admin_url.rsplit("/", 1)[0] + f"/{db}"
        pods = []
        for i in range(1, args.pods + 1):
            d = f"{tmp}/pod{i}"
            os.makedirs(d)
            data, admin, metrics = free_port(), free_port(), free_port()
            env = dict(os.environ, OBLETH_LISTEN_DATA=f"127.0.0.1:{data}", OBLETH_LISTEN_ADMIN=f"127.0.0.1:{admin}",
                       OBLETH_LISTEN_METRICS=f"127.0.0.1:{metrics}", OBLETH_ADMIN_TOKEN=TOKEN,
                       OBLETH_DATABASE_URL=db_url, OBLETH_UPSTREAM_BASE_URL=f"http://127.0.0.1:{mock_port}/v1",
                       OBLETH_ADMISSION_MAX_IN_FLIGHT=str(cap), OBLETH_ADMISSION_MODE=args.mode,
                       OBLETH_ADMISSION_BROWNOUT_AFTER="0s", OBLETH_ADMISSION_QUEUE_TIMEOUT="120s",
                       OBLETH_CLUSTER_REDIS_URL=args.redis_url, OBLETH_CLUSTER_CHANNEL=channel,
                       OBLETH_CLUSTER_POD_NAME=f"pod{i}",
                       OBLETH_LEDGER_SQLITE_URL=f"sqlite://{d}/usage.db", OBLETH_LEDGER_WAL_DIR=f"{d}/wal",
                       OBLETH_LOG_LEVEL="warn")
            p = Proc([args.bin, "serve"], env, f"{d}/gateway.log")
            procs.append(p)
            record(args, f"pid {p.p.pid}")
            pods.append({"data": data, "admin": admin, "proc": p})
        hp_data, hp_admin = free_port(), free_port()
        hp_env = dict(os.environ, OBLETH_HAPROXY_DATA_BIND=f"127.0.0.1:{hp_data}",
                      OBLETH_HAPROXY_ADMIN_BIND=f"127.0.0.1:{hp_admin}")
        for i, pod in enumerate(pods, 1):
            hp_env.update({f"OBLETH_POD{i}": "127.0.0.1", f"OBLETH_POD{i}_DATA_PORT": str(pod["data"]),
                           f"OBLETH_POD{i}_ADMIN_PORT": str(pod["admin"])})
        hp = Proc([args.haproxy, "-db", "-f", haproxy_config(tmp, args.pods)], hp_env, f"{tmp}/haproxy.log")
        procs.append(hp)
        record(args, f"pid {hp.p.pid}")

        await wait_http(f"http://127.0.0.1:{mock_port}/health")
        for pod in pods:
            await wait_http(f"http://127.0.0.1:{pod['data']}/healthz")
        # The pods split the cap through Redis; wait until every pod has its even share.
        deadline = time.monotonic() + 20
        while True:
            totals = [(await admin_json(f"http://127.0.0.1:{p['admin']}", "GET", "/api/v1/scheduler"))["slots_total"]
                      for p in pods]
            if sum(totals) == cap and min(totals) >= cap // args.pods:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the pods did not split the cap {cap}: {totals}")
            await asyncio.sleep(0.1)
        await wait_http(f"http://127.0.0.1:{hp_data}/healthz")
        await wait_http(f"http://127.0.0.1:{hp_admin}/healthz")

        haproxy_admin = f"http://127.0.0.1:{hp_admin}"
        tenants = [Tenant("chatbot", 500), Tenant("api-batch", 50), Tenant("analytics", 100)]
        await admin_json(haproxy_admin, "POST", "/api/v1/models", {"model_name": "mock-model"})
        for t in tenants:
            await admin_json(haproxy_admin, "POST", "/api/v1/tenants", {"name": t.name, "weight": t.weight})
            t.key = (await admin_json(haproxy_admin, "POST", f"/api/v1/tenants/{t.name}/keys", {}))["secret"]
        pinned = args.pin if case == "B" else None
        if pinned and pinned not in [t.name for t in tenants]:
            raise RuntimeError(f"--pin {pinned}: no such tenant")
        async with httpx.AsyncClient() as c:
            (await c.post(f"http://127.0.0.1:{mock_port}/mock/reset")).raise_for_status()

        samples = []
        limits = httpx.Limits(max_connections=2000, max_keepalive_connections=2000)
        workers = args.workers * args.pods
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hp_data}", limits=limits, timeout=180) as via_lb, \
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{pods[0]['data']}", limits=limits, timeout=180) as pod1:
            client_of = {t.name: (pod1 if t.name == pinned else via_lb) for t in tenants}
            rng = random.Random(args.seed)
            t0 = time.monotonic()
            jobs = []
            if workload == "W1":
                for t in tenants:
                    jobs.append(closed_loop(client_of[t.name], t, random.Random(rng.random()), t0, args.duration,
                                            args.warmup, workers))
            else:
                mean_service = (args.ttft_ms + args.itl_ms * 60) / 1000.0
                rate = 0.3 * cap / mean_service
                jobs.append(poisson(client_of["chatbot"], tenants[0], random.Random(rng.random()), t0, args.duration,
                                    args.warmup, rate))
                for t in tenants[1:]:
                    jobs.append(closed_loop(client_of[t.name], t, random.Random(rng.random()), t0, args.duration,
                                            args.warmup, workers))
            sampler = asyncio.create_task(sample_pods(pods, t0, args.warmup, args.duration, samples))
            await asyncio.gather(*jobs)
            await sampler
        elapsed = args.duration - args.warmup
        async with httpx.AsyncClient() as c:
            mock_stats = (await c.get(f"http://127.0.0.1:{mock_port}/mock/stats")).json()
        per_pod = [await admin_json(f"http://127.0.0.1:{p['admin']}", "GET", "/api/v1/scheduler") for p in pods]
    finally:
        for p in reversed(procs):
            p.stop()
        subprocess.run(["redis-cli", "-u", args.redis_url, "DEL", f"{channel}:slots"], capture_output=True)
        try:
            psql(args, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        except RuntimeError as e:
            print(f"warning: {e}", file=sys.stderr)

    total = sum(t.service for t in tenants)
    capacity = total / elapsed
    demands = {}
    if workload == "W2":
        demands["chatbot"] = tenants[0].offered_service / elapsed
    tg = targets(tenants, demands, capacity)

    title = "A, round robin" if case == "A" else f"B, skewed: {pinned} only to pod 1"
    print(f"\n### Cluster {workload}, case {title} ({args.pods} pods, cluster cap {cap}, {args.mode} mode, "
          f"{elapsed:.0f} s measured, {workers} workers per backlogged tenant)\n")
    head = "| tenant | weight | route | requests | service (tok) | share | target | error (rel.) |"
    sep = "|---|---|---|---|---|---|---|---|"
    print(head + " latency p50 | latency p99 | errors |")
    print(sep + "---|---|---|")
    for t in tenants:
        share = t.service / total if total else 0
        target = tg[t.name]
        route = "pod 1" if t.name == pinned else "HAProxy"
        row = (f"| {t.name} | {t.weight} | {route} | {t.requests} | {t.service:.0f} | {share:.2%} | {target:.2%} | "
               f"{(share - target) / target:+.1%} |")
        row += f" {pct(t.waits, 0.5) * 1000:.0f} ms | {pct(t.waits, 0.99) * 1000:.0f} ms | {t.errors} |"
        print(row)
    if workload == "W2":
        c = tenants[0]
        print(f"\nchatbot offered {c.offered} requests (Poisson at ~30% of the cluster's capacity) asking for "
              f"{c.offered_service:.0f} tokens of service in the window and received {c.service:.0f} "
              f"({c.service / c.offered_service:.1%} of its demand; requests still in flight at the end are not counted).")
    peak = mock_stats.get("peak_running")
    verdict = "within" if peak is not None and peak <= cap else "OVER"
    print(f"\nbackend peak concurrency {peak} (cluster cap {cap}: {verdict} the cap); backend completed "
          f"{mock_stats.get('completed')} requests, rejected {mock_stats.get('rejected')}")
    # Per pod: how it split its own service (its scheduler's served counters, whole run),
    # the tenant's mean in-flight there, and how often the tenant had nothing queued there
    # (sampled every 0.5 s in the measured window): a tenant not queued on a pod is not
    # backlogged there, and that pod's slots go to the others.
    print("\nPer pod (service split from each pod's own scheduler counters over the whole run; mean in-flight "
          "and % of 0.5 s samples with nothing queued, over the measured window):\n")
    print("| pod | slots | admitted | " + " | ".join(t.name for t in tenants) + " |")
    print("|---|---|---|" + "---|" * len(tenants))
    for i, s in enumerate(per_pod):
        adm = s.get("admissions", {})
        served = {t["name"]: t["served_tokens"] for t in s.get("tenants", [])}
        pod_total = sum(served.values()) or 1
        cells = []
        for t in tenants:
            snaps = [smp[i][t.name] for smp in samples if smp[i] is not None and t.name in smp[i]]
            mean_inflight = sum(x[1] for x in snaps) / len(snaps) if snaps else 0
            empty = sum(1 for x in snaps if x[0] == 0) / len(snaps) if snaps else float("nan")
            if served.get(t.name, 0) == 0 and mean_inflight == 0:
                cells.append("—")
            else:
                cells.append(f"{served.get(t.name, 0) / pod_total:.1%} · {mean_inflight:.1f} in flight · {empty:.0%} empty")
        print(f"| pod{i + 1} | {s.get('slots_total')} | {adm.get('fast', 0) + adm.get('queued', 0)} | " + " | ".join(cells) + " |")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--pods", type=int, default=3)
    ap.add_argument("--cap", type=int, default=0, help="cluster cap (default 8 x pods)")
    ap.add_argument("--case", default="all", choices=["A", "B", "all"])
    ap.add_argument("--workload", default="all", choices=["W1", "W2", "all"])
    ap.add_argument("--pin", default="chatbot", help="case B: the tenant sent only to pod 1")
    ap.add_argument("--mode", default="hierarchical", choices=["hierarchical", "weighted"])
    ap.add_argument("--workers", type=int, default=12, help="closed-loop workers per backlogged tenant, per pod")
    ap.add_argument("--duration", type=float, default=65.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--ttft-ms", type=float, default=20.0)
    ap.add_argument("--itl-ms", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--haproxy", default="/usr/sbin/haproxy")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    ap.add_argument("--pg-admin-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--state", default=os.environ.get("OBLETH_BENCH_STATE"),
                    help="file to record pids and databases in (for cluster.sh's cleanup trap)")
    args = ap.parse_args()
    if args.pods < 1:
        ap.error("--pods must be at least 1")

    def on_term(signum, frame):
        raise KeyboardInterrupt  # unwinds through run()'s finally: processes stopped, database dropped

    signal.signal(signal.SIGTERM, on_term)
    for case in (["A", "B"] if args.case == "all" else [args.case]):
        for w in (["W1", "W2"] if args.workload == "all" else [args.workload]):
            asyncio.run(run(args, case, w))


if __name__ == "__main__":
    main()
