"""The hooks of the ``textgen`` backend, on one :class:`TextgenPlugin` instance."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from inference_core import (
    BackendConfig,
    BackendUnavailable,
    BadRequest,
    CapabilityNotSupported,
    ConfigError,
    Health,
    InferenceError,
    ModelInfo,
    hookimpl,
)
from inference_core.http import error_for_exception, openai_compat, send

if TYPE_CHECKING:
    from inference_core import (
        ChatChunk,
        ChatRequest,
        ChatResponse,
        CompletionRequest,
        CompletionResponse,
        EmbeddingRequest,
        EmbeddingResponse,
    )

DEFAULT_LOAD_TIMEOUT = 600.0
DEFAULT_INFO_TTL = 5.0
LIST_TTL = 30.0
NO_MODEL = "None"  # what /v1/internal/model/info says when nothing is loaded


def _admin_headers(config: BackendConfig) -> dict[str, str]:
    key = config.option("admin_key") or config.secret()
    return {"authorization": f"Bearer {key}"} if key else {}


def _refuse_n_stream(request: Any, config: BackendConfig) -> None:
    if request.stream and (request.n or 1) > 1:
        raise BadRequest(
            "text-generation-webui cannot stream more than one choice (n > 1 with stream)",
            backend=config.name,
            param="n",
        )


class TextgenPlugin:
    """Hook implementations plus the per-server state they share (loaded model, load locks)."""

    #: its OpenAI layer has no documented way to continue a final assistant message
    continue_final_message = False

    def __init__(self) -> None:
        self._info: dict[str, tuple[float, str | None]] = {}  # base URL -> (time, loaded)
        self._available: dict[str, tuple[float, list[str]]] = {}
        self._locks: weakref.WeakKeyDictionary[Any, dict[str, asyncio.Lock]] = (
            weakref.WeakKeyDictionary()
        )

    # ------------------------------------------------------------------------ internal API

    async def loaded_model(
        self, http: httpx.AsyncClient, config: BackendConfig, *, fresh: bool = False
    ) -> str | None:
        """The loaded model's name (``/v1/internal/model/info``, cached ``MODEL_INFO_TTL`` s)."""
        key = config.base_url or ""
        cached = self._info.get(key)
        ttl = config.option_float("model_info_ttl", DEFAULT_INFO_TTL, minimum=0)
        if cached and not fresh and time.monotonic() - cached[0] < ttl:
            return cached[1]
        response = await send(
            http,
            "GET",
            openai_compat.url_for(config, "/v1/internal/model/info"),
            backend=config.name,
            headers=openai_compat.auth_headers(config),
        )
        name = _field(response.content, "model_name", config)
        loaded = name if isinstance(name, str) and name and name != NO_MODEL else None
        self._info[key] = (time.monotonic(), loaded)
        return loaded

    async def available_models(
        self, http: httpx.AsyncClient, config: BackendConfig, *, fresh: bool = False
    ) -> list[str]:
        """Every model the server could load (admin ``/v1/internal/model/list``, cached)."""
        key = config.base_url or ""
        cached = self._available.get(key)
        if cached and not fresh and time.monotonic() - cached[0] < LIST_TTL:
            return cached[1]
        response = await send(
            http,
            "GET",
            openai_compat.url_for(config, "/v1/internal/model/list"),
            backend=config.name,
            headers=_admin_headers(config),
        )
        names = _field(response.content, "model_names", config)
        models = [n for n in names if isinstance(n, str)] if isinstance(names, list) else []
        self._available[key] = (time.monotonic(), models)
        return models

    def _lock(self, config: BackendConfig) -> asyncio.Lock:
        per_loop = self._locks.setdefault(asyncio.get_running_loop(), {})
        return per_loop.setdefault(config.base_url or "", asyncio.Lock())

    async def ensure_loaded(
        self, http: httpx.AsyncClient, config: BackendConfig, model: str
    ) -> None:
        """Load ``model`` unless it is loaded already; concurrent loads wait for each other."""
        if await self.loaded_model(http, config) == model:
            return
        async with self._lock(config):
            if await self.loaded_model(http, config, fresh=True) == model:
                return  # another request loaded it while we waited
            try:
                await send(
                    http,
                    "POST",
                    openai_compat.url_for(config, "/v1/internal/model/load"),
                    backend=config.name,
                    body={"model_name": model},
                    headers=_admin_headers(config),
                    timeout=httpx.Timeout(
                        config.option_float("load_timeout", DEFAULT_LOAD_TIMEOUT, positive=True),
                        connect=config.connect_timeout,
                    ),
                )
            except BadRequest as exc:
                raise CapabilityNotSupported(
                    f"text-generation-webui could not load {model!r}: {exc.message}",
                    backend=config.name,
                ) from None
            # some builds answer a failed load with a 200: believe the model info, not the reply
            loaded = await self.loaded_model(http, config, fresh=True)
            if loaded != model:
                raise CapabilityNotSupported(
                    f"text-generation-webui did not load {model!r} (loaded: {loaded})",
                    backend=config.name,
                )

    async def _wanted(
        self, http: httpx.AsyncClient, config: BackendConfig, requested: str
    ) -> str | None:
        """The model an autoload should bring up for ``requested``, or None to keep the loaded one.

        A configured model or alias is loaded as configured; a bare request name only when the
        server has a model of that name (a client's ``gpt-4o`` must not trigger a failed load).
        """
        if requested in config.aliases or config.model:
            return config.model_for(requested)
        if not requested or requested == "default":
            return None
        try:
            available = await self.available_models(http, config)
        except InferenceError:
            return None  # no admin access: serve with the loaded model
        return requested if requested in available else None

    async def _prepare(
        self, http: httpx.AsyncClient, config: BackendConfig, request: Any
    ) -> str | None:
        """Autoload when asked to; return the loaded model's name (None when unknown)."""
        if config.option_bool("autoload", False):
            wanted = await self._wanted(http, config, request.model)
            if wanted:
                await self.ensure_loaded(http, config, wanted)
        try:
            return await self.loaded_model(http, config)
        except InferenceError:
            return None  # the answer's own model name stands

    # ------------------------------------------------------------------------------ hooks

    @hookimpl
    async def chat(
        self, request: ChatRequest, config: BackendConfig, http: httpx.AsyncClient
    ) -> ChatResponse | AsyncIterator[ChatChunk]:
        _refuse_n_stream(request, config)
        loaded = await self._prepare(http, config, request)
        result = await openai_compat.chat(http, config, request)
        if request.stream:
            return _shaped(result, loaded, request.include_usage)
        return _named(result, loaded)

    @hookimpl
    async def complete(
        self, request: CompletionRequest, config: BackendConfig, http: httpx.AsyncClient
    ) -> CompletionResponse | AsyncIterator[CompletionResponse]:
        _refuse_n_stream(request, config)
        loaded = await self._prepare(http, config, request)
        result = await openai_compat.complete(http, config, request)
        return _named(result, loaded)

    @hookimpl
    async def embed(
        self, request: EmbeddingRequest, config: BackendConfig, http: httpx.AsyncClient
    ) -> EmbeddingResponse:
        """Embeddings come from the server's sentence-transformers model, whatever is loaded."""
        return await openai_compat.embed(http, config, request)

    @hookimpl
    async def list_models(self, config: BackendConfig, http: httpx.AsyncClient) -> list[ModelInfo]:
        """Every loadable model with an admin key; otherwise the loaded one."""
        if config.option("admin_key"):
            names = await self.available_models(http, config, fresh=True)
        else:
            loaded = await self.loaded_model(http, config, fresh=True)
            names = [loaded] if loaded else []
        return [
            ModelInfo(id=n, owned_by="text-generation-webui", backend=config.name) for n in names
        ]

    @hookimpl
    async def health(self, config: BackendConfig, http: httpx.AsyncClient) -> Health:
        """``/v1/internal/health`` with the API key, then which model is loaded."""
        try:
            autoload = config.option_bool("autoload", False)
        except ConfigError as exc:
            return Health(state="down", detail=exc.message)
        started = time.perf_counter()
        try:
            await send(
                http,
                "GET",
                openai_compat.url_for(config, "/v1/internal/health"),
                backend=config.name,
                headers=openai_compat.auth_headers(config),
            )
            loaded = await self.loaded_model(http, config, fresh=True)
        except InferenceError as exc:
            return Health(state="down", detail=exc.message)
        except Exception as exc:  # health never raises
            return Health(state="down", detail=error_for_exception(exc, backend=None).message)
        latency = round((time.perf_counter() - started) * 1000, 2)
        models = [loaded] if loaded else []
        wanted = config.model
        if loaded is None:
            if autoload and wanted:
                detail = f"no model loaded; {wanted} is loaded on the first request"
                return Health(state="ready", detail=detail, latency_ms=latency)
            return Health(
                state="down",
                detail="no model is loaded in text-generation-webui",
                latency_ms=latency,
            )
        detail = f"loaded: {loaded}"
        if wanted and wanted != loaded:
            var = config.option_variable("autoload")
            detail += (
                f" (configured {wanted} is loaded on the first request)"
                if autoload
                else f" (not the configured {wanted}; set {var}=true to load it)"
            )
        return Health(state="ready", detail=detail, latency_ms=latency, models=models)

    @hookimpl
    async def startup(self, config: BackendConfig) -> None:
        """Validate the options, so that a typo fails at start-up."""
        config.option_bool("autoload", False)
        config.option_float("load_timeout", DEFAULT_LOAD_TIMEOUT, positive=True)
        config.option_float("model_info_ttl", DEFAULT_INFO_TTL, minimum=0)


