"""A client that hangs up cancels its upstream request at once, streamed or not."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

import inference_core
from inference_core.gateway import create_app
from inference_core.gateway.settings import GatewaySettings
from inference_core.models import ChatResponse
from inference_core.router import Router


class Slow:
    """A backend that never answers until cancelled; records the cancellation."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()

    @inference_core.hookimpl
    async def chat(self, request: Any, config: Any) -> Any:
        self.started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return ChatResponse(id="x", created=0, model="m", choices=[])  # pragma: no cover


async def call_and_hang_up(app: Any, slow: Slow, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Drive the ASGI app by hand: send the body, hang up once the backend is busy."""
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": orjson.dumps(body), "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await slow.started.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8080),
    }
    await asyncio.wait_for(app(scope, receive, send), timeout=5)
    return sent


@pytest.mark.parametrize("stream", [False, True])
async def test_hang_up_while_waiting_cancels_the_backend(stream: bool) -> None:
    slow = Slow()
    router = Router.from_env(
        {"INFERENCE_PROVIDER": "slow"}, env_file=None, extra_plugins={"slow": slow}
    )
    app = create_app(router, GatewaySettings.from_env(env={}))
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    async with app.router.lifespan_context(app):
        sent = await call_and_hang_up(app, slow, body)
        assert slow.cancelled.is_set(), "the backend call kept running after the client left"
        assert sent == []  # nobody to answer
        assert router.in_flight == 0
