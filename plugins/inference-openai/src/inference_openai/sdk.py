"""The opt-in path through the official ``openai`` SDK (option ``client=sdk``).

One ``AsyncOpenAI`` per (core HTTP client, base URL, key, organization, project, timeouts), made on
first use and cached: openai >= 3 accepts a plain ``httpx.AsyncClient`` as ``http_client``
(besides its own ``httpx2`` clients), so every SDK client shares core's connection pool instead
of opening its own.  The SDK never closes that pool here (we never call ``close()`` on a cached
client; core owns the pool).  ``max_retries=0``: the router owns retries.  Organization and
project come from the options only (the SDK's own ``OPENAI_ORG_ID`` / ``OPENAI_PROJECT_ID``
environment fallback is switched off: settings is the one place that reads the environment, and
maps those two variables onto the options).

SDK exceptions map onto the taxonomy in :func:`map_error`.  The SDK cannot tell a stream that
ended with ``[DONE]`` from one cut short, so a stream that ends before any chunk carried a
``finish_reason`` is raised as ``BackendUnavailable`` (the raw relay checks ``[DONE]`` itself).
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from inference_core import (
    AuthenticationFailed,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    BadRequest,
    ConfigError,
    ContextLengthExceeded,
    ModelNotFound,
    RateLimited,
)
from inference_core.http import error_for_event, error_for_response, parse_retry_after
from inference_core.models import ChatChunk, ChatResponse, CompletionResponse, EmbeddingResponse

from .plugin import redact, refine, timeout_for

if TYPE_CHECKING:
    import httpx
    import openai

    from inference_core import BackendConfig

_CLIENTS: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], Any]] = weakref.WeakKeyDictionary()
_SDK_OWN = frozenset({"extra_headers", "extra_query", "extra_body", "timeout", "self"})
_PARAMS: dict[Any, frozenset[str]] = {}


def require_sdk() -> None:
    try:
        import openai  # noqa: F401
    except ImportError:
        raise ConfigError(
            "INFERENCE_OPENAI_CLIENT=sdk needs the openai package: "
            "pip install 'inference-openai[sdk]'",
            variable="INFERENCE_OPENAI_CLIENT",
        ) from None


def client_for(http: httpx.AsyncClient, config: BackendConfig) -> openai.AsyncOpenAI:
    """The cached ``AsyncOpenAI`` for this pool and this (base URL, key, org, project)."""
    require_sdk()
    import openai

    org = config.option("organization") or None
    project = config.option("project") or None
    key = (config.base_url, config.secret(), org, project, config.timeout, config.connect_timeout)
    per_pool = _CLIENTS.setdefault(http, {})
    client = per_pool.get(key)
    if client is None:
        secret = config.secret()
        client = openai.AsyncOpenAI(
            # a keyless OpenAI-compatible service: a placeholder the header never carries
            api_key=secret or "no-key",
            base_url=config.base_url,
            organization=org,
            project=project,
            max_retries=0,
            http_client=http,
            timeout=timeout_for(config),
        )
        client.organization = org  # no OPENAI_ORG_ID / OPENAI_PROJECT_ID fallback
        client.project = project
        per_pool[key] = client
    return client


def _split(method: Any, body: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for an SDK ``create``: known parameters, the rest in ``extra_body``."""
    func = getattr(method, "__func__", method)
    params = _PARAMS.get(func)
    if params is None:
        params = frozenset(inspect.signature(method).parameters) - _SDK_OWN
        _PARAMS[func] = params
    known = {k: v for k, v in body.items() if k in params}
    extra = {k: v for k, v in body.items() if k not in params}
    if extra:
        known["extra_body"] = extra
    return known


def _body_of(response: httpx.Response) -> bytes:
    """The error response's body, or b"" when it was not read."""
    import httpx

    try:
        return response.content
    except httpx.ResponseNotRead:
        return b""


