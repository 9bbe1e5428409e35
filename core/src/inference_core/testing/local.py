"""Helpers for tests that use real sockets: free ports, tiny local HTTP servers, peer servers.

* :func:`unused_port` / :func:`dead_url`: a port (a URL) nobody listens on right now, for
  "connection refused" cases;
* :func:`serve_http`: run a stdlib ``BaseHTTPRequestHandler`` on an ephemeral loopback port in
  a thread, for as long as a ``with`` block lasts;
* :func:`peer_url` / :func:`missing_peer`: the project's rule for tests that need a real server
  (``INFERENCE_TEST_*_URL``): skip when it is not there, but FAIL under
  ``INFERENCE_REQUIRE_PEERS=1`` (CI), so that a skip never counts as a pass.

pytest and httpx are imported only by the functions that need them.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:  # pragma: no cover
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["dead_url", "missing_peer", "peer_url", "serve_http", "unused_port"]

#: The variable under which a missing peer fails a test instead of skipping it.
REQUIRE_PEERS = "INFERENCE_REQUIRE_PEERS"


def unused_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nobody listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def dead_url(host: str = "127.0.0.1") -> str:
    """``http://host:port`` for a port nobody listens on: connecting is refused."""
    return f"http://{host}:{unused_port(host)}"


@contextmanager
def serve_http(
    handler: type[BaseHTTPRequestHandler],
    *,
    server_class: type[ThreadingHTTPServer] | None = None,
    host: str = "127.0.0.1",
) -> Iterator[str]:
    """Serve ``handler`` on an ephemeral port of ``host`` in a daemon thread; yield its URL.

    The server (a ``ThreadingHTTPServer`` unless ``server_class`` says otherwise) is shut down
    and closed when the block ends.
    """
    from http.server import ThreadingHTTPServer

    server = (server_class or ThreadingHTTPServer)((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def missing_peer(message: str) -> NoReturn:
    """Skip the running test because of ``message``, or fail it under INFERENCE_REQUIRE_PEERS=1."""
    import pytest

    if os.environ.get(REQUIRE_PEERS) == "1":
        pytest.fail(f"{REQUIRE_PEERS}=1 but {message}", pytrace=False)
    pytest.skip(message)


def peer_url(variable: str, *, how: str = "scripts/peers", probe: str | None = None) -> str:
    """The URL of a real server from ``variable`` (stripped, no trailing slash).

    Unset or blank: :func:`missing_peer` (skip, or fail in CI); ``how`` says how to start it.
    With ``probe`` (a path such as ``"/health"``), a GET that gets no HTTP answer at all fails
    the test: a variable that names a dead server is never a skip.
    """
    url = os.environ.get(variable, "").strip().rstrip("/")
    if not url:
        missing_peer(f"{variable} is not set (start the peer with {how}, then export it)")
    if probe is not None:
        import httpx
        import pytest

        try:
            httpx.get(url + probe, timeout=5.0, trust_env=False)
        except httpx.HTTPError as exc:
            pytest.fail(f"{variable}={url} does not answer: {exc}", pytrace=False)
    return url
