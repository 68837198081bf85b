"""The MCP gateway at `/mcp` (issue 15), end to end with real components only:

- clients: the official MCP Python SDK (`mcp` 2.3.0) in its three modes: `legacy`
  (initialize + session), `auto` (server/discover, falling back) and `2026-07-28`
  (stateless);
- upstreams: `mcp_upstream.py` (an SDK `MCPServer` over Streamable HTTP: add, slow,
  mutate, whoami, resource note://hello, prompt greet) and the reference server
  `@modelcontextprotocol/server-everything` (tests/mcp, installed by scripts/e2e.sh with
  npm ci), run by the gateway over stdio and by the test over Streamable HTTP.

One gateway for the module, started with a config file naming the stdio command. Every
wait is bounded (`anyio.fail_after` around each async block, polls with deadlines).
Tests that change an upstream (rug pull, slow, down) get an upstream of their own.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator

import anyio
import httpx
import httpx2
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from conftest import (
    Admin,
    GatewayProc,
    Mock,
    Proc,
    base_env,
    free_port,
    random_token,
    run_gateway,
    start,
    wait_http_ok,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM_PY = Path(__file__).resolve().parent / "mcp_upstream.py"
EVERYTHING = ROOT / "tests/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js"

MODES = ["legacy", "auto", "2026-07-28"]
LEGACY_VERSION = "2025-11-25"
UNKNOWN_TOOL = -32602  # JSON-RPC invalid params: unknown, not granted and quarantined tools alike
PARSE_ERROR = -32700
NO_TOOLS_GRANTED = re.compile(r"\bno\b.*\bgranted\b", re.IGNORECASE | re.DOTALL)

PY_TOOLS = {"py__add", "py__slow", "py__mutate", "py__whoami"}
# server-everything registers these for any client (13 tools without client capabilities).
EV_TOOLS = {"echo", "get-sum", "get-env", "get-tiny-image"}

# A call that succeeds for each tool the tests grant (never py__mutate: it is a rug pull).
ARGS = {
    "add": {"a": 2, "b": 3},
    "slow": {"ms": 5},
    "whoami": {},
    "echo": {"message": "hi"},
    "get-sum": {"a": 2, "b": 3},
}
ANSWERS = {"add": "5", "slow": "slept 5", "echo": "Echo: hi", "get-sum": "The sum of 2 and 3 is 5."}

REVOCATION_DEADLINE_S = 1.0  # a revoked grant refuses the next call within this
RUG_PULL_DEADLINE_S = 4.0  # "within ~3 s": list_changed, or a stale re-list
LIST_BOUND_S = 4.0  # a listing with a slow or dead upstream still answers within this


# === helpers: async with bounds ===


def run(fn: Callable[[], Awaitable[Any]], timeout: float = 60.0) -> Any:
    """Runs one async test body on a fresh event loop, cancelled after `timeout` seconds."""

    async def bounded() -> Any:
        with anyio.fail_after(timeout):
            return await fn()

    return anyio.run(bounded)


@contextlib.asynccontextmanager
async def mcp_client(
    url: str, secret: str | None, mode: str, on_response: Callable[[Any], Awaitable[None]] | None = None
) -> AsyncIterator[Client]:
    """The SDK client on `url` with `Authorization: Bearer secret`; no client-side cache
    (grants change under it), every request bounded."""
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    hooks = {"response": [on_response]} if on_response else {}
    async with httpx2.AsyncClient(
        headers=headers, timeout=httpx2.Timeout(15.0, read=300.0), event_hooks=hooks
    ) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode, cache=None, read_timeout_seconds=20) as c:
            yield c


async def tool_names(c: Client) -> set[str]:
    names: set[str] = set()
    cursor = None
    for _ in range(50):
        page = await c.list_tools(cursor=cursor)
        names |= {t.name for t in page.tools}
        cursor = page.next_cursor
        if not cursor:
            return names
    raise AssertionError("tools/list kept paginating")


async def resources(c: Client) -> list[Any]:
    out: list[Any] = []
    cursor = None
    for _ in range(50):
        page = await c.list_resources(cursor=cursor)
        out += page.resources
        cursor = page.next_cursor
        if not cursor:
            return out
    raise AssertionError("resources/list kept paginating")


def text(result: Any) -> str:
    return "".join(getattr(part, "text", "") for part in result.content)


async def call_ok(c: Client, name: str, args: dict) -> str:
    result = await c.call_tool(name, args)
    assert not result.is_error, f"{name}: {text(result)}"
    return text(result)


async def call_refused(c: Client, name: str, args: dict) -> MCPError:
    """A call the gateway must refuse with a JSON-RPC error (-32602), not run."""
    try:
        result = await c.call_tool(name, args)
    except MCPError as e:
        assert e.code == UNKNOWN_TOOL, f"{name}: code {e.code}: {e.message}"
        return e
    raise AssertionError(f"{name} was called although refused: {text(result)!r}")


async def poll(check: Callable[[], Awaitable[bool]], deadline_s: float, what: str, interval: float = 0.05) -> float:
    """Awaits `check()` until it is true; returns the seconds it took."""
    t0 = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - t0
        if time.monotonic() - t0 > deadline_s:
            raise AssertionError(f"not within {deadline_s}s: {what}")
        await anyio.sleep(interval)


def post_raw(gw: GatewayProc, secret: str | None, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    h = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if secret:
        h["Authorization"] = f"Bearer {secret}"
    h.update(headers or {})
    return httpx.post(f"{gw.data_url}/mcp", content=body, headers=h, timeout=30.0)


def jsonrpc_messages(r: httpx.Response) -> list[dict]:
    """The JSON-RPC messages of a response, JSON or SSE."""
    ctype = r.headers.get("content-type", "")
    if ctype.startswith("application/json"):
        body = r.json()
        return body if isinstance(body, list) else [body]
    assert ctype.startswith("text/event-stream"), f"{r.status_code} {ctype}: {r.text[:300]}"
    out = []
    for event in r.text.replace("\r\n", "\n").split("\n\n"):
        data = "\n".join(line[5:].lstrip() for line in event.split("\n") if line.startswith("data:"))
        if data.strip():
            out.append(json.loads(data))
    return out


def assert_jsonrpc_error(r: httpx.Response, status: int, code: int | None = None) -> dict:
    assert r.status_code == status, f"{r.status_code}: {r.text[:500]}"
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    body = r.json()
    assert body.get("jsonrpc") == "2.0", body
    error = body.get("error")
    assert isinstance(error, dict) and isinstance(error.get("code"), int) and error.get("message"), body
    if code is not None:
        assert error["code"] == code, body
    return error


# === upstreams ===


@dataclass
class Upstream:
    name: str
    proc: Proc
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def seen(self) -> dict:
        r = httpx.get(f"{self.base}/_test/seen", timeout=5.0)
        r.raise_for_status()
        return r.json()

    def set_list_delay(self, ms: int) -> None:
        httpx.post(f"{self.base}/_test/list_delay", json={"ms": ms}, timeout=5.0).raise_for_status()


@contextlib.contextmanager
def py_upstream(name: str, tmp: Path, list_delay_ms: int = 0) -> Iterator[Upstream]:
    port = free_port()
    args = [sys.executable, str(UPSTREAM_PY), str(port), name, "--list-delay-ms", str(list_delay_ms)]
    proc = start(f"upstream {name}", args, base_env(), tmp / f"upstream-{name}.log")
    try:
        wait_http_ok(proc, f"http://127.0.0.1:{port}/_test/health")
        yield Upstream(name, proc, port)
    finally:
        proc.stop()


def wait_port(proc: Proc, port: int) -> None:
    def accepts() -> bool:
        if not proc.alive():
            raise AssertionError(f"{proc.name} exited with {proc.popen.returncode}; log:\n{proc.tail()}")
        with socket.socket() as s:
            s.settimeout(1.0)
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_until(accepts, 60, f"{proc.name} to listen on {port}", interval=0.1)


@contextlib.contextmanager
def everything_http(node: str, tmp: Path) -> Iterator[Upstream]:
    port = free_port()
    env = base_env()
    env["PORT"] = str(port)
    proc = start("server-everything (http)", [node, str(EVERYTHING), "streamableHttp"], env, tmp / "everything.log")
    try:
        wait_port(proc, port)
        yield Upstream("evh", proc, port)
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def node() -> str:
    """Node and server-everything must be there: the MCP tests fail (never skip) without."""
    path = shutil.which("node")
    if path is None:
        pytest.fail(
            "node is not on PATH: the MCP end-to-end tests run @modelcontextprotocol/server-everything "
            "with Node (>= 18; e.g. apt-get install nodejs)"
        )
    if not EVERYTHING.is_file():
        pytest.fail(f"{EVERYTHING} is missing: run `npm ci` in tests/mcp (scripts/e2e.sh does)")
    return os.path.realpath(path)


@pytest.fixture(scope="module")
def mtmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp")


@pytest.fixture(scope="module")
def py_up(mtmp: Path):
    with py_upstream("py", mtmp) as up:
        yield up


@pytest.fixture(scope="module")
def evh_up(node: str, mtmp: Path):
    with everything_http(node, mtmp) as up:
        yield up


# === the fixtures checked on their own (no gateway) ===


@pytest.mark.parametrize("mode", MODES)
def test_upstreams_direct(mode: str, node: str, tmp_path: Path):
    """The SDK client against both upstreams without the gateway, so that a failure
    further down is the gateway's: server-everything speaks up to 2025-11-25 only (auto
    falls back; a 2026-07-28 pin is not tried on it)."""
    with py_upstream("direct", tmp_path) as py, everything_http(node, tmp_path) as ev:

        async def body() -> None:
            async with mcp_client(py.url, "direct-check", mode) as c:
                assert c.protocol_version == (LEGACY_VERSION if mode == "legacy" else "2026-07-28")
                assert await tool_names(c) == {"add", "slow", "mutate", "whoami"}
                assert await call_ok(c, "add", ARGS["add"]) == "5"
                assert await call_ok(c, "whoami", {}) == "Bearer direct-check"
                assert [str(r.uri) for r in await resources(c)] == ["note://hello"]
                assert text_of_read(await c.read_resource("note://hello")) == "hello"
                assert [p.name for p in (await c.list_prompts()).prompts] == ["greet"]
            if mode == "2026-07-28":
                return
            async with mcp_client(ev.url, None, mode) as c:
                assert c.protocol_version == LEGACY_VERSION
                assert EV_TOOLS <= await tool_names(c)
                assert await call_ok(c, "get-sum", ARGS["get-sum"]) == ANSWERS["get-sum"]
            stdio = StdioServerParameters(command=node, args=[str(EVERYTHING), "stdio"])
            async with Client(stdio, mode=mode, cache=None, read_timeout_seconds=20) as c:
                assert EV_TOOLS <= await tool_names(c)
                assert await call_ok(c, "echo", ARGS["echo"]) == ANSWERS["echo"]

        run(body)
        assert py.seen()["authorization"] == ["Bearer direct-check"], "the upstream records what it receives"


def text_of_read(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.contents)


# === the gateway ===


def mcp_config(node: str) -> str:
    """The gateway's config file: the MCP endpoint on, the stdio command it may run."""
    command = json.dumps([node, str(EVERYTHING), "stdio"])  # a JSON array of strings is TOML
    return f'[mcp]\nenabled = true\nseparator = "__"\n\n[mcp.stdio.commands]\neverything = {command}\n'


