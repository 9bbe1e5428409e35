"""OpenAI-shaped error answers: ``{"error": {"message", "type", "param", "code"}}``.

One function, :func:`error_for`, turns any exception into ``(status, body, extra headers)``;
the taxonomy error's ``status`` decides the status code.  Rules on top of that table:

* ``RateLimited`` (and an ``AllBackendsFailed`` whose every attempt was rate limited) is a 429
  carrying ``Retry-After`` when the backend said how long to wait: the client should back off.
* Every other 5xx the gateway answers carries ``x-should-retry: false``: the router already
  retried and fell back (one retry loop in the whole stack), so an OpenAI SDK must not replay
  the whole chain.
* An exception outside the taxonomy is a clean 500 ``internal_error`` (its text is logged with
  the request id, never sent).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import ValidationError

from ..errors import AllBackendsFailed, InferenceError, RateLimited
from ..protocols._common import ProtocolError

__all__ = [
    "GatewayError",
    "error_body",
    "error_for",
    "validation_error",
]

NO_RETRY = (b"x-should-retry", b"false")


class GatewayError(Exception):
    """An error the gateway itself raises (auth, body size, caps, malformed JSON, routes)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or []

    def to_openai(self) -> dict[str, Any]:
        return {"message": self.message, "type": self.type, "param": self.param, "code": self.code}


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> bytes:
    """The JSON bytes of one error answer."""
    return orjson.dumps({"error": {"message": message, "type": type, "param": param, "code": code}})


def _loc(loc: tuple[Any, ...]) -> str | None:
    return ".".join(str(part) for part in loc) if loc else None


def validation_error(exc: ValidationError) -> GatewayError:
    """A 400 naming the first offending field (``param`` = its dotted location)."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    if not errors:  # pragma: no cover - pydantic always lists at least one
        return GatewayError(400, "invalid request body")
    first = errors[0]
    etype = first.get("type", "")
    if etype == "json_invalid":
        return GatewayError(
            400,
            "We could not parse the JSON body of your request: "
            + str(first.get("msg", "invalid JSON")),
            code="invalid_json",
        )
    param = _loc(tuple(first.get("loc", ())))
    if param is None:
        if etype in ("model_type", "dict_type", "model_attributes_type"):
            return GatewayError(
                400, "The request body must be a JSON object.", code="invalid_request_body"
            )
        return GatewayError(400, str(first.get("msg", "invalid request body")))
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    message = f"Invalid value for '{param}': {first.get('msg')}" + (more if len(errors) > 1 else "")
    code = "missing_required_parameter" if etype == "missing" else "invalid_value"
    return GatewayError(400, message, param=param, code=code)


def _retry_after(exc: BaseException) -> float | None:
    if isinstance(exc, RateLimited):
        return exc.retry_after
    if isinstance(exc, AllBackendsFailed) and isinstance(exc.last, RateLimited):
        return exc.last.retry_after
    return None


def _all_rate_limited(exc: AllBackendsFailed) -> bool:
    return bool(exc.attempts) and all(a.kind == RateLimited.kind for a in exc.attempts)


def error_for(
    exc: BaseException, redact: Callable[[str], str] | None = None
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """``(status, body, headers)`` for an exception raised while serving a request."""
    headers: list[tuple[bytes, bytes]] = []
    if isinstance(exc, GatewayError):
        status, payload = exc.status, exc.to_openai()
        headers.extend(exc.headers)
    elif isinstance(exc, ProtocolError):  # a translated protocol's 4xx
        status = exc.status
        payload = {"message": exc.message, "type": "invalid_request_error", "param": exc.param,
                   "code": exc.code}  # fmt: skip
    elif isinstance(exc, InferenceError):
        status = int(getattr(exc, "status", 500) or 500)
        payload = exc.to_openai()
        if isinstance(exc, AllBackendsFailed) and _all_rate_limited(exc):
            status = 429
            payload = {**payload, "type": RateLimited.openai_type, "code": "rate_limited"}
        if status == 429:
            after = _retry_after(exc)
            if after is not None:
                headers.append((b"retry-after", str(max(1, math.ceil(after))).encode()))
                headers.append((b"retry-after-ms", str(int(after * 1000)).encode()))
    else:
        status = 500
        payload = {
            "message": "The gateway failed to process the request (see its log, by request id).",
            "type": "server_error",
            "param": None,
            "code": "internal_error",
        }
    if status < 400 or status > 599:
        status = 500
    if status >= 500:
        headers.append(NO_RETRY)
    if redact is not None:
        payload = {**payload, "message": redact(str(payload.get("message", "")))}
        if "attempts" in payload:
            payload["attempts"] = [
                {**a, "message": redact(str(a.get("message", "")))} for a in payload["attempts"]
            ]
    return status, orjson.dumps({"error": payload}), headers
