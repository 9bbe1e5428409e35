"""Canned upstream answers in the OpenAI wire format, for the fake upstreams of plugin tests.

Every helper returns plain data (a ``dict`` for JSON, ``bytes`` for an SSE body) or an
``httpx.Response``, so it fits a respx route (``route.respond(json=...)``), a
``side_effect`` or an ``httpx.MockTransport`` handler.  Backends with another protocol
(Ollama's NDJSON, say) build their own bodies, using :func:`embedding_for` for vectors so that
the kit can check the order of embeddings.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import httpx

__all__ = [
    "chat_completion",
    "chat_stream",
    "completion",
    "completion_stream",
    "embedding_for",
    "embeddings",
    "embeddings_handler",
    "models",
    "sse",
]

CREATED = 1_700_000_000


def embedding_for(text: Any, dims: int = 8) -> list[float]:
    """A deterministic fake vector for ``text`` (distinct inputs give distinct vectors).

    The conformance kit checks that ``embed`` returns, for input ``i``, exactly
    ``embedding_for(inputs[i])``: build your fake upstream's vectors with this function.
    """
    digest = hashlib.sha256(json.dumps(text).encode()).digest()
    values = struct.unpack(f"<{dims}H", (digest * 2)[: dims * 2])
    return [round(v / 65535.0, 6) for v in values]


def chat_completion(
    content: str = "Hello from the fake upstream", *, model: str = "upstream-model"
) -> dict[str, Any]:
    """A ``chat.completion`` object with one assistant message and usage."""
    return {
        "id": "chatcmpl-conformance",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11},
    }


def sse(events: Iterable[dict[str, Any] | str], *, done: bool = True) -> bytes:
    """An SSE body: one ``data:`` event per item (dicts as JSON), then ``[DONE]`` if ``done``."""
    out = []
    for event in events:
        data = event if isinstance(event, str) else json.dumps(event)
        out.append(f"data: {data}\n\n")
    if done:
        out.append("data: [DONE]\n\n")
    return "".join(out).encode()


def chat_stream(
    tokens: Sequence[str] = ("Hel", "lo", " there"),
    *,
    model: str = "upstream-model",
    usage: bool = False,
    done: bool = True,
) -> bytes:
    """An SSE ``chat.completion.chunk`` stream: role chunk, one chunk per token, finish chunk."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-conformance",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    events: list[dict[str, Any]] = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": t}) for t in tokens]
    events.append(chunk({}, "stop"))
    if usage:
        events.append(
            {
                "id": "chatcmpl-conformance",
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": model,
                "choices": [],
                "usage": {"prompt_tokens": 5, "completion_tokens": len(tokens), "total_tokens": 8},
            }
        )
    return sse(events, done=done)


def completion(text: str = "Hello from the fake upstream", *, model: str = "upstream-model"):
    """A legacy ``text_completion`` object."""
    return {
        "id": "cmpl-conformance",
        "object": "text_completion",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9},
    }


def completion_stream(
    tokens: Sequence[str] = ("Hel", "lo"), *, model: str = "upstream-model", done: bool = True
) -> bytes:
    """An SSE stream of ``text_completion`` chunks."""
    events = [
        {
            "id": "cmpl-conformance",
            "object": "text_completion",
            "created": CREATED,
            "model": model,
            "choices": [{"index": 0, "text": t, "finish_reason": None}],
        }
        for t in tokens
    ]
    return sse(events, done=done)


def embeddings(inputs: Sequence[Any], *, model: str = "upstream-model") -> dict[str, Any]:
    """An embeddings ``list`` with :func:`embedding_for` vectors, in input order."""
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": embedding_for(text)}
            for i, text in enumerate(inputs)
        ],
        "model": model,
        "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)},
    }


def embeddings_handler(request: httpx.Request) -> httpx.Response:
    """A handler (respx ``side_effect`` or MockTransport) answering ``POST /v1/embeddings``.

    Reads the ``input`` of the request body and answers :func:`embeddings` for it.
    """
    body = json.loads(request.content or b"{}")
    inp = body.get("input", [])
    if isinstance(inp, str) or (inp and isinstance(inp[0], int)):
        inp = [inp]
    return httpx.Response(200, json=embeddings(inp, model=body.get("model", "upstream-model")))


def models(ids: Sequence[str] = ("upstream-model",)) -> dict[str, Any]:
    """A ``GET /v1/models`` answer."""
    return {
        "object": "list",
        "data": [{"id": i, "object": "model", "created": CREATED, "owned_by": "x"} for i in ids],
    }