@pytest.fixture(scope="module")
def gw(obleth_bin: str, mock: Mock, node: str, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("mcp-gateway")
    config = tmp / "obleth.toml"
    config.write_text(mcp_config(node), encoding="utf-8")
    with run_gateway(obleth_bin, mock, tmp, config=config) as g:
        yield g


@pytest.fixture(scope="module")
def madmin(gw: GatewayProc):
    a = Admin(gw)
    yield a
    a.http.close()


def admin_req(admin: Admin, method: str, path: str, body: dict | None = None, expect=(200, 201)) -> Any:
    r = admin.http.request(method, path, json=body)
    expected = (expect,) if isinstance(expect, int) else expect
    assert r.status_code in expected, f"{method} {path} -> {r.status_code}: {r.text}"
    return r.json() if r.content else None


def rows(listing: Any) -> list:
    """The rows of an admin listing: `{"data": [...]}` (the admin API's convention) or a list."""
    if isinstance(listing, list):
        return listing
    for field in ("data", "grants", "tools", "servers"):
        if isinstance(listing, dict) and isinstance(listing.get(field), list):
            return listing[field]
    raise AssertionError(f"not a listing: {listing}")


def new_tenant(admin: Admin, name: str) -> dict:
    return admin.call("POST", "/api/v1/tenants", {"name": name}, expect=201)


def grant(admin: Admin, tenant: str, server: str, tool: str | None = None, key_id: str | None = None) -> dict:
    body: dict[str, Any] = {"tenant": tenant, "server": server}
    if tool is not None:
        body["tool"] = tool
    if key_id is not None:
        body["key_id"] = key_id
    g = admin_req(admin, "POST", "/api/v1/mcp/grants", body, expect=201)
    assert g["server"] == server and g.get("tool") == tool and g.get("key_id") == key_id, g
    return g


def register(admin: Admin, body: dict) -> dict:
    s = admin_req(admin, "POST", "/api/v1/mcp/servers", body, expect=201)
    assert s["name"] == body["name"], s
    return s


@dataclass
class Servers:
    credential: str  # py's upstream credential


@pytest.fixture(scope="module")
def servers(madmin: Admin, py_up: Upstream, evh_up: Upstream) -> Servers:
    credential = "upcred-" + random_token(24)
    madmin.gw.secrets.append(credential)  # never in the gateway's log either
    py = register(madmin, {"name": "py", "url": py_up.url, "credential": credential, "list_timeout_ms": 10000})
    assert credential not in json.dumps(py), "the credential is write-only"
    assert py.get("has_credential") is True, py
    register(madmin, {"name": "ev", "transport": "stdio", "command": "everything", "list_timeout_ms": 10000})
    register(madmin, {"name": "evh", "url": evh_up.url, "list_timeout_ms": 10000})
    return Servers(credential)


def mcp_url(gw: GatewayProc) -> str:
    return f"{gw.data_url}/mcp"


@dataclass
class Caller:
    tenant: str
    key: dict

    @property
    def secret(self) -> str:
        return self.key["secret"]


@pytest.fixture(scope="module")
def full(gw: GatewayProc, madmin: Admin, servers: Servers) -> Caller:
    """A tenant granted the three servers whole; waits until all three are listed (the
    stdio child starts on demand)."""
    new_tenant(madmin, "mcp-full")
    for server in ("py", "ev", "evh"):
        grant(madmin, "mcp-full", server)
    caller = Caller("mcp-full", madmin.create_key("mcp-full"))

    async def warm() -> None:
        async with mcp_client(mcp_url(gw), caller.secret, "2026-07-28") as c:

            async def all_listed() -> bool:
                try:
                    return {"py__add", "ev__echo", "evh__echo"} <= await tool_names(c)
                except MCPError:  # nothing answered yet ("no MCP tools are available")
                    return False

            await poll(all_listed, 60, "py, ev (stdio) and evh listed", interval=0.5)

    run(warm, timeout=90)
    return caller


def test_no_key_is_401_jsonrpc(gw: GatewayProc):
    init = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": LEGACY_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "e2e", "version": "0"},
            },
        }
    ).encode()
    assert_jsonrpc_error(post_raw(gw, None, init), 401)
    assert_jsonrpc_error(post_raw(gw, "obl_doesnotexist", init), 401)


