"""Helpers for backends whose server speaks the OpenAI HTTP API (vLLM, llama.cpp, textgen, ...).

A plugin for such a server is a handful of lines: each hook calls the helper of the same name
with its own paths and headers.  The helpers map every failure onto the error taxonomy, resend
once a request that died on a stale pooled connection, and keep each response's raw bytes so
the gateway can relay them without serialising again.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from functools import partial
from typing import Any, TypeVar

import httpx
import orjson
from pydantic import ValidationError

from ..errors import BackendError, BackendUnavailable
from ..models import (
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
    WireModel,
)
from .errors import error_for_event, error_for_exception, error_for_response
from .streams import MAX_BODY_BYTES, MAX_ERROR_BODY_BYTES, iter_sse_data
from .transport import FastHTTPTransport, StaleConnection, request_bytes, request_head

__all__ = [
    "auth_headers",
    "chat",
    "complete",
    "config_timeout",
    "embed",
    "embeddings_in_order",
    "list_models",
    "probe_health",
    "request_body",
    "send",
]

W = TypeVar("W", bound=WireModel)


_URLS: dict[str, httpx.URL] = {}


def auth_headers(config: BackendConfig) -> dict[str, str]:
    """``Authorization: Bearer <key>`` when the backend has an API key, else nothing."""
    key = config.secret()
    return {"authorization": f"Bearer {key}"} if key else {}


def request_body(request: WireModel, config: BackendConfig) -> dict[str, Any]:
    """The JSON body for the backend: the request's fields (extras included), model mapped."""
    body = request.model_dump(exclude_none=True)
    body["model"] = config.model_for(body.get("model"))
    return body


def url_for(config: BackendConfig, path: str) -> str:
    """``config.base_url`` joined with ``path`` (a missing base URL is a config mistake).

    A base URL that ends in ``/v1`` joined with a path that starts with ``/v1/`` gives one
    ``/v1``, never ``/v1/v1/...`` (both ways of writing the URL work).
    """
    base = config.base_url
    if not base:
        raise BackendUnavailable("no base URL is configured", backend=config.name)
    if path.startswith("/v1/") and base.endswith("/v1"):
        return base + path[3:]
    return base + path


async def send(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    backend: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | httpx.Timeout | None = None,
    stream: bool = False,
) -> httpx.Response:
    """Send one request; return a 2xx response or raise the mapped taxonomy error.

    A request that fails on a *reused* keep-alive connection before any byte came back (the
    server had closed it; llama.cpp does so after every stream) is resent once at once: nothing
    was processed, so this is not a retry and does not count against the backend.  Only the
    lean transport can tell (:class:`~inference_core.http.transport.StaleConnection`); any other
    failure, a fresh connection closed before the answer included, is never resent here.  With
    ``stream=True`` the caller owns the returned response and must ``aclose()`` it.
    """
    content = orjson.dumps(body) if body is not None else None
    hdrs = {"content-type": "application/json", **(headers or {})} if content else headers
    t = timeout if timeout is not None else http.timeout
    if not isinstance(t, httpx.Timeout):
        t = httpx.Timeout(t)
    extensions = {"timeout": _timeout_dict(t)}
    # Hot path: hand the request to the transport the client would pick, skipping
    # AsyncClient.send's layers (URL merge and parse, cookie jar extraction on every response,
    # auth and redirect wrappers, event hooks): about -190 us of CPU per request and -150 us at
    # c=1 in the gateway benchmark (docs/benchmarks.md).  On the lean transport the request's
    # bytes are written directly (its head cached per client, URL and headers): building an
    # httpx.Request cost 13 us more.  The client's own headers (user-agent, accept-encoding:
    # identity) and timeout still apply.
    target = _URLS.get(url)
    if target is None:
        if len(_URLS) > 4096:
            _URLS.clear()
        target = _URLS[url] = httpx.URL(url)
    pick = getattr(http, "_transport_for_url", None)  # httpx private API: fall back if it goes
    transport = pick(target) if pick is not None else None
    if transport.__class__ is FastHTTPTransport:
        head, merged = _head(http, method, url, target, hdrs, backend)
        payload = request_bytes(head, method, content)

        def exchange() -> Awaitable[httpx.Response]:
            return transport.exchange(
                target, payload, extensions,
                partial(httpx.Request, method, target, content=content, headers=merged,
                        extensions=extensions),
            )  # fmt: skip
    else:
        merged = dict(http.headers)
        if hdrs:
            merged.update(hdrs)
        request = httpx.Request(
            method, target, content=content, headers=merged, extensions=extensions
        )

        async def exchange() -> httpx.Response:
            if transport is None:  # pragma: no cover - only on an httpx without the helper
                return await http.send(request, stream=True)
            response = await transport.handle_async_request(request)
            response.request = request
            return response

    for attempt in (1, 2):
        try:
            response = await exchange()
            break
        except StaleConnection as exc:
            if attempt == 1:  # a reused connection the server had closed: nothing processed
                continue
            raise error_for_exception(exc, backend=backend) from None
        except (httpx.HTTPError, OSError) as exc:
            raise error_for_exception(exc, backend=backend) from None
    if response.status_code >= 300:
        try:
            raw = await read_capped(response, MAX_ERROR_BODY_BYTES, backend=backend, cut=True)
        except (httpx.HTTPError, OSError):
            raw = b""
        finally:
            await response.aclose()
        raise error_for_response(response.status_code, raw, response.headers, backend=backend)
    if not stream:
        try:
            await read_capped(response, MAX_BODY_BYTES, backend=backend)
        except (httpx.HTTPError, OSError) as exc:
            raise error_for_exception(exc, backend=backend) from None
        finally:
            await response.aclose()
    return response


