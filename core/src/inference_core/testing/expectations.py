"""What the conformance kit expects: the error for each injected failure, the requests it sends.

Data only, so that CONTRIBUTING.md's tables can be checked against it.
"""

from __future__ import annotations

from typing import Any

from ..errors import (
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
from .transport import FAILURES, RETRY_AFTER_DATE_SECONDS

EXPECTED_ERRORS: dict[str, tuple[type[InferenceError], ...]] = {
    "connect": (BackendUnavailable,),
    "timeout": (BackendTimeout,),
    "429": (RateLimited,),
    "429-date": (RateLimited,),
    "429-ms": (RateLimited,),
    "500": (BackendUnavailable,),
    "502": (BackendUnavailable,),
    "502-html": (BackendUnavailable,),
    "503": (BackendUnavailable,),
    "504": (BackendTimeout, BackendUnavailable),
    "400": (BadRequest,),
    "400-context": (ContextLengthExceeded,),
    "401": (AuthenticationFailed,),
    "403": (AuthenticationFailed,),
    "404-model": (ModelNotFound,),
    "404-route": (CapabilityNotSupported,),
    "408": (BackendTimeout, BackendUnavailable),
    "413": (BadRequest, ContextLengthExceeded),
    "422": (BadRequest,),
    "200-not-json": (BackendUnavailable,),
    "200-html": (BackendUnavailable,),
}
#: what the router would retry: a plugin must raise these at once, never retry them itself
RETRYABLE_FAILURES = tuple(f for f in FAILURES if all(c.retryable for c in EXPECTED_ERRORS[f]))
#: failure -> (lowest, highest) ``retry_after`` a RateLimited must carry
RETRY_AFTER = {
    "429": (7.0, 7.0),
    "429-date": (RETRY_AFTER_DATE_SECONDS - 5.0, RETRY_AFTER_DATE_SECONDS + 1.0),
    "429-ms": (1.5, 1.5),
}

SECRET = "sk-conformance-SECRET-d0n0tl3ak"
ALIAS = "conformance-alias"
ALIAS_TARGET = "aliased-upstream-model"
CONCRETE_MODEL = "concrete-upstream-model"

#: chat fields a plugin must carry to the upstream (the wire's OpenAI view), ``top_k`` standing
#: for every backend-specific extra a client sends
CHAT_FIELDS: dict[str, Any] = {
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ],
    "tool_choice": "auto",
    "response_format": {"type": "json_object"},
    "seed": 1234,
    "stop": ["\n\nUser:"],
    "top_k": 7,
}
STREAM_FIELDS: dict[str, Any] = {"stream_options": {"include_usage": True}}
COMPLETE_FIELDS: dict[str, Any] = {"seed": 1234, "stop": ["\n\nUser:"], "top_k": 7}
EMBED_INPUTS = ["alpha", "beta", "alpha", "gamma"]  # a duplicate: never de-duplicated