@pytest.mark.parametrize("mode", MODES)
def test_list_and_call(mode: str, gw: GatewayProc, full: Caller):
    """Tools of both upstreams (Python over HTTP; server-everything over stdio and over
    HTTP) listed as server__tool and called; prompts and resources aggregated."""

    async def body() -> None:
        async with mcp_client(mcp_url(gw), full.secret, mode) as c:
            assert c.protocol_version == (LEGACY_VERSION if mode == "legacy" else "2026-07-28")
            names = await tool_names(c)
            assert PY_TOOLS <= names, names
            assert {f"ev__{t}" for t in EV_TOOLS} <= names, names
            assert {f"evh__{t}" for t in EV_TOOLS} <= names, names
            assert {n.split("__", 1)[0] for n in names} == {"py", "ev", "evh"}, names

            assert await call_ok(c, "py__add", ARGS["add"]) == "5"
            assert await call_ok(c, "py__slow", {"ms": 20}) == "slept 20"
            if mode != "2026-07-28":  # server-everything: legacy and auto clients
                assert await call_ok(c, "ev__echo", ARGS["echo"]) == ANSWERS["echo"]
                assert await call_ok(c, "evh__get-sum", ARGS["get-sum"]) == ANSWERS["get-sum"]

            prompts = {p.name for p in (await c.list_prompts()).prompts}
            assert "py__greet" in prompts, prompts
            prompt = await c.get_prompt("py__greet", {"who": "obleth"})
            assert any("Say hello to obleth" in getattr(m.content, "text", "") for m in prompt.messages), prompt

            listed = await resources(c)
            assert listed, "resources/list is empty for granted servers"
            hello = [r for r in listed if "note://hello" in str(r.uri) or r.name == "hello"]
            assert hello, [str(r.uri) for r in listed]
            assert text_of_read(await c.read_resource(str(hello[0].uri))) == "hello"

    run(body)


