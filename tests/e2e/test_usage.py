"""The usage ledger seen from outside: requests made with the OpenAI SDK become rows in
the embedded (SQLite) ledger, one per request — refused ones included — and the admin
API's usage queries add them up. Uses a tenant of its own."""

from __future__ import annotations

import openai
import pytest

from conftest import MODEL, Admin, GatewayProc, metric_value, wait_until

TENANT = "e2e-usage"


@pytest.fixture(scope="module")
def usage_client(admin: Admin, tenant: dict, make_client) -> openai.OpenAI:
    admin.call("POST", "/api/v1/tenants", {"name": TENANT}, expect=201)
    return make_client(admin.create_key(TENANT)["secret"])


def totals(admin: Admin) -> dict:
    data = admin.call("GET", f"/api/v1/usage/totals?tenant={TENANT}&from=1h")["data"]
    return data[0] if data else {"requests": 0}


def test_every_request_leaves_one_row(admin: Admin, usage_client: openai.OpenAI, gateway: GatewayProc):
    ids = []
    completion_tokens = 0
    for i in range(5):
        raw = usage_client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": f"row {i}"}], max_tokens=4
        )
        ids.append(raw.headers["x-request-id"])
        completion_tokens += raw.parse().usage.completion_tokens
    stream = usage_client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "streamed"}], max_tokens=3, stream=True
    )
    ids.append(stream.headers["x-request-id"])
    assert sum(1 for _ in stream.parse()) > 0
    completion_tokens += 3
    # A refusal leaves a row too.
    with pytest.raises(openai.NotFoundError) as exc:
        usage_client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    ids.append(exc.value.response.headers["x-request-id"])

    wait_until(lambda: totals(admin)["requests"] == 7, 10, "the rows to land")
    t = totals(admin)
    assert t["errors"] == 1 and t["rejected"] == 1, t
    assert t["output_tokens"] == completion_tokens, t
    assert t["cost"] > 0, t

    recent = admin.call("GET", f"/api/v1/usage/recent?tenant={TENANT}&from=1h&limit=100")["data"]
    assert sorted(r["request_id"] for r in recent) == sorted(ids), "one row per request, by its x-request-id"
    by_id = {r["request_id"]: r for r in recent}
    streamed = by_id[ids[5]]
    assert streamed["streamed"] == 1 and streamed["status"] == 200 and streamed["ttft_ms"] is not None, streamed
    refused = by_id[ids[6]]
    assert refused["status"] == 404 and refused["error_type"] == "model_not_found", refused
    assert refused["admission_class"] == "rejected"
    assert all(r["model"] == MODEL for r in recent if r["status"] == 200)

    by_model = admin.call("GET", f"/api/v1/usage/totals?tenant={TENANT}&from=1h&group_by=model")["data"]
    assert {m["key"]: m["requests"] for m in by_model}.get(MODEL) == 6, by_model
    series = admin.call("GET", f"/api/v1/usage/series?tenant={TENANT}&from=1h&bucket=minute")["data"]
    assert sum(p["requests"] for p in series) == 7, series

    status = admin.call("GET", "/api/v1/ledger")
    assert status["backend"] == "sqlite" and status["backend_up"] is True, status
    assert status["rows_dropped"] == 0, status
    metrics = gateway.metrics()
    assert metric_value(metrics, "obleth_ledger_rows_written_total", backend="sqlite") >= 7
    assert metric_value(metrics, "obleth_ledger_backend_up", backend="sqlite") == 1


def test_usage_queries_validate_their_parameters(admin: Admin):
    for query, param in [
        ("group_by=colour", "group_by"),
        ("bucket=week", "bucket"),
        ("from=yesterday", "from"),
        ("limit=0", "limit"),
    ]:
        path = "/api/v1/usage/recent" if param == "limit" else "/api/v1/usage/series"
        body = admin.call("GET", f"{path}?{query}", expect=400)
        assert body["error"]["param"] == param, body
    body = admin.call("GET", "/api/v1/usage/totals?tenant=nobody", expect=404)
    assert body["error"]["type"] == "invalid_request_error", body
    body = admin.call("GET", "/api/v1/usage/series?from=30d&bucket=minute", expect=400)
    assert "buckets" in body["error"]["message"], body
    # Every range is bounded too, whatever the bucket (the console cannot ask for a decade).
    body = admin.call("GET", "/api/v1/usage/series?from=3650d&bucket=day", expect=400)
    assert (body["error"]["param"], "366 days" in body["error"]["message"]) == ("from", True), body
