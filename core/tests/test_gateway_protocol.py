"""The corked uvicorn protocol's transport: writes coalesced, never held past the loop turn."""

from __future__ import annotations

import asyncio
from typing import Any

from inference_core.gateway._protocol import _MAX_PENDING, CorkedHttpToolsProtocol, _CorkedTransport
from inference_core.gateway.server import uvicorn_options
from inference_core.gateway.settings import GatewaySettings


class Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1234) if name == "peername" else default


async def test_second_write_sends_both_at_once() -> None:
    inner = Recorder()
    t = _CorkedTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert inner.writes == []  # held
    t.write(b"body")
    assert inner.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]  # one send, at once
    await asyncio.sleep(0)
    assert inner.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]  # the scheduled flush is a no-op


async def test_a_lone_write_goes_out_at_the_end_of_the_loop_turn() -> None:
    inner = Recorder()
    t = _CorkedTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(b"chunk")
    assert inner.writes == []
    await asyncio.sleep(0)
    assert inner.writes == [b"chunk"]


async def test_large_writes_close_and_delegation() -> None:
    inner = Recorder()
    t = _CorkedTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    big = b"x" * (_MAX_PENDING + 1)
    t.write(big)
    assert inner.writes == [big]  # never held when large
    t.write(b"tail")
    t.close()
    assert inner.writes == [big, b"tail"]
    assert inner.closed
    t.write(b"late")
    await asyncio.sleep(0)
    assert inner.writes == [big, b"tail"]  # nothing written to a closed transport
    assert t.get_extra_info("peername") == ("127.0.0.1", 1234)  # everything else delegated


def test_serve_uses_the_corked_protocol_with_uvloop() -> None:
    options = uvicorn_options(GatewaySettings.from_env(env={}, drain_timeout=7))
    # the guard (gateway/guard.py) is the corked protocol plus client limits
    assert issubclass(options["http"], CorkedHttpToolsProtocol)
    assert options["http"].header_timeout == 10.0
    assert options["loop"] == "uvloop"
    assert options["access_log"] is False
    assert options["timeout_graceful_shutdown"] == 7
    assert options["lifespan"] == "on"


def test_defaults_keep_off_vllms_port_and_outlive_client_keepalive() -> None:
    options = uvicorn_options(GatewaySettings.from_env(env={}))
    assert options["port"] == 8080  # vLLM's default is 8000
    # clients (httpx) drop idle connections after 5 s: the gateway must keep them longer
    assert options["timeout_keep_alive"] > 5
    tuned = GatewaySettings.from_env(env={"INFERENCE_GATEWAY_KEEPALIVE_TIMEOUT": "12"})
    assert uvicorn_options(tuned)["timeout_keep_alive"] == 12