@pytest.fixture(scope="module")
def tool_granted(gw: GatewayProc, madmin: Admin, servers: Servers) -> Caller:
    """A tenant granted single tools only: py's add and slow, ev's echo and get-sum."""
    new_tenant(madmin, "mcp-tools")
    for server, tool in (("py", "add"), ("py", "slow"), ("ev", "echo"), ("ev", "get-sum")):
        grant(madmin, "mcp-tools", server, tool)
    return Caller("mcp-tools", madmin.create_key("mcp-tools"))


@pytest.mark.parametrize("mode", MODES)
def test_listed_is_exactly_callable(mode: str, gw: GatewayProc, full: Caller, tool_granted: Caller):
    """What a key sees is exactly what it may call: every listed tool is accepted, every
    other one (same server, other server, unknown) is neither listed nor callable. Every
    listed tool is called in every client mode, server-everything's too: the client's
    mode is the gateway's side; upstream, ev speaks 2025-11-25 whatever the client."""

    async def body() -> None:
        async with mcp_client(mcp_url(gw), tool_granted.secret, mode) as c:
            names = await tool_names(c)
            assert names == {"py__add", "py__slow", "ev__echo", "ev__get-sum"}, names
            for name in sorted(names):
                tool = name.split("__", 1)[1]
                out = await call_ok(c, name, ARGS[tool])
                assert out == ANSWERS[tool], (name, out)
            # Denied: a tool of a granted server, tools of granted and ungranted servers,
            # unknown names. (py__mutate is denied too, but only its listing is checked:
            # a wrongly allowed call would rug-pull py for the other tests.)
            for name, args in (
                ("py__whoami", {}),
                ("ev__get-env", {}),
                ("evh__echo", ARGS["echo"]),
                ("py__nope", {}),
                ("nope__add", ARGS["add"]),
                ("add", ARGS["add"]),
            ):
                await call_refused(c, name, args)
            assert "py__mutate" not in await tool_names(c)

    run(body)


