"""Keys, limits, usage accounting and shared state of one gateway app: :class:`Teams`.

Built by the pipeline from :class:`~inference_core.state.StateSettings` (``INFERENCE_REDIS_URL``,
``INFERENCE_KEYS_FILE``, ``INFERENCE_ADMIN_KEYS``, ...) and the legacy
``INFERENCE_GATEWAY_API_KEYS``.  ``start()`` (app start-up) loads the key store, starts its
reload loop and, with Redis, shares the router's breakers and 429 memory
(:mod:`inference_core.state.shared`); ``aclose()`` stops them.

Per request the pipeline calls ``teams.access.identify`` (401), ``teams.admit`` (403/429/503)
and, when the request ends, ``teams.settle`` (tokens counted per key, model and backend).
Streams ask the backend for usage (``stream_options.include_usage``) whatever the client
asked: :func:`ask_usage` sets it on the routed request and returns what to restore, so the
client's own wish decides whether the usage chunk reaches it.

The admin routes (``/v1/admin/usage``, ``/v1/admin/keys``) need one of ``INFERENCE_ADMIN_KEYS``.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs

import orjson

from ..state import PERIODS, StateSettings, StateUnavailable, create_state
from ..state.base import period_bounds
from .errors import GatewayError
from .keys import KeyRing, open_store
from .limits import Access, Grant

__all__ = ["Teams", "ask_usage"]

log = logging.getLogger("inference_core.gateway")
_USAGE_ON = {"include_usage": True}


def ask_usage(routed: Any) -> Any:
    """Make a streamed request ask the backend for usage; returns the client's own
    ``stream_options`` to put back (``False`` when nothing was changed)."""
    if not getattr(routed, "stream", False):
        return False
    opts = getattr(routed, "stream_options", False)
    if opts is False:
        return False  # a request type without stream_options
    if opts and opts.get("include_usage"):
        return False
    routed.stream_options = {**opts, "include_usage": True} if opts else _USAGE_ON
    return opts


class Teams:
    """See the module docstring."""

    def __init__(
        self,
        router: Any,
        legacy_keys: Any = (),
        metrics: Any = None,
        settings: StateSettings | None = None,
    ) -> None:
        self.settings = settings or StateSettings.from_env()
        s = self.settings
        client = None
        if s.redis_url:
            from ..state.redis import redis_client

            client = redis_client(s.redis_url, s.redis_timeout)
        self.state = create_state(s, client)
        self.ring = KeyRing(legacy_keys, open_store(s, client), s.keys_refresh)
        self.access = Access(self.ring, self.state, admin_keys=s.admin_keys, metrics=metrics)
        self.router = router
        self.metrics = metrics
        self._shared: Any = None
        self._grants: dict[int, Grant] = {}

    async def start(self) -> None:
        try:
            await self.ring.reload()
        except Exception as exc:
            from ..errors import ConfigError

            if isinstance(exc, ConfigError):
                raise
            log.warning("the key store could not be read at start-up: %s", type(exc).__name__)
        self.ring.start()
        from ..state.shared import share_resilience

        self._shared = share_resilience(self.state, self.router, self.settings.sync_interval)

    async def aclose(self) -> None:
        await self.ring.aclose()
        if self._shared is not None:
            await self._shared.aclose()
        await self.state.aclose()

    def response_store(self, ttl: float = 3600.0) -> Any:
        """The shared Responses store when the state is shared (Redis), else None (the
        protocol keeps its bounded in-process store)."""
        if not getattr(self.state, "shared", False):
            return None
        from ..state.responses import SharedResponseStore

        return SharedResponseStore(self.state, ttl)

    # ---------------------------------------------------------------------- per request

    async def admit(self, record: Any, model: str | None, trace: Any, ticket: str) -> None:
        """Check the key's model and limits; remember the grant for :meth:`settle`."""
        grant = await self.access.admit(record, model, ticket)
        self._grants[id(trace)] = grant

    def settle(self, trace: Any, status: int) -> None:
        """The request traced by ``trace`` ended: count it (no-op when it was not admitted)."""
        grant = self._grants.pop(id(trace), None)
        if grant is None:
            return
        self.access.settle(
            grant, getattr(trace, "backend", None), getattr(trace, "model", None), trace.usage
        )
        if self.metrics is not None:
            self.metrics.key_request(grant.name, status)

    # -------------------------------------------------------------------------- admin

    def check_admin(self, auth: bytes | None, x_api_key: bytes | None) -> None:
        if not self.access.is_admin(auth, x_api_key):
            hint = "" if self.settings.admin_keys else " (none is configured: INFERENCE_ADMIN_KEYS)"
            raise GatewayError(
                401, f"This route needs an admin key{hint}.", code="invalid_admin_key"
            )

    async def usage_body(self, query: bytes) -> tuple[int, bytes]:
        """``GET /v1/admin/usage?period=day|week|month[&key=NAME][&date=YYYY-MM-DD]``."""
        args = {k: v[-1] for k, v in parse_qs(query.decode("latin-1")).items()}
        period = args.get("period", "day")
        if period not in PERIODS:
            raise GatewayError(400, "Invalid value for 'period': use day, week or month.",
                               param="period", code="invalid_value")  # fmt: skip
        at = None
        if "date" in args:
            from .keys import KeyStoreError, parse_expiry

            try:
                at = parse_expiry(args["date"]) - 1
            except KeyStoreError:
                raise GatewayError(400, "Invalid value for 'date': use YYYY-MM-DD.",
                                   param="date", code="invalid_value") from None  # fmt: skip
        try:
            data = await self.state.usage(args.get("key"), period, at)  # type: ignore[arg-type]
        except StateUnavailable as exc:
            raise GatewayError(503, str(exc), type="service_unavailable",
                               code="state_unavailable") from None  # fmt: skip
        _ident, start, end = period_bounds(period, at)  # type: ignore[arg-type]
        data["start"] = _iso(start)
        data["end"] = _iso(end)
        return 200, orjson.dumps(data)

    async def keys_body(self) -> tuple[int, bytes]:
        """``GET /v1/admin/keys``: every key (no secret, no hash) with its budget used."""
        records = {r.name: r for r in self.ring.by_hash.values()}
        out = []
        for name in sorted(records):
            record = records[name]
            row = record.public()
            if record.budget:
                try:
                    row["budget_used"] = await self.state.budget_used(name, record.limits)
                except Exception:
                    row["budget_used"] = None
            out.append(row)
        return 200, orjson.dumps({"object": "list", "data": out})


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
