"""Fixtures for the end-to-end tests: the real `obleth` binary (mock backend + gateway)
driven through the official OpenAI Python SDK.

Run through `scripts/e2e.sh`, which builds the binary and passes its path in OBLETH_BIN.
Everything listens on 127.0.0.1 with ports picked at random; nothing outside the loopback
interface is contacted.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import string
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import httpx
import openai
import pytest

MODEL = "mock-model"
TENANT = "e2e"

# Generous bounds: a noisy 2-core machine may be slow, but nothing should hang forever.
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> None:
    """Polls `predicate` until it is true or `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Proc:
    """A child process whose stdout and stderr go to `log_path`."""

    name: str
    popen: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-n:])

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after a timeout; returns the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=STOP_TIMEOUT_S)
        return self.popen.returncode


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if pytest dies without tearing down (Linux)."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:
        pass


def start(name: str, args: list[str], env: dict[str, str], log_path: Path) -> Proc:
    log = open(log_path, "wb")
    try:
        popen = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            close_fds=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
    finally:
        log.close()  # the child holds its own descriptor
    return Proc(name, popen, log_path)


def wait_http_ok(proc: Proc, url: str) -> None:
    def ok() -> bool:
        if not proc.alive():
            raise AssertionError(f"{proc.name} exited with {proc.popen.returncode}; log:\n{proc.tail()}")
        try:
            return httpx.get(url, timeout=2.0).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ok, STARTUP_TIMEOUT_S, f"{proc.name} to answer {url}", interval=0.05)
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- {proc.name} log ---\n{proc.tail()}") from None


# === processes ===


@pytest.fixture(scope="session")
def obleth_bin() -> str:
    path = os.environ.get("OBLETH_BIN")
    if not path:
        pytest.fail("OBLETH_BIN is not set; run the end-to-end tests through scripts/e2e.sh")
    if not os.access(path, os.X_OK):
        pytest.fail(f"OBLETH_BIN={path} is not an executable file")
    return path


def base_env() -> dict[str, str]:
    # No inherited OBLETH_* settings (a developer's shell may have some), no ANSI colours.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBLETH_")}
    env["NO_COLOR"] = "1"
    env.pop("RUST_LOG", None)
    return env


@dataclass
class Mock:
    proc: Proc
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict:
        r = httpx.get(f"{self.url}/mock/stats", timeout=5.0)
        r.raise_for_status()
        return r.json()


@pytest.fixture(scope="session")
def mock(obleth_bin: str, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("mock")
    port = free_port()
    proc = start(
        "mock backend",
        [obleth_bin, "mock", "--listen", f"127.0.0.1:{port}", "--ttft-ms", "5", "--itl-ms", "2"],
        base_env(),
        tmp / "mock.log",
    )
    try:
        wait_http_ok(proc, f"http://127.0.0.1:{port}/health")
        yield Mock(proc, port)
    finally:
        proc.stop()


@dataclass
class GatewayProc:
    proc: Proc
    data_port: int
    admin_port: int
    metrics_port: int
    admin_token: str
    # Every key secret created during the session, for the leak check.
    secrets: list[str] = field(default_factory=list)

    @property
    def data_url(self) -> str:
        return f"http://127.0.0.1:{self.data_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def metrics(self) -> str:
        r = httpx.get(self.metrics_url, timeout=5.0)
        r.raise_for_status()
        return r.text


def random_token(n: int = 32) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


@contextlib.contextmanager
def run_gateway(
    obleth_bin: str, mock: Mock, tmp: Path, config: Path | None = None, extra_env: dict[str, str] | None = None
) -> Iterator[GatewayProc]:
    """Starts a gateway (mock upstream, SQLite store and ledger in `tmp`), waits until it
    serves, yields it and stops it. `config` is passed as `--config` (the environment still
    overrides it)."""
    data_port, admin_port, metrics_port = free_port(), free_port(), free_port()
    token = random_token()
    env = base_env()
    env.update(
        {
            "OBLETH_LISTEN_DATA": f"127.0.0.1:{data_port}",
            "OBLETH_LISTEN_ADMIN": f"127.0.0.1:{admin_port}",
            "OBLETH_LISTEN_METRICS": f"127.0.0.1:{metrics_port}",
            "OBLETH_ADMIN_TOKEN": token,
            "OBLETH_DATABASE_URL": f"sqlite://{tmp}/e2e.db",
            "OBLETH_UPSTREAM_BASE_URL": f"{mock.url}/v1",
            # The embedded ledger, in the session's directory; quick flushes so that the
            # usage queries see rows within a fraction of a second.
            "OBLETH_LEDGER_SQLITE_URL": f"sqlite://{tmp}/usage.db",
            "OBLETH_LEDGER_WAL_DIR": f"{tmp}/wal",
            "OBLETH_LEDGER_FLUSH_INTERVAL": "20ms",
            "OBLETH_LEDGER_INSERT_INTERVAL": "50ms",
            # The most verbose level the gateway's own code uses: the leak check then
            # also covers the per-request usage records.
            "OBLETH_LOG_LEVEL": "debug",
        }
    )
    env.update(extra_env or {})
    args = [obleth_bin] + (["--config", str(config)] if config is not None else []) + ["serve"]
    proc = start("gateway", args, env, tmp / "gateway.log")
    gw = GatewayProc(proc, data_port, admin_port, metrics_port, token)
    try:
        wait_http_ok(proc, f"{gw.data_url}/healthz")
        wait_http_ok(proc, f"{gw.admin_url}/readyz")
        yield gw
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def gateway(obleth_bin: str, mock: Mock, tmp_path_factory: pytest.TempPathFactory):
    with run_gateway(obleth_bin, mock, tmp_path_factory.mktemp("gateway")) as gw:
        yield gw


# === control plane (admin API) ===


class Admin:
    """A thin client of the admin API that fails loudly on unexpected statuses."""

    def __init__(self, gw: GatewayProc):
        self.gw = gw
        self.http = httpx.Client(
            base_url=gw.admin_url, headers={"Authorization": f"Bearer {gw.admin_token}"}, timeout=10.0
        )

    def call(self, method: str, path: str, body: dict | None = None, expect: int | tuple[int, ...] = (200, 201)):
        r = self.http.request(method, path, json=body)
        expected = (expect,) if isinstance(expect, int) else expect
        assert r.status_code in expected, f"{method} {path} -> {r.status_code}: {r.text}"
        return r.json()

    def create_key(self, tenant: str = TENANT) -> dict:
        key = self.call("POST", f"/api/v1/tenants/{tenant}/keys", {}, expect=201)
        assert key["secret"].startswith("obl_"), key
        self.gw.secrets.append(key["secret"])
        return key

    def patch_tenant(self, body: dict, tenant: str = TENANT) -> dict:
        return self.call("PATCH", f"/api/v1/tenants/{tenant}", body, expect=200)


@pytest.fixture(scope="session")
def admin(gateway: GatewayProc):
    a = Admin(gateway)
    yield a
    a.http.close()


@pytest.fixture(scope="session")
def tenant(admin: Admin) -> dict:
    t = admin.call("POST", "/api/v1/tenants", {"name": TENANT, "weight": 10}, expect=201)
    assert t["name"] == TENANT and t["weight"] == 10, t
    m = admin.call(
        "POST",
        "/api/v1/models",
        {"model_name": MODEL, "input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002},
        expect=201,
    )
    assert m["model_name"] == MODEL, m
    return t


@pytest.fixture(scope="session")
def api_key(admin: Admin, tenant: dict) -> dict:
    """The session's main key: the admin API's answer, with `id` and `secret`."""
    return admin.create_key()


@pytest.fixture(scope="session")
def make_client(gateway: GatewayProc):
    clients: list[openai.OpenAI] = []

    def make(secret: str) -> openai.OpenAI:
        c = openai.OpenAI(base_url=f"{gateway.data_url}/v1", api_key=secret, max_retries=0, timeout=30)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


@pytest.fixture(scope="session")
def client(make_client, api_key: dict) -> openai.OpenAI:
    return make_client(api_key["secret"])


@pytest.fixture(scope="session")
def data_http(gateway: GatewayProc):
    """A raw HTTP client of the data plane, for what the SDK cannot send."""
    with httpx.Client(base_url=gateway.data_url, timeout=30.0) as c:
        yield c


# === metrics ===

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample `name` whose labels include `labels`, or None if absent."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m or m.group("name") != name:
            continue
        have = dict(_LABEL.findall(m.group("labels") or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            return float(m.group("value"))
    return None
