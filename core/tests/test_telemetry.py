"""inference_core.telemetry with the real OpenTelemetry SDK.

Two ways in: the SDK's in-memory exporter (span structure, attributes, parents), and a real
OTLP/HTTP receiver started here on loopback that decodes what the SDK's OTLP exporter sends
with the ``opentelemetry-proto`` protobuf types (what a collector would receive).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from inference_core import hookimpl, telemetry
from inference_core.errors import Attempt, ConfigError
from inference_core.http import openai_compat
from inference_core.testing import canned, serve_http, unused_port

# ------------------------------------------------------------------ a real OTLP receiver


class OtlpReceiver:
    """An OTLP/HTTP (``http/protobuf``) trace receiver on 127.0.0.1: a thread, a real socket.

    Every POST to ``/v1/traces`` is decoded as an ``ExportTraceServiceRequest`` and its spans
    flattened into :attr:`spans` (dicts: name, kind, ids, attributes, status, resource).
    """

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        self.pb = trace_service_pb2
        self.spans: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                request = receiver.pb.ExportTraceServiceRequest()
                request.ParseFromString(body)  # raises on anything but real OTLP protobuf
                receiver._add(self.path, dict(self.headers), request)
                reply = receiver.pb.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _add(self, path: str, headers: dict[str, str], request: Any) -> None:
        out = []
        for rs in request.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for span in ss.spans:
                    out.append(
                        {
                            "name": span.name,
                            "kind": span.kind,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_id": span.parent_span_id.hex(),
                            "attributes": {kv.key: _value(kv.value) for kv in span.attributes},
                            "status": span.status.code,
                            "status_message": span.status.message,
                            "start": span.start_time_unix_nano,
                            "end": span.end_time_unix_nano,
                            "resource": resource,
                            "scope": ss.scope.name,
                        }
                    )
        with self._cond:
            self.paths.append(path)
            self.headers.append({k.lower(): v for k, v in headers.items()})
            self.spans.extend(out)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The spans received, once at least ``count`` came (else fail after ``timeout``)."""
        end = time.monotonic() + timeout
        with self._cond:
            while len(self.spans) < count:
                left = end - time.monotonic()
                assert left > 0, f"the receiver got {len(self.spans)} spans, wanted {count}"
                self._cond.wait(left)
            return list(self.spans)

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


def _value(v: Any) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, which) if which else None


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


# ---------------------------------------------------------------------------- helpers


@pytest.fixture
def memory() -> tuple[telemetry.Telemetry, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return telemetry.Telemetry(provider, owned=True), exporter


def by_name(spans: Any) -> dict[str, Any]:
    return {s.name: s for s in spans}


def usage(prompt: int, completion: int) -> Any:
    return SimpleNamespace(prompt_tokens=prompt, completion_tokens=completion)


def a_trace(**kw: Any) -> Any:
    base = {"backend": None, "model": None, "usage": None, "retries": 0, "fallbacks": 0}
    base["attempts"] = []
    base.update(kw)
    return SimpleNamespace(**base)


SECRET_URL = "http://alice:s3cr3t-pw@vllm-0.internal:8000/v1?api_key=sk-zzz"


# ------------------------------------------------------------------------ on or off


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "false"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_enabled_follows_the_standard_variables(env: dict[str, str], on: bool) -> None:
    assert telemetry.enabled(env) is on
    made = telemetry.from_env(env)
    assert (made is not None) is on
    if made is not None:
        made.shutdown()


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={}
    )


def test_off_imports_no_opentelemetry() -> None:
    proc = run_python(
        "import sys\n"
        "from inference_core import telemetry\n"
        "assert telemetry.from_env({}) is None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
        "from inference_core.gateway import GatewaySettings, create_app\n"
        "from inference_core.router import Router\n"
        "env = {'INFERENCE_PROVIDER': 'vllm', 'INFERENCE_VLLM_BASE_URL': 'http://127.0.0.1:1'}\n"
        "app = create_app(Router.from_env(env, env_file=None), GatewaySettings.from_env(env={}))\n"
        "assert app.gateway.telemetry is None\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', "
        "'opentelemetry.exporter', 'opentelemetry.proto'))))\n"
    )
    assert proc.returncode == 0, proc.stderr
    alone, gateway = proc.stdout.split("\n")[:2]
    assert alone == "[]"
    # recent FastAPI releases import the OpenTelemetry API themselves; the SDK stays unloaded
    assert gateway == "[]"


def test_on_without_the_extra_is_a_config_error_naming_the_variable() -> None:
    proc = run_python(
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # as if the otel extra were not installed\n"
        "from inference_core import telemetry\n"
        "from inference_core.errors import ConfigError\n"
        "try:\n"
        "    telemetry.from_env({'OTEL_EXPORTER_OTLP_ENDPOINT': 'http://127.0.0.1:1'})\n"
        "except ConfigError as e:\n"
        "    print(e.variable, '|', e.message)\n"
    )
    assert proc.returncode == 0, proc.stderr
    variable, message = proc.stdout.strip().split(" | ")
    assert variable == "OTEL_EXPORTER_OTLP_ENDPOINT"
    assert "inference-switchboard[otel]" in message
    assert "OTEL_SDK_DISABLED" in message


