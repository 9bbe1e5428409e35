"""The OpenAI-compatible HTTP surface: ``create_app(router, settings) -> FastAPI``.

The hot routes (``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``) and the
small GET routes are served by plain ASGI handlers that :class:`GatewayApp` dispatches to
before FastAPI's routing runs: no ``Request`` object, no dependency solving, no body
validation machinery, no ``BaseHTTPMiddleware``.  A request body is parsed with one
``Model.model_validate_json(body)`` call; a response that came from an OpenAI-compatible
backend is relayed as the exact bytes it arrived as (``WireModel.raw``); a stream is relayed
as ``b"data: " + chunk.raw + b"\\n\\n"`` per chunk.  The same routes are also declared on the
FastAPI app (with their request schemas in ``openapi_extra``) so that ``/openapi.json`` is
complete and the routes work when the app is reached through FastAPI's router.

Every answer carries ``x-request-id`` (the client's, when safe, else a fresh one),
``x-inference-backend`` (who served, ``none`` when nobody did) and
``x-inference-overhead-ms`` (the gateway's own time until the answer started: total minus
the time spent in the router waiting on upstreams).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import ValidationError

from ..errors import InferenceError, ModelNotFound
from ..models import (
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    CompletionResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelInfo,
    WireModel,
)
from ..routing.sync import seed_health
from .errors import GatewayError, error_for, validation_error
from .limits import RequestLimits, shown
from .logs import ACCESS_LOGGER, LOGGER
from .metrics import CONTENT_TYPE_LATEST, GatewayMetrics
from .security import (
    KeyChecker,
    Redactor,
    clean_request_id,
    collect_addresses,
    collect_secrets,
    new_request_id,
    public_health,
)
from .settings import GatewaySettings

__all__ = ["GatewayApp", "create_app"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Handler = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger(LOGGER)
access_log = logging.getLogger(ACCESS_LOGGER)

_JSON = (b"content-type", b"application/json")
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_DONE = b"data: [DONE]\n\n"
_CLOSE = (b"connection", b"close")
_NONE = b"none"
_FLUSH_BYTES = 64 * 1024
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


async def _call_watching_client(
    call: Callable[..., Awaitable[Any]], request: Any, trace: Any, receive: Receive
) -> Any:
    """Await the router; a client that hangs up meanwhile cancels it at once.

    The router's cancellation closes the upstream connection, so the backend stops generating
    (vLLM and llama.cpp abort a request whose connection closed).  Streams are covered up to
    their first chunk here, and by the relay's own watcher after it.
    """
    task = asyncio.current_task()
    state = {"active": True, "gone": False}

    def on_message(fut: asyncio.Future[Any]) -> None:
        if not state["active"] or fut.cancelled() or fut.exception() is not None:
            return
        if fut.result().get("type") == "http.disconnect" and task is not None:
            state["gone"] = True
            task.cancel()

    watcher = asyncio.ensure_future(receive())
    watcher.add_done_callback(on_message)
    try:
        return await call(request, trace=trace)
    except asyncio.CancelledError:
        if not state["gone"] or task is None:
            raise
        task.uncancel()
        raise ClientGone from None
    finally:
        state["active"] = False
        if not watcher.done():
            watcher.cancel()


class ClientGone(Exception):
    """The client went away before it got its answer (while sending, or while we waited)."""


@dataclass
class _FallbackTrace:
    """Used only when ``inference_core.router`` is not importable (stand-in routers in tests)."""

    request_id: str = ""
    backend: str | None = None
    model: str | None = None
    attempts: list[Any] = field(default_factory=list)
    retries: int = 0
    fallbacks: int = 0
    usage: Any = None


def _trace_class() -> type:
    try:
        from ..router import RequestTrace
    except ImportError:  # the router is not there (partial checkout, stand-in routers)
        return _FallbackTrace
    return RequestTrace


class _Resume:
    """Await the rest of an awaitable that :func:`_next_now` started by hand."""

    __slots__ = ("_gen", "_pending")

    def __init__(self, gen: Any, pending: Any) -> None:
        self._gen = gen
        self._pending = pending

    def __await__(self) -> Any:
        gen = self._gen
        pending = self._pending
        while True:
            try:
                value = yield pending
            except BaseException as exc:  # cancellation, timeouts: into the awaitable
                try:
                    pending = gen.throw(exc)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                pending = gen.send(value)
            except StopIteration as stop:
                return stop.value


def _next_now(iterator: Any) -> tuple[Any, _Resume | None]:
    """``(chunk, None)`` when the next chunk is available without waiting, else
    ``(None, awaitable)``.  Raises ``StopAsyncIteration`` at the end.

    Runs ``iterator.__anext__()`` up to its first suspension point: if it finishes there
    (the chunk was already buffered), nothing was waited for; otherwise the returned
    awaitable continues it exactly where it stopped (the pending future is handed to the
    event loop as a plain ``await`` would).
    """
    gen = iterator.__anext__().__await__()
    try:
        pending = gen.send(None)
    except StopIteration as stop:
        return stop.value, None
    return None, _Resume(gen, pending)


class _RawASGI(Response):
    """A Response that runs one of the gateway's ASGI handlers (FastAPI's route path)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        await self.handler(scope, receive, send)


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


