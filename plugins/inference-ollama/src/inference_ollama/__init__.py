"""inference-ollama: Ollama's native API as an inference-core backend.

Native ``/api/chat`` and ``/api/embed`` (not Ollama's ``/v1`` layer), because only the native API
sets the context size (``num_ctx``), ``keep_alive`` and JSON-schema ``format`` per request.
Requests and answers are translated to and from the OpenAI wire format here
(:mod:`inference_ollama.translate`).

Settings (``INFERENCE_OLLAMA_<KEY>``): ``BASE_URL`` (default ``http://localhost:11434``; the seed's
``LOCAL_INFERENCE_URL`` when Ollama is the provider), ``MODEL`` (``llama3.2:1b``),
``EMBED_MODEL`` (``nomic-embed-text``, for ``/api/embed``), ``ALIASES``,
``API_KEY`` (Bearer, for an Ollama behind an authenticating proxy), ``TIMEOUT``, ``NUM_CTX``
(context window sent as ``options.num_ctx``; also the router's ``context_length``),
``KEEP_ALIVE`` (``5m``, ``0`` to unload at once, ``-1`` to keep loaded), ``LOAD_TIMEOUT``
(seconds a read may wait, default 300, for cold model loads).
"""

from __future__ import annotations

from . import plugin

__all__ = ["plugin"]
__version__ = "0.1.0"
