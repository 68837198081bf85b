"""The MCP gateway's overhead, measured side by side with the upstream direct.

Started by bench/mcp/run.sh (which builds the release binary and installs wrk). Runs the
bundled mock's MCP server (rmcp) as the upstream and obleth in front of it, and measures
with wrk, in alternating rounds (a shared VM's drifts hit both alike):

1. tools/call at 1 connection: p50 and p99, direct vs through obleth (added = per-round
   difference, median of the rounds);
2. tools/call at 16 connections: requests per second, and the ratio;
3. tools/list over three servers whose lists take 20, 40 and 60 ms: through obleth with
   its cache off (every list asks all three, concurrently) against the slowest server
   direct; and through obleth with its cache on against one zero-delay server direct, at
   1 connection (latency) and 16 (throughput of the front alone, no upstream leg).

Requests are 2026-07-28 stateless POSTs (no session), the kind a benchmark can repeat.
Every answer is checked (a JSON-RPC result with status 200); a round with any failure
stops the run. Prints a markdown summary.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
OBLETH = os.environ["OBLETH_BIN"]
DURATION = int(os.environ.get("DURATION", "10"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
TMP = Path(tempfile.mkdtemp(prefix="obleth-mcp-bench-"))
TOKEN = "bench-admin-" + secrets.token_hex(16)
PROCS: list[subprocess.Popen] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ok(url: str) -> None:
    for _ in range(300):
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


def spawn(name: str, args: list[str], env: dict[str, str]) -> None:
    log = open(TMP / f"{name}.log", "wb")
    PROCS.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}))


def mock(delay_ms: float = 0) -> str:
    port = free_port()
    spawn(f"mock-{port}", [OBLETH, "mock", "--listen", f"127.0.0.1:{port}", "--mcp-list-delay-ms", str(delay_ms)], {})
    wait_ok(f"http://127.0.0.1:{port}/health")
    return f"http://127.0.0.1:{port}"


def gateway(name: str, extra: dict[str, str]) -> dict:
    data, admin, metrics = free_port(), free_port(), free_port()
    env = {
        "OBLETH_ADMIN_TOKEN": TOKEN,
        "OBLETH_DATABASE_URL": f"sqlite://{TMP}/{name}-cp.db",
        "OBLETH_LEDGER_SQLITE_URL": f"sqlite://{TMP}/{name}-usage.db",
        "OBLETH_LEDGER_WAL_DIR": str(TMP / f"{name}-wal"),
        "OBLETH_LISTEN_DATA": f"127.0.0.1:{data}",
        "OBLETH_LISTEN_ADMIN": f"127.0.0.1:{admin}",
        "OBLETH_LISTEN_METRICS": f"127.0.0.1:{metrics}",
        "OBLETH_LOG_LEVEL": "warn",
        **extra,
    }
    spawn(name, [OBLETH, "serve"], env)
    wait_ok(f"http://127.0.0.1:{data}/healthz")
    return {"data": f"http://127.0.0.1:{data}", "admin": f"http://127.0.0.1:{admin}"}


def admin(gw: dict, method: str, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(
        gw["admin"] + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"{}")


def seed(gw: dict, servers: dict[str, str]) -> str:
    admin(gw, "POST", "/api/v1/tenants", {"name": "bench"})
    key = admin(gw, "POST", "/api/v1/tenants/bench/keys", {})["secret"]
    for name, url in servers.items():
        admin(gw, "POST", "/api/v1/mcp/servers", {"name": name, "url": url + "/mcp", "max_concurrency": 64})
        admin(gw, "POST", "/api/v1/mcp/grants", {"tenant": "bench", "server": name})
    return key


def body(method: str, params: dict) -> Path:
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    path = TMP / f"body-{secrets.token_hex(4)}.json"
    path.write_text(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": meta}}))
    return path


def wrk(url: str, body_file: Path, method: str, name: str, bearer: str, conns: int, seconds: int) -> dict:
    env = {**os.environ, "BENCH_BODY_FILE": str(body_file), "BENCH_METHOD": method, "BENCH_NAME": name,
           "BENCH_BEARER": bearer}
    out = subprocess.run(
        ["wrk", f"-t{min(conns, 2)}", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(HERE / "mcp.lua"), url],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    line = next(l for l in out.splitlines() if l.startswith("WRKJSON "))
    result = json.loads(line[len("WRKJSON "):])
    if result["errors"] or result["non2xx"] or result["requests"] == 0:
        raise SystemExit(f"failed requests against {url}: {result}\n{out}")
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def check(url: str, body_file: Path, method: str, name: str, bearer: str) -> None:
    """One request by hand: the answer must be a JSON-RPC result (wrk counts only status)."""
    req = urllib.request.Request(url, method="POST", data=body_file.read_bytes(), headers={
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method, **({"Mcp-Name": name} if name else {}),
        **({"Authorization": f"Bearer {bearer}"} if bearer else {}),
    })
    with urllib.request.urlopen(req, timeout=10) as r:
        answer = json.loads(r.read())
    if "result" not in answer or answer["result"].get("isError"):
        raise SystemExit(f"{url} {method} {name}: {answer}")


def rounds(a: tuple, b: tuple, conns: int) -> tuple[list[dict], list[dict]]:
    ra, rb = [], []
    for _ in range(ROUNDS):
        ra.append(wrk(*a, conns=conns, seconds=DURATION))
        rb.append(wrk(*b, conns=conns, seconds=DURATION))
    return ra, rb


def med(rs: list[dict], k: str) -> float:
    return statistics.median(r[k] for r in rs)


def added(ra: list[dict], rb: list[dict], k: str) -> float:
    return statistics.median(b[k] - a[k] for a, b in zip(ra, rb))


def main() -> None:
    upstream = mock()
    gw = gateway("gw", {})
    key = seed(gw, {"mock": upstream})
    call_direct = (upstream + "/mcp", body("tools/call", {"name": "echo", "arguments": {"text": "hi"}}), "tools/call", "echo", "")
    call_gw = (gw["data"] + "/mcp", body("tools/call", {"name": "mock__echo", "arguments": {"text": "hi"}}), "tools/call",
               "mock__echo", key)
    for target in (call_direct, call_gw):
        check(*target)
    # Warm up both paths (connections, the gateway's listing and pins).
    wrk(*call_direct, conns=1, seconds=2)
    wrk(*call_gw, conns=1, seconds=2)
    d1, g1 = rounds(call_direct, call_gw, 1)
    d16, g16 = rounds(call_direct, call_gw, 16)

    # Listing: three servers at 20/40/60 ms, the cache off, against the slowest direct.
    slow = {f"s{ms}": mock(ms) for ms in (20, 40, 60)}
    cold_gw = gateway("cold", {"OBLETH_MCP_LIST_CACHE_TTL": "1ms"})
    cold_key = seed(cold_gw, slow)
    list_body = body("tools/list", {})
    list_slowest = (slow["s60"] + "/mcp", list_body, "tools/list", "", "")
    list_cold = (cold_gw["data"] + "/mcp", list_body, "tools/list", "", cold_key)
    for target in (list_slowest, list_cold):
        check(*target)
    dl, gl = rounds(list_slowest, list_cold, 1)
    # The cache on: three servers listed from memory, against one zero-delay server direct.
    fast = {f"f{i}": mock(0) for i in range(3)}
    warm_gw = gateway("warm", {})
    warm_key = seed(warm_gw, fast)
    list_fast = (fast["f0"] + "/mcp", list_body, "tools/list", "", "")
    list_warm = (warm_gw["data"] + "/mcp", list_body, "tools/list", "", warm_key)
    for target in (list_fast, list_warm):
        check(*target)
    dw, gw_ = rounds(list_fast, list_warm, 1)
    # What the front costs alone: a cached list at 16 connections (no upstream leg).
    dw16, gw16 = rounds(list_fast, list_warm, 16)

    ms = lambda us: f"{us / 1000:.2f} ms"
    print(f"\n## MCP gateway overhead ({ROUNDS} alternating rounds of {DURATION} s; medians)\n")
    print("| measure | direct | through obleth | added / ratio | target |")
    print("|---|---|---|---|---|")
    print(f"| tools/call p50, 1 conn | {ms(med(d1, 'p50'))} | {ms(med(g1, 'p50'))} | +{ms(added(d1, g1, 'p50'))} | ≤ +0.5 ms |")
    print(f"| tools/call p99, 1 conn | {ms(med(d1, 'p99'))} | {ms(med(g1, 'p99'))} | +{ms(added(d1, g1, 'p99'))} | ≤ +2 ms |")
    print(f"| tools/call rps, 16 conns | {med(d16, 'rps'):.0f} | {med(g16, 'rps'):.0f} | {med(g16, 'rps') / med(d16, 'rps'):.2f}× | |")
    print(f"| tools/list of 3 servers (20/40/60 ms), cache off, p50 | {ms(med(dl, 'p50'))} (slowest alone) | {ms(med(gl, 'p50'))} | +{ms(added(dl, gl, 'p50'))} | ≤ +2 ms |")
    print(f"| tools/list of 3 servers, cached, p50 | {ms(med(dw, 'p50'))} (one server) | {ms(med(gw_, 'p50'))} | +{ms(added(dw, gw_, 'p50'))} | ≤ +1 ms (cached) |")
    print(f"| tools/list of 3 servers, cached, p99 | {ms(med(dw, 'p99'))} | {ms(med(gw_, 'p99'))} | +{ms(added(dw, gw_, 'p99'))} | |")
    print(f"| tools/list cached, 16 conns (one server direct) | {med(dw16, 'rps'):.0f} rps | {med(gw16, 'rps'):.0f} rps | {med(gw16, 'rps') / med(dw16, 'rps'):.2f}× | |")
    raw = {"call_1": [d1, g1], "call_16": [d16, g16], "list_cold": [dl, gl], "list_cached": [dw, gw_],
           "list_cached_16": [dw16, gw16]}
    (TMP / "raw.json").write_text(json.dumps(raw, indent=1))
    print(f"\nraw rounds: {TMP / 'raw.json'}")


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in PROCS:
            p.terminate()
        for p in PROCS:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
