"""Shared fakes for the router tests (imported by the other test_router*/test_resilience* files).

* :class:`FakeSettings` / :func:`plugin_set`: stand-ins shaped like ``Settings`` and
  ``PluginSet`` (pluggy subset hook callers, one per backend, as plugins.py builds them).
* :class:`CompatPlugin`: an in-memory backend plugin built on ``inference_core.http.openai_compat``.
* :class:`Server` + :func:`transport`: scripted OpenAI-compatible servers behind an
  ``httpx.MockTransport``, one per host.
* :class:`FakeTime`: an injectable clock and sleep that never really sleeps.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pluggy
import pytest

from inference_core import hookspecs
from inference_core.hookspecs import HOOK_NAMES, hookimpl
from inference_core.http import openai_compat
from inference_core.models import BackendConfig, ChatRequest
from inference_core.resilience.policy import RouterPolicy
from inference_core.router import Router

sys.path.insert(0, str(Path(__file__).parent))

SECRET = "sk-secret-123"


# ------------------------------------------------------------------------------ settings


@dataclass
class FakeSettings:
    configs: list[BackendConfig]
    policy: RouterPolicy = field(default_factory=RouterPolicy)
    health_check_interval: float = 60.0
    health_check_timeout: float = 5.0

    @property
    def chain(self) -> list[str]:
        return [c.name for c in self.configs]

    def backend(self, name: str) -> BackendConfig:
        for c in self.configs:
            if c.name == name:
                return c
        raise KeyError(name)


@dataclass
class FakeReport:
    name: str
    error: str | None = None


class FakeHooks:
    def __init__(self, pm: pluggy.PluginManager, name: str, others: list[object]) -> None:
        self.name = name
        self._plugin = pm.get_plugin(name)
        self.plugin = self._plugin  # as plugins.BackendHooks has it (capability flags)
        for hook in HOOK_NAMES:
            setattr(self, hook, pm.subset_hook_caller(hook, remove_plugins=others))

    def implements(self, hook: str) -> bool:
        return hasattr(self._plugin, hook)


@dataclass
class FakePluginSet:
    pm: pluggy.PluginManager
    backends: dict[str, FakeHooks]
    reports: list[FakeReport]


def plugin_set(plugins: dict[str, object], failed: dict[str, str] | None = None) -> FakePluginSet:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for name, plugin in plugins.items():
        pm.register(plugin, name=name)
    pm.check_pending()
    objs = list(plugins.values())
    backends = {
        name: FakeHooks(pm, name, [o for o in objs if o is not plugin])
        for name, plugin in plugins.items()
    }
    reports = [FakeReport(n) for n in plugins] + [
        FakeReport(n, e) for n, e in (failed or {}).items()
    ]
    return FakePluginSet(pm, backends, reports)


# ------------------------------------------------------------------------------- plugins


class CompatPlugin:
    """A backend plugin on the shared OpenAI-compatible helpers."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []  # (request.model, config.base_url)

    @hookimpl
    async def chat(self, request, config, http):
        self.seen.append((request.model, config.base_url))
        return await openai_compat.chat(http, config, request)

    @hookimpl
    async def complete(self, request, config, http):
        return await openai_compat.complete(http, config, request)

    @hookimpl
    async def embed(self, request, config, http):
        return await openai_compat.embed(http, config, request)

    @hookimpl
    async def list_models(self, config, http):
        return await openai_compat.list_models(http, config)

    @hookimpl
    async def health(self, config, http):
        return await openai_compat.probe_health(http, config)


# ------------------------------------------------------------------------- mock servers


def chat_json(model: str = "m", text: str = "hi", usage: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
    }
    if usage:
        body["usage"] = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    return body


def chunk_json(model: str = "m", text: str = "x", usage: bool = False) -> dict[str, Any]:
    if usage:
        return {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": [],
            "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
        }
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }


def sse(*payloads: Any, done: bool = True) -> bytes:
    out = b"".join(b"data: " + json.dumps(p).encode() + b"\n\n" for p in payloads)
    return out + (b"data: [DONE]\n\n" if done else b"")


Reply = httpx.Response | BaseException | Callable[[httpx.Request], Any]


