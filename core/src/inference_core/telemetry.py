"""OpenTelemetry traces: one span per request, one child span per backend attempt.

Optional (``pip install 'inference-switchboard[otel]'``) and off unless asked for: :func:`from_env`
returns ``None`` when neither ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` nor
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, when ``OTEL_SDK_DISABLED=true`` or when
``OTEL_TRACES_EXPORTER=none``.  Off costs nothing: this module imports no ``opentelemetry``
package at import time, callers keep ``None`` and do one ``is not None`` check per request.

On, the spans go over OTLP (``http/protobuf``, or ``grpc`` with
``opentelemetry-exporter-otlp-proto-grpc`` installed, by ``OTEL_EXPORTER_OTLP_PROTOCOL``)
through a batch processor; the SDK itself honours the other standard variables
(``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_EXPORTER_OTLP_TIMEOUT``,
``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``, ``OTEL_PROPAGATORS``, ...).  A global tracer
provider that the application already installed (``opentelemetry-instrument``) is used as is.

The contract, for the gateway (or any caller that owns a request) and the router:

* ``span = telemetry.start_request(op, model, ...)`` when a request starts; put it on the
  :class:`~inference_core.router.RequestTrace` (``trace.span``) so that the router sees it;
* the router calls :meth:`RequestSpan.attempt_start` before each try of a backend replica,
  then :meth:`~RequestSpan.attempt_ok` or :meth:`~RequestSpan.attempt_failed`; a stream's
  attempt stays open until :meth:`~RequestSpan.attempt_end` (the routed stream's end);
* ``span.end(trace, status=..., error=...)`` once, when the response (or stream) is done:
  it adds the serving backend, the response model and the token usage.

Attributes follow the OpenTelemetry GenAI semantic conventions (``gen_ai.operation.name``,
``gen_ai.request.model``, ``gen_ai.response.model``, ``gen_ai.usage.input_tokens`` /
``output_tokens``, ``gen_ai.provider.name`` and the older ``gen_ai.system``,
``server.address`` / ``server.port``, ``error.type``), plus ``inference.*`` ones for the
routing: ``inference.backend``, ``inference.replica`` (the index of the backend's URL, never
the URL), ``inference.attempt.outcome``, ``inference.attempt.next`` (retry / fallback / resume /
none), ``inference.fallback.reason`` and ``inference.resume.reason``.  No URL, key secret or
header value is ever recorded.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError

__all__ = ["RequestSpan", "Telemetry", "enabled", "from_env", "operation_name"]

#: router op / gateway endpoint -> ``gen_ai.operation.name``
_OPERATIONS = {
    "chat": "chat",
    "complete": "text_completion",
    "completions": "text_completion",
    "embed": "embeddings",
    "embeddings": "embeddings",
}

_TRUE = {"true", "1", "yes", "on"}


def operation_name(op: str) -> str:
    """The GenAI ``gen_ai.operation.name`` of a router op or gateway endpoint name."""
    return _OPERATIONS.get(op, op)


def enabled(env: Mapping[str, str] | None = None) -> bool:
    """True when the standard OTEL_* variables ask for exported traces."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    )


def from_env(
    env: Mapping[str, str] | None = None, *, service_name: str = "inference-gateway"
) -> Telemetry | None:
    """A :class:`Telemetry` exporting over OTLP when :func:`enabled`, else ``None``.

    ``env`` (default ``os.environ``) decides on/off, the endpoint, the protocol and the
    service name; the SDK reads its other OTEL_* variables (headers, timeout, compression,
    resource attributes, sampler, batch sizes) from the process environment itself.
    ``service_name`` is the default ``service.name``; ``OTEL_SERVICE_NAME`` wins over it.
    Raises :class:`~inference_core.errors.ConfigError` naming the variable when traces are
    asked for but the ``otel`` extra is not installed, or the protocol is not supported.
    """
    env = os.environ if env is None else env
    if not enabled(env):
        return None
    variable = (
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        else "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigError(
            f"{variable} is set but the OpenTelemetry SDK is not installed: "
            "pip install 'inference-switchboard[otel]' (or set OTEL_SDK_DISABLED=true)",
            variable=variable,
        ) from None
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):  # the application configured one: use it
        return Telemetry(current)
    protocol_variable = (
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
        if env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "").strip()
        else "OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    protocol = env.get(protocol_variable, "").strip() or "http/protobuf"
    endpoint = env.get(variable, "").strip()
    if variable == "OTEL_EXPORTER_OTLP_ENDPOINT" and protocol == "http/protobuf":
        endpoint = endpoint.rstrip("/") + "/v1/traces"  # what the specification says to do
    exporter = _exporter(protocol, endpoint, protocol_variable)
    service = env.get("OTEL_SERVICE_NAME", "").strip() or service_name
    resource = Resource.create({"service.name": service})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return Telemetry(provider, owned=True)


