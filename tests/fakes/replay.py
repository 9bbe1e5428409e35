"""An in-process fake upstream that replays recorded response bodies (no socket, no thread).

An ``httpx.MockTransport`` handler: ``(method, path)`` -> a canned ``(status, body, content
type)`` or a callable returning one; every request is recorded.  Bodies come from a directory of
files recorded from the real server (the llama.cpp and vLLM plugin suites keep theirs in
``tests/data``).  SSE bodies arrive in 97-byte pieces, not aligned with events, as over a socket.

    fake = ReplayUpstream(data_dir, not_found=b'{"detail":"Not Found"}')
    fake.routes[("GET", "/health")] = fake.json_reply("health_ok.json")
    fake.set("POST", "/v1/chat/completions", "chat_stream.sse")
    client = create_client(transport=httpx.MockTransport(fake.handler))
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

Reply = tuple[int, bytes, str]  # status, body, content type


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
class ReplayUpstream:
    """Routes ``(method, path)`` to a canned reply (or a callable) and records each request.

    An unrouted request gets a 404 with ``not_found`` as its body (the server's own wording).
    """

    data_dir: Path
    not_found: bytes = b'{"detail":"Not Found"}'
    routes: dict[tuple[str, str], Reply | Callable[[httpx.Request], Reply]] = field(
        default_factory=dict
    )
    requests: list[httpx.Request] = field(default_factory=list)

    def data(self, name: str) -> bytes:
        """The recorded body ``<data_dir>/<name>``."""
        return (self.data_dir / name).read_bytes()

    def json_reply(self, name: str, status: int = 200) -> Reply:
        return status, self.data(name), "application/json"

    def sse_reply(self, name: str) -> Reply:
        return 200, self.data(name), "text/event-stream; charset=utf-8"

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes.get((request.method, request.url.path))
        if route is None:
            return httpx.Response(404, content=self.not_found)
        status, body, ctype = route(request) if callable(route) else route
        headers = {"content-type": ctype}
        if ctype.startswith("text/event-stream"):  # arrives in pieces, as over a socket
            return httpx.Response(status, stream=Pieces(body), headers=headers)
        return httpx.Response(status, content=body, headers=headers)

    def set(self, method: str, path: str, name: str, status: int = 200) -> None:
        """Serve the recorded body ``<name>`` (SSE when it ends in ``.sse``)."""
        self.routes[(method, path)] = (
            self.sse_reply(name) if name.endswith(".sse") else self.json_reply(name, status)
        )

    def bodies(self, path: str) -> list[dict]:
        """The JSON bodies of the requests sent to ``path``, in order."""
        return [json.loads(r.content) for r in self.requests if r.url.path == path]
