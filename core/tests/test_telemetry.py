"""inference_core.telemetry with the real OpenTelemetry SDK.

Two ways in: the SDK's in-memory exporter (span structure, attributes, parents), and a real
OTLP/HTTP receiver started here on loopback that decodes what the SDK's OTLP exporter sends
with the ``opentelemetry-proto`` protobuf types (what a collector would receive).
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from inference_core import telemetry
from inference_core.errors import Attempt, ConfigError

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
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


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
    assert "inference-core[otel]" in message
    assert "OTEL_SDK_DISABLED" in message


@pytest.mark.parametrize("protocol", ["http/json", "thrift"])
def test_an_unsupported_protocol_is_a_config_error(protocol: str) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": protocol}
    with pytest.raises(ConfigError) as info:
        telemetry.from_env(env)
    assert info.value.variable == "OTEL_EXPORTER_OTLP_PROTOCOL"
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
