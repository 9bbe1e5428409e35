"""Active health checks: one background task per backend, plus on-demand probes.

Every ``interval`` seconds each backend's ``health`` hook is called for each of its replicas,
bounded by ``timeout`` (``asyncio.timeout``).  A hook that raises, times out or returns
something other than a :class:`~inference_core.models.Health` counts as ``down``; the task
itself never dies of it.  A passive failure (a real request that found the backend unavailable)
calls :meth:`HealthMonitor.poke`, which probes that backend at once (at most once per
``min_gap`` seconds), so a dead backend is marked down within ``interval + timeout``; the
router also pokes when a request has waited longer than ``timeout`` (a hung server) and when a
request succeeds on a backend marked down.  A backend that is down or loading is re-probed
every ``interval / 2``.

State changes are logged (one line each) and passed to ``emit`` as :class:`StateChange`
objects; the router fans them out to its listeners (metrics, the gateway).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from ..models import Health

if TYPE_CHECKING:
    from ..models import BackendConfig
    from .balancer import Replica, ReplicaSet

__all__ = ["BackendStatus", "HealthMonitor", "StateChange"]

logger = logging.getLogger("inference_core.health")

#: Best first: how replica states combine into the backend's state.
_RANK = {"ready": 0, "loading": 1, "unknown": 2, "down": 3}


@dataclass(frozen=True, slots=True)
class StateChange:
    """One transition, as given to ``Router.add_state_listener`` listeners.

    ``kind`` is ``"health"`` (active checks: ready / loading / down / unknown), ``"breaker"``
    (closed / open / half_open) or ``"rate_limit"`` (clear / limited: a 429 remembered until
    its ``Retry-After``; ``detail`` says for how long).  ``replica`` is the replica URL
    (credentials stripped) when the change concerns one replica of a multi-replica backend,
    else None.
    """

    backend: str
    kind: Literal["health", "breaker", "rate_limit"]
    old: str
    new: str
    detail: str | None = None
    replica: str | None = None


@dataclass(slots=True)
class BackendStatus:
    """What the last active check of one backend found."""

    state: str = "unknown"
    detail: str | None = None
    last_check: float | None = None  # wall-clock time.time()
    latency_ms: float | None = None
    models: list[str] = field(default_factory=list)

    @property
    def last_check_iso(self) -> str | None:
        if self.last_check is None:
            return None
        return datetime.fromtimestamp(self.last_check, UTC).isoformat(timespec="seconds")


ProbeFn = Callable[["BackendConfig"], Awaitable[Any] | None]


class _Target:
    __slots__ = ("event", "last_probe", "name", "probe", "replicas", "status", "task")

    def __init__(self, name: str, probe: ProbeFn, replicas: ReplicaSet) -> None:
        self.name = name
        self.probe = probe
        self.replicas = replicas
        self.status = BackendStatus()
        self.event = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.last_probe = float("-inf")


class HealthMonitor:
    """Probes backends; keeps their :class:`BackendStatus`; reports changes to ``emit``."""

    def __init__(
        self,
        *,
        interval: float,
        timeout: float,
        emit: Callable[[StateChange], None] | None = None,
        min_gap: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.timeout = timeout
        self.min_gap = min(1.0, interval / 4) if min_gap is None else min_gap
        self._emit = emit
        self._clock = clock
        self._targets: dict[str, _Target] = {}
        self.running = False
        self.on_checked: Callable[[str, BackendStatus], None] | None = None
        """Called after every check of a backend with its status (the router refreshes the
        model catalog of a ready backend there); keep it quick, never raise."""

    # ---------------------------------------------------------------------------- set-up

    def add(self, name: str, probe: ProbeFn, replicas: ReplicaSet) -> BackendStatus:
        """Watch backend ``name``: ``probe(config)`` calls its health hook (None: no hook)."""
        target = _Target(name, probe, replicas)
        self._targets[name] = target
        if self.running:
            target.task = asyncio.create_task(self._loop(target), name=f"health:{name}")
        return target.status

    def remove(self, name: str) -> None:
        """Stop watching ``name`` (its plugin failed to start)."""
        target = self._targets.pop(name, None)
        if target is not None and target.task is not None:
            target.task.cancel()

    def status(self, name: str) -> BackendStatus | None:
        target = self._targets.get(name)
        return target.status if target else None

    def start(self) -> None:
        """Start one background task per backend (the first probe runs at once)."""
        if self.running:
            return
        self.running = True
        for target in self._targets.values():
            target.task = asyncio.create_task(self._loop(target), name=f"health:{target.name}")

    async def stop(self) -> None:
        """Cancel the background tasks and wait for them to end."""
        self.running = False
        tasks = [t.task for t in self._targets.values() if t.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for target in self._targets.values():
            target.task = None

    def poke(self, name: str) -> None:
        """Ask for a probe of ``name`` now (a passive failure was seen). Cheap; never blocks."""
        target = self._targets.get(name)
        if target is not None and self.running:
            target.event.set()

    # ---------------------------------------------------------------------------- probing

    async def check(self, name: str) -> BackendStatus:
        """Probe every replica of ``name`` now and update its status. Never raises."""
        target = self._targets[name]
        target.last_probe = self._clock()
        replicas = target.replicas.replicas
        if len(replicas) == 1:
            results = [await self._probe_one(target, replicas[0])]
        else:
            results = list(await asyncio.gather(*(self._probe_one(target, r) for r in replicas)))
        self._update(target, results)
        if self.on_checked is not None:
            try:
                self.on_checked(name, target.status)
            except Exception:
                logger.exception("the on_checked callback raised")
        return target.status

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(name) for name in self._targets))

    async def _probe_one(self, target: _Target, replica: Replica) -> Health | None:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                awaitable = target.probe(replica.config)
                result = None if awaitable is None else await awaitable
        except TimeoutError:
            result = Health(state="down", detail=f"health check timed out after {self.timeout:g}s")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a hook must never raise; if it does, the backend is down
            logger.debug("health hook of %s raised", target.name, exc_info=True)
            result = Health(state="down", detail=f"health hook raised {type(exc).__name__}")
        if result is not None and not isinstance(result, Health):
            result = Health(
                state="down", detail=f"health hook returned {type(result).__name__}, not Health"
            )
        if result is not None and result.latency_ms is None:
            result = result.model_copy(
                update={"latency_ms": round((time.perf_counter() - started) * 1000, 2)}
            )
        if result is not None:
            load = (result.model_extra or {}).get("load")
            if isinstance(load, int | float) and not isinstance(load, bool):
                # what other clients (other gateways) have running there right now
                replica.external = max(0.0, float(load) - replica.outstanding)
        if len(target.replicas.replicas) > 1:
            new = result.state if result is not None else "unknown"
            old = replica.state
            replica.state = new
            replica.detail = result.detail if result is not None else None
            if old != new:
                self._changed(target.name, old, new, replica.detail, replica.display_url)
        elif result is not None:
            replica.state = result.state
            replica.detail = result.detail
        return result

    def _update(self, target: _Target, results: list[Health | None]) -> None:
        status = target.status
        old = status.state
        status.last_check = time.time()
        known = [h for h in results if h is not None]
        if not known:
            status.state = "unknown"
            status.detail = "the backend has no health hook; only real requests are watched"
            status.latency_ms = None
            status.models = []
        else:
            best = min(known, key=lambda h: _RANK.get(h.state, 3))
            status.state = best.state
            status.detail = best.detail
            status.latency_ms = best.latency_ms
            models: list[str] = []
            for h in known:
                if h.state == "ready":
                    models.extend(m for m in h.models if m not in models)
            status.models = models
        if status.state != old:
            self._changed(target.name, old, status.state, status.detail, None)

    def _changed(
        self, name: str, old: str, new: str, detail: str | None, replica: str | None
    ) -> None:
        where = f"{name} replica {replica}" if replica else name
        level = logging.WARNING if new == "down" else logging.INFO
        logger.log(
            level, "backend %s: %s -> %s%s", where, old, new, f" ({detail})" if detail else ""
        )
        if self._emit is not None:
            try:
                self._emit(StateChange(name, "health", old, new, detail, replica))
            except Exception:
                logger.exception("a state listener raised")

    async def _loop(self, target: _Target) -> None:
        event = target.event
        while True:
            try:
                await self.check(target.name)
            except asyncio.CancelledError:
                raise
            except Exception:  # pragma: no cover - check() handles hook errors itself
                logger.exception("health check of %s failed", target.name)
            # a backend that is down or loading is re-probed twice as often, so that its
            # recovery is seen well within one interval
            wait = self.interval
            if target.status.state in ("down", "loading"):
                wait = self.interval / 2
            try:
                async with asyncio.timeout(wait):
                    await event.wait()
                # poked by a passive failure: probe again, but not more often than min_gap
                gap = target.last_probe + self.min_gap - self._clock()
                if gap > 0:
                    await asyncio.sleep(gap)
            except TimeoutError:
                pass
            event.clear()
