"""compose.yaml's healthcheck commands, run for real against servers on this machine.

Each command is taken from compose.yaml as written, with only the container-local address
(127.0.0.1:<container port>) swapped for the test server's: the real vLLM and llama.cpp peers
when scripts/peers started them (INFERENCE_TEST_*_URL; skipped otherwise, failed under
INFERENCE_REQUIRE_PEERS=1), the text-generation-webui fake, and a tiny server answering 503 to
show that a backend that is still loading (or whose engine died) is reported unhealthy.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlparse

import pytest

from inference_core.testing import peer_url, serve_http

ROOT = Path(__file__).resolve().parents[2]
CONTAINER_PORT = {"vllm": 8000, "llamacpp": 8080, "textgen": 5000, "gateway": 8080}


def command(compose, service: str, url: str) -> list[str]:
    """The service's healthcheck argv, pointed at ``url`` instead of the container's port."""
    test = compose["services"][service]["healthcheck"]["test"]
    assert test[0] == "CMD"
    target = urlparse(url)
    here = f"127.0.0.1:{CONTAINER_PORT[service]}"
    argv = [a.replace(here, f"{target.hostname}:{target.port}") for a in test[1:]]
    assert argv != test[1:], f"{service}: the healthcheck does not probe {here}"
    if argv[0] in {"python", "python3"}:
        argv[0] = sys.executable  # the image's python; any python runs the one-liner
    elif shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} is not installed here")
    return argv


def run(argv: list[str]) -> int:
    return subprocess.run(argv, capture_output=True, timeout=30).returncode


class Loading(BaseHTTPRequestHandler):
    """Every GET is a 503 with llama.cpp's loading body (vLLM sends 503 with no body)."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = b'{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def loading_server() -> Iterator[str]:
    with serve_http(Loading) as url:
        yield url


@pytest.mark.parametrize("service", ["vllm", "llamacpp", "textgen", "gateway"])
def test_a_503_is_unhealthy(compose, loading_server: str, service: str) -> None:
    assert run(command(compose, service, loading_server)) != 0


def test_vllm_healthcheck_passes_on_the_real_vllm(compose) -> None:
    assert run(command(compose, "vllm", peer_url("INFERENCE_TEST_VLLM_CHAT_URL"))) == 0


def test_llamacpp_healthcheck_passes_on_the_real_llama_server(compose) -> None:
    assert run(command(compose, "llamacpp", peer_url("INFERENCE_TEST_LLAMACPP_URL"))) == 0


def test_textgen_healthcheck_passes_on_the_textgen_fake(compose) -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.fakes.textgen_server import FakeTextgenServer

    with FakeTextgenServer() as fake:
        assert run(command(compose, "textgen", fake.url)) == 0
        assert any(r.path == "/v1/internal/health" for r in fake.requests)
