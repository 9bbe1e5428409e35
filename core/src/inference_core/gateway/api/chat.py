"""The OpenAI protocol: ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``.

The router speaks this protocol, so nothing is translated: a body is parsed with one
``Model.model_validate_json(body)`` call; a response that came from an OpenAI-compatible
backend is relayed as the exact bytes it arrived as (``WireModel.raw``); a stream is relayed
as ``b"data: " + chunk.raw + b"\\n\\n"`` per chunk and ends with ``data: [DONE]``, or with an
OpenAI-shaped ``data: {"error": ...}`` event after a failure mid-stream.
"""

from __future__ import annotations

import base64
import re
import struct
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import ValidationError

from ...models import (
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    CompletionResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    WireModel,
)
from ..errors import GatewayError, error_for, validation_error
from ..pipeline import Endpoint, Framer, Gateway, Route, raw_of

__all__ = ["ChatEndpoint", "CompletionsEndpoint", "EmbeddingsEndpoint", "routes"]

_DONE = b"data: [DONE]\n\n"
_SHUTDOWN_EVENT = orjson.dumps(
    {
        "error": {
            "message": "The gateway is shutting down; the stream was cut.",
            "type": "service_unavailable",
            "param": None,
            "code": "gateway_shutdown",
        }
    }
)
_LONG_DIGITS = re.compile(rb"[0-9]{19,}")
_INT64 = (-(2**63), 2**64 - 1)


def _find_big_int(value: Any, path: str) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return path if not (_INT64[0] <= value <= _INT64[1]) else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _find_big_int(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = _find_big_int(item, f"{path}.{i}" if path else str(i))
            if found is not None:
                return found
    return None


def check_int_range(body: bytes, request: Any) -> None:
    """Reject integers no backend can take (JSON encoders stop at 64 bits): 400 naming them.

    Only looks when the body has a run of 19+ digits, so it costs nothing on ordinary bodies.
    """
    if _LONG_DIGITS.search(body) is None:
        return
    data = request.model_dump() if hasattr(request, "model_dump") else request
    path = _find_big_int(data, "")
    if path is not None:
        raise GatewayError(
            400,
            f"Invalid value for '{path}': the integer is out of the 64-bit range.",
            param=path,
            code="invalid_value",
        )


def _float_b64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def _b64_floats(text: str) -> list[float]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


class OpenAIFramer(Framer):
    """Chunk -> ``data: <the chunk's bytes>``; ``data: [DONE]`` at the end.

    A usage-only chunk (``choices: []``) is passed on only when the client asked for it
    (``stream_options.include_usage``): the router asks for usage itself.
    """

    __slots__ = ("include_usage", "usage")

    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage
        self.usage: Any = None

    def frame(self, chunk: Any) -> bytes | None:
        raw = raw_of(chunk)
        usage = chunk.usage
        if usage is not None:
            self.usage = usage
            if not self.include_usage and not chunk.choices:
                return None  # asked for by the router, not by this client
        if raw is None:
            raw = orjson.dumps(chunk.to_dict())
        return b"data: " + raw + b"\n\n"

    def end(self) -> bytes:
        return _DONE

    def error(self, exc: BaseException, redact: Callable[[str], str]) -> bytes:
        _status, body, _headers = error_for(exc, redact)
        return b"data: " + body + b"\n\n"

    def shutdown(self) -> bytes:
        return b"data: " + _SHUTDOWN_EVENT + b"\n\n"


class _OpenAIEndpoint(Endpoint):
    """Shared by chat and completions: parse, caps, raw relay."""

    model_cls: type[WireModel] = ChatRequest

    def parse(self, body: bytes) -> Any:
        try:
            request = self.model_cls.model_validate_json(body)
        except ValidationError as exc:
            raise validation_error(exc) from None
        check_int_range(body, request)
        return request

    def check(self, gateway: Gateway, request: Any) -> None:
        n = getattr(request, "n", None)
        if n is not None:
            gateway.cap(n, gateway.max_n, "n")
        gateway.cap(request.max_tokens, gateway.max_tokens, "max_tokens")
        gateway.cap(getattr(request, "max_completion_tokens", None), gateway.max_tokens,
                    "max_completion_tokens")  # fmt: skip

    def respond(self, result: Any, request: Any, trace: Any) -> bytes:
        raw = raw_of(result)
        return raw if raw is not None else orjson.dumps(result.to_dict())

    def framer(self, request: Any, trace: Any) -> Framer:
        opts = request.stream_options
        return OpenAIFramer(bool(opts and opts.get("include_usage")))


class ChatEndpoint(_OpenAIEndpoint):
    """Chat completion (OpenAI ``/v1/chat/completions``)."""

    name = "chat"
    router_method = "chat"
    model_cls = ChatRequest


class CompletionsEndpoint(_OpenAIEndpoint):
    """Text completion (OpenAI ``/v1/completions``)."""

    name = "completions"
    operation = "complete"
    router_method = "complete"
    model_cls = CompletionRequest


class EmbeddingsEndpoint(_OpenAIEndpoint):
    """Embeddings (OpenAI ``/v1/embeddings``); vectors converted to the asked encoding."""

    name = "embeddings"
    router_method = "embed"
    model_cls = EmbeddingRequest

    def check(self, gateway: Gateway, request: Any) -> None:
        n = getattr(request, "n", None)
        if n is not None:
            gateway.cap(n, gateway.max_n, "n")
        limit = gateway.max_inputs
        if limit and len(request.inputs) > limit:
            raise GatewayError(
                400,
                f"Invalid value for 'input': {len(request.inputs)} inputs is above this "
                f"gateway's limit of {limit}.",
                param="input",
                code="invalid_value",
            )

    def respond(self, result: Any, request: Any, trace: Any) -> bytes:
        """The response bytes; vectors converted when the backend ignored ``encoding_format``."""
        raw = raw_of(result)
        if not isinstance(result, EmbeddingResponse):
            return raw if raw is not None else orjson.dumps(result.to_dict())
        want_b64 = request.encoding_format == "base64"
        changed = False
        for item in result.data:
            vec = item.embedding
            if want_b64 and isinstance(vec, list):
                item.embedding = _float_b64(vec)
                changed = True
            elif not want_b64 and isinstance(vec, str):
                item.embedding = _b64_floats(vec)
                changed = True
        if changed:
            result.drop_raw()
            return orjson.dumps(result.to_dict())
        return raw if raw is not None else orjson.dumps(result.to_dict())


def routes(gateway: Gateway) -> list[Route]:
    """The OpenAI inference routes."""
    return [
        Route("/v1/chat/completions", ("POST",), gateway.handler(ChatEndpoint()),
              "Chat completion", ChatRequest, ChatResponse, stream=True),
        Route("/v1/completions", ("POST",), gateway.handler(CompletionsEndpoint()),
              "Text completion", CompletionRequest, CompletionResponse, stream=True),
        Route("/v1/embeddings", ("POST",), gateway.handler(EmbeddingsEndpoint()),
              "Embeddings", EmbeddingRequest, EmbeddingResponse),
    ]  # fmt: skip
