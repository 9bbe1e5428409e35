"""The executor: walk a plan's steps, one attempt at a time, until one answers.

For each request it orders the planned steps by health (healthy backends first, then healthy
ones that are rate limited, then those marked down / loading / with an open breaker, which
are still tried, last, never refused; the plan's order is kept within each group) and then:

* retryable failures (unavailable, timeout, 429) are retried on the same backend with
  exponential backoff and full jitter, ``Retry-After`` honoured up to ``retry_after_cap``
  (longer: fall back at once), at most ``max_retries`` times;
* a 429 is remembered per replica until its ``Retry-After`` (or a short doubling default):
  while another replica or step that is healthy and not rate limited remains, the request
  moves on at once instead of waiting; only a last option is waited for;
* failures whose class says ``fallback`` move on to the next step; a plain bad request is
  answered as is (it would be wrong everywhere); a context-length error skips the steps whose
  context is not larger;
* one ``request_deadline`` bounds all of it; ``first_token_timeout`` bounds each try up to a
  non-stream answer or a stream's first chunk;
* when every step failed: :class:`~inference_core.errors.AllBackendsFailed` listing each
  attempt (or the last bad request, when nothing but bad requests came back).

Each attempt hands the plugin the request with ``model`` set to the step's model (the name to
send that backend); the caller's name is put back when the routing ends.  Real outcomes count
toward each replica's breaker and health (passive checks).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import (
    AllBackendsFailed,
    Attempt,
    AuthenticationFailed,
    BackendTimeout,
    BackendUnavailable,
    BadRequest,
    CapabilityNotSupported,
    ContextLengthExceeded,
    InferenceError,
    RateLimited,
)
from ..models import BackendConfig
from ..resilience.deadline import Guard, Watchdog
from ..resilience.health_monitor import HealthMonitor, StateChange
from ..resilience.policy import RouterPolicy
from ..resilience.retry import retry_delay
from .backend import BackendEntry, scrub
from .planner import Step
from .resume import resume_for
from .stream import RoutedStream, aclose_quietly
from .trace import RequestTrace

if TYPE_CHECKING:
    from ..resilience.balancer import Replica
    from .catalog import ModelCatalog

__all__ = ["Executor"]

logger = logging.getLogger("inference_core.router")

#: Failures that say a backend is sick: they count toward its breaker.
_SICK = (BackendUnavailable, BackendTimeout, AuthenticationFailed)


class Executor:
    """Runs plans; owns the passive-health and rate-limit bookkeeping. See the module doc."""

    def __init__(
        self,
        *,
        policy: RouterPolicy,
        monitor: HealthMonitor,
        watchdog: Watchdog,
        catalog: ModelCatalog,
        emit: Callable[[StateChange], None],
        http: Callable[[], Any],
        done: Callable[[], None],
        clock: Callable[[], float],
        sleep: Callable[[float], Any],
        rand: Callable[[], float],
    ) -> None:
        self.policy = policy
        self.monitor = monitor
        self.watchdog = watchdog
        self.catalog = catalog
        self._emit = emit
        self._http = http
        self.done = done
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        # a request kept waiting longer than a health check may take triggers a probe
        self._slow_after = monitor.timeout
        # replicas whose rate limit was announced to the listeners and has not ended yet
        self.limited: dict[Replica, BackendEntry] = {}

    # ------------------------------------------------------------------------- ordering

    def order(self, steps: tuple[Step, ...]) -> list[Step]:
        """``steps`` by health: healthy first, then rate limited, then down (plan order kept)."""
        if self.limited:
            self.expire_rate_limits()
        good: list[Step] = []
        limited: list[Step] = []
        later: list[Step] = []
        for step in steps:
            b = step.backend
            state = b.status.state
            if (state == "ready" or state == "unknown") and b.replicas.available():
                if b.replicas.rate_limited():
                    limited.append(step)
                else:
                    good.append(step)
            else:
                later.append(step)
        if limited:
            good.extend(limited)
        if later:
            good.extend(later)
        return good

    def _context_of(self, step: Step) -> int | None:
        return self.catalog.context_length(step.backend, step.model)

    def _free_after(self, order: list[Step], index: int, context_floor: int | None) -> bool:
        """True when a step after ``order[index]`` would take the request now: healthy, its
        breaker closed (or half-open and free), some replica not rate limited."""
        for step in order[index + 1 :]:
            size = self._context_of(step)
            if context_floor is not None and size is not None and size <= context_floor:
                continue  # would be skipped
            b = step.backend
            state = b.status.state
            if (state == "ready" or state == "unknown") and b.replicas.has_free():
                return True
        return False

    # ------------------------------------------------------------------------- running

    async def run(
        self,
        op: str,
        request: Any,
        trace: RequestTrace,
        stream: bool,
        steps: tuple[Step, ...],
        chain: list[BackendEntry],
        *,
        deadline: float | None = None,
        resumable: bool = True,
    ) -> Any:
        """Try ``steps`` (health-ordered) until one answers; see the module docstring.

        ``chain`` (every configured backend) only serves to explain an empty plan.
        ``deadline`` (the clock's time) replaces ``request_deadline`` from now (a resume runs
        inside its stream's deadline); ``resumable=False`` gives the stream no resume of its own.
        """
        asked = request.model
        try:
            return await self._run(
                op, request, trace, stream, self.order(steps), chain, deadline, resumable
            )
        finally:
            if request.model != asked:
                request.model = asked

    async def _run(
        self,
        op: str,
        request: Any,
        trace: RequestTrace,
        stream: bool,
        order: list[Step],
        chain: list[BackendEntry],
        deadline: float | None = None,
        resumable: bool = True,
    ) -> Any:
        policy = self.policy
        clock = self._clock
        if deadline is None:
            deadline = clock() + policy.request_deadline
        attempts = trace.attempts
        errors: list[InferenceError] = []
        context_floor: int | None = None
        watchdog = self.watchdog
        guard = Guard()
        tried = 0
        last_index = len(order) - 1
        span = trace.span  # telemetry: None when traces are off
        for index, step in enumerate(order):
            backend = step.backend
            size = self._context_of(step)
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
            model = step.model
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
                if request.model != model:  # the name this backend knows (or a plugin's edit)
                    request.model = model
                # a queue wait leaves a later step its first-token budget (no silent loss of
                # the fallback to a long wait here)
                reserve = policy.first_token_timeout if index < last_index else 0.0
                replica = await self._admit(backend, remaining - reserve)
                if replica is None:  # at capacity, its queue full or waited out: spill on
                    error = self._overloaded(backend)
                    errors.append(error)
                    attempts.append(Attempt(backend.name, error.kind, error.message, 429))
                    logger.info("backend %s: %s", backend.name, error.message)
                    break
                breaker = replica.breaker
                trial = breaker.on_attempt()
                replica.outstanding += 1
                if span is not None:
                    index_of = backend.replicas.replicas.index(replica)
                    span.attempt_start(backend.name, index_of, replica.url, model)
                first_token = policy.first_token_timeout
                budget = remaining if remaining < first_token else first_token
                watchdog.arm(guard, budget, self._slow_after, backend.name)
                try:
                    result = await self._once(op, caller, backend, replica, request, stream)
                except asyncio.CancelledError:
                    replica.outstanding -= 1
                    _release(replica)
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
                    _release(replica)
                    error = exc
                except Exception as exc:
                    replica.outstanding -= 1
                    _release(replica)
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
                    if stream:
                        upstream, first = result
                        trace.model = _answered_model(model, first)
                        if span is not None:
                            span.attempt_ok(getattr(first, "model", None), streaming=True)
                        resume = (
                            resume_for(self, op, request, order, step, deadline)
                            if resumable
                            else None
                        )
                        return RoutedStream(
                            self, backend, replica, upstream, first, trace, policy.idle_timeout,
                            resume,
                        )  # fmt: skip
                    trace.model = _answered_model(model, result)
                    replica.outstanding -= 1
                    _release(replica)
                    usage = getattr(result, "usage", None)
                    if usage is not None:
                        trace.usage = usage
                    if span is not None:
                        span.attempt_ok(getattr(result, "model", None))
                    return result
                finally:
                    watchdog.disarm(guard)

                # ------------------------------------------------------------ a failure
                self.scrub_error(error, replica.config)
                self.passive(backend, replica, error, trial)
                if span is not None:
                    span.attempt_failed(error.kind, error.message, getattr(error, "status", None))
                errors.append(error)
                attempts.append(
                    Attempt(backend.name, error.kind, error.message, getattr(error, "status", None))
                )
                logger.info("backend %s failed: %s (%s)", backend.name, error.kind, error.message)
                if error.kind == "model_not_found":
                    # the catalog was stale (a model removed): learn it for the next request
                    self.catalog.schedule(backend)
                if isinstance(error, ContextLengthExceeded):
                    if not policy.context_fallback:
                        raise error
                    if size is not None:
                        context_floor = max(context_floor or 0, size)
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
            for b in chain:
                if b.load_error:
                    attempts.append(Attempt(b.name, "plugin_load_error", b.load_error))
        raise AllBackendsFailed(list(attempts), last=errors[-1] if errors else None)

    # ------------------------------------------------------------------------- admission

    async def _admit(self, backend: BackendEntry, budget: float) -> Replica | None:
        """The replica to send to, holding one of its admission slots; None when the backend
        is at capacity (every replica's slots taken and the queue full, or the wait ran out).

        A replica without admission control (no cap known) is always admitted.  The picked
        replica first, then any other eligible one with a free slot; then the picked one's
        queue, up to its ``queue_timeout`` and ``budget`` seconds (the remaining deadline,
        less a later step's first-token timeout); no budget left: no waiting.
        """
        replicas = backend.replicas
        replica = replicas.pick()
        admission = replica.admission
        if admission is None or admission.try_acquire():
            return replica
        for other in replicas.replicas:
            if (
                other is not replica
                and other.eligible
                and (other.admission is None or other.admission.try_acquire())
            ):
                return other
        if admission.full() or budget <= 0:
            admission.rejected_full += 1
            return None
        if await admission.acquire(max_wait=budget):
            return replica
        return None

    @staticmethod
    def _overloaded(backend: BackendEntry) -> RateLimited:
        """The error an overloaded backend counts as: a 429 with a Retry-After guess."""
        busy = [r.admission for r in backend.replicas.replicas if r.admission is not None]
        after = max((a.retry_after() for a in busy), default=1)
        in_flight = sum(a.in_flight for a in busy)
        queued = sum(a.queued for a in busy)
        return RateLimited(
            f"at capacity ({in_flight} in flight, {queued} queued); try again in {after}s",
            backend=backend.name,
            retry_after=float(after),
        )

    async def _once(
        self,
        op: str,
        caller: Any,
        backend: BackendEntry,
        replica: Replica,
        request: Any,
        stream: bool,
    ) -> Any:
        coro = (
            caller(request=request, config=replica.config, http=self._http())
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
                await aclose_quietly(result)
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
            await aclose_quietly(result)
            raise
        return result, first

    # ------------------------------------------------------------------------- outcomes

    def passive(
        self, backend: BackendEntry, replica: Replica, error: BaseException, trial: bool
    ) -> None:
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

    @staticmethod
    def scrub_error(error: InferenceError, config: BackendConfig) -> None:
        """Remove the backend's secrets and URL credentials from ``error``'s message."""
        clean = scrub(error.message, config)
        if clean != error.message:
            error.message = clean
            error.args = (clean,)

    # ------------------------------------------------------------------------- rate limits

    def _rate_limited(self, backend: BackendEntry, replica: Replica, error: RateLimited) -> None:
        """A 429: remember the replica as rate limited (announced when it starts)."""
        rl = replica.rate_limit
        seconds = rl.hit(error.retry_after, self.policy)
        if rl.announced or not rl.active():
            return  # already announced (now perhaps longer), or nothing to remember (0 s)
        rl.announced = True
        self.limited[replica] = backend
        said = "Retry-After" if error.retry_after is not None else "no Retry-After"
        self._rate_limit_change(
            backend, replica, "clear", "limited", f"429, rate limited for {seconds:g}s ({said})"
        )

    def _answered(self, backend: BackendEntry, replica: Replica, sent_at: float) -> None:
        """A request sent after the replica's last 429 was answered: its limit is over."""
        rl = replica.rate_limit
        if rl.answered(sent_at) and rl.announced:
            self._rate_limit_over(backend, replica, "answered again")

    def expire_rate_limits(self) -> None:
        """Announce the rate limits whose time ran out."""
        for replica, backend in list(self.limited.items()):
            if not replica.rate_limit.active():
                self._rate_limit_over(backend, replica, "Retry-After passed")

    def _rate_limit_over(self, backend: BackendEntry, replica: Replica, why: str) -> None:
        replica.rate_limit.announced = False
        self.limited.pop(replica, None)
        self._rate_limit_change(backend, replica, "limited", "clear", why)

    def _rate_limit_change(
        self, backend: BackendEntry, replica: Replica, old: str, new: str, detail: str
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


def _release(replica: Replica) -> None:
    """The request on ``replica`` ended: free its admission slot (a waiter gets it)."""
    admission = replica.admission
    if admission is not None:
        admission.release()


def _answered_model(asked: str, answer: Any) -> str:
    """The model that answered: the name asked for, or (for ``default``) the one reported."""
    if asked == "default":
        reported = getattr(answer, "model", None)
        if isinstance(reported, str) and reported:
            return reported
    return asked
