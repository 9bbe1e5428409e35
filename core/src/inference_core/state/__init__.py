"""Keys' limits, usage and the state shared across workers and replicas.

``create_state(settings)`` picks the backend: :class:`~.redis.RedisState` when
``INFERENCE_REDIS_URL`` is set (every worker and gateway replica on that Redis shares rate-limit
counters, budgets, usage, 429 memory, breaker state and the Responses store), else
:class:`~.memory.MemoryState` (per process, as before).  Nothing heavy is imported until a
backend is built; the ``redis`` package only with a URL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import PERIODS, LimitExceeded, Limits, Period, StateUnavailable
from .settings import STATE_VARIABLES, StateSettings

if TYPE_CHECKING:
    from .memory import MemoryState
    from .redis import RedisState

__all__ = [
    "PERIODS",
    "STATE_VARIABLES",
    "LimitExceeded",
    "Limits",
    "Period",
    "StateSettings",
    "StateUnavailable",
    "create_state",
]


def create_state(settings: StateSettings, client: Any = None) -> MemoryState | RedisState:
    """The state backend ``settings`` asks for (``client``: an existing redis.asyncio client)."""
    if settings.redis_url is None and client is None:
        from .memory import MemoryState

        return MemoryState()
    from .redis import RedisState, redis_client

    if client is None:
        assert settings.redis_url is not None
        client = redis_client(settings.redis_url, settings.redis_timeout)
    return RedisState(
        client, prefix=settings.redis_prefix, fail=settings.redis_fail, lease=settings.lease
    )
