"""The hooks a backend plugin implements.

Every hook is ``firstresult`` and is implemented as an ``async def``.  The router calls each hook
on exactly one backend (a subset hook caller per backend), so an implementation never has to
check whether a call is meant for it.  Core ``wrapper=True`` hooks still run around every call.

Arguments (an implementation may accept any subset of them, by name; never give a hookimpl
parameter a default value, pluggy then does not pass it):

* ``request``: the pydantic request (:mod:`inference_core.models`); ``request.model`` is the
  name the router resolved for this backend (docs/routing.md); send
  ``config.model_for(request.model)``, which also maps this backend's aliases and ``default``.
* ``config``: this backend's :class:`~inference_core.models.BackendConfig`.
* ``http``: the ``httpx.AsyncClient`` that core owns and pools; do not close it.

Errors: raise the classes of :mod:`inference_core.errors` (``inference_core.http`` maps HTTP
statuses and transport errors for you).  The router decides on retries and fallbacks; a hook
never retries on its own.

Documentation of each hook, with an example, is in CONTRIBUTING.md; a test keeps the two in sync.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import httpx

    from .models import (
        BackendConfig,
        ChatChunk,
        ChatRequest,
        ChatResponse,
        CompletionRequest,
        CompletionResponse,
        EmbeddingRequest,
        EmbeddingResponse,
        Health,
        ModelInfo,
    )

PROJECT_NAME = "inference_core"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: The hooks every backend is expected to know about, in documentation order.
HOOK_NAMES = ("chat", "complete", "embed", "health", "list_models", "startup", "shutdown")


@hookspec(firstresult=True)
async def chat(
    request: ChatRequest, config: BackendConfig, http: httpx.AsyncClient
) -> ChatResponse | AsyncIterator[ChatChunk]:
    """Answer a chat completion request.

    Return a :class:`ChatResponse`, or, when ``request.stream`` is true, an async iterator of
    :class:`ChatChunk` (typically an async generator function's result).  The iterator must:
    yield the first chunk only once the backend has accepted the request (the router falls back
    on an error raised before the first chunk); end after the last chunk (no ``[DONE]`` object);
    when ``request.include_usage``, yield a final chunk with ``choices == []`` and ``usage`` set;
    raise an :mod:`inference_core.errors` class on a mid-stream failure, never end silently; and
    release the upstream response when closed early (``aclose``).
    """


@hookspec(firstresult=True)
async def complete(
    request: CompletionRequest, config: BackendConfig, http: httpx.AsyncClient
) -> CompletionResponse | AsyncIterator[CompletionResponse]:
    """Answer a legacy text completion (``/v1/completions``); optional.

    Same contract as :func:`chat`, with ``text_completion`` objects.  A backend without it is
    reported as ``CapabilityNotSupported`` and the router falls back.
    """


@hookspec(firstresult=True)
async def embed(
    request: EmbeddingRequest, config: BackendConfig, http: httpx.AsyncClient
) -> EmbeddingResponse:
    """Embed ``request.inputs``, returning one :class:`Embedding` per input in input order.

    Honour ``encoding_format`` (``"base64"``: little-endian float32 bytes, base64-encoded) and
    ``dimensions`` where the backend supports them; raise ``CapabilityNotSupported`` when the
    backend's server cannot embed (no pooling model, no ``--embeddings``).
    """


@hookspec(firstresult=True)
async def health(config: BackendConfig, http: httpx.AsyncClient) -> Health:
    """Report ``ready``, ``loading`` or ``down`` using the backend's real readiness signal.

    Never raise: turn every failure into ``Health(state="down", detail=...)``.  Never make a paid
    model call.  Core bounds the call with ``HEALTH_CHECK_TIMEOUT``.
    """


@hookspec(firstresult=True)
async def list_models(config: BackendConfig, http: httpx.AsyncClient) -> list[ModelInfo]:
    """List the models this backend can serve right now (ids as the backend names them)."""


@hookspec(firstresult=True)
async def startup(config: BackendConfig, http: httpx.AsyncClient) -> BackendConfig | None:
    """Prepare the backend when the router starts; optional.

    For backends that core runs itself (llama.cpp's embedded local default starts a managed
    ``llama-server`` here).  Return a replacement :class:`BackendConfig` (for example with
    ``base_urls`` pointing at the server just started) or ``None`` to keep ``config``.  Raising
    marks the backend as failed to start; the router reports it and goes on with the others.
    """


@hookspec(firstresult=True)
async def shutdown(config: BackendConfig) -> None:
    """Release what :func:`startup` acquired (stop a managed child process); optional.

    Called once when the router closes, after in-flight requests drained.  Never raise.
    """
