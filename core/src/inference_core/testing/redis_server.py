"""A real ``redis-server`` for tests: :func:`redis_url_for_tests` (a pytest fixture body).

``INFERENCE_TEST_REDIS_URL`` set (``scripts/test.sh`` starts one with ``scripts/peers/redis.sh``):
that server.  Otherwise a ``redis-server`` on ``PATH`` is started on a free loopback port (no
persistence) for the session and stopped after it.  Neither: the test is skipped, or failed under
``INFERENCE_REQUIRE_PEERS=1`` (install it with ``bash scripts/peers/redis.sh setup``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

from .local import missing_peer

__all__ = ["redis_ping", "redis_url_for_tests", "start_redis"]


def redis_ping(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(binary: str = "redis-server") -> tuple[subprocess.Popen[bytes], int]:
    """Start ``redis-server`` on a free loopback port; ``(process, port)`` once it answers."""
    for _ in range(5):
        port = _free_port()
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if redis_ping(port):
                return proc, port
            if proc.poll() is not None:
                break  # the port was taken meanwhile: try another
            time.sleep(0.05)
        proc.kill()
        proc.wait()
    raise RuntimeError("could not start redis-server")


def redis_url_for_tests() -> Iterator[str]:
    """Yield a Redis URL for the test session (see the module docstring)."""
    url = os.environ.get("INFERENCE_TEST_REDIS_URL", "").strip()
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        missing_peer(
            "redis-server is not installed (bash scripts/peers/redis.sh setup) and "
            "INFERENCE_TEST_REDIS_URL is not set"
        )
    proc, port = start_redis(binary)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
