"""The shared request pipeline every protocol module runs through.

One :class:`Gateway` per app holds the state (router, settings, key checker, redactor,
metrics) and runs the steps every route shares, in this order:

1. dispatch (done by :class:`~inference_core.gateway.app.GatewayApp`: plain ASGI, no FastAPI
   ``Request``), method check, API key, body size limit (``Content-Length`` and the bytes
   actually received);
2. the protocol's own steps, from its :class:`Endpoint`: parse the body, check caps, translate
   to the router's request (``router.chat`` / ``complete`` / ``embed`` with a ``RequestTrace``);
3. the router call, cancelled at once when the client hangs up;
4. the answer: the endpoint's body bytes (non-streamed), or the stream relay that writes each
   frame the endpoint's :class:`Framer` makes of a router chunk, coalescing frames that are
   ready together and never delaying one;
5. errors in the endpoint's protocol shape (before the first byte: a status and body; after it:
   the protocol's in-band error event), the gateway headers (``x-request-id``,
   ``x-inference-backend``, ``x-inference-overhead-ms``), metrics and one access-log line.

The stream relay itself is :mod:`.relay`.

A protocol module (``gateway/api/<name>.py``) only supplies endpoints and routes; it never
repeats any of the above.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from ..errors import InferenceError, ModelNotFound
from ..models import WireModel
from ..protocols._common import ProtocolError
from ..telemetry import from_env as telemetry_from_env
from .caps import RequestLimits, shown
from .errors import GatewayError, error_for
from .logs import ACCESS_LOGGER, LOGGER
from .metrics import GatewayMetrics
from .relay import EndOfStream, relay
from .security import (
    KeyChecker,
    Redactor,
    clean_request_id,
    collect_addresses,
    collect_secrets,
    new_request_id,
)
from .settings import GatewaySettings
from .teams import Teams, ask_usage

__all__ = [
    "JSON",
    "NONE",
    "ClientGone",
    "EndOfStream",
    "Endpoint",
    "Framer",
    "Gateway",
    "Handler",
    "Receive",
    "Route",
    "Scope",
    "Send",
    "raw_of",
]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Handler = Callable[[Scope, Receive, Send], Awaitable[None]]
ErrorRenderer = Callable[..., tuple[int, bytes, list[tuple[bytes, bytes]]]]

log = logging.getLogger(LOGGER)
access_log = logging.getLogger(ACCESS_LOGGER)

JSON = (b"content-type", b"application/json")
CLOSE = (b"connection", b"close")
NONE = b"none"


@dataclass(frozen=True)
class Route:
    """One HTTP route a protocol module serves.

    ``path`` is matched exactly; with ``prefix=True`` it is a prefix (``/v1/responses/`` serves
    ``/v1/responses/{id}``) and ``openapi_path`` names the templated path for the schema.
    ``request_model`` / ``response_model`` (pydantic models) document the body in
    ``/openapi.json``; ``stream`` says the route can answer with ``text/event-stream``.
    """

    path: str
    methods: tuple[str, ...]
    handler: Handler
    summary: str
    request_model: type | None = None
    response_model: type | None = None
    stream: bool = False
    prefix: bool = False
    openapi_path: str | None = None


class Framer:
    """Turns a router stream (chat/completion chunks) into one protocol's bytes on the wire.

    One instance per stream (it may keep state: open blocks, counters).  ``frame(chunk)``
    returns the bytes to write for one chunk, or ``None``/``b""`` for nothing; ``end()`` the
    bytes that close a complete stream (may be a coroutine, e.g. to store the answer);
    ``error(exc, redact)`` the in-band error event after the first byte; ``shutdown()`` the
    event for a stream the gateway cuts at shutdown.  ``usage`` is the last usage seen.
    """

    usage: Any = None

    def frame(self, chunk: Any) -> bytes | None:  # pragma: no cover - interface
        raise NotImplementedError

    def end(self) -> bytes | Awaitable[bytes]:  # pragma: no cover - interface
        raise NotImplementedError

    def error(self, exc: BaseException, redact: Callable[[str], str]) -> bytes:  # pragma: no cover
        raise NotImplementedError

    def shutdown(self) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError


class Endpoint:
    """One inference route's protocol-specific steps (the pipeline runs everything else).

    * ``name``: the ``endpoint`` label in metrics and the access log (a fixed set);
    * ``operation``: the OpenAPI operation name when not ``name``;
    * ``router_method``: ``"chat"``, ``"complete"`` or ``"embed"``, called with the routed
      request and ``trace=RequestTrace``;
    * ``api_key_header``: a header that may carry the key instead of ``Authorization: Bearer``
      (``key_hint`` names both in the 401's message);
    * ``parse(body)`` -> the protocol's request (raises :class:`GatewayError` for a 4xx);
    * ``check(gateway, request)``: the gateway's caps (max tokens, n, inputs);
    * ``translate``: ``None`` when the router takes the request as is, else an async
      ``translate(request, gateway) -> router request``;
    * ``respond(result, request, trace)`` -> body bytes of a non-streamed answer (or an
      awaitable of them); with ``collects = True``, ``collect(chunks, request, trace)`` makes
      that body from a router stream when the client did not ask to stream (``request.stream``
      false) but the translation streams from the backend (e.g. to find stop sequences);
    * ``framer(request, trace)`` -> a :class:`Framer` for a streamed answer;
    * ``render_error(exc, redact)`` -> ``(status, body, headers)`` in the protocol's shape.
    """

    name = "inference"
    operation: str | None = None
    router_method = "chat"
    api_key_header: bytes | None = None
    key_hint = "'Authorization: Bearer <key>' or 'x-api-key: <key>'"
    translate: Callable[[Any, Gateway], Awaitable[Any]] | None = None
    collects = False

    async def collect(self, chunks: Any, request: Any, trace: Any) -> bytes:
        """The body of a non-streamed answer the router streamed (``collects = True``)."""
        raise NotImplementedError  # pragma: no cover - interface

    def parse(self, body: bytes) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def check(self, gateway: Gateway, request: Any) -> None:
        return None

    def respond(self, result: Any, request: Any, trace: Any) -> bytes | Awaitable[bytes]:
        raise NotImplementedError  # pragma: no cover - interface

    def framer(self, request: Any, trace: Any) -> Framer:  # pragma: no cover - interface
        raise NotImplementedError

    def render_error(
        self, exc: BaseException, redact: Callable[[str], str] | None = None
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        return error_for(exc, redact)


class ClientGone(Exception):
    """The client went away before it got its answer (while sending, or while we waited)."""


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


def raw_of(obj: Any) -> bytes | None:
    """``obj.raw`` without pydantic's ``__getattr__`` slow path (4 us -> 0.1 us per chunk)."""
    private = getattr(obj, "__pydantic_private__", None)
    if private:
        return private.get("_raw")
    return None


class Gateway:
    """The per-app state and the shared pipeline (one instance per ``create_app``)."""

    def __init__(self, router: Any, settings: GatewaySettings, state_settings: Any = None) -> None:
        self.router = router
        self.settings = settings
        self.keys = KeyChecker(k.get_secret_value() for k in settings.api_keys)
        secrets = collect_secrets(router, settings.api_keys)
        self.redact = Redactor(secrets)  # logs: secrets out, addresses kept
        self.public = Redactor(secrets, collect_addresses(router))  # clients: addresses out too
        self.caps = RequestLimits(settings)  # gateway/caps.py: the request caps
        self.metrics: GatewayMetrics | None = GatewayMetrics() if settings.metrics else None
        # keys (INFERENCE_GATEWAY_API_KEYS + the key store), limits, usage, shared state
        # (docs/teams.md)
        self.teams = Teams(
            router, [k.get_secret_value() for k in settings.api_keys], self.metrics,
            state_settings,
        )  # fmt: skip
        self.access = settings.access_log
        self.max_body = settings.max_body_bytes
        self.max_tokens = settings.max_tokens_cap
        self.max_n = settings.max_n
        self.max_inputs = settings.max_embed_inputs
        self.protect_metrics = settings.protect_metrics and self.teams.access.enabled
        self.protect_health = settings.protect_health and self.teams.access.enabled
        self.trace_cls = _trace_class()
        # OpenTelemetry: None unless OTEL_EXPORTER_OTLP_*ENDPOINT asks for traces
        self.telemetry = telemetry_from_env()
        self._backend_bytes: dict[str | None, bytes] = {None: NONE}
        self._model_bytes: dict[str | None, bytes] = {None: NONE}
        # path -> (method, handler), filled by create_app from the protocol modules' routes
        self.routes: dict[str, tuple[bytes, Handler]] = {}
        # (prefix, handler) for templated paths (``/v1/responses/{id}``), tried after routes
        self.prefix_routes: list[tuple[str, Handler]] = []

    def add_routes(self, routes: list[Route]) -> None:
        """Serve ``routes`` on the fast path (exact paths, then prefixes)."""
        for route in routes:
            if route.prefix:
                self.prefix_routes.append((route.path, route.handler))
            else:
                self.routes[route.path] = (route.methods[0].encode(), route.handler)

    def find(self, path: str) -> Handler | None:
        """The handler serving ``path``, or ``None`` (FastAPI's own routing then answers)."""
        route = self.routes.get(path)
        if route is not None:
            return route[1]
        for prefix, handler in self.prefix_routes:
            if path.startswith(prefix) and len(path) > len(prefix):
                return handler
        return None

    # ------------------------------------------------------------------ helpers

    def backend_header(self, backend: str | None) -> bytes:
        value = self._backend_bytes.get(backend)
        if value is None:
            value = self._backend_bytes[backend] = str(backend).encode("latin-1", "replace")
        return value

    def model_header(self, trace: Any) -> list[tuple[bytes, bytes]]:
        """``x-inference-model``: the model that answered (printable ASCII, at most 200)."""
        model = getattr(trace, "model", None)
        value = self._model_bytes.get(model)
        if value is None:
            text = "".join(c if " " <= c <= "~" else "?" for c in str(model)[:200])
            if len(self._model_bytes) > 1024:
                self._model_bytes = {None: NONE}
            value = self._model_bytes[model] = text.encode("ascii")
        return [(b"x-inference-model", value)]

    @staticmethod
    def headers_of(scope: Scope) -> tuple[bytes | None, bytes | None, bytes | None]:
        """``(authorization, x-request-id, content-length)`` from the raw ASGI headers."""
        auth = rid = clen = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value
            elif name == b"x-request-id":
                rid = value
            elif name == b"content-length":
                clen = value
        return auth, rid, clen

    async def read_body(self, receive: Receive, clen: bytes | None) -> bytes:
        """The whole body, or a 413 as soon as it (declared or received) exceeds the limit."""
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
            headers=[CLOSE],
        )

    @staticmethod
    def unauthorized(how: str = "'Authorization: Bearer <key>'") -> GatewayError:
        return GatewayError(
            401, f"Missing or invalid API key for this gateway (send {how}).",
            code="invalid_api_key",
        )  # fmt: skip

    def cap(self, value: int | None, cap: int, param: str) -> None:
        """A 400 naming ``param`` when ``value`` is above a configured cap (0 = no cap)."""
        if cap and value is not None and value > cap:
            raise GatewayError(
                400,
                f"Invalid value for '{param}': {value} is above this gateway's limit of {cap}.",
                param=param,
                code="invalid_value",
            )

    @staticmethod
    def method_not_allowed(allowed: bytes) -> GatewayError:
        return GatewayError(
            405,
            f"Method not allowed; use {allowed.decode()}.",
            code="method_not_allowed",
            headers=[(b"allow", allowed)],
        )

    async def send_json(
        self,
        send: Send,
        status: int,
        body: bytes,
        rid: bytes,
        backend: bytes,
        overhead_ms: float,
        extra: list[tuple[bytes, bytes]] | None = None,
        content_type: tuple[bytes, bytes] = JSON,
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

    def log_error(self, exc: BaseException, rid: str, path: str) -> None:
        """Log an unexpected exception (with its traceback, redacted) by request id."""
        if isinstance(exc, GatewayError | InferenceError | ProtocolError):
            return
        import traceback

        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        log.error(
            "unhandled error while serving a request",
            extra={"fields": {"request_id": rid, "path": path, "exc": self.redact(text)}},
        )

    def finish(
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
        if trace is not None:
            self.teams.settle(trace, status)  # the key's slot, tokens and usage
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
            resumes = getattr(trace, "resumes", None) if trace is not None else None
            if resumes:  # a stream cut after its first chunk: where it went, after how much
                fields["resumes"] = [r.to_log() for r in resumes]
            if error:
                fields["error"] = self.redact(error)
            access_log.info("request", extra={"fields": fields})
        if self.telemetry is not None and trace is not None:  # the request's span ends here
            span = getattr(trace, "span", None)
            if span is not None:
                span.end(trace, status=status, error=self.redact(error) if error else None)

    # ------------------------------------------------------------------ inference pipeline

    def handler(self, ep: Endpoint) -> Handler:
        """The ASGI handler running ``ep`` through the pipeline."""

        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            await self.inference(scope, receive, send, ep)

        handle.__name__ = ep.operation or ep.name
        return handle

    async def inference(self, scope: Scope, receive: Receive, send: Send, ep: Endpoint) -> None:
        """Serve one inference request: every step but the protocol's own (see the module)."""
        t0 = perf_counter()
        metrics = self.metrics
        if metrics is not None:
            metrics.begin()
        auth, rid_raw, clen = self.headers_of(scope)
        rid = clean_request_id(rid_raw) or new_request_id()
        rid_b = rid.encode()
        endpoint = ep.name
        trace: Any = None
        request: Any = None
        record: Any = None
        waited = 0.0
        status = 500
        error: str | None = None
        try:
            if scope["method"] != "POST":
                raise self.method_not_allowed(b"POST")
            record = await self.teams.access.identify(
                auth, alt_key(scope, auth, ep.api_key_header), ep.key_hint
            )
            body = await self.read_body(receive, clen)
            request = ep.parse(body)
            ep.check(self, request)
            routed = request if ep.translate is None else await ep.translate(request, self)
            self.caps.check(routed)  # every protocol's request, as the router will get it
            trace = self.trace_cls(request_id=rid)
            if self.telemetry is not None:
                trace.span = self.telemetry.start_request(
                    ep.router_method, request.model, request=routed, request_id=rid,
                    stream=bool(getattr(request, "stream", False)), headers=scope["headers"],
                    endpoint=endpoint, key=getattr(record, "name", None),
                )  # fmt: skip
            await self.teams.admit(record, getattr(routed, "model", None), trace, rid)
            # streams: ask the backend for usage whatever the client asked (put back below, so
            # the client's own stream_options decide whether it sees the usage chunk)
            restore = ask_usage(routed)
            t1 = perf_counter()
            try:
                result = await _call_watching_client(
                    getattr(self.router, ep.router_method), routed, trace, receive
                )
            finally:
                if restore is not False:
                    routed.stream_options = restore
            waited = perf_counter() - t1
            if isinstance(result, WireModel) or (ep.collects and not request.stream):
                if isinstance(result, WireModel):
                    raw = ep.respond(result, request, trace)
                    if raw.__class__ is not bytes:  # a protocol that stores its answers
                        raw = await raw  # type: ignore[misc]
                    if trace.usage is None:
                        trace.usage = getattr(result, "usage", None)
                else:  # the router streamed for a client that did not ask to
                    raw = await ep.collect(result, request, trace)
                overhead = perf_counter() - t0 - waited
                status = 200
                await self.send_json(
                    send, 200, raw, rid_b, self.backend_header(trace.backend), overhead * 1000,  # type: ignore[arg-type]
                    self.model_header(trace),
                )  # fmt: skip
                self.finish(endpoint, scope, rid, 200, t0, overhead, trace, request.model)
                return
            # a stream: the router has pulled the first chunk already
            await relay(self, scope, receive, send, ep, result, request, trace, rid, t0,
                        waited)  # fmt: skip
            return
        except ClientGone:
            status = 499
            error = "client disconnected"
            overhead = perf_counter() - t0 - waited
            self.finish(endpoint, scope, rid, 499, t0, overhead, trace, None, error=error)
            return
        except Exception as exc:
            self.log_error(exc, rid, scope["path"])
            if isinstance(exc, ModelNotFound) and getattr(record, "models", None):
                exc = exc.only(record.allows)  # no names of models the key may not use
            status, body, extra = ep.render_error(exc, self.public)
            error = getattr(exc, "message", None) or type(exc).__name__
            overhead = perf_counter() - t0 - waited
            backend = getattr(trace, "backend", None) if trace is not None else None
            await self.send_json(
                send, status, body, rid_b, self.backend_header(backend), overhead * 1000, extra
            )
            model = getattr(request, "model", None)
            self.finish(endpoint, scope, rid, status, t0, overhead, trace, model, error=error)

    # ------------------------------------------------------------------ simple GET routes

    async def simple(
        self,
        scope: Scope,
        send: Send,
        endpoint: str,
        produce: Callable[[], Awaitable[tuple[int, bytes]]],
        protected: bool = True,
        content_type: tuple[bytes, bytes] = JSON,
        methods: tuple[str, ...] = ("GET", "HEAD"),
        render_error: ErrorRenderer = error_for,
    ) -> None:
        """Serve a small route whose answer ``produce()`` computes (no body read, no router
        call through the inference pipeline), with the same headers, errors, metrics, log."""
        t0 = perf_counter()
        metrics = self.metrics
        if metrics is not None:
            metrics.begin()
        auth, rid_raw, _clen = self.headers_of(scope)
        rid = clean_request_id(rid_raw) or new_request_id()
        error = None
        try:
            if scope["method"] not in methods:
                raise self.method_not_allowed(methods[0].encode())
            if protected and not self.teams.access.check(auth, alt_key(scope, auth)):
                raise self.unauthorized()
            status, body = await produce()
            await self.send_json(
                send, status, body, rid.encode(), NONE, (perf_counter() - t0) * 1000,
                content_type=content_type,
            )  # fmt: skip
        except Exception as exc:
            self.log_error(exc, rid, scope["path"])
            status, body, extra = render_error(exc, self.public)
            error = getattr(exc, "message", None) or type(exc).__name__
            await self.send_json(
                send, status, body, rid.encode(), NONE, (perf_counter() - t0) * 1000, extra
            )
        self.finish(endpoint, scope, rid, status, t0, None, None, None, error=error)


def alt_key(scope: Scope, auth: bytes | None, header: bytes | None = None) -> bytes | None:
    """The key in ``x-api-key`` (or the endpoint's own header), looked for only when there is
    no ``Authorization`` header: every route takes a key either way (docs/teams.md)."""
    if auth is not None:
        return None
    name = header or b"x-api-key"
    for key, value in scope["headers"]:
        if key == name or key == b"x-api-key":
            return value
    return None


def json_default(obj: Any) -> Any:
    """``orjson`` default for health/model payloads (wire models, dataclasses, sets)."""
    if isinstance(obj, WireModel):
        return obj.to_dict()
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if hasattr(obj, "as_dict"):
        return obj.as_dict()
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    return str(obj)