@pytest.mark.parametrize("protocol", ["http/json", "thrift"])
@pytest.mark.parametrize(
    "variable", ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"]
)
def test_an_unsupported_protocol_is_a_config_error(protocol: str, variable: str) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", variable: protocol}
    with pytest.raises(ConfigError) as info:
        telemetry.from_env(env)
    assert info.value.variable == variable
    assert protocol in info.value.message
    assert "http/protobuf" in info.value.message


def test_server_address_is_the_host_only() -> None:
    assert telemetry.server_address(SECRET_URL) == ("vllm-0.internal", 8000)
    assert telemetry.server_address("https://api.openai.com/v1") == ("api.openai.com", None)
    assert telemetry.server_address("") == (None, None)


# ------------------------------------------------------------------- span structure


def test_fallback_after_a_retry_gives_three_attempt_spans_under_the_request(memory: Any) -> None:
    tel, exporter = memory
    request = SimpleNamespace(max_tokens=16, temperature=0.2, top_p=None)
    span = tel.start_request("chat", "alias", request=request, request_id="req-1")
    span.attempt_start("vllm", 1, SECRET_URL, "gemma-3")
    span.attempt_failed("unavailable", "HTTP 503 from vllm", 503)
    span.attempt_start("vllm", 0, SECRET_URL, "gemma-3")
    span.attempt_failed("timeout", "no answer within 60s")
    span.attempt_start("openai", 0, "https://api.openai.com/v1", "gpt-4o-mini")
    span.attempt_ok("gpt-4o-mini-2024-07-18")
    span.end(
        a_trace(backend="openai", model="gpt-4o-mini", usage=usage(12, 3), retries=1, fallbacks=1),
        status=200,
    )

    spans = exporter.get_finished_spans()
    assert len(spans) == 4
    request_span = next(s for s in spans if s.kind == SpanKind.SERVER)
    clients = [s for s in spans if s.kind == SpanKind.CLIENT]
    attempts = sorted(clients, key=lambda s: s.attributes["inference.attempt"])
    assert request_span.name == "chat alias"
    assert dict(request_span.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "alias",
        "gen_ai.request.max_tokens": 16,
        "gen_ai.request.temperature": 0.2,
        "inference.request_id": "req-1",
        "inference.stream": False,
        "inference.backend": "openai",
        "gen_ai.provider.name": "openai",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 3,
        "inference.retries": 1,
        "inference.fallbacks": 1,
        "http.response.status_code": 200,
    }
    assert request_span.status.status_code == StatusCode.UNSET
    for a in attempts:
        assert a.parent.span_id == request_span.context.span_id
        assert a.context.trace_id == request_span.context.trace_id
        assert request_span.start_time <= a.start_time <= a.end_time <= request_span.end_time

    first, second, third = attempts
    assert first.name == "chat gemma-3"
    assert first.attributes["inference.backend"] == "vllm"
    assert first.attributes["inference.replica"] == 1
    assert first.attributes["server.address"] == "vllm-0.internal"
    assert first.attributes["server.port"] == 8000
    assert first.attributes["gen_ai.system"] == "vllm"
    assert first.attributes["inference.attempt.outcome"] == "unavailable"
    assert first.attributes["error.type"] == "unavailable"
    assert first.attributes["http.response.status_code"] == 503
    assert first.attributes["inference.attempt.next"] == "retry"
    assert first.status.status_code == StatusCode.ERROR
    assert second.attributes["inference.replica"] == 0
    assert second.attributes["inference.attempt.next"] == "fallback"
    assert "inference.fallback.reason" not in second.attributes  # a retry, not a fallback
    assert third.attributes["inference.fallback.from"] == "vllm"
    assert third.attributes["inference.fallback.reason"] == "timeout"
    assert third.attributes["inference.attempt.outcome"] == "ok"
    assert third.attributes["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert third.attributes["server.address"] == "api.openai.com"
    assert "server.port" not in third.attributes

    everything = json.dumps([dict(s.attributes) for s in spans]) + "".join(
        str(s.status.description) for s in spans
    )
    for secret in ("s3cr3t-pw", "alice", "sk-zzz", "/v1"):
        assert secret not in everything


def test_stream_attempt_and_request_end_with_the_stream(memory: Any) -> None:
    tel, exporter = memory
    span = tel.start_request("chat", "m", stream=True)
    span.attempt_start("llamacpp", 0, "http://127.0.0.1:8081", "gemma")
    span.attempt_ok("gemma-3-270m", streaming=True)
    assert exporter.get_finished_spans() == ()  # both open while the stream flows
    span.attempt_end(None)
    assert [s.kind for s in exporter.get_finished_spans()] == [SpanKind.CLIENT]
    span.end(a_trace(backend="llamacpp", model="gemma", usage=usage(5, 7)), status=200)
    spans = by_name(exporter.get_finished_spans())
    assert spans["chat m"].attributes["gen_ai.usage.output_tokens"] == 7
    assert spans["chat m"].attributes["inference.stream"] is True
    assert spans["chat m"].attributes["gen_ai.response.model"] == "gemma-3-270m"
    assert spans["chat gemma"].attributes["inference.attempt.outcome"] == "ok"
    assert spans["chat gemma"].end_time <= spans["chat m"].end_time


def test_a_stream_that_breaks_marks_attempt_and_request_as_errors(memory: Any) -> None:
    tel, exporter = memory
    span = tel.start_request("chat", "m", stream=True)
    span.attempt_start("vllm", 0, "http://vllm:8000", "m")
    span.attempt_ok(None, streaming=True)
    broken = SimpleNamespace(kind="timeout", message="the stream stalled", status=504)
    span.attempt_end(broken)
    trace = a_trace(backend="vllm", model="m", attempts=[Attempt("vllm", "timeout", "stalled")])
    span.end(trace, status=200, error="the stream stalled")
    spans = exporter.get_finished_spans()
    assert len(spans) == 2
    client = next(s for s in spans if s.kind == SpanKind.CLIENT)
    request = next(s for s in spans if s.kind == SpanKind.SERVER)
    assert client.attributes["inference.attempt.outcome"] == "timeout"
    assert client.attributes["inference.attempt.next"] == "none"
    assert client.status.status_code == StatusCode.ERROR
    assert request.status.status_code == StatusCode.ERROR
    assert request.attributes["error.type"] == "timeout"
    assert request.status.description == "the stream stalled"


def test_all_failed_and_client_gone(memory: Any) -> None:
    tel, exporter = memory
    span = tel.start_request("embeddings", "e")
    span.attempt_start("ollama", 0, "http://ollama:11434", "nomic")
    span.attempt_failed("unavailable", "connection refused")
    trace = a_trace(attempts=[Attempt("ollama", "unavailable", "connection refused")])
    span.end(trace, status=503, error="all backends failed")
    gone = tel.start_request("chat", "m")
    gone.attempt_start("ollama", 0, "http://ollama:11434", "m")
    gone.end(a_trace(), status=499, error="client disconnected")
    gone.end(a_trace(), status=200)  # a second end is ignored

    spans = exporter.get_finished_spans()
    assert len(spans) == 4
    failed = next(s for s in spans if s.name == "embeddings nomic")
    assert failed.attributes["inference.attempt.next"] == "none"
    req = next(s for s in spans if s.name == "embeddings e")
    assert req.attributes["error.type"] == "unavailable"
    assert req.attributes["http.response.status_code"] == 503
    cancelled = next(s for s in spans if s.name == "chat m" and s.kind == SpanKind.CLIENT)
    assert cancelled.attributes["inference.attempt.outcome"] == "cancelled"
    req = next(s for s in spans if s.name == "chat m" and s.kind == SpanKind.SERVER)
    assert req.attributes["error.type"] == "client_disconnected"
    assert req.attributes["http.response.status_code"] == 499


def test_an_incoming_traceparent_is_the_parent(memory: Any) -> None:
    tel, exporter = memory
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = "00f067aa0ba902b7"
    headers = [(b"content-type", b"application/json"),
               (b"traceparent", f"00-{trace_id}-{parent}-01".encode())]  # fmt: skip
    tel.start_request("chat", "m", headers=headers).end(a_trace(), status=200)
    (span,) = exporter.get_finished_spans()
    assert f"{span.context.trace_id:032x}" == trace_id
    assert f"{span.parent.span_id:016x}" == parent
    tel.start_request("chat", "m", headers={"X-Other": "1"}).end(a_trace(), status=200)
    assert exporter.get_finished_spans()[-1].parent is None


# --------------------------------------------------------------- over OTLP, for real


def test_spans_reach_a_real_otlp_receiver(receiver: OtlpReceiver) -> None:
    tel = telemetry.from_env(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_SERVICE_NAME": "gw-under-test"}
    )
    assert tel is not None
    span = tel.start_request("chat", "alias", request_id="r-9")
    span.attempt_start("vllm", 0, SECRET_URL, "gemma-3")
    span.attempt_failed("unavailable", "HTTP 503", 503)
    span.attempt_start("ollama", 0, "http://ollama:11434", "gemma3:270m")
    span.attempt_ok("gemma3:270m")
    span.end(a_trace(backend="ollama", model="gemma3:270m", usage=usage(9, 4), fallbacks=1),
             status=200)  # fmt: skip
    tel.shutdown()  # flushes the batch processor

    spans = receiver.wait_for(3)
    assert receiver.paths == ["/v1/traces"]  # the spec's path appended to the base endpoint
    assert receiver.headers[0]["content-type"] == "application/x-protobuf"
    request = next(s for s in spans if s["kind"] == 2)  # SPAN_KIND_SERVER
    attempts = [s for s in spans if s["kind"] == 3]  # SPAN_KIND_CLIENT
    assert request["resource"]["service.name"] == "gw-under-test"
    assert request["scope"] == "inference_core"
    assert request["parent_id"] == ""
    assert request["attributes"]["gen_ai.usage.input_tokens"] == 9
    assert request["attributes"]["gen_ai.usage.output_tokens"] == 4
    assert request["attributes"]["gen_ai.response.model"] == "gemma3:270m"
    assert request["attributes"]["inference.fallbacks"] == 1
    assert {a["parent_id"] for a in attempts} == {request["span_id"]}
    assert {a["trace_id"] for a in attempts} == {request["trace_id"]}
    failed = next(a for a in attempts if a["attributes"]["inference.backend"] == "vllm")
    assert failed["status"] == 2  # STATUS_CODE_ERROR
    assert failed["attributes"]["inference.attempt.next"] == "fallback"
    assert failed["attributes"]["server.address"] == "vllm-0.internal"
    served = next(a for a in attempts if a["attributes"]["inference.backend"] == "ollama")
    assert served["attributes"]["inference.fallback.reason"] == "unavailable"
    assert "s3cr3t" not in json.dumps(spans)


def test_the_traces_endpoint_variable_is_used_as_is(receiver: OtlpReceiver) -> None:
    tel = telemetry.from_env({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url + "/custom"})
    assert tel is not None
    tel.start_request("embeddings", "e").end(a_trace(), status=200)
    tel.shutdown()
    receiver.wait_for(1)
    assert receiver.paths == ["/custom"]


# ------------------------------------------------- wired into the gateway and the router

SECRET = "sk-backend-secret-42"
MSG = [{"role": "user", "content": "hi"}]


class Relay:
    """A backend plugin relaying to an OpenAI-compatible server (as the vLLM plugin does)."""

    @hookimpl
    async def chat(self, request: Any, config: Any, http: Any) -> Any:
        return await openai_compat.chat(http, config, request)

    @hookimpl
    async def embed(self, request: Any, config: Any, http: Any) -> Any:
        return await openai_compat.embed(http, config, request)


def upstream(behaviour: dict[str, str]) -> httpx.MockTransport:
    """Per-host behaviour: ok / 503; chat answers (JSON or SSE with usage) from canned."""

    def handle(request: httpx.Request) -> httpx.Response:
        if behaviour[request.url.host] == "503":
            return httpx.Response(503, json={"error": {"message": f"key {SECRET} overloaded"}})
        body = json.loads(request.content)
        model = request.url.host.split(".")[0] + "-served"
        if request.url.path == "/v1/embeddings":
            return httpx.Response(200, json=canned.embeddings(body["input"], model=model))
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return httpx.Response(
                200,
                headers={"content-type": "text/event-stream"},
                content=canned.chat_stream(model=model, usage=usage),
            )
        return httpx.Response(200, json=canned.chat_completion(model=model))

    return httpx.MockTransport(handle)


ENV = {
    "INFERENCE_PROVIDER": "up",
    "ENABLE_FALLBACK": "true",
    "FALLBACK_CHAIN": "second",
    "INFERENCE_UP_BASE_URL": f"http://user:{SECRET}@up.test:9000/v1",
    "INFERENCE_UP_API_KEY": SECRET,
    "INFERENCE_UP_MODEL": "up-model",
    "INFERENCE_SECOND_BASE_URL": "http://second.test",
    "INFERENCE_SECOND_MODEL": "second-model",
    "INFERENCE_MAX_RETRIES": "1",
    "INFERENCE_RETRY_BACKOFF": "0",
    "HEALTH_CHECK_INTERVAL": "3600",
}


@pytest.fixture
def gateway(memory: Any) -> Any:
    from inference_core.gateway import GatewaySettings, create_app
    from inference_core.router import Router

    def build(
        behaviour: dict[str, str],
        gateway_env: dict[str, str] | None = None,
        state_env: dict[str, str] | None = None,
    ) -> Any:
        from inference_core.state import StateSettings

        router = Router.from_env(
            ENV,
            env_file=None,
            transport=upstream(behaviour),
            extra_plugins={"up": Relay(), "second": Relay()},
        )
        app = create_app(
            router,
            GatewaySettings.from_env(env=gateway_env or {}),
            state_settings=StateSettings.from_env(state_env or {}),
        )
        assert app.gateway.telemetry is None  # no OTEL_* variable in this process: off
        app.gateway.telemetry = memory[0]
        return app

    return build


def asgi_client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw")


async def test_gateway_fallback_spans(gateway: Any, memory: Any) -> None:
    app = gateway({"up.test": "503", "second.test": "ok"})
    async with app.router.lifespan_context(app), asgi_client(app) as c:
        r = await c.post(
            "/v1/chat/completions",
            json={"model": "default", "messages": MSG, "max_tokens": 8},
            headers={"x-request-id": "rid-1"},
        )
    assert r.status_code == 200
    spans = memory[1].get_finished_spans()
    request = next(s for s in spans if s.kind == SpanKind.SERVER)
    attempts = sorted(
        (s for s in spans if s.kind == SpanKind.CLIENT),
        key=lambda s: s.attributes["inference.attempt"],
    )
    assert request.name == "chat default"
    assert request.attributes["inference.request_id"] == "rid-1"
    assert request.attributes["gen_ai.request.max_tokens"] == 8
    assert request.attributes["gen_ai.response.model"] == "second-served"
    assert request.attributes["gen_ai.usage.input_tokens"] == 5
    assert request.attributes["gen_ai.usage.output_tokens"] == 6
    assert request.attributes["inference.backend"] == "second"
    assert request.attributes["inference.retries"] == 1
    assert request.attributes["inference.fallbacks"] == 1
    assert request.attributes["http.response.status_code"] == 200
    assert [a.attributes["inference.backend"] for a in attempts] == ["up", "up", "second"]
    assert [a.attributes["inference.attempt.outcome"] for a in attempts] == [
        "unavailable",
        "unavailable",
        "ok",
    ]
    assert [a.attributes.get("inference.attempt.next") for a in attempts] == [
        "retry",
        "fallback",
        None,
    ]
    assert attempts[0].name == "chat up-model"
    assert attempts[0].attributes["server.address"] == "up.test"
    assert attempts[0].attributes["server.port"] == 9000
    assert attempts[0].attributes["http.response.status_code"] == 503
    assert attempts[2].attributes["inference.fallback.reason"] == "unavailable"
    assert attempts[2].attributes["gen_ai.request.model"] == "second-model"
    assert {a.parent.span_id for a in attempts} == {request.context.span_id}
    text = json.dumps([dict(s.attributes) for s in spans]) + json.dumps(
        [s.status.description for s in spans]
    )
    assert SECRET not in text
    assert "user" not in text


async def test_gateway_stream_span_ends_with_the_stream_and_its_usage(
    gateway: Any, memory: Any
) -> None:
    app = gateway({"up.test": "ok", "second.test": "ok"})
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    body = json.dumps(
        {"messages": MSG, "stream": True, "stream_options": {"include_usage": True}}
    ).encode()
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
        "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1), "server": ("gw", 80),
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"traceparent", f"00-{trace_id}-b7ad6b7169203331-01".encode()),
        ],
    }  # fmt: skip
    sent: list[dict[str, Any]] = []
    ended_while_streaming: list[int] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and message.get("more_body"):
            ended_while_streaming.append(len(memory[1].get_finished_spans()))

    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
    assert sent[0]["status"] == 200
    stream = b"".join(m.get("body", b"") for m in sent[1:])
    assert stream.endswith(b"data: [DONE]\n\n")
    assert ended_while_streaming
    assert set(ended_while_streaming) == {0}  # no span ended while the chunks flowed
    spans = memory[1].get_finished_spans()
    assert len(spans) == 2
    request = next(s for s in spans if s.kind == SpanKind.SERVER)
    attempt = next(s for s in spans if s.kind == SpanKind.CLIENT)
    assert f"{request.context.trace_id:032x}" == trace_id  # joined the client's trace
    assert request.attributes["inference.stream"] is True
    assert request.attributes["gen_ai.usage.output_tokens"] == 3
    assert request.attributes["gen_ai.response.model"] == "up-served"
    assert attempt.attributes["inference.attempt.outcome"] == "ok"
    assert attempt.end_time <= request.end_time


