"""Settings of keys, limits and shared state: the ``INFERENCE_REDIS_*``, ``INFERENCE_KEYS_*``,
``INFERENCE_ADMIN_KEYS``, ``INFERENCE_STATE_SYNC_INTERVAL`` and ``INFERENCE_LIMITS_LEASE``
variables (defaults in brackets; ``docs/teams.md`` has the full story):

* ``INFERENCE_REDIS_URL``: ``redis://`` / ``rediss://`` / ``unix://`` URL; when set, the key
  store, rate-limit counters, budgets, usage, 429 memory, breaker state and the Responses store
  live in Redis and are shared by every worker and replica.  Unset: all in-process.
* ``INFERENCE_REDIS_PREFIX`` [``inference:``]: prefix of every Redis key (one Redis, several
  deployments).
* ``INFERENCE_REDIS_FAIL`` [``open``]: what a request meets while Redis is unreachable: ``open``
  serves it without limits or accounting (logged), ``closed`` answers 503 ``state_unavailable``.
* ``INFERENCE_REDIS_TIMEOUT`` [0.5]: seconds a Redis call may take before it counts as down.
* ``INFERENCE_KEYS_FILE``: the TOML key store when Redis is not configured.
* ``INFERENCE_KEYS_REFRESH`` [5]: seconds between reloads of the key store (revocations and
  changes are seen within this time; a new key is looked up at once).
* ``INFERENCE_ADMIN_KEYS``: comma list of admin secrets for ``/v1/admin/*``.
* ``INFERENCE_STATE_SYNC_INTERVAL`` [0.25]: seconds between reads of the shared breaker and
  429 state (how fast a replica learns what another one found out).
* ``INFERENCE_LIMITS_LEASE`` [600]: seconds a parallel-request slot is held in Redis at most
  (the slot of a crashed process frees itself after this).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from .._values import config_error, parse_number

__all__ = ["STATE_VARIABLES", "StateSettings"]

STATE_VARIABLES = (
    "INFERENCE_REDIS_URL",
    "INFERENCE_REDIS_PREFIX",
    "INFERENCE_REDIS_FAIL",
    "INFERENCE_REDIS_TIMEOUT",
    "INFERENCE_KEYS_FILE",
    "INFERENCE_KEYS_REFRESH",
    "INFERENCE_ADMIN_KEYS",
    "INFERENCE_STATE_SYNC_INTERVAL",
    "INFERENCE_LIMITS_LEASE",
)
_SCHEMES = ("redis://", "rediss://", "unix://")


@dataclass(frozen=True)
class StateSettings:
    """Where keys and shared state live; see the module docstring for each variable."""

    redis_url: str | None = None
    redis_prefix: str = "inference:"
    redis_fail: Literal["open", "closed"] = "open"
    redis_timeout: float = 0.5
    keys_file: str | None = None
    keys_refresh: float = 5.0
    admin_keys: tuple[str, ...] = ()
    sync_interval: float = 0.25
    lease: float = 600.0

    def __repr__(self) -> str:  # never print the admin secrets or a password in the URL
        return (
            f"StateSettings(redis={'on' if self.redis_url else 'off'}, "
            f"fail={self.redis_fail}, keys_file={self.keys_file!r}, "
            f"admin_keys={len(self.admin_keys)})"
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StateSettings:
        """Read the variables from ``env`` (default ``os.environ``); a bad value raises
        :class:`~inference_core.errors.ConfigError` naming the variable."""
        src = os.environ if env is None else env

        def get(name: str) -> str:
            return (src.get(name) or "").strip()

        url = get("INFERENCE_REDIS_URL") or None
        if url is not None and not url.startswith(_SCHEMES):
            raise config_error(
                "INFERENCE_REDIS_URL", "****", "not a Redis URL", "redis://host:port/db, "
                "rediss://... or unix:///path"
            )  # fmt: skip
        fail = (get("INFERENCE_REDIS_FAIL") or "open").lower()
        if fail not in ("open", "closed"):
            raise config_error("INFERENCE_REDIS_FAIL", fail, "unknown mode", "open, closed")

        def seconds(name: str, default: float) -> float:
            value = get(name)
            if not value:
                return default
            return parse_number(name, value, minimum=0, exclusive=True, unit=" (seconds)")

        admin = tuple(k.strip() for k in get("INFERENCE_ADMIN_KEYS").split(",") if k.strip())
        return cls(
            redis_url=url,
            redis_prefix=get("INFERENCE_REDIS_PREFIX") or "inference:",
            redis_fail=fail,  # type: ignore[arg-type]
            redis_timeout=seconds("INFERENCE_REDIS_TIMEOUT", 0.5),
            keys_file=get("INFERENCE_KEYS_FILE") or None,
            keys_refresh=seconds("INFERENCE_KEYS_REFRESH", 5.0),
            admin_keys=admin,
            sync_interval=seconds("INFERENCE_STATE_SYNC_INTERVAL", 0.25),
            lease=seconds("INFERENCE_LIMITS_LEASE", 600.0),
        )
