"""Breaker and 429 state shared across processes through a state backend.

:func:`share_resilience` gives every replica's :class:`~inference_core.resilience.breaker.
CircuitBreaker` and :class:`~inference_core.resilience.rate_limit.RateLimit` a ``shared`` hook:
when a breaker opens (or a 429 is remembered) the hook tells the state backend, which writes a
flag ``<backend>@<url> -> until`` to Redis in the background.  A poller reads every flag each
``INFERENCE_STATE_SYNC_INTERVAL`` seconds (one Redis call for all of them) and makes the local
breaker adopt an open state, or the local rate limit a remembered 429, until the flag's end; the
router's hot path only ever reads its local objects, as without Redis.  With the in-process
backend nothing is attached (no cost).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

__all__ = ["SharedResilience", "replicas_of", "share_resilience"]

log = logging.getLogger("inference_core.state")


def replicas_of(router: Any) -> Iterator[tuple[str, Any]]:
    """``(shared key, replica)`` for every replica of every backend the router holds.

    The key is ``<backend>@<url without credentials>`` (``<backend>@-`` for a backend without
    a URL); every replica configured alike computes the same one.
    """
    backends = getattr(router, "_backends", None)
    if not isinstance(backends, dict):
        return
    for name, backend in backends.items():
        rset = getattr(backend, "replicas", None)
        for replica in getattr(rset, "replicas", ()) or ():
            url = getattr(replica, "display_url", "") or "-"
            yield f"{name}@{url}", replica


class SharedResilience:
    """Attach the hooks and run the poller (``start()`` / ``aclose()`` on the event loop)."""

    def __init__(self, state: Any, router: Any, interval: float = 0.25) -> None:
        self.state = state
        self.interval = interval
        self.replicas: dict[str, Any] = dict(replicas_of(router))
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        for key, replica in self.replicas.items():
            breaker = replica.breaker
            limit = replica.rate_limit
            if hasattr(breaker, "shared"):
                breaker.shared = _hook(state.breaker_opened, key)
            if hasattr(limit, "shared"):
                limit.shared = _hook(state.rate_limited, key)

    def start(self) -> None:
        if self._task is None and self.replicas:
            self._task = asyncio.ensure_future(self._run())

    async def sync_once(self) -> None:
        """Read the flags once and apply them to the local breakers and rate limits."""
        breakers, limits = await self.state.poll_flags()
        for key, left in breakers.items():
            replica = self.replicas.get(key)
            if replica is not None:
                adopt = getattr(replica.breaker, "adopt_open", None)
                if adopt is not None:
                    adopt(left)
        for key, left in limits.items():
            replica = self.replicas.get(key)
            if replica is not None:
                adopt = getattr(replica.rate_limit, "adopt", None)
                if adopt is not None:
                    adopt(left)

    async def _run(self) -> None:
        # a cancellation that lands inside a redis-py call may be swallowed by it: the flag
        # ends the loop whatever happened to the cancellation
        while not self._closed:
            try:
                await self.sync_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("reading the shared breaker/429 state failed", exc_info=True)
            await asyncio.sleep(self.interval)

    async def aclose(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=2.0)


def _hook(publish: Any, key: str) -> Any:
    def hook(seconds: float) -> None:
        try:
            publish(key, seconds)
        except Exception:
            log.debug("publishing shared state failed", exc_info=True)

    return hook


def share_resilience(state: Any, router: Any, interval: float = 0.25) -> SharedResilience | None:
    """Share ``router``'s breakers and 429 memory through ``state`` (None when in-process)."""
    if not getattr(state, "shared", False):
        return None
    shared = SharedResilience(state, router, interval)
    shared.start()
    return shared
