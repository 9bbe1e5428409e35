"""The gateway's safe defaults and client limits, against a real uvicorn server on loopback
(issue #11, items 2 and 3): raw sockets play the slow and abusive clients.

* a non-loopback bind without keys is refused (``check_bind``, ``inference serve``);
* ``/docs`` and ``/openapi.json`` are off unless enabled; ``/metrics`` needs a key when keys
  are set;
* header timeout (idle and dripping clients), body timeout, header size cap (complete and
  endless header lines), connection cap; legitimate requests keep being answered meanwhile;
* request caps: prompt lists, messages, tools, model-name length (and the access log never
  carries an unbounded model name).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn

from inference_core.errors import ConfigError
from inference_core.gateway import GatewaySettings, create_app
from inference_core.gateway.server import check_bind, is_loopback, uvicorn_options
from inference_core.models import ChatResponse, CompletionResponse

CHAT = {
    "id": "c1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
}


class Router:
    """The smallest router the gateway serves: answers chat and completions at once."""

    def __init__(self) -> None:
        self.calls = 0

    async def chat(self, request: Any, *, trace: Any = None) -> Any:
        self.calls += 1
        trace.backend = "b"
        return ChatResponse.from_raw(json.dumps(CHAT).encode())

    async def complete(self, request: Any, *, trace: Any = None) -> Any:
        self.calls += 1
        trace.backend = "b"
        return CompletionResponse(id="t", created=1, model="m", choices=[{"text": "x"}])

    async def embed(self, request: Any, *, trace: Any = None) -> Any:  # pragma: no cover
        raise NotImplementedError

    async def list_models(self) -> list[Any]:
        return []

    async def health(self, *, refresh: bool = False) -> dict[str, Any]:
        return {"b": {"state": "ready"}}

    def ready(self) -> bool:
        return True


@contextlib.asynccontextmanager
async def served(**overrides: Any) -> AsyncIterator[tuple[int, Router]]:
    """A real uvicorn server with the gateway's own options, on a free loopback port."""
    values: dict[str, Any] = {"port": 0, "log_level": "warning", "access_log": False}
    values.update(overrides)
    settings = GatewaySettings.from_env(env={}, **values)
    router = Router()
    app = create_app(router, settings, manage_router=False)
    options = uvicorn_options(settings)
    options.pop("log_config", None)
    server = uvicorn.Server(uvicorn.Config(app, **{**options, "loop": "none"}))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
        if task.done():
            task.result()
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield port, router
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def closed_after(reader: asyncio.StreamReader, limit: float) -> tuple[float, bytes]:
    """Seconds until the server closes the connection, and what it sent before."""
    t0 = time.monotonic()
    data = await asyncio.wait_for(reader.read(), limit)
    return time.monotonic() - t0, data