async def test_gateway_all_backends_failed_is_an_error_span(gateway: Any, memory: Any) -> None:
    app = gateway({"up.test": "503", "second.test": "503"})
    async with app.router.lifespan_context(app), asgi_client(app) as c:
        r = await c.post("/v1/embeddings", json={"model": "e", "input": ["a"]})
    assert r.status_code == 503
    spans = memory[1].get_finished_spans()
    request = next(s for s in spans if s.kind == SpanKind.SERVER)
    assert request.name == "embeddings e"
    assert request.status.status_code == StatusCode.ERROR
    assert request.attributes["http.response.status_code"] == 503
    assert request.attributes["error.type"] == "unavailable"
    assert SECRET not in (request.status.description or "")
    clients = [s for s in spans if s.kind == SpanKind.CLIENT]
    attempts = sorted(clients, key=lambda s: s.attributes["inference.attempt"])
    assert [(a.attributes["inference.backend"], a.attributes["inference.attempt.next"])
            for a in attempts] == [
        ("up", "retry"), ("up", "fallback"), ("second", "retry"), ("second", "none")
    ]  # fmt: skip


async def test_gateway_with_the_openai_sdk(gateway: Any, memory: Any) -> None:
    import openai

    app = gateway({"up.test": "ok", "second.test": "ok"})
    async with app.router.lifespan_context(app), asgi_client(app) as http:
        client = openai.AsyncOpenAI(api_key="none", base_url="http://gw/v1", http_client=http)
        reply = await client.chat.completions.create(model="m", messages=MSG)
        stream = await client.chat.completions.create(
            model="m", messages=MSG, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    assert reply.choices[0].message.content
    assert chunks[-1].usage is not None
    requests = [s for s in memory[1].get_finished_spans() if s.kind == SpanKind.SERVER]
    assert [s.attributes["inference.stream"] for s in requests] == [False, True]
    assert [s.attributes["gen_ai.usage.output_tokens"] for s in requests] == [6, 3]


# ------------------------------------- `inference serve` exporting to a real OTLP receiver


class Upstream(BaseHTTPRequestHandler):
    """An OpenAI-compatible server on loopback: canned chat answers, JSON or SSE."""

    def do_GET(self) -> None:
        body = json.dumps(canned.models() if self.path == "/v1/models" else {}).encode()
        self._send(200, "application/json", body)

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if request.get("stream"):
            usage = bool((request.get("stream_options") or {}).get("include_usage"))
            self._send(200, "text/event-stream", canned.chat_stream(usage=usage))
        else:
            self._send(200, "application/json", json.dumps(canned.chat_completion()).encode())

    def _send(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class Overloaded(Upstream):
    """Healthy on GET (so the router tries it first), 503 on every request."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        self._send(503, "application/json", b'{"error":{"message":"overloaded"}}')


@pytest.mark.parametrize("workers", [1, 2])
def test_inference_serve_exports_spans_over_otlp(
    receiver: OtlpReceiver, tmp_path: Any, workers: int
) -> None:
    """The real CLI and uvicorn, configured only by environment variables, an overloaded backend
    before a live one; the official openai SDK as the client; spans decoded from OTLP."""
    import openai

    inference = Path(sys.executable).parent / "inference"
    port = unused_port()
    with serve_http(Upstream) as live, serve_http(Overloaded) as flaky:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "INFERENCE_PROVIDER": "flaky",
            "INFERENCE_FLAKY_PLUGIN": "vllm",
            "INFERENCE_FLAKY_BASE_URL": flaky,
            "ENABLE_FALLBACK": "true",
            "FALLBACK_CHAIN": "live",
            "INFERENCE_LIVE_PLUGIN": "vllm",
            "INFERENCE_LIVE_BASE_URL": live,
            "INFERENCE_MAX_RETRIES": "0",
            "HEALTH_CHECK_INTERVAL": "3600",
            "INFERENCE_GATEWAY_PORT": str(port),
            "INFERENCE_GATEWAY_WORKERS": str(workers),
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_SERVICE_NAME": "serve-under-test",
            "OTEL_BSP_SCHEDULE_DELAY": "60000",
        }
        proc = subprocess.Popen(
            [str(inference), "serve"], env=env, cwd=tmp_path,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, proc.communicate()[0]
                try:
                    if httpx.get(base + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "the gateway did not start"
                time.sleep(0.1)
            parent = "00-11112222333344445555666677778888-aaaabbbbccccdddd-01"
            client = openai.OpenAI(
                api_key="none", base_url=base + "/v1", default_headers={"traceparent": parent}
            )
            reply = client.chat.completions.create(model="upstream-model", messages=MSG)
            assert reply.choices[0].message.content
            chunks = list(
                client.chat.completions.create(
                    model="upstream-model",
                    messages=MSG,
                    stream=True,
                    stream_options={"include_usage": True},
                )
            )
            assert chunks[-1].usage is not None
            # 2 requests x (1 request span + dead attempt + live attempt); the first request's
            # failure marks "dead" down, so the second may skip it: at least 5 spans
            time.sleep(0.5)
            assert receiver.spans == []  # batched for 60 s: nothing sent yet
        finally:
            proc.terminate()  # SIGTERM: drain, then the lifespan's shutdown flushes the spans
            output = proc.communicate(timeout=30)[0]
    assert proc.returncode in (0, -signal.SIGTERM), output  # uvicorn re-raises the signal
    assert "Traceback" not in output
    # 2 requests x (request span + flaky attempt + live attempt); the flaky backend's 503 may
    # move it after the live one for the second request: 5 or 6 spans
    spans = receiver.wait_for(5)
    requests = [s for s in spans if s["kind"] == 2]
    assert len(requests) == 2
    assert {s["resource"]["service.name"] for s in spans} == {"serve-under-test"}
    assert {s["trace_id"] for s in requests} == {"11112222333344445555666677778888"}
    assert {s["parent_id"] for s in requests} == {"aaaabbbbccccdddd"}
    plain, streamed = sorted(requests, key=lambda s: s["attributes"]["inference.stream"])
    assert plain["attributes"]["gen_ai.usage.output_tokens"] == 6
    assert streamed["attributes"]["gen_ai.usage.output_tokens"] == 3
    assert plain["attributes"]["inference.backend"] == "live"
    first_attempts = [s for s in spans if s["kind"] == 3 and s["parent_id"] == plain["span_id"]]
    outcomes = {a["attributes"]["inference.backend"]: a["attributes"] for a in first_attempts}
    assert outcomes["flaky"]["inference.attempt.outcome"] == "unavailable"
    assert outcomes["flaky"]["inference.attempt.next"] == "fallback"
    assert outcomes["flaky"]["http.response.status_code"] == 503
    assert outcomes["flaky"]["server.address"] == "127.0.0.1"
    assert outcomes["flaky"]["server.port"] == int(flaky.rsplit(":", 1)[1])
    assert outcomes["live"]["inference.fallback.reason"] == "unavailable"
    assert outcomes["live"]["gen_ai.response.model"] == "upstream-model"


def test_the_sdk_honours_the_other_standard_variables(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Headers, compression and resource attributes come from the process environment."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-collector-key=k-123")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging")
    tel = telemetry.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url})
    assert tel is not None
    tel.start_request("chat", "m").end(a_trace(), status=200)
    tel.shutdown()
    (span,) = receiver.wait_for(1)
    assert receiver.headers[0]["x-collector-key"] == "k-123"
    assert receiver.headers[0]["content-encoding"] == "gzip"
    assert span["resource"]["deployment.environment"] == "staging"
    assert span["resource"]["service.name"] == "inference-gateway"  # the default


async def test_unsampled_requests_record_nothing_and_still_work(gateway: Any) -> None:
    """OTEL_TRACES_SAMPLER: a request the sampler drops gets no-op spans, and is served."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = gateway({"up.test": "503", "second.test": "ok"})
    app.gateway.telemetry = telemetry.Telemetry(provider, owned=True)
    async with app.router.lifespan_context(app), asgi_client(app) as c:
        r = await c.post("/v1/chat/completions", json={"messages": MSG, "stream": True})
    assert r.status_code == 200
    assert r.content.endswith(b"data: [DONE]\n\n")
    assert exporter.get_finished_spans() == ()


def test_grpc_needs_its_exporter() -> None:
    """grpc is accepted when its exporter is installed, else a ConfigError says what to add."""
    import importlib.util

    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    try:
        installed = importlib.util.find_spec("opentelemetry.exporter.otlp.proto.grpc") is not None
    except ModuleNotFoundError:
        installed = False
    if installed:
        made = telemetry.from_env(env)
        assert made is not None
        made.shutdown()
        return
    with pytest.raises(ConfigError) as info:
        telemetry.from_env(env)
    assert info.value.variable == "OTEL_EXPORTER_OTLP_PROTOCOL"
    assert "opentelemetry-exporter-otlp-proto-grpc" in info.value.message


async def test_the_router_alone_reports_attempts_to_a_span(memory: Any) -> None:
    """A library user (no gateway) traces a router call with the same two calls."""
    from inference_core.router import RequestTrace, Router

    tel, exporter = memory
    router = Router.from_env(
        ENV,
        env_file=None,
        transport=upstream({"up.test": "503", "second.test": "ok"}),
        extra_plugins={"up": Relay(), "second": Relay()},
    )
    async with router:
        trace = RequestTrace(span=tel.start_request("chat", "default"))
        stream = await router.chat({"messages": MSG, "stream": True}, trace=trace)
        # the failed tries are over; the served attempt and the request stay open while streaming
        open_now = exporter.get_finished_spans()
        assert [s.attributes["inference.backend"] for s in open_now] == ["up", "up"]
        chunks = [chunk async for chunk in stream]
        trace.span.end(trace)
    assert chunks
    spans = exporter.get_finished_spans()
    attempts = [s for s in spans if s.kind == SpanKind.CLIENT]
    assert [a.attributes["inference.attempt.outcome"] for a in attempts] == [
        "unavailable",
        "unavailable",
        "ok",
    ]
    assert spans[-1].kind == SpanKind.SERVER
    assert spans[-1].attributes["inference.backend"] == "second"


async def test_gateway_anthropic_messages_with_the_anthropic_sdk(gateway: Any, memory: Any) -> None:
    """Another protocol, the same spans: operation chat, the route's name as the endpoint."""
    import anthropic
    import httpx2  # the HTTP client the anthropic SDK is built on

    app = gateway({"up.test": "503", "second.test": "ok"})
    async with app.router.lifespan_context(app):
        http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app), base_url="http://gw")
        async with http:
            client = anthropic.AsyncAnthropic(
                api_key="none", base_url="http://gw", http_client=http, max_retries=0
            )
            reply = await client.messages.create(model="default", max_tokens=32, messages=MSG)
    assert reply.content[0].text
    spans = memory[1].get_finished_spans()
    request = next(s for s in spans if s.kind == SpanKind.SERVER)
    assert request.name == "chat default"
    assert request.attributes["inference.endpoint"] == "messages"
    assert request.attributes["gen_ai.request.max_tokens"] == 32
    assert request.attributes["gen_ai.usage.input_tokens"] == 5
    assert request.attributes["inference.backend"] == "second"
    attempts = [s for s in spans if s.kind == SpanKind.CLIENT]
    assert [a.attributes["inference.backend"] for a in attempts] == ["up", "up", "second"]


