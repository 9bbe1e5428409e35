"""The routed stream: what a caller iterates after the executor pulled the first chunk.

Each later chunk must come within ``idle`` seconds (the executor's watchdog enforces it).  An
error after the first chunk counts toward the replica's breaker; then, when the stream has a
:class:`~inference_core.routing.resume.Resume` and it allows, the stream continues on another
replica or backend (the client sees one uninterrupted stream); otherwise the error is raised
as a taxonomy error (the gateway sends it in-band).  ``aclose()`` and cancellation close the
upstream iterator.  Usage chunks are recorded into the trace.  The request's slot (the replica's
outstanding count, the router's in-flight count) is held until the stream ends or is closed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from .._aio import next_now
from ..errors import Attempt, BackendTimeout, BackendUnavailable, InferenceError
from ..resilience.deadline import Guard

if TYPE_CHECKING:
    from ..resilience.balancer import Replica
    from .backend import BackendEntry
    from .executor import Executor
    from .resume import Resume
    from .trace import RequestTrace

__all__ = ["RoutedStream", "aclose_quietly"]

logger = logging.getLogger("inference_core.router")


class RoutedStream:
    """The first chunk (already pulled), then the rest of the upstream; see the module doc."""

    __slots__ = (
        "_backend",
        "_done",
        "_executor",
        "_first",
        "_guard",
        "_idle",
        "_keep",
        "_replica",
        "_resume",
        "_trace",
        "_up",
    )

    def __init__(
        self,
        executor: Executor,
        backend: BackendEntry,
        replica: Replica,
        upstream: Any,
        first: Any,
        trace: RequestTrace,
        idle: float,
        resume: Resume | None = None,
    ) -> None:
        self._executor = executor
        self._backend = backend
        self._replica = replica
        self._up = upstream
        self._first = first
        self._trace = trace
        self._idle = idle
        self._guard = Guard()
        self._done = False
        self._resume = resume
        self._keep = None
        if resume is not None and resume.start(first):
            self._keep = resume.keep
        else:
            self._resume = None
        usage = getattr(first, "usage", None)
        if usage is not None:
            trace.usage = usage

    def __aiter__(self) -> RoutedStream:
        return self

    async def __anext__(self) -> Any:
        first = self._first
        if first is not None:
            self._first = None
            return first
        if self._done:
            raise StopAsyncIteration
        guard = self._guard
        watchdog = None
        try:
            # the idle deadline is armed only when the next chunk is not there yet (the
            # upstream often delivers several in one read): arming costs more than a chunk
            chunk, pending = next_now(self._up)
            if pending is not None:
                watchdog = self._executor.watchdog
                watchdog.arm(guard, self._idle)
                chunk = await pending
                watchdog.disarm(guard)
        except StopAsyncIteration:
            if watchdog is not None:
                watchdog.disarm(guard)
            self._finish(None)
            raise
        except asyncio.CancelledError:
            expired = guard.expired_by_us()
            if watchdog is not None:
                watchdog.disarm(guard)
            if not expired:
                await aclose_quietly(self._up)
                self._finish(None)
                raise
            error: InferenceError = BackendTimeout(
                f"the stream stalled: no data for {self._idle:g}s (idle timeout)",
                backend=self._backend.name,
            )
        except InferenceError as exc:
            if watchdog is not None:
                watchdog.disarm(guard)
            error = exc
        except Exception as exc:
            if watchdog is not None:
                watchdog.disarm(guard)
            error = BackendUnavailable(
                f"the stream failed: {type(exc).__name__}", backend=self._backend.name
            )
        else:
            keep = self._keep
            if keep is not None:
                keep(chunk)
            usage = getattr(chunk, "usage", None)
            if usage is not None:
                self._trace.usage = usage
            return chunk
        return await self._failed(error)

    async def _failed(self, error: InferenceError) -> Any:
        """The current leg failed: resume elsewhere (the continuation's first chunk) or raise."""
        await aclose_quietly(self._up)
        resume = self._resume
        if resume is None:
            self._finish(error)
            raise error
        from .resume import resume_stream

        self._leg_over(error)
        try:
            leg = await resume_stream(self, resume, error)
        except BaseException:
            self._done = True
            self._executor.done()
            raise
        if leg is None:
            self._done = True
            self._executor.done()
            raise error
        self._backend, self._replica, self._up = leg
        return await self.__anext__()

    async def aclose(self) -> None:
        """Stop early: close the upstream response and release the request's slot."""
        self._first = None
        if not self._done:
            await aclose_quietly(self._up)
            self._finish(None)

    def _finish(self, error: InferenceError | None) -> None:
        if self._done:
            return
        self._done = True
        self._leg_over(error)
        self._executor.done()

    def _leg_over(self, error: InferenceError | None) -> None:
        """The current upstream ended (``error``: how it failed): release its replica."""
        self._replica.outstanding -= 1
        if self._replica.admission is not None:
            self._replica.admission.release()
        if error is not None:
            executor = self._executor
            executor.scrub_error(error, self._replica.config)
            executor.passive(self._backend, self._replica, error, False)
            self._trace.attempts.append(
                Attempt(self._backend.name, error.kind, error.message, error.status)
            )
        span = self._trace.span
        if span is not None:  # telemetry: the leg's attempt ends with it
            span.attempt_end(error)

    @property
    def backend(self) -> str:
        """The backend serving this stream."""
        return self._backend.name

    def __del__(self) -> None:
        # dropped without aclose() (a careless caller): release the counters so that drain
        # and the balancer do not wait for it; the upstream generator is finalised by the loop
        if not self._done:
            self._done = True
            self._replica.outstanding -= 1
            if self._replica.admission is not None:
                self._replica.admission.release()
            self._executor.done()


async def aclose_quietly(iterator: Any) -> None:
    """``await iterator.aclose()`` when it has one; its errors are logged, not raised."""
    close = getattr(iterator, "aclose", None)
    if close is None:
        return
    try:
        await close()
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.debug("closing an upstream stream raised", exc_info=True)
