"""The router: the public face of routing (its parts live in :mod:`inference_core.routing`).

:class:`Router` owns the pooled ``httpx.AsyncClient``, the plugins' lifecycle hooks, the health
monitor, the model catalog and a circuit breaker per backend replica.  A request goes:

1. :meth:`Router.chat` / :meth:`~Router.complete` / :meth:`~Router.embed` validate it;
2. the :class:`~inference_core.routing.planner.Planner` turns the model it names into the
   ordered (backend, model) steps to try, from the
   :class:`~inference_core.routing.catalog.ModelCatalog` (a name nobody serves is a 404
   :class:`~inference_core.errors.ModelNotFound` after one catalog refresh);
3. the :class:`~inference_core.routing.executor.Executor` tries the steps (health order,
   retries, deadlines, breakers, rate-limit memory, fallback) and returns the answer, or for a
   stream a :class:`~inference_core.routing.stream.RoutedStream` whose first chunk it already
   received.

``docs/routing.md`` states the routing rule with examples; ``docs/resilience.md`` the retry and
fallback rules.  :class:`SyncRouter` runs a router on an event loop in a background thread, for
scripts and for synchronous code inside applications that already run a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from .errors import BadRequest, InferenceError
from .models import (
    BackendConfig,
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelInfo,
)
from .resilience.balancer import Replica, ReplicaSet
from .resilience.deadline import Watchdog
from .resilience.health_monitor import BackendStatus, HealthMonitor, StateChange
from .resilience.policy import RouterPolicy
from .routing.backend import BackendEntry, scrub
from .routing.catalog import ModelCatalog
from .routing.executor import Executor
from .routing.planner import Miss, Planner
from .routing.sync import SyncRouter, seed_health
from .routing.trace import RequestTrace

if TYPE_CHECKING:
    import httpx

    from .models import ChatChunk, ChatResponse, CompletionResponse

__all__ = ["RequestTrace", "Router", "StateChange", "SyncRouter", "seed_health"]

logger = logging.getLogger("inference_core.router")

StateListener = Callable[..., None]
"""``listener(backend: str, *, state: str, breaker: str, change: StateChange)``."""


class Router:
    """Route requests over the configured backends. See the module docstring.

    Build it with :meth:`from_env` (or :meth:`from_settings`); ``Router(settings, plugins)``
    takes any object with ``chain``, ``policy``, ``health_check_interval``,
    ``health_check_timeout`` and ``backend(name)`` (optionally ``enable_fallback``,
    ``strict_models``, ``model_fallbacks``, ``models_refresh``), and any object with
    ``backends`` (name -> hook callers) and ``reports``.  ``clock``, ``sleep`` and ``rand``
    are injectable for tests.
    """

    def __init__(
        self,
        settings: Any,
        plugins: Any,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.plugins = plugins
        self.policy: RouterPolicy = getattr(settings, "policy", None) or RouterPolicy()
        self._transport = transport
        self._clock = clock
        self._http: httpx.AsyncClient | None = None
        self._listeners: list[StateListener] = []
        self._start_lock: asyncio.Lock | None = None
        self._started = False
        self._closed = False
        self._drained: asyncio.Event | None = None
        self.in_flight = 0
        """Requests being served right now (a stream counts until it ends or is closed)."""
        p = self.policy
        shortest = min(p.first_token_timeout, p.idle_timeout, p.request_deadline)
        self.monitor = HealthMonitor(
            interval=float(getattr(settings, "health_check_interval", 60.0)),
            timeout=float(getattr(settings, "health_check_timeout", 5.0)),
            emit=self._emit,
        )
        self.monitor.on_checked = self._checked
        self._watchdog = Watchdog(
            tick=max(0.001, min(0.1, shortest / 20)),
            on_slow=self.monitor.poke,
            on_tick=self._tick,
        )
        load_errors = {
            r.name: r.error for r in getattr(plugins, "reports", ()) if getattr(r, "error", None)
        }
        loaded = getattr(plugins, "backends", {})
        self._backends: dict[str, BackendEntry] = {}
        for name in settings.chain:
            if name in self._backends:
                continue
            hooks = loaded.get(name)
            config: BackendConfig | None = None
            error: str | None = None
            try:
                config = settings.backend(name)
            except InferenceError as exc:
                error = exc.message
            backend = BackendEntry(name, hooks, config)
            if hooks is None:
                error = error or load_errors.get(name) or "the backend's plugin did not load"
            backend.load_error = error
            self._configure(backend, backend.config)
            self._backends[name] = backend
        self._chain: list[BackendEntry] = list(self._backends.values())
        self._live: list[BackendEntry] = [b for b in self._chain if b.usable]
        refresh = float(getattr(settings, "models_refresh", 10.0) or 10.0)
        self.catalog = ModelCatalog(
            self._live,
            self._list_backend,
            timeout=self.monitor.timeout,
            refresh_gap=refresh,
            clock=clock,
        )
        self.planner = Planner(
            self.catalog,
            self._live,
            self._backends,
            fallbacks=getattr(settings, "model_fallbacks", None) or {},
            enable_fallback=bool(getattr(settings, "enable_fallback", True)),
            strict=bool(getattr(settings, "strict_models", False)),
        )
        self.executor = Executor(
            policy=self.policy,
            monitor=self.monitor,
            watchdog=self._watchdog,
            catalog=self.catalog,
            emit=self._emit,
            http=lambda: self._http,
            done=self._done,
            clock=clock,
            sleep=sleep,
            rand=rand,
        )

    # ------------------------------------------------------------------------ construction

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        env_file: str | None = ".env",
        transport: httpx.AsyncBaseTransport | None = None,
        extra_plugins: Mapping[str, object] | None = None,
    ) -> Router:
        """Read the settings from the environment (and ``env_file``) and load the plugins."""
        from .settings import Settings

        settings = Settings.from_env(env, env_file=env_file)
        return cls.from_settings(settings, transport=transport, extra_plugins=extra_plugins)

    @classmethod
    def from_settings(
        cls,
        settings: Any,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        extra_plugins: Mapping[str, object] | None = None,
    ) -> Router:
        """Load the plugins ``settings.chain`` names and build a router over them."""
        from .plugins import load_backends

        chain = list(settings.chain)
        plugin_for = getattr(settings, "plugin_for", None)
        plugin_names = {}
        if callable(plugin_for):
            plugin_names = {n: plugin_for(n) for n in chain if plugin_for(n) != n}
        plugins = load_backends(
            chain,
            allow=getattr(settings, "plugins_allow", None),
            trace=bool(getattr(settings, "trace_plugins", False)),
            extra_plugins=extra_plugins,
            plugin_names=plugin_names or None,
        )
        return cls(settings, plugins, transport=transport)

    def _configure(self, backend: BackendEntry, config: BackendConfig) -> None:
        backend.config = config
        raw = config.options.get("context_length")
        try:
            backend.context_length = int(str(raw)) if raw is not None else None
        except ValueError:
            backend.context_length = None
        name = backend.name

        def on_breaker(replica: Replica, old: str, new: str) -> None:
            self._breaker_changed(name, replica, old, new)

        backend.replicas = ReplicaSet(
            config, self.policy, clock=self._clock, on_breaker_change=on_breaker
        )
        if backend.usable:
            health = backend.callers.get("health")

            def probe(cfg: BackendConfig) -> Any:
                if health is None:
                    return None
                return health(config=cfg, http=self._http)

            backend.status = self.monitor.add(name, probe, backend.replicas)
        else:
            backend.status = BackendStatus(state="down", detail=backend.load_error)

    # --------------------------------------------------------------------------- lifecycle

    @property
    def http(self) -> httpx.AsyncClient | None:
        """The pooled client (None before :meth:`start`)."""
        return self._http

    async def start(self) -> None:
        """Create the pooled client, run each backend's ``startup`` hook, start health checks
        (each check of a ready backend also refreshes its models in the catalog).

        A ``startup`` that raises marks that backend failed (``load_error``); the others go on.
        """
        if self._started:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._started:
                return
            from .http.client import create_client

            connect = max((b.config.connect_timeout for b in self._chain), default=5.0)
            self._http = create_client(connect_timeout=connect, transport=self._transport)
            await asyncio.gather(*(self._startup(b) for b in self._live))
            self._live = [b for b in self._chain if b.usable]
            self.catalog.reopen()
            self.catalog.set_backends(self._live)
            self.planner.set_chain(self._live)
            # what each backend serves, before the first request is routed (bounded by the
            # health-check timeout; a backend that cannot answer yet is learnt later)
            await self.catalog.refresh_all()
            self._watchdog.start()
            self.monitor.start()
            self._closed = False
            self._started = True

    async def _startup(self, backend: BackendEntry) -> None:
        hooks = backend.hooks
        starter = getattr(hooks, "startup", None)
        if starter is None:
            return
        try:
            coro = starter(config=backend.config, http=self._http)
            result = await coro if coro is not None else None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            message = exc.message if isinstance(exc, InferenceError) else type(exc).__name__
            backend.load_error = scrub(f"startup failed: {message}", backend.config)
            logger.error("backend %s: %s", backend.name, backend.load_error)
            logger.debug("startup hook of %s raised", backend.name, exc_info=True)
            self.monitor.remove(backend.name)
            backend.status = BackendStatus(state="down", detail=backend.load_error)
            return
        backend.started = True
        if isinstance(result, BackendConfig):
            self._configure(backend, result)

    async def aclose(self, drain_timeout: float | None = 30.0) -> None:
        """Wait up to ``drain_timeout`` s for in-flight requests, stop health checks and
        catalog refreshes, call the ``shutdown`` hooks and close the pool."""
        if not self._started:
            return
        self._closed = True
        if self.in_flight and drain_timeout:
            self._drained = asyncio.Event()
            try:
                async with asyncio.timeout(drain_timeout):
                    await self._drained.wait()
            except TimeoutError:
                logger.warning(
                    "shutting down with %d request(s) still in flight after %gs",
                    self.in_flight,
                    drain_timeout,
                )
            self._drained = None
        await self.monitor.stop()
        await self.catalog.aclose()
        await self._watchdog.stop()
        for backend in self._chain:
            if not backend.started:
                continue
            stopper = getattr(backend.hooks, "shutdown", None)
            try:
                coro = stopper(config=backend.config) if stopper is not None else None
                if coro is not None:
                    await coro
            except Exception:
                logger.exception("shutdown hook of %s raised", backend.name)
            backend.started = False
        if self._http is not None:
            await self._http.aclose()
        self._http = None
        self._started = False

    async def __aenter__(self) -> Router:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _done(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self._drained is not None:
            self._drained.set()

    # ---------------------------------------------------------------------------- requests

    async def chat(
        self, request: ChatRequest | Mapping[str, Any], *, trace: RequestTrace | None = None
    ) -> ChatResponse | AsyncIterator[ChatChunk]:
        """A chat completion: a ``ChatResponse``, or (``stream``) an async iterator of chunks
        whose first chunk was already received inside the fallback loop."""
        if type(request) is not ChatRequest:
            request = _coerce(ChatRequest, request)
        return await self._dispatch("chat", request, trace, request.stream)

    async def complete(
        self, request: CompletionRequest | Mapping[str, Any], *, trace: RequestTrace | None = None
    ) -> CompletionResponse | AsyncIterator[CompletionResponse]:
        """A legacy text completion; same contract as :meth:`chat`."""
        if type(request) is not CompletionRequest:
            request = _coerce(CompletionRequest, request)
        return await self._dispatch("complete", request, trace, request.stream)

    async def embed(
        self, request: EmbeddingRequest | Mapping[str, Any], *, trace: RequestTrace | None = None
    ) -> EmbeddingResponse:
        """Embeddings, one per input, in input order."""
        if type(request) is not EmbeddingRequest:
            request = _coerce(EmbeddingRequest, request)
        return await self._dispatch("embed", request, trace, False)

    async def _dispatch(self, op: str, request: Any, trace: RequestTrace | None, stream: bool):
        if not self._started:
            await self.start()
        if trace is None:
            trace = RequestTrace()
        steps = self.planner.plan(request.model)
        if type(steps) is Miss:
            steps = await self._after_miss(request.model)
        self.in_flight += 1
        try:
            result = await self.executor.run(op, request, trace, stream, steps, self._chain)
        except BaseException:
            self._done()
            raise
        if not stream:
            self._done()
        return result

    async def _after_miss(self, requested: str) -> Any:
        """Nobody serves ``requested``: refresh the catalog (rate limited) and plan again."""
        await self.catalog.refresh_on_miss()
        steps = self.planner.plan(requested)
        if type(steps) is Miss:
            raise self.catalog.not_found(steps.name, steps.backend)
        return steps

    # ------------------------------------------------------------------ health and models

    def add_state_listener(self, listener: StateListener) -> None:
        """Call ``listener(backend, state=..., breaker=..., change=...)`` on every change.

        ``state`` is the backend's health state (ready / loading / down / unknown) and
        ``breaker`` its breaker state (closed / open / half_open), both as they are after the
        change; ``change`` is the :class:`StateChange` (``kind`` "health", "breaker" or
        "rate_limit", old, new, detail, replica URL for a replica-level change).  Called on
        the router's event loop; keep it quick; an exception is logged and ignored.
        """
        self._listeners.append(listener)

    def remove_state_listener(self, listener: StateListener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def _emit(self, change: StateChange) -> None:
        backend = self._backends.get(change.backend)
        if (
            change.kind == "health"
            and change.new == "ready"
            and change.old in ("down", "loading")
            and backend is not None
            and backend.usable
        ):
            self.catalog.schedule(backend)  # it came back: learn what it serves now
        if not self._listeners:
            return
        state = backend.status.state if backend is not None else None
        breaker = backend.replicas.breaker_state() if backend is not None else None
        for listener in list(self._listeners):
            try:
                listener(change.backend, state=state, breaker=breaker, change=change)
            except Exception:
                logger.exception("a state listener raised")

    def _checked(self, name: str, status: BackendStatus) -> None:
        """After each health check: keep the catalog of a serving backend fresh."""
        backend = self._backends.get(name)
        if backend is None or not backend.usable or status.state not in ("ready", "unknown"):
            return
        listed_at = self.catalog.listed_at(backend)
        if listed_at is None or self._clock() - listed_at >= self.catalog.refresh_gap:
            self.catalog.schedule(backend)

    def _breaker_changed(self, name: str, replica: Replica, old: str, new: str) -> None:
        backend = self._backends.get(name)
        multi = backend is not None and not backend.replicas.single
        where = f"{name} replica {replica.display_url}" if multi else name
        level = logging.WARNING if new == "open" else logging.INFO
        logger.log(level, "backend %s: breaker %s -> %s", where, old, new)
        self._emit(
            StateChange(name, "breaker", old, new, None, replica.display_url if multi else None)
        )

    def _tick(self) -> None:
        """Called by the watchdog every tick: announce the rate limits that ran out."""
        if self.executor.limited:
            self.executor.expire_rate_limits()

    async def _list_backend(self, backend: BackendEntry) -> list[ModelInfo] | None:
        """The catalog's lister: ``backend``'s ``list_models`` hook (None: it has none)."""
        caller = backend.callers.get("list_models")
        if caller is None or self._http is None:
            return None
        coro = caller(config=backend.replicas.pick().config, http=self._http)
        if coro is None:
            return None
        models = await coro
        return list(models) if models is not None else None

    async def health(self, *, refresh: bool = False) -> dict[str, dict[str, Any]]:
        """Per backend (chain order): role, state, detail, last_check (ISO), latency_ms,
        models, load_error, breaker, cooldown_remaining (s), rate_limited (s left of a 429's
        ``Retry-After``: while > 0 the backend is tried after the others), rate_limits (429s
        seen), replicas (each with its own rate_limited), and the catalog's view:
        models_known, accepts_any_model, models_error.

        ``refresh=True`` probes every backend now instead of reporting the last check.
        """
        if refresh:
            if not self._started:
                await self.start()
            await self.monitor.check_all()
        if self.executor.limited:
            self.executor.expire_rate_limits()
        listed = self._models_by_backend()
        out: dict[str, dict[str, Any]] = {}
        for i, b in enumerate(self._chain):
            status = b.status
            out[b.name] = {
                "role": "primary" if i == 0 else "fallback",
                "state": status.state,
                "detail": status.detail,
                "last_check": status.last_check_iso,
                "latency_ms": status.latency_ms,
                "models": list(status.models) or listed.get(b.name, []),
                "load_error": b.load_error,
                "breaker": b.replicas.breaker_state(),
                "cooldown_remaining": round(b.replicas.cooldown_remaining(), 3),
                "rate_limited": round(b.replicas.rate_limit_remaining(), 3),
                "rate_limits": sum(r.rate_limit.count for r in b.replicas.replicas),
                "replicas": [r.snapshot() for r in b.replicas.replicas if r.url],
                **(self.catalog.report(b) if b.usable else {}),
            }
        return out

    def _models_by_backend(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for item in self.catalog.models():
            out.setdefault(item["backend"], []).append(item["id"])
        return out

    def ready(self) -> bool:
        """True when at least one backend is loaded, not marked down, and takes requests."""
        return any(
            b.status.state in ("ready", "unknown") and b.replicas.breaker_state() != "open"
            for b in self._live
        )

    async def list_models(self) -> list[ModelInfo]:
        """Every model of every usable backend, once per backend that serves it (chain
        order), with ``owned_by`` / ``backend`` naming it, its ``aliases`` there and its
        ``context_length`` when known.  Listings older than the catalog's refresh gap are
        refreshed first (bounded by the health-check timeout)."""
        if not self._started:
            await self.start()
        await self.catalog.refresh_all(max_age=self.catalog.refresh_gap)
        return [ModelInfo.model_validate(item) for item in self.catalog.models()]

    async def find_model(self, model_id: str) -> list[ModelInfo]:
        """The entries of :meth:`list_models` for ``model_id`` (an id, an alias, an implicit
        ``:latest`` form, or ``backend/model``); empty when nobody serves it."""
        models = await self.list_models()
        head, sep, rest = model_id.partition("/")
        backend = self._backends.get(head) if sep else None
        if backend is not None:
            found = self.catalog.lookup(backend, rest) if backend.usable else None
            return [m for m in models if m.backend == head and m.id == found]
        servers = {(b.name, mid) for b, mid in self.catalog.servers(model_id)}
        return [m for m in models if (m.backend, m.id) in servers]


def _coerce(model: Any, request: Any) -> Any:
    if isinstance(request, model):
        return request
    if isinstance(request, Mapping):
        try:
            return model.model_validate(request)
        except ValidationError as exc:
            first = exc.errors()[0] if exc.errors() else {}
            loc = ".".join(str(p) for p in first.get("loc", ()))
            raise BadRequest(
                f"invalid request: {loc or 'body'}: {first.get('msg', 'invalid')}",
                param=loc or None,
            ) from None
    raise TypeError(f"expected {model.__name__} or a dict, got {type(request).__name__}")
