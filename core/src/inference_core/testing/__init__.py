"""Conformance kit for inference-core backend plugins.

Subclass :class:`BackendConformance` in your plugin's tests, point it at your plugin and give it
a fake upstream; pytest then runs every check a backend must pass (hook shapes and async-ness,
chat, streaming that ends cleanly and releases its upstream response, embeddings order and
count, error mapping, a health check that never raises)::

    # plugins/inference-myllm/tests/test_conformance.py
    import inference_myllm
    from inference_core.testing import BackendConformance, canned


    class TestMyLLMConformance(BackendConformance):
        plugin = inference_myllm.plugin       # what the entry point points at
        backend_name = "myllm"
        base_url = "http://upstream.test"     # config.base_url the hooks receive
        model = "upstream-model"              # config.model
        supports_embeddings = True            # also: supports_chat / _stream / _complete /
                                              # _list_models (defaults True/True/False/True)

        # The fake upstream: register respx routes on `upstream` (a respx.Router whose
        # base_url is self.base_url). One method per success scenario the flags enable.
        def mock_chat(self, upstream):
            upstream.post("/v1/chat/completions").respond(json=canned.chat_completion("Hi"))

        def mock_chat_stream(self, upstream):
            upstream.post("/v1/chat/completions").respond(
                content=canned.chat_stream(["Hel", "lo"]),
                headers={"content-type": "text/event-stream"},
            )

        def mock_embed(self, upstream):
            # vectors must be canned.embedding_for(input): the kit checks their order
            upstream.post("/v1/embeddings").mock(side_effect=canned.embeddings_handler)

        def mock_health(self, upstream):
            upstream.get("/health").respond(200, json={"status": "ok"})

        def mock_list_models(self, upstream):
            upstream.get("/v1/models").respond(json=canned.models(["upstream-model"]))

Instead of the ``mock_*`` methods you may define ``handler(self, request) -> httpx.Response``
answering every success scenario.  Failures (connection refused, timeout, 429 with
``Retry-After`` in seconds, as a date or in ``retry-after-ms``, 400 and a context-length 400,
401, 403, 404 for a model and for a route, 408, 413, 422, 500, 502, 503, 504, HTML error pages
and 200s that are no answer) are injected by the kit itself on every URL.  The wire-level
checks (usage chunk, in-band stream errors, request fields, aliases, embeddings by index,
base64 and dimensions) let ``wire`` (:class:`~inference_core.testing.wire.OpenAIWire` unless
you set another :class:`~inference_core.testing.wire.Wire`) answer the generation requests and
read the bodies the fake upstream recorded.  A backend that makes no HTTP call sets
``talks_http = False``.  The plugin gets the shared client as the router hands it over (made,
never entered); a hook that closes it fails.  Every check is a synchronous test that runs its
coroutine with ``asyncio.run``: no asyncio plugin or mode is needed.  The rules the checks
enforce, with what a failure means, are the table in CONTRIBUTING.md.

Other helpers:

* :func:`make_config` builds a :class:`~inference_core.models.BackendConfig` for unit tests;
* :class:`HookHarness` registers one plugin and ``await``-s its hooks as core would;
* :class:`TrackingTransport` wraps an ``httpx`` transport and records whether every upstream
  response was closed; :func:`failing_handler` fails every request a named way;
* :mod:`inference_core.testing.canned`: OpenAI-shaped upstream bodies (chat, SSE streams,
  embeddings, model lists);
* :class:`FakeUpstream`: respx routes + a :class:`TrackingTransport` + core's client, for
  a plugin's own unit tests;
* :mod:`inference_core.testing.local`: :func:`unused_port` / :func:`dead_url` (connection
  refused), :func:`serve_http` (a stdlib handler on an ephemeral loopback port) and
  :func:`peer_url` / :func:`missing_peer` (real-server tests: skip locally, FAIL under
  ``INFERENCE_REQUIRE_PEERS=1``);
* pytest fixtures (always available, inert unless used): ``inference_config`` (the
  :func:`make_config` function), ``inference_harness`` (a factory of :class:`HookHarness`) and
  ``inference_upstream`` (a :class:`FakeUpstream`).

This package imports pytest and respx only when you use the conformance class.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "BackendConformance": "conformance",
    "HookHarness": "harness",
    "hook_implementations": "harness",
    "make_config": "harness",
    "capture_logs": "harness",
    "TrackingTransport": "transport",
    "Tracked": "transport",
    "failing_handler": "transport",
    "FAILURES": "transport",
    "FakeUpstream": "transport",
    "dead_url": "local",
    "missing_peer": "local",
    "peer_url": "local",
    "serve_http": "local",
    "unused_port": "local",
    "Wire": "wire",
    "OpenAIWire": "wire",
    "canned": None,
    "wire": None,
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'inference_core.testing' has no attribute {name!r}")
    module = _EXPORTS[name]
    if module is None:
        value = import_module(f".{name}", __name__)
    else:
        value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:  # pragma: no cover
    from . import canned, wire
    from .conformance import BackendConformance
    from .harness import HookHarness, capture_logs, hook_implementations, make_config
    from .local import dead_url, missing_peer, peer_url, serve_http, unused_port
    from .transport import FAILURES, FakeUpstream, Tracked, TrackingTransport, failing_handler
    from .wire import OpenAIWire, Wire