_HEADS: dict[tuple[Any, ...], tuple[httpx.AsyncClient, bytes, dict[str, str]]] = {}
_TIMEOUT_DICTS: dict[int, tuple[httpx.Timeout, dict[str, float | None]]] = {}


def _head(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    target: httpx.URL,
    headers: Mapping[str, str] | None,
    backend: str,
) -> tuple[bytes, dict[str, str]]:
    """The request line and headers (without ``content-length`` and the blank line) that
    ``http`` would send for ``method url`` (parsed: ``target``) with ``headers``, and the
    merged header dict.

    Cached per client, method, URL and headers: the client's own headers are read when a
    combination is first sent (the shared client's are set once, at start-up).  As httpx does:
    a header given for the request replaces the client's header of the same name, ``host``
    defaults to the URL's, and names and values are ASCII.  A line break, NUL or non-ASCII
    character in a name or value (a bad API key in the environment) is ``BackendUnavailable``
    naming the header (never its value), and nothing is written.
    """
    key = (id(http), method, url, tuple(headers.items()) if headers else None)
    cached = _HEADS.get(key)
    if cached is not None and cached[0] is http:
        return cached[1], cached[2]
    merged = {name.lower(): value for name, value in http.headers.items()}
    for name, value in (headers or {}).items():
        merged[name.lower()] = value
    for name, value in merged.items():  # never let a value end the header early
        text = f"{name}{value}"
        if not text.isascii() or any(c in text for c in "\r\n\0"):
            raise BackendUnavailable(
                f"the header {name!r} for the backend is not plain ASCII text "
                "(a line break, NUL or non-ASCII character)",
                backend=backend,
            )
    head = request_head(method, target, ((n.encode(), str(v).encode()) for n, v in merged.items()))
    if len(_HEADS) > 1024:
        _HEADS.clear()
    _HEADS[key] = (http, head, merged)
    return head, merged


def _timeout_dict(timeout: httpx.Timeout) -> dict[str, float | None]:
    """``timeout.as_dict()``, once per ``Timeout`` object (they are cached per backend)."""
    cached = _TIMEOUT_DICTS.get(id(timeout))
    if cached is not None and cached[0] is timeout:
        return cached[1]
    if len(_TIMEOUT_DICTS) > 256:
        _TIMEOUT_DICTS.clear()
    value = timeout.as_dict()
    _TIMEOUT_DICTS[id(timeout)] = (timeout, value)
    return value


