"""The one pooled ``httpx.AsyncClient`` that core owns and hands to every hook."""

from __future__ import annotations

import httpx

from .. import __version__

USER_AGENT = f"inference-core/{__version__}"


def create_client(
    *,
    connect_timeout: float = 5.0,
    read_timeout: float = 600.0,
    max_connections: int = 1000,
    max_keepalive: int = 200,
    keepalive_expiry: float = 4.0,
    transport: httpx.AsyncBaseTransport | None = None,
    fast_transport: bool = True,
) -> httpx.AsyncClient:
    """Build the shared client: short connect timeout, long read timeout, a large pool.

    ``keepalive_expiry`` stays below the 5 s keep-alive that llama.cpp and uvicorn advertise, so
    the pool drops an idle connection before the server does.  ``read_timeout`` is the idle
    deadline between two reads; the router enforces first-token and total deadlines itself.
    ``transport`` lets tests inject an ``httpx.MockTransport``.  Unless ``fast_transport`` is
    false, plain ``http://`` URLs go through ``transport.FastHTTPTransport`` (a lean HTTP/1.1
    pool, several times cheaper than ``httpcore``); ``https://`` keeps ``httpcore``.  Responses
    are asked for uncompressed (``accept-encoding: identity``) so bytes can be relayed as they are.
    """
    mounts = None
    if transport is None and fast_transport:
        from .transport import FastHTTPTransport

        mounts = {
            "http://": FastHTTPTransport(
                max_keepalive=max_keepalive,
                keepalive_expiry=keepalive_expiry,
                max_connections=max_connections,  # per backend (host, port)
            )
        }
    return httpx.AsyncClient(
        timeout=httpx.Timeout(read_timeout, connect=connect_timeout, pool=connect_timeout),
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_keepalive,
            keepalive_expiry=keepalive_expiry,
        ),
        headers={"user-agent": USER_AGENT, "accept-encoding": "identity"},
        follow_redirects=False,
        trust_env=False,
        transport=transport,
        mounts=mounts,
    )
