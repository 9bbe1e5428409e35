"""Measure what Router.chat adds on top of a direct plugin call (µs per call).

Both paths use the same pooled httpx client over an in-memory ``httpx.MockTransport`` and the
same OpenAI-compatible plugin code, so the difference is the router's own work: routing order,
breaker and replica bookkeeping, deadlines (``asyncio.timeout``), pluggy dispatch, the trace
and, for streams, the wrapping iterator with its idle deadline.

    .venv/bin/python scripts/bench_router.py [--n 3000] [--chunks 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import httpx

from inference_core.hookspecs import hookimpl
from inference_core.http import create_client, openai_compat
from inference_core.models import BackendConfig, ChatRequest
from inference_core.plugins import load_backends
from inference_core.resilience.policy import RouterPolicy
from inference_core.router import Router


class Plugin:
    @hookimpl
    async def chat(self, request, config, http):
        return await openai_compat.chat(http, config, request)


class Settings:
    chain = ["bench"]
    policy = RouterPolicy()
    health_check_interval = 3600.0
    health_check_timeout = 5.0

    def backend(self, name):
        return CONFIG


CONFIG = BackendConfig(name="bench", base_urls=("http://bench.test",), model="m")


def make_transport(chunks: int) -> httpx.MockTransport:
    answer = json.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    ).encode()
    chunk = (
        b"data: "
        + json.dumps(
            {
                "id": "x",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": "tok"}}],
            }
        ).encode()
        + b"\n\n"
    )
    stream_body = chunk * chunks + b"data: [DONE]\n\n"

    def handler(request: httpx.Request) -> httpx.Response:
        if b'"stream":true' in request.content:
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, content=stream_body
            )
        return httpx.Response(200, content=answer, headers={"content-type": "application/json"})

    return httpx.MockTransport(handler)


async def compare(direct, routed, n: int, rounds: int = 7) -> tuple[float, float, float]:
    """Median µs per call of each, and the median of the per-round differences (interleaved
    rounds, so that heap growth and CPU frequency drift hit both sides alike)."""
    for _ in range(200):  # warm-up
        await direct()
        await routed()
    d_runs, r_runs, diffs = [], [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            await direct()
        d = (time.perf_counter() - t0) / n * 1e6
        t0 = time.perf_counter()
        for _ in range(n):
            await routed()
        r = (time.perf_counter() - t0) / n * 1e6
        d_runs.append(d)
        r_runs.append(r)
        diffs.append(r - d)
    return statistics.median(d_runs), statistics.median(r_runs), statistics.median(diffs)


class MemoryPlugin:
    """Answers from memory: measures the router alone, without any HTTP work."""

    def __init__(self, chunks: int) -> None:
        from inference_core.models import ChatChunk, ChatResponse

        self.answer = ChatResponse.model_validate(
            {
                "id": "x",
                "created": 1,
                "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
            }
        )
        self.chunk = ChatChunk.model_validate(
            {"id": "x", "created": 1, "model": "m", "choices": [{"delta": {"content": "t"}}]}
        )
        self.n = chunks

    async def _stream(self):
        for _ in range(self.n):
            yield self.chunk

    @hookimpl
    async def chat(self, request, config, http):
        return self._stream() if request.stream else self.answer


async def main(n: int, chunks: int) -> None:
    t = make_transport(chunks)
    req = ChatRequest(model="alias", messages=[{"role": "user", "content": "hello"}])
    sreq = ChatRequest(model="alias", messages=[{"role": "user", "content": "hello"}], stream=True)

    # 1. the router alone: an in-memory plugin, direct call vs Router.chat
    mem = MemoryPlugin(chunks)
    router = Router(Settings(), load_backends(["bench"], extra_plugins={"bench": mem}))
    await router.start()

    async def mem_direct():
        return await mem.chat(req, CONFIG, None)

    async def mem_routed():
        return await router.chat(req)

    async def mem_direct_stream():
        async for _ in await mem.chat(sreq, CONFIG, None):
            pass

    async def mem_routed_stream():
        async for _ in await router.chat(sreq):
            pass

    d, r, o = await compare(mem_direct, mem_routed, n * 5)
    print(
        f"in-memory plugin, non-stream: direct {d:7.1f} µs  router {r:7.1f} µs  "
        f"overhead {o:6.1f} µs"
    )
    d, r, o = await compare(mem_direct_stream, mem_routed_stream, n)
    print(
        f"in-memory plugin, stream({chunks}): direct {d:7.1f} µs  router {r:7.1f} µs  "
        f"overhead {o:6.1f} µs ({o / chunks:.2f} µs/chunk)"
    )
    await router.aclose()

    # 2. over HTTP (httpx.MockTransport, OpenAI-compatible helpers): noisier, same overhead
    plugins = load_backends(["bench"], extra_plugins={"bench": Plugin()})
    router = Router(Settings(), plugins, transport=t)
    await router.start()
    http = create_client(transport=t)

    async def direct():
        return await openai_compat.chat(http, CONFIG, req)

    async def routed():
        return await router.chat(req)

    async def direct_stream():
        async for _ in await openai_compat.chat(http, CONFIG, sreq):
            pass

    async def routed_stream():
        async for _ in await router.chat(sreq):
            pass

    d, r, o = await compare(direct, routed, n)
    print(
        f"MockTransport, non-stream: direct {d:7.1f} µs  router {r:7.1f} µs  overhead {o:6.1f} µs"
    )
    d, r, o = await compare(direct_stream, routed_stream, max(1, n // 4))
    print(
        f"MockTransport, stream({chunks}): direct {d:7.1f} µs  router {r:7.1f} µs  "
        f"overhead {o:6.1f} µs ({o / chunks:.2f} µs/chunk)"
    )
    await router.aclose()
    await http.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--chunks", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.chunks))