async def read_capped(
    response: httpx.Response, limit: int, *, backend: str, cut: bool = False
) -> bytes:
    """Read ``response``'s body into ``response.content``, at most ``limit`` bytes.

    A longer body raises ``BackendUnavailable`` (a backend gone wrong must not fill the
    gateway's memory), or with ``cut`` is truncated (error bodies: the start is what counts).
    """
    lookup = getattr(response, "raw_header", None)  # the lean transport's: no Headers built
    declared = lookup(b"content-length") if lookup else response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit and not cut:
        raise BackendUnavailable(
            f"the backend's answer is {declared} bytes, above the {limit}-byte limit",
            backend=backend,
        )
    parts: list[bytes] = []
    size = 0
    if hasattr(response, "_content"):  # already read (a test transport built it whole)
        body = response.content
        if len(body) > limit and not cut:
            raise BackendUnavailable(
                f"the backend's answer is larger than the {limit}-byte limit", backend=backend
            )
        return body[:limit] if cut else body
    async for chunk in response.aiter_raw():
        size += len(chunk)
        if size > limit:
            if cut:
                parts.append(chunk[: len(chunk) - (size - limit)])
                break
            raise BackendUnavailable(
                f"the backend's answer is larger than the {limit}-byte limit", backend=backend
            )
        parts.append(chunk)
    body = b"".join(parts)
    response._content = body  # what aread() would have set (httpx keeps the body there)
    return body


def parse(model: type[W], raw: bytes, *, backend: str) -> W:
    """Validate a backend's JSON answer; garbage becomes ``BackendUnavailable`` (fall back)."""
    try:
        return model.from_raw(raw)
    except (ValidationError, ValueError):
        snippet = raw[:80].decode("utf-8", "replace")
        raise BackendUnavailable(
            f"malformed {model.__name__} from the backend: {snippet!r}", backend=backend
        ) from None


async def relay_sse(response: httpx.Response, model: type[W], *, backend: str) -> AsyncIterator[W]:
    """Yield each SSE payload of ``response`` as ``model`` (raw bytes kept) until ``[DONE]``.

    An in-band ``{"error": ...}`` event raises the mapped error; a stream that ends without
    ``[DONE]`` raises ``BackendUnavailable`` (a truncated stream is never passed off as done).
    The response is closed however the iteration ends.
    """
    try:
        async for data in iter_sse_data(response.aiter_bytes()):
            if data == b"[DONE]":
                return
            if data.startswith(b'{"error"') or (
                b'"error"' in data[:40] and b'"choices"' not in data
            ):
                try:
                    payload = orjson.loads(data)
                except orjson.JSONDecodeError:
                    payload = None
                if isinstance(payload, dict) and "error" in payload:
                    raise error_for_event(payload["error"], backend=backend)
            yield parse(model, data, backend=backend)
        raise BackendUnavailable("the stream ended before [DONE]", backend=backend)
    except (httpx.HTTPError, OSError) as exc:
        raise error_for_exception(exc, backend=backend) from None
    finally:
        await response.aclose()


_TIMEOUTS: dict[tuple[float, float], httpx.Timeout] = {}


def config_timeout(config: BackendConfig) -> httpx.Timeout:
    """The backend's own timeouts: ``connect_timeout`` to connect (and to wait for a pooled
    connection), ``timeout`` between two reads.  Cached: one object per distinct pair."""
    key = (config.timeout, config.connect_timeout)
    t = _TIMEOUTS.get(key)
    if t is None:
        if len(_TIMEOUTS) > 256:
            _TIMEOUTS.clear()
        t = _TIMEOUTS[key] = httpx.Timeout(
            config.timeout, connect=config.connect_timeout, pool=config.connect_timeout
        )
    return t


async def _post(
    http: httpx.AsyncClient,
    config: BackendConfig,
    path: str,
    body: dict[str, Any],
    headers: Mapping[str, str] | None,
    stream: bool,
) -> httpx.Response:
    return await send(
        http,
        "POST",
        url_for(config, path),
        backend=config.name,
        body=body,
        headers={**auth_headers(config), **(headers or {})},
        timeout=config_timeout(config),
        stream=stream,
    )