def test_key_grants_narrow_the_tenant(gw: GatewayProc, madmin: Admin, full: Caller):
    """A key's grants intersect its tenant's: they narrow it, never widen it. (`full`:
    the servers are registered and warm.)"""
    new_tenant(madmin, "mcp-keys")
    grant(madmin, "mcp-keys", "py")
    grant(madmin, "mcp-keys", "ev")
    wide = madmin.create_key("mcp-keys")
    narrow = madmin.create_key("mcp-keys")
    grant(madmin, "mcp-keys", "py", tool="add", key_id=narrow["id"])
    outside = madmin.create_key("mcp-keys")
    grant(madmin, "mcp-keys", "evh", key_id=outside["id"])  # the tenant has no evh grant
    listed = rows(admin_req(madmin, "GET", "/api/v1/mcp/grants?tenant=mcp-keys"))
    assert len(listed) == 4 and sum(1 for g in listed if g.get("key_id")) == 2, listed

    async def body() -> None:
        async with mcp_client(mcp_url(gw), wide["secret"], "2026-07-28") as c:
            names = await tool_names(c)
            assert PY_TOOLS <= names and "ev__echo" in names, names
            assert await call_ok(c, "py__slow", ARGS["slow"]) == ANSWERS["slow"]
        async with mcp_client(mcp_url(gw), narrow["secret"], "legacy") as c:
            assert await tool_names(c) == {"py__add"}
            assert await call_ok(c, "py__add", ARGS["add"]) == "5"
            await call_refused(c, "py__slow", ARGS["slow"])
            await call_refused(c, "ev__echo", ARGS["echo"])
        async with mcp_client(mcp_url(gw), outside["secret"], "2026-07-28") as c:
            with pytest.raises(MCPError) as exc:
                await tool_names(c)
            assert NO_TOOLS_GRANTED.search(exc.value.message), exc.value.message
            await call_refused(c, "evh__echo", ARGS["echo"])
            await call_refused(c, "py__add", ARGS["add"])

    run(body)


@pytest.fixture(scope="module")
def ungranted(gw: GatewayProc, madmin: Admin, servers: Servers) -> Caller:
    new_tenant(madmin, "mcp-none")
    return Caller("mcp-none", madmin.create_key("mcp-none"))


@pytest.mark.parametrize("mode", MODES)
def test_no_granted_tools_is_an_error(mode: str, gw: GatewayProc, ungranted: Caller):
    """tools/list for a caller with no tool is a JSON-RPC error saying so, not an empty
    list; the handshake itself succeeds."""

    async def body() -> None:
        async with mcp_client(mcp_url(gw), ungranted.secret, mode) as c:
            with pytest.raises(MCPError) as exc:
                await c.list_tools()
            assert NO_TOOLS_GRANTED.search(exc.value.message), exc.value.message
            assert ungranted.secret not in exc.value.message
            await call_refused(c, "py__add", ARGS["add"])

    run(body)


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
def test_revoked_grant_refused_within_1s(mode: str, gw: GatewayProc, madmin: Admin, servers: Servers):
    """Revoking a grant takes effect on an open session (legacy) or the next stateless
    request within a second."""
    tenant = f"mcp-revoke-{mode}"
    new_tenant(madmin, tenant)
    g = grant(madmin, tenant, "py")
    key = madmin.create_key(tenant)

    async def body() -> None:
        async with mcp_client(mcp_url(gw), key["secret"], mode) as c:
            assert "py__add" in await tool_names(c)
            assert await call_ok(c, "py__add", ARGS["add"]) == "5"
            admin_req(madmin, "DELETE", f"/api/v1/mcp/grants/{g['id']}", expect=(200, 204))

            async def refused() -> bool:
                try:
                    await c.call_tool("py__add", ARGS["add"])
                    return False
                except MCPError as e:
                    assert e.code == UNKNOWN_TOOL, e
                    return True

            await poll(refused, REVOCATION_DEADLINE_S, "the revoked grant refused", interval=0.02)
            with pytest.raises(MCPError) as exc:
                await c.list_tools()
            assert NO_TOOLS_GRANTED.search(exc.value.message), exc.value.message

    run(body)
    left = rows(admin_req(madmin, "GET", f"/api/v1/mcp/grants?tenant={tenant}"))
    assert left == [], left


