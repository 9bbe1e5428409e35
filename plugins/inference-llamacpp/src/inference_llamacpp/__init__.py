"""inference-llamacpp: the llama.cpp ``llama-server`` backend for inference-core.

Two modes:

* **external**: ``INFERENCE_LLAMACPP_BASE_URL`` (or the seed's ``LOCAL_INFERENCE_URL``) points at a
  running ``llama-server``; every hook is a thin call into :mod:`inference_core.http.openai_compat`.
* **embedded local default** (no base URL configured): the ``startup`` hook runs a managed
  ``llama-server`` child on 127.0.0.1 (a free port), waits until it is ready and returns the
  config pointing at it; ``shutdown`` stops it.  See :mod:`inference_llamacpp.managed` for why a
  child process, and for how it never outlives the gateway.

llama.cpp specifics handled here:

* ``/health`` answers 503 ``Loading model`` while the model loads: reported as ``loading``, not
  ``down``; when ready, ``/props`` and ``/slots`` add the model alias and slot usage to the detail;
* the request's model is ignored by the server (the ``--alias`` comes back): never an error;
* over-long prompt: 400 ``exceed_context_size_error`` -> ``ContextLengthExceeded``; embeddings
  input over the batch size: 500 "too large to process" -> ``ContextLengthExceeded`` too;
* embeddings need ``--embeddings`` (the managed server has it); without it 501 ->
  ``CapabilityNotSupported``.

Options (``INFERENCE_LLAMACPP_<KEY>``, managed mode): ``MODEL_PATH`` (a GGUF; default Gemma 3 270M
Q4_K_M from PyPI), ``SERVER_BIN`` (default: ``provision.ensure_llama_server()``), ``ALIAS``,
``CTX_SIZE`` (8192), ``PARALLEL`` (4), ``THREADS`` (half the CPUs, at least 1), ``EXTRA_ARGS``
(shell-quoted, appended), ``CHAT_TEMPLATE_FILE``, ``PORT`` (0 = a free one), ``START_TIMEOUT``
(120 s), ``STOP_GRACE`` (10 s), ``RESTART`` (true: a dead child is restarted on the next health
probe), ``MANAGED`` (true; false makes a missing base URL an error).  Both modes:
``HEALTH_TIMEOUT`` (5 s).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from inference_core import (
    BackendConfig,
    BackendUnavailable,
    ConfigError,
    ContextLengthExceeded,
    Health,
    ModelInfo,
    hookimpl,
)
from inference_core.http import openai_compat

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

    from .managed import ManagedServer, ServerSpec

__all__ = ["LlamaCppPlugin", "classify_health", "plugin"]
__version__ = "0.1.0"

log = logging.getLogger("inference_llamacpp")

DEFAULT_HEALTH_TIMEOUT = 5.0
DEFAULT_ALIAS = "gemma-3-270m"  # the default model's served name
RESTART_MIN_INTERVAL = 5.0  # seconds between two automatic restarts of a dead child


def classify_health(response: httpx.Response) -> Health | None:
    """llama.cpp's 503 ``Loading model`` means up but not ready: ``loading``."""
    if response.status_code == 503:
        try:
            error = orjson.loads(response.content).get("error") or {}
            message = error.get("message", "") if isinstance(error, dict) else str(error)
        except (orjson.JSONDecodeError, AttributeError):
            message = ""
        if "loading" in message.lower():
            return Health(state="loading", detail=message or "Loading model")
    return None


def _context_error(exc: BackendUnavailable, config: BackendConfig) -> Exception:
    """Embedding input longer than the physical batch: 500 ``too large to process``."""
    if "too large to process" in exc.message:
        return ContextLengthExceeded(exc.message, backend=config.name, param="input")
    return exc


