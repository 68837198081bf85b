#!/usr/bin/env python3
"""Times the admin API calls each console page makes, against a filled ledger.

Usage: pages.py ADMIN_URL ADMIN_TOKEN TENANT_KEY TENANT_ID BACKEND COUNT_CMD [RUNS]

Each call runs RUNS times in a row (median and max, ms, first run included: it is the
cold one), then each page's calls run RUNS times all at once, as the browser sends them
(median and max of the page's wall time). COUNT_CMD counts the ledger's rows in a range
straight from the database, for the checks: a shell command with {from}, {to} and
{tenant} (the tenant filter, `1` or a condition) substituted. Loopback only; standard
library only. Prints one line per call and per page, then the checks.
"""
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

admin, token, tkey, tid, backend, count_cmd = sys.argv[1:7]
runs = int(sys.argv[7]) if len(sys.argv) > 7 else 5
u = urllib.parse.urlparse(admin)
assert u.hostname in ("127.0.0.1", "localhost", "::1"), "loopback only"
ADMIN, TENANT = {"Authorization": f"Bearer {token}"}, {"Authorization": f"Bearer {tkey}"}

U = "/api/v1/usage"
M = "/api/v1/me/usage"
# page -> [(label, path, headers)]; what the console's pages request (console/src/pages,
# components/UsageView.tsx: the bucket is the finest with at most 500 points; a grouped
# series asks for its top 6 keys, the others summed).
PAGES = {
    "usage 24h (default)": [
        ("totals 24h by tenant", f"{U}/totals?from=24h&group_by=tenant", ADMIN),
        ("series 24h hour by tenant, top 6", f"{U}/series?from=24h&bucket=hour&group_by=tenant&top=6", ADMIN),
        ("recent 24h 100", f"{U}/recent?from=24h&limit=100", ADMIN),
        ("tenants 200 (names)", "/api/v1/tenants?limit=200", ADMIN),
    ],
    "usage 7d": [
        ("totals 7d by tenant", f"{U}/totals?from=7d&group_by=tenant", ADMIN),
        ("series 7d hour by tenant, top 6", f"{U}/series?from=7d&bucket=hour&group_by=tenant&top=6", ADMIN),
        ("recent 7d 100", f"{U}/recent?from=7d&limit=100", ADMIN),
        ("tenants 200 (names)", "/api/v1/tenants?limit=200", ADMIN),
    ],
    "usage 7d, no grouping": [
        ("totals 7d", f"{U}/totals?from=7d&group_by=none", ADMIN),
        ("series 7d hour", f"{U}/series?from=7d&bucket=hour&group_by=none", ADMIN),
        ("recent 7d 100", f"{U}/recent?from=7d&limit=100", ADMIN),
    ],
    "usage 30d": [
        ("totals 30d by tenant", f"{U}/totals?from=30d&group_by=tenant", ADMIN),
        ("series 30d day by tenant, top 6", f"{U}/series?from=30d&bucket=day&group_by=tenant&top=6", ADMIN),
        ("recent 30d 100", f"{U}/recent?from=30d&limit=100", ADMIN),
        ("tenants 200 (names)", "/api/v1/tenants?limit=200", ADMIN),
    ],
    "usage 30d by model": [
        ("totals 30d by model", f"{U}/totals?from=30d&group_by=model", ADMIN),
        ("series 30d day by model, top 6", f"{U}/series?from=30d&bucket=day&group_by=model&top=6", ADMIN),
        ("recent 30d 100", f"{U}/recent?from=30d&limit=100", ADMIN),
    ],
    "usage 24h by model": [
        ("totals 24h by model", f"{U}/totals?from=24h&group_by=model", ADMIN),
        ("series 24h hour by model, top 6", f"{U}/series?from=24h&bucket=hour&group_by=model&top=6", ADMIN),
        ("recent 24h 100", f"{U}/recent?from=24h&limit=100", ADMIN),
    ],
    "overview": [
        ("stats 300", "/api/v1/stats?window=300", ADMIN),
        ("scheduler", "/api/v1/scheduler", ADMIN),
        ("readyz", "/readyz", {}),
        ("cluster", "/api/v1/cluster", ADMIN),
    ],
    "tenant view 24h (me)": [
        ("me", "/api/v1/me", TENANT),
        ("me/usage", "/api/v1/me/usage", TENANT),
        ("me/scheduler", "/api/v1/me/scheduler", TENANT),
        ("me totals 24h by model", f"{M}/totals?from=24h&group_by=model", TENANT),
        ("me series 24h hour by model, top 6", f"{M}/series?from=24h&bucket=hour&group_by=model&top=6", TENANT),
        ("me recent 24h 100", f"{M}/recent?from=24h&limit=100", TENANT),
    ],
    "tenant view 30d (me)": [
        ("me totals 30d by model", f"{M}/totals?from=30d&group_by=model", TENANT),
        ("me series 30d day by model, top 6", f"{M}/series?from=30d&bucket=day&group_by=model&top=6", TENANT),
        ("me recent 30d 100", f"{M}/recent?from=30d&limit=100", TENANT),
    ],
}


