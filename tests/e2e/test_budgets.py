"""Budgets as OpenAI's SDK sees them: rate-limit headers on success, RateLimitError with
Retry-After on a rate limit, `insufficient_quota` on an exhausted spend budget, and the
usage endpoint. Uses a tenant of its own so that the other tests keep no limits."""

from __future__ import annotations

import openai
import pytest

from conftest import MODEL, Admin, GatewayProc, metric_value, wait_until
from test_errors import assert_openai_error

HI = [{"role": "user", "content": "one two three four"}]


@pytest.fixture(scope="module")
def limited(admin: Admin, tenant: dict, make_client):
    """A tenant with 1000 tokens per minute, 100 requests per minute and a small budget."""
    admin.call(
        "POST",
        "/api/v1/tenants",
        {"name": "e2e-budget", "quota": {"tpm": 1000, "rpm": 100, "lifetime_budget": 0.01}},
        expect=201,
    )
    key = admin.create_key("e2e-budget")
    return make_client(key["secret"])


def usage(admin: Admin) -> dict:
    return admin.call("GET", "/api/v1/tenants/e2e-budget/usage")["usage"]


def test_rate_limits_through_the_sdk(admin: Admin, limited: openai.OpenAI, gateway: GatewayProc):
    raw = limited.chat.completions.with_raw_response.create(model=MODEL, messages=HI, max_tokens=400)
    assert raw.headers["x-ratelimit-limit-tokens"] == "1000"
    assert raw.headers["x-ratelimit-limit-requests"] == "100"
    assert int(raw.headers["x-ratelimit-remaining-tokens"]) < 600, "the prompt plus max_tokens was reserved"
    assert raw.headers["x-ratelimit-reset-tokens"].endswith("s")
    assert raw.parse().usage.completion_tokens == 400
    wait_until(lambda: usage(admin)["in_flight"] == 0, 10, "the reconcile")
    stream = limited.chat.completions.create(model=MODEL, messages=HI, max_tokens=400, stream=True)
    assert sum(1 for _ in stream) > 0
    wait_until(lambda: usage(admin)["in_flight"] == 0, 10, "the reconcile")

    with pytest.raises(openai.RateLimitError) as exc:
        limited.chat.completions.create(model=MODEL, messages=HI, max_tokens=400)
    error = assert_openai_error(exc.value.response, 429, "tokens_per_minute_exceeded", "rate_limit_error")
    assert "tokens per minute" in error["message"]
    assert 1 <= int(exc.value.response.headers["retry-after"]) <= 60
    assert "x-ratelimit-remaining-tokens" in exc.value.response.headers

    metrics = gateway.metrics()
    assert metric_value(metrics, "obleth_budget_limit", tenant="e2e-budget", window="tokens") == 1000
    remaining = metric_value(metrics, "obleth_budget_remaining", tenant="e2e-budget", window="tokens")
    assert remaining is not None and remaining < 400, remaining
    assert metric_value(metrics, "obleth_budget_decisions_total", decision="denied", limit="tpm") >= 1


def test_spend_budget_is_insufficient_quota(admin: Admin, limited: openai.OpenAI):
    # The two requests above cost about 2 x (10 x 0.000001 + 400 x 0.000002) = 0.0016,
    # more than the lowered budget.
    admin.patch_tenant({"quota": {"lifetime_budget": 0.001}}, tenant="e2e-budget")
    with pytest.raises(openai.RateLimitError) as exc:
        limited.chat.completions.create(model=MODEL, messages=HI, max_tokens=1000)
    error = assert_openai_error(exc.value.response, 429, "lifetime_budget_exceeded", "insufficient_quota")
    assert "does not reset" in error["message"]
    u = usage(admin)
    assert u["lifetime_budget"] == 0.001
    assert u["lifetime_spend"] > 0, "the earlier requests were charged"
