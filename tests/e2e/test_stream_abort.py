"""A client that leaves mid-stream: the gateway must cancel the upstream request and
account for the request as 499."""

from __future__ import annotations

import openai

from conftest import MODEL, GatewayProc, Mock, metric_value, wait_until

# At the mock's 2 ms per token this stream would run for seconds; the client leaves after
# a few chunks, long before it ends.
LONG = 2000


def requests_total(gateway: GatewayProc, status: str) -> float:
    v = metric_value(gateway.metrics(), "obleth_requests_total", route="chat_completions", status=status)
    return v or 0.0


def test_client_abort_mid_stream(client: openai.OpenAI, gateway: GatewayProc, mock: Mock):
    before = mock.stats()
    closed_before = requests_total(gateway, "499")

    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Tell me a long story"}],
        max_tokens=LONG,
        stream=True,
    )
    received = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            received.append(chunk)
        if len(received) >= 3:
            break
    stream.close()
    assert len(received) == 3
    assert all(c.choices[0].finish_reason is None for c in received)

    # The gateway drops the upstream body, so the mock sees its client go away.
    def mock_saw_disconnect() -> bool:
        s = mock.stats()
        return s["client_disconnects"] == before["client_disconnects"] + 1 and s["running"] == 0

    wait_until(mock_saw_disconnect, 5.0, f"the mock to see the disconnect (before: {before}, now: {mock.stats()})")

    # And records the request as closed by the client, with nothing left in flight.
    def gateway_settled() -> bool:
        text = gateway.metrics()
        return metric_value(text, "obleth_in_flight_requests") == 0 and requests_total(gateway, "499") == (
            closed_before + 1
        )

    wait_until(gateway_settled, 5.0, "the gateway to record the abort")
    text = gateway.metrics()
    assert metric_value(text, "obleth_in_flight_requests") == 0, text
    assert requests_total(gateway, "499") == closed_before + 1, text

    # The mock did not finish generating the abandoned request.
    after = mock.stats()
    assert after["running"] == 0
    assert after["client_disconnects"] == before["client_disconnects"] + 1


def test_scheduler_gauges_are_exported(client: openai.OpenAI, gateway: GatewayProc):
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    text = gateway.metrics()
    assert metric_value(text, "obleth_scheduler_slots", state="total") == 256, text
    assert metric_value(text, "obleth_scheduler_slots", state="used") == 0, text
    assert metric_value(text, "obleth_scheduler_tenant_in_flight", tenant="e2e") == 0, text
    assert (metric_value(text, "obleth_scheduler_tenant_share_score", tenant="e2e") or 0) > 0, text
    assert (metric_value(text, "obleth_admissions_total", **{"class": "fast"}) or 0) >= 1, text