def map_error(exc: BaseException, config: BackendConfig) -> BackendError:
    """An ``openai`` SDK exception as the inference-core taxonomy error."""
    import openai

    backend = config.name
    if isinstance(exc, openai.APITimeoutError):  # before APIConnectionError: a subclass of it
        return BackendTimeout("timed out talking to the backend", backend=backend)
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        return BackendUnavailable(f"cannot connect: {type(cause).__name__}", backend=backend)
    if isinstance(exc, openai.APIStatusError):
        message = exc.message or f"HTTP {exc.status_code}"
        if isinstance(exc, openai.RateLimitError):
            err: BackendError = RateLimited(
                message, backend=backend, retry_after=parse_retry_after(exc.response.headers)
            )
            return refine(err, config)  # type: ignore[return-value]
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            return AuthenticationFailed(redact(message), backend=backend)
        if isinstance(exc, openai.NotFoundError):
            if _body_of(exc.response):  # core's table: an unknown route is not an unknown model
                return error_for_response(
                    404, exc.response.content, exc.response.headers, backend=backend
                )
            return ModelNotFound(message, backend=backend)
        if isinstance(exc, openai.BadRequestError):
            # core's table (context-length markers included), as on the raw path
            if _body_of(exc.response):
                mapped = error_for_response(
                    exc.status_code, exc.response.content, exc.response.headers, backend=backend
                )
                return refine(mapped, config)  # type: ignore[return-value]
            if exc.code == "context_length_exceeded":
                return ContextLengthExceeded(message, backend=backend, param=exc.param)
            bad = BadRequest(message, backend=backend, param=exc.param, code=exc.code)
            return refine(bad, config)  # type: ignore[return-value]
        if exc.status_code >= 500:
            return BackendUnavailable(f"HTTP {exc.status_code}: {message}", backend=backend)
        return error_for_response(
            exc.status_code, exc.response.content, exc.response.headers, backend=backend
        )
    if isinstance(exc, openai.APIError):  # an in-band error event inside a stream
        if isinstance(exc.body, dict):
            return error_for_event(exc.body, backend=backend)
        return BackendUnavailable(f"error in the stream: {exc.message}", backend=backend)
    return BackendUnavailable(f"unexpected {type(exc).__name__}", backend=backend)


async def _call(config: BackendConfig, method: Any, kwargs: dict[str, Any]) -> Any:
    import openai

    if not config.secret():  # keyless service: send no Authorization header at all
        kwargs["extra_headers"] = {"Authorization": openai.Omit()}
    for attempt in (1, 2):
        try:
            return await method(**kwargs)
        except openai.APIConnectionError as exc:
            # A pooled connection the server had closed (llama.cpp does after every stream):
            # nothing was processed, so resend once on a fresh one, as core's send() does.
            if attempt == 1 and _stale(exc):
                continue
            raise map_error(exc, config) from None
        except openai.OpenAIError as exc:
            raise map_error(exc, config) from None
        except (ValueError, AttributeError, TypeError):  # a 200 whose body is no answer
            raise BackendUnavailable(
                "malformed JSON from the backend", backend=config.name
            ) from None
    raise AssertionError("unreachable")


def _stale(exc: BaseException) -> bool:
    """A *reused* connection closed before any byte (only core's lean transport can tell):
    a fresh connection's failure is never resent (the backend may have the request)."""
    from inference_core.http.transport import StaleConnection

    return isinstance(exc.__cause__, StaleConnection)


async def _relay(stream: Any, model: type[Any], config: BackendConfig) -> AsyncIterator[Any]:
    import openai

    finished = False
    try:
        async for item in stream:
            converted = _convert(model, item, config)
            if any(c.finish_reason for c in converted.choices):
                finished = True
            yield converted
        if not finished:
            raise BackendUnavailable("the stream ended before its last chunk", backend=config.name)
    except openai.OpenAIError as exc:
        raise map_error(exc, config) from None
    finally:
        await stream.close()


def _convert(model: type[Any], result: Any, config: BackendConfig) -> Any:
    """An SDK object as our wire type; anything else (HTML, junk) is ``BackendUnavailable``."""
    from pydantic import ValidationError

    try:
        return model.model_validate(result.to_dict(warnings=False))
    except (AttributeError, ValidationError):
        snippet = str(result)[:80]
        raise BackendUnavailable(
            f"malformed {model.__name__} from the backend: {snippet!r}", backend=config.name
        ) from None


async def chat(
    http: httpx.AsyncClient, config: BackendConfig, body: dict[str, Any]
) -> ChatResponse | AsyncIterator[ChatChunk]:
    create = client_for(http, config).chat.completions.create
    result = await _call(config, create, _split(create, body))
    if body.get("stream"):
        return _relay(result, ChatChunk, config)
    return _convert(ChatResponse, result, config)


async def complete(
    http: httpx.AsyncClient, config: BackendConfig, body: dict[str, Any]
) -> CompletionResponse | AsyncIterator[CompletionResponse]:
    create = client_for(http, config).completions.create
    result = await _call(config, create, _split(create, body))
    if body.get("stream"):
        return _relay(result, CompletionResponse, config)
    return _convert(CompletionResponse, result, config)


async def embed(
    http: httpx.AsyncClient, config: BackendConfig, body: dict[str, Any]
) -> EmbeddingResponse:
    create = client_for(http, config).embeddings.create
    result = await _call(config, create, _split(create, body))
    return _convert(EmbeddingResponse, result, config)
