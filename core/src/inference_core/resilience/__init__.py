"""Resilience mechanisms used by the router.

* :mod:`.policy`: :class:`RouterPolicy` (retries, backoff, deadlines, breaker, context fallback);
* :mod:`.retry`: backoff with full jitter, ``Retry-After`` handling, :class:`Deadline`;
* :mod:`.breaker`: :class:`CircuitBreaker` (closed / open / half-open with one trial);
* :mod:`.balancer`: replica sets balanced by least outstanding requests;
* :mod:`.rate_limit`: :class:`RateLimit`, a 429 remembered per replica until its ``Retry-After``;
* :mod:`.health_monitor`: background health checks and :class:`StateChange` events.
"""

from __future__ import annotations

from .balancer import Replica, ReplicaSet, strip_credentials
from .breaker import BreakerState, CircuitBreaker
from .health_monitor import BackendStatus, HealthMonitor, StateChange
from .policy import RouterPolicy
from .rate_limit import RateLimit, rate_limit_seconds
from .retry import Deadline, backoff_delay, retry_delay

__all__ = [
    "BackendStatus",
    "BreakerState",
    "CircuitBreaker",
    "Deadline",
    "HealthMonitor",
    "RateLimit",
    "Replica",
    "ReplicaSet",
    "RouterPolicy",
    "StateChange",
    "backoff_delay",
    "rate_limit_seconds",
    "retry_delay",
    "strip_credentials",
]
