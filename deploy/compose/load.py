#!/usr/bin/env python3
"""The demo's contention load: `noisy` (weight 1) with many concurrent clients, `quiet`
(weight 3) with a few, all through HAProxy, so the pool stays full and the fairshare
is visible in Grafana and the console.

Each client is a closed loop (send, read the whole answer, send again) on one keep-alive
connection; every other request is streamed, so the first-chunk histograms fill too.
Standard library only: runs in python:3.11-slim (Compose's `load` service) and in
scripts/deploy-check.sh alike.

Environment:
  LOAD_BASE_URL        http://haproxy:8080/v1
  LOAD_KEYS            a file of LOAD_KEY_NOISY=… / LOAD_KEY_QUIET=… lines (seed.sh
                       writes it); LOAD_KEY_NOISY / LOAD_KEY_QUIET in the environment win
  LOAD_DURATION        seconds to run (bounded: the load always stops by itself)
  LOAD_NOISY_CLIENTS   40
  LOAD_QUIET_CLIENTS   3
  LOAD_MAX_TOKENS      32
  LOAD_MODEL           mock-model

Prints a line every 10 s and, at the end, `LOAD-SUMMARY {json}` with each tenant's
completed requests, statuses and latency percentiles.
"""

import http.client
import json
import os
import sys
import threading
import time
import urllib.parse


def read_keys():
    keys = {}
    path = os.environ.get("LOAD_KEYS")
    if path:
        deadline = time.monotonic() + 60
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                sys.exit(f"load: {path} did not appear in 60 s (did the seed run?)")
            time.sleep(1)
        with open(path) as f:
            for line in f:
                name, sep, value = line.strip().partition("=")
                if sep:
                    keys[name] = value
    for name in ("LOAD_KEY_NOISY", "LOAD_KEY_QUIET"):
        if os.environ.get(name):
            keys[name] = os.environ[name]
    missing = [n for n in ("LOAD_KEY_NOISY", "LOAD_KEY_QUIET") if not keys.get(n)]
    if missing:
        sys.exit(f"load: no {', '.join(missing)}")
    return keys["LOAD_KEY_NOISY"], keys["LOAD_KEY_QUIET"]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.statuses = {}
        self.latencies = []
        self.brownouts = 0

    def add(self, status, latency, brownout):
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status == 200:
                self.latencies.append(latency)
            if brownout:
                self.brownouts += 1

    def summary(self):
        with self.lock:
            lat = sorted(self.latencies)
            pct = lambda q: round(lat[min(len(lat) - 1, int(len(lat) * q))], 3) if lat else None
            return {
                "ok": len(lat),
                "statuses": {str(k): v for k, v in sorted(self.statuses.items(), key=lambda kv: str(kv[0]))},
                "brownouts": self.brownouts,
                "p50_s": pct(0.5),
                "p99_s": pct(0.99),
            }


def client(base, key, stats, deadline, index, max_tokens, model):
    url = urllib.parse.urlsplit(base)
    path = url.path.rstrip("/") + "/chat/completions"
    conn = None
    n = 0
    while time.monotonic() < deadline:
        stream = (n + index) % 2 == 0
        n += 1
        body = json.dumps({
            "model": model,
            "messages": [{"role": "user", "content": f"request {n} of client {index}: say something"}],
            "max_tokens": max_tokens,
            "stream": stream,
        })
        started = time.monotonic()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=60)
            conn.request("POST", path, body, {
                "Authorization": f"Bearer {key}",
                "Content-Type": "application/json",
            })
            resp = conn.getresponse()
            resp.read()
            brownout = resp.getheader("x-obleth-admission") == "brownout"
            stats.add(resp.status, time.monotonic() - started, brownout)
            if resp.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
            if resp.status in (429, 503):
                # Refused (queue full, timed out, budget): back off as the answer says.
                time.sleep(min(float(resp.getheader("retry-after") or 1), 5))
        except (OSError, http.client.HTTPException) as e:
            stats.add(type(e).__name__, time.monotonic() - started, False)
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.5)
    if conn is not None:
        conn.close()


def main():
    base = os.environ.get("LOAD_BASE_URL", "http://haproxy:8080/v1")
    duration = float(os.environ.get("LOAD_DURATION", "3600"))
    noisy_clients = int(os.environ.get("LOAD_NOISY_CLIENTS", "40"))
    quiet_clients = int(os.environ.get("LOAD_QUIET_CLIENTS", "3"))
    max_tokens = int(os.environ.get("LOAD_MAX_TOKENS", "32"))
    model = os.environ.get("LOAD_MODEL", "mock-model")
    noisy_key, quiet_key = read_keys()
    start = time.monotonic()
    deadline = start + duration
    tenants = {"noisy": Stats(), "quiet": Stats()}
    threads = []
    for name, key, count in (("noisy", noisy_key, noisy_clients), ("quiet", quiet_key, quiet_clients)):
        for i in range(count):
            t = threading.Thread(target=client, args=(base, key, tenants[name], deadline, i, max_tokens, model),
                                 daemon=True)
            t.start()
            threads.append(t)
    print(f"load: {noisy_clients} noisy and {quiet_clients} quiet clients against {base} for {duration:.0f} s",
          flush=True)
    while any(t.is_alive() for t in threads):
        time.sleep(min(10, max(0.1, deadline - time.monotonic() + 0.1)))
        if time.monotonic() < deadline:
            elapsed = time.monotonic() - start
            line = ", ".join(f"{n}: {s.summary()['ok']} ok" for n, s in tenants.items())
            print(f"load: {elapsed:.0f} s: {line}", flush=True)
        else:
            # Clients finish the request they are in (at most the 60 s socket timeout).
            for t in threads:
                t.join(timeout=max(0, deadline + 65 - time.monotonic()))
            break
    print("LOAD-SUMMARY " + json.dumps({n: s.summary() for n, s in tenants.items()}), flush=True)


if __name__ == "__main__":
    main()
