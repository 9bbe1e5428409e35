"""In-process state: plain dicts on the event loop (no locks: asyncio runs one callback at a
time, and nothing here awaits between a check and its update).  Each worker and each replica
has its own; set ``INFERENCE_REDIS_URL`` to share.  Per request: a handful of dict operations.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .base import (
    WINDOW,
    LimitExceeded,
    Limits,
    Period,
    PeriodClock,
    days_of,
    window_retry_after,
)

__all__ = ["MemoryState"]


class _Window:
    """Two aligned minutes of a sliding-window counter."""

    __slots__ = ("cur", "minute", "prev")

    def __init__(self) -> None:
        self.minute = 0
        self.cur = 0.0
        self.prev = 0.0

    def roll(self, minute: int) -> None:
        if minute != self.minute:
            self.prev = self.cur if minute == self.minute + 1 else 0.0
            self.cur = 0.0
            self.minute = minute


class MemoryState:
    """The in-process state backend (see :mod:`.base` for the contract)."""

    shared = False

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._rpm: dict[str, _Window] = {}
        self._tpm: dict[str, _Window] = {}
        self._parallel: dict[str, int] = {}
        self._budget: dict[tuple[str, str], int] = {}
        self._usage: dict[tuple[str, str], dict[tuple[str, str], list[int]]] = {}
        self._periods = PeriodClock()
        self._responses: dict[str, tuple[bytes, float]] = {}

    # ---------------------------------------------------------------------------- limits

    async def admit(self, name: str, limits: Limits, ticket: str) -> None:
        """Check every limit of key ``name``; on success take a request and a parallel slot."""
        if not limits.any:
            return
        now = self._clock()
        minute = int(now // WINDOW)
        elapsed = now - minute * WINDOW
        weight = 1.0 - elapsed / WINDOW
        if limits.budget:
            pid, left = self._periods.current(limits.period, now)
            used = self._budget.get((name, pid), 0)
            if used >= limits.budget:
                raise LimitExceeded(
                    "budget",
                    left,
                    f"token budget of {limits.budget} per {limits.period} is used up "
                    f"({used} tokens)",
                )
        rpm_window = None
        if limits.rpm:
            rpm_window = self._rpm.get(name)
            if rpm_window is None:
                rpm_window = self._rpm[name] = _Window()
            rpm_window.roll(minute)
            if rpm_window.prev * weight + rpm_window.cur + 1 > limits.rpm:
                raise LimitExceeded(
                    "rpm",
                    window_retry_after(rpm_window.prev, rpm_window.cur, elapsed, limits.rpm, 1),
                    f"{limits.rpm} requests per minute",
                )
        if limits.tpm:
            w = self._tpm.get(name)
            if w is not None:
                w.roll(minute)
                if w.prev * weight + w.cur + 1 > limits.tpm:
                    raise LimitExceeded(
                        "tpm",
                        window_retry_after(w.prev, w.cur, elapsed, limits.tpm, 1),
                        f"{limits.tpm} tokens per minute",
                    )
        if limits.parallel:
            running = self._parallel.get(name, 0)
            if running >= limits.parallel:
                raise LimitExceeded("parallel", 1.0, f"{limits.parallel} requests at a time")
            self._parallel[name] = running + 1
        if rpm_window is not None:
            rpm_window.cur += 1

    def settle(
        self,
        name: str,
        limits: Limits,
        ticket: str,
        model: str,
        backend: str,
        prompt: int,
        completion: int,
    ) -> None:
        """The request ended: free its slot, count its tokens (tpm, budget, usage)."""
        if limits.parallel:
            running = self._parallel.get(name, 0)
            if running > 0:
                self._parallel[name] = running - 1
        now = self._clock()
        tokens = prompt + completion
        if tokens and limits.tpm:
            w = self._tpm.get(name)
            if w is None:
                w = self._tpm[name] = _Window()
            w.roll(int(now // WINDOW))
            w.cur += tokens
        if tokens and limits.budget:
            pid, _ = self._periods.current(limits.period, now)
            key = (name, pid)
            self._budget[key] = self._budget.get(key, 0) + tokens
        day, _ = self._periods.current("day", now)
        per_day = self._usage.get((name, day))
        if per_day is None:
            per_day = self._usage[(name, day)] = {}
        row = per_day.get((model, backend))
        if row is None:
            per_day[(model, backend)] = [prompt, completion, 1]
        else:
            row[0] += prompt
            row[1] += completion
            row[2] += 1

    async def usage(
        self, name: str | None, period: Period, at: float | None = None
    ) -> dict[str, Any]:
        """``{key name: {"prompt_tokens", "completion_tokens", "requests", "by": [rows]}}``
        summed over ``period`` (the one holding ``at``); ``name`` None: every key."""
        ident, days = days_of(period, at)
        rows: dict[str, dict[tuple[str, str], list[int]]] = {}
        for (key, day), per in self._usage.items():
            if day in days and (name is None or key == name):
                dest = rows.setdefault(key, {})
                for mb, vals in per.items():
                    acc = dest.setdefault(mb, [0, 0, 0])
                    for i in range(3):
                        acc[i] += vals[i]
        return summarize(ident, rows)

    async def budget_used(self, name: str, limits: Limits) -> int:
        pid, _ = self._periods.current(limits.period, self._clock())
        return self._budget.get((name, pid), 0)

    # ---------------------------------------------------------------- shared resilience

    def breaker_opened(self, key: str, seconds: float) -> None:
        """Nothing to share within one process."""

    def rate_limited(self, key: str, seconds: float) -> None:
        """Nothing to share within one process."""

    async def poll_flags(self) -> tuple[dict[str, float], dict[str, float]]:
        return {}, {}

    # ------------------------------------------------------------------ Responses store

    async def put_response(self, response_id: str, data: bytes, ttl: float) -> None:
        now = self._clock()
        if len(self._responses) > 10000:
            for rid in [r for r, (_, exp) in self._responses.items() if exp <= now]:
                del self._responses[rid]
        self._responses[response_id] = (data, now + ttl)

    async def get_response(self, response_id: str) -> bytes | None:
        hit = self._responses.get(response_id)
        if hit is None or hit[1] <= self._clock():
            return None
        return hit[0]

    async def delete_response(self, response_id: str) -> bool:
        return self._responses.pop(response_id, None) is not None

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


def summarize(ident: str, rows: dict[str, dict[tuple[str, str], list[int]]]) -> dict[str, Any]:
    """The admin endpoint's shape from ``{key: {(model, backend): [p, c, n]}}``."""
    keys: dict[str, Any] = {}
    for key in sorted(rows):
        by = [
            {"model": m, "backend": b, "prompt_tokens": v[0], "completion_tokens": v[1],
             "requests": v[2]}
            for (m, b), v in sorted(rows[key].items())
        ]  # fmt: skip
        keys[key] = {
            "prompt_tokens": sum(r["prompt_tokens"] for r in by),
            "completion_tokens": sum(r["completion_tokens"] for r in by),
            "requests": sum(r["requests"] for r in by),
            "by": by,
        }
    return {"period": ident, "keys": keys}
