"""The gateway's connection guard: uvicorn's httptools protocol with client-side limits.

uvicorn bounds none of these on its own: a client that connects and sends nothing, or sends its
headers a byte at a time, or half a body, holds its connection (and a file descriptor) forever;
the header block may be of any size; any number of connections is accepted.  This subclass of
the corked protocol (``_protocol.py``) adds, per connection:

* **header timeout** (``INFERENCE_GATEWAY_HEADER_TIMEOUT``): from the connection's start, and on
  a kept-alive connection from a request's first byte, the request line and headers must be in
  within this many seconds; else ``408`` and the connection is closed.  An idle kept-alive
  connection is closed by uvicorn's own ``timeout_keep_alive`` (``KEEPALIVE_TIMEOUT``).
* **body timeout** (``BODY_TIMEOUT``): once the headers are in, the body must be complete within
  this many seconds; else the connection is closed (the handler sees a disconnect: 499).
* **header size** (``MAX_HEADER_BYTES``): request line plus headers; above it ``431`` and close.
  Counted on what the parser got (so a body in the same packet is not counted) and on the raw
  bytes of a head that has not ended yet (so one endless header line cannot grow either).
* **connection limit** (``MAX_CONNECTIONS``): one connection more than that is answered
  ``503`` at once and closed, before it can cost anything.

Costs on the hot path: a few attribute writes per request; a timer is armed only when a read
leaves a head or body incomplete.  The limits live in class attributes that
:func:`guarded_protocol` fills from the settings.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._protocol import CorkedHttpToolsProtocol

__all__ = ["GuardedHttpToolsProtocol", "guarded_protocol"]


def _response(status: bytes, message: bytes) -> bytes:
    body = b'{"error":{"message":"' + message + b'","type":"invalid_request_error"}}'
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
    )


_408 = _response(b"408 Request Timeout", b"The request headers took too long to arrive.")
_431 = _response(
    b"431 Request Header Fields Too Large",
    b"The request line and headers are larger than this gateway accepts.",
)
_LINGER = 1.0
_503 = _response(b"503 Service Unavailable", b"Too many open connections to this gateway.")


class GuardedHttpToolsProtocol(CorkedHttpToolsProtocol):
    """``CorkedHttpToolsProtocol`` with header/body timeouts, a header cap, a connection cap.

    Timers are armed lazily: only when a read leaves a request's head (or body) incomplete,
    at the deadline counted from where that head (body) began.  A request that arrives whole
    in one read, the usual case, arms no timer at all.
    """

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_header_bytes: int = 32 * 1024
    max_connections: int = 4096

    _head_timer: asyncio.TimerHandle | None = None
    _body_timer: asyncio.TimerHandle | None = None
    _in_head = False
    _in_body = False
    _head_since = 0.0
    _body_since = 0.0
    _raw_head = 0
    _chunk = 0
    _rejected = False

    # -------------------------------------------------------------------- connection level

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._reject(_503)
            return
        self._in_head = True
        self._head_since = self.loop.time()
        self._head_timer = self.loop.call_at(
            self._head_since + self.header_timeout, self._head_expired
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return
        self._chunk = len(data)
        if self._in_head:
            self._raw_head += self._chunk
        super().data_received(data)
        if self._rejected:
            return
        if self._in_head:
            if self._raw_head > self.max_header_bytes:
                self._reject(_431)  # a head that keeps growing without ending
            elif self._head_timer is None:
                self._head_timer = self.loop.call_at(
                    self._head_since + self.header_timeout, self._head_expired
                )
        elif self._in_body and self._body_timer is None:
            self._body_timer = self.loop.call_at(
                self._body_since + self.body_timeout, self._body_expired
            )

    def send_400_response(self, msg: str) -> None:
        if self._rejected:  # our own refusal, already answered
            return
        super().send_400_response(msg)

    # ---------------------------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        if self._rejected:
            return
        if not self._in_head:  # a kept-alive connection's next request: its head starts now
            self._in_head = True
            self._head_since = self.loop.time()
            self._raw_head = 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        if self._rejected:
            return
        self._in_head = False
        timer = self._head_timer
        if timer is not None:
            timer.cancel()
            self._head_timer = None
        if self._raw_head + self._chunk > self.max_header_bytes:  # maybe: count exactly
            size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
            if size > self.max_header_bytes:
                self._reject(_431)  # never reaches the app
                return
        self._raw_head = 0
        pipelined = self.cycle is not None and not self.cycle.response_complete
        super().on_headers_complete()
        if not pipelined:  # a pipelined request's body waits for its turn: no deadline
            self._in_body = True
            self._body_since = self.loop.time()

    def on_body(self, body: bytes) -> None:
        if not self._rejected:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._rejected:
            return
        self._in_body = False
        timer = self._body_timer
        if timer is not None:
            timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    # ------------------------------------------------------------------------------ helpers

    def _head_expired(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._reject(_408)

    def _body_expired(self) -> None:
        self._body_timer = None
        if self._in_body and not self.transport.is_closing():
            self._rejected = True
            self.transport.close()  # the handler reading the body sees a disconnect

    def _reject(self, response: bytes) -> None:
        """Answer ``response`` and close, lingering so that the client can read it.

        Closing a socket with unread input sends a reset, which can destroy the answer before
        the client reads it: so the write side is shut first, what the client still sends is
        read and dropped (``data_received`` ignores it), and the socket closes after
        ``_LINGER`` seconds at most.
        """
        self._rejected = True
        self._stop_timers()
        transport = self.transport
        if transport.is_closing():
            return
        transport.write(response)
        flush = getattr(transport, "flush", None)
        if flush is not None:
            flush()
        try:
            if transport.can_write_eof():
                transport.write_eof()
                self.loop.call_later(_LINGER, transport.close)
                return
        except (OSError, RuntimeError, NotImplementedError):
            pass
        transport.close()

    def _stop_timers(self) -> None:
        for name in ("_head_timer", "_body_timer"):
            timer = getattr(self, name)
            if timer is not None:
                timer.cancel()
                setattr(self, name, None)


def guarded_protocol(settings: Any) -> type[GuardedHttpToolsProtocol]:
    """:class:`GuardedHttpToolsProtocol`, its limits set from ``settings``.

    The class itself (module-level, so that uvicorn can hand it to worker processes), with
    class attributes set: one set of limits per process.  ``server.app_from_env`` calls this
    again in each worker process, from the same environment.
    """
    cls = GuardedHttpToolsProtocol
    cls.header_timeout = float(settings.header_timeout)
    cls.body_timeout = float(settings.body_timeout)
    cls.max_header_bytes = int(settings.max_header_bytes)
    cls.max_connections = int(settings.max_connections)
    return cls
