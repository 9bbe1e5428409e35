"""Keys, limits and usage through the gateway over the real Router (upstreams faked with
``httpx.MockTransport``; the official ``openai`` SDK as the client over ASGI, no sockets).

The key store is a real TOML file made by ``inference keys create``; Redis-backed runs use a
real redis-server (the ``redis_url`` fixture).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_router_helpers import CompatPlugin as Relay

from inference_core.cli import build_app
from inference_core.gateway import GatewaySettings, create_app
from inference_core.router import Router
from inference_core.state import StateSettings

MSG = [{"role": "user", "content": "hi"}]
CHAT = (
    b'{"id":"chatcmpl-up","object":"chat.completion","created":1700000000,"model":"%s",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"Hi!"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":4,"completion_tokens":1,"total_tokens":5}}'
)
ADMIN = "admin-secret-xyz"
LEGACY = "legacy-env-key-1"


def sse(model: bytes, usage: bool) -> bytes:
    events = [
        b'{"id":"s","object":"chat.completion.chunk","created":1,"model":"%s","choices":[{"index":0,'
        b'"delta":{"content":"w%d"},"finish_reason":null}]}' % (model, i)
        for i in range(2)
    ]
    if usage:
        events.append(
            b'{"id":"s","object":"chat.completion.chunk","created":1,"model":"%s","choices":[],'
            b'"usage":{"prompt_tokens":4,"completion_tokens":3,"total_tokens":7}}' % model
        )
    return b"".join(b"data: " + e + b"\n\n" for e in events) + b"data: [DONE]\n\n"


class Upstream:
    """Answers like an OpenAI-compatible server; usage in a stream only when asked for."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.gate: asyncio.Event | None = None
        self.arrived = asyncio.Event()
        self.fail = False

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(200, json={"status": "ok"})
        body = json.loads(request.content)
        self.bodies.append(body)
        self.arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            return httpx.Response(503, json={"error": {"message": "down"}})
        model = request.url.host.split(".")[0].encode()
        if body.get("stream"):
            asked = bool((body.get("stream_options") or {}).get("include_usage"))
            return httpx.Response(200, headers={"content-type": "text/event-stream"},
                                  content=sse(model, asked))  # fmt: skip
        return httpx.Response(200, headers={"content-type": "application/json"},
                              content=CHAT % model)  # fmt: skip


ENV = {
    "INFERENCE_PROVIDER": "up",
    "INFERENCE_UP_BASE_URL": "http://up.test",
    "INFERENCE_UP_MODEL": "up-model",
    "INFERENCE_MAX_RETRIES": "0",
    "HEALTH_CHECK_INTERVAL": "3600",
}


async def cli(env: dict[str, str], *args: str) -> Any:
    """The real ``inference`` CLI (in a thread: it runs its own event loop)."""
    from typer.testing import CliRunner

    def run() -> Any:
        return CliRunner().invoke(build_app(env=env), list(args))

    return await asyncio.to_thread(run)


async def create_key(keys_file: Path | dict[str, str], name: str, *args: str) -> str:
    """``inference keys create`` through the real CLI; returns the secret (its last line)."""
    env = keys_file if isinstance(keys_file, dict) else {"INFERENCE_KEYS_FILE": str(keys_file)}
    result = await cli(env, "keys", "create", name, *args)
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    return tmp_path / "keys.toml"


@pytest.fixture
def build(upstream: Upstream, keys_file: Path) -> Callable[..., Any]:
    def _build(state: dict[str, str] | None = None, **gateway: Any) -> Any:
        router = Router.from_env(
            ENV, env_file=None, transport=httpx.MockTransport(upstream),
            extra_plugins={"up": Relay()},
        )  # fmt: skip
        env = {"INFERENCE_KEYS_FILE": str(keys_file), "INFERENCE_ADMIN_KEYS": ADMIN,
               **(state or {})}  # fmt: skip
        return create_app(
            router,
            GatewaySettings.from_env(env={}, **gateway),
            state_settings=StateSettings.from_env(env),
        )

    return _build