async def chat(
    http: httpx.AsyncClient,
    config: BackendConfig,
    request: ChatRequest,
    *,
    path: str = "/v1/chat/completions",
    headers: Mapping[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> ChatResponse | AsyncIterator[ChatChunk]:
    """POST a chat completion; a :class:`ChatResponse`, or a chunk iterator when streaming.

    ``body`` replaces :func:`request_body`'s default (for a plugin that must adjust fields).
    For a stream, this returns once the backend has answered with a 2xx status, so a refusal
    is raised here, where the router can still fall back.
    """
    payload = body if body is not None else request_body(request, config)
    response = await _post(http, config, path, payload, headers, request.stream)
    if request.stream:
        return relay_sse(response, ChatChunk, backend=config.name)
    return parse(ChatResponse, response.content, backend=config.name)


async def complete(
    http: httpx.AsyncClient,
    config: BackendConfig,
    request: CompletionRequest,
    *,
    path: str = "/v1/completions",
    headers: Mapping[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> CompletionResponse | AsyncIterator[CompletionResponse]:
    """POST a legacy completion; same contract as :func:`chat`."""
    payload = body if body is not None else request_body(request, config)
    response = await _post(http, config, path, payload, headers, request.stream)
    if request.stream:
        return relay_sse(response, CompletionResponse, backend=config.name)
    return parse(CompletionResponse, response.content, backend=config.name)


async def embed(
    http: httpx.AsyncClient,
    config: BackendConfig,
    request: EmbeddingRequest,
    *,
    path: str = "/v1/embeddings",
    headers: Mapping[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> EmbeddingResponse:
    """POST an embeddings request; the response keeps the backend's order and encoding."""
    payload = body if body is not None else request_body(request, config)
    response = await _post(http, config, path, payload, headers, False)
    result = parse(EmbeddingResponse, response.content, backend=config.name)
    return embeddings_in_order(result, len(request.inputs), backend=config.name)


def embeddings_in_order(
    result: EmbeddingResponse, count: int, *, backend: str
) -> EmbeddingResponse:
    """``result`` with exactly ``count`` embeddings, each placed by its ``index`` (0..n-1).

    A server may answer out of order: the ``index`` of each item, not its position, says which
    input it belongs to.  A count mismatch or indexes that are not 0..n-1 raise
    ``BackendUnavailable``.
    """
    if len(result.data) != count:
        raise BackendUnavailable(
            f"the backend returned {len(result.data)} embeddings for {count} inputs",
            backend=backend,
        )
    indexes = [item.index for item in result.data]
    if indexes != list(range(count)):
        if sorted(indexes) != list(range(count)):
            raise BackendUnavailable(
                f"the backend's embedding indexes {indexes[:8]} are not 0..{count - 1}",
                backend=backend,
            )
        result.data.sort(key=lambda item: item.index)
        result.drop_raw()
    return result


async def list_models(
    http: httpx.AsyncClient,
    config: BackendConfig,
    *,
    path: str = "/v1/models",
    headers: Mapping[str, str] | None = None,
) -> list[ModelInfo]:
    """GET the backend's model list (``{"data": [...]}``), each tagged with the backend name."""
    response = await send(
        http,
        "GET",
        url_for(config, path),
        backend=config.name,
        headers={**auth_headers(config), **(headers or {})},
        timeout=config_timeout(config),
    )
    try:
        items = orjson.loads(response.content).get("data") or []
        return [
            ModelInfo.model_validate({**item, "backend": config.name})
            for item in items
            if isinstance(item, dict)
        ]
    except (orjson.JSONDecodeError, AttributeError, ValidationError):
        raise BackendUnavailable(
            "malformed model list from the backend", backend=config.name
        ) from None


async def probe_health(
    http: httpx.AsyncClient,
    config: BackendConfig,
    *,
    path: str = "/health",
    headers: Mapping[str, str] | None = None,
    timeout: float | None = None,
    classify: Callable[[httpx.Response], Health | None] | None = None,
) -> Health:
    """GET a readiness endpoint and turn the answer into a :class:`Health`. Never raises.

    2xx is ``ready``; anything else is ``down`` unless ``classify`` (called on every response)
    returns a verdict first, e.g. llama.cpp's 503 ``Loading model`` as ``loading``.
    """
    started = time.perf_counter()
    try:
        url = url_for(config, path)
        request = http.build_request(
            "GET", url, headers={**auth_headers(config), **(headers or {})}
        )
        if timeout is not None:
            request.extensions["timeout"] = httpx.Timeout(timeout).as_dict()
        response = await http.send(request)
    except BackendError as exc:
        return Health(state="down", detail=exc.message)
    except (httpx.HTTPError, OSError) as exc:
        return Health(state="down", detail=error_for_exception(exc, backend=config.name).message)
    latency = round((time.perf_counter() - started) * 1000, 2)
    verdict = classify(response) if classify else None
    if verdict is not None:
        if verdict.latency_ms is None:
            verdict.latency_ms = latency
        return verdict
    if response.is_success:
        return Health(state="ready", latency_ms=latency)
    error = error_for_response(
        response.status_code, response.content, response.headers, backend=config.name
    )
    return Health(state="down", detail=error.message, latency_ms=latency)
