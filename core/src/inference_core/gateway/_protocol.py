"""uvicorn's httptools protocol with corked writes: headers and body in one ``send()``.

uvicorn writes a response's status line and headers (``http.response.start``) and each body
message with separate ``transport.write`` calls, i.e. one loopback/TCP send each.  Here a
write is held back until the next one, and the two go out together at once: the headers ride
with the first body bytes (a whole non-streamed response, or a stream's first chunk) in one
syscall.  A held write never waits longer than the current event-loop turn (``call_soon``:
until the handler next waits, e.g. a stream waiting for its upstream), nor past the response's
end, a close, or 64 KiB.  Saves one send syscall per response (see docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["CorkedHttpToolsProtocol"]

_MAX_PENDING = 64 * 1024


class _CorkedTransport:
    """An ``asyncio.Transport`` stand-in whose ``write`` is deferred and coalesced."""

    __slots__ = ("_buf", "_loop", "_size", "_t")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._t = transport
        self._loop = loop
        self._buf: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._buf:  # a second write: both go out now, as one
            self._buf.append(data)
            self.flush()
            return
        self._buf.append(data)
        self._size = len(data)
        if self._size > _MAX_PENDING:
            self.flush()
        else:
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        buf = self._buf
        if not buf:
            return
        data = buf[0] if len(buf) == 1 else b"".join(buf)
        self._buf = []
        self._size = 0
        if not self._t.is_closing():
            self._t.write(data)

    def close(self) -> None:
        self.flush()
        self._t.close()

    def is_closing(self) -> bool:
        return self._t.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._t, name)


class CorkedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` writing through a :class:`_CorkedTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CorkedTransport(transport, self.loop))  # type: ignore[arg-type]

    def on_response_complete(self) -> None:
        self.transport.flush()  # type: ignore[attr-defined]
        super().on_response_complete()
