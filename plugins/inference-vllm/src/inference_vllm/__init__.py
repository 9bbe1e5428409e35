"""inference-vllm: the vLLM backend for inference-core.

vLLM's server speaks the OpenAI HTTP API, so every hook is a thin call into
:mod:`inference_core.http.openai_compat`.  What this plugin adds on top:

* the model: ``INFERENCE_VLLM_MODEL`` (or the seed's ``VLLM_MODEL_NAME``) when set; otherwise a
  request for ``default`` goes to the model the server serves (read from ``/v1/models``, cached),
  and any other name is passed on as asked (an unknown one is vLLM's 404 -> ``ModelNotFound``);
* embeddings from a second server (vLLM serves one model per process, and a chat model cannot
  embed): options ``embed_base_url`` / ``embed_model``; a server without a pooling model answers
  404 ``{"detail": "Not Found"}``, raised as ``CapabilityNotSupported``;
* health from ``GET /health`` with a real deadline (option ``health_timeout``, default 5 s).
  ``/health`` only says the API server and its engine process are alive: an engine that hangs
  still answers 200.  Option ``health_deep=true`` also reads ``/metrics`` and reports ``down``
  when requests are running but no token was processed for ``health_stall_seconds`` (default 30);
* ``max_tokens`` above the server's ``max_model_len`` is raised as ``ContextLengthExceeded``
  (vLLM says 400 ``param: max_tokens``; core's error mapping knows it): a backend with a
  larger context may serve it;
* :meth:`VLLMPlugin.list_models` tags each model with ``context_length`` (vLLM's ``max_model_len``),
  and ``startup`` puts it into ``options["context_length"]`` for the router's context fallback.

Settings (``INFERENCE_VLLM_<KEY>``): ``BASE_URL`` (default ``http://localhost:8000``, comma list =
replicas), ``MODEL``, ``API_KEY`` (vLLM's ``--api-key``), ``TIMEOUT``, ``EMBED_BASE_URL``,
``EMBED_MODEL``, ``HEALTH_TIMEOUT``, ``HEALTH_DEEP``, ``HEALTH_STALL_SECONDS``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from inference_core import (
    AuthenticationFailed,
    BackendConfig,
    BadRequest,
    CapabilityNotSupported,
    ConfigError,
    ContextLengthExceeded,
    Health,
    InferenceError,
    ModelInfo,
    hookimpl,
)
from inference_core.http import openai_compat

from .metrics import parse_prometheus

if TYPE_CHECKING:
    import httpx

    from inference_core import (
        ChatChunk,
        ChatRequest,
        ChatResponse,
        CompletionRequest,
        CompletionResponse,
        EmbeddingRequest,
        EmbeddingResponse,
    )

__all__ = ["VLLMPlugin", "plugin"]
__version__ = "0.1.0"

DEFAULT_HEALTH_TIMEOUT = 5.0
DEFAULT_STALL_SECONDS = 30.0
MODELS_TTL = 30.0  # seconds a /v1/models answer is reused to resolve the "default" model

_PROGRESS_METRICS = frozenset(
    {
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
    }
)


class VLLMPlugin:
    """The hook implementations; one instance (``plugin``) is registered per process."""

    #: ``continue_final_message: true, add_generation_prompt: false`` (passed through in the
    #: body) continues a final assistant message; only the continuation comes back
    continue_final_message = True

    def __init__(self) -> None:
        self._served: dict[str, tuple[float, list[str]]] = {}
        # per base URL: (progress counter, monotonic time it last moved)
        self._progress: dict[str, tuple[float, float]] = {}

    # ------------------------------------------------------------------------- helpers

    async def _served_models(self, http: httpx.AsyncClient, config: BackendConfig) -> list[str]:
        key = config.base_url or ""
        now = time.monotonic()
        cached = self._served.get(key)
        if cached and now - cached[0] < MODELS_TTL:
            return cached[1]
        models = [m.id for m in await openai_compat.list_models(http, config)]
        self._served[key] = (now, models)
        return models

    async def _body(
        self, http: httpx.AsyncClient, config: BackendConfig, request: Any
    ) -> dict[str, Any]:
        """The request body with the model resolved (see the module docstring)."""
        body = openai_compat.request_body(request, config)
        requested = request.model
        if not config.model and requested not in config.aliases and requested in ("", "default"):
            served = await self._served_models(http, config)
            if served:
                body["model"] = served[0]
        return body

    def _embed_config(self, config: BackendConfig) -> BackendConfig:
        url = config.option("embed_base_url")
        model = config.option("embed_model")
        if not url and not model:
            return config
        update: dict[str, Any] = {}
        if url:
            update["base_urls"] = tuple(u.strip() for u in url.split(",") if u.strip())
            update["model"] = model or None
        if model:
            update["model"] = model
        return config.model_copy(update=update)

    # --------------------------------------------------------------------------- hooks

    @hookimpl
    async def chat(
        self, request: ChatRequest, config: BackendConfig, http: httpx.AsyncClient
    ) -> ChatResponse | AsyncIterator[ChatChunk]:
        body = await self._body(http, config, request)
        return await openai_compat.chat(http, config, request, body=body)

    @hookimpl
    async def complete(
        self, request: CompletionRequest, config: BackendConfig, http: httpx.AsyncClient
    ) -> CompletionResponse | AsyncIterator[CompletionResponse]:
        body = await self._body(http, config, request)
        return await openai_compat.complete(http, config, request, body=body)

    @hookimpl
    async def embed(
        self, request: EmbeddingRequest, config: BackendConfig, http: httpx.AsyncClient
    ) -> EmbeddingResponse:
        econfig = self._embed_config(config)
        body = await self._body(http, econfig, request)
        try:
            return await openai_compat.embed(http, econfig, request, body=body)
        except CapabilityNotSupported:
            raise CapabilityNotSupported(
                "this vLLM server cannot embed: it serves no pooling model (start one with "
                "--runner pooling and point INFERENCE_VLLM_EMBED_BASE_URL at it)",
                backend=config.name,
            ) from None

    async def _list(self, config: BackendConfig, http: httpx.AsyncClient) -> list[ModelInfo]:
        """The models of the server ``config`` points at, tagged with ``context_length``."""
        models = await openai_compat.list_models(http, config)
        for info in models:
            max_len = getattr(info, "max_model_len", None)
            if isinstance(max_len, int):
                info.context_length = max_len  # type: ignore[attr-defined]  # extra field
                info.drop_raw()
        self._served[config.base_url or ""] = (time.monotonic(), [m.id for m in models])
        return models

    @hookimpl
    async def list_models(self, config: BackendConfig, http: httpx.AsyncClient) -> list[ModelInfo]:
        """The chat server's models, plus the embeddings server's (``EMBED_BASE_URL``) or the
        ``EMBED_MODEL`` option, so that the router can route requests for either by name."""
        models = await self._list(config, http)
        econfig = self._embed_config(config)
        if econfig is config:
            return models
        ids = {m.id for m in models}
        extra: list[ModelInfo] = []
        if econfig.base_url != config.base_url:
            try:
                extra = await self._list(econfig, http)
            except InferenceError:
                extra = []  # the chat server's list still stands; health reports the rest
        if (
            econfig.model
            and econfig.model not in ids
            and not any(m.id == econfig.model for m in extra)
        ):
            extra.append(ModelInfo(id=econfig.model, owned_by="vllm", backend=config.name))
        return models + [m for m in extra if m.id not in ids]

    @hookimpl
    async def startup(self, config: BackendConfig, http: httpx.AsyncClient) -> BackendConfig | None:
        """Validate this plugin's options; learn ``context_length`` from ``max_model_len``.

        The router uses ``options["context_length"]`` for its context-length fallback.  When
        it is not configured, one quick ``/v1/models`` read fills it in; a server that is not
        up yet is no start-up error (health checks will report it).
        """
        timeout = config.option_float("health_timeout", DEFAULT_HEALTH_TIMEOUT, positive=True)
        config.option_float("health_stall_seconds", DEFAULT_STALL_SECONDS, minimum=0)
        config.option_bool("health_deep", False)
        if config.option("context_length") or not config.base_url:
            return None
        try:
            async with asyncio.timeout(timeout):
                models = await self._list(config, http)
        except (InferenceError, TimeoutError):
            return None
        lengths = [getattr(m, "context_length", None) for m in models]
        if config.model:
            lengths = [getattr(m, "context_length", None) for m in models if m.id == config.model]
        known = [n for n in lengths if isinstance(n, int)]
        if not known:
            return None
        options = {**config.options, "context_length": str(min(known))}
        return config.model_copy(update={"options": options})

    @hookimpl
    async def health(self, config: BackendConfig, http: httpx.AsyncClient) -> Health:
        try:
            timeout = config.option_float("health_timeout", DEFAULT_HEALTH_TIMEOUT, positive=True)
            stall = config.option_float("health_stall_seconds", DEFAULT_STALL_SECONDS, minimum=0)
            deep = config.option_bool("health_deep", False)
        except ConfigError as exc:
            return Health(state="down", detail=exc.message)
        result = await openai_compat.probe_health(http, config, timeout=timeout)
        if result.state != "ready":
            if result.detail and "503" in result.detail:
                result.detail = f"vLLM engine is not healthy ({result.detail})"
            return result
        details: list[str] = []
        if deep:
            verdict = await self._check_progress(http, config, timeout, stall)
            if verdict.state != "ready":
                verdict.latency_ms = result.latency_ms
                return verdict
            if verdict.detail:
                details.append(verdict.detail)
        try:
            result.models = [m.id for m in await self.list_models(config, http)]
        except AuthenticationFailed as exc:
            # /health needs no key, /v1/models does: every real request would fail the same way
            return Health(
                state="down",
                detail=f"the server rejects our API key ({exc.message})",
                latency_ms=result.latency_ms,
            )
        except Exception as exc:  # health never raises; the models list is a bonus
            details.append(f"models unavailable: {getattr(exc, 'message', type(exc).__name__)}")
        result.detail = "; ".join(details) or None
        return result

    async def _check_progress(
        self, http: httpx.AsyncClient, config: BackendConfig, timeout: float, stall: float
    ) -> Health:
        """Forward progress from ``/metrics``: running requests must move the token counters."""
        try:
            response = await openai_compat.send(
                http,
                "GET",
                openai_compat.url_for(config, "/metrics"),
                backend=config.name,
                timeout=timeout,
            )
        except Exception as exc:
            return Health(
                state="down",
                detail=f"/metrics unreadable: {getattr(exc, 'message', type(exc).__name__)}",
            )
        values = parse_prometheus(response.text, _PROGRESS_METRICS)
        running = values.get("vllm:num_requests_running", 0.0)
        waiting = values.get("vllm:num_requests_waiting", 0.0)
        progress = values.get("vllm:prompt_tokens_total", 0.0) + values.get(
            "vllm:generation_tokens_total", 0.0
        )
        key = config.base_url or ""
        now = time.monotonic()
        last = self._progress.get(key)
        if last is None or progress != last[0] or running == 0:
            self._progress[key] = (progress, now)  # moving, idle, or the first sample
        elif now - last[1] >= stall:
            return Health(
                state="down",
                detail=(
                    f"engine stalled: {running:.0f} running, {waiting:.0f} waiting, "
                    f"no token processed for {now - last[1]:.0f}s"
                ),
            )
        kv = values.get("vllm:kv_cache_usage_perc")
        kv_text = f", kv cache {kv * 100:.0f}%" if kv is not None else ""
        return Health(
            state="ready", detail=f"{running:.0f} running, {waiting:.0f} waiting{kv_text}"
        )


plugin = VLLMPlugin()