def _check_int_range(request: WireModel) -> None:
    """Reject integers no backend can take (JSON encoders stop at 64 bits): 400 naming them.

    Only run when the body has a run of 19+ digits, so it costs nothing on ordinary bodies.
    """
    path = _find_big_int(request.model_dump(), "")
    if path is not None:
        raise GatewayError(
            400,
            f"Invalid value for '{path}': the integer is out of the 64-bit range.",
            param=path,
            code="invalid_value",
        )


def _raw_of(obj: Any) -> bytes | None:
    """``obj.raw`` without pydantic's ``__getattr__`` slow path (4 us -> 0.1 us per chunk)."""
    private = getattr(obj, "__pydantic_private__", None)
    if private:
        return private.get("_raw")
    return None


def _float_b64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def _b64_floats(text: str) -> list[float]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


class Gateway:
    """The per-app state and the ASGI handlers (one instance per :func:`create_app`)."""

    def __init__(self, router: Any, settings: GatewaySettings) -> None:
        self.router = router
        self.settings = settings
        self.keys = KeyChecker(k.get_secret_value() for k in settings.api_keys)
        secrets = collect_secrets(router, settings.api_keys)
        self.redact = Redactor(secrets)  # logs: secrets out, addresses kept
        self.public = Redactor(secrets, collect_addresses(router))  # clients: addresses out too
        self.metrics: GatewayMetrics | None = GatewayMetrics() if settings.metrics else None
        self.access = settings.access_log
        self.max_body = settings.max_body_bytes
        self.max_tokens = settings.max_tokens_cap
        self.max_n = settings.max_n
        self.max_inputs = settings.max_embed_inputs
        self.limits = RequestLimits(settings)
        self.protect_metrics = settings.protect_metrics and self.keys.enabled
        self.protect_health = settings.protect_health and self.keys.enabled
        self.trace_cls = _trace_class()
        self._backend_bytes: dict[str | None, bytes] = {None: _NONE}
        self._model_bytes: dict[str | None, bytes] = {None: _NONE}
        self.routes: dict[str, tuple[bytes, Handler]] = {
            "/v1/chat/completions": (b"POST", self.chat),
            "/v1/completions": (b"POST", self.complete),
            "/v1/embeddings": (b"POST", self.embeddings),
            "/v1/models": (b"GET", self.models),
            "/v1/health/inference": (b"GET", self.health_detail),
            "/health": (b"GET", self.liveness),
            "/ready": (b"GET", self.readiness),
        }
        if self.metrics is not None:
            self.routes["/metrics"] = (b"GET", self.prometheus)

    # ------------------------------------------------------------------ helpers

    def _backend_header(self, backend: str | None) -> bytes:
        value = self._backend_bytes.get(backend)
        if value is None:
            value = self._backend_bytes[backend] = str(backend).encode("latin-1", "replace")
        return value

    def _model_header(self, trace: Any) -> list[tuple[bytes, bytes]]:
        """``x-inference-model``: the model that answered (printable ASCII, at most 200)."""
        model = getattr(trace, "model", None)
        value = self._model_bytes.get(model)
        if value is None:
            text = "".join(c if " " <= c <= "~" else "?" for c in str(model)[:200])
            if len(self._model_bytes) > 1024:
                self._model_bytes = {None: _NONE}
            value = self._model_bytes[model] = text.encode("ascii")
        return [(b"x-inference-model", value)]

    @staticmethod
    def _headers(scope: Scope) -> tuple[bytes | None, bytes | None, bytes | None]:
        auth = rid = clen = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value
            elif name == b"x-request-id":
                rid = value
            elif name == b"content-length":
                clen = value
        return auth, rid, clen

    async def _read_body(self, receive: Receive, clen: bytes | None) -> bytes:
        limit = self.max_body
        if clen is not None:
            try:
                declared = int(clen)
            except ValueError:
                raise GatewayError(400, "Invalid Content-Length header.") from None
            if declared > limit:
                raise self._too_large()
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            if len(body) > limit:
                raise self._too_large()
            return body
        parts = [body]
        size = len(body)
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise self._too_large()
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)

    def _too_large(self) -> GatewayError:
        return GatewayError(
            413,
            f"The request body is larger than the gateway accepts ({self.max_body} bytes).",
            code="request_too_large",
            headers=[_CLOSE],
        )

    def _unauthorized(self) -> GatewayError:
        return GatewayError(
            401,
            "Missing or invalid API key for this gateway (send 'Authorization: Bearer <key>').",
            code="invalid_api_key",
        )

    def _cap(self, value: int | None, cap: int, param: str) -> None:
        if cap and value is not None and value > cap:
            raise GatewayError(
                400,
                f"Invalid value for '{param}': {value} is above this gateway's limit of {cap}.",
                param=param,
                code="invalid_value",
            )

    @staticmethod
    def _method_not_allowed(allowed: bytes) -> GatewayError:
        return GatewayError(
            405,
            f"Method not allowed; use {allowed.decode()}.",
            code="method_not_allowed",
            headers=[(b"allow", allowed)],
        )

    async def _send_json(
        self,
        send: Send,
        status: int,
        body: bytes,
        rid: bytes,
        backend: bytes,
        overhead_ms: float,
        extra: list[tuple[bytes, bytes]] | None = None,
        content_type: tuple[bytes, bytes] = _JSON,
    ) -> None:
        headers = [
            content_type,
            (b"content-length", b"%d" % len(body)),
            (b"x-request-id", rid),
            (b"x-inference-backend", backend),
            (b"x-inference-overhead-ms", b"%.3f" % overhead_ms),
        ]
        if extra:
            headers.extend(extra)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _log_error(self, exc: BaseException, rid: str, path: str) -> None:
        if isinstance(exc, GatewayError | InferenceError):
            return
        import traceback

        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        log.error(
            "unhandled error while serving a request",
            extra={"fields": {"request_id": rid, "path": path, "exc": self.redact(text)}},
        )

    def _finish(
        self,
        endpoint: str,
        scope: Scope,
        rid: str,
        status: int,
        t0: float,
        overhead: float | None,
        trace: Any,
        model: str | None,
        stream: bool = False,
        ttft: float | None = None,
        error: str | None = None,
        attempts_before: int | None = None,
    ) -> None:
        """Metrics and the access line for one finished request."""
        backend = getattr(trace, "backend", None) if trace is not None else None
        duration = perf_counter() - t0
        if self.metrics is not None:
            self.metrics.record(
                endpoint, backend or "none", status, duration, overhead, ttft, trace,
                attempts_before,
            )  # fmt: skip
        if self.access:
            usage = getattr(trace, "usage", None) if trace is not None else None
            fields: dict[str, Any] = {
                "request_id": rid,
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "backend": backend,
                "model": shown(model),
                "served_model": getattr(trace, "model", None) if trace is not None else None,
                "stream": stream,
                "latency_ms": round(duration * 1000, 3),
                "overhead_ms": round(overhead * 1000, 3) if overhead is not None else None,
                "ttft_ms": round(ttft * 1000, 3) if ttft is not None else None,
                "prompt_tokens": getattr(usage, "prompt_tokens", None),
                "completion_tokens": getattr(usage, "completion_tokens", None),
                "retries": getattr(trace, "retries", 0) if trace is not None else 0,
                "fallbacks": getattr(trace, "fallbacks", 0) if trace is not None else 0,
            }
            if error:
                fields["error"] = self.redact(error)
            access_log.info("request", extra={"fields": fields})

    # ------------------------------------------------------------------ inference routes

    async def chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._inference(scope, receive, send, "chat", ChatRequest, self.router.chat)

    async def complete(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._inference(
            scope, receive, send, "completions", CompletionRequest, self.router.complete
        )

    async def embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._inference(
            scope, receive, send, "embeddings", EmbeddingRequest, self.router.embed
        )

    def _check_caps(self, request: Any) -> None:
        self.limits.check(request)  # gateway/limits.py: every request cap

    async def _inference(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        endpoint: str,
        model_cls: type[WireModel],
        call: Callable[..., Awaitable[Any]],
    ) -> None:
        t0 = perf_counter()
        metrics = self.metrics
        if metrics is not None:
            metrics.begin()
        auth, rid_raw, clen = self._headers(scope)
        rid = clean_request_id(rid_raw) or new_request_id()
        rid_b = rid.encode()
        trace: Any = None
        request: Any = None
        waited = 0.0
        status = 500
        error: str | None = None
        try:
            if scope["method"] != "POST":
                raise self._method_not_allowed(b"POST")
            if not self.keys.check(auth):
                raise self._unauthorized()
            body = await self._read_body(receive, clen)
            try:
                request = model_cls.model_validate_json(body)
            except ValidationError as exc:
                raise validation_error(exc) from None
            if _LONG_DIGITS.search(body) is not None:
                _check_int_range(request)
            self._check_caps(request)
            trace = self.trace_cls(request_id=rid)
            t1 = perf_counter()
            result = await _call_watching_client(call, request, trace, receive)
            waited = perf_counter() - t1
            if isinstance(result, WireModel):
                raw = _raw_of(result)
                if isinstance(result, EmbeddingResponse):
                    raw = self._embedding_body(result, request, raw)
                elif raw is None:
                    raw = orjson.dumps(result.to_dict())
                if trace.usage is None:
                    trace.usage = getattr(result, "usage", None)
                overhead = perf_counter() - t0 - waited
                status = 200
                await self._send_json(
                    send, 200, raw, rid_b, self._backend_header(trace.backend), overhead * 1000,
                    self._model_header(trace),
                )  # fmt: skip
                self._finish(endpoint, scope, rid, 200, t0, overhead, trace, request.model)
                return
            # a stream: the router has pulled the first chunk already
            await self._stream(scope, receive, send, endpoint, result, request, trace, rid,
                               t0, waited)  # fmt: skip
            return
        except ClientGone:
            status = 499
            error = "client disconnected"
            overhead = perf_counter() - t0 - waited
            self._finish(endpoint, scope, rid, 499, t0, overhead, trace, None, error=error)
            return
        except Exception as exc:
            self._log_error(exc, rid, scope["path"])
            status, body, extra = error_for(exc, self.public)
            error = getattr(exc, "message", None) or type(exc).__name__
            overhead = perf_counter() - t0 - waited
            backend = getattr(trace, "backend", None) if trace is not None else None
            await self._send_json(
                send, status, body, rid_b, self._backend_header(backend), overhead * 1000, extra
            )
            model = getattr(request, "model", None)
            self._finish(endpoint, scope, rid, status, t0, overhead, trace, model, error=error)

    def _embedding_body(
        self, result: EmbeddingResponse, request: EmbeddingRequest, raw: bytes | None
    ) -> bytes:
        """The response bytes; vectors converted when the backend ignored ``encoding_format``."""
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

    async def _stream(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        endpoint: str,
        chunks: AsyncIterator[WireModel],
        request: Any,
        trace: Any,
        rid: str,
        t0: float,
        waited: float,
    ) -> None:
        """Relay a stream as SSE.

        The first chunk goes out with the headers at once.  After that, chunks that are
        already available (the upstream delivered several events in one read) are written
        together; the buffer is flushed whenever the next chunk would have to be waited for,
        so coalescing never delays a byte.  A client that hangs up cancels the relay, which
        closes the upstream (the backend stops generating).
        """
        include_usage = bool(request.stream_options and request.stream_options.get("include_usage"))
        overhead = perf_counter() - t0 - waited
        attempts_before = len(trace.attempts)
        headers = [
            *_SSE_HEADERS,
            (b"x-request-id", rid.encode()),
            (b"x-inference-backend", self._backend_header(trace.backend)),
            (b"x-inference-overhead-ms", b"%.3f" % (overhead * 1000)),
            *self._model_header(trace),
        ]
        task = asyncio.current_task()
        state = [True, False]  # streaming, client gone

        def _on_disconnect(fut: asyncio.Future[Any]) -> None:
            # the client hung up: stop pulling from the upstream (it stops generating)
            if state[0] and not fut.cancelled() and task is not None:
                state[1] = True
                task.cancel()

        watcher: asyncio.Future[Any] | None = None
        ttft: float | None = None
        usage_seen = None
        status = 200
        error: str | None = None
        buf: list[bytes] = []
        size = 0
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            try:
                while True:
                    try:
                        chunk, pending = _next_now(chunks)
                        if pending is not None:
                            if buf:  # about to wait: write what we have first
                                await send(
                                    {"type": "http.response.body", "body": b"".join(buf),
                                     "more_body": True}
                                )  # fmt: skip
                                buf.clear()
                                size = 0
                            chunk = await pending
                    except StopAsyncIteration:
                        break
                    raw = _raw_of(chunk)
                    usage = chunk.usage  # type: ignore[attr-defined]
                    if usage is not None:
                        usage_seen = usage
                        if not include_usage and not chunk.choices:  # type: ignore[attr-defined]
                            continue  # asked for by the router, not by this client
                    if raw is None:
                        raw = orjson.dumps(chunk.to_dict())
                    if ttft is None:
                        await send(
                            {"type": "http.response.body", "body": b"data: " + raw + b"\n\n",
                             "more_body": True}
                        )  # fmt: skip
                        ttft = perf_counter() - t0
                        # from now on, a client that hangs up cancels the relay
                        watcher = asyncio.ensure_future(receive())
                        watcher.add_done_callback(_on_disconnect)
                        continue
                    buf.append(b"data: ")
                    buf.append(raw)
                    buf.append(b"\n\n")
                    size += len(raw)
                    if size > _FLUSH_BYTES:
                        await send(
                            {"type": "http.response.body", "body": b"".join(buf),
                             "more_body": True}
                        )  # fmt: skip
                        buf.clear()
                        size = 0
                buf.append(_DONE)
            except asyncio.CancelledError:
                if not state[1]:
                    # cancelled by the server (drain timeout at shutdown): say so in-band
                    state[0] = False
                    status, error = 503, "stream cancelled by the gateway (shutting down)"
                    await _aclose(chunks)
                    buf.append(b"data: " + _SHUTDOWN_EVENT + b"\n\n")
                    await send(
                        {"type": "http.response.body", "body": b"".join(buf), "more_body": False}
                    )
                    raise
                if task is not None:
                    task.uncancel()
                status = 499
                error = "client disconnected during the stream"
                await _aclose(chunks)
                return
            except Exception as exc:
                # after the first byte: an in-band error event and no [DONE]
                self._log_error(exc, rid, scope["path"])
                _st, body, _h = error_for(exc, self.public)
                buf.append(b"data: " + body + b"\n\n")
                error = getattr(exc, "message", None) or type(exc).__name__
                if self.metrics is not None:
                    reason = getattr(exc, "kind", "internal_error")
                    self.metrics.stream_error(trace.backend or "none", reason)
            state[0] = False
            await send({"type": "http.response.body", "body": b"".join(buf), "more_body": False})
        finally:
            state[0] = False
            if watcher is not None and not watcher.done():
                watcher.cancel()
            if trace.usage is None and usage_seen is not None:
                trace.usage = usage_seen
            self._finish(endpoint, scope, rid, status, t0, overhead, trace,
                         getattr(request, "model", None), True, ttft, error,
                         attempts_before)  # fmt: skip

    # ------------------------------------------------------------------ GET routes

    async def _simple(
        self,
        scope: Scope,
        send: Send,
        endpoint: str,
        produce: Callable[[], Awaitable[tuple[int, bytes]]],
        protected: bool = True,
        content_type: tuple[bytes, bytes] = _JSON,
    ) -> None:
        t0 = perf_counter()
        metrics = self.metrics
        if metrics is not None:
            metrics.begin()
        auth, rid_raw, _clen = self._headers(scope)
        rid = clean_request_id(rid_raw) or new_request_id()
        error = None
        try:
            if scope["method"] not in ("GET", "HEAD"):
                raise self._method_not_allowed(b"GET")
            if protected and not self.keys.check(auth):
                raise self._unauthorized()
            status, body = await produce()
            await self._send_json(
                send, status, body, rid.encode(), _NONE, (perf_counter() - t0) * 1000,
                content_type=content_type,
            )  # fmt: skip
        except Exception as exc:
            self._log_error(exc, rid, scope["path"])
            status, body, extra = error_for(exc, self.public)
            error = getattr(exc, "message", None) or type(exc).__name__
            await self._send_json(
                send, status, body, rid.encode(), _NONE, (perf_counter() - t0) * 1000, extra
            )
        self._finish(endpoint, scope, rid, status, t0, None, None, None, error=error)

    async def models(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def produce() -> tuple[int, bytes]:
            items: list[ModelInfo] = await self.router.list_models()
            data = [m.to_dict() if isinstance(m, WireModel) else dict(m) for m in items]
            return 200, orjson.dumps({"object": "list", "data": data})

        await self._simple(scope, send, "models", produce)

    async def model_detail(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /v1/models/{id}``: one model (an id, alias, ``backend/model``), its backends."""
        model_id = scope["path"][len("/v1/models/") :]

        async def produce() -> tuple[int, bytes]:
            found = await self.router.find_model(model_id) if model_id else []
            if not found:
                catalog = getattr(self.router, "catalog", None)
                if catalog is not None:
                    raise catalog.not_found(model_id)
                raise ModelNotFound(f"The model {model_id[:120]!r} does not exist", model=model_id)
            first = found[0].to_dict()
            first["backends"] = [m.backend for m in found]
            return 200, orjson.dumps(first)

        await self._simple(scope, send, "models", produce)

    async def health_detail(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def produce() -> tuple[int, bytes]:
            refresh = b"refresh=true" in scope.get("query_string", b"") or (
                b"refresh=1" in scope.get("query_string", b"")
            )
            backends = await self.router.health(refresh=refresh)
            ready = bool(self.router.ready())
            states = [b.get("state") for b in backends.values() if isinstance(b, dict)]
            if ready and states and all(s == "ready" for s in states):
                overall = "ok"
            elif ready:
                overall = "degraded"
            else:
                overall = "unavailable"
            if self.metrics is not None:
                self.metrics.update_from_health(backends)
            payload = {
                "status": overall,
                "ready": ready,
                **seed_health(backends),  # the seed application's get_health_status() keys
                "backends": public_health(backends),  # replicas by name, not URL
            }
            return 200, orjson.dumps(self.public.deep(payload), default=_json_default)

        await self._simple(scope, send, "health", produce, protected=self.protect_health)

    async def liveness(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def produce() -> tuple[int, bytes]:
            return 200, b'{"status":"ok"}'

        await self._simple(scope, send, "liveness", produce, protected=False)

    async def readiness(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def produce() -> tuple[int, bytes]:
            if self.router.ready():
                return 200, b'{"status":"ready"}'
            return 503, orjson.dumps(
                {
                    "status": "unavailable",
                    "error": {
                        "message": "No backend of the chain is usable.",
                        "type": "service_unavailable",
                        "param": None,
                        "code": "not_ready",
                    },
                }
            )

        await self._simple(scope, send, "readiness", produce, protected=False)

    async def prometheus(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = self.metrics
        assert metrics is not None

        async def produce() -> tuple[int, bytes]:
            try:
                metrics.update_from_health(await self.router.health())
            except Exception:
                log.warning("router.health() failed during a metrics scrape", exc_info=True)
            return 200, metrics.render()

        await self._simple(
            scope, send, "metrics", produce, protected=self.protect_metrics,
            content_type=(b"content-type", CONTENT_TYPE_LATEST.encode()),
        )  # fmt: skip


def _json_default(obj: Any) -> Any:
    if isinstance(obj, WireModel):
        return obj.to_dict()
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if hasattr(obj, "as_dict"):
        return obj.as_dict()
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    return str(obj)


async def _aclose(it: Any) -> None:
    close = getattr(it, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:
            log.debug("error while closing an upstream stream", exc_info=True)


class GatewayApp(FastAPI):
    """FastAPI, with the gateway's ASGI handlers dispatched before FastAPI's routing."""

    gateway: Gateway
    _entry: Callable[[Scope, Receive, Send], Awaitable[None]]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        if scope["type"] == "http" and (
            scope["method"] == "OPTIONS" or scope["path"] not in self.gateway.routes
        ):
            # not a gateway route (docs, schema, 404s, CORS preflights): the headers every
            # response carries are added when missing (the gateway routes set them themselves)
            send = _with_gateway_headers(send, scope)
        await self._entry(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = self.gateway.routes.get(scope["path"])
            if route is not None:
                await route[1](scope, receive, send)
                return
        try:
            await super().__call__(scope, receive, send)
        except Exception:
            # FastAPI's ServerErrorMiddleware re-raises after answering 500 (our handler
            # logged it with the request id): do not let uvicorn log it a second time
            if scope["type"] != "http":
                raise


def _with_gateway_headers(send: Send, scope: Scope) -> Send:
    rid = None
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            rid = clean_request_id(value)
    rid_b = (rid or new_request_id()).encode()

    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            present = {name.lower() for name, _ in headers}
            for name, value in (
                (b"x-request-id", rid_b),
                (b"x-inference-backend", _NONE),
                (b"x-inference-overhead-ms", b"0.000"),
            ):
                if name not in present:
                    headers.append((name, value))
            message = {**message, "headers": headers}
        await send(message)

    return wrapped


def _schema_ref(model: type[WireModel]) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def create_app(
    router: Any,
    settings: GatewaySettings | None = None,
    *,
    manage_router: bool = True,
) -> FastAPI:
    """The gateway app for ``router``.

    ``manage_router``: the app's lifespan calls ``await router.start()`` at start-up and
    ``await router.aclose()`` at shutdown (stopping managed children).  ``settings`` defaults
    to ``GatewaySettings.from_env()``.
    """
    settings = settings or GatewaySettings.from_env()
    gateway = Gateway(router, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_router and hasattr(router, "start"):
            await router.start()
        _attach_state_listener(router, gateway)
        try:
            yield
        finally:
            if manage_router and hasattr(router, "aclose"):
                import inspect

                params = inspect.signature(router.aclose).parameters
                if "drain_timeout" in params:
                    await router.aclose(drain_timeout=settings.drain_timeout)
                else:
                    await router.aclose()

    from .. import __version__

    docs = settings.docs  # INFERENCE_GATEWAY_DOCS: /docs, /redoc, /openapi.json off by default
    app = GatewayApp(
        title="inference-core gateway",
        version=__version__,
        description="OpenAI-compatible gateway over a fallback chain of inference backends.",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.gateway = gateway
    app.state.gateway = gateway
    app.state.router = router
    app.state.settings = settings

    entry: Callable[[Scope, Receive, Send], Awaitable[None]] = app._dispatch
    if settings.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        entry = CORSMiddleware(
            app=app._dispatch,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["authorization", "content-type", "x-request-id"],
            expose_headers=[
                "x-request-id",
                "x-inference-backend",
                "x-inference-model",
                "x-inference-overhead-ms",
            ],
            max_age=600,
        )
    app._entry = entry

    _declare_routes(app, gateway)
    _install_handlers(app, gateway)
    return app


def _declare_routes(app: FastAPI, gateway: Gateway) -> None:
    """The FastAPI side of each route: OpenAPI documentation, and a working slow path."""

    def route(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return _RawASGI(handler)

        endpoint.__name__ = handler.__name__
        endpoint.__doc__ = handler.__doc__
        return endpoint

    def body(model: type[WireModel]) -> dict[str, Any]:
        return {
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _schema_ref(model)}},
            }
        }

    def ok(model: type[WireModel] | None, stream: bool = False) -> dict[int | str, Any]:
        content: dict[str, Any] = {}
        if model is not None:
            content["application/json"] = {"schema": _schema_ref(model)}
        if stream:
            content["text/event-stream"] = {"schema": {"type": "string"}}
        err_schema = {"schema": _schema_ref_error()}
        errors = {
            str(code): {"description": text, "content": {"application/json": err_schema}}
            for code, text in (
                (400, "Invalid request (param names the field)"),
                (401, "Missing or invalid gateway API key"),
                (404, "Unknown model"),
                (413, "Request body too large"),
                (429, "Rate limited (Retry-After)"),
                (503, "Every backend failed (attempts listed; x-should-retry: false)"),
            )
        }  # fmt: skip
        return {200: {"description": "OK", "content": content}, **errors}

    inference = [
        ("/v1/chat/completions", gateway.chat, ChatRequest, ChatResponse, True, "Chat completion"),
        ("/v1/completions", gateway.complete, CompletionRequest, CompletionResponse, True,
         "Text completion"),
        ("/v1/embeddings", gateway.embeddings, EmbeddingRequest, EmbeddingResponse, False,
         "Embeddings"),
    ]  # fmt: skip
    for path, handler, req_model, resp_model, stream, summary in inference:
        app.add_api_route(
            path,
            route(handler),
            methods=["POST"],
            summary=summary,
            openapi_extra=body(req_model),
            responses=ok(resp_model, stream),
            response_class=Response,
        )
    gets = [
        ("/v1/models", gateway.models, "List models (union over usable backends)"),
        ("/v1/health/inference", gateway.health_detail, "Every backend's health"),
        ("/health", gateway.liveness, "Liveness"),
        ("/ready", gateway.readiness, "Readiness: 200 when a backend is usable, else 503"),
    ]
    if gateway.metrics is not None:
        gets.append(("/metrics", gateway.prometheus, "Prometheus metrics"))
    gets.append(("/v1/models/{model_id:path}", gateway.model_detail, "One model and its backends"))
    for path, handler, summary in gets:
        app.add_api_route(
            path, route(handler), methods=["GET"], summary=summary, response_class=Response
        )

    schemas: dict[str, Any] = {}
    for model in (
        ChatRequest, ChatResponse, CompletionRequest, CompletionResponse, EmbeddingRequest,
        EmbeddingResponse,
    ):  # fmt: skip
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemas["ErrorResponse"] = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    }

    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = original()
            spec.setdefault("components", {}).setdefault("schemas", {}).update(schemas)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _schema_ref_error() -> dict[str, Any]:
    return {"$ref": "#/components/schemas/ErrorResponse"}


def _install_handlers(app: FastAPI, gateway: Gateway) -> None:
    """OpenAI-shaped answers for whatever reaches FastAPI's own routing (404, 405, errors)."""
    from starlette.exceptions import HTTPException as StarletteHTTPException

    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "unknown_route", 405: "method_not_allowed"}.get(exc.status_code)
        message = (
            f"Unknown route: {request.method} {request.url.path}"
            if exc.status_code == 404
            else str(exc.detail)
        )
        _status, body, extra = error_for(GatewayError(exc.status_code, message, code=code))
        rid = clean_request_id(request.headers.get("x-request-id", "").encode()) or new_request_id()
        headers = {k.decode(): v.decode() for k, v in extra}
        headers.update(dict(exc.headers or {}))
        headers.update({"x-request-id": rid, "x-inference-backend": "none",
                        "x-inference-overhead-ms": "0.000"})  # fmt: skip
        return Response(body, status_code=exc.status_code, headers=headers,
                        media_type="application/json")  # fmt: skip

    async def unexpected(request: Request, exc: Exception) -> Response:
        rid = clean_request_id(request.headers.get("x-request-id", "").encode()) or new_request_id()
        gateway._log_error(exc, rid, request.url.path)
        status, body, extra = error_for(exc, gateway.public)
        headers = {k.decode(): v.decode() for k, v in extra}
        headers.update({"x-request-id": rid, "x-inference-backend": "none",
                        "x-inference-overhead-ms": "0.000"})  # fmt: skip
        return Response(body, status_code=status, headers=headers, media_type="application/json")

    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected)


def _attach_state_listener(router: Any, gateway: Gateway) -> None:
    """Feed backend state changes into the metrics, when the router offers a listener hook."""
    metrics = gateway.metrics
    if metrics is None:
        return
    add = getattr(router, "add_state_listener", None)
    if not callable(add):
        return

    def listener(
        backend: str, state: str | None = None, breaker: str | None = None, **_: Any
    ) -> None:
        metrics.set_backend_state(backend, state, breaker)

    try:
        add(listener)
    except Exception:
        log.warning("could not attach the backend state listener", exc_info=True)
