"""Protocol-faithful fake backend servers for tests (plugins, gateway, chaos).

Each fake is a small real HTTP server (Starlette served by uvicorn in a daemon thread) on
``127.0.0.1`` and a free port, built from ``/work/shared/PROTOCOLS.md`` and checked against the
official ``openai`` and ``ollama`` clients by ``tests/fakes/test_fakes_vs_official_clients.py``,
so that they cannot drift from what the real servers send.

Import (the repository root must be on ``sys.path``; the plugin test suites' ``conftest.py``
put it there)::

    from tests.fakes import FakeOpenAIServer, FakeOllamaServer, FakeTextgenServer

Use::

    with FakeOpenAIServer() as srv:          # starts on enter, stops on exit
        srv.url                              # "http://127.0.0.1:<port>"
        srv.base_url                         # srv.url + "/v1": the OpenAI SDK's base_url
        srv.behaviour = "429"                # every following request: 429 + Retry-After
        srv.queue("500", "normal")           # the next two requests, then `behaviour` again
        srv.requests[-1].json                # what the last request sent (also .headers, .path)
        srv.last("/v1/chat/completions")     # the last request to one path
        srv.reset()                          # constructor settings back, log and queue cleared

Behaviours (strings; constants of the same name in upper case are exported):

``normal``
    A correct answer (stream or not, as the request asks).
``midstream_error``
    Stream: two chunks, then the protocol's in-band error (SSE ``data: {"error": {...}}``;
    Ollama an NDJSON ``{"error": "..."}`` line), status 200. Non-stream: a 500.
``truncated``
    Stream: two chunks, then a clean end without ``[DONE]`` / ``"done": true``.
    Non-stream: a 200 whose JSON body is cut in half.
``garbage``
    A 200 with a body that is not the protocol (HTML, or junk SSE/NDJSON lines).
``slow``
    Wait ``srv.delay`` seconds (default 1) before the first byte.
``reset``
    Send part of the body, then drop the connection.
``tool_call``
    Answer with a call to the request's first tool, arguments ``srv.tool_arguments``.
``context_length``
    400 "maximum context length" (OpenAI: ``code: context_length_exceeded``).
``"400"`` ``"401"`` ``"403"`` ``"404"`` ``"409"`` ``"422"`` ``"429"`` ``"500"`` ``"502"`` ``"503"``
``"504"``
    That status with the protocol's own error body (404 = model not found; 429 carries
    ``Retry-After: srv.retry_after``, default ``"1"``; set ``retry_after=None`` to omit it).

Common knobs (constructor keywords or attributes): ``api_key`` (Bearer auth enforced when set),
``delay``, ``chunk_delay`` (seconds between stream chunks), ``retry_after``, ``reply`` (the text
every model answers; split on spaces into stream pieces, one "token" per word, so
``max_tokens=2`` gives two pieces and ``finish_reason: "length"``), ``tool_arguments``,
``embedding_dim`` (default 8; a request's ``dimensions`` wins).  Embeddings are deterministic
unit vectors of the text (same text, same vector).

Per fake:

* :class:`FakeOpenAIServer` (``openai_server``): ``/v1/chat/completions``, ``/v1/completions``,
  ``/v1/embeddings`` (float and base64), ``/v1/models``, ``/v1/models/{id}``.  ``models`` is
  the list served; with ``strict_models=True`` any other model is the real 404.
  Responses name the requested model.
* :class:`FakeOllamaServer` (``ollama_server``): ``/api/chat``, ``/api/embed``,
  ``/api/embeddings`` (legacy), ``/api/tags``, ``/api/ps``, ``/api/version``, ``/``.  ``models``
  is what is pulled; any other model is the real 404 ``model "x" not found, try pulling it
  first``.  ``version`` is what ``/api/version`` reports.
* :class:`FakeTextgenServer` (``textgen_server``): the OpenAI routes, answering with the
  *loaded* model whatever the request says, plus ``/v1/internal/health``, ``model/info``,
  ``model/list`` (admin), ``model/load`` (admin), ``model/unload``.  Knobs: ``loaded_model``,
  ``available``, ``admin_key``, ``load_delay``; ``loads`` records each load.
"""

from __future__ import annotations

from ._base import (
    BEHAVIOURS,
    CONTEXT_LENGTH,
    GARBAGE,
    MIDSTREAM_ERROR,
    NORMAL,
    RESET,
    SLOW,
    STATUS_BEHAVIOURS,
    TOOL_CALL,
    TRUNCATED,
    FakeServer,
    RecordedRequest,
    fake_vector,
)
from .ollama_server import FakeOllamaServer
from .openai_server import FakeOpenAIServer
from .textgen_server import FakeTextgenServer

__all__ = [
    "BEHAVIOURS",
    "CONTEXT_LENGTH",
    "GARBAGE",
    "MIDSTREAM_ERROR",
    "NORMAL",
    "RESET",
    "SLOW",
    "STATUS_BEHAVIOURS",
    "TOOL_CALL",
    "TRUNCATED",
    "FakeOllamaServer",
    "FakeOpenAIServer",
    "FakeServer",
    "FakeTextgenServer",
    "RecordedRequest",
    "fake_vector",
]
