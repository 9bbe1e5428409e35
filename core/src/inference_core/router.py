"""The router: one request, a chain of backends, and the rules for moving along it.

:class:`Router` owns the pooled ``httpx.AsyncClient``, the plugins' lifecycle hooks, the health
monitor, a circuit breaker per backend replica and the only retry loop of the stack.  For every
request it walks the chain (provider first, then the fallback chain when enabled, healthy
backends before those marked down or with an open breaker, which are still tried last, never
refused):

* retryable failures (unavailable, timeout, 429) are retried on the same backend with
  exponential backoff and full jitter, ``Retry-After`` honoured up to ``retry_after_cap``
  (longer: fall back at once), at most ``max_retries`` times;
* a 429 is remembered per replica until its ``Retry-After`` (or a short doubling default):
  while another replica or backend that is healthy and not rate limited remains, the request
  moves on at once instead of waiting, and later requests try the rate-limited backend after
  the healthy ones (never refused) until the time passes; only a last option is waited for;
* failures whose class says ``fallback`` move on to the next backend; a plain bad request is
  answered as is (it would be wrong everywhere);
* one ``request_deadline`` bounds all of it; ``first_token_timeout`` bounds each try up to a
  non-stream answer or a stream's first chunk, ``idle_timeout`` the gaps between chunks;
* when every backend failed: :class:`~inference_core.errors.AllBackendsFailed` listing each
  attempt (or the last bad request, when nothing but bad requests came back).

Each backend gets ``config.model_for(request.model)`` through its plugin (the shared
``openai_compat`` helpers map it); the request object itself is never changed.

:class:`SyncRouter` runs a router on an event loop in a background thread, for scripts and for
synchronous code inside applications that already run a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from .errors import (
    AllBackendsFailed,
    Attempt,
    AuthenticationFailed,
    BackendTimeout,
    BackendUnavailable,
    BadRequest,
    CapabilityNotSupported,
    ContextLengthExceeded,
    InferenceError,
    ModelNotFound,
    RateLimited,
)
from .models import (
    BackendConfig,
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelInfo,
    Usage,
)
from .resilience.balancer import Replica, ReplicaSet, strip_credentials
from .resilience.deadline import Guard, Watchdog
from .resilience.health_monitor import BackendStatus, HealthMonitor, StateChange
from .resilience.policy import RouterPolicy
from .resilience.retry import retry_delay

if TYPE_CHECKING:
    import httpx

    from .models import ChatChunk, ChatResponse, CompletionResponse

__all__ = ["RequestTrace", "Router", "StateChange", "SyncRouter"]

logger = logging.getLogger("inference_core.router")

#: Failures that say a backend is sick: they count toward its breaker.
_SICK = (BackendUnavailable, BackendTimeout, AuthenticationFailed)

StateListener = Callable[..., None]
"""``listener(backend: str, *, state: str, breaker: str, change: StateChange)``."""


@dataclass
class RequestTrace:
    """What happened to one request; filled by the router, read by the gateway/CLI/metrics."""

    request_id: str = ""
    backend: str | None = None
    """The backend that served (None when none did)."""
    model: str | None = None
    """The model name that backend was asked for."""
    attempts: list[Attempt] = field(default_factory=list)
    """Every failed try, in order (the successful one is not listed)."""
    retries: int = 0
    fallbacks: int = 0
    usage: Usage | None = None
    """Token usage when known (a non-stream answer, or the stream's usage chunk)."""
    span: Any = None
    """A :class:`~inference_core.telemetry.RequestSpan` when traces are on (set by the caller
    that owns the request); the router reports each attempt to it."""


class _Backend:
    """The router's view of one chain entry."""

    __slots__ = (
        "callers",
        "config",
        "context_length",
        "hooks",
        "load_error",
        "name",
        "replicas",
        "started",
        "status",
    )

    def __init__(self, name: str, hooks: Any, config: BackendConfig | None) -> None:
        self.name = name
        self.hooks = hooks
        self.load_error: str | None = None
        self.started = False
        self.status = BackendStatus()
        self.callers: dict[str, Any] = {}
        if hooks is not None:
            for op in ("chat", "complete", "embed", "list_models", "health"):
                self.callers[op] = getattr(hooks, op, None)
        self.config = config or BackendConfig(name=name)
        self.context_length: int | None = None
        self.replicas: ReplicaSet  # set by Router._configure

    @property
    def usable(self) -> bool:
        return self.load_error is None and self.hooks is not None


class Router:
    """Route requests over the configured chain of backends. See the module docstring.

    Build it with :meth:`from_env` (or :meth:`from_settings`); ``Router(settings, plugins)``
    takes any object with ``chain``, ``policy``, ``health_check_interval``,
    ``health_check_timeout`` and ``backend(name)``, and any object with ``backends`` (name ->
    hook callers) and ``reports``.  ``clock``, ``sleep`` and ``rand`` are injectable for tests.
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
        self._sleep = sleep
        self._rand = rand
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
        # a request kept waiting longer than a health check may take triggers a probe
        self._slow_after = self.monitor.timeout
        self._watchdog = Watchdog(
            tick=max(0.001, min(0.1, shortest / 20)),
            on_slow=self.monitor.poke,
            on_tick=self._tick,
        )
        # replicas whose rate limit was announced to the listeners and has not ended yet
        self._limited: dict[Replica, _Backend] = {}
        load_errors = {
            r.name: r.error for r in getattr(plugins, "reports", ()) if getattr(r, "error", None)
        }
        loaded = getattr(plugins, "backends", {})
        self._backends: dict[str, _Backend] = {}
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
            backend = _Backend(name, hooks, config)
            if hooks is None:
                error = error or load_errors.get(name) or "the backend's plugin did not load"
            backend.load_error = error
            self._configure(backend, backend.config)
            self._backends[name] = backend
        self._chain: list[_Backend] = list(self._backends.values())
        self._live: list[_Backend] = [b for b in self._chain if b.usable]
        self._strict_models = bool(getattr(settings, "strict_models", False))
        self._model_order: dict[str, list[_Backend]] = {}
        self._index_models()

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

    def _configure(self, backend: _Backend, config: BackendConfig) -> None:
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
        """Create the pooled client, run each backend's ``startup`` hook, start health checks.

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
            self._index_models()
            self._watchdog.start()
            self.monitor.start()
            self._closed = False
            self._started = True

    async def _startup(self, backend: _Backend) -> None:
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
            backend.load_error = self._scrub(f"startup failed: {message}", backend.config)
            logger.error("backend %s: %s", backend.name, backend.load_error)
            logger.debug("startup hook of %s raised", backend.name, exc_info=True)
            self.monitor.remove(backend.name)
            backend.status = BackendStatus(state="down", detail=backend.load_error)
            return
        backend.started = True
        if isinstance(result, BackendConfig):
            self._configure(backend, result)

    async def aclose(self, drain_timeout: float | None = 30.0) -> None:
        """Wait up to ``drain_timeout`` s for in-flight requests, stop health checks, call the
        ``shutdown`` hooks and close the pool."""
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
        self.in_flight += 1
        try:
            result = await self._route(op, request, trace, stream)
        except BaseException:
            self._done()
            raise
        if not stream:
            self._done()
        return result

    def _index_models(self) -> None:
        """Model routing: which backends declare each model name (alias key or ``_MODEL``)."""
        index: dict[str, list[_Backend]] = {}
        for b in self._live:
            names = set(b.config.aliases)
            if b.config.model:
                names.add(b.config.model)
            for name in names:
                index.setdefault(name, []).append(b)
        # per declared model: its backends first (chain order), then the rest of the chain
        self._model_order = {
            name: backends + [b for b in self._live if b not in backends]
            for name, backends in index.items()
        }

    def _order(self, model: str | None = None) -> list[_Backend]:
        """The backends to try, in order.

        Backends that declare ``model`` come first, then the rest of the chain; within that
        order, healthy ones first, then healthy ones that are rate limited (a 429 whose
        ``Retry-After`` has not passed), then those marked down / loading / with an open
        breaker (still tried, last, never refused).
        """
        if self._limited:
            self._expire_rate_limits()
        good: list[_Backend] = []
        limited: list[_Backend] = []
        later: list[_Backend] = []
        for b in self._model_order.get(model, self._live) if model else self._live:
            state = b.status.state
            if (state == "ready" or state == "unknown") and b.replicas.available():
                if b.replicas.rate_limited():
                    limited.append(b)
                else:
                    good.append(b)
            else:
                later.append(b)
        if limited:
            good.extend(limited)
        if later:
            good.extend(later)
        return good

    @staticmethod
    def _free_after(order: list[_Backend], index: int, context_floor: int | None) -> bool:
        """True when a backend after ``order[index]`` would take the request now: healthy,
        its breaker closed (or half-open and free), some replica not rate limited."""
        for b in order[index + 1 :]:
            size = b.context_length
            if context_floor is not None and size is not None and size <= context_floor:
                continue  # would be skipped
            state = b.status.state
            if (state == "ready" or state == "unknown") and b.replicas.has_free():
                return True
        return False

    async def _route(self, op: str, request: Any, trace: RequestTrace, stream: bool) -> Any:
        policy = self.policy
        clock = self._clock
        deadline = clock() + policy.request_deadline
        attempts = trace.attempts
        errors: list[InferenceError] = []
        context_floor: int | None = None
        watchdog = self._watchdog
        guard = Guard()
        tried = 0
        model = request.model
        span = trace.span  # telemetry: None when traces are off
        if self._strict_models and model not in self._model_order and model != "default":
            known = ", ".join(sorted(self._model_order)) or "none"
            raise ModelNotFound(
                f"unknown model {model!r}; this gateway serves: {known}", model=model
            )
        order = self._order(model)
        last_index = len(order) - 1
        for index, backend in enumerate(order):
            size = backend.context_length
            if context_floor is not None and size is not None and size <= context_floor:
                logger.debug(
                    "skipping %s: context %d is not larger than %d",
                    backend.name,
                    size,
                    context_floor,
                )
                continue
            if tried:
                trace.fallbacks += 1
            tried += 1
            caller = backend.callers.get(op)
            retry = 0
            while True:
                sent_at = clock()
                remaining = deadline - sent_at
                if remaining <= 0:
                    if not attempts or attempts[-1].backend != backend.name:
                        attempts.append(
                            Attempt(
                                backend.name,
                                "timeout",
                                f"not tried: the request deadline of "
                                f"{policy.request_deadline:g}s ran out",
                            )
                        )
                    raise AllBackendsFailed(list(attempts), last=errors[-1] if errors else None)
                if request.model != model:  # a plugin changed the shared request: undo it
                    logger.warning("a plugin changed request.model; restoring %r", model)
                    request.model = model
                replica = backend.replicas.pick()
                breaker = replica.breaker
                trial = breaker.on_attempt()
                replica.outstanding += 1
                if span is not None:
                    span.attempt_start(
                        backend.name,
                        backend.replicas.replicas.index(replica),
                        replica.url,
                        replica.config.model_for(model),
                    )
                first_token = policy.first_token_timeout
                budget = remaining if remaining < first_token else first_token
                watchdog.arm(guard, budget, self._slow_after, backend.name)
                try:
                    result = await self._once(op, caller, backend, replica, request, stream)
                except asyncio.CancelledError:
                    replica.outstanding -= 1
                    if not guard.expired_by_us():
                        breaker.on_neutral(trial)
                        raise  # the client went away: propagate at once, no fallback
                    if budget < first_token:
                        what = f"the request deadline of {policy.request_deadline:g}s ran out"
                    else:
                        what = f"no answer within the first-token timeout of {first_token:g}s"
                    error: InferenceError = BackendTimeout(what, backend=backend.name)
                except InferenceError as exc:
                    replica.outstanding -= 1
                    error = exc
                except Exception as exc:
                    replica.outstanding -= 1
                    logger.debug("backend %s raised", backend.name, exc_info=True)
                    error = BackendUnavailable(
                        f"the plugin raised {type(exc).__name__}", backend=backend.name
                    )
                else:
                    breaker.on_success(trial)
                    if replica.rate_limit.streak:  # it answered: the rate limit is over
                        self._answered(backend, replica, sent_at)
                    if backend.status.state == "down":  # it answered: re-check it now
                        self.monitor.poke(backend.name)
                    trace.backend = backend.name
                    trace.model = replica.config.model_for(request.model)
                    if stream:
                        upstream, first = result
                        if span is not None:
                            span.attempt_ok(getattr(first, "model", None), streaming=True)
                        return _RoutedStream(
                            self, backend, replica, upstream, first, trace, policy.idle_timeout
                        )
                    replica.outstanding -= 1
                    usage = getattr(result, "usage", None)
                    if usage is not None:
                        trace.usage = usage
                    if span is not None:
                        span.attempt_ok(getattr(result, "model", None))
                    return result
                finally:
                    watchdog.disarm(guard)

                # ------------------------------------------------------------ a failure
                self._scrub_error(error, replica.config)
                self._passive(backend, replica, error, trial)
                if span is not None:
                    span.attempt_failed(error.kind, error.message, getattr(error, "status", None))
                errors.append(error)
                attempts.append(
                    Attempt(backend.name, error.kind, error.message, getattr(error, "status", None))
                )
                logger.info("backend %s failed: %s (%s)", backend.name, error.kind, error.message)
                if isinstance(error, ContextLengthExceeded):
                    if not policy.context_fallback:
                        raise error
                    if backend.context_length is not None:
                        context_floor = max(context_floor or 0, backend.context_length)
                    break
                if not error.fallback and not error.retryable:
                    raise error  # a plain bad request: wrong everywhere, answer with it
                if error.retryable and (backend.replicas.available() or index == last_index):
                    if (
                        type(error) is BackendTimeout
                        and backend.replicas.single
                        and index != last_index
                    ):
                        # waiting as long again on the same server doubles the latency:
                        # a timeout falls back at once while another backend remains
                        break
                    if isinstance(error, RateLimited):
                        if backend.replicas.has_free(replica):
                            # another replica is not rate limited: ask it now, no waiting
                            if retry < policy.max_retries:
                                retry += 1
                                trace.retries += 1
                                continue
                            break
                        if self._free_after(order, index, context_floor):
                            # another backend takes it now: no waiting for this one
                            break
                        # the last option: wait for its Retry-After (<= cap, within the
                        # deadline) and ask it again
                    delay = retry_delay(
                        error, retry + 1, policy, remaining=deadline - clock(), rand=self._rand
                    )
                    if delay is not None:
                        retry += 1
                        trace.retries += 1
                        if delay > 0:
                            await self._sleep(delay)
                        continue
                break
        if errors and all(isinstance(e, BadRequest | CapabilityNotSupported) for e in errors):
            raise errors[-1]  # nobody can serve this request as it is: a 4xx, not a 503
        if not attempts:
            for b in self._chain:
                if b.load_error:
                    attempts.append(Attempt(b.name, "plugin_load_error", b.load_error))
        raise AllBackendsFailed(list(attempts), last=errors[-1] if errors else None)

    async def _once(
        self,
        op: str,
        caller: Any,
        backend: _Backend,
        replica: Replica,
        request: Any,
        stream: bool,
    ) -> Any:
        coro = (
            caller(request=request, config=replica.config, http=self._http)
            if caller is not None
            else None
        )
        if coro is None:
            raise CapabilityNotSupported(
                f"the {backend.name} backend does not implement {op}", backend=backend.name
            )
        result = await coro
        if result is None:
            raise CapabilityNotSupported(
                f"the {backend.name} backend does not implement {op}", backend=backend.name
            )
        # look on the type: hasattr() on a pydantic instance goes through its slow __getattr__
        if not stream:
            if hasattr(type(result), "__anext__"):
                await _aclose(result)
                raise BackendUnavailable(
                    "the plugin returned a stream for a non-stream request", backend=backend.name
                )
            return result
        if not hasattr(type(result), "__anext__"):
            raise BackendUnavailable(
                f"the plugin returned {type(result).__name__} for a stream request",
                backend=backend.name,
            )
        try:
            first = await result.__anext__()
        except StopAsyncIteration:
            raise BackendUnavailable(
                "the stream ended before its first chunk", backend=backend.name
            ) from None
        except BaseException:
            await _aclose(result)
            raise
        return result, first

    def _passive(self, backend: _Backend, replica: Replica, error: BaseException, trial: bool):
        """Let a real request's outcome count toward the replica's breaker and health."""
        breaker = replica.breaker
        if isinstance(error, _SICK):
            breaker.on_failure(trial)
            if not isinstance(error, AuthenticationFailed):
                self.monitor.poke(backend.name)
        elif isinstance(error, RateLimited):
            self._rate_limited(backend, replica, error)
            breaker.on_neutral(trial)
        elif isinstance(error, BadRequest):
            breaker.on_success(trial)  # it answered: alive
        else:
            breaker.on_neutral(trial)

    # ------------------------------------------------------------------------- rate limits

    def _rate_limited(self, backend: _Backend, replica: Replica, error: RateLimited) -> None:
        """A 429: remember the replica as rate limited (announced when it starts)."""
        rl = replica.rate_limit
        seconds = rl.hit(error.retry_after, self.policy)
        if rl.announced or not rl.active():
            return  # already announced (now perhaps longer), or nothing to remember (0 s)
        rl.announced = True
        self._limited[replica] = backend
        said = "Retry-After" if error.retry_after is not None else "no Retry-After"
        self._rate_limit_change(
            backend, replica, "clear", "limited", f"429, rate limited for {seconds:g}s ({said})"
        )

    def _answered(self, backend: _Backend, replica: Replica, sent_at: float) -> None:
        """A request sent after the replica's last 429 was answered: its limit is over."""
        rl = replica.rate_limit
        if rl.answered(sent_at) and rl.announced:
            self._rate_limit_over(backend, replica, "answered again")

    def _expire_rate_limits(self) -> None:
        for replica, backend in list(self._limited.items()):
            if not replica.rate_limit.active():
                self._rate_limit_over(backend, replica, "Retry-After passed")

    def _tick(self) -> None:
        """Called by the watchdog every tick: announce the rate limits that ran out."""
        if self._limited:
            self._expire_rate_limits()

    def _rate_limit_over(self, backend: _Backend, replica: Replica, why: str) -> None:
        replica.rate_limit.announced = False
        self._limited.pop(replica, None)
        self._rate_limit_change(backend, replica, "limited", "clear", why)

    def _rate_limit_change(
        self, backend: _Backend, replica: Replica, old: str, new: str, detail: str
    ) -> None:
        multi = not backend.replicas.single
        where = f"{backend.name} replica {replica.display_url}" if multi else backend.name
        logger.info("backend %s: %s -> %s (%s)", where, old, new, detail)
        self._emit(
            StateChange(
                backend.name,
                "rate_limit",
                old,
                new,
                detail,
                replica.display_url if multi else None,
            )
        )

    # ----------------------------------------------------------------------------- secrets

    @staticmethod
    def _scrub(text: str, config: BackendConfig) -> str:
        secret = config.secret()
        if secret and secret in text:
            text = text.replace(secret, "****")
        for value in config.options.values():
            if hasattr(value, "get_secret_value"):
                s = value.get_secret_value()
                if s and s in text:
                    text = text.replace(s, "****")
        return strip_credentials(text)

    def _scrub_error(self, error: InferenceError, config: BackendConfig) -> None:
        clean = self._scrub(error.message, config)
        if clean != error.message:
            error.message = clean
            error.args = (clean,)

    # ------------------------------------------------------------------ health and models

    def add_state_listener(self, listener: StateListener) -> None:
        """Call ``listener(backend, state=..., breaker=..., change=...)`` on every change.

        ``state`` is the backend's health state (ready / loading / down / unknown) and
        ``breaker`` its breaker state (closed / open / half_open), both as they are after the
        change; ``change`` is the :class:`StateChange` (``kind`` "health" or "breaker", old,
        new, detail, replica URL for a replica-level change).  Called on the router's event
        loop; keep it quick; an exception is logged and ignored.
        """
        self._listeners.append(listener)

    def remove_state_listener(self, listener: StateListener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def _emit(self, change: StateChange) -> None:
        if not self._listeners:
            return
        backend = self._backends.get(change.backend)
        state = backend.status.state if backend is not None else None
        breaker = backend.replicas.breaker_state() if backend is not None else None
        for listener in list(self._listeners):
            try:
                listener(change.backend, state=state, breaker=breaker, change=change)
            except Exception:
                logger.exception("a state listener raised")

    def _breaker_changed(self, name: str, replica: Replica, old: str, new: str) -> None:
        backend = self._backends.get(name)
        multi = backend is not None and not backend.replicas.single
        where = f"{name} replica {replica.display_url}" if multi else name
        level = logging.WARNING if new == "open" else logging.INFO
        logger.log(level, "backend %s: breaker %s -> %s", where, old, new)
        self._emit(
            StateChange(name, "breaker", old, new, None, replica.display_url if multi else None)
        )

    async def health(self, *, refresh: bool = False) -> dict[str, dict[str, Any]]:
        """Per backend (chain order): state, detail, last_check (ISO), latency_ms, models,
        load_error, breaker, cooldown_remaining (s), rate_limited (s left of a 429's
        ``Retry-After``: while > 0 the backend is tried after the others), rate_limits (429s
        seen), replicas (each with its own rate_limited).

        ``refresh=True`` probes every backend now instead of reporting the last check.
        """
        if refresh:
            if not self._started:
                await self.start()
            await self.monitor.check_all()
        if self._limited:
            self._expire_rate_limits()
        out: dict[str, dict[str, Any]] = {}
        for i, b in enumerate(self._chain):
            status = b.status
            out[b.name] = {
                "role": "primary" if i == 0 else "fallback",
                "state": status.state,
                "detail": status.detail,
                "last_check": status.last_check_iso,
                "latency_ms": status.latency_ms,
                "models": list(status.models),
                "load_error": b.load_error,
                "breaker": b.replicas.breaker_state(),
                "cooldown_remaining": round(b.replicas.cooldown_remaining(), 3),
                "rate_limited": round(b.replicas.rate_limit_remaining(), 3),
                "rate_limits": sum(r.rate_limit.count for r in b.replicas.replicas),
                "replicas": [r.snapshot() for r in b.replicas.replicas if r.url],
            }
        return out

    def ready(self) -> bool:
        """True when at least one backend is loaded, not marked down, and takes requests."""
        return any(
            b.status.state in ("ready", "unknown") and b.replicas.breaker_state() != "open"
            for b in self._live
        )

    async def list_models(self) -> list[ModelInfo]:
        """The union of the usable backends' models (first backend wins a duplicate id)."""
        if not self._started:
            await self.start()
        backends = [b for b in self._live if b.status.state != "down"] or self._live

        async def one(b: _Backend) -> list[ModelInfo]:
            caller = b.callers.get("list_models")
            try:
                async with asyncio.timeout(self.monitor.timeout):
                    coro = (
                        caller(config=b.replicas.pick().config, http=self._http) if caller else None
                    )
                    models = await coro if coro is not None else None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.info("list_models of %s failed: %s", b.name, type(exc).__name__)
                models = None
            if models is None:
                models = [ModelInfo(id=m) for m in b.status.models]
                if not models and b.config.model:
                    models = [ModelInfo(id=b.config.model)]
            return [
                m if m.backend == b.name else m.model_copy(update={"backend": b.name})
                for m in models
                if isinstance(m, ModelInfo)
            ]

        seen: set[str] = set()
        out: list[ModelInfo] = []
        for models in await asyncio.gather(*(one(b) for b in backends)):
            for m in models:
                if m.id not in seen:
                    seen.add(m.id)
                    out.append(m)
        return out


class _RoutedStream:
    """The stream handed to the caller: the first chunk (already pulled), then the rest.

    Each later chunk must come within ``idle`` seconds.  An error after the first chunk is
    raised as a taxonomy error (the gateway sends it in-band).  ``aclose()`` and cancellation
    close the upstream iterator.  Usage chunks are recorded into the trace.
    """

    __slots__ = (
        "_backend",
        "_done",
        "_first",
        "_guard",
        "_idle",
        "_replica",
        "_router",
        "_trace",
        "_up",
    )

    def __init__(
        self,
        router: Router,
        backend: _Backend,
        replica: Replica,
        upstream: Any,
        first: Any,
        trace: RequestTrace,
        idle: float,
    ) -> None:
        self._router = router
        self._backend = backend
        self._replica = replica
        self._up = upstream
        self._first = first
        self._trace = trace
        self._idle = idle
        self._guard = Guard()
        self._done = False
        usage = getattr(first, "usage", None)
        if usage is not None:
            trace.usage = usage

    def __aiter__(self) -> _RoutedStream:
        return self

    async def __anext__(self) -> Any:
        first = self._first
        if first is not None:
            self._first = None
            return first
        if self._done:
            raise StopAsyncIteration
        guard = self._guard
        watchdog = self._router._watchdog
        watchdog.arm(guard, self._idle)
        try:
            chunk = await self._up.__anext__()
        except StopAsyncIteration:
            watchdog.disarm(guard)
            self._finish(None)
            raise
        except asyncio.CancelledError:
            expired = guard.expired_by_us()
            watchdog.disarm(guard)
            if not expired:
                await self._close_upstream()
                self._finish(None)
                raise
            await self._close_upstream()
            error: InferenceError = BackendTimeout(
                f"the stream stalled: no data for {self._idle:g}s (idle timeout)",
                backend=self._backend.name,
            )
            self._finish(error)
            raise error from None
        except InferenceError as exc:
            watchdog.disarm(guard)
            await self._close_upstream()
            self._finish(exc)
            raise
        except Exception as exc:
            watchdog.disarm(guard)
            await self._close_upstream()
            error = BackendUnavailable(
                f"the stream failed: {type(exc).__name__}", backend=self._backend.name
            )
            self._finish(error)
            raise error from None
        watchdog.disarm(guard)
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self._trace.usage = usage
        return chunk

    async def aclose(self) -> None:
        """Stop early: close the upstream response and release the request's slot."""
        self._first = None
        if not self._done:
            await self._close_upstream()
            self._finish(None)

    async def _close_upstream(self) -> None:
        await _aclose(self._up)

    def _finish(self, error: InferenceError | None) -> None:
        if self._done:
            return
        self._done = True
        self._replica.outstanding -= 1
        if error is not None:
            self._router._scrub_error(error, self._replica.config)
            self._router._passive(self._backend, self._replica, error, False)
            self._trace.attempts.append(
                Attempt(self._backend.name, error.kind, error.message, error.status)
            )
        span = self._trace.span
        if span is not None:
            span.attempt_end(error)
        self._router._done()

    @property
    def backend(self) -> str:
        return self._backend.name

    def __del__(self) -> None:
        # dropped without aclose() (a careless caller): release the counters so that drain
        # and the balancer do not wait for it; the upstream generator is finalised by the loop
        if not self._done:
            self._done = True
            self._replica.outstanding -= 1
            self._router._done()


async def _aclose(iterator: Any) -> None:
    close = getattr(iterator, "aclose", None)
    if close is None:
        return
    try:
        await close()
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.debug("closing an upstream stream raised", exc_info=True)


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


# ------------------------------------------------------------------------------- sync facade


class SyncRouter:
    """A blocking facade over :class:`Router`, for scripts and synchronous code.

    The router runs on an event loop in a daemon thread, so this works even when the calling
    thread already runs an event loop (it blocks that thread, as any sync call does).  Pass an
    unstarted ``router``, or keyword arguments for :meth:`Router.from_env`.
    """

    def __init__(self, router: Router | None = None, **from_env_kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="inference-core-sync", daemon=True
        )
        self._thread.start()
        try:
            self.router = router if router is not None else Router.from_env(**from_env_kwargs)
            self._run(self.router.start())
        except BaseException:
            self._stop_loop()
            raise
        self._closed = False

    def _run(self, coro: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # --------------------------------------------------------------------------- the API

    def chat(self, request: ChatRequest | Mapping[str, Any], *, trace: RequestTrace | None = None):
        """A ``ChatResponse``, or (``stream``) a blocking iterator of ``ChatChunk``."""
        result = self._run(self.router.chat(request, trace=trace))
        return self._iterate(result) if hasattr(result, "__anext__") else result

    def complete(self, request: Any, *, trace: RequestTrace | None = None) -> Any:
        result = self._run(self.router.complete(request, trace=trace))
        return self._iterate(result) if hasattr(result, "__anext__") else result

    def embed(self, request: Any, *, trace: RequestTrace | None = None) -> EmbeddingResponse:
        return self._run(self.router.embed(request, trace=trace))

    def health(self, *, refresh: bool = False) -> dict[str, dict[str, Any]]:
        return self._run(self.router.health(refresh=refresh))

    def list_models(self) -> list[ModelInfo]:
        return self._run(self.router.list_models())

    def _iterate(self, stream: Any) -> Iterator[Any]:
        try:
            while True:
                try:
                    yield self._run(stream.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            if not self._closed:
                self._run(stream.aclose())

    # ------------------------------------------------------------------ the seed's names

    def create_chat_completion(
        self,
        messages: list[dict[str, Any]],
        model: str = "default",
        temperature: float | None = None,
        max_tokens: int | None = None,
        stream: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any] | Iterator[dict[str, Any]]:
        """The seed's call: an OpenAI-shaped dict (or, ``stream=True``, an iterator of dicts)."""
        body: dict[str, Any] = {"model": model, "messages": messages, "stream": stream, **kwargs}
        if temperature is not None:
            body["temperature"] = temperature
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        result = self.chat(body)
        if stream:
            return (chunk.to_dict() for chunk in result)
        return result.to_dict()

    def create_embedding(
        self, text: str | list[str], model: str = "default", **kwargs: Any
    ) -> dict[str, Any]:
        """The seed's call: an OpenAI-shaped embeddings dict."""
        return self.embed({"model": model, "input": text, **kwargs}).to_dict()

    def get_health_status(self) -> dict[str, Any]:
        """The seed's shape (``primary`` / ``fallbacks`` with ``type``, ``healthy``, ``models``)
        plus ``backends``: the full :meth:`Router.health` report."""
        report = self.health()
        entries = []
        for name, info in report.items():
            entries.append(
                {
                    "type": name,
                    "healthy": info["state"] in ("ready", "unknown")
                    and info["breaker"] != "open"
                    and not info["load_error"],
                    "models": info["models"],
                    **({"error": info["load_error"]} if info["load_error"] else {}),
                }
            )
        return {
            "primary": entries[0] if entries else None,
            "fallbacks": entries[1:],
            "backends": report,
        }

    # --------------------------------------------------------------------------- lifecycle

    def close(self, drain_timeout: float | None = 30.0) -> None:
        """Close the router (draining in-flight requests) and stop the loop thread."""
        if self._closed:
            return
        self._closed = True
        try:
            self._run(self.router.aclose(drain_timeout))
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> SyncRouter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
