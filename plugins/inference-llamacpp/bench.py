"""Bounded benchmark of inference-llamacpp: start-to-ready and tokens/s, plugin vs direct.

    .venv/bin/python plugins/inference-llamacpp/bench.py                 # managed child
    .venv/bin/python plugins/inference-llamacpp/bench.py --url http://127.0.0.1:28210

1. start-to-ready (managed mode only): ``startup`` of a fresh plugin instance, ``--starts``
   times (binary and model already provisioned: the "later starts" case), then ``shutdown``.
2. tokens/s for one stream of ``--max-tokens`` tokens (``ignore_eos``), alternating a direct
   ``httpx`` stream to the server with the same request through the plugin's ``chat`` hook,
   ``--runs`` times each; medians of time to first token and of decode tokens/s.
At most starts + 2 x runs requests; nothing is left running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import httpx

import inference_llamacpp
from inference_core import BackendConfig, ChatRequest
from inference_core.http import create_client

BODY = {
    "messages": [{"role": "user", "content": "Write a long story about a lighthouse."}],
    "temperature": 0,
    "ignore_eos": True,
    "stream": True,
    "stream_options": {"include_usage": True},
}


async def direct(url: str, max_tokens: int) -> tuple[float, float, int]:
    """(time to first token, wall time, completion tokens) with a plain httpx stream."""
    body = {**BODY, "max_tokens": max_tokens}
    async with httpx.AsyncClient(timeout=120, trust_env=False) as client:
        t0 = time.perf_counter()
        ttft = None
        tokens = 0
        async with client.stream("POST", url + "/v1/chat/completions", json=body) as r:
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                    ttft = ttft or time.perf_counter() - t0
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
        return ttft or 0.0, time.perf_counter() - t0, tokens


async def through_plugin(
    plugin, config: BackendConfig, http: httpx.AsyncClient, max_tokens: int
) -> tuple[float, float, int]:
    request = ChatRequest(**BODY, max_tokens=max_tokens)
    t0 = time.perf_counter()
    ttft = None
    tokens = 0
    async for chunk in await plugin.chat(request=request, config=config, http=http):
        if chunk.choices and chunk.choices[0].delta.content:
            ttft = ttft or time.perf_counter() - t0
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    return ttft or 0.0, time.perf_counter() - t0, tokens


def summary(label: str, runs: list[tuple[float, float, int]]) -> str:
    ttft = statistics.median(r[0] for r in runs)
    decode = statistics.median((r[2] - 1) / (r[1] - r[0]) for r in runs if r[1] > r[0])
    overall = statistics.median(r[2] / r[1] for r in runs)
    return (
        f"{label:>7}: ttft {ttft * 1000:6.0f} ms | decode {decode:5.1f} tok/s | "
        f"end-to-end {overall:5.1f} tok/s | runs {[round(r[2] / r[1], 1) for r in runs]}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an external llama-server (else a managed child)")
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", default="1")
    args = parser.parse_args()

    async with create_client() as http:
        plugin = inference_llamacpp.LlamaCppPlugin()
        managed = BackendConfig(name="llamacpp", options={"threads": args.threads})
        if not args.url:
            for i in range(args.starts):
                fresh = inference_llamacpp.LlamaCppPlugin()
                t0 = time.perf_counter()
                await fresh.startup(config=managed, http=http)
                total = time.perf_counter() - t0
                server = fresh.managed_server()
                print(
                    f"start {i + 1}: startup() {total:.2f}s, spawn -> /health 200 "
                    f"{server.ready_after:.2f}s"
                )
                await fresh.shutdown(config=managed)
            config = await plugin.startup(config=managed, http=http)
        else:
            config = BackendConfig(name="llamacpp", base_urls=(args.url,))
        try:
            url = config.base_url
            await direct(url, 4)  # warm-up (prompt cache, first allocation)
            plain, plug = [], []
            for _ in range(args.runs):
                plain.append(await direct(url, args.max_tokens))
                plug.append(await through_plugin(plugin, config, http, args.max_tokens))
            print(f"one stream of {args.max_tokens} tokens against {url}:")
            print(summary("direct", plain))
            print(summary("plugin", plug))
        finally:
            await plugin.shutdown(config=managed)


if __name__ == "__main__":
    asyncio.run(main())
