"""A lean HTTP/1.1 keep-alive transport for ``httpx`` on plain-HTTP backends.

Why: on the gateway's hot path ``httpcore`` costs about 0.5 ms of CPU per request on this kind of
machine, more than the whole budget we give the gateway. This transport speaks HTTP/1.1 over an
``asyncio.Protocol`` with llhttp (``httptools``, the parser uvicorn uses) and a keep-alive pool, and
plugs in under the ordinary ``httpx.AsyncClient`` (mounted for ``http://`` only; TLS, proxies and
HTTP/2 stay with ``httpcore``).  Everything above it (requests, responses, timeouts, streaming) is
plain ``httpx``; :func:`inference_core.http.openai_compat.send` also uses its
:meth:`FastHTTPTransport.exchange`, which takes the request as bytes, and gets back a
:class:`Response` (an ``httpx.Response`` that builds its request and headers only when read).

Contract, matching ``httpcore`` where callers depend on it:

* connect failures raise ``httpx.ConnectError`` / ``httpx.ConnectTimeout``; a read that waits longer
  than the ``read`` timeout raises ``httpx.ReadTimeout``;
* a *reused* keep-alive connection that the server closed before any byte of the answer raises
  :class:`StaleConnection` (an ``httpx.RemoteProtocolError``): the server had closed it while
  idle, nothing was processed, and :func:`inference_core.http.openai_compat.send` resends the
  request once on a fresh connection.  A *fresh* connection closed before any byte raises a
  plain ``httpx.RemoteProtocolError``, which is never resent: the server may have received the
  request (a crashing backend must not get a POST twice);
* at most ``max_connections`` connections per backend (host, port) are open at once, in use
  or idle; a request that finds none free waits for one up to the ``pool`` timeout, then raises
  ``httpx.PoolTimeout``;
* a response body cut short raises ``httpx.RemoteProtocolError`` from the stream;
* a connection goes back to the pool only after its response was read to the end and the server
  allows keep-alive; a response closed early closes its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable

import httptools
import httpx

_DISCONNECTED = "Server disconnected without sending a response."
_FRESH_CLOSED = "Server closed a new connection without sending a response."
_HIGH_WATER = 1 << 20


class StaleConnection(httpx.RemoteProtocolError):
    """A reused keep-alive connection was closed before any byte came back: safe to resend."""


def _closed_error(conn: _Connection) -> httpx.RemoteProtocolError:
    if conn.got_bytes:
        return httpx.RemoteProtocolError("peer closed connection before the response ended")
    if conn.reused:
        return StaleConnection(_DISCONNECTED)
    return httpx.RemoteProtocolError(_FRESH_CLOSED)


class _Connection(asyncio.Protocol):
    """One TCP connection; parses one response at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.reused = False
        self.on_gone: Callable[[], None] | None = None  # the pool's slot, freed once
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.got_bytes = False
        self.error: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.paused = False
        self.until_eof = False

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # pragma: no cover - we never ask for upgrades
            self._fail(httpx.RemoteProtocolError("unexpected protocol upgrade"))
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed HTTP response: {exc}"))
        if self.buffered > _HIGH_WATER and not self.paused and self.transport:
            self.paused = True
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._gone()
        if self.complete:
            return
        if self.headers_done and self.until_eof:
            self.on_message_complete()
        else:
            self._fail(_closed_error(self))

    # -- llhttp callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        names = {name.lower() for name, _ in self.headers}
        self.until_eof = b"content-length" not in names and b"transfer-encoding" not in names
        self.headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        self._wake()

    def on_message_complete(self) -> None:
        # llhttp answers should_keep_alive() correctly only inside this callback
        self.keep_alive = not self.until_eof and self.parser.should_keep_alive()
        self.complete = True
        self._wake()

    # -- helpers
    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: Exception) -> None:
        self.error = exc
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        self._gone()

    def _gone(self) -> None:
        callback = self.on_gone
        if callback is not None:
            self.on_gone = None
            callback()

    async def wait(self, timeout: float | None) -> None:
        """Wait for the parser to make progress, up to ``timeout`` seconds."""
        if self.error is not None:
            raise self.error
        if self.closed and not self.complete:
            raise _closed_error(self)
        waiter = self.waiter = self.loop.create_future()
        timer = None
        if timeout is not None:
            timer = self.loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            self.waiter = None
            if timer is not None:
                timer.cancel()

    def take(self) -> bytes:
        data = b"".join(self.chunks) if len(self.chunks) > 1 else self.chunks[0]
        self.chunks.clear()
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data


