"""``serve()``: run the gateway under uvicorn (uvloop + httptools when installed).

Before anything starts, :func:`check_bind` refuses a non-loopback bind without API keys
(unless ``INFERENCE_GATEWAY_ALLOW_UNAUTHENTICATED=true``).  Connections are served by
``guard.GuardedHttpToolsProtocol`` (header/body timeouts, header size, connection cap).

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

__all__ = [
    "app_from_env",
    "check_bind",
    "is_loopback",
    "multiprocess_metrics",
    "serve",
    "uvicorn_options",
]


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
    if importlib.util.find_spec("httptools") is not None:
        try:
            from .guard import guarded_protocol

            guarded_protocol(settings)  # this worker process's limits
        except ImportError:  # pragma: no cover - a uvicorn without the httptools protocol
            pass
    return create_app(Router.from_env(), settings)


def uvicorn_options(settings: GatewaySettings) -> dict[str, Any]:
    """The ``uvicorn.Config`` keyword arguments the gateway runs with (tests reuse them)."""
    fast = importlib.util.find_spec("uvloop") is not None
    http: Any = "auto"
    guarded = False
    if importlib.util.find_spec("httptools") is not None:
        try:
            from .guard import guarded_protocol

            http = guarded_protocol(settings)
            guarded = True
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
    if not guarded:
        # no guard protocol (guard.py): what uvicorn itself can bound.  No header or body
        # timeout then; docs/security.md says so.
        common["limit_concurrency"] = settings.max_connections
        common["h11_max_incomplete_event_size"] = settings.max_header_bytes
    return common


_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """True when ``host`` (a bind address) is reachable from this machine only."""
    import ipaddress

    name = host.strip().strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(settings: GatewaySettings) -> None:
    """Refuse to serve without keys on an address other machines can reach.

    Raises :class:`~inference_core.errors.ConfigError` naming what to set, unless keys are set
    (``INFERENCE_GATEWAY_API_KEYS``, or a key store: ``INFERENCE_KEYS_FILE`` or
    ``INFERENCE_REDIS_URL``), the bind address is loopback, or
    ``INFERENCE_GATEWAY_ALLOW_UNAUTHENTICATED=true``.
    """
    if settings.auth_enabled or settings.allow_unauthenticated or is_loopback(settings.host):
        return
    from ..state import StateSettings

    state = StateSettings.from_env()
    if state.redis_url or state.keys_file:  # a key store (docs/teams.md) holds the keys
        return
    from ..errors import ConfigError

    raise ConfigError(
        f"refusing to serve on {settings.host}:{settings.port} without API keys: anyone who "
        "reaches this address could use the configured backends (and spend their API keys). "
        "Set INFERENCE_GATEWAY_API_KEYS=<key>[,<key>...] (clients send 'Authorization: Bearer "
        "<key>') or a key store (INFERENCE_KEYS_FILE), or bind to 127.0.0.1, or set "
        "INFERENCE_GATEWAY_ALLOW_UNAUTHENTICATED=true if something in front of the gateway "
        "already authenticates (docs/security.md).",
        variable="INFERENCE_GATEWAY_API_KEYS",
    )


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
    check_bind(settings)
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