def test_session_replayed_by_another_key_is_404(gw: GatewayProc, madmin: Admin, full: Caller):
    """A legacy session belongs to the key that opened it: another key of the same tenant,
    or of another tenant, gets 404 (as for an unknown id); the owner still gets answers."""
    sibling = madmin.create_key(full.tenant)
    new_tenant(madmin, "mcp-other")
    grant(madmin, "mcp-other", "py")
    stranger = madmin.create_key("mcp-other")
    session_ids: list[str] = []

    async def remember(response: Any) -> None:
        sid = response.headers.get("mcp-session-id")
        if sid and sid not in session_ids:
            session_ids.append(sid)

    def tools_list(secret: str, sid: str) -> httpx.Response:
        body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {}}).encode()
        return post_raw(gw, secret, body, {"Mcp-Session-Id": sid, "MCP-Protocol-Version": LEGACY_VERSION})

    async def body() -> None:
        async with mcp_client(mcp_url(gw), full.secret, "legacy", on_response=remember) as c:
            assert "py__add" in await tool_names(c)
            assert len(session_ids) == 1, session_ids
            sid = session_ids[0]
            for other in (sibling["secret"], stranger["secret"]):
                r = await anyio.to_thread.run_sync(tools_list, other, sid)
                assert r.status_code == 404, f"{r.status_code}: {r.text[:300]}"
            unknown = await anyio.to_thread.run_sync(tools_list, full.secret, "0" * 32)
            assert unknown.status_code == 404, unknown.text[:300]
            own = await anyio.to_thread.run_sync(tools_list, full.secret, sid)
            assert own.status_code == 200, own.text[:300]
            answer = [m for m in jsonrpc_messages(own) if m.get("id") == 7]
            assert answer and "py__add" in {t["name"] for t in answer[0]["result"]["tools"]}, answer
            # The session itself is unharmed.
            assert await call_ok(c, "py__add", ARGS["add"]) == "5"

    run(body)


def test_upstream_sees_its_credential_never_the_key(
    gw: GatewayProc, madmin: Admin, full: Caller, py_up: Upstream, servers: Servers
):
    """The upstream gets the server's configured credential (`Bearer <credential>`) on
    every request and never a caller's obleth key; the admin API never shows it."""

    async def body() -> None:
        async with mcp_client(mcp_url(gw), full.secret, "2026-07-28") as c:
            assert await call_ok(c, "py__whoami", {}) == f"Bearer {servers.credential}"

    run(body)
    seen = py_up.seen()
    assert seen["requests"] > 0
    assert seen["authorization"] == [f"Bearer {servers.credential}"], seen["authorization"]
    for secret in gw.secrets:
        if secret != servers.credential:
            assert all(secret.removeprefix("obl_") not in a for a in seen["authorization"])
    shown = admin_req(madmin, "GET", "/api/v1/mcp/servers/py")
    assert servers.credential not in json.dumps(shown) and shown.get("has_credential") is True, shown
    listed = json.dumps(admin_req(madmin, "GET", "/api/v1/mcp/servers"))
    assert servers.credential not in listed and all(f'"{n}"' in listed for n in ("py", "ev", "evh")), listed


def test_stdio_child_gets_no_gateway_secrets(gw: GatewayProc, full: Caller):
    """Beyond the written contract: the stdio server (server-everything's get-env prints
    its environment) must not inherit the gateway's secrets (admin token, keys)."""

    async def body() -> str:
        async with mcp_client(mcp_url(gw), full.secret, "legacy") as c:
            return await call_ok(c, "ev__get-env", {})

    env_dump = run(body)
    assert "PATH" in env_dump, env_dump[:300]  # it did print an environment
    assert gw.admin_token not in env_dump, "the stdio child inherited OBLETH_ADMIN_TOKEN"
    assert "OBLETH_ADMIN_TOKEN" not in env_dump
    for secret in gw.secrets:
        assert secret not in env_dump


