"""Completions, embeddings and the model list through the gateway."""

from __future__ import annotations

import math

import openai
import pytest

from conftest import MODEL, Admin


def test_completions(client: openai.OpenAI):
    completion = client.completions.create(model=MODEL, prompt="Say hi", max_tokens=4)
    assert completion.object == "text_completion"
    assert completion.model == MODEL
    assert len(completion.choices) == 1
    text = completion.choices[0].text
    assert text and text.strip()
    assert len(text.split()) == 4
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 4
    assert completion.usage.prompt_tokens == 2  # "Say hi": two words


def test_completions_streaming(client: openai.OpenAI):
    with client.completions.create(model=MODEL, prompt="Say hi", max_tokens=4, stream=True) as stream:
        chunks = list(stream)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert len(text.split()) == 4
    assert [c for c in chunks if c.usage is not None] == []
    # Same prompt, same deterministic output as the non-streamed call.
    assert text == client.completions.create(model=MODEL, prompt="Say hi", max_tokens=4).choices[0].text


def test_embeddings(client: openai.OpenAI):
    result = client.embeddings.create(model=MODEL, input=["a b c", "d e"])
    assert result.model == MODEL
    assert [d.index for d in result.data] == [0, 1]
    first, second = (d.embedding for d in result.data)
    assert len(first) > 0
    assert len(first) == len(second)
    assert all(isinstance(x, float) and math.isfinite(x) for x in first + second)
    assert first != second
    assert result.usage.prompt_tokens == 5  # 3 + 2 words


def test_models_list_and_allowed_models(client: openai.OpenAI, admin: Admin):
    assert MODEL in {m.id for m in client.models.list()}

    other = admin.call(
        "POST",
        "/api/v1/models",
        {"model_name": "other-model", "input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002},
        expect=201,
    )
    assert other["model_name"] == "other-model"
    try:
        # Registered and unrestricted: both listed, both usable.
        assert {MODEL, "other-model"} <= {m.id for m in client.models.list()}
        ok = client.chat.completions.create(
            model="other-model", messages=[{"role": "user", "content": "hi"}], max_tokens=1
        )
        assert ok.usage.completion_tokens == 1

        patched = admin.patch_tenant({"allowed_models": [MODEL]})
        assert patched["allowed_models"] == [MODEL]
        assert [m.id for m in client.models.list()] == [MODEL]

        with pytest.raises(openai.PermissionDeniedError) as exc:
            client.chat.completions.create(
                model="other-model", messages=[{"role": "user", "content": "hi"}], max_tokens=1
            )
        assert exc.value.status_code == 403
        error = exc.value.response.json()["error"]
        assert error["code"] == "model_not_allowed"
        assert error["type"] == "permission_error"
        assert error["param"] == "model"

        # The allowed model still works for the restricted tenant.
        ok = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
        assert ok.usage.completion_tokens == 1
    finally:
        restored = admin.patch_tenant({"allowed_models": []})
        assert restored["allowed_models"] == []
    assert {MODEL, "other-model"} <= {m.id for m in client.models.list()}