class Server:
    """A scripted server: replies from ``script`` first, then ``default``."""

    def __init__(self, default: Reply | None = None) -> None:
        self.script: deque[Reply] = deque()
        self.default: Reply = default if default is not None else ok_chat()
        self.requests: list[httpx.Request] = []
        self.bodies: list[dict[str, Any]] = []
        self.health: Reply = httpx.Response(200, json={"status": "ok"})
        self.health_calls = 0
        self.models: list[str] = []
        """What ``GET /v1/models`` lists (the router's catalog reads it; not recorded)."""
        self.models_calls = 0

    def then(self, *replies: Reply) -> Server:
        self.script.extend(replies)
        return self

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path in ("/health", "/v1/health"):
            self.health_calls += 1
            return await _realise(self.health, request)
        if request.url.path == "/v1/models":
            self.models_calls += 1
            data = [{"id": m, "object": "model", "owned_by": "test"} for m in self.models]
            return httpx.Response(200, json={"object": "list", "data": data}, request=request)
        self.requests.append(request)
        if request.content:
            self.bodies.append(json.loads(request.content))
        reply = self.script.popleft() if self.script else self.default
        return await _realise(reply, request)


async def _realise(reply: Reply, request: httpx.Request) -> httpx.Response:
    if isinstance(reply, BaseException):
        raise reply
    if isinstance(reply, httpx.Response):
        # a Response can be sent once; hand out a copy for reuse as a default
        return httpx.Response(
            reply.status_code, headers=reply.headers, content=reply.content, request=request
        )
    result = reply(request)
    if asyncio.iscoroutine(result):
        result = await result
    return result


def ok_chat(model: str = "m", text: str = "hi") -> httpx.Response:
    return httpx.Response(200, json=chat_json(model, text))


def ok_stream(n: int = 3, *, usage: bool = True, model: str = "m") -> httpx.Response:
    payloads = [chunk_json(model, f"t{i}") for i in range(n)]
    if usage:
        payloads.append(chunk_json(model, usage=True))
    return httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=sse(*payloads)
    )


def error(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    if body is None:
        body = {"error": {"message": f"boom {status}", "type": "server_error"}}
    if isinstance(body, str | bytes):
        return httpx.Response(status, content=body, headers=headers)
    return httpx.Response(status, json=body, headers=headers)


def transport(servers: dict[str, Server]) -> httpx.MockTransport:
    async def handler(request: httpx.Request) -> httpx.Response:
        server = servers.get(request.url.host)
        if server is None:
            raise httpx.ConnectError("connection refused", request=request)
        return await server.handle(request)

    return httpx.MockTransport(handler)


# ------------------------------------------------------------------------------- time


class FakeTime:
    """A monotonic clock that only moves when ``sleep`` is awaited (no real sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


# ------------------------------------------------------------------------------ builders


def config(name: str, *, api_key: str | None = None, **kw: Any) -> BackendConfig:
    kw.setdefault("base_urls", (f"http://{name}.test",))
    kw.setdefault("model", f"{name}-model")
    return BackendConfig(name=name, api_key=api_key, **kw)


def build(
    servers: dict[str, Server] | None = None,
    *,
    configs: list[BackendConfig] | None = None,
    plugins: dict[str, object] | None = None,
    policy: RouterPolicy | None = None,
    fake_time: FakeTime | None = None,
    rand: Callable[[], float] | None = None,
    interval: float = 60.0,
    timeout: float = 5.0,
    failed: dict[str, str] | None = None,
    http_transport: httpx.AsyncBaseTransport | None = None,
) -> Router:
    servers = servers or {}
    if configs is None:
        configs = [config(host.split(".")[0]) for host in servers]
    if plugins is None:
        plugins = {c.name: CompatPlugin() for c in configs if c.name not in (failed or {})}
    settings = FakeSettings(
        configs,
        policy or RouterPolicy(),
        health_check_interval=interval,
        health_check_timeout=timeout,
    )
    kwargs: dict[str, Any] = {}
    if fake_time is not None:
        kwargs["clock"] = fake_time.clock
        kwargs["sleep"] = fake_time.sleep
    if rand is not None:
        kwargs["rand"] = rand
    return Router(
        settings,
        plugin_set(plugins, failed),
        transport=http_transport or transport(servers),
        **kwargs,
    )


def req(model: str = "default", stream: bool = False, **kw: Any) -> ChatRequest:
    return ChatRequest(
        model=model, messages=[{"role": "user", "content": "hello"}], stream=stream, **kw
    )


def test_helpers_fake_time_never_really_sleeps() -> None:
    ft = FakeTime()
    asyncio.run(ft.sleep(100.0))
    assert ft.now == 1100.0
    assert ft.sleeps == [100.0]


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()