def http(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw")


def sdk(app: Any, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key=key, base_url="http://gw/v1", max_retries=0, http_client=http(app)
    )


async def test_store_keys_bearer_and_x_api_key_legacy_keys_too(build, keys_file):
    secret = await create_key(keys_file, "alice")
    assert secret.startswith("sk-inf-")
    assert secret not in keys_file.read_text()  # only its hash is stored
    app = build(api_keys=LEGACY)
    async with app.router.lifespan_context(app), http(app) as c:
        r = await sdk(app, secret).chat.completions.create(model="m", messages=MSG)
        assert r.choices[0].message.content == "Hi!"
        r2 = await c.post("/v1/chat/completions", json={"messages": MSG},
                          headers={"x-api-key": secret})  # fmt: skip
        assert r2.status_code == 200
        r3 = await c.post("/v1/chat/completions", json={"messages": MSG},
                          headers={"authorization": f"Bearer {LEGACY}"})  # fmt: skip
        assert r3.status_code == 200
        with pytest.raises(openai.AuthenticationError) as info:
            await sdk(app, "sk-inf-wrong").chat.completions.create(model="m", messages=MSG)
        assert info.value.code == "invalid_api_key"
        missing = await c.post("/v1/chat/completions", json={"messages": MSG})
        assert missing.status_code == 401
        assert "x-api-key" in missing.json()["error"]["message"]


async def test_key_created_while_serving_works_at_once_and_revoked_stops(build, keys_file):
    await create_key(keys_file, "first")
    app = build(api_keys="")
    async with app.router.lifespan_context(app), http(app) as c:
        secret = await create_key(keys_file, "later")
        r = await c.post("/v1/chat/completions", json={"messages": MSG},
                         headers={"authorization": f"Bearer {secret}"})  # fmt: skip
        assert r.status_code == 200
        out = await cli({"INFERENCE_KEYS_FILE": str(keys_file)}, "keys", "revoke", "later")
        assert out.exit_code == 0
        await app.gateway.teams.ring.reload()  # what the reload loop does every few seconds
        r = await c.post("/v1/chat/completions", json={"messages": MSG},
                         headers={"authorization": f"Bearer {secret}"})  # fmt: skip
        assert r.status_code == 401


async def test_expired_key_is_401_expired(build, keys_file):
    secret = await create_key(keys_file, "old", "--expires", "2020-01-01")
    app = build()
    async with app.router.lifespan_context(app):
        with pytest.raises(openai.AuthenticationError) as info:
            await sdk(app, secret).chat.completions.create(model="m", messages=MSG)
    assert info.value.code == "expired_api_key"
    assert "old" in info.value.message


async def test_model_globs_403(build, keys_file):
    secret = await create_key(keys_file, "narrow", "--models", "gemma*,llama-3")
    app = build()
    async with app.router.lifespan_context(app):
        client = sdk(app, secret)
        await client.chat.completions.create(model="gemma-3-270m", messages=MSG)
        await client.chat.completions.create(model="llama-3", messages=MSG)
        with pytest.raises(openai.PermissionDeniedError) as info:
            await client.chat.completions.create(model="gpt-4o", messages=MSG)
    err = info.value.body
    assert info.value.status_code == 403
    assert err["code"] == "model_not_allowed"
    assert err["param"] == "model"


async def test_model_list_shows_a_narrow_key_only_the_models_it_may_use(
    build, keys_file, monkeypatch
):
    """``/v1/models`` and ``/v1/models/{id}`` answer a key limited to some models with those
    models only (by id, alias or ``backend/id``); the others are 404s without close-name
    suggestions, as if they were not there. A key without limits sees everything."""
    monkeypatch.setitem(ENV, "INFERENCE_UP_MODELS", "gemma-3-270m,llama-3,gpt-4o")
    monkeypatch.setitem(ENV, "INFERENCE_UP_ALIASES", "fast=gpt-4o")
    narrow = await create_key(keys_file, "narrow", "--models", "gemma*,fast")
    wide = await create_key(keys_file, "wide")
    app = build()
    async with app.router.lifespan_context(app):
        everything = {m.id for m in (await sdk(app, wide).models.list()).data}
        assert {"gemma-3-270m", "llama-3", "gpt-4o"} <= everything
        client = sdk(app, narrow)
        listed = {m.id for m in (await client.models.list()).data}
        assert listed == {"gemma-3-270m", "gpt-4o"}  # gpt-4o through its alias "fast"
        assert (await client.models.retrieve("gemma-3-270m")).id == "gemma-3-270m"
        assert (await client.models.retrieve("fast")).id == "gpt-4o"
        for hidden in ("llama-3", "llama-4", "up/llama-3"):
            with pytest.raises(openai.NotFoundError) as info:
                await client.models.retrieve(hidden)
            assert "llama-3" not in info.value.message.replace(hidden, "")  # no suggestions
        assert (await sdk(app, wide).models.retrieve("llama-3")).id == "llama-3"
        with pytest.raises(openai.AuthenticationError):
            await sdk(app, "sk-inf-wrong").models.list()


async def test_a_narrow_keys_404_suggests_only_models_it_may_use(build, keys_file, monkeypatch):
    """A name the key's globs match but nobody serves is the usual 404 with close names, but
    only names the key may use: a wide key is told of ``llama-2``, a ``llama-3*`` key is not."""
    monkeypatch.setitem(ENV, "INFERENCE_UP_MODELS", "llama-3,llama-2,gemma-3-270m")
    narrow = await create_key(keys_file, "narrow", "--models", "llama-3*")
    wide = await create_key(keys_file, "wide")
    app = build()
    async with app.router.lifespan_context(app):
        with pytest.raises(openai.NotFoundError) as told:
            await sdk(app, wide).chat.completions.create(model="llama-3-x", messages=MSG)
        with pytest.raises(openai.NotFoundError) as kept:
            await sdk(app, narrow).chat.completions.create(model="llama-3-x", messages=MSG)
    assert "did you mean: llama-3, llama-2, llama-3:latest, llama-2:latest?" in told.value.message
    assert "did you mean: llama-3, llama-3:latest? (GET /v1/models" in kept.value.message
    assert kept.value.body["code"] == "model_not_found"


async def test_rpm_429_with_retry_after_naming_the_limit(build, keys_file, upstream):
    secret = await create_key(keys_file, "slow", "--rpm", "2")
    app = build()
    async with app.router.lifespan_context(app), http(app) as c:
        hdr = {"authorization": f"Bearer {secret}"}
        for _ in range(2):
            assert (await c.post("/v1/chat/completions", json={"messages": MSG},
                                 headers=hdr)).status_code == 200  # fmt: skip
        r = await c.post("/v1/chat/completions", json={"messages": MSG}, headers=hdr)
        metrics = (await c.get("/metrics", headers=hdr)).text  # protected: keys are set
    assert r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 120
    err = r.json()["error"]
    assert err["code"] == "rpm_limit_exceeded"
    assert "2 requests per minute" in err["message"]
    assert "slow" in err["message"]
    assert len(upstream.bodies) == 2  # the refused one never reached the backend
    assert 'inference_gateway_limit_rejections_total{key="slow",limit="rpm"} 1.0' in metrics
    assert secret not in metrics


async def test_tpm_and_budget(build, keys_file):
    tpm = await create_key(keys_file, "tpm", "--tpm", "6")
    budget = await create_key(keys_file, "budget", "--budget", "10", "--period", "day")
    app = build()
    async with app.router.lifespan_context(app):
        client = sdk(app, tpm)
        await client.chat.completions.create(model="m", messages=MSG)  # 5 tokens
        await client.chat.completions.create(model="m", messages=MSG)  # 10 > 6 now
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(model="m", messages=MSG)
        assert info.value.code == "tpm_limit_exceeded"
        client = sdk(app, budget)
        for _ in range(2):
            await client.chat.completions.create(model="m", messages=MSG)
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(model="m", messages=MSG)
        assert info.value.code == "budget_exceeded"
        assert int(info.value.response.headers["retry-after"]) <= 86400


async def test_parallel_limit(build, keys_file, upstream):
    secret = await create_key(keys_file, "one-at-a-time", "--parallel", "1")
    app = build()
    upstream.gate = asyncio.Event()
    async with app.router.lifespan_context(app), http(app) as c:
        hdr = {"authorization": f"Bearer {secret}"}
        first = asyncio.ensure_future(
            c.post("/v1/chat/completions", json={"messages": MSG}, headers=hdr)
        )
        await asyncio.wait_for(upstream.arrived.wait(), 5)
        second = await c.post("/v1/chat/completions", json={"messages": MSG}, headers=hdr)
        upstream.gate.set()
        assert (await first).status_code == 200
        third = await c.post("/v1/chat/completions", json={"messages": MSG}, headers=hdr)
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "parallel_limit_exceeded"
    assert third.status_code == 200  # the slot was freed


async def test_failed_request_frees_its_parallel_slot(build, keys_file, upstream):
    secret = await create_key(keys_file, "p", "--parallel", "1")
    app = build()
    upstream.fail = True
    async with app.router.lifespan_context(app), http(app) as c:
        hdr = {"authorization": f"Bearer {secret}"}
        assert (await c.post("/v1/chat/completions", json={"messages": MSG},
                             headers=hdr)).status_code == 503  # fmt: skip
        upstream.fail = False
        assert (await c.post("/v1/chat/completions", json={"messages": MSG},
                             headers=hdr)).status_code == 200  # fmt: skip


async def test_usage_asked_on_every_stream_and_stripped_unless_asked(build, keys_file, upstream):
    secret = await create_key(keys_file, "bob")
    app = build()
    async with app.router.lifespan_context(app), http(app) as c:
        client = sdk(app, secret)
        stream = await client.chat.completions.create(model="m", messages=MSG, stream=True)
        chunks = [ch async for ch in stream]
        assert [ch.usage for ch in chunks] == [None, None]  # no usage chunk for this client
        assert upstream.bodies[-1]["stream_options"] == {"include_usage": True}
        stream = await client.chat.completions.create(
            model="m", messages=MSG, stream=True, stream_options={"include_usage": True}
        )
        chunks = [ch async for ch in stream]
        assert chunks[-1].usage.total_tokens == 7
        await client.chat.completions.create(model="m", messages=MSG)  # 4 + 1
        denied = await c.get("/v1/admin/usage", headers={"authorization": f"Bearer {secret}"})
        usage = await c.get("/v1/admin/usage?period=month&key=bob",
                            headers={"authorization": f"Bearer {ADMIN}"})  # fmt: skip
        keys = await c.get("/v1/admin/keys", headers={"x-api-key": ADMIN})
        metrics = (await c.get("/metrics", headers={"authorization": f"Bearer {secret}"})).text
    assert denied.status_code == 401
    assert denied.json()["error"]["code"] == "invalid_admin_key"
    assert usage.status_code == 200
    bob = usage.json()["keys"]["bob"]
    assert (bob["prompt_tokens"], bob["completion_tokens"], bob["requests"]) == (12, 7, 3)
    assert bob["by"] == [{"model": "m", "backend": "up", "prompt_tokens": 12,
                          "completion_tokens": 7, "requests": 3}]  # fmt: skip
    assert usage.json()["period"].startswith("m")
    listed = keys.json()["data"]
    assert [k["name"] for k in listed] == ["bob"]
    assert "hash" not in listed[0]
    line = ('inference_gateway_key_tokens_total{backend="up",direction="prompt",key="bob",'
            'model="m"} 12.0')  # fmt: skip
    assert line in metrics
    assert secret not in metrics


async def test_open_gateway_counts_usage_as_anonymous(build):
    app = build(state={"INFERENCE_KEYS_FILE": ""})
    async with app.router.lifespan_context(app), http(app) as c:
        r = await c.post("/v1/chat/completions", json={"messages": MSG})
        usage = await c.get("/v1/admin/usage", headers={"authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200
    assert usage.json()["keys"]["anonymous"]["prompt_tokens"] == 4


async def test_admin_usage_bad_period_is_400(build):
    app = build()
    async with app.router.lifespan_context(app), http(app) as c:
        r = await c.get("/v1/admin/usage?period=year", headers={"x-api-key": ADMIN})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "period"


# --------------------------------------------------------------------------- with Redis


async def test_redis_key_store_and_limits_shared_by_two_apps(build, redis_url, redis_prefix):
    env = {"INFERENCE_REDIS_URL": redis_url, "INFERENCE_REDIS_PREFIX": redis_prefix}
    secret = await create_key(env, "shared", "--rpm", "3")
    a, b = build(state=env), build(state=env)
    async with (
        a.router.lifespan_context(a),
        b.router.lifespan_context(b),
        http(a) as ca,
        http(b) as cb,
    ):
        hdr = {"authorization": f"Bearer {secret}"}
        codes = []
        for i in range(6):
            c = ca if i % 2 else cb
            r = await c.post("/v1/chat/completions", json={"messages": MSG}, headers=hdr)
            codes.append(r.status_code)
        await a.gateway.teams.state.flush()
        await b.gateway.teams.state.flush()
        usage = await ca.get("/v1/admin/usage?key=shared", headers={"x-api-key": ADMIN})
    assert codes.count(200) == 3
    assert codes.count(429) == 3
    assert usage.json()["keys"]["shared"]["requests"] == 3  # both apps' requests, one store


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_redis_down_is_the_documented_setting(build, keys_file, mode):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"INFERENCE_REDIS_URL": f"redis://127.0.0.1:{port}/0", "INFERENCE_REDIS_FAIL": mode,
           "INFERENCE_REDIS_TIMEOUT": "0.2"}  # fmt: skip
    app = build(state=env, api_keys=LEGACY)  # keys from the env still work without Redis
    # a limited key, as if it had been loaded from Redis before it went down
    from inference_core.gateway.keys import make_record

    record = make_record("limited", "sk-inf-limited-secret", rpm=5)
    async with app.router.lifespan_context(app), http(app) as c:
        app.gateway.teams.ring.by_hash[record.hash] = record
        r = await c.post("/v1/chat/completions", json={"messages": MSG},
                         headers={"authorization": "Bearer sk-inf-limited-secret"})  # fmt: skip
        plain = await c.post("/v1/chat/completions", json={"messages": MSG},
                             headers={"authorization": f"Bearer {LEGACY}"})  # fmt: skip
    assert plain.status_code == 200  # a key without limits needs no Redis
    if mode == "open":
        assert r.status_code == 200
    else:
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "state_unavailable"


class Hosts:
    """Per-host upstream modes ("ok", "503", "429"); counts the chat requests per host."""

    def __init__(self) -> None:
        self.mode = {"up.test": "ok", "second.test": "ok"}
        self.hits: dict[str, int] = {"up.test": 0, "second.test": 0}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if request.url.path == "/health":
            return httpx.Response(200, json={"status": "ok"})
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": []})
        self.hits[host] += 1
        if self.mode[host] == "503":
            return httpx.Response(503, json={"error": {"message": "down"}})
        if self.mode[host] == "429":
            return httpx.Response(429, headers={"retry-after": "30"},
                                  json={"error": {"message": "slow down"}})  # fmt: skip
        model = host.split(".")[0].encode()
        return httpx.Response(200, headers={"content-type": "application/json"},
                              content=CHAT % model)  # fmt: skip


def chain_app(hosts: Hosts, state: dict[str, str], api_keys: str = "") -> Any:
    env = {
        **ENV,
        "ENABLE_FALLBACK": "true",
        "FALLBACK_CHAIN": "second",
        "INFERENCE_SECOND_BASE_URL": "http://second.test",
        "INFERENCE_BREAKER_THRESHOLD": "1",
        "INFERENCE_BREAKER_COOLDOWN": "30",
        "INFERENCE_RETRY_AFTER_CAP": "0",
    }
    router = Router.from_env(env, env_file=None, transport=httpx.MockTransport(hosts),
                             extra_plugins={"up": Relay(), "second": Relay()})  # fmt: skip
    return create_app(router, GatewaySettings.from_env(env={}, api_keys=api_keys),
                      state_settings=StateSettings.from_env(state))  # fmt: skip


@pytest.mark.parametrize("fault", ["503", "429"])
async def test_breaker_and_429_memory_shared_within_a_second(redis_url, redis_prefix, fault):
    """A backend that failed (breaker open) or answered 429 on gateway A is skipped by gateway
    B within a second, without B sending it a single request."""
    state = {"INFERENCE_REDIS_URL": redis_url, "INFERENCE_REDIS_PREFIX": redis_prefix,
             "INFERENCE_STATE_SYNC_INTERVAL": "0.1"}  # fmt: skip
    hosts_a, hosts_b = Hosts(), Hosts()
    hosts_a.mode["up.test"] = fault
    hosts_b.mode["up.test"] = fault  # B would meet the same fault if it tried
    # with Redis the key store is Redis: every request needs a key (a legacy one here)
    a, b = chain_app(hosts_a, state, LEGACY), chain_app(hosts_b, state, LEGACY)
    async with (
        a.router.lifespan_context(a),
        b.router.lifespan_context(b),
        http(a) as ca,
        http(b) as cb,
    ):
        ca.headers["authorization"] = cb.headers["authorization"] = f"Bearer {LEGACY}"
        r = await ca.post("/v1/chat/completions", json={"messages": MSG})
        assert r.headers["x-inference-backend"] == "second", r.text
        assert hosts_a.hits["up.test"] == 1
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.sleep(1.0)
        r = await cb.post("/v1/chat/completions", json={"messages": MSG})
        health = (await cb.get("/v1/health/inference")).json()
    assert loop.time() - t0 < 1.5
    assert r.status_code == 200
    assert r.headers["x-inference-backend"] == "second"
    assert hosts_b.hits["up.test"] == 0  # B learned it from A, through Redis
    up = health["backends"]["up"]
    if fault == "503":
        assert up["breaker"] == "open"
    else:
        assert up["rate_limited"] > 25


async def test_without_redis_nothing_is_shared(redis_prefix):
    hosts_a, hosts_b = Hosts(), Hosts()
    hosts_a.mode["up.test"] = hosts_b.mode["up.test"] = "503"
    a, b = chain_app(hosts_a, {}), chain_app(hosts_b, {})
    async with (
        a.router.lifespan_context(a),
        b.router.lifespan_context(b),
        http(a) as ca,
        http(b) as cb,
    ):
        await ca.post("/v1/chat/completions", json={"messages": MSG})
        await asyncio.sleep(0.3)
        r = await cb.post("/v1/chat/completions", json={"messages": MSG})
    assert r.headers["x-inference-backend"] == "second"
    assert hosts_b.hits["up.test"] == 1  # B found out on its own (the control for the above)


async def test_responses_store_shared_by_two_apps_through_redis(build, redis_url, redis_prefix):
    """A response stored by one gateway is read (GET, previous_response_id) on another."""
    env = {"INFERENCE_REDIS_URL": redis_url, "INFERENCE_REDIS_PREFIX": redis_prefix}
    a, b = build(state=env, api_keys=LEGACY), build(state=env, api_keys=LEGACY)
    hdr = {"authorization": f"Bearer {LEGACY}"}
    async with (
        a.router.lifespan_context(a),
        b.router.lifespan_context(b),
        http(a) as ca,
        http(b) as cb,
    ):
        made = await ca.post("/v1/responses", json={"model": "m", "input": "hi"}, headers=hdr)
        assert made.status_code == 200, made.text
        rid = made.json()["id"]
        got = await cb.get(f"/v1/responses/{rid}", headers=hdr)
        follow = await cb.post("/v1/responses", headers=hdr, json={
            "model": "m", "input": "and then?", "previous_response_id": rid})  # fmt: skip
        deleted = await cb.delete(f"/v1/responses/{rid}", headers=hdr)
        gone = await ca.get(f"/v1/responses/{rid}", headers=hdr)
    assert got.status_code == 200
    assert got.json()["id"] == rid
    assert follow.status_code == 200, follow.text
    assert deleted.status_code == 200
    assert gone.status_code == 404


async def test_responses_store_in_process_without_redis(build):
    a, b = build(api_keys=LEGACY), build(api_keys=LEGACY)
    hdr = {"authorization": f"Bearer {LEGACY}"}
    async with (
        a.router.lifespan_context(a),
        b.router.lifespan_context(b),
        http(a) as ca,
        http(b) as cb,
    ):
        rid = (await ca.post("/v1/responses", json={"model": "m", "input": "hi"},
                             headers=hdr)).json()["id"]  # fmt: skip
        assert (await ca.get(f"/v1/responses/{rid}", headers=hdr)).status_code == 200
        assert (await cb.get(f"/v1/responses/{rid}", headers=hdr)).status_code == 404  # control
