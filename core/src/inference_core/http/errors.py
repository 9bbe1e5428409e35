"""Map HTTP statuses, error bodies and transport exceptions onto the error taxonomy, once."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from typing import Any

import httpx

from ..errors import (
    AuthenticationFailed,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    BadRequest,
    CapabilityNotSupported,
    ContextLengthExceeded,
    ModelNotFound,
    RateLimited,
)

#: Longest backend error text carried into our own messages.
MAX_MESSAGE = 300

_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "exceed_context_size",
    "maximum context length",
    "context length",
    "context window",
    "too many tokens",
    "prompt is too long",
    "input_tokens",
    "max_model_len",  # vLLM: "max_tokens=... cannot be greater than max_model_len=..."
)


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``retry-after`` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _body_fields(body: bytes) -> tuple[str | None, str | None, str | None, str | None]:
    """(message, type, param, code) from an error body of any shape we have seen."""
    try:
        data: Any = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return None, None, None, None
    if not isinstance(data, dict):
        return None, None, None, None
    err = data.get("error", data)
    if isinstance(err, str):  # Ollama, vLLM's 401: {"error": "..."}
        return err, None, None, None
    if not isinstance(err, dict):
        return None, None, None, None
    message = err.get("message") or err.get("detail") or err.get("msg")
    if not isinstance(message, str):
        message = json.dumps(message) if message is not None else None
    code = err.get("code")
    param = err.get("param")
    return (
        message,
        err.get("type") if isinstance(err.get("type"), str) else None,
        param if isinstance(param, str) else None,
        str(code) if code is not None else None,
    )


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def error_for_response(
    status: int, body: bytes, headers: Mapping[str, str], *, backend: str | None
) -> BackendError:
    """The taxonomy error for a non-2xx answer. The message never includes headers."""
    message, etype, param, code = _body_fields(body)
    text = _short(message) if message else f"HTTP {status} from the backend"
    if message is None and body:
        text += " (the body was not an error object)"
    lowered = " ".join(filter(None, (message, etype, param, code))).lower()

    if status == 429:
        return RateLimited(text, backend=backend, retry_after=parse_retry_after(headers))
    if status in (401, 403):
        return AuthenticationFailed(text, backend=backend)
    if status == 408:
        return BackendTimeout(text, backend=backend)
    if status == 404:
        if message == "Not Found" and etype is None:  # FastAPI's route miss (vLLM)
            return CapabilityNotSupported(
                "the backend's server does not offer this endpoint", backend=backend
            )
        return ModelNotFound(text, backend=backend)
    if status == 501:
        return CapabilityNotSupported(text, backend=backend)
    if 400 <= status < 500:
        if any(marker in lowered for marker in _CONTEXT_MARKERS):
            return ContextLengthExceeded(text, backend=backend, param=param)
        return BadRequest(text, backend=backend, param=param, code=code, status=status)
    if status == 504:
        return BackendTimeout(text, backend=backend)
    return BackendUnavailable(f"HTTP {status}: {text}", backend=backend)


def error_for_exception(exc: BaseException, *, backend: str | None) -> BackendError:
    """The taxonomy error for a transport failure (``httpx`` exception or ``OSError``)."""
    name = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        phase = {
            "ConnectTimeout": "connecting",
            "ReadTimeout": "waiting for data",
            "WriteTimeout": "sending the request",
            "PoolTimeout": "waiting for a free connection",
        }.get(name, "talking to the backend")
        return BackendTimeout(f"timed out {phase}", backend=backend)
    if isinstance(exc, httpx.ConnectError):
        return BackendUnavailable(f"cannot connect: {_short(str(exc)) or name}", backend=backend)
    if isinstance(exc, httpx.RemoteProtocolError):
        return BackendUnavailable(f"connection broken: {_short(str(exc)) or name}", backend=backend)
    if isinstance(exc, httpx.TransportError | OSError):
        return BackendUnavailable(f"transport error: {_short(str(exc)) or name}", backend=backend)
    return BackendUnavailable(f"unexpected {name}", backend=backend)


def error_for_event(payload: Any, *, backend: str | None) -> BackendError:
    """The taxonomy error for an in-band error event (``data: {"error": ...}``, NDJSON line)."""
    raw = json.dumps({"error": payload}).encode() if not isinstance(payload, bytes) else payload
    message, _etype, _param, code = _body_fields(raw)
    status = 500
    if code and code.isdigit():
        status = int(code)
    err = error_for_response(status, raw, {}, backend=backend)
    if message:
        err.message = _short(f"error in the stream: {message}")
        err.args = (err.message,)
    return err
