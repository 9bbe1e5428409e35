"""The shared HTTP layer that plugins build on.

* :func:`create_client`: the pooled ``httpx.AsyncClient`` core owns (hooks receive it as ``http``).
* :func:`error_for_response`, :func:`error_for_exception`, :func:`error_for_event`,
  :func:`parse_retry_after`: the one mapping from HTTP onto the error taxonomy.
* :func:`iter_sse_data`, :func:`iter_ndjson`: byte-level stream decoders.
* :mod:`inference_core.http.openai_compat`: chat / complete / embed / list_models / probe_health
  for servers that speak the OpenAI API, plus :func:`send` for anything else.
"""

from __future__ import annotations

from . import openai_compat
from .client import USER_AGENT, create_client
from .errors import error_for_event, error_for_exception, error_for_response, parse_retry_after
from .openai_compat import auth_headers, parse, relay_sse, request_body, send, url_for
from .streams import iter_ndjson, iter_sse_data

__all__ = [
    "USER_AGENT",
    "auth_headers",
    "create_client",
    "error_for_event",
    "error_for_exception",
    "error_for_response",
    "iter_ndjson",
    "iter_sse_data",
    "openai_compat",
    "parse",
    "parse_retry_after",
    "relay_sse",
    "request_body",
    "send",
    "url_for",
]
