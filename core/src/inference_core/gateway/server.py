"""``serve()``: run the gateway under uvicorn (uvloop + httptools when installed).

Lifecycle: the app's lifespan starts the router (``await router.start()``) and closes it
(``await router.aclose()``, which stops managed children).  On SIGTERM/SIGINT uvicorn stops
accepting connections and lets in-flight requests (streams included) finish for up to
``INFERENCE_GATEWAY_DRAIN_TIMEOUT`` seconds; a stream still running then is ended with an
in-band error event, then the lifespan shutdown runs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from .logs import configure_logging, uvicorn_log_config
from .settings import GatewaySettings

__all__ = ["app_from_env", "multiprocess_metrics", "serve", "uvicorn_options"]


@contextlib.contextmanager
def multiprocess_metrics(enabled: bool = True) -> Iterator[str | None]:
    """Several workers, one ``/metrics``: every worker writes its values to
    ``PROMETHEUS_MULTIPROC_DIR`` and renders them all (:mod:`.metrics`).

    The variable set by the operator: its stale ``*.db`` files of an earlier run are removed.
    Unset: a fresh temporary directory for this run, removed afterwards.  Workers inherit the
    variable (they are started after it is set).
    """
    if not enabled:
        yield None
        return
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        os.makedirs(given, exist_ok=True)
        for name in os.listdir(given):
            if name.endswith(".db"):
                os.remove(os.path.join(given, name))
        yield given
        return
    path = tempfile.mkdtemp(prefix="inference-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    try:
        yield path
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(path, ignore_errors=True)


def app_from_env() -> Any:
    """The app factory uvicorn workers call: router and settings from the environment."""
    from ..router import Router
    from .app import create_app

    settings = GatewaySettings.from_env()
    configure_logging(settings.log_format, settings.log_level)
    return create_app(Router.from_env(), settings)


def uvicorn_options(settings: GatewaySettings) -> dict[str, Any]:
    """The ``uvicorn.Config`` keyword arguments the gateway runs with (tests reuse them)."""
    fast = importlib.util.find_spec("uvloop") is not None
    http: Any = "auto"
    if importlib.util.find_spec("httptools") is not None:
        try:
            from ._protocol import CorkedHttpToolsProtocol

            http = CorkedHttpToolsProtocol
        except ImportError:  # a uvicorn without the httptools implementation we subclass
            http = "httptools"
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop" if fast else "auto",
        "http": http,
        "lifespan": "on",
        "access_log": False,  # the gateway writes its own access line
        "log_config": uvicorn_log_config(settings.log_format, settings.log_level),
        "log_level": settings.log_level,
        "server_header": False,
        "proxy_headers": False,  # nothing here uses the client address
        "timeout_graceful_shutdown": settings.drain_timeout,
        # longer than any client pool keeps an idle connection (httpx: 5 s), so a client never
        # reuses a connection the gateway is closing at that very moment
        "timeout_keep_alive": settings.keepalive_timeout,
        "backlog": 2048,
    }
    return common


def serve(
    host: str | None = None,
    port: int | None = None,
    *,
    workers: int | None = None,
    log_level: str | None = None,
    router: Any = None,
    settings: GatewaySettings | None = None,
) -> None:
    """Serve the gateway until SIGTERM/SIGINT. Blocks.

    ``host``/``port``/``workers``/``log_level`` override ``INFERENCE_GATEWAY_*``.  With one
    worker, ``router`` (default ``Router.from_env()``) is served in this process; with
    several, each worker process builds its own router from the environment (``router`` must
    then be None).
    """
    import uvicorn

    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if workers is not None:
        overrides["workers"] = workers
    if log_level is not None:
        overrides["log_level"] = log_level.lower()
    if settings is None:
        settings = GatewaySettings.from_env(**overrides)
    else:
        settings = settings.model_copy(update=overrides)
    if settings.workers > 1 and router is not None:
        raise ValueError("serve(router=...) needs workers=1: each worker builds its own router")
    configure_logging(settings.log_format, settings.log_level)

    common = uvicorn_options(settings)
    if settings.workers > 1:
        with multiprocess_metrics(settings.metrics):
            uvicorn.run(
                "inference_core.gateway.server:app_from_env",
                factory=True,
                workers=settings.workers,
                **common,
            )
        return
    from .app import create_app

    if router is None:
        from ..router import Router

        router = Router.from_env()
    uvicorn.run(create_app(router, settings), **common)