def _exporter(protocol: str, endpoint: str, variable: str) -> Any:
    if protocol == "http/protobuf":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ConfigError(
                f"{variable}=http/protobuf needs opentelemetry-exporter-otlp-proto-http: "
                "pip install 'inference-switchboard[otel]'",
                variable=variable,
            ) from None
        return OTLPSpanExporter(endpoint=endpoint)
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError:
            raise ConfigError(
                f"{variable}=grpc needs opentelemetry-exporter-otlp-proto-grpc installed "
                "(or use http/protobuf, the default)",
                variable=variable,
            ) from None
        return GrpcExporter(endpoint=endpoint)
    raise ConfigError(
        f"{variable}={protocol!r} is not supported; use http/protobuf (the default) or grpc",
        variable=variable,
    )


def server_address(url: str) -> tuple[str | None, int | None]:
    """``(host, port)`` of a backend URL: never its credentials, path or query."""
    if not url:
        return None, None
    try:
        parts = urlsplit(url)
        return parts.hostname, parts.port
    except ValueError:
        return None, None


class Telemetry:
    """Starts request spans on a tracer provider. Built by :func:`from_env` (or a test)."""

    __slots__ = ("_owned", "_propagate", "provider", "tracer")

    def __init__(self, provider: Any, *, owned: bool = False) -> None:
        from opentelemetry import propagate

        from . import __version__

        self.provider = provider
        self.tracer = provider.get_tracer("inference_core", __version__)
        self._propagate = propagate
        self._owned = owned

    def start_request(
        self,
        op: str,
        model: str | None,
        *,
        request: Any = None,
        request_id: str | None = None,
        stream: bool = False,
        headers: Iterable[tuple[bytes, bytes]] | Mapping[str, str] | None = None,
        endpoint: str | None = None,
        key: str | None = None,
    ) -> RequestSpan:
        """Start the span of one request (kind SERVER, named ``"{operation} {model}"``).

        ``headers``: the incoming request's headers (ASGI pairs or a mapping); a W3C
        ``traceparent`` in them makes this span a child of the caller's trace.
        ``request``: the request model, for ``max_tokens`` / ``temperature`` / ``top_p``.
        ``endpoint``: the gateway route's name (``chat``, ``messages``, ``responses``, ...).
        ``key``: the API key's *name* from the key store (never its secret).
        """
        from opentelemetry.trace import SpanKind

        context = None
        if headers is not None:
            carrier = _carrier(headers)
            if carrier:
                context = self._propagate.extract(carrier)
        operation = operation_name(op)
        attributes: dict[str, Any] = {"gen_ai.operation.name": operation}
        if model:
            attributes["gen_ai.request.model"] = model
        if request_id:
            attributes["inference.request_id"] = request_id
        attributes["inference.stream"] = bool(stream)
        if endpoint:
            attributes["inference.endpoint"] = endpoint
        if key:
            attributes["inference.key"] = key
        if request is not None:
            for name, key in _REQUEST_PARAMS:
                value = getattr(request, name, None)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    attributes[key] = value
        span = self.tracer.start_span(
            f"{operation} {model}" if model else operation,
            context=context,
            kind=SpanKind.SERVER,
            attributes=attributes,
        )
        return RequestSpan(self, span, operation)

    def force_flush(self, timeout_millis: int = 5000) -> bool:
        """Export what is buffered now (tests, shutdown)."""
        flush = getattr(self.provider, "force_flush", None)
        return bool(flush(timeout_millis)) if flush is not None else True

    def shutdown(self) -> None:
        """Flush and stop the exporter, when this object created the provider."""
        if self._owned:
            self.provider.shutdown()
        else:
            self.force_flush()


