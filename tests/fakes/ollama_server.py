"""A protocol-faithful fake of Ollama's native API, built from PROTOCOLS.md section 2.

Routes: ``POST /api/chat`` (NDJSON stream by default, ``"stream": false`` for one object),
``POST /api/embed`` (batched, ``dimensions``), ``POST /api/embeddings`` (the superseded
single-prompt route, recorded so tests can assert it is never used), ``GET /api/tags``,
``GET /api/ps``, ``GET /api/version``, ``GET /`` ("Ollama is running").  No ``/health``.

Like the real server: errors are ``{"error": "<text>"}``; a model that is not pulled is a 404
``model "<name>" not found, try pulling it first``; a mid-stream failure is an NDJSON line
``{"error": ...}`` with the status still 200; the last line of a stream has ``"done": true``,
``done_reason`` (``stop``/``length``/``load``), durations in nanoseconds, ``prompt_eval_count``
and ``eval_count``; ``options.num_predict`` cuts the reply with ``done_reason: "length"``;
a model outside ``tool_models`` answers a request with tools with a 400 ``... does not
support tools``;
tool calls carry ``arguments`` as a JSON object (not a string); an empty ``messages`` list
just loads the model (``done_reason: "load"``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ._base import (
    CONTEXT_LENGTH,
    GARBAGE,
    MIDSTREAM_ERROR,
    RESET,
    STATUS_BEHAVIOURS,
    TOOL_CALL,
    TRUNCATED,
    FakeServer,
    RecordedRequest,
    count_tokens,
    dumps,
    fake_vector,
    pieces,
)

_ERRORS = {
    400: "invalid request (fake)",
    401: "unauthorized",
    403: "forbidden",
    404: 'model "{model}" not found, try pulling it first',
    429: "too many requests (fake)",
    500: "llama runner process has terminated: exit status 2",
    502: "bad gateway (fake)",
    503: "server busy, please try again.  maximum pending requests exceeded",
}


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class FakeOllamaServer(FakeServer):
    """The fake Ollama server. ``url`` is what ``ollama.AsyncClient(host=...)`` wants.

    Extra knobs: ``models`` (the pulled models ``/api/tags`` lists; a request for any other
    model is the real 404), ``version`` (``/api/version``), ``load_ms`` (reported
    ``load_duration``).
    """

    def __init__(self, *, models: list[str] | None = None, version: str = "0.12.6", **kwargs: Any):
        super().__init__(**kwargs)
        self.models = models or ["llama3.2:1b", "nomic-embed-text:latest"]
        self.version = version
        self.load_ms = 5
        #: models that can call tools (None: all); others answer Ollama's 400 "does not support
        #: tools" when a request carries ``tools``
        self.tool_models: list[str] | None = None

    def _known(self, name: str | None) -> bool:
        if not name:
            return False
        full = name if ":" in name else name + ":latest"
        return name in self.models or full in self.models

    def error_response(self, status: int, message: str | None = None, model: Any = None) -> Any:
        from starlette.responses import Response

        text = (message or _ERRORS.get(status, f"HTTP {status} (fake)")).replace(
            "{model}", str(model)
        )
        headers = {}
        if status == 429 and self.retry_after is not None:
            headers["retry-after"] = str(self.retry_after)
        return Response(
            dumps({"error": text}),
            status_code=status,
            media_type="application/json",
            headers=headers,
        )

    def _special(self, rec: RecordedRequest) -> Any | None:
        if self.api_key and rec.headers.get("authorization") != f"Bearer {self.api_key}":
            return self.error_response(401)
        body = rec.json if isinstance(rec.json, dict) else None
        model = body.get("model") if body else None
        if rec.behaviour in STATUS_BEHAVIOURS:
            return self.error_response(int(rec.behaviour), model=model)
        if body is None:
            return self.error_response(400, "invalid character 'x' looking for beginning of value")
        if not model:
            return self.error_response(400, "model is required")
        if not self._known(model):
            return self.error_response(404, model=model)
        if rec.behaviour == CONTEXT_LENGTH:
            return self.error_response(
                400, "the input length exceeds the context length (fake, num_ctx 2048)"
            )
        return None

    def _single(self, obj: Any, rec: RecordedRequest) -> Any:
        from starlette.responses import Response

        raw = dumps(obj).encode()
        b = rec.behaviour
        if b == GARBAGE:
            return Response(b"<html>502 Bad Gateway</html>", media_type="text/html")
        if b == TRUNCATED:
            return Response(raw[: len(raw) // 2], media_type="application/json")
        if b == RESET:
            return self.reset_response(raw, "application/json")
        if b == MIDSTREAM_ERROR:
            return self.error_response(500)
        return Response(raw, media_type="application/json; charset=utf-8")

    def _ndjson(self, lines: list[dict[str, Any]], rec: RecordedRequest) -> Any:
        from starlette.responses import StreamingResponse

        out = [dumps(line) + "\n" for line in lines]
        b = rec.behaviour
        if b == MIDSTREAM_ERROR:
            err = "an error was encountered while running the model: unexpected EOF"
            out = [*out[:2], dumps({"error": err}) + "\n"]
        elif b == TRUNCATED:
            out = out[:2]
        elif b == GARBAGE:
            out = ["<html>this is not json</html>\n"]
        elif b == RESET:
            return StreamingResponse(self.cut_off(out[:2]), media_type="application/x-ndjson")
        return StreamingResponse(self.paced(out), media_type="application/x-ndjson")

    # -- routes

    async def chat(self, request: Any) -> Any:
        rec = await self.record(request)
        special = self._special(rec)
        if special is not None:
            return special
        body = rec.json
        model = body["model"]
        if body.get("tools") and self.tool_models is not None and model not in self.tool_models:
            return self.error_response(
                400, f"registry.ollama.ai/library/{model} does not support tools"
            )
        stream = body.get("stream", True)
        messages = body.get("messages") or []
        if not messages:  # load request
            return self._single(
                {
                    "model": model,
                    "created_at": _now(),
                    "message": {"role": "assistant", "content": ""},
                    "done_reason": "load",
                    "done": True,
                },
                rec,
            )
        options = body.get("options") or {}
        fmt = body.get("format")
        text = dumps({"reply": self.reply}) if fmt else self.reply
        for s in options.get("stop") or []:
            if s and s in text:
                text = text[: text.index(s)]
        parts = pieces(text)
        done_reason = "stop"
        limit = options.get("num_predict")
        if isinstance(limit, int) and 0 <= limit < len(parts):
            parts, done_reason = parts[:limit], "length"
        tools = body.get("tools") or []
        call = None
        if rec.behaviour == TOOL_CALL and tools:
            call = {
                "function": {
                    "index": 0,
                    "name": tools[0]["function"]["name"],
                    "arguments": dict(self.tool_arguments),
                }
            }
        prompt_tokens = sum(
            count_tokens(m.get("content") or "") for m in messages if isinstance(m, dict)
        )
        eval_count = 1 if call else len(parts)
        final = {
            "model": model,
            "created_at": _now(),
            "message": {"role": "assistant", "content": ""},
            "done_reason": done_reason,
            "done": True,
            "total_duration": 123_456_789,
            "load_duration": self.load_ms * 1_000_000,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": 10_000_000,
            "eval_count": eval_count,
            "eval_duration": 50_000_000,
        }
        if not stream:
            msg: dict[str, Any] = {"role": "assistant", "content": "".join(parts)}
            if call:
                msg = {"role": "assistant", "content": "", "tool_calls": [call]}
            return self._single({**final, "message": msg}, rec)
        lines: list[dict[str, Any]] = []
        if call:
            lines.append(
                {
                    "model": model,
                    "created_at": _now(),
                    "message": {"role": "assistant", "content": "", "tool_calls": [call]},
                    "done": False,
                }
            )
        else:
            lines.extend(
                {
                    "model": model,
                    "created_at": _now(),
                    "message": {"role": "assistant", "content": p},
                    "done": False,
                }
                for p in parts
            )
        lines.append(final)
        return self._ndjson(lines, rec)

    async def embed(self, request: Any) -> Any:
        rec = await self.record(request)
        special = self._special(rec)
        if special is not None:
            return special
        body = rec.json
        inp = body.get("input")
        inputs = [inp] if isinstance(inp, str) else list(inp or [])
        dim = body.get("dimensions") or self.embedding_dim
        return self._single(
            {
                "model": body["model"],
                "embeddings": [fake_vector(t, dim) for t in inputs],
                "total_duration": 14_143_917,
                "load_duration": self.load_ms * 1_000_000,
                "prompt_eval_count": sum(count_tokens(t) for t in inputs),
            },
            rec,
        )

    async def embeddings_legacy(self, request: Any) -> Any:
        rec = await self.record(request)
        special = self._special(rec)
        if special is not None:
            return special
        return self._single(
            {"embedding": fake_vector(rec.json.get("prompt") or "", self.embedding_dim)}, rec
        )

    def _model_entry(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "model": name,
            "modified_at": "2025-10-01T12:00:00.000000+00:00",
            "size": 1_321_098_329,
            "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
            "details": {
                "parent_model": "",
                "format": "gguf",
                "family": "llama",
                "families": ["llama"],
                "parameter_size": "1.2B",
                "quantization_level": "Q8_0",
            },
        }

    async def tags(self, request: Any) -> Any:
        rec = await self.record(request)
        if rec.behaviour in STATUS_BEHAVIOURS:
            return self.error_response(int(rec.behaviour))
        return self._single({"models": [self._model_entry(m) for m in self.models]}, rec)

    async def ps(self, request: Any) -> Any:
        rec = await self.record(request)
        models = [
            {**self._model_entry(m), "expires_at": "2099-01-01T00:00:00Z", "size_vram": 0}
            for m in self.models[:1]
        ]
        return self._single({"models": models}, rec)

    async def version_route(self, request: Any) -> Any:
        rec = await self.record(request)
        if rec.behaviour in STATUS_BEHAVIOURS:
            return self.error_response(int(rec.behaviour))
        return self._single({"version": self.version}, rec)

    async def root(self, request: Any) -> Any:
        from starlette.responses import PlainTextResponse

        await self.record(request)
        return PlainTextResponse("Ollama is running")

    def build_app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.routing import Route

        return Starlette(
            routes=[
                Route("/", self.root, methods=["GET", "HEAD"]),
                Route("/api/chat", self.chat, methods=["POST"]),
                Route("/api/embed", self.embed, methods=["POST"]),
                Route("/api/embeddings", self.embeddings_legacy, methods=["POST"]),
                Route("/api/tags", self.tags, methods=["GET", "HEAD"]),
                Route("/api/ps", self.ps, methods=["GET"]),
                Route("/api/version", self.version_route, methods=["GET", "HEAD"]),
            ]
        )
