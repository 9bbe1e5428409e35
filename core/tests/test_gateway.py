"""The gateway app against a scripted stand-in router (httpx + ASGITransport, no sockets).

Every endpoint, every error status and shape, the headers, security (keys, body limit, caps,
no secret anywhere), metrics and log content, the in-band stream error, the clean 500.
The same app over the real Router is in ``test_gateway_router.py``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from inference_core.errors import (
    AllBackendsFailed,
    Attempt,
    BackendUnavailable,
    BadRequest,
    CapabilityNotSupported,
    ModelNotFound,
    RateLimited,
)
from inference_core.gateway import GatewaySettings, create_app
from inference_core.gateway.logs import JsonFormatter
from inference_core.models import (
    BackendConfig,
    ChatChunk,
    ChatResponse,
    CompletionResponse,
    EmbeddingResponse,
    ModelInfo,
)

SECRET = "sk-secret-backend-123"
GW_KEY = "gw-key-one"

CHAT_RAW = (
    b'{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"served-m",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"Hello there"},'
    b'"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":2,'
    b'"total_tokens":9},"x_vendor":{"keep":"me"}}'
)
MSG = [{"role": "user", "content": "hi"}]


def chunk_raw(i: int, content: str | None = "tok", usage: bool = False) -> bytes:
    if usage:
        return (
            b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],'
            b'"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}'
        )
    return (
        b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
        b'[{"index":0,"delta":{"content":"%s%d"},"finish_reason":null}],"usage":null}'
        % (content.encode() if content else b"", i)
    )


@dataclass
class Stream:
    """An upstream stream: yields ``chunks``, then raises ``fail`` if set; records closing."""

    chunks: list[bytes]
    fail: BaseException | None = None
    block: asyncio.Event | None = None
    closed: bool = False
    pulled: int = 0

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> ChatChunk:
        if self.pulled < len(self.chunks):
            raw = self.chunks[self.pulled]
            self.pulled += 1
            return ChatChunk.from_raw(raw)
        if self.block is not None:
            await self.block.wait()
        if self.fail is not None:
            raise self.fail
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class StandIn:
    """Implements the router interface the gateway uses; each op runs a scripted behaviour."""

    settings: Any = None
    behaviour: Callable[[str, Any, Any], Any] | None = None
    calls: list[tuple[str, Any]] = field(default_factory=list)
    ready_value: bool = True
    listeners: list[Any] = field(default_factory=list)
    started: int = 0
    closed: int = 0
    health_detail: dict[str, Any] = field(
        default_factory=lambda: {
            "primary": {"state": "ready", "breaker": "closed", "detail": None, "models": ["m"]},
        }
    )

    async def start(self) -> None:
        self.started += 1

    async def aclose(self, drain_timeout: float | None = 30.0) -> None:
        self.closed += 1

    async def _op(self, op: str, request: Any, trace: Any) -> Any:
        self.calls.append((op, request))
        trace.backend = "primary"
        trace.model = "served-m"
        if self.behaviour is not None:
            result = self.behaviour(op, request, trace)
            if isinstance(result, BaseException):
                raise result
            return result
        if op == "chat":
            if request.stream:
                return Stream([chunk_raw(i) for i in range(3)] + [chunk_raw(0, usage=True)])
            return ChatResponse.from_raw(CHAT_RAW)
        if op == "complete":
            return CompletionResponse(id="t", created=1, model="m", choices=[{"text": "x"}])
        vec = [0.5, -0.25, 1.0]
        return EmbeddingResponse(
            data=[{"index": i, "embedding": vec} for i in range(len(request.inputs))],
            model="emb",
            usage={"prompt_tokens": 2, "total_tokens": 2},
        )

    async def chat(self, request: Any, *, trace: Any = None) -> Any:
        return await self._op("chat", request, trace)

    async def complete(self, request: Any, *, trace: Any = None) -> Any:
        return await self._op("complete", request, trace)

    async def embed(self, request: Any, *, trace: Any = None) -> Any:
        return await self._op("embed", request, trace)

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(id="m1", backend="primary"), ModelInfo(id="m2", backend="second")]

    async def health(self, *, refresh: bool = False) -> dict[str, dict[str, Any]]:
        return self.health_detail

    def ready(self) -> bool:
        return self.ready_value

    def add_state_listener(self, listener: Any) -> None:
        self.listeners.append(listener)


def make(router: StandIn | None = None, **settings: Any) -> tuple[Any, StandIn]:
    router = router or StandIn()
    return create_app(router, GatewaySettings.from_env(env={}, **settings)), router


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw")


def assert_error(r: httpx.Response, status: int, etype: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert {"message", "type", "param", "code"} <= set(err)
    assert isinstance(err["message"], str)
    assert err["message"]
    if etype:
        assert err["type"] == etype
    return err


def sse_events(text: str) -> list[str]:
    return [line[6:] for line in text.split("\n") if line.startswith("data: ")]


# ------------------------------------------------------------------------------ happy paths


async def test_chat_relays_raw_bytes_with_headers() -> None:
    app, router = make()
    async with client(app) as c:
        r = await c.post("/v1/chat/completions", json={"model": "alias", "messages": MSG})
    assert r.status_code == 200
    assert r.content == CHAT_RAW  # verbatim, vendor field and key order kept
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-inference-backend"] == "primary"
    assert float(r.headers["x-inference-overhead-ms"]) >= 0
    assert len(r.headers["x-request-id"]) >= 8
    op, req = router.calls[0]
    assert op == "chat"
    assert req.model == "alias"
    assert req.messages[0].content == "hi"


async def test_request_id_echoed_or_generated() -> None:
    app, _ = make()
    async with client(app) as c:
        r1 = await c.post("/v1/chat/completions", json={"messages": MSG},
                          headers={"x-request-id": "req-abc.123"})  # fmt: skip
        r2 = await c.post("/v1/chat/completions", json={"messages": MSG},
                          headers={"x-request-id": "bad id\twith spaces"})  # fmt: skip
        r3 = await c.post("/v1/chat/completions", json={"messages": MSG})
        r4 = await c.get("/health", headers={"x-request-id": "x" * 200})
    assert r1.headers["x-request-id"] == "req-abc.123"
    assert r2.headers["x-request-id"] != "bad id\twith spaces"
    assert r3.headers["x-request-id"] != r2.headers["x-request-id"]
    assert len(r4.headers["x-request-id"]) < 100


async def test_unknown_fields_pass_through_to_the_router() -> None:
    app, router = make()
    async with client(app) as c:
        r = await c.post("/v1/chat/completions", json={"messages": MSG, "top_k": 5, "min_p": 0.1})
    assert r.status_code == 200
    req = router.calls[0][1]
    assert req.model_dump()["top_k"] == 5
    assert req.model_dump()["min_p"] == 0.1


async def test_response_without_raw_is_serialised() -> None:
    def behaviour(op: str, request: Any, trace: Any) -> Any:
        return ChatResponse(
            id="x", created=1, model="m",
            choices=[{"index": 0, "message": {"role": "assistant", "content": "yo"}}],
        )  # fmt: skip

    app, _ = make(StandIn(behaviour=behaviour))
    async with client(app) as c:
        r = await c.post("/v1/chat/completions", json={"messages": MSG})
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "yo"
    assert "usage" not in r.json()  # None fields are dropped


async def test_stream_relays_chunks_and_usage_then_done() -> None:
    app, _ = make()
    async with client(app) as c:
        r = await c.post(
            "/v1/chat/completions",
            json={"messages": MSG, "stream": True, "stream_options": {"include_usage": True}},
        )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-inference-backend"] == "primary"
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    assert [e.encode() for e in events[:3]] == [chunk_raw(i) for i in range(3)]  # verbatim
    usage = json.loads(events[3])
    assert usage["choices"] == []
    assert usage["usage"]["total_tokens"] == 8
    assert r.text.endswith("data: [DONE]\n\n")


async def test_stream_usage_chunk_dropped_when_client_did_not_ask() -> None:
    app, _ = make()
    async with client(app) as c:
        r = await c.post("/v1/chat/completions", json={"messages": MSG, "stream": True})
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    assert len(events) == 4  # 3 chunks + [DONE]; the router-requested usage chunk is not sent
    assert all('"usage":{' not in e for e in events)


async def test_stream_error_after_first_chunk_is_in_band_without_done() -> None:
    upstream = Stream([chunk_raw(0), chunk_raw(1)], fail=BackendUnavailable("upstream reset"))

    def behaviour(op: str, request: Any, trace: Any) -> Any:
        return upstream

    app, _ = make(StandIn(behaviour=behaviour))
    async with client(app) as c:
        r = await c.post("/v1/chat/completions", json={"messages": MSG, "stream": True})
        metrics = (await c.get("/metrics")).text
    assert r.status_code == 200
    events = sse_events(r.text)
    assert "[DONE]" not in events
    assert len(events) == 3
    err = json.loads(events[-1])["error"]
    assert err["message"] == "upstream reset"
    assert err["type"] == "api_error"
    assert err["code"] == "unavailable"
    assert 'inference_gateway_stream_errors_total{backend="primary",reason="unavailable"} 1.0' in (
        metrics
    )


async def test_stream_unexpected_exception_is_in_band_and_clean() -> None:
    upstream = Stream([chunk_raw(0)], fail=RuntimeError("boom with internals"))
    app, _ = make(StandIn(behaviour=lambda op, req, tr: upstream))
    async with client(app) as c:
        r = await c.post("/v1/chat/completions", json={"messages": MSG, "stream": True})
    events = sse_events(r.text)
    assert "[DONE]" not in events
    err = json.loads(events[-1])["error"]
    assert err["code"] == "internal_error"
    assert "boom" not in err["message"]


async def test_client_disconnect_mid_stream_closes_the_upstream() -> None:
    gate = asyncio.Event()
    upstream = Stream([chunk_raw(0)], block=gate)
    app, _ = make(StandIn(behaviour=lambda op, req, tr: upstream))
    body = json.dumps({"messages": MSG, "stream": True}).encode()
    sent: list[dict[str, Any]] = []
    disconnect = asyncio.Event()
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            disconnect.set()  # the client reads the first chunk, then hangs up

    scope = {
        "type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": [],
        "query_string": b"", "http_version": "1.1", "scheme": "http", "root_path": "",
    }  # fmt: skip
    await asyncio.wait_for(app(scope, receive, send), 5)
    assert upstream.closed
    assert sent[0]["status"] == 200
    assert b"[DONE]" not in b"".join(m.get("body", b"") for m in sent[1:])


async def test_completions_and_capability_not_supported() -> None:
    app, _ = make()
    async with client(app) as c:
        ok = await c.post("/v1/completions", json={"prompt": "once upon"})
    assert ok.status_code == 200
    assert ok.json()["choices"][0]["text"] == "x"

    def behaviour(op: str, request: Any, trace: Any) -> Any:
        return CapabilityNotSupported("no backend offers completions")

    app, _ = make(StandIn(behaviour=behaviour))
    async with client(app) as c:
        r = await c.post("/v1/completions", json={"prompt": "once upon"})
    err = assert_error(r, 400, "invalid_request_error")
    assert err["code"] == "capability_not_supported"


async def test_embeddings_string_list_and_dimensions_passed_on() -> None:
    app, router = make()
    async with client(app) as c:
        r1 = await c.post("/v1/embeddings", json={"input": "one", "model": "e"})
        r2 = await c.post(
            "/v1/embeddings", json={"input": ["a", "b"], "dimensions": 3, "model": "e"}
        )
    assert r1.status_code == 200
    assert len(r1.json()["data"]) == 1
    assert len(r2.json()["data"]) == 2
    assert router.calls[1][1].dimensions == 3
    assert r2.json()["data"][0]["embedding"] == [0.5, -0.25, 1.0]


async def test_embeddings_base64_converted_when_backend_returned_floats() -> None:
    app, router = make()
    async with client(app) as c:
        r = await c.post("/v1/embeddings", json={"input": ["a"], "encoding_format": "base64"})
    assert router.calls[0][1].encoding_format == "base64"  # asked of the backend too
    b64 = r.json()["data"][0]["embedding"]
    assert isinstance(b64, str)
    assert list(struct.unpack("<3f", base64.b64decode(b64))) == [0.5, -0.25, 1.0]


async def test_embeddings_float_decoded_when_backend_returned_base64() -> None:
    packed = base64.b64encode(struct.pack("<2f", 1.5, -2.0)).decode()

    def behaviour(op: str, request: Any, trace: Any) -> Any:
        return EmbeddingResponse(data=[{"index": 0, "embedding": packed}], model="e")

    app, _ = make(StandIn(behaviour=behaviour))
    async with client(app) as c:
        r = await c.post("/v1/embeddings", json={"input": "x", "encoding_format": "float"})
    assert r.json()["data"][0]["embedding"] == [1.5, -2.0]


async def test_models_health_ready_liveness() -> None:
    app, router = make()
    async with client(app) as c:
        models = await c.get("/v1/models")
        health = await c.get("/v1/health/inference")
        live = await c.get("/health")
        ready = await c.get("/ready")
        router.ready_value = False
        not_ready = await c.get("/ready")
    assert models.json() == {
        "object": "list",
        "data": [
            {"id": "m1", "object": "model", "created": 0, "owned_by": "inference-core",
             "backend": "primary"},
            {"id": "m2", "object": "model", "created": 0, "owned_by": "inference-core",
             "backend": "second"},
        ],
    }  # fmt: skip
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert health.json()["ready"] is True
    assert health.json()["backends"]["primary"]["breaker"] == "closed"
    assert live.json() == {"status": "ok"}
    assert live.headers["x-request-id"]
    assert ready.status_code == 200
    assert not_ready.status_code == 503
    assert not_ready.json()["error"]["code"] == "not_ready"


async def test_lifespan_starts_and_closes_the_router() -> None:
    app, router = make()
    async with app.router.lifespan_context(app):
        assert router.started == 1
        assert router.listeners  # metrics subscribed to backend state changes
    assert router.closed == 1


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": "m"}, "messages", "missing_required_parameter"),
        ({"messages": []}, "messages", "invalid_value"),
        ({"messages": [{"content": "x"}]}, "messages.0.role", "missing_required_parameter"),
        ({"messages": MSG, "temperature": 9}, "temperature", "invalid_value"),
        ({"messages": MSG, "stream": "yes please"}, "stream", "invalid_value"),
        ({"messages": MSG, "max_tokens": -1}, "max_tokens", "invalid_value"),
    ],
)
async def test_validation_errors_name_the_field(body: Any, param: str, code: str) -> None:
    app, router = make()
    async with client(app) as c:
        r = await c.post("/v1/chat/completions", json=body)
    err = assert_error(r, 400, "invalid_request_error")
    assert err["param"] == param
    assert err["code"] == code
    assert param in err["message"]
    assert not router.calls


@pytest.mark.parametrize(
    ("content", "code"),
    [(b"{not json", "invalid_json"), (b"", "invalid_json"), (b"[1, 2]", "invalid_request_body"),
     (b'"text"', "invalid_request_body"), (b"\xff\xfe", "invalid_json")],
)  # fmt: skip
async def test_malformed_bodies_are_400(content: bytes, code: str) -> None:
    app, _ = make()
    async with client(app) as c:
        for path in ("/v1/chat/completions", "/v1/embeddings", "/v1/completions"):
            r = await c.post(path, content=content)
            err = assert_error(r, 400, "invalid_request_error")
            assert err["code"] == code


async def test_router_errors_map_to_statuses() -> None:
    errors: dict[str, BaseException] = {
        "missing": ModelNotFound("The model 'missing' does not exist", model="missing"),
        "bad": BadRequest("max_tokens is too large", param="max_tokens", code="bad_value"),
        "limited": RateLimited("slow down", retry_after=2.5),
        "down": AllBackendsFailed(
            [
                Attempt("primary", "unavailable", "connect refused", None),
                Attempt("second", "timeout", "timed out", 504),
            ],
            last=BackendUnavailable("x"),
        ),
        "all-limited": AllBackendsFailed(
            [Attempt("primary", "rate_limited", "429", 429)],
            last=RateLimited("429", retry_after=1.0),
        ),
    }

    def behaviour(op: str, request: Any, trace: Any) -> Any:
        return errors[request.model]

    app, _ = make(StandIn(behaviour=behaviour))
    async with client(app) as c:

        async def post(model: str) -> httpx.Response:
            return await c.post("/v1/chat/completions", json={"model": model, "messages": MSG})

        r = await post("missing")
        err = assert_error(r, 404, "invalid_request_error")
        assert err["param"] == "model"
        assert err["code"] == "model_not_found"
        assert "x-should-retry" not in r.headers

        r = await post("bad")
        err = assert_error(r, 400, "invalid_request_error")
        assert err["param"] == "max_tokens"
        assert err["code"] == "bad_value"

        r = await post("limited")
        err = assert_error(r, 429, "rate_limit_error")
        assert r.headers["retry-after"] == "3"
        assert r.headers["retry-after-ms"] == "2500"
        assert "x-should-retry" not in r.headers

        r = await post("down")
        err = assert_error(r, 503, "service_unavailable")
        assert r.headers["x-should-retry"] == "false"
        assert err["code"] == "all_backends_failed"
        assert [a["backend"] for a in err["attempts"]] == ["primary", "second"]
        assert err["attempts"][1]["kind"] == "timeout"

        r = await post("all-limited")
        err = assert_error(r, 429, "rate_limit_error")
        assert r.headers["retry-after"] == "1"
        assert err["attempts"][0]["kind"] == "rate_limited"


async def test_unexpected_exception_is_a_clean_500_logged_with_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def behaviour(op: str, request: Any, trace: Any) -> Any:
        return KeyError("internal detail /srv/secret/path")

    app, _ = make(StandIn(behaviour=behaviour))
    with caplog.at_level(logging.ERROR, logger="inference_core.gateway"):
        async with client(app) as c:
            r = await c.post(
                "/v1/chat/completions", json={"messages": MSG}, headers={"x-request-id": "rid-500"}
            )
    err = assert_error(r, 500, "server_error")
    assert err["code"] == "internal_error"
    assert "internal detail" not in r.text
    assert "Traceback" not in r.text
    assert r.headers["x-should-retry"] == "false"
    assert r.headers["x-request-id"] == "rid-500"
    records = [rec for rec in caplog.records if rec.name == "inference_core.gateway"]
    assert records
    assert records[0].fields["request_id"] == "rid-500"
    assert "KeyError" in records[0].fields["exc"]  # type: ignore[attr-defined]


async def test_unknown_route_and_wrong_method() -> None:
    app, _ = make()
    async with client(app) as c:
        missing = await c.get("/v1/nope")
        wrong = await c.get("/v1/chat/completions")
        wrong_get = await c.post("/v1/models")
    err = assert_error(missing, 404, "invalid_request_error")
    assert err["code"] == "unknown_route"
    assert missing.headers["x-request-id"]
    err = assert_error(wrong, 405)
    assert wrong.headers["allow"] == "POST"
    assert_error(wrong_get, 405)


# ---------------------------------------------------------------------------------- security


async def test_api_keys_required_on_inference_routes() -> None:
    app, router = make(api_keys=f"{GW_KEY}, gw-key-two")
    async with client(app) as c:
        none = await c.post("/v1/chat/completions", json={"messages": MSG})
        wrong = await c.post("/v1/chat/completions", json={"messages": MSG},
                             headers={"authorization": "Bearer nope"})  # fmt: skip
        basic = await c.post("/v1/chat/completions", json={"messages": MSG},
                             headers={"authorization": f"Basic {GW_KEY}"})  # fmt: skip
        ok1 = await c.post("/v1/chat/completions", json={"messages": MSG},
                           headers={"authorization": f"Bearer {GW_KEY}"})  # fmt: skip
        ok2 = await c.get("/v1/models", headers={"authorization": "Bearer gw-key-two"})
        models = await c.get("/v1/models")
        emb = await c.post("/v1/embeddings", json={"input": "x"})
        live = await c.get("/health")
        ready = await c.get("/ready")
        health = await c.get("/v1/health/inference")
        health_ok = await c.get(
            "/v1/health/inference", headers={"authorization": "Bearer gw-key-two"}
        )
        metrics = await c.get("/metrics")
    for r in (none, wrong, basic, models, emb, health):
        err = assert_error(r, 401, "invalid_request_error")
        assert err["code"] == "invalid_api_key"
    assert ok1.status_code == 200
    assert ok2.status_code == 200
    assert live.status_code == 200
    assert ready.status_code == 200
    assert_error(metrics, 401)  # /metrics needs a key by default once keys are set
    assert health_ok.status_code == 200
    assert len(router.calls) == 1  # rejected requests never reached the router


async def test_protected_metrics_and_open_health() -> None:
    app, _ = make(api_keys=GW_KEY, protect_metrics=True, protect_health=False)
    async with client(app) as c:
        metrics = await c.get("/metrics")
        metrics_ok = await c.get("/metrics", headers={"authorization": f"Bearer {GW_KEY}"})
        health = await c.get("/v1/health/inference")
    assert_error(metrics, 401)
    assert metrics_ok.status_code == 200
    assert "inference_gateway_requests_total" in metrics_ok.text
    assert health.status_code == 200


async def test_body_limit_by_content_length_and_by_streamed_bytes() -> None:
    app, router = make(max_body_bytes=2048)
    big = {"messages": [{"role": "user", "content": "x" * 4096}]}

    async def chunks() -> AsyncIterator[bytes]:
        data = json.dumps(big).encode()
        for i in range(0, len(data), 512):
            yield data[i : i + 512]

    async with client(app) as c:
        declared = await c.post("/v1/chat/completions", json=big)
        streamed = await c.post(
            "/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"}
        )
        small = await c.post("/v1/chat/completions", json={"messages": MSG})

        async def small_chunks() -> AsyncIterator[bytes]:
            data = json.dumps({"messages": MSG}).encode()
            for i in range(0, len(data), 7):
                yield data[i : i + 7]

        small_streamed = await c.post(
            "/v1/chat/completions",
            content=small_chunks(),
            headers={"content-type": "application/json"},
        )
    for r in (declared, streamed):
        err = assert_error(r, 413, "invalid_request_error")
        assert err["code"] == "request_too_large"
        assert r.headers["connection"] == "close"
    assert "content-length" not in streamed.request.headers  # really sent chunked
    assert small.status_code == 200
    assert small_streamed.status_code == 200  # a chunked upload within the limit is read whole
    assert len(router.calls) == 2


async def test_caps_on_n_and_max_tokens_name_the_field() -> None:
    app, router = make(max_n=2, max_tokens_cap=100, max_embed_inputs=2)
    async with client(app) as c:
        n = await c.post("/v1/chat/completions", json={"messages": MSG, "n": 3})
        mt = await c.post("/v1/chat/completions", json={"messages": MSG, "max_tokens": 101})
        mct = await c.post(
            "/v1/chat/completions", json={"messages": MSG, "max_completion_tokens": 5000}
        )
        comp = await c.post("/v1/completions", json={"prompt": "x", "max_tokens": 1000})
        emb = await c.post("/v1/embeddings", json={"input": ["a", "b", "c"]})
        ok = await c.post("/v1/chat/completions", json={"messages": MSG, "n": 2, "max_tokens": 100})
    for r, param in ((n, "n"), (mt, "max_tokens"), (mct, "max_completion_tokens"),
                     (comp, "max_tokens"), (emb, "input")):  # fmt: skip
        err = assert_error(r, 400, "invalid_request_error")
        assert err["param"] == param
        assert param in err["message"]
    assert ok.status_code == 200
    assert len(router.calls) == 1


async def test_backend_secret_never_leaves_the_gateway(caplog: pytest.LogCaptureFixture) -> None:
    class FakeSettings:
        chain = ["primary"]

        def backend(self, name: str) -> BackendConfig:
            return BackendConfig(name=name, base_urls=("http://upstream",),
                                 api_key=SecretStr(SECRET))  # fmt: skip

    def behaviour(op: str, request: Any, trace: Any) -> Any:
        if request.model == "leak-503":
            return AllBackendsFailed(
                [Attempt("primary", "authentication_failed", f"Incorrect API key {SECRET}", 401)]
            )
        if request.model == "leak-prefix":
            return BadRequest(f"Incorrect API key provided: {SECRET[:10]}****123.")
        if request.model == "leak-stream":
            return Stream([chunk_raw(0)], fail=BackendUnavailable(f"reset while using {SECRET}"))
        return RuntimeError(f"crashed holding {SECRET}")

    router = StandIn(settings=FakeSettings(), behaviour=behaviour)
    router.health_detail = {"primary": {"state": "down", "detail": f"401 with key {SECRET}"}}
    app, _ = make(router)
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        async with client(app) as c:
            for model in ("leak-503", "leak-prefix", "leak-stream", "crash"):
                r = await c.post(
                    "/v1/chat/completions",
                    json={"model": model, "messages": MSG, "stream": model == "leak-stream"},
                )
                texts.append(r.text)
                texts.append(str(r.headers))
            for path in ("/v1/health/inference", "/metrics", "/v1/models", "/ready"):
                r = await c.get(path)
                texts.append(r.text)
    formatter = JsonFormatter()
    texts.extend(formatter.format(rec) for rec in caplog.records)
    blob = "\n".join(texts)
    assert "Incorrect API key" in blob  # the errors did come through...
    assert SECRET not in blob  # ...without the key
    assert SECRET[:10] not in blob
    assert "****" in blob


async def test_cors_off_by_default_and_on_when_configured() -> None:
    app, _ = make()
    async with client(app) as c:
        r = await c.get("/v1/models", headers={"origin": "https://app.example"})
        pre = await c.options(
            "/v1/chat/completions",
            headers={"origin": "https://app.example", "access-control-request-method": "POST"},
        )
    assert "access-control-allow-origin" not in r.headers
    assert "access-control-allow-origin" not in pre.headers

    app, _ = make(cors_origins="https://app.example")
    async with client(app) as c:
        r = await c.get("/v1/models", headers={"origin": "https://app.example"})
        other = await c.get("/v1/models", headers={"origin": "https://evil.example"})
        pre = await c.options(
            "/v1/chat/completions",
            headers={"origin": "https://app.example", "access-control-request-method": "POST",
                     "access-control-request-headers": "authorization,content-type"},
        )  # fmt: skip
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-request-id" in r.headers["access-control-expose-headers"]
    assert "access-control-allow-origin" not in other.headers
    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] == "https://app.example"
    assert pre.headers["x-request-id"]  # even a preflight answered by the CORS layer


# ------------------------------------------------------------------------ metrics and logs


async def test_metrics_content() -> None:
    def behaviour(op: str, request: Any, trace: Any) -> Any:
        if request.model == "fallen":
            trace.attempts.extend(
                [Attempt("primary", "unavailable", "refused"),
                 Attempt("primary", "unavailable", "refused"),
                 Attempt("primary", "timeout", "slow")]
            )  # fmt: skip
            trace.backend = "second"
            trace.retries, trace.fallbacks = 2, 1
        return ChatResponse.from_raw(CHAT_RAW)

    router = StandIn(behaviour=behaviour)
    app, _ = make(router)
    async with app.router.lifespan_context(app), client(app) as c:
        await c.post("/v1/chat/completions", json={"messages": MSG})
        await c.post("/v1/chat/completions", json={"model": "fallen", "messages": MSG})
        await c.post("/v1/chat/completions", json={"messages": []})
        for listener in router.listeners:  # the router reports a state change
            listener("second", state="down", breaker="open", change=None)
        text = (await c.get("/metrics")).text
    assert (
        'inference_gateway_requests_total{backend="primary",endpoint="chat",status="200"} 1.0'
        in text
    )
    assert (
        'inference_gateway_requests_total{backend="second",endpoint="chat",status="200"} 1.0'
        in text
    )
    assert (
        'inference_gateway_requests_total{backend="none",endpoint="chat",status="400"} 1.0' in text
    )
    assert (
        'inference_gateway_request_duration_seconds_count{backend="primary",endpoint="chat"} 1.0'
        in text
    )
    assert 'inference_gateway_overhead_seconds_count{endpoint="chat"} 3.0' in text
    assert 'inference_gateway_tokens_total{backend="primary",direction="prompt"} 7.0' in text
    assert 'inference_gateway_tokens_total{backend="primary",direction="completion"} 2.0' in text
    assert 'inference_gateway_retries_total{backend="primary",reason="unavailable"} 2.0' in text
    assert 'inference_gateway_fallbacks_total{backend="primary",reason="timeout"} 1.0' in text
    assert 'inference_gateway_backend_up{backend="second"} 0.0' in text
    assert 'inference_gateway_backend_state{backend="second",state="down"} 1.0' in text
    assert 'inference_gateway_breaker_open{backend="second"} 1.0' in text
    assert 'inference_gateway_backend_up{backend="primary"} 1.0' in text  # from health()
    assert "inference_gateway_in_flight_requests 1.0" in text  # the scrape itself


async def test_stream_metrics_time_to_first_token() -> None:
    app, _ = make()
    async with client(app) as c:
        await c.post(
            "/v1/chat/completions",
            json={"messages": MSG, "stream": True, "stream_options": {"include_usage": True}},
        )
        text = (await c.get("/metrics")).text
    assert 'inference_gateway_time_to_first_token_seconds_count{backend="primary"} 1.0' in text
    assert 'inference_gateway_tokens_total{backend="primary",direction="completion"} 3.0' in text


async def test_access_log_line(caplog: pytest.LogCaptureFixture) -> None:
    def behaviour(op: str, request: Any, trace: Any) -> Any:
        trace.fallbacks = 1
        return ChatResponse.from_raw(CHAT_RAW)

    app, _ = make(StandIn(behaviour=behaviour))
    with caplog.at_level(logging.INFO, logger="inference_core.gateway.access"):
        async with client(app) as c:
            await c.post(
                "/v1/chat/completions",
                json={"model": "alias", "messages": MSG},
                headers={"x-request-id": "log-1"},
            )
    records = [r for r in caplog.records if r.name == "inference_core.gateway.access"]
    assert len(records) == 1
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["msg"] == "request"
    assert line["level"] == "info"
    assert line["request_id"] == "log-1"
    assert line["status"] == 200
    assert line["backend"] == "primary"
    assert line["model"] == "alias"
    assert line["served_model"] == "served-m"
    assert line["prompt_tokens"] == 7
    assert line["completion_tokens"] == 2
    assert line["fallbacks"] == 1
    assert line["retries"] == 0
    assert line["latency_ms"] >= line["overhead_ms"] >= 0
    assert line["path"] == "/v1/chat/completions"
    assert line["stream"] is False


async def test_access_log_off_writes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    app, _ = make(access_log=False)
    with caplog.at_level(logging.DEBUG, logger="inference_core.gateway.access"):
        async with client(app) as c:
            await c.post("/v1/chat/completions", json={"messages": MSG})
    assert not [r for r in caplog.records if r.name == "inference_core.gateway.access"]


# ---------------------------------------------------------------------------- API surface


async def test_openapi_declares_request_bodies() -> None:
    app, _ = make(docs=True)
    async with client(app) as c:
        response = await c.get("/openapi.json", headers={"x-request-id": "spec-1"})
        spec = response.json()
    assert response.headers["x-request-id"] == "spec-1"
    assert response.headers["x-inference-backend"] == "none"
    for path, schema in (
        ("/v1/chat/completions", "ChatRequest"),
        ("/v1/completions", "CompletionRequest"),
        ("/v1/embeddings", "EmbeddingRequest"),
    ):
        body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert body["schema"]["$ref"] == f"#/components/schemas/{schema}"
        assert schema in spec["components"]["schemas"]
    assert "ChatMessage" in spec["components"]["schemas"]
    for path in ("/v1/models", "/health", "/ready", "/metrics", "/v1/health/inference"):
        assert "get" in spec["paths"][path]


async def test_fastapi_route_path_behaves_like_the_fast_path() -> None:
    from fastapi import FastAPI

    app, _ = make()

    async def through_fastapi(scope: Any, receive: Any, send: Any) -> None:
        await FastAPI.__call__(app, scope, receive, send)  # skip the fast dispatch

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(through_fastapi), base_url="http://gw"
    ) as c:
        r = await c.post("/v1/chat/completions", json={"messages": MSG})
        bad = await c.post("/v1/chat/completions", json={"messages": []})
        models = await c.get("/v1/models")
    assert r.status_code == 200
    assert r.content == CHAT_RAW
    assert r.headers["x-inference-backend"] == "primary"
    assert assert_error(bad, 400)["param"] == "messages"
    assert models.json()["data"][0]["id"] == "m1"


def test_settings_from_env_errors_name_the_variable() -> None:
    from inference_core.errors import ConfigError

    with pytest.raises(ConfigError, match="INFERENCE_GATEWAY_MAX_BODY_BYTES"):
        GatewaySettings.from_env(env={"INFERENCE_GATEWAY_MAX_BODY_BYTES": "lots"})
    with pytest.raises(ConfigError, match="INFERENCE_GATEWAY_LOG_FORMAT"):
        GatewaySettings.from_env(env={"INFERENCE_GATEWAY_LOG_FORMAT": "xml"})
    s = GatewaySettings.from_env(
        env={"INFERENCE_GATEWAY_API_KEYS": "a-key, b-key", "INFERENCE_GATEWAY_CORS_ORIGINS": "*",
             "INFERENCE_GATEWAY_ACCESS_LOG": "false", "OTHER": "1"}
    )  # fmt: skip
    assert [k.get_secret_value() for k in s.api_keys] == ["a-key", "b-key"]
    assert s.cors_origins == ["*"]
    assert s.access_log is False
    assert "a-key" not in repr(s)
    assert "a-key" not in str(s.summary())
    assert GatewaySettings.from_env(env={}).max_body_bytes == 4 * 1024 * 1024


def test_importing_the_gateway_package_is_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, inference_core.gateway as g; "
        "print('fastapi' in sys.modules, 'uvicorn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
