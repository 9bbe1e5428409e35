"""The gateway over the real Router: in-memory relay plugins on ``openai_compat``, upstreams
faked with ``httpx.MockTransport`` (no sockets).

What only the real stack shows: bytes relayed verbatim end to end, fallback and its metrics,
the router's attempts in a 503, a 429 passed on, a truncated upstream stream ending in-band,
health / models / readiness from the router, backend state through the router's listener.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from inference_core import hookimpl
from inference_core.gateway import GatewaySettings, create_app
from inference_core.http import openai_compat
from inference_core.router import Router

SECRET = "sk-secret-backend-123"
MSG = [{"role": "user", "content": "hi"}]

CHAT = (
    b'{"id":"chatcmpl-up","object":"chat.completion","created":1700000000,"model":"%s",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"Hi!"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":4,"completion_tokens":1,"total_tokens":5},"timings":{"x":1.5}}'
)


def sse(model: bytes, n: int = 3, done: bool = True) -> bytes:
    events = [
        b'{"id":"s","object":"chat.completion.chunk","created":1,"model":"%s","choices":[{"index":0,'
        b'"delta":{"content":"w%d"},"finish_reason":null}],"usage":null}' % (model, i)
        for i in range(n)
    ]
    events.append(
        b'{"id":"s","object":"chat.completion.chunk","created":1,"model":"%s","choices":[],'
        b'"usage":{"prompt_tokens":4,"completion_tokens":3,"total_tokens":7}}' % model
    )
    body = b"".join(b"data: " + e + b"\n\n" for e in events)
    return body + (b"data: [DONE]\n\n" if done else b"")


class Relay:
    """A backend plugin that relays to an OpenAI-compatible server (like the vLLM plugin)."""

    @hookimpl
    async def chat(self, request: Any, config: Any, http: Any) -> Any:
        return await openai_compat.chat(http, config, request)

    @hookimpl
    async def complete(self, request: Any, config: Any, http: Any) -> Any:
        return await openai_compat.complete(http, config, request)

    @hookimpl
    async def embed(self, request: Any, config: Any, http: Any) -> Any:
        return await openai_compat.embed(http, config, request)

    @hookimpl
    async def list_models(self, config: Any, http: Any) -> Any:
        return await openai_compat.list_models(http, config)

    @hookimpl
    async def health(self, config: Any, http: Any) -> Any:
        return await openai_compat.probe_health(http, config, path="/health")


class Upstreams:
    """Per-host behaviour for the mock transport; records every request."""

    def __init__(self) -> None:
        self.behaviour: dict[str, str] = {"up.test": "ok", "second.test": "ok"}
        self.requests: list[httpx.Request] = []

    def hits(self, host: str) -> int:
        return sum(1 for r in self.requests if r.url.host == host)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        host = request.url.host
        mode = self.behaviour[host]
        model = host.split(".")[0].encode()
        path = request.url.path
        if path == "/health":
            return httpx.Response(200 if mode != "down" else 503, json={"status": "ok"})
        if path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": f"{host}-m"}]})
        if mode in ("down", "503"):
            return httpx.Response(
                503, json={"error": {"message": f"overloaded, key {SECRET} rejected"}}
            )
        if mode == "429":
            return httpx.Response(
                429, headers={"retry-after": "7"}, json={"error": {"message": "slow down"}}
            )
        body = json.loads(request.content)
        if path == "/v1/embeddings":
            n = len(body["input"]) if isinstance(body["input"], list) else 1
            data = [{"object": "embedding", "index": i, "embedding": [0.1, 0.2]} for i in range(n)]
            return httpx.Response(200, json={"object": "list", "data": data, "model": "e"})
        if body.get("stream"):
            return httpx.Response(
                200,
                headers={"content-type": "text/event-stream"},
                content=sse(model, done=mode != "truncated"),
            )
        return httpx.Response(
            200, headers={"content-type": "application/json"}, content=CHAT % model
        )


ENV = {
    "INFERENCE_PROVIDER": "up",
    "ENABLE_FALLBACK": "true",
    "FALLBACK_CHAIN": "second",
    "INFERENCE_UP_BASE_URL": "http://up.test",
    "INFERENCE_UP_API_KEY": SECRET,
    "INFERENCE_UP_MODEL": "up-model",
    "INFERENCE_UP_ALIASES": "alias=up-model",
    "INFERENCE_SECOND_BASE_URL": "http://second.test",
    "INFERENCE_SECOND_MODEL": "second-model",
    "INFERENCE_MAX_RETRIES": "1",
    "INFERENCE_RETRY_BACKOFF": "0",
    "INFERENCE_RETRY_AFTER_CAP": "0",
    "HEALTH_CHECK_INTERVAL": "3600",
}


@pytest.fixture
def upstreams() -> Upstreams:
    return Upstreams()


@pytest.fixture
def build(upstreams: Upstreams) -> Callable[..., Any]:
    def _build(env: dict[str, str] | None = None, **settings: Any) -> tuple[Any, Router]:
        router = Router.from_env(
            {**ENV, **(env or {})},
            env_file=None,
            transport=httpx.MockTransport(upstreams),
            extra_plugins={"up": Relay(), "second": Relay()},
        )
        app = create_app(router, GatewaySettings.from_env(env={}, **settings))
        return app, router

    return _build


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw")


async def test_non_stream_bytes_relayed_verbatim(build: Any, upstreams: Upstreams) -> None:
    app, _ = build()
    async with app.router.lifespan_context(app), client(app) as c:
        r = await c.post("/v1/chat/completions", json={"model": "alias", "messages": MSG})
    assert r.status_code == 200
    assert r.content == CHAT % b"up"  # vendor "timings" and key order intact
    assert r.headers["x-inference-backend"] == "up"
    sent = upstreams.requests[-1]
    assert json.loads(sent.content)["model"] == "up-model"
    assert sent.headers["authorization"] == f"Bearer {SECRET}"  # to the backend only


async def test_stream_relayed_verbatim(build: Any) -> None:
    app, _ = build()
    async with app.router.lifespan_context(app), client(app) as c:
        r = await c.post(
            "/v1/chat/completions",
            json={"messages": MSG, "stream": True, "stream_options": {"include_usage": True}},
        )
    assert r.status_code == 200
    assert r.content == sse(b"up")  # byte for byte, usage chunk and [DONE] included


async def test_fallback_serves_and_is_counted(build: Any, upstreams: Upstreams) -> None:
    upstreams.behaviour["up.test"] = "503"
    app, _ = build()
    async with app.router.lifespan_context(app), client(app) as c:
        r = await c.post("/v1/chat/completions", json={"messages": MSG})
        metrics = (await c.get("/metrics")).text
    assert r.status_code == 200
    assert r.content == CHAT % b"second"
    assert r.headers["x-inference-backend"] == "second"
    assert upstreams.hits("up.test") >= 2  # tried, retried once, then fell back
    assert 'inference_gateway_retries_total{backend="up",reason="unavailable"} 1.0' in metrics
    assert 'inference_gateway_fallbacks_total{backend="up",reason="unavailable"} 1.0' in metrics
    assert (
        'inference_gateway_requests_total{backend="second",endpoint="chat",status="200"} 1.0'
        in metrics
    )


async def test_every_backend_failed_is_503_with_attempts_and_no_secret(
    build: Any, upstreams: Upstreams
) -> None:
    upstreams.behaviour = {"up.test": "503", "second.test": "503"}
    app, _ = build()
    async with app.router.lifespan_context(app), client(app) as c:
        r = await c.post("/v1/chat/completions", json={"messages": MSG})
        health = await c.get("/v1/health/inference")
        metrics = await c.get("/metrics")
    assert r.status_code == 503
    assert r.headers["x-should-retry"] == "false"
    err = r.json()["error"]
    assert err["code"] == "all_backends_failed"
    assert [a["backend"] for a in err["attempts"]] == ["up", "up", "second", "second"]
    assert {a["kind"] for a in err["attempts"]} == {"unavailable"}
    for text in (r.text, health.text, metrics.text):
        assert SECRET not in text


async def test_rate_limit_passed_on_with_retry_after(build: Any, upstreams: Upstreams) -> None:
    upstreams.behaviour["up.test"] = "429"
    app, _ = build({"ENABLE_FALLBACK": "false"})
    async with app.router.lifespan_context(app), client(app) as c:
        r = await c.post("/v1/chat/completions", json={"messages": MSG})
    assert r.status_code == 429
    assert r.headers["retry-after"] == "7"
    assert "x-should-retry" not in r.headers
    assert r.json()["error"]["type"] == "rate_limit_error"


async def test_truncated_upstream_stream_ends_in_band(build: Any, upstreams: Upstreams) -> None:
    upstreams.behaviour["up.test"] = "truncated"
    app, _ = build()
    async with app.router.lifespan_context(app), client(app) as c:
        r = await c.post("/v1/chat/completions", json={"messages": MSG, "stream": True})
    assert r.status_code == 200
    events = [line[6:] for line in r.text.split("\n") if line.startswith("data: ")]
    assert "[DONE]" not in events
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == "w0"
    err = json.loads(events[-1])["error"]
    assert "[DONE]" in err["message"]
    assert err["code"] == "unavailable"


async def test_embeddings_models_health_ready(build: Any, upstreams: Upstreams) -> None:
    app, router = build()
    async with app.router.lifespan_context(app), client(app) as c:
        emb = await c.post("/v1/embeddings", json={"input": ["a", "b"], "model": "alias"})
        models = await c.get("/v1/models")
        health = await c.get("/v1/health/inference?refresh=true")
        ready = await c.get("/ready")
        metrics = (await c.get("/metrics")).text
        upstreams.behaviour = {"up.test": "down", "second.test": "down"}
        await router.health(refresh=True)
        not_ready = await c.get("/ready")
        metrics_down = (await c.get("/metrics")).text
    assert emb.status_code == 200
    assert len(emb.json()["data"]) == 2
    assert {(m["id"], m["owned_by"]) for m in models.json()["data"]} == {
        ("up.test-m", "up"),
        ("up-model", "up"),  # its default model (INFERENCE_UP_MODEL), with its alias
        ("second.test-m", "second"),
        ("second-model", "second"),
    }
    assert [m.get("aliases") for m in models.json()["data"] if m["id"] == "up-model"] == [["alias"]]
    detail = health.json()
    assert detail["status"] == "ok"
    assert detail["ready"] is True
    assert list(detail["backends"]) == ["up", "second"]
    assert detail["backends"]["up"]["state"] == "ready"
    assert detail["backends"]["up"]["breaker"] == "closed"
    assert ready.status_code == 200
    assert 'inference_gateway_backend_up{backend="up"} 1.0' in metrics
    assert not_ready.status_code == 503
    assert 'inference_gateway_backend_state{backend="second",state="down"} 1.0' in metrics_down
    for text in (health.text, metrics):
        assert SECRET not in text


async def test_model_routing_and_strict_unknown_model(build: Any, upstreams: Upstreams) -> None:
    app, _ = build(
        {
            "INFERENCE_STRICT_MODELS": "true",
            "INFERENCE_UP_ALIASES": "small=up-small",
            "INFERENCE_SECOND_ALIASES": "big=second-big",
        }
    )
    async with app.router.lifespan_context(app), client(app) as c:
        big = await c.post("/v1/chat/completions", json={"model": "big", "messages": MSG})
        unknown = await c.post("/v1/chat/completions", json={"model": "huge", "messages": MSG})
    assert big.status_code == 200
    assert big.headers["x-inference-backend"] == "second"  # routed by alias, not chain order
    posts = [r for r in upstreams.requests if r.method == "POST"]
    assert json.loads(posts[-1].content)["model"] == "second-big"
    assert len(posts) == 1  # the unknown model reached no backend
    assert unknown.status_code == 404
    err = unknown.json()["error"]
    assert err["code"] == "model_not_found"
    assert err["param"] == "model"
    assert "x-should-retry" not in unknown.headers


async def test_every_answer_names_the_model_that_answered(build: Any, upstreams: Upstreams) -> None:
    app, _ = build()
    async with app.router.lifespan_context(app), client(app) as c:
        plain = await c.post("/v1/chat/completions", json={"model": "alias", "messages": MSG})
        streamed = await c.post(
            "/v1/chat/completions", json={"model": "alias", "messages": MSG, "stream": True}
        )
        upstreams.behaviour["up.test"] = "503"
        fell_back = await c.post("/v1/chat/completions", json={"model": "alias", "messages": MSG})
    assert plain.headers["x-inference-model"] == "up-model"
    assert streamed.headers["x-inference-model"] == "up-model"
    assert (fell_back.headers["x-inference-backend"], fell_back.headers["x-inference-model"]) == (
        "second",
        "second-model",  # the rest of the chain answers with its own default, and says so
    )


async def test_one_model_by_id_alias_or_backend_slash_id(build: Any, upstreams: Upstreams) -> None:
    import openai

    app, _ = build()
    async with app.router.lifespan_context(app), client(app) as c:
        by_id = await c.get("/v1/models/up.test-m")
        by_alias = await c.get("/v1/models/alias")
        by_backend = await c.get("/v1/models/second/second-model")
        missing = await c.get("/v1/models/up.test-n")
        sdk = openai.AsyncOpenAI(
            base_url="http://gw/v1", api_key="x", http_client=client(app), max_retries=0
        )
        listed = await sdk.models.list()
        one = await sdk.models.retrieve("second-model")
        with pytest.raises(openai.NotFoundError) as info:
            await sdk.models.retrieve("nope")
    assert by_id.json()["owned_by"] == "up"
    assert by_id.json()["backends"] == ["up"]
    assert by_alias.json()["id"] == "up-model"
    assert by_backend.json()["owned_by"] == "second"
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"
    assert "up.test-m" in missing.json()["error"]["message"]  # a close name
    assert {m.id for m in listed.data} >= {"up.test-m", "second.test-m"}
    assert one.owned_by == "second"
    assert info.value.status_code == 404


async def test_health_carries_the_seed_applications_keys(build: Any, upstreams: Upstreams) -> None:
    app, _ = build()
    async with app.router.lifespan_context(app), client(app) as c:
        detail = (await c.get("/v1/health/inference?refresh=true")).json()
    assert detail["primary"]["type"] == "up"
    assert detail["primary"]["healthy"] is True
    assert "up.test-m" in detail["primary"]["models"]
    assert [f["type"] for f in detail["fallbacks"]] == ["second"]
    assert set(detail["backends"]) == {"up", "second"}  # the richer view stays
