"""inference-openai: the OpenAI API (or any OpenAI-compatible service) as an inference-core backend.

Every hook relays the service's own bytes through :mod:`inference_core.http` (core's pooled
client, its one error mapping, verbatim SSE relay); the official ``openai`` SDK is an opt-in
alternative (option ``client=sdk``, see :mod:`inference_openai.sdk` and the README for why it is
not the default).

Settings (``INFERENCE_OPENAI_<KEY>``, seed variables in brackets):

* ``API_KEY`` [``OPENAI_API_KEY``]: sent as ``Authorization: Bearer``; without one, requests to
  ``api.openai.com`` fail at once with ``AuthenticationFailed`` and health is ``down``;
* ``BASE_URL`` [``OPENAI_API_BASE``], default ``https://api.openai.com/v1``; it *includes*
  ``/v1``, so any OpenAI-compatible service (Azure-style gateways, OpenRouter, Together, a
  local server's ``/v1``) is reachable by URL alone;
* ``MODEL``, ``EMBED_MODEL`` (embeddings), ``ALIASES``, ``TIMEOUT`` [``OPENAI_TIMEOUT``],
  ``CONNECT_TIMEOUT``;
* ``ORGANIZATION`` / ``PROJECT``: the ``OpenAI-Organization`` / ``OpenAI-Project`` headers;
* ``CLIENT``: ``raw`` (default) or ``sdk``.

Behaviour: unknown request fields pass through untouched; ``stream_options`` is the client's
own choice (usage arrives only when it asked for it); a 429 carries ``retry_after`` from
``retry-after-ms`` / ``retry-after``; a 429 with ``code: insufficient_quota`` (billing, not load)
is ``AuthenticationFailed`` so the router falls back instead of retrying; ``code:
context_length_exceeded`` is ``ContextLengthExceeded``.  Health is ``GET /models`` with the key
(no paid call).  The plugin never retries: the router owns retries (the SDK runs with
``max_retries=0``).
"""

from __future__ import annotations

from . import plugin

__all__ = ["plugin"]
__version__ = "0.1.0"