async def legit(port: int) -> float:
    """One ordinary chat request's latency in seconds (must be a 200)."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
        t0 = time.monotonic()
        r = await c.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}
        )
        assert r.status_code == 200, r.text
        return time.monotonic() - t0


# ------------------------------------------------------------------------------ safe defaults


def test_non_loopback_bind_without_keys_is_refused_with_the_way_out() -> None:
    with pytest.raises(ConfigError) as err:
        check_bind(GatewaySettings.from_env(env={}, host="0.0.0.0"))
    message = err.value.message
    assert "INFERENCE_GATEWAY_API_KEYS" in message
    assert "INFERENCE_GATEWAY_ALLOW_UNAUTHENTICATED=true" in message
    assert "0.0.0.0" in message
    # allowed: keys, loopback, or the explicit opt-out
    check_bind(GatewaySettings.from_env(env={"INFERENCE_GATEWAY_API_KEYS": "k"}, host="0.0.0.0"))
    check_bind(GatewaySettings.from_env(env={}, host="127.0.0.1"))
    check_bind(GatewaySettings.from_env(env={}, host="::1"))
    check_bind(
        GatewaySettings.from_env(
            env={"INFERENCE_GATEWAY_ALLOW_UNAUTHENTICATED": "true"}, host="0.0.0.0"
        )
    )
    # a key store holds the keys
    import os

    os.environ["INFERENCE_KEYS_FILE"] = "/nonexistent/keys.toml"
    try:
        check_bind(GatewaySettings.from_env(env={}, host="0.0.0.0"))
    finally:
        del os.environ["INFERENCE_KEYS_FILE"]
    assert is_loopback("localhost")
    assert is_loopback("127.0.0.5")
    assert not is_loopback("::")
    assert not is_loopback("gateway.example")


def test_inference_serve_refuses_an_open_public_bind(monkeypatch) -> None:
    from typer.testing import CliRunner

    from inference_core.cli import EXIT_CONFIG, build_app

    for var in ("INFERENCE_GATEWAY_API_KEYS", "INFERENCE_GATEWAY_ALLOW_UNAUTHENTICATED"):
        monkeypatch.delenv(var, raising=False)
    result = CliRunner().invoke(build_app(), ["serve", "--host", "0.0.0.0", "--port", "1"])
    assert result.exit_code == EXIT_CONFIG, result.output
    assert "refusing to serve on 0.0.0.0:1 without API keys" in " ".join(result.output.split())


async def test_docs_off_by_default_and_metrics_behind_the_key() -> None:
    app = create_app(Router(), GatewaySettings.from_env(env={"INFERENCE_GATEWAY_API_KEYS": "k"}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as c:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert (await c.get(path)).status_code == 404, path
        assert (await c.get("/metrics")).status_code == 401
        ok = await c.get("/metrics", headers={"authorization": "Bearer k"})
        assert ok.status_code == 200
    app = create_app(Router(), GatewaySettings.from_env(env={"INFERENCE_GATEWAY_DOCS": "true"}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as c:
        assert (await c.get("/openapi.json")).status_code == 200


# ------------------------------------------------------------------------------ slow clients


async def test_an_idle_connection_is_closed_at_the_header_timeout() -> None:
    async with served(header_timeout=0.5) as (port, _):
        reader, writer = await raw(port)
        took, data = await closed_after(reader, 5)
        writer.close()
    assert data.startswith(b"HTTP/1.1 408")
    assert 0.4 <= took < 1.5


async def test_a_dripping_header_is_cut_at_the_header_timeout() -> None:
    async with served(header_timeout=0.6) as (port, _):
        reader, writer = await raw(port)
        t0 = time.monotonic()
        writer.write(b"GET /health HTTP/1.1\r\n")

        async def drip() -> None:
            with contextlib.suppress(ConnectionError):
                for _ in range(100):
                    writer.write(b"x-a: b\r\n")  # bytes keep coming: no reset of the deadline
                    await writer.drain()
                    await asyncio.sleep(0.05)

        dripper = asyncio.create_task(drip())
        data = await asyncio.wait_for(reader.read(), 5)
        took = time.monotonic() - t0
        dripper.cancel()
        writer.close()
    assert data.startswith(b"HTTP/1.1 408")
    assert took < 1.5


async def test_a_kept_alive_connection_gets_a_fresh_header_deadline_per_request() -> None:
    async with served(header_timeout=0.5) as (port, _):
        reader, writer = await raw(port)
        for _ in range(3):  # each request well within its own deadline, 1.2 s in all
            await asyncio.sleep(0.2)
            writer.write(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
            assert head.startswith(b"HTTP/1.1 200")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        writer.close()


async def test_a_slow_body_is_cut_at_the_body_timeout_and_never_reaches_a_backend() -> None:
    async with served(body_timeout=0.5) as (port, router):
        reader, writer = await raw(port)
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b'content-length: 1000\r\n\r\n{"messages": ['
        )
        took, data = await closed_after(reader, 5)
        writer.close()
        assert 0.4 <= took < 1.5
        assert not data.startswith(b"HTTP/1.1 200")
        assert router.calls == 0
        assert await legit(port) < 1.0


# ------------------------------------------------------------------------------ bombs and floods


async def test_a_header_bomb_gets_431() -> None:
    async with served(max_header_bytes=4096) as (port, router):
        reader, writer = await raw(port)
        with contextlib.suppress(ConnectionError):
            writer.write(b"GET /health HTTP/1.1\r\nhost: x\r\n")
            for i in range(20):
                writer.write(b"x-bomb-%d: %s\r\n" % (i, b"a" * 500))
            writer.write(b"\r\n")
        _, data = await closed_after(reader, 5)
        writer.close()
        assert data.startswith(b"HTTP/1.1 431")
        # one endless header line that never ends
        reader, writer = await raw(port)
        writer.write(b"GET /health HTTP/1.1\r\nx-long: ")
        with contextlib.suppress(ConnectionError):
            for _ in range(10):
                writer.write(b"a" * 1024)
                await writer.drain()
                await asyncio.sleep(0.01)
        _, data = await closed_after(reader, 5)
        writer.close()
        assert data.startswith(b"HTTP/1.1 431")
        # a large body after small headers is not a header bomb
        body = json.dumps({"messages": [{"role": "user", "content": "y" * 20000}]})
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            r = await c.post("/v1/chat/completions", content=body)
        assert r.status_code == 200
        assert router.calls == 1


async def test_connections_above_the_cap_are_refused_with_503() -> None:
    async with served(max_connections=5, header_timeout=5) as (port, _):
        held = [await raw(port) for _ in range(5)]
        await asyncio.sleep(0.1)
        reader, writer = await raw(port)
        _, data = await closed_after(reader, 5)
        writer.close()
        assert data.startswith(b"HTTP/1.1 503")
        for _, w in held:
            w.close()
        await asyncio.sleep(0.2)
        assert await legit(port) < 1.0  # capacity comes back as connections go


# ------------------------------------------------------------------------------ request caps


async def post(app: Any, path: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as c:
        return await c.post(path, json=body)


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/completions", {"prompt": ["p"] * 65}, "prompt"),
        ("/v1/completions", {"prompt": [[1, 2]] * 65}, "prompt"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}] * 1025},
         "messages"),
        ("/v1/chat/completions",
         {"messages": [{"role": "user", "content": "x"}],
          "tools": [{"type": "function", "function": {"name": f"f{i}"}} for i in range(129)]},
         "tools"),
        ("/v1/chat/completions",
         {"model": "m" * 257, "messages": [{"role": "user", "content": "x"}]}, "model"),
    ],
)  # fmt: skip
async def test_request_caps_answer_400_naming_the_field(path, body, param) -> None:
    router = Router()
    app = create_app(router, GatewaySettings.from_env(env={}))
    r = await post(app, path, body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert router.calls == 0


async def test_within_the_caps_requests_pass() -> None:
    router = Router()
    app = create_app(router, GatewaySettings.from_env(env={}))
    assert (await post(app, "/v1/completions", {"prompt": ["p"] * 64})).status_code == 200
    assert (await post(app, "/v1/completions", {"prompt": list(range(500))})).status_code == 200
    msgs = [{"role": "user", "content": "x"}] * 1024
    assert (await post(app, "/v1/chat/completions", {"messages": msgs})).status_code == 200
    assert router.calls == 3


async def test_the_access_log_never_carries_an_unbounded_model_name(caplog) -> None:
    app = create_app(Router(), GatewaySettings.from_env(env={}, max_model_name=100000))
    caplog.set_level(logging.INFO)
    name = "n" * 50000
    r = await post(
        app, "/v1/chat/completions", {"model": name, "messages": [{"role": "user", "content": "x"}]}
    )
    assert r.status_code == 200
    lines = [rec for rec in caplog.records if getattr(rec, "fields", {}).get("model")]
    assert lines
    for rec in lines:
        assert len(rec.fields["model"]) < 400  # type: ignore[attr-defined]


def test_several_workers_each_apply_the_limits(tmp_path) -> None:
    """``--workers 2``: uvicorn hands the protocol class to spawned worker processes (so it
    must be importable by name), and each worker sets its limits from the environment."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("INFERENCE_", "OPENAI_", "LOCAL_"))
    }
    env.update(
        {
            "INFERENCE_PROVIDER": "vllm",
            "INFERENCE_VLLM_BASE_URL": "http://127.0.0.1:9",
            "INFERENCE_GATEWAY_HEADER_TIMEOUT": "1",
            "INFERENCE_GATEWAY_LOG_LEVEL": "warning",
        }
    )
    exe = [sys.executable, "-m", "inference_core.cli"]
    proc = subprocess.Popen(
        [*exe, "--env-file", "", "serve", "--port", str(port), "--workers", "2"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.2)
        for _ in range(4):  # whichever worker takes the connection
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                t0 = time.monotonic()
                data = conn.recv(1024)
                assert data.startswith(b"HTTP/1.1 408"), data
                assert time.monotonic() - t0 < 3
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
