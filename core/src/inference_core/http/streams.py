"""Byte-level decoders for the two streaming formats backends use: SSE and NDJSON.

They work on ``bytes`` and never decode text they do not need, so that an OpenAI-compatible
stream can be relayed verbatim.

Both are bounded: an event (or line) that grows past ``max_bytes`` without ending raises
:class:`StreamTooLarge` (an ``httpx.RemoteProtocolError``, which the callers map to
``BackendUnavailable``), so a backend gone wrong cannot fill the gateway's memory.  Whole
bodies are bounded by :data:`MAX_BODY_BYTES` (``openai_compat.read_capped``).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import httpx

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_ERROR_BODY_BYTES",
    "MAX_EVENT_BYTES",
    "StreamTooLarge",
    "iter_ndjson",
    "iter_sse_data",
]

#: Largest SSE event or NDJSON line accepted from a backend (one chunk: a few KiB normally).
MAX_EVENT_BYTES = 16 * 1024 * 1024
#: Largest non-stream answer (embeddings of 2048 inputs x 3072 floats as JSON: ~130 MB).
MAX_BODY_BYTES = 256 * 1024 * 1024
#: Error bodies are read up to this many bytes (the rest is dropped).
MAX_ERROR_BODY_BYTES = 64 * 1024


class StreamTooLarge(httpx.RemoteProtocolError):
    """A backend's event or line grew past the limit without ending."""


async def iter_sse_data(
    chunks: AsyncIterable[bytes], max_bytes: int = MAX_EVENT_BYTES
) -> AsyncIterator[bytes]:
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
        if len(buffer) > max_bytes:
            raise StreamTooLarge(f"an SSE event larger than {max_bytes} bytes")
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


async def iter_ndjson(
    chunks: AsyncIterable[bytes], max_bytes: int = MAX_EVENT_BYTES
) -> AsyncIterator[bytes]:
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
        if len(buffer) > max_bytes:
            raise StreamTooLarge(f"an NDJSON line larger than {max_bytes} bytes")
    if buffer.strip():
        yield buffer.strip()
