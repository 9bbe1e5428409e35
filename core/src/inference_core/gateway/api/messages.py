"""The Anthropic Messages API: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.

Translated to chat completions by :mod:`inference_core.protocols.anthropic` and served by
``router.chat`` through the shared pipeline (fallback, model routing, deadlines, retries,
metrics, access log, keys and limits exactly as for chat).  The key is accepted as
``x-api-key`` as well as ``Authorization: Bearer``; the ``anthropic-version`` header is
accepted and not required.  Errors are Anthropic-shaped (``{"type": "error", "error":
{"type", "message"}}``); a stream cut after its first byte ends with an ``error`` event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from ...protocols import anthropic as proto
from ...protocols import native
from ...protocols.chunks import ChunkReader
from ..errors import error_for as openai_error_for
from ..pipeline import Endpoint, Framer, Gateway, Route, raw_of
from ..relay import EndOfStream

__all__ = ["CountTokensEndpoint", "MessagesEndpoint", "routes"]


class _Call:
    """A parsed Messages request and its chat translation."""

    __slots__ = ("chat", "model", "prefill", "req", "stream")

    def __init__(self, req: Any, chat: Any, prefill: str | None) -> None:
        self.req = req
        self.chat = chat
        self.prefill = prefill
        self.model = req.model
        self.stream = bool(getattr(req, "stream", False))


class MessagesFramer(Framer):
    """Chat chunks -> Anthropic events (``protocols.anthropic.MessagesStream``)."""

    __slots__ = ("_native", "_s")

    def __init__(self, call: _Call) -> None:
        self._s = proto.MessagesStream(call.req, call.prefill, call.chat)
        self._native = False

    @property
    def usage(self) -> Any:  # type: ignore[override]
        return self._s.usage

    def frame(self, chunk: Any) -> bytes | None:
        if type(chunk) is native.NativeEvent:  # a backend that speaks Messages natively
            self._native = True
            return raw_of(chunk)
        data = self._s.feed(chunk)
        if self._s.stopped:
            raise EndOfStream(data)
        return data

    def end(self) -> bytes:
        return b"" if self._native else self._s.end()

    def error(self, exc: BaseException, redact: Callable[[str], str]) -> bytes:
        return proto.stream_error(exc, redact, openai_error_for)

    def shutdown(self) -> bytes:
        message = "The gateway is shutting down; the stream was cut."
        body = orjson.dumps(proto.error_payload(529, message))
        return b"event: error\ndata: " + body + b"\n\n"


class _AnthropicEndpoint(Endpoint):
    api_key_header = b"x-api-key"
    key_hint = "'x-api-key: <key>' or 'Authorization: Bearer <key>'"

    def render_error(
        self, exc: BaseException, redact: Callable[[str], str] | None = None
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        return proto.error_for(exc, redact, openai_error_for)

    async def translate(self, call: _Call, gateway: Gateway) -> Any:  # type: ignore[override]
        return call.chat


def _native_body(req: Any) -> Any:
    return lambda: req.model_dump(mode="json", exclude_none=True)


class MessagesEndpoint(_AnthropicEndpoint):
    """Anthropic Messages (``/v1/messages``), translated to chat completions."""

    name = "messages"
    collects = True

    def parse(self, body: bytes) -> _Call:
        req = proto.parse_request(body, proto.MessagesRequest)
        chat, prefill = proto.to_chat(req)
        return _Call(req, chat, prefill)

    def check(self, gateway: Gateway, call: _Call) -> None:
        gateway.cap(call.req.max_tokens, gateway.max_tokens, "max_tokens")

    async def translate(self, call: _Call, gateway: Gateway) -> Any:  # type: ignore[override]
        # offered natively only when the backend is asked in the client's own mode
        offer = call.chat.stream == call.stream
        native.offer(
            native.NativeRequest("anthropic.messages", _native_body(call.req), call.stream)
            if offer
            else None
        )
        return call.chat

    def respond(self, result: Any, call: _Call, trace: Any) -> bytes:
        native.offer(None)  # the backend has answered: drop the offer (and what it holds)
        if type(result) is native.NativeAnswer:
            return raw_of(result) or b"{}"
        return orjson.dumps(proto.message_from_chat(result, call.req, call.prefill))

    async def collect(self, chunks: Any, call: _Call, trace: Any) -> bytes:
        reader = ChunkReader(call.req.stop_sequences, call.prefill)
        model = None
        try:
            async for chunk in chunks:
                model = model or getattr(chunk, "model", None)
                reader.feed(chunk)
                if reader.stopped:
                    break
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()
        reader.close()
        if trace.usage is None:
            trace.usage = reader.usage
        message = proto.message_from_reader(reader, model or call.model, reader.usage, call.chat)
        return orjson.dumps(message)

    def framer(self, call: _Call, trace: Any) -> Framer:
        native.offer(None)
        return MessagesFramer(call)


class CountTokensEndpoint(_AnthropicEndpoint):
    """Anthropic ``/v1/messages/count_tokens``: the prompt's size in the serving backend's
    tokenizer and chat template (a one-token chat call's ``usage.prompt_tokens``); an
    estimate (UTF-8 bytes / 4) when the backend reports no usage."""

    name = "count_tokens"

    def parse(self, body: bytes) -> _Call:
        req = proto.parse_request(body, proto.CountTokensRequest)
        chat, _prefill = proto.to_chat(req, count_only=True)
        call = _Call(req, chat, None)
        call.stream = False
        return call

    def respond(self, result: Any, call: _Call, trace: Any) -> bytes:
        usage = getattr(result, "usage", None)
        tokens = int(getattr(usage, "prompt_tokens", 0) or 0) if usage is not None else 0
        if tokens <= 0:
            tokens = proto.estimate_tokens(call.chat)
        return b'{"input_tokens":%d}' % tokens


def routes(gateway: Gateway) -> list[Route]:
    """The Anthropic routes."""
    return [
        Route(
            "/v1/messages",
            ("POST",),
            gateway.handler(MessagesEndpoint()),
            "Anthropic Messages API (translated to chat completions)",
            proto.MessagesRequest,
            None,
            stream=True,
        ),
        Route(
            "/v1/messages/count_tokens",
            ("POST",),
            gateway.handler(CountTokensEndpoint()),
            "Anthropic token count (the serving backend's tokenizer)",
            proto.CountTokensRequest,
            None,
        ),
    ]