_REQUEST_PARAMS = (
    ("max_tokens", "gen_ai.request.max_tokens"),
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
)


def _carrier(headers: Iterable[tuple[bytes, bytes]] | Mapping[str, str]) -> dict[str, str]:
    if isinstance(headers, Mapping):
        return {k.lower(): v for k, v in headers.items() if k.lower() in _PROPAGATION}
    out: dict[str, str] = {}
    for name, value in headers:
        key = name.decode("latin-1").lower()
        if key in _PROPAGATION:
            out[key] = value.decode("latin-1")
    return out


_PROPAGATION = frozenset({"traceparent", "tracestate", "baggage"})


class RequestSpan:
    """The span of one request and its attempts' spans. Not thread-safe (one event loop)."""

    __slots__ = (
        "_attempt",
        "_attempt_backend",
        "_attempts",
        "_ended",
        "_failed",
        "_failed_backend",
        "_failed_end",
        "_failed_kind",
        "_failed_midstream",
        "_operation",
        "_recording",
        "_response_model",
        "_telemetry",
        "span",
    )

    def __init__(self, telemetry: Telemetry, span: Any, operation: str) -> None:
        self._telemetry = telemetry
        self.span = span
        self._operation = operation
        self._attempt: Any = None  # the open attempt span
        self._attempt_backend: str | None = None
        self._attempts = 0
        self._failed: Any = None  # a failed attempt, ended once we know what came next
        self._failed_backend: str | None = None
        self._failed_kind: str | None = None
        self._failed_end = 0
        self._failed_midstream = False
        self._response_model: str | None = None
        self._ended = False
        # not sampled (OTEL_TRACES_SAMPLER): no attempt spans, no attributes, nearly free
        self._recording = span.is_recording()

    # ------------------------------------------------------------------ the router's side

    def attempt_start(self, backend: str, replica: int, url: str, model: str | None) -> None:
        """A try of ``backend``'s replica number ``replica`` (0-based) with ``model``."""
        if not self._recording:
            return
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind

        self._close_open("superseded")
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": self._operation,
            "gen_ai.provider.name": backend,
            "gen_ai.system": backend,
            "inference.backend": backend,
            "inference.replica": replica,
        }
        if model:
            attributes["gen_ai.request.model"] = model
        host, port = server_address(url)
        if host:
            attributes["server.address"] = host
            if port is not None:
                attributes["server.port"] = port
        if self._failed is not None:
            if self._failed_midstream:  # a stream cut after its first chunk, continued here
                attributes["inference.resume.from"] = self._failed_backend
                attributes["inference.resume.reason"] = self._failed_kind
                self._settle("resume")
            else:
                if self._failed_backend != backend:
                    attributes["inference.fallback.from"] = self._failed_backend
                    attributes["inference.fallback.reason"] = self._failed_kind
                self._settle("retry" if self._failed_backend == backend else "fallback")
        self._attempts += 1
        attributes["inference.attempt"] = self._attempts
        self._attempt = self._telemetry.tracer.start_span(
            f"{self._operation} {model}" if model else self._operation,
            context=trace.set_span_in_context(self.span),
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )
        self._attempt_backend = backend

    def attempt_ok(self, response_model: str | None = None, *, streaming: bool = False) -> None:
        """The open attempt answered (a stream: its first chunk came; it stays open)."""
        span = self._attempt
        if span is None:
            return
        if streaming:
            if response_model:
                self._response_model = response_model
                span.set_attribute("gen_ai.response.model", response_model)
            return
        if response_model:
            self._response_model = response_model
            span.set_attributes(
                {"gen_ai.response.model": response_model, "inference.attempt.outcome": "ok"}
            )
        else:
            span.set_attribute("inference.attempt.outcome", "ok")
        span.end()
        self._attempt = None

    def attempt_failed(self, kind: str, message: str = "", status: int | None = None) -> None:
        """The open attempt failed with error ``kind`` (the message holds no secret)."""
        from opentelemetry.trace import Status, StatusCode

        span = self._attempt
        if span is None:
            return
        attributes: dict[str, Any] = {"inference.attempt.outcome": kind, "error.type": kind}
        if status is not None:
            attributes["http.response.status_code"] = status
        span.set_attributes(attributes)
        span.set_status(Status(StatusCode.ERROR, message[:500]))
        # ended when the next attempt starts (or the request ends): then we know what followed
        self._failed = span
        self._failed_backend = self._attempt_backend
        self._failed_kind = kind
        self._failed_end = time.time_ns()
        self._failed_midstream = False
        self._attempt = None

    def attempt_end(self, error: Any = None) -> None:
        """The open (stream) attempt is over; ``error``: the taxonomy error that ended it."""
        if self._attempt is None:
            return
        if error is None:
            self._attempt.set_attribute("inference.attempt.outcome", "ok")
            self._attempt.end()
            self._attempt = None
        else:  # cut mid-stream: settled by a resume's attempt, or "none" at the end
            self.attempt_failed(
                getattr(error, "kind", type(error).__name__),
                getattr(error, "message", ""),
                getattr(error, "status", None),
            )
            self._failed_midstream = True

    def _settle(self, following: str) -> None:
        failed = self._failed
        if failed is not None:
            failed.set_attribute("inference.attempt.next", following)
            failed.end(end_time=self._failed_end)
            self._failed = None

    def _close_open(self, outcome: str) -> None:
        span = self._attempt
        if span is not None:
            span.set_attribute("inference.attempt.outcome", outcome)
            span.end()
            self._attempt = None

    # ----------------------------------------------------------------- the caller's side

    def end(self, trace: Any = None, *, status: int | None = None, error: str | None = None):
        """End the request: ``trace`` (a RequestTrace) gives the backend, model and usage;
        ``status`` the HTTP status; ``error`` a message already free of secrets."""
        if self._ended:
            return
        self._ended = True
        span = self.span
        if not self._recording:
            span.end()
            return
        from opentelemetry.trace import Status, StatusCode

        if self._attempt is not None:
            self._close_open("cancelled" if status == 499 else ("error" if error else "ok"))
        self._settle("none")
        attributes: dict[str, Any] = {}  # one set_attributes call: the SDK locks once
        if trace is not None:
            backend = getattr(trace, "backend", None)
            if backend:
                attributes["inference.backend"] = backend
                attributes["gen_ai.provider.name"] = backend
            model = self._response_model or getattr(trace, "model", None)
            if model:
                attributes["gen_ai.response.model"] = model
            usage = getattr(trace, "usage", None)
            if usage is not None:
                prompt = getattr(usage, "prompt_tokens", None)
                completion = getattr(usage, "completion_tokens", None)
                if prompt is not None:
                    attributes["gen_ai.usage.input_tokens"] = prompt
                if completion is not None:
                    attributes["gen_ai.usage.output_tokens"] = completion
            attributes["inference.retries"] = getattr(trace, "retries", 0)
            attributes["inference.fallbacks"] = getattr(trace, "fallbacks", 0)
        if status is not None:
            attributes["http.response.status_code"] = status
        if error or (status is not None and status >= 400):
            kind = _error_type(trace, status)
            attributes["error.type"] = kind
            span.set_status(Status(StatusCode.ERROR, (error or kind)[:500]))
        span.set_attributes(attributes)
        span.end()


def _error_type(trace: Any, status: int | None) -> str:
    attempts = getattr(trace, "attempts", None)
    if attempts:
        return attempts[-1].kind
    if status == 499:
        return "client_disconnected"
    return str(status) if status is not None else "error"
