"""Admission control for one backend replica: a concurrency cap and a bounded FIFO queue.

A llama.cpp server with 4 slots that gets 200 requests does not serve 200: it queues them
internally, each waits past its deadline, and the gateway then spills them all to the next
backend (the paid API) at once.  :class:`Admission` keeps at most ``limit`` requests in flight
on a replica, lets at most ``queue`` more wait (first come, first served) for at most
``max_wait`` seconds, and says *no* at once when the queue is full, so the router can spill the
request to another replica or backend that serves the model, or answer ``429`` with
``Retry-After``: never a hang.

Interface (all from one event loop; not thread-safe):

* :meth:`try_acquire` -> bool: a slot now, or not (never waits);
* :meth:`acquire` (``max_wait``) -> bool: a slot now, or a place in the queue and the slot when
  one frees up within ``max_wait``; False when the queue is full or the wait ran out.  A waiter
  that is cancelled leaves the queue (a slot handed to it meanwhile is passed on);
* :meth:`release`: the request ended (success or not); the slot goes to the oldest waiter;
* :meth:`snapshot` -> dict: ``limit``, ``in_flight``, ``queued``, ``queue_limit``,
  ``max_wait``, counters and wait times, for ``/metrics`` and ``/v1/health/inference``;
* :meth:`retry_after` -> seconds a refused client should wait (the recent mean wait, at least
  one second);
* :attr:`limit` may change at run time (:meth:`set_limit`, e.g. when llama.cpp's ``/props``
  says how many slots it has).  ``limit`` None means no cap: everything is admitted at once.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["Admission"]


class Admission:
    """A per-replica concurrency cap with a bounded FIFO queue (see the module docstring)."""

    __slots__ = (
        "_clock",
        "_waiters",
        "admitted",
        "in_flight",
        "limit",
        "max_wait",
        "queue_limit",
        "rejected_full",
        "rejected_timeout",
        "wait_max",
        "wait_recent",
        "wait_sum",
        "waited",
    )

    def __init__(
        self,
        limit: int | None,
        queue: int = 0,
        max_wait: float = 0.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit is not None and limit < 1:
            raise ValueError("limit must be >= 1 (or None for no cap)")
        if queue < 0 or max_wait < 0:
            raise ValueError("queue and max_wait must be >= 0")
        self.limit = limit
        self.queue_limit = queue
        self.max_wait = max_wait
        self._clock = clock
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.in_flight = 0
        self.admitted = 0
        self.waited = 0  # admitted after queueing
        self.rejected_full = 0
        self.rejected_timeout = 0
        self.wait_sum = 0.0
        self.wait_max = 0.0
        self.wait_recent = 0.0  # exponentially weighted mean of recent queue waits

    # ------------------------------------------------------------------------------ slots

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def full(self) -> bool:
        """True when a request would be refused now (no slot and no room in the queue)."""
        return not self._free() and len(self._waiters) >= self.queue_limit

    def _free(self) -> bool:
        return self.limit is None or (self.in_flight < self.limit and not self._waiters)

    def try_acquire(self) -> bool:
        """Take a slot if one is free now (never waits, never queues)."""
        if self._free():
            self.in_flight += 1
            self.admitted += 1
            return True
        return False

    async def acquire(self, max_wait: float | None = None) -> bool:
        """A slot, waiting in the queue up to ``max_wait`` (default: the configured one).

        False when the queue is full or the wait ran out (the caller spills or answers 429).
        """
        if self.try_acquire():
            return True
        wait = self.max_wait if max_wait is None else min(max_wait, self.max_wait)
        if len(self._waiters) >= self.queue_limit or wait <= 0:
            self.rejected_full += 1
            return False
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        t0 = self._clock()
        try:
            async with asyncio.timeout(wait):
                await waiter
        except TimeoutError:
            self._leave(waiter)
            self.rejected_timeout += 1
            self._note_wait(self._clock() - t0)
            return False
        except BaseException:  # cancelled: give back a slot handed to us meanwhile
            self._leave(waiter)
            raise
        # the slot was handed over by release(): in_flight already counts it
        self.admitted += 1
        self.waited += 1
        self._note_wait(self._clock() - t0)
        return True

    def release(self) -> None:
        """One admitted request ended: its slot goes to the oldest waiter, else back."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # in_flight stays: the slot changes hands
                return
        if self.in_flight > 0:
            self.in_flight -= 1

    def set_limit(self, limit: int | None) -> None:
        """Change the cap (e.g. learned from the server); extra room goes to waiters at once."""
        if limit is not None and limit < 1:
            raise ValueError("limit must be >= 1 (or None for no cap)")
        self.limit = limit
        while self._waiters and (limit is None or self.in_flight < limit):
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    def _leave(self, waiter: asyncio.Future[None]) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)
            if not waiter.done():
                waiter.cancel()
            return
        if waiter.done() and not waiter.cancelled():
            self.release()  # handed a slot, but gone before using it: pass it on

    def _note_wait(self, seconds: float) -> None:
        self.wait_sum += seconds
        self.wait_max = max(self.wait_max, seconds)
        self.wait_recent = (
            seconds if not self.wait_recent else 0.8 * self.wait_recent + 0.2 * seconds
        )

    # ---------------------------------------------------------------------------- reporting

    def retry_after(self) -> int:
        """Whole seconds a refused client should wait before trying again (>= 1)."""
        guess = self.wait_recent or self.max_wait or 1.0
        return max(1, math.ceil(guess))

    def snapshot(self) -> dict[str, Any]:
        """The state and counters, JSON-ready (for /metrics and /v1/health/inference)."""
        return {
            "limit": self.limit,
            "in_flight": self.in_flight,
            "queued": len(self._waiters),
            "queue_limit": self.queue_limit,
            "max_wait": self.max_wait,
            "admitted": self.admitted,
            "waited": self.waited,
            "rejected_full": self.rejected_full,
            "rejected_timeout": self.rejected_timeout,
            "wait_seconds_sum": round(self.wait_sum, 6),
            "wait_seconds_max": round(self.wait_max, 6),
        }

    def __repr__(self) -> str:
        return (
            f"<Admission {self.in_flight}/{self.limit} in flight, "
            f"{len(self._waiters)}/{self.queue_limit} queued>"
        )
