"""Live fairness runs: the real gateway in front of the bundled mock, loaded by many
concurrent clients per tenant; shares are measured from the usage the gateway returned.

    bench/fairness/live.sh            # builds release, runs W1 and W2, prints tables

Workloads (the simulator's W1 and W2, scaled to a loopback run):
  W1  tenants weights 500 / 50 / 100, all backlogged (closed loop, 12 clients each)
  W2  the weight-500 tenant sends Poisson traffic at ~30% of capacity; the others are backlogged

Service is counted in the scheduler's cost units: prompt + output_token_weight × completion
tokens, as reported in each response's usage, for the requests that completed inside the
measured window (after `--warmup` seconds, before `--duration`).
"""

import argparse
import asyncio
import json
import math
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

OUTPUT_WEIGHT = 2.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    def __init__(self, args, env, log):
        self.log = open(log, "w")
        self.p = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
        self.log.close()


async def wait_http(url, timeout=20.0):
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as c:
        while time.monotonic() < deadline:
            try:
                if (await c.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def lognormal(rng, mean, sigma):
    mu = math.log(mean) - sigma * sigma / 2
    return rng.lognormvariate(mu, sigma)


class Tenant:
    def __init__(self, name, weight, key=None):
        self.name, self.weight, self.key = name, weight, key
        self.service = 0.0
        self.requests = 0
        self.waits = []
        self.errors = 0
        self.offered = 0
        self.offered_service = 0.0


async def one_request(client, tenant, rng, t0, warmup, stats_window):
    words = max(1, int(lognormal(rng, 60, 0.8)))
    max_tokens = max(1, min(512, int(lognormal(rng, 48, 0.9))))
    body = {
        "model": "mock-model",
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": " ".join(["w"] * words)}],
    }
    sent = time.monotonic()
    if sent - t0 >= warmup:
        # The mock counts a chat prompt as its words + 3 per message + 3, and produces
        # exactly max_tokens: the cost this request asks for is known before it is sent.
        tenant.offered_service += words + 6 + OUTPUT_WEIGHT * max_tokens
    try:
        r = await client.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {tenant.key}"})
    except httpx.HTTPError:
        tenant.errors += 1
        return
    done = time.monotonic()
    if r.status_code != 200:
        tenant.errors += 1
        return
    u = r.json()["usage"]
    # Credited when it completes inside the measured window (whenever it was sent), so that
    # slow tenants' long waits do not push their work out of the window at its end.
    if warmup <= done - t0 <= stats_window:
        tenant.service += u["prompt_tokens"] + OUTPUT_WEIGHT * u["completion_tokens"]
        tenant.requests += 1
        tenant.waits.append(done - sent)  # end-to-end latency: queueing + the mock's own time


async def closed_loop(client, tenant, rng, t0, duration, warmup, workers):
    async def worker(i):
        wrng = random.Random(rng.random())
        while time.monotonic() - t0 < duration:
            await one_request(client, tenant, wrng, t0, warmup, duration)

    await asyncio.gather(*(worker(i) for i in range(workers)))


async def poisson(client, tenant, rng, t0, duration, warmup, rate):
    tasks = []
    while True:
        await asyncio.sleep(rng.expovariate(rate))
        if time.monotonic() - t0 >= duration:
            break
        tenant.offered += 1
        tasks.append(asyncio.create_task(one_request(client, tenant, random.Random(rng.random()), t0, warmup, duration)))
    await asyncio.gather(*tasks)


def targets(tenants, demands, capacity):
    """Weighted max-min (water-filling): demands in service/s, None = backlogged."""
    remaining = dict((t.name, t.weight) for t in tenants)
    alloc = {}
    cap = capacity
    while remaining:
        total_w = sum(remaining.values())
        satisfied = [n for n, w in remaining.items() if demands.get(n) is not None and demands[n] <= cap * w / total_w]
        if not satisfied:
            for n, w in remaining.items():
                alloc[n] = cap * w / total_w
            break
        for n in satisfied:
            alloc[n] = demands[n]
            cap -= demands[n]
            del remaining[n]
    return {n: a / capacity for n, a in alloc.items()}


async def run(args, workload):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    binary = args.bin
    tmp = tempfile.mkdtemp(prefix=f"obleth-live-{workload}-")
    mock_port, data, admin, metrics = free_port(), free_port(), free_port(), free_port()
    token = "live-bench-admin-token-0123456789abcdef"
    mock = Proc([binary, "mock", "--listen", f"127.0.0.1:{mock_port}", "--ttft-ms", str(args.ttft_ms),
                 "--itl-ms", str(args.itl_ms), "--max-num-seqs", "256"], dict(os.environ), f"{tmp}/mock.log")
    env = dict(os.environ, OBLETH_LISTEN_DATA=f"127.0.0.1:{data}", OBLETH_LISTEN_ADMIN=f"127.0.0.1:{admin}",
               OBLETH_LISTEN_METRICS=f"127.0.0.1:{metrics}", OBLETH_ADMIN_TOKEN=token,
               OBLETH_DATABASE_URL=f"sqlite://{tmp}/cp.db", OBLETH_UPSTREAM_BASE_URL=f"http://127.0.0.1:{mock_port}/v1",
               OBLETH_ADMISSION_MAX_IN_FLIGHT=str(args.slots), OBLETH_ADMISSION_MODE=args.mode,
               OBLETH_ADMISSION_BROWNOUT_AFTER="0s", OBLETH_ADMISSION_QUEUE_TIMEOUT="120s", OBLETH_LOG_LEVEL="warn")
    gw = Proc([binary, "serve"], env, f"{tmp}/gateway.log")
    try:
        await wait_http(f"http://127.0.0.1:{mock_port}/health")
        await wait_http(f"http://127.0.0.1:{data}/healthz")
        tenants = [Tenant("chatbot", 500), Tenant("api-batch", 50), Tenant("analytics", 100)]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin}", headers={"authorization": f"Bearer {token}"}) as a:
            (await a.post("/api/v1/models", json={"model_name": "mock-model"})).raise_for_status()
            for t in tenants:
                (await a.post("/api/v1/tenants", json={"name": t.name, "weight": t.weight})).raise_for_status()
                r = await a.post(f"/api/v1/tenants/{t.name}/keys", json={})
                r.raise_for_status()
                t.key = r.json()["secret"]
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{data}", limits=limits, timeout=180) as client:
            rng = random.Random(args.seed)
            t0 = time.monotonic()
            jobs = []
            demands = {}
            if workload == "W1":
                for t in tenants:
                    jobs.append(closed_loop(client, t, random.Random(rng.random()), t0, args.duration, args.warmup, args.workers))
            else:
                # Capacity in requests/s: slots / mean service time of one request.
                mean_service = (args.ttft_ms + args.itl_ms * 60) / 1000.0
                cap_rps = args.slots / mean_service
                rate = 0.3 * cap_rps
                jobs.append(poisson(client, tenants[0], random.Random(rng.random()), t0, args.duration, args.warmup, rate))
                for t in tenants[1:]:
                    jobs.append(closed_loop(client, t, random.Random(rng.random()), t0, args.duration, args.warmup, args.workers))
            await asyncio.gather(*jobs)
            elapsed = args.duration - args.warmup
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin}", headers={"authorization": f"Bearer {token}"}) as a:
            sched = (await a.get("/api/v1/scheduler")).json()
    finally:
        gw.stop()
        mock.stop()

    total = sum(t.service for t in tenants)
    capacity = total / elapsed
    if workload == "W2":
        demands["chatbot"] = tenants[0].offered_service / elapsed
    tg = targets(tenants, demands, capacity)
    rows = []
    for t in tenants:
        share = t.service / total if total else 0
        waits = sorted(t.waits)
        p50 = waits[len(waits) // 2] if waits else float("nan")
        p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))] if waits else float("nan")
        rows.append((t, share, tg[t.name], p50, p99))
    print(f"\n### Live {workload} ({args.mode} mode, {args.slots} slots, {args.duration - args.warmup:.0f} s measured, "
          f"mock ttft {args.ttft_ms} ms / itl {args.itl_ms} ms)\n")
    print("| tenant | weight | requests | service (tok) | share | target | error (rel.) | latency p50 | latency p99 | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for t, share, target, p50, p99 in rows:
        err = (share - target) / target if target else float("nan")
        print(f"| {t.name} | {t.weight} | {t.requests} | {t.service:.0f} | {share:.2%} | {target:.2%} | {err:+.1%} | "
              f"{p50 * 1000:.0f} ms | {p99 * 1000:.0f} ms | {t.errors} |")
    if workload == "W2":
        c = tenants[0]
        print(f"\nchatbot offered {c.offered} requests (Poisson at ~30% of capacity) asking for "
              f"{c.offered_service:.0f} tokens of service in the window and received {c.service:.0f} "
              f"({c.service / c.offered_service:.1%} of its demand; requests still in flight at the end are not counted).")
    adm = sched.get("admissions", {})
    print(f"\nadmissions: fast {adm.get('fast')}, queued {adm.get('queued')}, brownout {adm.get('brownout')}; "
          f"scheduler at end: {sched.get('slots_used')}/{sched.get('slots_total')} slots, {sched.get('queued')} queued")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--workload", default="all", choices=["W1", "W2", "all"])
    ap.add_argument("--mode", default="hierarchical", choices=["hierarchical", "weighted"])
    ap.add_argument("--slots", type=int, default=8)
    ap.add_argument("--workers", type=int, default=12)
    ap.add_argument("--duration", type=float, default=65.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--ttft-ms", type=float, default=20.0)
    ap.add_argument("--itl-ms", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    for w in (["W1", "W2"] if args.workload == "all" else [args.workload]):
        asyncio.run(run(args, w))


if __name__ == "__main__":
    main()
