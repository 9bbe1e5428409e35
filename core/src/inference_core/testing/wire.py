"""The fake upstream's protocol: how the kit answers a plugin's generation requests, and reads them.

The conformance kit asserts on the wire: it looks at the body the fake upstream received, and
it answers each scenario the way a real server would.  A :class:`Wire` knows one protocol:

* :meth:`Wire.answer` answers a generation request (chat, completion, embeddings) for a
  scenario, or returns ``None`` for any other request (the author's ``mock_*`` routes answer
  those: health, model lists, a server's own side endpoints);
* :meth:`Wire.fields` reads a request the plugin sent, as OpenAI-named fields (``model``,
  ``seed``, ``stop``, ``tools``, ...), so one check can cover every protocol;
* :attr:`Wire.not_forwarded`: OpenAI fields the protocol has no place for, each with the reason
  (what the plugin does instead); the field-forwarding check accepts their absence.

:class:`OpenAIWire` (the default) speaks the OpenAI HTTP API under any prefix (``/v1`` or none).
A plugin for a server with another protocol (Ollama's NDJSON, say) subclasses :class:`Wire` in
its tests and sets ``wire = MyWire()`` on its conformance class.

Scenarios: ``chat``, ``chat_stream`` (a usage chunk when ``stream_options.include_usage``),
``stream_error`` (one content chunk, then an in-band error event, then the end marker),
``complete`` (streamed or not, as the body asks), ``embed`` (the vectors of
:func:`canned.embedding_for`, ``dimensions`` and ``encoding_format`` honoured, the items in
*reverse* order with their ``index``, as a server may send them).
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from . import canned

__all__ = ["SCENARIOS", "OpenAIWire", "Wire", "float32_base64"]

SCENARIOS = (
    "chat",
    "chat_stream",
    "stream_error",
    "complete",
    "embed",
)

#: The in-band error the ``stream_error`` scenario sends after the first chunk (vLLM's shape).
STREAM_ERROR = {
    "message": "CUDA out of memory while generating",
    "type": "InternalServerError",
    "code": 500,
}


def float32_base64(vector: list[float]) -> str:
    """``vector`` as OpenAI's ``encoding_format: base64`` sends it (little-endian float32)."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


class Wire:
    """One upstream protocol, as the conformance kit's fake upstream speaks it."""

    #: OpenAI field -> why this protocol does not carry it (the plugin does something else)
    not_forwarded: ClassVar[Mapping[str, str]] = {}

    def answer(self, request: httpx.Request, scenario: str) -> httpx.Response | None:
        """The answer to a generation request in ``scenario``; ``None`` for other requests."""
        raise NotImplementedError

    def fields(self, request: httpx.Request) -> dict[str, Any] | None:
        """The request's OpenAI-named fields, or ``None`` when it is no generation request."""
        raise NotImplementedError


def _body(request: httpx.Request) -> dict[str, Any]:
    try:
        body = json.loads(request.content or b"{}")
    except (ValueError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


def embed_items(body: Mapping[str, Any]) -> list[Any]:
    inp = body.get("input", [])
    if isinstance(inp, str) or (inp and isinstance(inp[0], int)):
        return [inp]
    return list(inp)


class OpenAIWire(Wire):
    """The OpenAI HTTP API: ``.../chat/completions``, ``.../completions``, ``.../embeddings``."""

    _KINDS = (("/chat/completions", "chat"), ("/completions", "complete"), ("/embeddings", "embed"))

    def kind(self, request: httpx.Request) -> str | None:
        if request.method != "POST":
            return None
        path = request.url.path.rstrip("/")
        for suffix, kind in self._KINDS:
            if path.endswith(suffix):
                return kind
        return None

    def fields(self, request: httpx.Request) -> dict[str, Any] | None:
        return _body(request) if self.kind(request) else None

    def answer(self, request: httpx.Request, scenario: str) -> httpx.Response | None:
        kind = self.kind(request)
        if kind is None:
            return None
        body = _body(request)
        model = body.get("model") or "upstream-model"
        stream = bool(body.get("stream"))
        if kind == "embed":
            return httpx.Response(200, json=self.embeddings(body))
        if kind == "complete":
            if stream:
                return _sse(canned.completion_stream(["Once", " upon"], model=model))
            return httpx.Response(200, json=canned.completion(model=model))
        if not stream:
            return httpx.Response(200, json=canned.chat_completion("Hi", model=model))
        if scenario == "stream_error":
            first = canned.chat_stream(["Hel"], model=model, done=False).split(b"\n\n")[:2]
            events = b"\n\n".join(first) + b"\n\n"
            events += canned.sse([{"error": STREAM_ERROR}], done=True)
            return _sse(events)
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return _sse(canned.chat_stream(["Hel", "lo"], model=model, usage=usage))

    @staticmethod
    def embeddings(body: Mapping[str, Any]) -> dict[str, Any]:
        """Vectors for ``body["input"]``: dimensions and base64 honoured, in reverse order."""
        items = embed_items(body)
        dims = body.get("dimensions") or 8
        b64 = body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(items):
            vector = canned.embedding_for(text, dims=dims)
            value: Any = float32_base64(vector) if b64 else vector
            data.append({"object": "embedding", "index": i, "embedding": value})
        data.reverse()  # a server may answer out of order: the index is what counts
        n = len(items)
        return {
            "object": "list",
            "data": data,
            "model": body.get("model") or "upstream-model",
            "usage": {"prompt_tokens": n, "total_tokens": n},
        }


def _sse(content: bytes) -> httpx.Response:
    return httpx.Response(200, content=content, headers={"content-type": "text/event-stream"})