_WITH_BODY = ("POST", "PUT", "PATCH")


def request_head(method: str, url: httpx.URL, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The request line and header lines of ``method url`` (each line ends in CRLF; no blank
    line yet): ``host`` from the URL unless ``headers`` has one; ``content-length`` and
    ``transfer-encoding`` left out (:func:`request_bytes` adds the body's length)."""
    lines = [method.encode(), b" ", url.raw_path, b" HTTP/1.1\r\n"]
    has_host = False
    for name, value in headers:
        lname = name.lower()
        if lname == b"host":
            has_host = True
        elif lname == b"content-length" or lname == b"transfer-encoding":
            continue
        lines += (name, b": ", value, b"\r\n")
    if not has_host:
        lines += (b"host: ", url.netloc, b"\r\n")
    return b"".join(lines)


def request_bytes(head: bytes, method: str, body: bytes | None) -> bytes:
    """The whole request: ``head`` (from :func:`request_head`), ``content-length`` when there
    is a body or the method carries one, the blank line, the body."""
    if body or method in _WITH_BODY:
        return head + b"content-length: %d\r\n\r\n" % len(body or b"") + (body or b"")
    return head + b"\r\n"


class Response(httpx.Response):
    """An ``httpx.Response`` built lazily where the gateway's hot path never looks.

    :meth:`FastHTTPTransport.exchange` sends bytes, not an ``httpx.Request`` (building one
    costs about 13 us, more than the rest of the upstream call); ``make_request`` builds the
    equivalent request for the rare caller that reads ``response.request`` (``url``,
    ``raise_for_status``, error messages).  Likewise ``headers`` (an ``httpx.Headers``, whose
    construction normalises every header) is built from the raw pairs the first time it is
    read; :meth:`raw_header` reads one header without building it.
    """

    make_request: Callable[[], httpx.Request] | None = None
    _raw_headers: list[tuple[bytes, bytes]] | None = None
    _headers: httpx.Headers

    def __init__(
        self,
        status_code: int,
        raw_headers: list[tuple[bytes, bytes]],
        stream: httpx.AsyncByteStream,
        extensions: dict,
    ) -> None:
        super().__init__(status_code, stream=stream, extensions=extensions)
        self._raw_headers = raw_headers

    @property  # type: ignore[override]
    def headers(self) -> httpx.Headers:
        raw = self._raw_headers
        if raw is not None:
            self._raw_headers = None
            self._headers = httpx.Headers(raw)
        return self._headers

    @headers.setter
    def headers(self, value: httpx.Headers) -> None:
        self._raw_headers = None
        self._headers = value

    def raw_header(self, name: bytes) -> str | None:
        """The value of header ``name`` (lower case), joined with ``", "`` when repeated."""
        raw = self._raw_headers
        if raw is None:
            return self.headers.get(name.decode("latin-1"))
        values = [value for key, value in raw if key.lower() == name]
        return b", ".join(values).decode("latin-1") if values else None

    @property
    def request(self) -> httpx.Request:
        if self._request is None and self.make_request is not None:
            self._request = self.make_request()
        return super().request

    @request.setter
    def request(self, value: httpx.Request) -> None:
        self._request = value

    def raise_for_status(self) -> Response:
        self.request  # noqa: B018 - built now, as httpx checks for it
        return super().raise_for_status()  # type: ignore[return-value]


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(httpx.ReadTimeout("timed out waiting for the backend"))


class _Body(httpx.AsyncByteStream):
    """The response body, streamed off the connection; returns it to the pool when done."""

    def __init__(self, transport: FastHTTPTransport, key: tuple, conn: _Connection, read_timeout):
        self._transport = transport
        self._key = key
        self._conn = conn
        self._timeout = read_timeout
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        try:
            while True:
                if conn.chunks:
                    yield conn.take()
                    continue
                if conn.complete:
                    break
                await conn.wait(self._timeout)
        except asyncio.CancelledError:
            conn.close()
            raise
        self._done = True

    async def aclose(self) -> None:
        conn = self._conn
        if not self._done and conn.complete and not conn.chunks:
            # the reader stopped early (relay_sse returns at [DONE]) but the whole response
            # had been received: the connection is clean and can be reused
            self._done = True
        if self._done and conn.keep_alive and not conn.closed:
            self._transport._release(self._key, conn)
        else:
            conn.close()


class FastHTTPTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 keep-alive transport for ``http://`` URLs (see the module docstring)."""

    def __init__(
        self,
        *,
        max_keepalive: int = 200,
        keepalive_expiry: float = 4.0,
        max_connections: int | None = 1000,
    ) -> None:
        self._idle: dict[tuple, deque[_Connection]] = {}
        self._max_keepalive = max_keepalive
        self._expiry = keepalive_expiry
        self._max_connections = max_connections
        self._open: dict[tuple, int] = {}
        self._waiters: dict[tuple, deque[asyncio.Future[None]]] = {}
        self._closed = False

    def open_connections(self, host: str, port: int) -> int:
        """Connections open to one backend (in use or idle)."""
        return self._open.get((host, port), 0)

    def _release(self, key: tuple, conn: _Connection) -> None:
        idle = self._idle.setdefault(key, deque())
        if self._closed or len(idle) >= self._max_keepalive:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)
        self._wake(key)

    def _wake(self, key: tuple) -> None:
        waiters = self._waiters.get(key)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _closed_one(self, key: tuple) -> None:
        self._open[key] = max(0, self._open.get(key, 1) - 1)
        self._wake(key)

    async def _acquire(self, key: tuple, host: str, port: int, timeouts: dict) -> _Connection:
        """An idle connection, or a new one within the per-backend cap (waiting for a slot up
        to the ``pool`` timeout, then ``httpx.PoolTimeout``)."""
        conn = self._pooled(key)
        if conn is not None:
            return conn
        cap = self._max_connections
        if cap is not None and self._open.get(key, 0) >= cap:
            loop = asyncio.get_running_loop()
            deadline = timeouts.get("pool")
            end = None if deadline is None else loop.time() + deadline
            while self._open.get(key, 0) >= cap:
                waiter: asyncio.Future[None] = loop.create_future()
                self._waiters.setdefault(key, deque()).append(waiter)
                try:
                    async with asyncio.timeout_at(end):
                        await waiter
                except TimeoutError:
                    raise httpx.PoolTimeout(
                        f"all {cap} connections to {host}:{port} are busy"
                    ) from None
                finally:
                    if not waiter.done():
                        waiter.cancel()
                    with contextlib.suppress(ValueError):
                        self._waiters[key].remove(waiter)
                conn = self._pooled(key)
                if conn is not None:
                    return conn
        self._open[key] = self._open.get(key, 0) + 1
        try:
            conn = await self._connect(host, port, timeouts.get("connect"))
        except BaseException:
            self._closed_one(key)
            raise
        conn.on_gone = lambda: self._closed_one(key)
        if conn.closed:  # lost before we could watch it
            conn._gone()
        return conn

    def _pooled(self, key: tuple) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            transport = conn.transport
            if conn.closed or transport is None or transport.is_closing():
                continue
            if now - conn.idle_since > self._expiry:
                conn.close()
                continue
            conn._reset()
            conn.reused = True
            return conn
        return None

    async def _connect(self, host: str, port: int, timeout: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(lambda: _Connection(loop), host, port)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except OSError as exc:
            raise httpx.ConnectError(f"{exc.strerror or exc} ({host}:{port})") from None
        return conn

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        try:
            body = request.content
        except httpx.RequestNotRead:
            body = await request.aread()
        head = request_head(request.method, url, request.headers.raw)
        payload = request_bytes(head, request.method, body)
        response = await self.exchange(url, payload, request.extensions)
        response.request = request
        return response

    async def exchange(
        self,
        url: httpx.URL,
        payload: bytes,
        extensions: dict,
        request: Callable[[], httpx.Request] | None = None,
    ) -> httpx.Response:
        """Write ``payload`` (a whole HTTP/1.1 request: head and body) to a connection to
        ``url``'s host and return the response once its headers are in (body streamed).

        The fast path of :func:`inference_core.http.openai_compat.send`, which builds the
        request bytes itself instead of an ``httpx.Request``; ``request``, when given, makes
        the equivalent ``httpx.Request`` the first time ``response.request`` is asked for.
        ``extensions["timeout"]`` holds the timeouts as ``httpx.Timeout.as_dict()`` gives them.
        """
        host = url.host
        port = url.port or 80
        key = (host, port)
        timeouts = extensions.get("timeout", {})
        read_timeout = timeouts.get("read")
        conn = await self._acquire(key, host, port, timeouts)
        assert conn.transport is not None
        conn.transport.write(payload)
        try:
            while not conn.headers_done:
                await conn.wait(read_timeout)
        except BaseException:
            conn.close()
            raise
        response = Response(
            conn.status,
            conn.headers,
            _Body(self, key, conn, read_timeout),
            {"http_version": b"HTTP/1.1"},
        )
        response.make_request = request
        return response

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
