"""Property tests: however Ollama's NDJSON arrives on the wire, the OpenAI chunks say the same."""

from __future__ import annotations

import asyncio
import itertools
import json

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inference_ollama
from inference_core import BackendUnavailable, ChatRequest
from inference_core.testing import make_config

CFG = make_config("ollama", base_url="http://ollama.test", model="m")


class Split(httpx.AsyncByteStream):
    """A body delivered in the given pieces (cuts anywhere, even inside a UTF-8 character)."""

    def __init__(self, body: bytes, cuts: list[int]) -> None:
        points = sorted({c % (len(body) + 1) for c in cuts})
        edges = [0, *points, len(body)]
        self.parts = [body[a:b] for a, b in itertools.pairwise(edges) if b > a]

    async def __aiter__(self):
        for part in self.parts:
            yield part


def ndjson(pieces: list[str], done: bool) -> bytes:
    lines = [
        {
            "model": "m",
            "created_at": "2025-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": p},
            "done": False,
        }
        for p in pieces
    ]
    if done:
        lines.append(
            {
                "model": "m",
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "length",
                "prompt_eval_count": 4,
                "eval_count": len(pieces),
            }
        )
    return b"".join(json.dumps(x, ensure_ascii=False).encode() + b"\n" for x in lines)


async def run(body: bytes, cuts: list[int], include_usage: bool):
    def handler(request):
        return httpx.Response(
            200, stream=Split(body, cuts), headers={"content-type": "application/x-ndjson"}
        )

    request = ChatRequest(
        messages=[{"role": "user", "content": "x"}],
        stream=True,
        stream_options={"include_usage": include_usage},
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        stream = await inference_ollama.plugin.chat(request=request, config=CFG, http=http)
        return [c async for c in stream]


@settings(max_examples=60, deadline=None)
@given(
    pieces=st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
    include_usage=st.booleans(),
)
def test_any_byte_split_gives_the_same_chunks(pieces, cuts, include_usage):
    chunks = asyncio.run(run(ndjson(pieces, True), cuts, include_usage))
    with_choices = [c for c in chunks if c.choices]
    assert "".join(c.choices[0].delta.content or "" for c in with_choices) == "".join(pieces)
    assert with_choices[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in with_choices[1:])
    assert [c.choices[0].finish_reason for c in with_choices].count("length") == 1
    assert with_choices[-1].choices[0].finish_reason == "length"
    if include_usage:
        assert chunks[-1].choices == []
        assert chunks[-1].usage.completion_tokens == len(pieces)
    else:
        assert all(c.usage is None for c in chunks)


@settings(max_examples=30, deadline=None)
@given(
    pieces=st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=10),
)
def test_a_stream_without_done_never_ends_silently(pieces, cuts):
    with pytest.raises(BackendUnavailable, match="truncated"):
        asyncio.run(run(ndjson(pieces, False), cuts, False))