def test_rug_pull_quarantines_until_approved(gw: GatewayProc, madmin: Admin, servers: Servers, mtmp: Path):
    """`mutate` called on the upstream itself changes `add`: the gateway quarantines it
    (not listed, not callable; its siblings unaffected) until its pending hash is approved."""
    with py_upstream("rug", mtmp) as rug:
        register(madmin, {"name": "rug", "url": rug.url})
        new_tenant(madmin, "mcp-rug")
        grant(madmin, "mcp-rug", "rug")
        key = madmin.create_key("mcp-rug")

        def pins() -> dict[str, dict]:
            got = rows(admin_req(madmin, "GET", "/api/v1/mcp/servers/rug/tools"))
            return {(row.get("tool") or row.get("name")): row for row in got}

        async def body() -> None:
            async with mcp_client(mcp_url(gw), key["secret"], "legacy") as c:
                assert {"rug__add", "rug__slow"} <= await tool_names(c)
                assert await call_ok(c, "rug__add", {"a": 5, "b": 3}) == "8"
                before = (await anyio.to_thread.run_sync(pins))["add"]
                assert before.get("state") != "quarantined" and not before.get("pending_hash"), before

                # The rug pull, straight on the upstream (not through the gateway).
                async with mcp_client(rug.url, None, "auto") as direct:
                    assert await call_ok(direct, "mutate", {}) == "mutated"

                async def add_hidden() -> bool:
                    return "rug__add" not in await tool_names(c)

                await poll(add_hidden, RUG_PULL_DEADLINE_S, "rug__add quarantined", interval=0.1)
                await call_refused(c, "rug__add", {"a": 5, "b": 3})
                assert "rug__slow" in await tool_names(c), "only the changed tool is quarantined"
                assert await call_ok(c, "rug__slow", ARGS["slow"]) == ANSWERS["slow"]

            pin = (await anyio.to_thread.run_sync(pins))["add"]
            assert pin.get("state") == "quarantined", pin
            pending = pin.get("pending_hash")
            assert isinstance(pending, str) and pending and pending != pin.get("approved_hash"), pin

            approve = "/api/v1/mcp/servers/rug/tools/add/approve"
            wrong = "sha256:" + "0" * 64
            await anyio.to_thread.run_sync(lambda: admin_req(madmin, "POST", approve, {"hash": wrong}, expect=409))
            assert (await anyio.to_thread.run_sync(pins))["add"].get("state") == "quarantined"
            await anyio.to_thread.run_sync(
                lambda: admin_req(madmin, "POST", approve, {"hash": pending}, expect=(200, 201, 204))
            )

            for mode in ("2026-07-28", "legacy"):
                async with mcp_client(mcp_url(gw), key["secret"], mode) as c:

                    async def add_back() -> bool:
                        return "rug__add" in await tool_names(c)

                    await poll(add_back, RUG_PULL_DEADLINE_S, "rug__add approved and listed", interval=0.1)
                    assert await call_ok(c, "rug__add", {"a": 5, "b": 3}) == "2", "the approved definition subtracts"
            after = (await anyio.to_thread.run_sync(pins))["add"]
            assert after.get("state") != "quarantined" and not after.get("pending_hash"), after

        run(body, timeout=90)


def test_slow_upstream_is_left_out(gw: GatewayProc, madmin: Admin, servers: Servers, mtmp: Path):
    """A server slower than its list_timeout_ms is left out of tools/list (others still
    answered, quickly, not an error), and listed once it answers."""
    with py_upstream("slowpy", mtmp, list_delay_ms=10_000) as slow:
        register(madmin, {"name": "slowpy", "url": slow.url, "list_timeout_ms": 500})
        new_tenant(madmin, "mcp-slow")
        grant(madmin, "mcp-slow", "py")
        grant(madmin, "mcp-slow", "slowpy")
        key = madmin.create_key("mcp-slow")

        async def body() -> None:
            for mode in ("2026-07-28", "legacy"):
                async with mcp_client(mcp_url(gw), key["secret"], mode) as c:
                    t0 = time.monotonic()
                    names = await tool_names(c)
                    took = time.monotonic() - t0
                    assert took < LIST_BOUND_S, f"tools/list took {took:.1f}s"
                    assert PY_TOOLS <= names, names
                    assert not any(n.startswith("slowpy__") for n in names), names
            await anyio.to_thread.run_sync(slow.set_list_delay, 0)
            async with mcp_client(mcp_url(gw), key["secret"], "2026-07-28") as c:

                async def slow_listed() -> bool:
                    return "slowpy__add" in await tool_names(c)

                await poll(slow_listed, 25, "slowpy listed once it answers in time", interval=0.5)
                assert await call_ok(c, "slowpy__add", ARGS["add"]) == "5"

        run(body, timeout=90)


def test_dead_upstream_is_left_out(gw: GatewayProc, madmin: Admin, servers: Servers, mtmp: Path):
    """A server that dies is left out of tools/list; the others are still answered, within
    a few seconds each, never an error; a call to its tool fails without hanging."""
    with py_upstream("down", mtmp) as down:
        register(madmin, {"name": "down", "url": down.url, "list_timeout_ms": 1000, "call_timeout_ms": 3000})
        new_tenant(madmin, "mcp-down")
        grant(madmin, "mcp-down", "py")
        grant(madmin, "mcp-down", "down")
        key = madmin.create_key("mcp-down")

        async def body() -> None:
            async with mcp_client(mcp_url(gw), key["secret"], "2026-07-28") as c:

                async def both_listed() -> bool:
                    return {"py__add", "down__add"} <= await tool_names(c)

                await poll(both_listed, 15, "py and down listed", interval=0.2)
                down.proc.popen.send_signal(signal.SIGKILL)
                await anyio.to_thread.run_sync(lambda: down.proc.popen.wait(timeout=10))

                async def down_left_out() -> bool:
                    t0 = time.monotonic()
                    names = await tool_names(c)
                    took = time.monotonic() - t0
                    assert took < LIST_BOUND_S, f"tools/list took {took:.1f}s with a dead upstream"
                    assert PY_TOOLS <= names, names
                    return not any(n.startswith("down__") for n in names)

                await poll(down_left_out, 5, "the dead upstream left out", interval=0.2)
                t0 = time.monotonic()
                try:
                    result = await c.call_tool("down__add", ARGS["add"])
                    assert result.is_error, f"a dead upstream answered: {text(result)!r}"
                except MCPError:
                    pass
                assert time.monotonic() - t0 < 10
                assert await call_ok(c, "py__add", ARGS["add"]) == "5"

        run(body, timeout=90)


