"""Minimal HTTP/1.1 framing on asyncio streams, shared by the chaos proxy and the fake backend.

Just enough to relay one request/response at a time on a keep-alive connection while keeping
the exact bytes: request/response heads, ``Content-Length`` and ``chunked`` bodies, and bodies
delimited by the connection closing. No I/O at import time; standard library only.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = [
    "Head",
    "ProtocolError",
    "abort",
    "read_body",
    "read_head",
    "relay_body",
    "response_bytes",
]

MAX_HEAD = 64 * 1024


class ProtocolError(Exception):
    """The peer sent something that is not HTTP/1.1 as we understand it."""


@dataclass
class Head:
    """A parsed request or response head; ``raw`` keeps the exact bytes (CRLFCRLF included)."""

    start: str
    headers: list[tuple[str, str]]
    raw: bytes

    def get(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    # request side
    @property
    def method(self) -> str:
        return self.start.split(" ", 1)[0]

    @property
    def target(self) -> str:
        parts = self.start.split(" ")
        return parts[1] if len(parts) > 1 else ""

    # response side
    @property
    def status(self) -> int:
        parts = self.start.split(" ")
        try:
            return int(parts[1])
        except (IndexError, ValueError) as exc:
            raise ProtocolError(f"bad status line {self.start!r}") from exc

    @property
    def chunked(self) -> bool:
        te = self.get("transfer-encoding")
        return te is not None and "chunked" in te.lower()

    @property
    def content_length(self) -> int | None:
        cl = self.get("content-length")
        return int(cl) if cl is not None and cl.strip().isdigit() else None

    @property
    def wants_close(self) -> bool:
        conn = self.get("connection")
        return conn is not None and "close" in conn.lower()


async def read_head(reader: asyncio.StreamReader) -> Head | None:
    """Read one head. ``None`` on a clean EOF before any byte (the peer closed an idle conn)."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise ProtocolError("connection closed inside a head") from exc
    except asyncio.LimitOverrunError as exc:
        raise ProtocolError("head too large") from exc
    lines = raw[:-4].decode("latin-1").split("\r\n")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if ":" not in line:
            raise ProtocolError(f"bad header line {line!r}")
        k, v = line.split(":", 1)
        headers.append((k.strip(), v.strip()))
    return Head(lines[0], headers, raw)


async def read_body(reader: asyncio.StreamReader, head: Head) -> bytes:
    """A request body (requests always carry Content-Length or chunked framing, or nothing)."""
    out = bytearray()

    async def sink(b: bytes) -> None:
        out.extend(b)

    if head.chunked or head.content_length:
        await relay_body(reader, head, sink, request=True)
    return bytes(out)


async def relay_body(
    reader: asyncio.StreamReader,
    head: Head,
    sink: Callable[[bytes], Awaitable[None]],
    *,
    request: bool = False,
    method: str = "GET",
    on_chunk_end: Callable[[], Awaitable[bool]] | None = None,
) -> str:
    """Copy one message body from ``reader`` to ``sink`` byte for byte (framing included).

    Returns ``"done"`` (the message is complete and the connection may carry another one),
    ``"eof"`` (body delimited by close: the connection is finished), or ``"stopped"`` when
    ``on_chunk_end`` (called after each complete chunk of a chunked body) returned True.
    """
    if not request:
        status = head.status
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return "done"
    if head.chunked:
        while True:
            line = await reader.readuntil(b"\r\n")
            size_s = line.split(b";", 1)[0].strip()
            try:
                size = int(size_s, 16)
            except ValueError as exc:
                raise ProtocolError(f"bad chunk size {line!r}") from exc
            if size == 0:
                trailer = bytearray(line)
                while True:
                    tl = await reader.readuntil(b"\r\n")
                    trailer.extend(tl)
                    if tl == b"\r\n":
                        break
                await sink(bytes(trailer))
                return "done"
            data = await reader.readexactly(size + 2)
            await sink(line + data)
            if on_chunk_end is not None and await on_chunk_end():
                return "stopped"
    length = head.content_length
    if length is not None:
        remaining = length
        while remaining > 0:
            data = await reader.read(min(remaining, 65536))
            if not data:
                raise ProtocolError("connection closed inside a body")
            remaining -= len(data)
            await sink(data)
        return "done"
    if request:
        return "done"
    while True:  # response delimited by the connection closing
        data = await reader.read(65536)
        if not data:
            return "eof"
        await sink(data)


def response_bytes(
    status: int,
    body: bytes,
    *,
    content_type: str = "application/json",
    reason: str | None = None,
    extra_headers: list[tuple[str, str]] | None = None,
    close: bool = False,
) -> bytes:
    """A complete response with Content-Length framing."""
    reasons = {
        200: "OK",
        400: "Bad Request",
        404: "Not Found",
        429: "Too Many Requests",
        500: "Internal Server Error",
        502: "Bad Gateway",
        503: "Service Unavailable",
        504: "Gateway Timeout",
    }
    lines = [f"HTTP/1.1 {status} {reason or reasons.get(status, 'Status')}"]
    lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    for k, v in extra_headers or []:
        lines.append(f"{k}: {v}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0) instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
