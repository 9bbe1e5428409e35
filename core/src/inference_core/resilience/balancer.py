"""Replica balancing: least outstanding requests, ties round-robin, sick replicas ejected.

A backend configured with several base URLs (``INFERENCE_<NAME>_BASE_URL=a,b``) has one
:class:`Replica` per URL, each with its own breaker, health state and cached
``config.for_replica(url)``.  The load of a replica is the requests this router has outstanding
on it, plus, when the plugin's ``health`` result carries ``load`` (an extra field: requests
running + waiting on that server, e.g. vLLM's ``num_requests_running + num_requests_waiting``),
the part of that load that came from other clients at the last probe.

:meth:`ReplicaSet.pick` takes the least loaded replica (ties round-robin) among those whose
breaker lets a request through, whose last probe did not say ``down`` and that are not rate
limited (a 429 remembered until its ``Retry-After``, see :mod:`.rate_limit`); failing that, among
those merely eligible; when every replica is ejected it still picks one, so a request is never
refused here.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .admission import Admission
from .breaker import BreakerState, CircuitBreaker
from .policy import RouterPolicy
from .rate_limit import RateLimit

if TYPE_CHECKING:
    from ..models import BackendConfig

__all__ = ["Replica", "ReplicaSet", "admission_for", "strip_credentials"]

#: Seconds a request may wait in a replica's queue (INFERENCE_<NAME>_QUEUE_TIMEOUT).
QUEUE_TIMEOUT_DEFAULT = 10.0


def admission_for(config: BackendConfig) -> Admission | None:
    """A replica's admission control from its backend's options, or None (no cap known).

    ``INFERENCE_<NAME>_MAX_CONCURRENCY`` (or what the plugin learned at start-up: llama.cpp's
    slots, Ollama's ``OLLAMA_NUM_PARALLEL``) requests in flight per replica;
    ``INFERENCE_<NAME>_MAX_QUEUE`` more may wait (default: twice the cap), each at most
    ``INFERENCE_<NAME>_QUEUE_TIMEOUT`` seconds (default 10).
    """
    limit = config.option_int("max_concurrency", minimum=1)
    if limit is None:
        return None
    queue = config.option_int("max_queue", 2 * limit, minimum=0)
    wait = config.option_float("queue_timeout", QUEUE_TIMEOUT_DEFAULT, minimum=0)
    return Admission(limit, queue, wait)


_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_SECRET_QUERY = re.compile(r"(?i)([?&](?:api[_-]?key|key|token|secret|access_token)=)[^&\s]+")


def strip_credentials(text: str) -> str:
    """``text`` with ``user:password@`` removed from URLs and secret query values masked."""
    if "@" in text:
        text = _CREDENTIALS.sub(r"\g<scheme>", text)
    if "=" in text:
        text = _SECRET_QUERY.sub(r"\1****", text)
    return text


class Replica:
    """One URL of a backend."""

    __slots__ = (
        "admission",
        "breaker",
        "config",
        "detail",
        "display_url",
        "external",
        "outstanding",
        "rate_limit",
        "state",
        "url",
    )

    def __init__(
        self,
        url: str,
        config: BackendConfig,
        breaker: CircuitBreaker,
        rate_limit: RateLimit | None = None,
    ) -> None:
        self.url = url
        self.display_url = strip_credentials(url)
        self.config = config
        self.breaker = breaker
        self.outstanding = 0
        self.external = 0.0  # the server's load from other clients, when its probe reports it
        self.state: str = "unknown"  # the last active probe: ready / loading / down / unknown
        self.detail: str | None = None
        self.rate_limit = rate_limit if rate_limit is not None else RateLimit()
        self.admission: Admission | None = None  # a concurrency cap, when one is known

    @property
    def eligible(self) -> bool:
        return self.state != "down" and self.breaker.available()

    def snapshot(self) -> dict[str, object]:
        """The replica's state for health output (``admission`` only when it has a cap)."""
        out: dict[str, object] = {
            "url": self.display_url,
            "state": self.state,
            "outstanding": self.outstanding,
            "breaker": self.breaker.state,
            "external_load": self.external,
            "rate_limited": round(self.rate_limit.remaining(), 3),
        }
        if self.admission is not None:
            out["admission"] = self.admission.snapshot()
        return out


class ReplicaSet:
    """The replicas of one backend (a single pseudo-replica when it has 0 or 1 URL)."""

    __slots__ = ("_rr", "replicas", "single")

    def __init__(
        self,
        config: BackendConfig,
        policy: RouterPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_breaker_change: Callable[[Replica, BreakerState, BreakerState], None] | None = None,
    ) -> None:
        urls = config.base_urls
        replicas: list[Replica] = []
        for url in urls or ("",):
            cfg = config.for_replica(url) if len(urls) > 1 else config
            breaker = CircuitBreaker.from_policy(policy, clock)
            replica = Replica(url, cfg, breaker, RateLimit(clock))
            replica.admission = admission_for(config)
            if on_breaker_change is not None:
                breaker.listener = _bind(on_breaker_change, replica)
            replicas.append(replica)
        self.replicas = replicas
        self.single = len(replicas) == 1
        self._rr = 0

    def available(self) -> bool:
        """True when some replica would take a request without overriding its breaker."""
        if self.single:
            return self.replicas[0].breaker.available()
        return any(r.breaker.available() for r in self.replicas)

    def rate_limited(self) -> bool:
        """True when every replica is rate limited (a 429 whose ``Retry-After`` runs)."""
        if self.single:
            return self.replicas[0].rate_limit.active()
        return all(r.rate_limit.active() for r in self.replicas)

    def rate_limit_remaining(self) -> float:
        """Seconds until some replica is no longer rate limited (0 when one is not now)."""
        if self.single:
            return self.replicas[0].rate_limit.remaining()
        return min(r.rate_limit.remaining() for r in self.replicas)

    def has_free(self, besides: Replica | None = None) -> bool:
        """True when a replica other than ``besides`` is eligible and not rate limited."""
        return any(
            r is not besides and r.eligible and not r.rate_limit.active() for r in self.replicas
        )

    def pick(self) -> Replica:
        """The replica for the next request: least outstanding among eligible ones, those
        not rate limited first."""
        replicas = self.replicas
        if self.single:
            return replicas[0]
        eligible = [r for r in replicas if r.eligible]
        candidates = [r for r in eligible if not r.rate_limit.active()] or eligible
        if not candidates:
            candidates = [r for r in replicas if r.breaker.available()] or replicas
        n = len(candidates)
        start = self._rr % n
        self._rr += 1
        best = candidates[start]
        best_load = best.outstanding + best.external
        for i in range(1, n):
            r = candidates[(start + i) % n]
            load = r.outstanding + r.external
            if load < best_load:
                best, best_load = r, load
        return best

    def breaker_state(self) -> BreakerState:
        """The backend-level view: closed if any replica is closed, else half_open, else open."""
        states = [r.breaker.state for r in self.replicas]
        if "closed" in states:
            return "closed"
        if "half_open" in states:
            return "half_open"
        return "open"

    def cooldown_remaining(self) -> float:
        if self.breaker_state() != "open":
            return 0.0
        return min(r.breaker.cooldown_remaining() for r in self.replicas)


def _bind(
    fn: Callable[[Replica, BreakerState, BreakerState], None], replica: Replica
) -> Callable[[BreakerState, BreakerState], None]:
    def listener(old: BreakerState, new: BreakerState) -> None:
        fn(replica, old, new)

    return listener