def test_bad_input_is_a_jsonrpc_error(gw: GatewayProc, full: Caller):
    """A body over the limit is 413 and malformed JSON 400 -32700, both JSON-RPC error
    bodies, never a 500; the gateway keeps serving."""
    pad = "x" * (5 * 1024 * 1024)
    big = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"pad": pad}}).encode()
    assert_jsonrpc_error(post_raw(gw, full.secret, big), 413)
    assert_jsonrpc_error(post_raw(gw, full.secret, b"{not json"), 400, PARSE_ERROR)

    async def body() -> None:
        async with mcp_client(mcp_url(gw), full.secret, "2026-07-28") as c:
            assert await call_ok(c, "py__add", ARGS["add"]) == "5"

    run(body)


def test_server_admin_lifecycle(gw: GatewayProc, madmin: Admin, servers: Servers, evh_up: Upstream):
    """GET/PATCH/DELETE a server; a disabled server's tools are neither listed nor
    callable; an unnamed stdio command and a duplicate name are refused."""
    register(madmin, {"name": "tmp", "url": evh_up.url, "list_timeout_ms": 10000})
    admin_req(madmin, "POST", "/api/v1/mcp/servers", {"name": "tmp", "url": evh_up.url}, expect=409)
    r = madmin.http.post("/api/v1/mcp/servers", json={"name": "bad", "transport": "stdio", "command": "sh"})
    assert 400 <= r.status_code < 500 and r.status_code != 404, f"{r.status_code}: {r.text}"
    assert admin_req(madmin, "GET", "/api/v1/mcp/servers/tmp")["url"] == evh_up.url
    patched = admin_req(madmin, "PATCH", "/api/v1/mcp/servers/tmp", {"list_timeout_ms": 9000}, expect=200)
    assert patched["list_timeout_ms"] == 9000, patched
    new_tenant(madmin, "mcp-crud")
    grant(madmin, "mcp-crud", "tmp")
    grant(madmin, "mcp-crud", "py", tool="add")
    key = madmin.create_key("mcp-crud")

    async def body() -> None:
        async with mcp_client(mcp_url(gw), key["secret"], "2026-07-28") as c:

            async def listed() -> bool:
                return "tmp__echo" in await tool_names(c)

            async def gone() -> bool:
                return not any(n.startswith("tmp__") for n in await tool_names(c))

            await poll(listed, 15, "tmp listed")
            await anyio.to_thread.run_sync(
                lambda: admin_req(madmin, "PATCH", "/api/v1/mcp/servers/tmp", {"enabled": False}, expect=200)
            )
            await poll(gone, 2, "a disabled server's tools unlisted")
            await call_refused(c, "tmp__echo", ARGS["echo"])
            await anyio.to_thread.run_sync(
                lambda: admin_req(madmin, "PATCH", "/api/v1/mcp/servers/tmp", {"enabled": True}, expect=200)
            )
            await poll(listed, 15, "a re-enabled server listed again")
            assert await call_ok(c, "tmp__echo", ARGS["echo"]) == ANSWERS["echo"]
            await anyio.to_thread.run_sync(
                lambda: admin_req(madmin, "DELETE", "/api/v1/mcp/servers/tmp", expect=(200, 204))
            )
            await poll(gone, 2, "a deleted server's tools unlisted")
            await call_refused(c, "tmp__echo", ARGS["echo"])

    run(body)
    admin_req(madmin, "GET", "/api/v1/mcp/servers/tmp", expect=404)
    kept = rows(admin_req(madmin, "GET", "/api/v1/mcp/grants?tenant=mcp-crud"))
    assert [(g["server"], g.get("tool")) for g in kept] == [("py", "add")], kept  # tmp's went with it


def test_zz_mcp_gateway_log_has_no_secrets(gw: GatewayProc, full: Caller, servers: Servers):
    """Last in this module: the MCP gateway stops cleanly and its log holds no key, admin
    token or upstream credential."""
    assert servers.credential in gw.secrets and full.secret in gw.secrets
    code = gw.proc.stop()
    log = gw.proc.log()
    assert code == 0, f"the gateway exited with {code} on SIGTERM; log tail:\n{gw.proc.tail()}"
    assert gw.admin_token not in log
    for secret in gw.secrets:
        assert secret not in log, f"the secret {secret[:8]}… appears in the gateway log"
        assert secret.removeprefix("obl_") not in log
