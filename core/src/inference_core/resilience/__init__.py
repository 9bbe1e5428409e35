"""Resilience mechanisms used by the router.

* :mod:`.policy`: :class:`RouterPolicy` (retries, backoff, deadlines, breaker, context fallback);
* :mod:`.retry`: backoff with full jitter, ``Retry-After`` handling, :class:`Deadline`;
* :mod:`.breaker`: :class:`CircuitBreaker` (closed / open / half-open with one trial);
* :mod:`.balancer`: replica sets balanced by least outstanding requests;
* :mod:`.health_monitor`: background health checks and :class:`StateChange` events.
"""

from __future__ import annotations

from .balancer import Replica, ReplicaSet, strip_credentials
from .breaker import BreakerState, CircuitBreaker
from .health_monitor import BackendStatus, HealthMonitor, StateChange
from .policy import RouterPolicy
from .retry import Deadline, backoff_delay, retry_delay

__all__ = [
    "BackendStatus",
    "BreakerState",
    "CircuitBreaker",
    "Deadline",
    "HealthMonitor",
    "Replica",
    "ReplicaSet",
    "RouterPolicy",
    "StateChange",
    "backoff_delay",
    "retry_delay",
    "strip_credentials",
]
