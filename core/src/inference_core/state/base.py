"""What every state backend offers, and the value types they share.

A *state backend* (:class:`~.memory.MemoryState` in-process, :class:`~.redis.RedisState` shared)
holds, per API key: the request and token windows (rpm, tpm: a sliding window of two aligned
minutes, the previous one weighted by how much of it still overlaps the last 60 s), the
parallel-request slots, the token budget of the current period, and the usage (prompt and
completion tokens, requests) per day, model and backend.  It also carries the flags the
resilience layer shares across processes (an open breaker, a remembered 429, see
:mod:`.shared`) and the Responses store.

The contract per request: ``await state.admit(name, limits, ticket)`` before the backend is
called (raises :class:`LimitExceeded` naming the first limit that is reached, or
:class:`StateUnavailable` when Redis is down and the mode is ``closed``); exactly one
``state.settle(...)`` when the request ends, whatever happened (frees the parallel slot, adds
the tokens to tpm, budget and usage).  ``settle`` never blocks: the Redis backend sends it in
the background.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

__all__ = [
    "PERIODS",
    "LimitExceeded",
    "Limits",
    "Period",
    "StateUnavailable",
    "period_bounds",
    "window_retry_after",
]

Period = Literal["day", "week", "month"]
PERIODS: tuple[Period, ...] = ("day", "week", "month")
WINDOW = 60.0


@dataclass(frozen=True, slots=True)
class Limits:
    """A key's limits; 0 means none.  ``budget`` tokens per ``period`` (UTC calendar)."""

    rpm: int = 0
    tpm: int = 0
    parallel: int = 0
    budget: int = 0
    period: Period = "month"

    @property
    def any(self) -> bool:
        return bool(self.rpm or self.tpm or self.parallel or self.budget)


NO_LIMITS = Limits()


class LimitExceeded(Exception):
    """A key reached one of its limits: ``limit`` is ``rpm``, ``tpm``, ``parallel`` or
    ``budget``; ``retry_after`` the seconds until a request may pass again."""

    def __init__(self, limit: str, retry_after: float, detail: str) -> None:
        super().__init__(detail)
        self.limit = limit
        self.retry_after = max(1, math.ceil(retry_after))
        self.detail = detail


class StateUnavailable(Exception):
    """The shared state (Redis) cannot be reached and ``INFERENCE_REDIS_FAIL=closed``."""


def window_retry_after(prev: float, cur: float, elapsed: float, limit: int, need: float) -> float:
    """Seconds until ``prev * (1 - e/60) + cur + need <= limit`` for the sliding window.

    ``elapsed``: seconds into the current aligned minute.  ``prev``/``cur``: the counts of the
    previous and current minute.
    """
    room = limit - need - cur
    if room >= 0:
        if prev <= 0:
            return 0.0
        t = WINDOW * (1 - room / prev) - elapsed
        if t < WINDOW - elapsed:
            return max(0.0, t)
    # not within this minute: at its end cur becomes prev (weighted) and cur starts at 0
    rest = WINDOW - elapsed
    room = limit - need
    if cur <= 0 or room >= cur:
        return rest
    return rest + WINDOW * (1 - max(0.0, room) / cur)


def _period_start(period: Period, now: datetime) -> datetime:
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _period_end(period: Period, start: datetime) -> datetime:
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    return (start + timedelta(days=32)).replace(day=1)


def period_bounds(period: Period, at: float | None = None) -> tuple[str, float, float]:
    """``(id, start, end)`` of the UTC calendar ``period`` holding ``at`` (epoch seconds):
    ids ``d2026-12-04``, ``w2026-11-30`` (the Monday), ``m2026-12``."""
    now = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    start = _period_start(period, now)
    end = _period_end(period, start)
    ident = f"m{start:%Y-%m}" if period == "month" else f"{period[0]}{start:%Y-%m-%d}"
    return ident, start.timestamp(), end.timestamp()


class PeriodClock:
    """Cached period ids: ``current(period, now)`` is a dict look-up until the period ends."""

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[str, tuple[str, float, float]] = {}

    def current(self, period: Period, now: float) -> tuple[str, float]:
        """``(id, seconds left)`` of ``period`` at ``now``."""
        hit = self._cache.get(period)
        if hit is None or not (hit[1] <= now < hit[2]):
            hit = self._cache[period] = period_bounds(period, now)
        return hit[0], hit[2] - now


def days_of(period: Period, at: float | None = None) -> tuple[str, list[str]]:
    """The period's id and the ``d...`` ids of its days (usage is kept per day)."""
    ident, start, end = period_bounds(period, at)
    days = []
    t = start
    while t < end:
        days.append(period_bounds("day", t + 1)[0])
        t += 86400
    return ident, days
