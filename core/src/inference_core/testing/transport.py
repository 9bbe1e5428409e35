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

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

__all__ = ["FAILURES", "FakeUpstream", "Tracked", "TrackingTransport", "failing_handler"]

#: The upstream failures the conformance kit injects, by name.
FAILURES = (
    "connect",
    "timeout",
    "429",
    "429-date",
    "429-ms",
    "500",
    "502",
    "502-html",
    "503",
    "504",
    "400",
    "400-context",
    "401",
    "403",
    "404-model",
    "404-route",
    "408",
    "413",
    "422",
    "200-not-json",
    "200-html",
)


@dataclass
class Tracked:
    """One upstream request as the fake upstream received it, and what became of its answer.

    ``status`` is 0 when the request failed without an answer (connection refused, timeout);
    ``closed`` tells whether the plugin released the answer; ``body`` is the request's JSON
    body (``None`` when it had none or it was not JSON).
    """

    request: httpx.Request
    status: int
    closed: bool = False
    bytes_read: int = 0

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def path(self) -> str:
        return self.request.url.path

    @property
    def headers(self) -> httpx.Headers:
        return self.request.headers

    @property
    def body(self) -> Any:
        try:
            return json.loads(self.request.content or b"null")
        except (ValueError, UnicodeDecodeError):
            return None


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

    def mark(self) -> int:
        """A position in :attr:`responses`; :meth:`since` gives what came after it."""
        return len(self.responses)

    def since(self, mark: int) -> list[Tracked]:
        return self.responses[mark:]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        record = Tracked(request=request, status=0, closed=True)
        self.responses.append(record)  # recorded first: a refused request counts too
        response = await self.inner.handle_async_request(request)
        body = b""
        async for part in response.stream:  # type: ignore[union-attr]
            body += part
        await response.aclose()
        record.status = response.status_code
        record.closed = False
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


def _json_error(status: int, message: str, etype: str, **extra: object) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "type": etype, **extra}})


_HTML_PAGE = (
    "<html><head><title>{title}</title></head><body><center><h1>{title}</h1></center>"
    "<hr><center>nginx</center></body></html>"
)


def _retry_after_date() -> str:
    import email.utils
    import time

    return email.utils.formatdate(time.time() + RETRY_AFTER_DATE_SECONDS, usegmt=True)


#: Seconds ahead of "now" that the ``429-date`` failure's ``Retry-After`` HTTP date names.
RETRY_AFTER_DATE_SECONDS = 30

_ANSWERS: dict[str, Callable[[], httpx.Response]] = {
    "429": lambda: httpx.Response(
        429,
        headers={"retry-after": "7"},
        json={"error": {"message": "Rate limit reached", "type": "rate_limit_error"}},
    ),
    "429-date": lambda: httpx.Response(
        429,
        headers={"retry-after": _retry_after_date()},
        json={"error": {"message": "Rate limit reached", "type": "rate_limit_error"}},
    ),
    "429-ms": lambda: httpx.Response(
        429,
        headers={"retry-after-ms": "1500"},
        json={"error": {"message": "Rate limit reached", "type": "rate_limit_error"}},
    ),
    "500": lambda: _json_error(500, "upstream is unhappy", "server_error"),
    "502": lambda: _json_error(502, "bad gateway", "server_error"),
    "502-html": lambda: httpx.Response(
        502,
        content=_HTML_PAGE.format(title="502 Bad Gateway").encode(),
        headers={"content-type": "text/html"},
    ),
    "503": lambda: _json_error(503, "upstream is unhappy", "server_error"),
    "504": lambda: _json_error(504, "upstream timed out", "server_error"),
    "400": lambda: _json_error(
        400, "invalid value for 'temperature'", "invalid_request_error", param="temperature"
    ),
    "400-context": lambda: _json_error(
        400,
        "This model's maximum context length is 4096 tokens. However, your messages resulted "
        "in 5000 tokens.",
        "invalid_request_error",
        param="messages",
        code="context_length_exceeded",
    ),
    "401": lambda: _json_error(401, "invalid api key", "auth_error"),
    "403": lambda: _json_error(403, "this key may not use this model", "permission_error"),
    "404-model": lambda: _json_error(
        404,
        "The model `no-such-model` does not exist",
        "invalid_request_error",
        param="model",
        code="model_not_found",
    ),
    "404-route": lambda: httpx.Response(404, json={"detail": "Not Found"}),  # FastAPI route miss
    "408": lambda: _json_error(408, "request timeout", "timeout"),
    "413": lambda: _json_error(413, "request entity too large", "invalid_request_error"),
    "422": lambda: httpx.Response(
        422,
        json={"detail": [{"loc": ["body", "temperature"], "msg": "must be <= 2", "type": "x"}]},
    ),
    "200-not-json": lambda: httpx.Response(
        200, content=b"this is not JSON at all", headers={"content-type": "text/plain"}
    ),
    "200-html": lambda: httpx.Response(
        200,
        content=_HTML_PAGE.format(title="Service temporarily unavailable").encode(),
        headers={"content-type": "text/html"},
    ),
}


def failing_handler(failure: str) -> Callable[[httpx.Request], httpx.Response]:
    """A MockTransport handler that fails every request the way ``failure`` names.

    ``connect`` (connection refused), ``timeout`` (read timeout), ``429`` (``Retry-After: 7``),
    ``429-date`` (``Retry-After`` as an HTTP date 30 s ahead), ``429-ms`` (``retry-after-ms:
    1500``), ``500``, ``502``, ``502-html`` (a proxy's HTML page), ``503``, ``504``, ``400`` (an
    invalid parameter), ``400-context`` (the context is too long), ``401``, ``403``,
    ``404-model`` (an unknown model), ``404-route`` (an unknown route, FastAPI's answer),
    ``408``, ``413``, ``422`` (FastAPI's validation error), ``200-not-json`` and ``200-html``
    (a success status with a body that is no answer).
    """
    if failure not in FAILURES:
        raise ValueError(f"unknown failure {failure!r}; known: {', '.join(FAILURES)}")

    def handler(request: httpx.Request) -> httpx.Response:
        if failure == "connect":
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if failure == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        return _ANSWERS[failure]()

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
