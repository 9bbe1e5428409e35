"""inference-textgen: text-generation-webui (oobabooga) as an inference-core backend.

text-generation-webui's API (``--api``, port 5000) speaks the OpenAI wire format, so chat,
streaming, completions and embeddings go through :mod:`inference_core.http.openai_compat`.
What this plugin adds, because the server differs from OpenAI:

* it **ignores the request's model** and answers with whatever model is loaded: responses are
  made to name the loaded model (``/v1/internal/model/info``, cached briefly), and with
  ``AUTOLOAD=true`` a request that maps to another model loads it first through the admin
  ``/v1/internal/model/load`` (one load at a time per server);
* ``/v1/models`` lists only the loaded model: :func:`list_models` asks the admin
  ``/v1/internal/model/list`` when an admin key is set, else reports the loaded model;
* health is ``/v1/internal/health`` (it needs the API key) plus the loaded model;
* ``n > 1`` with ``stream`` is refused here, before anything is sent.

Settings (``INFERENCE_TEXTGEN_<KEY>``): ``BASE_URL`` (default ``http://localhost:5000``),
``MODEL``, ``ALIASES``, ``API_KEY`` (``--api-key``), ``ADMIN_KEY`` (``--admin-key``; defaults
to the API key, as in text-generation-webui), ``AUTOLOAD`` (``true``/``false``, default false),
``LOAD_TIMEOUT`` (seconds a model load may take, default 600), ``MODEL_INFO_TTL`` (seconds the
loaded model name is cached, default 5), ``TIMEOUT``.
"""

from __future__ import annotations

from .plugin import TextgenPlugin

plugin = TextgenPlugin()

__all__ = ["TextgenPlugin", "plugin"]
__version__ = "0.1.0"
