"""Router.from_env with the real Settings and plugin loader; the SyncRouter facade."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_router_helpers import (
    SECRET,
    CompatPlugin,
    Server,
    error,
    ok_stream,
    transport,
)

from inference_core.errors import AllBackendsFailed, ConfigError
from inference_core.router import RequestTrace, Router, SyncRouter

ENV = {
    "INFERENCE_PROVIDER": "alpha",
    "ENABLE_FALLBACK": "true",
    "FALLBACK_CHAIN": "beta,alpha",
    "INFERENCE_ALPHA_BASE_URL": "http://a.test",
    "INFERENCE_ALPHA_MODEL": "alpha-8b",
    "INFERENCE_ALPHA_API_KEY": SECRET,
    "INFERENCE_BETA_BASE_URL": "http://b.test",
    "INFERENCE_ALPHA_ALIASES": "gpt-4o-mini=alpha-8b-instruct",
    "INFERENCE_BETA_MODEL": "beta-70b",
    "INFERENCE_MAX_RETRIES": "0",
    "HEALTH_CHECK_INTERVAL": "30",
}


def servers():
    return {"a.test": Server(error(503)), "b.test": Server()}


def make(env=None, srv=None):
    srv = srv or servers()
    router = Router.from_env(
        env or ENV,
        env_file=None,
        transport=transport(srv),
        extra_plugins={"alpha": CompatPlugin(), "beta": CompatPlugin()},
    )
    return router, srv


async def test_from_env_builds_the_chain_policy_and_aliases():
    router, srv = make()
    assert router.settings.chain == ["alpha", "beta"]
    assert router.policy.max_retries == 0
    assert router.monitor.interval == 30
    trace = RequestTrace()
    async with router:
        resp = await router.chat(
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}, trace=trace
        )
        health = await router.health()
    assert resp.choices[0].message.content == "hi"
    assert srv["a.test"].bodies[0]["model"] == "alpha-8b-instruct"
    assert srv["b.test"].bodies[0]["model"] == "beta-70b"
    assert srv["a.test"].requests[0].headers["authorization"] == f"Bearer {SECRET}"
    assert trace.backend == "beta"
    assert list(health) == ["alpha", "beta"]
    assert health["alpha"]["role"] == "primary"
    assert SECRET not in str(health)


async def test_from_env_unknown_backend_is_a_config_error():
    with pytest.raises(ConfigError):
        Router.from_env({"INFERENCE_PROVIDER": "nosuchbackend"}, env_file=None)


async def test_from_env_without_fallback_uses_the_provider_only():
    env = {k: v for k, v in ENV.items() if k != "ENABLE_FALLBACK"}
    router, srv = make(env)
    async with router:
        with pytest.raises(AllBackendsFailed) as info:
            await router.chat({"messages": [{"role": "user", "content": "hi"}]})
    assert [a.backend for a in info.value.attempts] == ["alpha"]
    assert not srv["b.test"].requests


# -------------------------------------------------------------------------------- sync


def test_sync_router_seed_methods():
    router, srv = make()
    with SyncRouter(router) as sync:
        out = sync.create_chat_completion(
            [{"role": "user", "content": "hi"}], model="gpt-4o-mini", temperature=0.2, max_tokens=5
        )
        assert out["object"] == "chat.completion"
        assert out["choices"][0]["message"]["content"] == "hi"
        assert srv["b.test"].bodies[0]["temperature"] == 0.2
        assert srv["b.test"].bodies[0]["max_tokens"] == 5
        srv["b.test"].default = httpx.Response(
            200, json={"object": "list", "model": "e", "data": [{"index": 0, "embedding": [0.5]}]}
        )
        emb = sync.create_embedding("hello")
        assert emb["data"][0]["embedding"] == [0.5]
        status = sync.get_health_status()
        assert status["primary"]["type"] == "alpha"
        assert [f["type"] for f in status["fallbacks"]] == ["beta"]
        assert set(status["backends"]) == {"alpha", "beta"}
    assert router.http is None, "close() closed the router"


def test_sync_router_streams_as_a_blocking_iterator():
    srv = {"a.test": Server(ok_stream(3)), "b.test": Server()}
    router, _ = make(srv=srv)
    with SyncRouter(router) as sync:
        chunks = list(
            sync.create_chat_completion([{"role": "user", "content": "x"}], "default", stream=True)
        )
        assert [c["object"] for c in chunks] == ["chat.completion.chunk"] * 4
        assert router.in_flight == 0
        # stopping early closes the stream
        it = sync.chat({"messages": [{"role": "user", "content": "x"}], "stream": True})
        next(it)
        it.close()
        assert router.in_flight == 0


async def test_sync_router_works_inside_a_running_event_loop():
    router, _ = make()
    assert asyncio.get_running_loop().is_running()
    sync = SyncRouter(router)
    try:
        out = sync.create_chat_completion([{"role": "user", "content": "hi"}], "gpt-4o-mini")
        assert out["choices"][0]["message"]["content"] == "hi"
        assert sync._thread is not threading.current_thread()
    finally:
        sync.close()


def test_sync_router_raises_the_taxonomy_errors():
    env = {k: v for k, v in ENV.items() if k != "ENABLE_FALLBACK"}
    router, _ = make(env)
    with SyncRouter(router) as sync, pytest.raises(AllBackendsFailed):
        sync.create_chat_completion([{"role": "user", "content": "hi"}], "default")