# ------------------------------------------------------------------------------------ helpers


def _field(raw: bytes, name: str, config: BackendConfig) -> Any:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise BackendUnavailable(
            f"malformed answer from text-generation-webui's internal API: {raw[:60]!r}",
            backend=config.name,
        )
    return data.get(name)


def _rename(obj: Any, loaded: str) -> Any:
    if obj.model != loaded:
        obj.model = loaded
        obj.drop_raw()
    return obj


async def _renamed(stream: AsyncIterator[Any], loaded: str) -> AsyncIterator[Any]:
    try:
        async for item in stream:
            yield _rename(item, loaded)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


async def _shaped(
    stream: AsyncIterator[ChatChunk], loaded: str | None, include_usage: bool
) -> AsyncIterator[ChatChunk]:
    """A chat stream in OpenAI's shape.

    Current text-generation-webui (``modules/api``) streams like OpenAI and passes through
    untouched.  The older ``extensions/openai`` API puts the usage on its last chunk, next to
    the ``finish_reason``, whether or not it was asked for: when the client asked
    (``include_usage``), it is moved into its own final ``choices: []`` chunk, as OpenAI sends
    it; otherwise it is left alone.
    """
    from inference_core import ChatChunk

    usage_chunk = None
    try:
        async for chunk in stream:
            if loaded is not None:
                _rename(chunk, loaded)
            if include_usage and chunk.usage is not None and chunk.choices:
                usage_chunk = ChatChunk(
                    id=chunk.id,
                    created=chunk.created,
                    model=chunk.model,
                    choices=[],
                    usage=chunk.usage,
                )
                chunk.usage = None
                chunk.drop_raw()
            yield chunk
        if usage_chunk is not None:
            yield usage_chunk
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


def _named(result: Any, loaded: str | None) -> Any:
    """Make the answer name the model that really produced it (the loaded one)."""
    if loaded is None:
        return result
    if hasattr(result, "__anext__"):
        return _renamed(result, loaded)
    return _rename(result, loaded)
