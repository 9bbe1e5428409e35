"""Stored Responses: what ``previous_response_id`` and ``GET``/``DELETE /v1/responses/{id}`` read.

:class:`ResponseStore` is the interface (three async methods, so a shared store, e.g. Redis,
can implement it later); :class:`MemoryResponseStore` is the bounded in-process one the
gateway uses: at most ``max_items`` responses (the oldest goes first) and none
older than ``ttl`` seconds.  A response is stored with the conversation that produced it (every
input item since the first request, then its output items), so a follow-up with
``previous_response_id`` sends the whole history to the backend, never silently less.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["MemoryResponseStore", "ResponseStore", "StoredResponse"]


@dataclass
class StoredResponse:
    """One stored response: the public object and the conversation's items up to and
    including its output."""

    id: str
    response: dict[str, Any]
    items: list[dict[str, Any]] = field(default_factory=list)
    created: float = field(default_factory=time.time)


@runtime_checkable
class ResponseStore(Protocol):
    """Where Responses are kept between requests."""

    async def get(self, response_id: str) -> StoredResponse | None:
        """The stored response, or None when unknown, deleted or expired."""
        ...

    async def put(self, record: StoredResponse) -> None:
        """Store (or replace) ``record``."""
        ...

    async def delete(self, response_id: str) -> bool:
        """Forget a response; True when it was there."""
        ...


class MemoryResponseStore:
    """A bounded, in-process :class:`ResponseStore` (oldest out first; expiry by age)."""

    def __init__(
        self,
        max_items: int = 1000,
        ttl: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_items < 1 or ttl <= 0:
            raise ValueError("max_items must be >= 1 and ttl > 0")
        self.max_items = max_items
        self.ttl = ttl
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, StoredResponse]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def _expire(self) -> None:
        cutoff = self._clock() - self.ttl
        items = self._items
        while items:
            key, (stamp, _record) = next(iter(items.items()))
            if stamp > cutoff:
                break
            del items[key]

    async def get(self, response_id: str) -> StoredResponse | None:
        self._expire()
        entry = self._items.get(response_id)
        if entry is None:
            return None
        return entry[1]

    async def put(self, record: StoredResponse) -> None:
        self._expire()
        items = self._items
        items.pop(record.id, None)
        items[record.id] = (self._clock(), record)
        while len(items) > self.max_items:
            items.popitem(last=False)

    async def delete(self, response_id: str) -> bool:
        self._expire()
        return self._items.pop(response_id, None) is not None
