"""Cheap deadlines for the hot path: one watchdog task instead of a timer per await.

``asyncio.timeout`` costs 10-15 µs per use on CPython 3.11 (a timer handle pushed onto the
loop's heap, cancelled, rescheduled...).  The router needs one per request (first token) and
one per stream chunk (idle), so it uses a :class:`Watchdog` instead: a single background task
wakes every ``tick`` seconds and cancels the tasks whose :class:`Guard` expired.  Arming a guard
is a few attribute stores; a deadline fires between ``at`` and ``at + tick``.

Cancellation semantics follow ``asyncio.timeout``: the guarded task receives
``CancelledError`` at the await it is suspended in; :meth:`Guard.expired_by_us` (called in the
``except CancelledError`` block) tells a watchdog timeout (then the cancel request is withdrawn
with ``Task.uncancel``; turn it into a timeout error) from a real cancellation (re-raise).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from asyncio import current_task
from collections.abc import Callable

__all__ = ["Guard", "Watchdog"]


class Guard:
    """One armed deadline for one task. Re-armable (a stream re-arms it for every chunk)."""

    __slots__ = ("at", "cancelling", "fired", "slow_at", "slow_key", "task")

    def __init__(self) -> None:
        self.at = 0.0
        self.slow_at = 0.0
        self.slow_key: str | None = None  # reported to Watchdog.on_slow once slow_at passes
        self.task: asyncio.Task[object] | None = None  # None: not armed
        self.fired = False
        self.cancelling = 0

    def expired_by_us(self) -> bool:
        """In ``except CancelledError``: True when this guard's deadline caused it.

        Withdraws the watchdog's cancel request, so the task is not cancelled again later.
        A real cancellation that arrived at the same time wins (returns False).
        """
        if not self.fired:
            return False
        self.fired = False
        task = self.task
        self.task = None
        if task is None:
            return False
        return task.uncancel() <= self.cancelling

    def settle(self) -> None:
        """Disarm after the guarded await ended without ``CancelledError``.

        That happens when the guarded code swallowed the watchdog's ``CancelledError``; the
        cancel request is then withdrawn (``Task.uncancel``), as ``asyncio.timeout`` does.
        """
        task = self.task
        self.task = None
        if self.fired:
            self.fired = False
            if task is not None:
                task.uncancel()


class Watchdog:
    """Cancels tasks whose guard expired; one background task per router."""

    def __init__(
        self,
        tick: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        on_slow: Callable[[str], None] | None = None,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        self.tick = tick
        self.clock = clock
        self.on_slow = on_slow
        self.on_tick = on_tick  # called every tick (keep it quick; an exception is ignored)
        self._guards: set[Guard] = set()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # where the watchdog runs

    # ----------------------------------------------------------------------------- hot path

    def arm(
        self, guard: Guard, seconds: float, slow_after: float = 0.0, key: str | None = None
    ) -> None:
        """Arm ``guard`` for the current task, to fire ``seconds`` from now.

        With ``key``: if the guard is still armed ``slow_after`` seconds from now, call
        ``on_slow(key)`` once (the router asks for a health probe of a backend that keeps a
        request waiting: a hung server is marked down before the request itself times out).
        """
        # with the watchdog's own loop, current_task() skips get_running_loop() (a getpid()
        # system call on CPython 3.11); another loop (or none running yet) asks as usual
        task = current_task(self._loop) or current_task()
        if task is None:  # pragma: no cover - always called from a task
            return
        now = self.clock()
        guard.at = now + seconds
        guard.slow_key = key
        if key is not None:
            guard.slow_at = now + slow_after
        guard.task = task
        guard.fired = False
        guard.cancelling = task.cancelling()
        self._guards.add(guard)

    def disarm(self, guard: Guard) -> None:
        """Stop watching ``guard`` (call in ``finally``)."""
        self._guards.discard(guard)
        if guard.task is not None or guard.fired:
            guard.settle()

    # ---------------------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._loop = asyncio.get_running_loop()
            self._task = self._loop.create_task(self._run(), name="watchdog")

    async def stop(self) -> None:
        task, self._task, self._loop = self._task, None, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        guards = self._guards
        while True:
            await asyncio.sleep(self.tick)
            if self.on_tick is not None:
                with contextlib.suppress(Exception):
                    self.on_tick()
            if not guards:
                continue
            now = self.clock()
            for guard in list(guards):
                if guard.at <= now:
                    guards.discard(guard)
                    task = guard.task
                    if task is not None and not task.done() and not guard.fired:
                        guard.fired = True
                        task.cancel()
                elif guard.slow_key is not None and guard.slow_at <= now:
                    key, guard.slow_key = guard.slow_key, None
                    if self.on_slow is not None:
                        # a callback bug must not kill the watchdog
                        with contextlib.suppress(Exception):
                            self.on_slow(key)
