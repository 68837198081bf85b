#!/usr/bin/env python3
"""Profiles the obleth process under one overhead workload (see bench/overhead/run.sh).

    python3 bench/overhead/profile.py --obleth target/release/obleth \
        --loadgen bench/overhead/loadgen/target/release/obleth-loadgen \
        --workload closed1|closed32|stream0|open2000 [--seconds 10] [--callgraph]

Starts the same stack as the benchmark (mocks, gateway, seeded key), drives the
workload through obleth, and meanwhile runs
  * `perf stat` (software events: task-clock, context switches, migrations) on the
    gateway, normalised per request, and
  * `perf record -e cpu-clock` on the gateway (hardware counters are unavailable in
    this VM), then prints the hottest symbols (self time) and, with --callgraph,
    inclusive time by caller (DWARF unwinding).
Output goes to stdout and bench/results/profile-<workload>-<date>.txt.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import overhead  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--obleth", required=True)
    p.add_argument("--loadgen", required=True)
    p.add_argument("--workload", default="closed1", choices=["closed1", "closed32", "stream0", "open2000"])
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--callgraph", action="store_true")
    p.add_argument("--gateway-env", action="append", default=[])
    p.add_argument("--mock-env", action="append", default=[])
    args = p.parse_args()
    # Fields overhead.Bench reads.
    args.keep_tmp = False
    args.quiet_wait = 30
    bench = overhead.Bench(args)
    out: list[str] = []
    try:
        bench.start()
        gw = bench.gw.pid
        url, token = bench.target("obleth", bench.mock0_port)
        addr = url.removeprefix("http://")
        secs = args.seconds
        if args.workload.startswith("closed"):
            conns = 1 if args.workload == "closed1" else 32
            bench.wrk("obleth", conns, 2)  # warm-up
            load = ["wrk", "-t1", f"-c{conns}", f"-d{secs + 2}s", "-s", str(Path(__file__).with_name("post.lua")),
                    f"{url}/v1/chat/completions"]  # fmt: skip
            env = dict(__import__("os").environ, BENCH_BODY_FILE=bench.body_plain, BENCH_BEARER=token)
        elif args.workload == "stream0":
            load = [args.loadgen, "ttft", "--addr", addr, "--body-file", bench.body_stream0, "--bearer", token,
                    "--requests", "1000000", "--warmup", "0"]  # fmt: skip
            env = None
        else:
            load = [args.loadgen, "open", "--addr", addr, "--body-file", bench.body_plain, "--bearer", token,
                    "--rate", "2000", "--duration", str(secs + 2), "--warmup", "0"]  # fmt: skip
            env = None
        loader = subprocess.Popen(load, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.0)
            n0 = overhead.gateway_requests(bench.metrics_url)
            stat = subprocess.run(
                ["perf", "stat", "-x", ",", "-e", "task-clock,context-switches,cpu-migrations,page-faults",
                 "-p", str(gw), "--", "sleep", str(secs // 2)],
                capture_output=True, text=True,
            )  # fmt: skip
            n1 = overhead.gateway_requests(bench.metrics_url)
            req = max(1, n1 - n0)
            out.append(f"workload {args.workload}: {req} requests in {secs // 2} s ({req / (secs // 2):.0f} req/s)")
            out.append("perf stat on obleth, per request:")
            for line in stat.stderr.splitlines():
                f = line.split(",")
                if len(f) > 3 and f[0].replace(".", "").isdigit():
                    out.append(f"  {f[2]:>18}: {float(f[0]) / req:10.3f} {'ms' if f[1] == 'msec' else ''}")
            data = bench.tmp / "perf.data"
            rec = ["perf", "record", "-e", "cpu-clock", "-F", "4999", "-p", str(gw), "-o", str(data)]
            if args.callgraph:
                rec += ["--call-graph", "dwarf,16384"]
            subprocess.run([*rec, "--", "sleep", str(secs // 2)], capture_output=True, text=True)
        finally:
            loader.terminate()
            loader.wait()
        rep = subprocess.run(
            ["perf", "report", "-i", str(data), "--stdio", "--no-children", "-g", "none",
             "--sort", "dso,symbol", "-F", "overhead,dso,sym", "--percent-limit", "0"],
            capture_output=True, text=True,
        )  # fmt: skip
        rows = []  # (percent, dso, symbol)
        for line in rep.stdout.splitlines():
            m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*?)\s*$", line)
            if m:
                rows.append((float(m.group(1)), m.group(2), m.group(3)))
        rows.sort(reverse=True)
        by_dso: dict[str, float] = {}
        by_crate: dict[str, float] = {}
        exe = Path(args.obleth).name
        for pc, dso, sym in rows:
            by_dso[dso] = by_dso.get(dso, 0.0) + pc
            if dso == exe:
                crate = re.sub(r"^[<&*\s]*(dyn )?", "", sym).split("::")[0].split("<")[0] or sym
                by_crate[crate] = by_crate.get(crate, 0.0) + pc
        out.append("\nself time by binary (% of obleth's cpu-clock samples):")
        out += [f"  {pc:6.2f}%  {dso}" for dso, pc in sorted(by_dso.items(), key=lambda x: -x[1])]
        out.append(f"\nself time in {exe} by crate (% of all samples):")
        out += [f"  {pc:6.2f}%  {c}" for c, pc in sorted(by_crate.items(), key=lambda x: -x[1])[:20]]
        out.append("\nhottest symbols (self time, % of all samples):")
        out += [f"  {pc:6.2f}%  {dso:<18} {sym[:150]}" for pc, dso, sym in rows[:25]]
        out.append("\nhottest user-space symbols (self time, % of all samples):")
        out += [f"  {pc:6.2f}%  {dso:<18} {sym[:150]}" for pc, dso, sym in rows if "kernel" not in dso][:30]
        if args.callgraph:
            rep = subprocess.run(
                ["perf", "report", "-i", str(data), "--stdio", "--children", "--sort", "symbol",
                 "--percent-limit", "3", "-g", "none"],
                capture_output=True, text=True,
            )  # fmt: skip
            out.append("\ninclusive time (children):")
            out += [line for line in rep.stdout.splitlines() if line and not line.startswith("#")]
    finally:
        bench.stop_all()
    text = "\n".join(out)
    print(text)
    root = Path(__file__).resolve().parents[2] / "bench" / "results"
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"profile-{args.workload}-{dt.datetime.now().strftime('%Y-%m-%d-%H%M%S')}.txt"
    path.write_text(text + "\n")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