async def test_the_key_name_is_on_the_span_never_the_secret(gateway: Any, memory: Any) -> None:
    app = gateway({"up.test": "ok", "second.test": "ok"}, {"INFERENCE_GATEWAY_API_KEYS": SECRET})
    async with app.router.lifespan_context(app), asgi_client(app) as c:
        refused = await c.post("/v1/chat/completions", json={"messages": MSG})
        r = await c.post(
            "/v1/chat/completions",
            json={"messages": MSG},
            headers={"authorization": f"Bearer {SECRET}"},
        )
    assert refused.status_code == 401
    assert r.status_code == 200
    spans = memory[1].get_finished_spans()
    (request,) = [s for s in spans if s.kind == SpanKind.SERVER]  # the 401 never got a span
    assert request.attributes["inference.key"] == "env-1"
    assert SECRET not in json.dumps([dict(s.attributes) for s in spans])


async def test_a_request_refused_by_its_keys_limit_is_a_span_too(
    gateway: Any, memory: Any, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from inference_core.cli import build_app

    keys = {"INFERENCE_KEYS_FILE": str(tmp_path / "keys.toml")}
    made = await asyncio.to_thread(  # the CLI runs its own event loop
        CliRunner().invoke, build_app(env=keys), ["keys", "create", "team-a", "--rpm", "1"]
    )
    assert made.exit_code == 0, made.output
    secret = made.output.strip().splitlines()[-1]
    app = gateway({"up.test": "ok", "second.test": "ok"}, state_env=keys)
    headers = {"authorization": f"Bearer {secret}"}
    async with app.router.lifespan_context(app), asgi_client(app) as c:
        first = await c.post("/v1/chat/completions", json={"messages": MSG}, headers=headers)
        second = await c.post("/v1/chat/completions", json={"messages": MSG}, headers=headers)
    assert (first.status_code, second.status_code) == (200, 429)
    spans = memory[1].get_finished_spans()
    served, refused = [s for s in spans if s.kind == SpanKind.SERVER]
    assert served.attributes["inference.key"] == refused.attributes["inference.key"] == "team-a"
    assert refused.attributes["http.response.status_code"] == 429
    assert refused.status.status_code == StatusCode.ERROR
    assert "1 requests per minute" in (refused.status.description or "")
    assert len([s for s in spans if s.kind == SpanKind.CLIENT]) == 1  # no backend was tried
    assert secret not in json.dumps([dict(s.attributes) for s in spans])


async def test_a_resumed_stream_is_two_attempts_linked_by_the_resume(memory: Any) -> None:
    """Stream resume (routing/resume.py): the cut leg and the continuation are two attempt
    spans; the first says what came next, the second where it resumed from and why."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_router_resume import Replicas, cut, finish, replicas, run

    from inference_core.router import RequestTrace

    tel, exporter = memory
    a = Replicas(cut("Hello", " wor"), finish("ld", "!"))
    trace = RequestTrace(span=tel.start_request("chat", "m", stream=True))
    chunks, trace = await run(replicas(a), trace=trace)
    trace.span.end(trace, status=200)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello world!"
    spans = exporter.get_finished_spans()
    clients = [s for s in spans if s.kind == SpanKind.CLIENT]
    cut_leg, resumed = sorted(clients, key=lambda s: s.attributes["inference.attempt"])
    assert cut_leg.attributes["inference.attempt.outcome"] == "unavailable"
    assert cut_leg.attributes["inference.attempt.next"] == "resume"
    assert cut_leg.status.status_code == StatusCode.ERROR
    assert resumed.attributes["inference.resume.from"] == "a"
    assert resumed.attributes["inference.resume.reason"] == "unavailable"
    assert resumed.attributes["inference.attempt.outcome"] == "ok"
    assert cut_leg.attributes["server.address"] != resumed.attributes["server.address"]
    (request,) = [s for s in spans if s.kind == SpanKind.SERVER]
    assert request.attributes["gen_ai.usage.output_tokens"] == 4
    assert resumed.end_time <= request.end_time
