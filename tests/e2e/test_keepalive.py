"""Keep-alive after an early refusal.

A client that sends a POST gets its answer on a connection it may reuse (HTTP/1.1
keep-alive) unless the server says `Connection: close`. When the gateway refuses a
request before it has read the body (no or unknown key, disabled tenant) and the body has
not fully arrived yet, the server must either still read (drain) the body and keep the
connection usable, or announce `Connection: close`. Closing the connection silently makes
the client's next request on it fail with a connection error ("Server disconnected
without sending a response"): seen with the OpenAI SDK (max_retries=0) as a random
APIConnectionError on the call after a 401 or 403.

The test reproduces the timing deterministically with a raw socket: it sends the request
headers, waits for the answer, and only then sends the body and a second request.
"""

from __future__ import annotations

import json
import select
import socket
import time

import pytest

from conftest import MODEL, GatewayProc

BODY = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}).encode()


class Conn:
    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def readable(self, timeout: float) -> bool:
        return bool(self.buf) or bool(select.select([self.sock], [], [], timeout)[0])

    def read_response(self) -> tuple[int, dict[str, str], bytes]:
        """One HTTP/1.1 response with a Content-Length body; raises on EOF."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buf += chunk


def post_head(authorization: str | None) -> bytes:
    lines = [
        "POST /v1/chat/completions HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {len(BODY)}",
    ]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize("authorization", [None, "Bearer obl_doesnotexist"], ids=["missing_key", "invalid_key"])
def test_early_refusal_keeps_connection_usable_or_says_close(gateway: GatewayProc, authorization: str | None):
    conn = Conn(gateway.data_port)
    try:
        conn.sock.sendall(post_head(authorization))
        body_sent = False
        # A server that drains the body answers only once it has it: give it the body if no
        # answer comes (bounded wait; the answer comes at once when it does not drain).
        deadline = time.monotonic() + 5.0
        while not conn.readable(0.05):
            if time.monotonic() > deadline:
                conn.sock.sendall(BODY)
                body_sent = True
                break
        status, headers, body = conn.read_response()
        assert status == 401
        assert json.loads(body)["error"]["code"] in ("missing_api_key", "invalid_api_key")
        if headers.get("connection", "").lower() == "close":
            return  # the client was told not to reuse the connection: correct
        # No `Connection: close`: the connection must still serve the next request. Give a
        # server that closes it time to do so (bounded), so that the outcome does not
        # depend on whether the body below overtakes the server's decision.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            if conn.readable(0.05):
                try:
                    extra = conn.sock.recv(65536)
                except OSError as e:
                    pytest.fail(f"the connection was reset after the {authorization!r} 401: {e}")
                if not extra:
                    pytest.fail(
                        f"the server closed the connection after the {authorization!r} 401 "
                        "without sending 'Connection: close'"
                    )
                pytest.fail(f"unexpected bytes after the response: {extra!r}")
        try:
            if not body_sent:
                conn.sock.sendall(BODY)
            conn.sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status, _, body = conn.read_response()
        except OSError as e:  # ConnectionError, BrokenPipeError, ConnectionResetError
            pytest.fail(f"the connection was closed without 'Connection: close' after the {authorization!r} 401: {e}")
        assert (status, body) == (200, b"ok")
    finally:
        conn.sock.close()
