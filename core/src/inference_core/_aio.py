"""Small asyncio helpers for the hot path.

:func:`next_now` takes the next item of an async iterator without a trip through the event
loop when the item is already there: the stream relay uses it to write together the frames
that arrived in one read, and the routed stream to arm its idle deadline only when it really
has to wait.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Pending", "next_now"]


class Pending:
    """Await the rest of an awaitable that :func:`next_now` started by hand."""

    __slots__ = ("_gen", "_pending")

    def __init__(self, gen: Any, pending: Any) -> None:
        self._gen = gen
        self._pending = pending

    def __await__(self) -> Any:
        gen = self._gen
        pending = self._pending
        while True:
            try:
                value = yield pending
            except BaseException as exc:  # cancellation, timeouts: into the awaitable
                try:
                    pending = gen.throw(exc)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                pending = gen.send(value)
            except StopIteration as stop:
                return stop.value


def next_now(iterator: Any) -> tuple[Any, Pending | None]:
    """``(chunk, None)`` when the next chunk is available without waiting, else
    ``(None, awaitable)``.  Raises ``StopAsyncIteration`` at the end.

    Runs ``iterator.__anext__()`` up to its first suspension point: if it finishes there
    (the chunk was already buffered), nothing was waited for; otherwise the returned
    awaitable continues it exactly where it stopped (the pending future is handed to the
    event loop as a plain ``await`` would).
    """
    gen = iterator.__anext__().__await__()
    try:
        pending = gen.send(None)
    except StopIteration as stop:
        return stop.value, None
    return None, Pending(gen, pending)
