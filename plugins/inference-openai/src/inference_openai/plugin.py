"""The hooks of the ``openai`` backend (registered as a module: ``inference_openai:plugin``)."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx

from inference_core import (
    AuthenticationFailed,
    BackendConfig,
    BackendError,
    ConfigError,
    Health,
    ModelInfo,
    RateLimited,
    hookimpl,
)
from inference_core.http import error_for_exception, openai_compat
from inference_core.models import (
    ChatChunk,
    ChatResponse,
    CompletionResponse,
    EmbeddingResponse,
)

if TYPE_CHECKING:
    from inference_core import ChatRequest, CompletionRequest, EmbeddingRequest

OFFICIAL_HOST = "api.openai.com"
CLIENTS = ("raw", "sdk")
#: The OpenAI API answers a final assistant message with a new message, never continues it:
#: a cut chat stream is not resumed here (completions, which continue any text, still are).
continue_final_message = False


# ------------------------------------------------------------------------------------ helpers


def needs_key(config: BackendConfig) -> bool:
    """True when the base URL is the official API, where every call needs a key."""
    return OFFICIAL_HOST in (config.base_url or "")


def missing_key(config: BackendConfig) -> AuthenticationFailed | None:
    """The error for a call that cannot succeed because no key is configured, else None."""
    if config.api_key is None and needs_key(config):
        return AuthenticationFailed(
            "no API key is configured: set OPENAI_API_KEY or INFERENCE_OPENAI_API_KEY",
            backend=config.name,
        )
    return None


def extra_headers(config: BackendConfig) -> dict[str, str]:
    """``OpenAI-Organization`` / ``OpenAI-Project`` from the options, when set."""
    headers = {}
    org = config.option("organization")
    project = config.option("project")
    if org:
        headers["openai-organization"] = org
    if project:
        headers["openai-project"] = project
    return headers


def client_kind(config: BackendConfig) -> str:
    kind = (config.option("client") or "raw").strip().lower()
    if kind not in CLIENTS:
        var = f"INFERENCE_{config.name.upper()}_CLIENT"
        raise ConfigError(f"{var}={kind!r}: accepted values are raw, sdk", variable=var)
    return kind


def timeout_for(config: BackendConfig) -> httpx.Timeout:
    """Per-request timeout: ``TIMEOUT`` between reads, ``CONNECT_TIMEOUT`` to connect."""
    return httpx.Timeout(config.timeout, connect=config.connect_timeout)


def insufficient_quota(exc: RateLimited) -> bool:
    return "insufficient_quota" in exc.message or "exceeded your current quota" in exc.message


_KEY_LIKE = re.compile(r"\b(sk-|key-)[A-Za-z0-9_*\-]{4,}")


def redact(message: str) -> str:
    """Hide key fragments a service echoes ("Incorrect API key provided: sk-ab***wxyz")."""
    return _KEY_LIKE.sub(r"\1****", message)


def refine(exc: Exception, config: BackendConfig) -> Exception:
    """Refinements of core's mapping for what OpenAI-compatible services say.

    Echoed key fragments are redacted; a billing 429 (``insufficient_quota``) is not a load
    429.  (vLLM's "max_tokens ... cannot be greater than max_model_len" is a context limit
    for core's mapping already, on both the raw and the SDK path.)
    """
    if isinstance(exc, BackendError) and _KEY_LIKE.search(exc.message):
        exc.message = redact(exc.message)
        exc.args = (exc.message,)
    if isinstance(exc, RateLimited) and insufficient_quota(exc):
        return AuthenticationFailed(
            f"insufficient quota (billing): {exc.message}", backend=config.name
        )
    return exc


async def _send(
    http: httpx.AsyncClient,
    config: BackendConfig,
    path: str,
    body: dict[str, Any] | None,
    *,
    stream: bool = False,
    method: str = "POST",
) -> httpx.Response:
    try:
        return await openai_compat.send(
            http,
            method,
            openai_compat.url_for(config, path),
            backend=config.name,
            body=body,
            headers={**openai_compat.auth_headers(config), **extra_headers(config)},
            timeout=timeout_for(config),
            stream=stream,
        )
    except BackendError as exc:
        raise refine(exc, config) from None


def _body(request: Any, config: BackendConfig) -> dict[str, Any]:
    if (err := missing_key(config)) is not None:
        raise err
    return openai_compat.request_body(request, config)


def embed_model_for(config: BackendConfig, requested: str | None) -> str:
    """The embeddings model: an alias entry, the requested name, or for ``default`` the
    ``EMBED_MODEL`` option (else the backend's default model)."""
    return config.model_for(requested, default=config.option("embed_model"))


# --------------------------------------------------------------------------------------- hooks


@hookimpl
async def chat(
    request: ChatRequest, config: BackendConfig, http: httpx.AsyncClient
) -> ChatResponse | AsyncIterator[ChatChunk]:
    """``POST {base}/chat/completions``; a stream is relayed chunk by chunk, bytes kept."""
    body = _body(request, config)
    if client_kind(config) == "sdk":
        from . import sdk

        return await sdk.chat(http, config, body)
    response = await _send(http, config, "/chat/completions", body, stream=request.stream)
    if request.stream:
        return openai_compat.relay_sse(response, ChatChunk, backend=config.name)
    return openai_compat.parse(ChatResponse, response.content, backend=config.name)


@hookimpl
async def complete(
    request: CompletionRequest, config: BackendConfig, http: httpx.AsyncClient
) -> CompletionResponse | AsyncIterator[CompletionResponse]:
    """``POST {base}/completions`` (legacy; ``gpt-3.5-turbo-instruct`` and compatible servers)."""
    body = _body(request, config)
    if client_kind(config) == "sdk":
        from . import sdk

        return await sdk.complete(http, config, body)
    response = await _send(http, config, "/completions", body, stream=request.stream)
    if request.stream:
        return openai_compat.relay_sse(response, CompletionResponse, backend=config.name)
    return openai_compat.parse(CompletionResponse, response.content, backend=config.name)


@hookimpl
async def embed(
    request: EmbeddingRequest, config: BackendConfig, http: httpx.AsyncClient
) -> EmbeddingResponse:
    """``POST {base}/embeddings``; ``encoding_format`` and ``dimensions`` go through as asked."""
    body = _body(request, config)
    body["model"] = embed_model_for(config, request.model)
    if client_kind(config) == "sdk":
        from . import sdk

        result = await sdk.embed(http, config, body)
    else:
        response = await _send(http, config, "/embeddings", body)
        result = openai_compat.parse(EmbeddingResponse, response.content, backend=config.name)
    return openai_compat.embeddings_in_order(result, len(request.inputs), backend=config.name)


@hookimpl
async def list_models(config: BackendConfig, http: httpx.AsyncClient) -> list[ModelInfo]:
    """``GET {base}/models``, each model tagged with this backend's name."""
    if (err := missing_key(config)) is not None:
        raise err
    try:
        return await openai_compat.list_models(
            http, config, path="/models", headers=extra_headers(config)
        )
    except BackendError as exc:
        raise refine(exc, config) from None


@hookimpl
async def health(config: BackendConfig, http: httpx.AsyncClient) -> Health:
    """``GET {base}/models`` with the key: free, and proves the key works. Never raises."""
    try:
        if (err := missing_key(config)) is not None:
            return Health(state="down", detail=err.message)
        client_kind(config)
    except ConfigError as exc:
        return Health(state="down", detail=exc.message)
    started = time.perf_counter()
    try:
        models = await list_models(config=config, http=http)
    except Exception as exc:  # health never raises
        message = getattr(exc, "message", None) or error_for_exception(exc, backend=None).message
        return Health(state="down", detail=message)
    ids = [m.id for m in models]
    latency = round((time.perf_counter() - started) * 1000, 2)
    wanted = config.model
    if wanted and ids and wanted not in ids:
        return Health(
            state="down",
            detail=f"the configured model {wanted!r} is not offered by this service",
            latency_ms=latency,
            models=ids,
        )
    return Health(state="ready", latency_ms=latency, models=ids)


@hookimpl
async def startup(config: BackendConfig) -> None:
    """Validate ``CLIENT`` early, so that a typo fails at start-up."""
    if client_kind(config) == "sdk":
        from . import sdk

        sdk.require_sdk()
