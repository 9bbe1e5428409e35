"""An httpx transport wrapper that records every response and whether it was closed.

``TrackingTransport(inner)`` wraps any ``httpx.AsyncBaseTransport`` (usually an
``httpx.MockTransport``).  Each answer is recorded in ``responses`` as a :class:`Tracked` with
its request and a ``closed`` flag, so a test can prove that a plugin released every upstream
response (a leaked streaming response holds a pooled connection forever).

``truncate`` cuts successful streaming bodies after their first event (``"eof"``: the body just
ends; ``"error"``: the connection breaks), to check that a plugin never passes a truncated
stream off as complete.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Literal

import httpx

__all__ = ["FAILURES", "FakeUpstream", "Tracked", "TrackingTransport", "failing_handler"]

#: The upstream failures the conformance kit injects, by name.
FAILURES = ("connect", "timeout", "429", "500", "503", "400", "401")


@dataclass
class Tracked:
    """One upstream response: the request it answered, its status, whether it was closed."""

    request: httpx.Request
    status: int
    closed: bool = False
    bytes_read: int = 0


class _TrackedStream(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes], record: Tracked, broken: bool) -> None:
        self._chunks = chunks
        self._record = record
        self._broken = broken

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            self._record.bytes_read += len(chunk)
            yield chunk
        if self._broken:
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body"
            )

    async def aclose(self) -> None:
        self._record.closed = True


@dataclass
class TrackingTransport(httpx.AsyncBaseTransport):
    inner: httpx.AsyncBaseTransport
    truncate: Literal["eof", "error"] | None = None
    responses: list[Tracked] = field(default_factory=list)

    @property
    def requests(self) -> list[httpx.Request]:
        return [r.request for r in self.responses]

    def unclosed(self) -> list[Tracked]:
        """Responses nobody closed (should be empty once a call or stream is over)."""
        return [r for r in self.responses if not r.closed]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        body = b""
        async for part in response.stream:  # type: ignore[union-attr]
            body += part
        await response.aclose()
        record = Tracked(request=request, status=response.status_code)
        self.responses.append(record)
        chunks = _split(body)
        broken = False
        if self.truncate and 200 <= response.status_code < 300 and len(chunks) > 1:
            chunks = chunks[:1]
            broken = self.truncate == "error"
        headers = [(k, v) for k, v in response.headers.multi_items() if k != "content-length"]
        return httpx.Response(
            response.status_code,
            headers=headers,
            stream=_TrackedStream(chunks, record, broken),
            request=request,
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


def _split(body: bytes) -> list[bytes]:
    """Split a body into events (SSE ``\\n\\n`` or NDJSON lines), delimiters kept."""
    if b"\n\n" in body:
        parts = body.split(b"\n\n")
        out = [p + b"\n\n" for p in parts[:-1]]
        if parts[-1]:
            out.append(parts[-1])
        return out
    if body.count(b"\n") > 1:
        return body.splitlines(keepends=True)
    return [body] if body else []


def failing_handler(failure: str) -> Callable[[httpx.Request], httpx.Response]:
    """A MockTransport handler that fails every request the way ``failure`` names.

    ``connect`` (connection refused), ``timeout`` (read timeout), ``429`` (with
    ``Retry-After: 7``), ``500``, ``503``, ``400`` (an invalid parameter), ``401``.
    """

    def handler(request: httpx.Request) -> httpx.Response:
        if failure == "connect":
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if failure == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        if failure == "429":
            return httpx.Response(
                429,
                headers={"retry-after": "7"},
                json={"error": {"message": "Rate limit reached", "type": "rate_limit_error"}},
            )
        if failure in ("500", "503"):
            return httpx.Response(
                int(failure),
                json={"error": {"message": "upstream is unhappy", "type": "server_error"}},
            )
        if failure == "400":
            return httpx.Response(
                400,
                json={
                    "error": {
                        "message": "invalid value for 'temperature'",
                        "type": "invalid_request_error",
                        "param": "temperature",
                    }
                },
            )
        if failure == "401":
            return httpx.Response(
                401, json={"error": {"message": "invalid api key", "type": "auth_error"}}
            )
        raise ValueError(f"unknown failure {failure!r}; known: {', '.join(FAILURES)}")

    return handler


class FakeUpstream:
    """respx routes + a :class:`TrackingTransport` + core's client factory, for unit tests::

    up = FakeUpstream()
    up.routes.post("/v1/chat/completions").respond(json=canned.chat_completion())
    async with up.client() as http:
        result = await my_plugin.chat(request=req, config=make_config(), http=http)
    assert not up.transport.unclosed()
    """

    def __init__(self, base_url: str = "http://upstream.test") -> None:
        import respx

        self.base_url = base_url
        self.routes = respx.Router(base_url=base_url, assert_all_called=False)
        self.transport = TrackingTransport(httpx.MockTransport(self.routes.async_handler))

    def client(self) -> httpx.AsyncClient:
        from ..http.client import create_client

        return create_client(transport=self.transport)
