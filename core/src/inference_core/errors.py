"""The error taxonomy: every failure a backend can produce maps onto exactly one of these.

The mapping from HTTP statuses and transport errors happens once, in ``inference_core.http``;
plugins that talk to their backend through another client (the ``openai`` SDK, say) map that
client's exceptions onto these classes themselves.

Two class attributes drive the router:

* ``retryable``: the same backend may be asked again (after a backoff) for this failure.
* ``fallback``: the next backend of the chain may be asked for this failure.

Each error also knows the HTTP status and OpenAI ``type`` the gateway answers with, so that one
table, here, decides what a client sees.  Messages must never contain a secret: build them from
status codes, error kinds and the backend's own error text, never from headers or URLs with
credentials in them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "AllBackendsFailed",
    "Attempt",
    "AuthenticationFailed",
    "BackendError",
    "BackendTimeout",
    "BackendUnavailable",
    "BadRequest",
    "CapabilityNotSupported",
    "ConfigError",
    "ContextLengthExceeded",
    "InferenceError",
    "ModelNotFound",
    "PluginLoadError",
    "RateLimited",
]


class InferenceError(Exception):
    """Base class of every error inference-core raises on purpose."""

    kind: ClassVar[str] = "inference_error"
    status: ClassVar[int] = 500
    openai_type: ClassVar[str] = "server_error"
    retryable: ClassVar[bool] = False
    fallback: ClassVar[bool] = False

    def __init__(self, message: str, *, backend: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.backend = backend

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI-shaped error object (the value of the top-level ``error`` key)."""
        return {"message": self.message, "type": self.openai_type, "param": None, "code": self.kind}


class ConfigError(InferenceError):
    """A setting is wrong. The message names the variable, its problem and what is accepted."""

    kind = "config_error"

    def __init__(self, message: str, *, variable: str | None = None) -> None:
        super().__init__(message)
        self.variable = variable


class PluginLoadError(InferenceError):
    """A backend plugin could not be loaded (import failed, sync hook, misspelled hook, ...)."""

    kind = "plugin_load_error"

    def __init__(
        self, message: str, *, backend: str | None = None, distribution: str | None = None
    ):
        super().__init__(message, backend=backend)
        self.distribution = distribution


class BackendError(InferenceError):
    """A backend answered with, or failed with, something other than a result."""

    kind = "backend_error"
    status = 502
    openai_type = "api_error"


class BackendUnavailable(BackendError):
    """Connection refused, DNS failure, connection reset, 500/502/503/504 from the backend."""

    kind = "unavailable"
    status = 503
    retryable = True
    fallback = True


class BackendTimeout(BackendError):
    """A connect, first-token, idle or total deadline ran out."""

    kind = "timeout"
    status = 504
    openai_type = "timeout"
    retryable = True
    fallback = True


class RateLimited(BackendError):
    """HTTP 429. ``retry_after``: seconds, when the backend said (``Retry-After`` or ``-ms``)."""

    kind = "rate_limited"
    status = 429
    openai_type = "rate_limit_error"
    retryable = True
    fallback = True

    def __init__(
        self, message: str, *, backend: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, backend=backend)
        self.retry_after = retry_after


class AuthenticationFailed(BackendError):
    """HTTP 401/403 from the backend: its key is wrong. Another backend may still serve."""

    kind = "authentication_failed"
    status = 502  # the *gateway's* client did nothing wrong; a bad backend key is our fault
    openai_type = "api_error"
    fallback = True


class BadRequest(BackendError):
    """HTTP 400/404/422: the request is wrong and would be wrong on every backend."""

    kind = "bad_request"
    status = 400
    openai_type = "invalid_request_error"

    def __init__(
        self,
        message: str,
        *,
        backend: str | None = None,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, backend=backend)
        self.param = param
        self.code = code
        if status is not None:
            self.status = status  # type: ignore[misc]  # instance override of the class default

    def to_openai(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "type": self.openai_type,
            "param": self.param,
            "code": self.code or self.kind,
        }


class ModelNotFound(BadRequest):
    """The requested model (or alias) does not exist on the backend."""

    kind = "model_not_found"
    status = 404

    def __init__(
        self,
        message: str,
        *,
        backend: str | None = None,
        model: str | None = None,
        suggestions: tuple[str, ...] = (),
        tail: str = "",
    ):
        hint = f"; did you mean: {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(message + hint + tail, backend=backend, param="model",
                         code="model_not_found")  # fmt: skip
        self.model = model
        self.suggestions = suggestions  # close names, shown after ``message``, before ``tail``
        self._parts = (message, tail)

    def only(self, allowed: Callable[[str], bool]) -> ModelNotFound:
        """The same error suggesting only the close names ``allowed`` accepts (the gateway
        keeps a key limited to some models from learning the names of the others)."""
        kept = tuple(name for name in self.suggestions if allowed(name))
        if kept == self.suggestions:
            return self
        message, tail = self._parts
        return ModelNotFound(message, backend=self.backend, model=self.model, suggestions=kept,
                             tail=tail)  # fmt: skip


class ContextLengthExceeded(BadRequest):
    """The prompt (plus ``max_tokens``) does not fit the backend's context window.

    A kind of bad request that a backend with a larger context may still serve, so the router
    falls back on it (to a backend other than the one that refused).
    """

    kind = "context_length_exceeded"
    fallback = True

    def __init__(self, message: str, *, backend: str | None = None, param: str | None = None):
        super().__init__(message, backend=backend, param=param, code="context_length_exceeded")


class CapabilityNotSupported(BackendError):
    """The backend has no such hook, or its server cannot do this (embeddings on a chat model)."""

    kind = "capability_not_supported"
    status = 400
    openai_type = "invalid_request_error"
    fallback = True


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of one backend, as recorded by the router. Never holds a secret."""

    backend: str
    kind: str
    message: str
    status: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "kind": self.kind,
            "message": self.message,
            "status": self.status,
        }


class AllBackendsFailed(InferenceError):
    """Every backend of the chain failed. ``attempts`` lists each try in order."""

    kind = "all_backends_failed"
    status = 503
    openai_type = "service_unavailable"

    def __init__(self, attempts: list[Attempt], *, last: BaseException | None = None) -> None:
        summary = "; ".join(f"{a.backend}: {a.kind} ({a.message})" for a in attempts)
        super().__init__(f"All backends failed: {summary or 'no backend was tried'}")
        self.attempts = attempts
        self.last = last

    def to_openai(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "type": self.openai_type,
            "param": None,
            "code": self.kind,
            "attempts": [a.as_dict() for a in self.attempts],
        }
