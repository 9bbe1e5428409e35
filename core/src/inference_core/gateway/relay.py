"""The stream relay: router chunks -> one protocol's SSE frames -> the client.

Shared by every protocol (the :class:`~.pipeline.Framer` makes the bytes); see :func:`relay`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from time import perf_counter
from typing import TYPE_CHECKING, Any

from .._aio import next_now as _next_now
from .logs import LOGGER

if TYPE_CHECKING:  # pragma: no cover
    from .pipeline import Endpoint, Gateway, Receive, Scope, Send


class EndOfStream(Exception):
    """Raised by a framer's ``frame`` when the answer is complete before the upstream ends
    (a stop sequence found by the translator): ``data`` is written, the upstream closed, and
    the stream ends with the framer's ``end()``."""

    def __init__(self, data: bytes = b"") -> None:
        super().__init__()
        self.data = data


__all__ = ["SSE_HEADERS", "EndOfStream", "relay"]

log = logging.getLogger(LOGGER)

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_FLUSH_BYTES = 64 * 1024


async def _aclose(it: Any) -> None:
    close = getattr(it, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:
            log.debug("error while closing an upstream stream", exc_info=True)


async def relay(
    gw: Gateway,
    scope: Scope,
    receive: Receive,
    send: Send,
    ep: Endpoint,
    chunks: AsyncIterator[Any],
    request: Any,
    trace: Any,
    rid: str,
    t0: float,
    waited: float,
) -> None:
    """Relay a stream as SSE, each chunk framed by the endpoint's :class:`Framer`.

    The first frame goes out with the headers at once.  After that, frames that are
    already available (the upstream delivered several events in one read) are written
    together; the buffer is flushed whenever the next chunk would have to be waited for,
    so coalescing never delays a byte.  A client that hangs up cancels the relay, which
    closes the upstream (the backend stops generating).
    """
    framer = ep.framer(request, trace)
    frame = framer.frame
    overhead = perf_counter() - t0 - waited
    attempts_before = len(trace.attempts)
    headers = [
        *SSE_HEADERS,
        (b"x-request-id", rid.encode()),
        (b"x-inference-backend", gw.backend_header(trace.backend)),
        (b"x-inference-overhead-ms", b"%.3f" % (overhead * 1000)),
        *gw.model_header(trace),
    ]
    task = asyncio.current_task()
    state = [True, False]  # streaming, client gone

    def _on_disconnect(fut: asyncio.Future[Any]) -> None:
        # the client hung up: stop pulling from the upstream (it stops generating)
        if state[0] and not fut.cancelled() and task is not None:
            state[1] = True
            task.cancel()

    watcher: asyncio.Future[Any] | None = None
    ttft: float | None = None
    status = 200
    error: str | None = None
    buf: list[bytes] = []
    size = 0
    try:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        try:
            try:
                while True:
                    try:
                        chunk, pending = _next_now(chunks)
                        if pending is not None:
                            if buf:  # about to wait: write what we have first
                                await send(
                                    {"type": "http.response.body", "body": b"".join(buf),
                                     "more_body": True}
                                )  # fmt: skip
                                buf.clear()
                                size = 0
                            chunk = await pending
                    except StopAsyncIteration:
                        break
                    data = frame(chunk)
                    if not data:
                        continue
                    if ttft is None:
                        await send({"type": "http.response.body", "body": data, "more_body": True})
                        ttft = perf_counter() - t0
                        # from now on, a client that hangs up cancels the relay
                        watcher = asyncio.ensure_future(receive())
                        watcher.add_done_callback(_on_disconnect)
                        continue
                    buf.append(data)
                    size += len(data)
                    if size > _FLUSH_BYTES:
                        await send(
                            {"type": "http.response.body", "body": b"".join(buf),
                             "more_body": True}
                        )  # fmt: skip
                        buf.clear()
                        size = 0
            except EndOfStream as early:  # the translator found the answer's end
                if early.data:
                    buf.append(early.data)
                await _aclose(chunks)
            tail = framer.end()
            if tail.__class__ is not bytes:  # a protocol that stores its answers
                tail = await tail  # type: ignore[misc]
            buf.append(tail)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            if not state[1]:
                # cancelled by the server (drain timeout at shutdown): say so in-band
                state[0] = False
                status, error = 503, "stream cancelled by the gateway (shutting down)"
                await _aclose(chunks)
                buf.append(framer.shutdown())
                await send(
                    {"type": "http.response.body", "body": b"".join(buf), "more_body": False}
                )
                raise
            if task is not None:
                task.uncancel()
            status = 499
            error = "client disconnected during the stream"
            await _aclose(chunks)
            return
        except Exception as exc:
            # after the first byte: the protocol's in-band error event
            gw.log_error(exc, rid, scope["path"])
            buf.append(framer.error(exc, gw.public))
            error = getattr(exc, "message", None) or type(exc).__name__
            if gw.metrics is not None:
                reason = getattr(exc, "kind", "internal_error")
                gw.metrics.stream_error(trace.backend or "none", reason)
        state[0] = False
        await send({"type": "http.response.body", "body": b"".join(buf), "more_body": False})
    finally:
        state[0] = False
        if watcher is not None and not watcher.done():
            watcher.cancel()
        if trace.usage is None and framer.usage is not None:
            trace.usage = framer.usage
        gw.finish(endpoint=ep.name, scope=scope, rid=rid, status=status, t0=t0,
                    overhead=overhead, trace=trace, model=getattr(request, "model", None),
                    stream=True, ttft=ttft, error=error,
                    attempts_before=attempts_before)  # fmt: skip
