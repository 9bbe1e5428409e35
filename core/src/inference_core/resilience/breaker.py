"""A circuit breaker per backend replica (closed -> open -> half-open -> closed).

Two conditions open it, whichever comes first:

* **consecutive failures**: ``threshold`` failures within ``window`` seconds with no success
  between them (a backend that is down);
* **failure rate** (as Envoy's failure-percentage outlier detection): of the requests that
  ended within the last ``window`` seconds, at least ``min_requests`` and a fraction of failures
  of at least ``failure_rate`` (a backend that fails a share of its requests, e.g. 30 %, never
  fails ``threshold`` times in a row).  ``failure_rate=0`` turns this off.

After ``cooldown`` seconds it becomes
half-open and lets exactly one trial request through; that trial's success closes it, its
failure opens it again for another cool-down.  Only failures that say the backend is sick
count (unavailable, timeout, authentication); the router reports an answer that proves the
backend alive (a success, a 4xx) with :meth:`CircuitBreaker.on_success` and an outcome that
says nothing (429, cancellation) with :meth:`CircuitBreaker.on_neutral`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # pragma: no cover
    from .policy import RouterPolicy

__all__ = ["BreakerState", "CircuitBreaker"]

_MAX_OUTCOMES = 10_000

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Not thread-safe: used from the router's event loop only."""

    __slots__ = (
        "_clock",
        "_failed_in_window",
        "_failures",
        "_opened_at",
        "_outcomes",
        "_state",
        "_trial",
        "cooldown",
        "failure_rate",
        "listener",
        "min_requests",
        "shared",
        "threshold",
        "window",
    )

    def __init__(
        self,
        threshold: int = 3,
        window: float = 30.0,
        cooldown: float = 10.0,
        *,
        failure_rate: float = 0.0,
        min_requests: int = 20,
        clock: Callable[[], float] = time.monotonic,
        listener: Callable[[BreakerState, BreakerState], None] | None = None,
    ) -> None:
        self.threshold = threshold
        self.window = window
        self.cooldown = cooldown
        self._clock = clock
        self.listener = listener
        self.failure_rate = failure_rate
        self.min_requests = max(1, min_requests)
        self._failures: deque[float] = deque()
        self._outcomes: deque[tuple[float, bool]] = deque()  # (time, failed), for the rate
        self._failed_in_window = 0
        self._state: BreakerState = "closed"
        self._opened_at = 0.0
        self._trial = False  # the half-open trial request is in flight
        #: called with the cool-down when this breaker opens (shared state, see
        #: ``inference_core.state.shared``); None when nothing is shared
        self.shared: Callable[[float], None] | None = None

    @classmethod
    def from_policy(
        cls, policy: RouterPolicy, clock: Callable[[], float] = time.monotonic
    ) -> CircuitBreaker:
        """A breaker with the router policy's settings (threshold, window, cooldown, rate)."""
        return cls(
            policy.breaker_threshold,
            policy.breaker_window,
            policy.breaker_cooldown,
            failure_rate=policy.breaker_failure_rate,
            min_requests=policy.breaker_min_requests,
            clock=clock,
        )

    # ------------------------------------------------------------------------------ state

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose cool-down ran out reads ``half_open``."""
        if self._state == "open" and self._clock() - self._opened_at >= self.cooldown:
            self._set("half_open")
        return self._state

    def available(self) -> bool:
        """True when a request may go through now (closed, or half-open with no trial out)."""
        if self._state == "closed":
            return True
        return self.state == "half_open" and not self._trial

    def cooldown_remaining(self) -> float:
        """Seconds until an open breaker turns half-open (0 when not open)."""
        if self.state != "open":
            return 0.0
        return max(0.0, self.cooldown - (self._clock() - self._opened_at))

    # ---------------------------------------------------------------------------- outcomes

    def on_attempt(self) -> bool:
        """Call before sending; True when this request is the half-open trial."""
        if self._state == "closed":
            return False
        if self.state == "half_open" and not self._trial:
            self._trial = True
            return True
        return False

    def on_success(self, trial: bool = False) -> None:
        """The backend answered (a result, or a 4xx that proves it alive): close."""
        if trial:
            self._trial = False
        if self._state != "closed":
            self._failures.clear()
            self._forget()
            self._set("closed")
            return
        if self._failures:
            self._failures.clear()
        if self.failure_rate:
            self._record(self._clock(), False)

    def on_failure(self, trial: bool = False) -> None:
        """The backend failed in a way that says it is sick."""
        now = self._clock()
        if trial:
            self._trial = False
        if self._state == "half_open":
            if trial:
                self._open(now)
            return
        if self._state == "open":
            return  # a last-resort try while open: the cool-down is not extended
        failures = self._failures
        failures.append(now)
        horizon = now - self.window
        while failures and failures[0] < horizon:
            failures.popleft()
        if len(failures) >= self.threshold:
            self._open(now)
            return
        if self.failure_rate:
            self._record(now, True)
            total = len(self._outcomes)
            if total >= self.min_requests and self._failed_in_window >= self.failure_rate * total:
                self._open(now)

    def error_rate(self) -> float | None:
        """The failure fraction over the window (None when the rate condition is off or no
        request ended in the window)."""
        if not self.failure_rate:
            return None
        self._prune(self._clock())
        total = len(self._outcomes)
        return self._failed_in_window / total if total else None

    def on_neutral(self, trial: bool = False) -> None:
        """An outcome that says nothing about health (429, cancelled): free the trial slot."""
        if trial:
            self._trial = False

    def adopt_open(self, remaining: float) -> None:
        """Another process saw this backend fail: be open for ``remaining`` seconds (then
        half-open as usual).  A breaker already open for longer is left alone; the change is
        not published back."""
        now = self._clock()
        opened_at = now - (self.cooldown - remaining)
        if self._state == "open" and self._opened_at >= opened_at:
            return
        if self._state == "half_open" and self._trial:
            return  # our own trial is out: its outcome decides
        self._opened_at = opened_at
        self._failures.clear()
        self._set("open")

    # ----------------------------------------------------------------------------- helpers

    def _record(self, now: float, failed: bool) -> None:
        outcomes = self._outcomes
        outcomes.append((now, failed))
        if failed:
            self._failed_in_window += 1
        self._prune(now)
        if len(outcomes) > _MAX_OUTCOMES:  # bounded memory at any request rate
            _, old_failed = outcomes.popleft()
            self._failed_in_window -= old_failed

    def _prune(self, now: float) -> None:
        outcomes = self._outcomes
        horizon = now - self.window
        while outcomes and outcomes[0][0] < horizon:
            _, old_failed = outcomes.popleft()
            self._failed_in_window -= old_failed

    def _forget(self) -> None:
        self._outcomes.clear()
        self._failed_in_window = 0

    def _open(self, now: float) -> None:
        self._opened_at = now
        self._failures.clear()
        self._forget()
        self._set("open")
        if self.shared is not None:
            self.shared(self.cooldown)

    def _set(self, new: BreakerState) -> None:
        old = self._state
        if old == new:
            return
        self._state = new
        if new != "half_open":
            self._trial = False
        if self.listener is not None:
            self.listener(old, new)

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.state} failures={len(self._failures)}>"
