"""Retry decisions and deadlines.

* :func:`backoff_delay`: exponential backoff with full jitter (as openai-python and AWS do).
* :func:`retry_delay`: how long to wait before asking the same backend again, or ``None`` when
  the router should not retry (not retryable, retries used up, ``Retry-After`` over the cap, or
  the wait would not fit in the request's deadline).
* :class:`Deadline`: one overall deadline per request, on an injectable clock.

The router runs the only retry loop of the stack; these helpers only compute.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from ..errors import InferenceError, RateLimited
from .policy import RouterPolicy

__all__ = ["Deadline", "backoff_delay", "retry_delay"]


def backoff_delay(
    retry: int, policy: RouterPolicy, rand: Callable[[], float] = random.random
) -> float:
    """The wait before retry number ``retry`` (1-based): uniform in [0, min(max, base*2^(n-1))]."""
    ceiling = min(policy.backoff_max, policy.backoff_base * (2 ** max(0, retry - 1)))
    return ceiling * rand()


def retry_delay(
    error: BaseException,
    retry: int,
    policy: RouterPolicy,
    *,
    remaining: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """Seconds to wait before retry number ``retry`` (1-based) of ``error``, or None: don't.

    ``remaining`` is what is left of the request's deadline; a wait that would not leave any
    time for the retry itself is refused (the next backend may still make it in time).
    """
    if not isinstance(error, InferenceError) or not error.retryable:
        return None
    if retry > policy.max_retries:
        return None
    retry_after = error.retry_after if isinstance(error, RateLimited) else None
    if retry_after is not None:
        if retry_after > policy.retry_after_cap:
            return None  # the backend asked for longer than we wait: fall back now
        delay = retry_after
    else:
        delay = backoff_delay(retry, policy, rand)
    if remaining is not None and delay >= remaining:
        return None
    return delay


class Deadline:
    """An absolute deadline on ``clock`` (``time.monotonic`` by default)."""

    __slots__ = ("_clock", "at")

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.at = clock() + seconds

    def remaining(self) -> float:
        """Seconds left (negative once passed)."""
        return self.at - self._clock()

    @property
    def expired(self) -> bool:
        return self._clock() >= self.at
