"""Byte-level decoders for the two streaming formats backends use: SSE and NDJSON.

They work on ``bytes`` and never decode text they do not need, so that an OpenAI-compatible
stream can be relayed verbatim.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator


async def iter_sse_data(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """Yield the ``data`` payload of each server-sent event, as bytes.

    Comments (``: ping``), ``event:``/``id:``/``retry:`` fields and empty events are skipped; a
    multi-line ``data`` is joined with ``\\n`` as the SSE specification says.  ``[DONE]`` is
    yielded like any other payload: the caller decides what it means.  A trailing event without
    its blank line (a server that closed early) is still yielded, so that a caller can tell a
    complete stream (ending in ``[DONE]``) from a truncated one.
    """
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        if b"\r" in buffer:
            # a CR at the very end may be the first half of a CRLF split across two reads:
            # keep it back, or "\r" + "\n" would count as two line ends
            held = buffer.endswith(b"\r")
            if held:
                buffer = buffer[:-1]
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if held:
                buffer += b"\r"
        while True:
            end = buffer.find(b"\n\n")
            if end < 0:
                break
            event, buffer = buffer[:end], buffer[end + 2 :]
            data = _event_data(event)
            if data is not None:
                yield data
    if buffer.strip():
        data = _event_data(buffer.replace(b"\r", b"\n").strip(b"\n"))
        if data is not None:
            yield data


def _event_data(event: bytes) -> bytes | None:
    """The event's data, or None when it has none (an empty data buffer is not dispatched)."""
    if event.startswith(b"data: ") and b"\n" not in event:  # the common case, one line
        return event[6:] or None
    parts = []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            parts.append(value[1:] if value.startswith(b" ") else value)
    data = b"\n".join(parts)
    return data or None


async def iter_ndjson(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """Yield each non-empty line of a newline-delimited JSON stream (Ollama), as bytes."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        while True:
            end = buffer.find(b"\n")
            if end < 0:
                break
            line, buffer = buffer[:end].strip(), buffer[end + 1 :]
            if line:
                yield line
    if buffer.strip():
        yield buffer.strip()