class LlamaCppPlugin:
    """The hook implementations; ``plugin`` is the instance the entry point names."""

    #: a final assistant message sent with ``continue_final_message: true`` is continued and
    #: only the continuation comes back (b11434; without the flag it echoes the prefix)
    continue_final_message = True

    def __init__(self) -> None:
        self._servers: dict[str, ManagedServer] = {}  # backend (instance) name -> child
        self._restarting: dict[str, asyncio.Task[None]] = {}
        self._last_restart: dict[str, float] = {}
        self._provisioning: set[str] = set()
        self._users: dict[str, int] = {}  # routers sharing each managed child

    # ------------------------------------------------------------------------- helpers

    def managed_server(self, name: str = "llamacpp") -> ManagedServer | None:
        """The managed child of backend ``name``, if this plugin started one."""
        return self._servers.get(name)

    def _effective(self, config: BackendConfig) -> BackendConfig:
        """A config without a base URL talks to the managed child (while it starts, too)."""
        if config.base_urls:
            return config
        server = self._servers.get(config.name)
        if server is None:
            return config
        return config.model_copy(update={"base_urls": (server.url,)})

    # --------------------------------------------------------------------------- hooks

    @hookimpl
    async def chat(
        self, request: ChatRequest, config: BackendConfig, http: httpx.AsyncClient
    ) -> ChatResponse | AsyncIterator[ChatChunk]:
        return await openai_compat.chat(http, self._effective(config), request)

    @hookimpl
    async def complete(
        self, request: CompletionRequest, config: BackendConfig, http: httpx.AsyncClient
    ) -> CompletionResponse | AsyncIterator[CompletionResponse]:
        return await openai_compat.complete(http, self._effective(config), request)

    @hookimpl
    async def embed(
        self, request: EmbeddingRequest, config: BackendConfig, http: httpx.AsyncClient
    ) -> EmbeddingResponse:
        try:
            return await openai_compat.embed(http, self._effective(config), request)
        except BackendUnavailable as exc:
            raise _context_error(exc, config) from None

    @hookimpl
    async def list_models(self, config: BackendConfig, http: httpx.AsyncClient) -> list[ModelInfo]:
        models = await openai_compat.list_models(http, self._effective(config))
        for info in models:
            meta = getattr(info, "meta", None)
            if isinstance(meta, dict) and isinstance(meta.get("n_ctx"), int):
                info.context_length = meta["n_ctx"]  # type: ignore[attr-defined]  # per slot
        return models

    @hookimpl
    async def health(self, config: BackendConfig, http: httpx.AsyncClient) -> Health:
        try:
            timeout = config.option_float("health_timeout", DEFAULT_HEALTH_TIMEOUT, positive=True)
        except ConfigError as exc:
            return Health(state="down", detail=exc.message)
        server = self._servers.get(config.name)
        if server is not None and config.base_urls and config.base_url != server.url:
            server = None  # an external server of the same name: not ours
        if server is None and not config.base_urls:
            if config.name in self._provisioning:
                return Health(
                    state="loading",
                    detail="provisioning the managed llama-server and its model "
                    "(the first run builds llama-server: about 10 min on 2 cores)",
                )
            return Health(state="down", detail="no base URL and no managed llama-server running")
        if server is not None and not server.alive():
            if server.starting:
                return Health(state="loading", detail="managed llama-server is being started")
            return self._child_died(config, server, http)
        cfg = self._effective(config)
        result = await openai_compat.probe_health(
            http, cfg, timeout=timeout, classify=classify_health
        )
        if result.state == "ready":
            await self._add_detail(result, cfg, http, timeout)
        elif result.state == "down" and server is not None and server.starting:
            # spawned, but its port is not open yet: still starting, not broken
            result = Health(state="loading", detail=f"starting ({result.detail})")
        if server is not None:
            prefix = f"managed llama-server pid {server.pid} on {server.url}"
            result.detail = f"{prefix}; {result.detail}" if result.detail else prefix
        return result

    async def _add_detail(
        self, result: Health, config: BackendConfig, http: httpx.AsyncClient, timeout: float
    ) -> None:
        """Model alias and slot usage from ``/props`` and ``/slots`` (best effort)."""
        parts: list[str] = []
        try:
            props = orjson.loads((await self._get(http, config, "/props", timeout)).content)
            alias = props.get("model_alias") or Path(props.get("model_path", "")).name
            if alias:
                result.models = [alias]
                parts.append(f"model {alias}")
            total = props.get("total_slots")
        except Exception:
            total = None
        try:
            slots = orjson.loads((await self._get(http, config, "/slots", timeout)).content)
            if isinstance(slots, list):
                busy = sum(1 for s in slots if isinstance(s, dict) and s.get("is_processing"))
                n_ctx = slots[0].get("n_ctx") if slots and isinstance(slots[0], dict) else None
                ctx = f" of {n_ctx} tokens" if n_ctx else ""
                parts.append(f"{busy}/{len(slots)} slots busy{ctx}")
        except Exception:
            if total is not None:
                parts.append(f"{total} slots")
        if parts:
            result.detail = ", ".join(parts)

    @staticmethod
    async def _get(
        http: httpx.AsyncClient, config: BackendConfig, path: str, timeout: float
    ) -> httpx.Response:
        return await openai_compat.send(
            http,
            "GET",
            openai_compat.url_for(config, path),
            backend=config.name,
            headers=openai_compat.auth_headers(config),
            timeout=timeout,
        )

    def _child_died(
        self, config: BackendConfig, server: ManagedServer, http: httpx.AsyncClient
    ) -> Health:
        code = server.exit_code()
        detail = f"managed llama-server (pid {server.pid}) exited with code {code}"
        try:
            restart = config.option_bool("restart", True)
        except ConfigError:
            restart = True
        task = self._restarting.get(config.name)
        if restart and (task is None or task.done()):
            last = self._last_restart.get(config.name, 0.0)
            if time.monotonic() - last >= RESTART_MIN_INTERVAL:
                self._last_restart[config.name] = time.monotonic()
                self._restarting[config.name] = asyncio.create_task(
                    self._restart(config, server, http)
                )
                detail += "; restarting it"
        elif restart:
            detail += "; restarting it"
        return Health(state="down", detail=detail)

    async def _restart(
        self, config: BackendConfig, server: ManagedServer, http: httpx.AsyncClient
    ) -> None:
        """Start the child again on the same port (the router's config points at it)."""
        server.restarts += 1
        log.warning(
            "managed llama-server exited (%s); restarting on %s", server.exit_code(), server.url
        )
        try:
            await server.start(
                http, config.option_float("start_timeout", 120.0, positive=True), attempts=1
            )
        except Exception as exc:
            log.error("restarting the managed llama-server failed: %s", exc)

    @hookimpl
    async def startup(self, config: BackendConfig, http: httpx.AsyncClient) -> BackendConfig | None:
        """No base URL: run the embedded local default (a managed ``llama-server``).

        With a base URL: learn the per-slot context from ``/props`` for the router's
        context-length fallback (a server that is not up yet is no error).  Several routers
        in one process share one managed child per backend name; the last ``shutdown`` stops it.
        """
        if config.base_urls:
            return await self._external_context(config, http)
        if not config.option_bool("managed", True):
            raise ConfigError(
                f"INFERENCE_{config.name.upper()}_BASE_URL is not set and managed mode is off "
                f"(INFERENCE_{config.name.upper()}_MANAGED=false): set the URL of a llama-server",
                variable=f"INFERENCE_{config.name.upper()}_BASE_URL",
            )
        # Another router (maybe on another event loop: SyncRouter) is starting it: wait and
        # share it rather than race it.  Polling, because an asyncio.Event is bound to one loop.
        while config.name in self._provisioning or (  # noqa: ASYNC110
            config.name in self._servers and self._servers[config.name].starting
        ):
            await asyncio.sleep(0.1)
        existing = self._servers.get(config.name)
        if existing is not None and existing.alive():
            self._users[config.name] = self._users.get(config.name, 0) + 1
            return self._ready_config(config, existing)
        self._provisioning.add(config.name)
        try:
            spec = await asyncio.to_thread(self._build_spec, config)
        finally:
            self._provisioning.discard(config.name)
        from . import provision
        from .managed import ManagedServer

        port = config.option_int("port", 0, minimum=0)
        server = ManagedServer(spec, provision.cache_dir() / "run", port=port or None)
        self._servers[config.name] = server
        timeout = config.option_float("start_timeout", 120.0, positive=True)
        log.info("starting managed llama-server: %s", shlex.join(spec.argv(server.port)))
        try:
            took = await server.start(http, timeout)
        except BaseException:
            await asyncio.to_thread(server.stop, 2.0)
            self._servers.pop(config.name, None)
            raise
        log.info("managed llama-server ready on %s after %.2fs", server.url, took)
        self._users[config.name] = 1
        return self._ready_config(config, server)

    @staticmethod
    def _ready_config(config: BackendConfig, server: ManagedServer) -> BackendConfig:
        spec = server.spec
        options = dict(config.options)
        if spec.ctx_size and "context_length" not in options:  # per slot, for the router
            options["context_length"] = str(spec.ctx_size // spec.parallel)
        if "max_concurrency" not in options:  # one request per slot: the router's admission
            options["max_concurrency"] = str(spec.parallel)
        return config.model_copy(
            update={
                "base_urls": (server.url,),
                "model": config.model or spec.alias,
                "options": options,
            }
        )

    async def _external_context(
        self, config: BackendConfig, http: httpx.AsyncClient
    ) -> BackendConfig | None:
        """The per-slot context (``context_length``) and the slot count (``max_concurrency``,
        the router's admission cap per replica) from ``/props``, unless configured."""
        want_ctx = not config.option("context_length")
        want_slots = not config.option("max_concurrency")
        if not (want_ctx or want_slots):
            return None
        try:
            timeout = config.option_float("health_timeout", DEFAULT_HEALTH_TIMEOUT, positive=True)
            props = orjson.loads((await self._get(http, config, "/props", timeout)).content)
        except Exception:  # not up yet, /props disabled, an older server: no info
            return None
        options = dict(config.options)
        settings = props.get("default_generation_settings") if isinstance(props, dict) else None
        n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
        if want_ctx and isinstance(n_ctx, int) and n_ctx > 0:
            options["context_length"] = str(n_ctx)
        slots = props.get("total_slots") if isinstance(props, dict) else None
        if want_slots and isinstance(slots, int) and slots > 0:
            options["max_concurrency"] = str(slots)
        if options == dict(config.options):
            return None
        return config.model_copy(update={"options": options})

    def _build_spec(self, config: BackendConfig) -> ServerSpec:
        """The managed server's command line, from what is already provisioned.

        Serving never downloads, builds or installs anything (issue #11): the binary is the
        configured ``SERVER_BIN``, else the verified build in the cache (it wins over a
        ``llama-server`` on ``PATH``, which is only used when there is none), and the model is
        ``MODEL_PATH`` or the verified default GGUF.  Missing pieces are a
        :class:`ConfigError` naming the explicit step (``scripts/serve.sh`` runs it):
        ``python -m inference_llamacpp.provision all``.  Blocking (stats files): run in a thread.
        """
        from . import provision
        from .managed import ServerSpec

        binary = config.option("server_bin")
        if binary:
            if not os.access(binary, os.X_OK):
                raise ConfigError(
                    f"INFERENCE_{config.name.upper()}_SERVER_BIN={binary} is not an executable",
                    variable=f"INFERENCE_{config.name.upper()}_SERVER_BIN",
                )
            server_bin = Path(binary)
        else:
            server_bin = provisioned_server(config.name)
        model_opt = config.option("model_path")
        if model_opt:
            model = Path(model_opt).expanduser()
            if not model.is_file():
                raise ConfigError(
                    f"INFERENCE_{config.name.upper()}_MODEL_PATH={model_opt} is not a file",
                    variable=f"INFERENCE_{config.name.upper()}_MODEL_PATH",
                )
            default_alias = model.stem
            template_opt = config.option("chat_template_file")
            template = Path(template_opt) if template_opt else None
        else:
            model = provisioned_model(config.name)
            default_alias = DEFAULT_ALIAS
            template_opt = config.option("chat_template_file")
            template = Path(template_opt) if template_opt else provision.ensure_chat_template()
        extra = config.option("extra_args")
        return ServerSpec(
            binary=server_bin,
            model=model,
            alias=config.option("alias") or config.model or default_alias,
            ctx_size=config.option_int("ctx_size", 8192, minimum=0),
            parallel=config.option_int("parallel", 4, minimum=1),
            threads=config.option_int("threads", max(1, (os.cpu_count() or 2) // 2), minimum=1),
            chat_template=template,
            embeddings=config.option_bool("embeddings", True),
            extra_args=shlex.split(extra) if extra else [],
        )

    @hookimpl
    async def shutdown(self, config: BackendConfig) -> None:
        """Stop the managed child (SIGTERM, SIGKILL after ``STOP_GRACE``). Never raises.

        With several routers sharing the child, only the last one's shutdown stops it.
        """
        users = self._users.get(config.name, 0) - 1
        if users > 0:
            self._users[config.name] = users
            return None
        self._users.pop(config.name, None)
        server = self._servers.pop(config.name, None)
        task = self._restarting.pop(config.name, None)
        if task is not None and not task.done():
            task.cancel()
        if server is None:
            return None
        try:
            grace = config.option_float("stop_grace", 10.0, positive=True)
        except ConfigError:
            grace = 10.0
        try:
            code = await asyncio.to_thread(server.stop, grace)
            log.info("managed llama-server stopped (exit code %s)", code)
        except Exception as exc:  # never raise from shutdown
            log.error("stopping the managed llama-server failed: %s", exc)
        return None


PROVISION_HINT = (
    "serving never downloads or builds anything: provision first with "
    "`python -m inference_llamacpp.provision all` (scripts/serve.sh does), or set "
    "INFERENCE_{NAME}_SERVER_BIN / INFERENCE_{NAME}_MODEL_PATH, or INFERENCE_{NAME}_BASE_URL"
)


def provisioned_server(name: str = "llamacpp") -> Path:
    """The verified cached ``llama-server`` (stamp matches the pinned source and this CPU),
    else one on ``PATH`` (unless ``INFERENCE_LLAMACPP_NO_PATH=1``), else a ConfigError.

    Never builds: that is ``provision.ensure_llama_server``'s job, run explicitly.
    """
    from . import provision

    root = provision._server_dir()
    binary = root / "bin" / "llama-server"
    if provision._cached_server_ok(binary, root / "bin" / "llama-server.stamp"):
        return binary
    if os.environ.get("INFERENCE_LLAMACPP_NO_PATH") != "1":
        import shutil

        on_path = shutil.which("llama-server")
        if on_path:
            log.warning(
                "using the llama-server on PATH (%s): no verified build in %s",
                on_path,
                root,
            )
            return Path(on_path)
    raise ConfigError(
        f"no llama-server is provisioned (looked for the verified build {binary}"
        + ("" if os.environ.get("INFERENCE_LLAMACPP_NO_PATH") == "1" else " and on PATH")
        + "); "
        + PROVISION_HINT.replace("{NAME}", name.upper()),
        variable=f"INFERENCE_{name.upper()}_SERVER_BIN",
    )


def provisioned_model(name: str = "llamacpp") -> Path:
    """The verified default GGUF in the cache, else a ConfigError (never assembles it)."""
    from . import provision

    models = provision.cache_dir() / "models"
    model = models / provision.MODEL_NAME
    if provision._model_stamp_ok(model, models / (provision.MODEL_NAME + ".sha256")):
        return model
    raise ConfigError(
        f"the default model {model} is not provisioned (or not verified); "
        + PROVISION_HINT.replace("{NAME}", name.upper()),
        variable=f"INFERENCE_{name.upper()}_MODEL_PATH",
    )


plugin = LlamaCppPlugin()
