"""The hooks of the ``ollama`` backend (registered as a module: ``inference_ollama:plugin``)."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from inference_core import (
    BackendConfig,
    BackendError,
    BackendUnavailable,
    CapabilityNotSupported,
    Health,
    InferenceError,
    ModelInfo,
    hookimpl,
)
from inference_core.http import (
    error_for_event,
    error_for_exception,
    iter_ndjson,
    openai_compat,
    send,
)

from . import translate

if TYPE_CHECKING:
    from inference_core import (
        ChatChunk,
        ChatRequest,
        ChatResponse,
        EmbeddingRequest,
        EmbeddingResponse,
    )

#: A stream is not resumed here: whether /api/chat continues a final assistant message depends
#: on each model's TEMPLATE (it must leave the last assistant message open), unknowable here.
continue_final_message = False

#: Seconds allowed for the first byte of an answer: a cold model load can take minutes.
DEFAULT_LOAD_TIMEOUT = 300.0


def _load_timeout(config: BackendConfig) -> float:
    return config.option_float("load_timeout", DEFAULT_LOAD_TIMEOUT, positive=True)


def _timeout(config: BackendConfig) -> httpx.Timeout:
    """Generous reads (a cold load precedes the first byte); the router bounds the first token."""
    return httpx.Timeout(max(config.timeout, _load_timeout(config)), connect=config.connect_timeout)


def _refine(exc: BackendError, config: BackendConfig) -> BackendError:
    """Ollama's "does not support embeddings/chat/tools" is a capability the model lacks."""
    if "does not support" in exc.message.lower():
        return CapabilityNotSupported(exc.message, backend=config.name)
    return exc


async def _post(
    http: httpx.AsyncClient, config: BackendConfig, path: str, body: dict[str, Any], stream: bool
) -> httpx.Response:
    try:
        return await send(
            http,
            "POST",
            openai_compat.url_for(config, path),
            backend=config.name,
            body=body,
            headers=openai_compat.auth_headers(config),
            timeout=_timeout(config),
            stream=stream,
        )
    except BackendError as exc:
        raise _refine(exc, config) from None


def _json(raw: bytes, config: BackendConfig, what: str) -> dict[str, Any]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        snippet = raw[:80].decode("utf-8", "replace")
        raise BackendUnavailable(f"malformed {what} from Ollama: {snippet!r}", backend=config.name)
    if "error" in data:
        raise error_for_event(data["error"], backend=config.name)
    return data


async def _stream(
    response: httpx.Response, config: BackendConfig, include_usage: bool
) -> AsyncIterator[ChatChunk]:
    """Translate an NDJSON ``/api/chat`` stream; never end silently, always release the body."""
    translator = translate.StreamTranslator(include_usage=include_usage)
    try:
        async for line in iter_ndjson(response.aiter_bytes()):  # decoded: we translate
            for chunk in translator.feed(_json(line, config, "stream line")):
                yield chunk
            if translator.done:
                return
        raise BackendUnavailable(
            'the stream ended before its "done": true line (truncated)', backend=config.name
        )
    except (httpx.HTTPError, OSError) as exc:
        raise error_for_exception(exc, backend=config.name) from None
    finally:
        await response.aclose()


# --------------------------------------------------------------------------------------- hooks


@hookimpl
async def chat(
    request: ChatRequest, config: BackendConfig, http: httpx.AsyncClient
) -> ChatResponse | AsyncIterator[ChatChunk]:
    """``POST /api/chat``, translated both ways; NDJSON streams become OpenAI chunks."""
    body = translate.chat_body(request, config)
    response = await _post(http, config, "/api/chat", body, request.stream)
    if request.stream:
        return _stream(response, config, request.include_usage)
    return translate.chat_response(_json(response.content, config, "chat answer"))


@hookimpl
async def embed(
    request: EmbeddingRequest, config: BackendConfig, http: httpx.AsyncClient
) -> EmbeddingResponse:
    """``POST /api/embed`` with every input in one call (never the superseded /api/embeddings)."""
    body = translate.embed_body(request, config)
    response = await _post(http, config, "/api/embed", body, False)
    data = _json(response.content, config, "embed answer")
    result = translate.embedding_response(data, request, body["model"])
    if len(result.data) != len(request.inputs):
        raise BackendUnavailable(
            f"Ollama returned {len(result.data)} embeddings for {len(request.inputs)} inputs",
            backend=config.name,
        )
    return result


async def _tags(http: httpx.AsyncClient, config: BackendConfig, timeout: Any = None):
    response = await send(
        http,
        "GET",
        openai_compat.url_for(config, "/api/tags"),
        backend=config.name,
        headers=openai_compat.auth_headers(config),
        timeout=timeout,
    )
    entries = _json(response.content, config, "model list").get("models") or []
    return [e for e in entries if isinstance(e, dict)]


@hookimpl
async def list_models(config: BackendConfig, http: httpx.AsyncClient) -> list[ModelInfo]:
    """The pulled models (``GET /api/tags``)."""
    return [translate.model_info(e, config.name) for e in await _tags(http, config)]


@hookimpl
async def health(config: BackendConfig, http: httpx.AsyncClient) -> Health:
    """``GET /api/version`` (Ollama has no /health), then: is the configured model pulled?"""
    started = time.perf_counter()
    try:
        response = await send(
            http,
            "GET",
            openai_compat.url_for(config, "/api/version"),
            backend=config.name,
            headers=openai_compat.auth_headers(config),
        )
        version = _json(response.content, config, "version").get("version")
        models = [translate.model_info(e, config.name).id for e in await _tags(http, config)]
    except InferenceError as exc:
        return Health(state="down", detail=exc.message)
    except Exception as exc:  # health never raises
        return Health(state="down", detail=error_for_exception(exc, backend=None).message)
    latency = round((time.perf_counter() - started) * 1000, 2)
    wanted = config.model
    if wanted and not any(translate.same_model(wanted, m) for m in models):
        return Health(
            state="down",
            detail=f"model not pulled: {wanted} (run `ollama pull {wanted}`)",
            latency_ms=latency,
            models=models,
        )
    return Health(state="ready", detail=f"Ollama {version}", latency_ms=latency, models=models)


@hookimpl
async def startup(config: BackendConfig) -> BackendConfig | None:
    """Validate the options; ``NUM_CTX`` becomes ``context_length`` for the router's fallback;
    Ollama's parallelism (``NUM_PARALLEL``, else ``OLLAMA_NUM_PARALLEL``, the variable the
    Ollama server itself reads) becomes ``max_concurrency``, the router's admission cap, unless
    ``MAX_CONCURRENCY`` is set (Ollama's API does not say how many requests it runs at once)."""
    _load_timeout(config)
    translate.keep_alive_value(config.option("keep_alive"))
    translate._caps(config)  # a bad MAX_* is a start-up error, not a per-request one
    options = dict(config.options)
    num_ctx = config.option_int("num_ctx", minimum=1)
    if num_ctx is not None and not config.option("context_length"):
        options["context_length"] = str(num_ctx)
    if not config.option("max_concurrency"):
        parallel = config.option_int("num_parallel", minimum=1)
        if parallel is None:
            raw = os.environ.get("OLLAMA_NUM_PARALLEL", "").strip()
            parallel = int(raw) if raw.isdigit() and int(raw) > 0 else None
        if parallel is not None:
            options["max_concurrency"] = str(parallel)
    if options == dict(config.options):
        return None
    return config.model_copy(update={"options": options})
