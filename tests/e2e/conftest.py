"""Fixtures for the gateway end-to-end tests: a real uvicorn server running the gateway.

``serve_gateway(env, **gateway_settings)`` starts the gateway (same uvicorn options as
``inference serve``: uvloop, the corked httptools protocol) on a free 127.0.0.1 port in a
thread, over ``Router.from_env(env)``, and stops it (lifespan shutdown included) at the end of
the test.  ``peer_url(var)`` implements the real-peer rule of docs/contracts.md: unset ->
skip locally, FAIL under ``INFERENCE_REQUIRE_PEERS=1``; set but not answering -> fail.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)  # for tests.fakes

REQUIRE_PEERS = os.environ.get("INFERENCE_REQUIRE_PEERS") == "1"


@dataclass
class RunningGateway:
    url: str
    router: Any
    app: Any
    server: Any
    thread: threading.Thread

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def _start(app: Any, settings: Any) -> tuple[Any, threading.Thread, int]:
    import uvicorn

    from inference_core.gateway.server import uvicorn_options

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options = uvicorn_options(settings)
    options.update(host="127.0.0.1", port=port, log_config=None, log_level="warning")
    server = uvicorn.Server(uvicorn.Config(app, **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the gateway did not start")
        time.sleep(0.01)
    return server, thread, port


@pytest.fixture
def serve_gateway() -> Iterator[Callable[..., RunningGateway]]:
    running: list[RunningGateway] = []

    def start(
        env: dict[str, str], extra_plugins: dict[str, Any] | None = None, **settings: Any
    ) -> RunningGateway:
        from inference_core.gateway import GatewaySettings, create_app
        from inference_core.router import Router

        router = Router.from_env(env, env_file=None, extra_plugins=extra_plugins)
        gw_settings = GatewaySettings.from_env(env={}, **settings)
        app = create_app(router, gw_settings)
        server, thread, port = _start(app, gw_settings)
        gw = RunningGateway(f"http://127.0.0.1:{port}", router, app, server, thread)
        running.append(gw)
        return gw

    yield start
    for gw in running:
        gw.stop()


def peer_url(var: str, how: str) -> str:
    """The peer's URL from ``var``; skip (or fail under INFERENCE_REQUIRE_PEERS=1) when unset."""
    url = os.environ.get(var, "").strip().rstrip("/")
    if not url:
        message = f"{var} is not set (start the peer: {how}, then export {var}=http://...)"
        if REQUIRE_PEERS:
            pytest.fail(f"INFERENCE_REQUIRE_PEERS=1 but {message}", pytrace=False)
        pytest.skip(message)
    try:
        httpx.get(url + "/health", timeout=5.0, trust_env=False)
    except httpx.HTTPError as exc:
        pytest.fail(f"{var}={url} does not answer: {exc}", pytrace=False)
    return url


def openai_pair_env(first: Any, second: Any, *, key: str, backup_key: str) -> dict[str, str]:
    """The environment of a gateway over two OpenAI-compatible fakes: ``first`` as the
    ``openai`` primary, ``second`` as the fallback ``backup`` (the same plugin), no retries."""
    return {
        "INFERENCE_PROVIDER": "openai",
        "ENABLE_FALLBACK": "true",
        "FALLBACK_CHAIN": "backup",
        "OPENAI_API_BASE": first.base_url,
        "OPENAI_API_KEY": key,
        "INFERENCE_BACKUP_PLUGIN": "openai",
        "INFERENCE_BACKUP_BASE_URL": second.base_url,
        "INFERENCE_BACKUP_API_KEY": backup_key,
        "INFERENCE_MAX_RETRIES": "0",
        "INFERENCE_RETRY_AFTER_CAP": "0",
        "HEALTH_CHECK_INTERVAL": "3600",
    }


def wait_ready(gw: RunningGateway, key: str, timeout: float = 10.0) -> None:
    """Let the start-up health checks finish before a test changes the fakes' behaviour (a
    probe that saw the test's 503s would reorder the chain)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = httpx.get(
            gw.url + "/v1/health/inference", headers={"authorization": f"Bearer {key}"}
        ).json()["backends"]
        if all(b["state"] == "ready" for b in states.values()):
            return
        time.sleep(0.02)
