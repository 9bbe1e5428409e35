"""Rate limits remembered per backend replica (HTTP 429), so that every request does not
discover them again.

A replica that answered 429 is *rate limited* until ``now + Retry-After`` (``retry-after-ms``,
seconds or an HTTP date, as the plugin parsed it), or, when the answer gave no ``Retry-After``,
until ``now + min(retry_after_cap, backoff_base * 2^(n-1))`` for the ``n``-th 429 in a row.
While it is, the router orders the backend after the healthy ones that are not rate limited and
the balancer prefers the backend's other replicas: it is tried later, never refused.  An answer
to a request sent after the last 429 clears the limit and the count of 429s in a row.

A :class:`RateLimit` is a few floats on the router's clock; not thread-safe (the router's event
loop only).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .policy import RouterPolicy

__all__ = ["RateLimit", "rate_limit_seconds"]

#: 2^30 x backoff_base is far past any cap; keeps the power from overflowing a float.
_MAX_DOUBLINGS = 30


def rate_limit_seconds(retry_after: float | None, streak: int, policy: RouterPolicy) -> float:
    """How long a replica counts as rate limited after its ``streak``-th 429 in a row (>= 1).

    The backend's own ``Retry-After`` when it sent one (not capped: it is what the server said,
    and a rate-limited backend is only ordered last, not refused); else the policy's backoff
    base doubled per 429 in a row, capped by ``retry_after_cap``.
    """
    if retry_after is not None:
        return max(0.0, retry_after)
    doublings = min(max(0, streak - 1), _MAX_DOUBLINGS)
    return min(policy.retry_after_cap, policy.backoff_base * (2**doublings))


class RateLimit:
    """The rate limit of one replica: until when, how many 429s in a row, how many in all."""

    __slots__ = ("_clock", "announced", "count", "last_hit", "shared", "streak", "until")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.until = 0.0  # the limit ends at this clock time (0: none since the last clear)
        self.last_hit = 0.0  # clock time of the last 429
        self.streak = 0  # 429s in a row (reset by an answer to a request sent after the last)
        self.count = 0  # 429s seen in all
        self.announced = False  # the router told its listeners "limited" and not yet "clear"
        #: called with the seconds remembered on each 429 (shared state, see
        #: ``inference_core.state.shared``); None when nothing is shared
        self.shared: Callable[[float], None] | None = None

    def active(self) -> bool:
        """True while the replica counts as rate limited."""
        until = self.until
        return until > 0.0 and until > self._clock()

    def remaining(self) -> float:
        """Seconds until the limit ends (0 when not limited)."""
        until = self.until
        if until <= 0.0:
            return 0.0
        return max(0.0, until - self._clock())

    def hit(self, retry_after: float | None, policy: RouterPolicy) -> float:
        """A 429 (with the backend's ``Retry-After``, if any): returns the seconds remembered."""
        now = self._clock()
        self.count += 1
        self.streak += 1
        self.last_hit = now
        seconds = rate_limit_seconds(retry_after, self.streak, policy)
        if now + seconds > self.until:
            self.until = now + seconds
        if self.shared is not None:
            self.shared(seconds)
        return seconds

    def adopt(self, remaining: float) -> None:
        """Another process got a 429 from this replica: count as limited for ``remaining``
        seconds (an answer to a request sent after now clears it, as after a 429 of ours)."""
        now = self._clock()
        if now + remaining > self.until:
            self.until = now + remaining
            self.last_hit = now
            self.streak = max(1, self.streak)

    def answered(self, sent_at: float) -> bool:
        """A request sent at ``sent_at`` got an answer: clear the limit if it was sent after
        the last 429 (an answer to an older request says nothing about the limit).  True when
        a limit was cleared."""
        if not self.streak or sent_at < self.last_hit:
            return False
        was = self.active()
        self.until = 0.0
        self.streak = 0
        return was

    def __repr__(self) -> str:
        return (
            f"<RateLimit remaining={self.remaining():.3f}s streak={self.streak} count={self.count}>"
        )
