"""A fake llama-server for unit tests: an ``httpx.MockTransport`` that serves response bodies
recorded from the real llama-server b11434 (Gemma 3 270M) (``tests/data``, taken from
``/work/shared/peers/llamacpp/transcripts``) and records what the plugin sent."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from inference_core import BackendConfig
from inference_core.http import create_client

DATA = Path(__file__).parent / "data"
BASE = "http://llama.test:8080"

Reply = tuple[int, bytes, str]  # status, body, content type


def data(name: str) -> bytes:
    return (DATA / name).read_bytes()


def json_reply(name: str, status: int = 200) -> Reply:
    return status, data(name), "application/json"


def sse_reply(name: str) -> Reply:
    return 200, data(name), "text/event-stream; charset=utf-8"


class Pieces(httpx.AsyncByteStream):
    """A body delivered in 97-byte pieces (not aligned with SSE events)."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i in range(0, len(self.body), 97):
            yield self.body[i : i + 97]

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class FakeLlama:
    """Routes ``(method, path)`` to a canned reply (or a callable) and records each request."""

    routes: dict[tuple[str, str], Reply | Callable[[httpx.Request], Reply]] = field(
        default_factory=dict
    )
    requests: list[httpx.Request] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes.get((request.method, request.url.path))
        if route is None:
            return httpx.Response(
                404,
                content=b'{"error":{"code":404,"message":"File Not Found",'
                b'"type":"not_found_error"}}',
            )
        status, body, ctype = route(request) if callable(route) else route
        headers = {"content-type": ctype}
        if ctype.startswith("text/event-stream"):  # arrives in pieces, as over a socket
            return httpx.Response(status, stream=Pieces(body), headers=headers)
        return httpx.Response(status, content=body, headers=headers)

    def set(self, method: str, path: str, name: str, status: int = 200) -> None:
        """Serve the recorded body ``tests/data/<name>`` (SSE when it ends in ``.sse``)."""
        self.routes[(method, path)] = (
            sse_reply(name) if name.endswith(".sse") else json_reply(name, status)
        )

    def bodies(self, path: str) -> list[dict]:
        return [json.loads(r.content) for r in self.requests if r.url.path == path]


@pytest.fixture
def fake() -> FakeLlama:
    return FakeLlama(
        routes={
            ("GET", "/health"): json_reply("health_ok.json"),
            ("GET", "/props"): json_reply("props.json"),
            ("GET", "/slots"): json_reply("slots.json"),
            ("GET", "/v1/models"): json_reply("models.json"),
            ("POST", "/v1/chat/completions"): json_reply("chat.json"),
            ("POST", "/v1/completions"): json_reply("completions.json"),
            ("POST", "/v1/embeddings"): json_reply("embeddings_list.json"),
        }
    )


@pytest.fixture
async def http(fake: FakeLlama) -> AsyncIterator[httpx.AsyncClient]:
    client = create_client(transport=httpx.MockTransport(fake.handler))
    yield client
    await client.aclose()


@pytest.fixture
def config() -> BackendConfig:
    return BackendConfig(name="llamacpp", base_urls=(BASE,))
