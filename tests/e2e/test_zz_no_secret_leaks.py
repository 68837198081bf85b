"""Runs last (files are collected in name order): no secret ever reached the gateway's log.

It stops the gateway so that the shutdown path's log lines are checked too.
"""

from __future__ import annotations

import openai

from conftest import MODEL, GatewayProc


def assert_no_secrets(log: str, gateway: GatewayProc) -> None:
    assert gateway.admin_token not in log, "the admin token appears in the gateway log"
    for secret in gateway.secrets:
        assert secret not in log, f"the key secret {secret[:8]}… appears in the gateway log"
        # Nor its random part on its own (e.g. logged after stripping the `obl_` prefix).
        assert secret.removeprefix("obl_") not in log


def test_zz_no_secret_leaks(gateway: GatewayProc, api_key: dict, client: openai.OpenAI):
    # At least one request and one key exist whatever subset of the suite ran.
    assert client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "last"}], max_tokens=1
    ).choices
    assert gateway.secrets, "no key was created"

    log = gateway.proc.log()
    # The log was captured: it holds the startup lines and names the key by its prefix.
    assert "data plane" in log, log[-2000:]
    assert "key created" in log, log[-2000:]
    assert api_key["prefix"] in log
    assert_no_secrets(log, gateway)

    # A graceful shutdown on SIGTERM, and nothing leaked on the way out either.
    code = gateway.proc.stop()
    log = gateway.proc.log()
    assert code == 0, f"the gateway exited with {code} on SIGTERM; log tail:\n{gateway.proc.tail()}"
    assert "shutting down" in log
    assert_no_secrets(log, gateway)
