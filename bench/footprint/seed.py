#!/usr/bin/env python3
"""Seed N tenants, each with a token limit and one key, through the admin API.

Usage: seed.py ADMIN_URL ADMIN_TOKEN N KEYS_OUT [CONCURRENCY]
Writes one key secret per line to KEYS_OUT. Standard library only (threads), loopback only.
"""
import http.client
import json
import os
import sys
import threading
import urllib.parse

admin, token, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
conc = int(sys.argv[5]) if len(sys.argv) > 5 else 8
# The same quota as the benchmark's tenant (a token limit by default: the tokenizer is on the path).
QUOTA = json.loads(os.environ.get("QUOTA", "{\"tpm\": 1000000000000}"))
u = urllib.parse.urlparse(admin)
assert u.hostname in ("127.0.0.1", "localhost", "::1"), "loopback only"
H = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
keys = [None] * n


def worker(idx):
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    for i in range(idx, n, conc):
        name = f"fp-{i:05d}"
        body = json.dumps({"name": name, "weight": 1, "quota": QUOTA})
        c.request("POST", "/api/v1/tenants", body, H)
        r = c.getresponse(); r.read()
        assert r.status in (200, 201, 409), (r.status, name)
        c.request("POST", f"/api/v1/tenants/{name}/keys", "{}", H)
        r = c.getresponse(); data = r.read()
        assert r.status in (200, 201), (r.status, data)
        keys[i] = json.loads(data)["secret"]


threads = [threading.Thread(target=worker, args=(k,)) for k in range(conc)]
for t in threads:
    t.start()
for t in threads:
    t.join()
with open(out, "w") as f:
    f.write("\n".join(keys) + "\n")
print(f"seeded {n} tenants and keys")