def get(path, headers, conn=None):
    c = conn or http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    t0 = time.perf_counter()
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    body = r.read()
    ms = (time.perf_counter() - t0) * 1000
    if conn is None:
        c.close()
    return ms, r.status, body


answers = {}   # path -> last parsed body
rows = []
print(f"# backend={backend} runs={runs}")
print("call\tmedian_ms\tmax_ms\truns_ms\tstatus\tbytes")
conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
seen = set()
call_median = {}
for page, calls in PAGES.items():
    for label, path, h in calls:
        if path in seen:
            continue
        seen.add(path)
        times, statuses, size = [], set(), 0
        for _ in range(runs):
            ms, st, body = get(path, h, conn)
            times.append(ms); statuses.add(st); size = len(body)
        try:
            answers[path] = json.loads(body)
        except ValueError:
            answers[path] = None
        call_median[path] = statistics.median(times)
        print(f"{label}\t{statistics.median(times):.1f}\t{max(times):.1f}\t{' '.join('%.0f' % t for t in times)}\t"
              f"{','.join(map(str, sorted(statuses)))}\t{size}", flush=True)

print()
print("page\tslowest_call_median_ms\tparallel_wall_median_ms\tparallel_wall_max_ms\tslowest call\tfailed calls")
failed = []
for page, calls in PAGES.items():
    slowest = max(calls, key=lambda c: call_median[c[1]])
    walls, page_failed = [], []
    for _ in range(runs):
        out = [None] * len(calls)
        def one(i, path, h):
            out[i] = get(path, h)
        ts = [threading.Thread(target=one, args=(i, p, h)) for i, (_, p, h) in enumerate(calls)]
        t0 = time.perf_counter()
        for t in ts: t.start()
        for t in ts: t.join()
        walls.append((time.perf_counter() - t0) * 1000)
        for c, o in zip(calls, out):
            if o[1] != 200:
                page_failed.append(f"{c[0]}: {o[1]} {o[2][:160].decode(errors='replace')}")
    failed.extend(page_failed)
    print(f"{page}\t{call_median[slowest[1]]:.1f}\t{statistics.median(walls):.1f}\t{max(walls):.1f}\t{slowest[0]}\t"
          f"{len(page_failed)} of {runs * len(calls)}", flush=True)
for f in dict.fromkeys(failed):
    print(f"# failed: {f}")

# Checks: the answers against the rows counted straight from the database.
def count(frm, to, tenant=None):
    cond = "1" if tenant is None else f"tenant_id = '{tenant}'"
    cmd = count_cmd.replace("{from}", str(frm)).replace("{to}", str(to)).replace("{tenant}", cond)
    return int(subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True).stdout.strip())

print()
print("check\tapi\tdatabase\tok")
bad = 0
def check(name, api, db, ok=None):
    global bad
    ok = (api == db) if ok is None else ok
    bad += not ok
    print(f"{name}\t{api}\t{db}\t{'ok' if ok else 'MISMATCH'}")

for path, a in answers.items():
    if a is None or "data" not in a or "/usage/" not in path or "/recent" in path:
        continue
    tenant = tid if path.startswith(M) else None
    req = sum(d["requests"] for d in a["data"])
    check(f"{path} requests", req, count(a["from"], a["to"], tenant))
    if "group_by=tenant" in path and "top=" not in path:
        unnamed = sum(1 for d in a["data"] if "tenant" not in d)
        check(f"{path} rows without a tenant name", unnamed, 0)
        keys = {d["key"] for d in a["data"]}
        want = int(os.environ.get("TENANTS", "0")) or len(keys)
        check(f"{path} distinct tenants", len(keys), want)
    if "group_by=tenant" in path and "top=" in path:
        # The console's top 6: six named tenants of their own, the rest summed as other.
        own = {d["key"] for d in a["data"] if not d.get("other")}
        unnamed = sum(1 for d in a["data"] if not d.get("other") and "tenant" not in d)
        check(f"{path} tenants of their own, named", (len(own), unnamed), (6, 0))
    if "group_by=model" in path and "/totals" in path:
        check(f"{path} models", len(a["data"]), 5)
for path, a in answers.items():
    if "/recent" in path:
        if not a or "data" not in a:
            check(f"{path} answered", "error", "rows", ok=False)
            continue
        d = a["data"]
        newest_first = all(d[i]["received_at_ms"] >= d[i + 1]["received_at_ms"] for i in range(len(d) - 1))
        check(f"{path} rows, newest first", len(d), 100, ok=len(d) == 100 and newest_first)
        if path.startswith(M):
            check(f"{path} only the tenant's rows", sum(r["tenant_id"] != tid for r in d), 0)
sched = answers.get("/api/v1/scheduler")
print(f"# /api/v1/scheduler answer: {json.dumps(sched)[:160]}")
print(f"checks_failed={bad}")
sys.exit(1 if bad else 0)
