"""In-process A/B of the guard's cost: CPU per request of uvicorn's corked httptools protocol
(``gateway/_protocol.py``) against the guarded one (``gateway/guard.py``). The same request is fed
to each through a stand-in transport, answered by a trivial ASGI app, on uvloop; the rounds are
interleaved so that a busy machine weighs on both alike.

    .venv/bin/python scripts/abuse/protocol_cost.py 20000 7     # requests per round, rounds
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from typing import Any

import uvloop
from uvicorn.config import Config
from uvicorn.server import ServerState

from inference_core.gateway._protocol import CorkedHttpToolsProtocol
from inference_core.gateway.guard import guarded_protocol
from inference_core.gateway.settings import GatewaySettings

BODY = b'{"messages": [{"role": "user", "content": "hello"}]}'
REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:8080\r\naccept: */*\r\n"
    b"accept-encoding: gzip, deflate\r\nconnection: keep-alive\r\n"
    b"user-agent: python-httpx/0.28\r\nauthorization: Bearer k\r\n"
    b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(BODY), BODY)
)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await receive()
    headers = [(b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})


class Transport(asyncio.Transport):
    """Counts writes; everything else is a no-op."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False
        self.writes = 0

    def write(self, data: Any) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 5555)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def one_round(cls: type, n: int) -> float:
    """Microseconds of CPU per request for ``n`` requests on one kept-alive connection."""
    config = Config(app=app, lifespan="off", log_level="warning")
    config.load()
    protocol = cls(config=config, server_state=ServerState(), app_state={})
    transport = Transport()
    protocol.connection_made(transport)
    for _ in range(200):  # warm up
        protocol.data_received(REQUEST)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    c0 = time.process_time()
    for _ in range(n):
        protocol.data_received(REQUEST)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    c1 = time.process_time()
    protocol.connection_lost(None)
    assert transport.writes >= n, "the responses were not written"
    return (c1 - c0) / n * 1e6


async def main(n: int, rounds: int) -> None:
    guarded = guarded_protocol(GatewaySettings.from_env(env={}))
    results: dict[str, list[float]] = {"corked": [], "guarded": []}
    for _ in range(rounds):
        results["corked"].append(await one_round(CorkedHttpToolsProtocol, n))
        results["guarded"].append(await one_round(guarded, n))
    for name, values in results.items():
        shown = [round(v, 1) for v in values]
        print(f"{name}: us/request {shown}, median {statistics.median(values):.1f}")


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000,
                    int(sys.argv[2]) if len(sys.argv) > 2 else 7))  # fmt: skip
