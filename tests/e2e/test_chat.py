"""Chat completions through the gateway, non-streamed and streamed."""

from __future__ import annotations

import uuid

import openai

from conftest import MODEL

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello to obleth"},
]
# The mock's documented rule: words of every message (3 + 4), plus 3 per message, plus 3.
PROMPT_TOKENS = 7 + 3 * len(MESSAGES) + 3


def stream_chat(client: openai.OpenAI, max_tokens: int, include_usage: bool | None):
    """Streams a chat completion of MESSAGES and returns all its chunks."""
    extra = {} if include_usage is None else {"stream_options": {"include_usage": include_usage}}
    stream = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=max_tokens, stream=True, **extra
    )
    with stream:
        return list(stream)


def content_of(chunks) -> list[str]:
    """The non-empty content deltas, in order."""
    return [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]


def test_chat_non_streaming(client: openai.OpenAI):
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    assert raw.status_code == 200
    request_id = raw.headers.get("x-request-id")
    assert request_id, f"no x-request-id in {dict(raw.headers)}"
    uuid.UUID(request_id)  # the gateway's request ids are UUIDs
    assert raw.headers.get("x-obleth-admission") == "fast"

    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content and choice.message.content.strip()
    # Every mock output token is one word.
    assert len(choice.message.content.split()) == 5
    assert choice.finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 5
    assert completion.usage.prompt_tokens == PROMPT_TOKENS
    assert completion.usage.total_tokens == PROMPT_TOKENS + 5


def test_chat_non_streaming_request_ids_are_unique(client: openai.OpenAI):
    ids = {
        client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, max_tokens=1).headers[
            "x-request-id"
        ]
        for _ in range(3)
    }
    assert len(ids) == 3


def test_chat_streaming_with_usage(client: openai.OpenAI):
    chunks = stream_chat(client, max_tokens=6, include_usage=True)
    assert chunks, "the stream had no chunks"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    pieces = content_of(chunks)
    text = "".join(pieces)
    assert text.strip()
    assert len(pieces) == 6, pieces
    assert len(text.split()) == 6

    final = chunks[-1]
    assert final.choices == []
    assert final.usage is not None
    assert final.usage.completion_tokens == 6
    assert final.usage.prompt_tokens == PROMPT_TOKENS
    # Only the final chunk carries usage.
    assert [c for c in chunks[:-1] if c.usage is not None] == []
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]


def test_chat_streaming_without_usage_hides_the_usage_chunk(client: openai.OpenAI):
    # The gateway asks the upstream for usage on the client's behalf (to account for the
    # request) and must drop the extra usage-only chunk before it reaches the client.
    without = stream_chat(client, max_tokens=6, include_usage=None)
    assert without, "the stream had no chunks"
    assert [c for c in without if c.usage is not None] == []
    assert [c for c in without if not c.choices] == [], "a chunk without choices reached the client"

    explicit_false = stream_chat(client, max_tokens=6, include_usage=False)
    assert [c for c in explicit_false if c.usage is not None] == []

    # The mock's output is deterministic: the same prompt gives the same text.
    with_usage = stream_chat(client, max_tokens=6, include_usage=True)
    text = "".join(content_of(without))
    assert text.strip()
    assert text == "".join(content_of(with_usage))
    assert text == "".join(content_of(explicit_false))


def test_streamed_and_non_streamed_text_agree(client: openai.OpenAI):
    completion = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=6)
    streamed = "".join(content_of(stream_chat(client, max_tokens=6, include_usage=True)))
    assert completion.choices[0].message.content == streamed
