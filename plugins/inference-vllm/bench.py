"""Bounded benchmark of inference-vllm: tokens/s through the plugin vs direct, probe latency.

    .venv/bin/python plugins/inference-vllm/bench.py --url http://127.0.0.1:28200

(vLLM's start-to-ready, 50-95 s on this machine, is measured by scripts/peers/vllm.sh start.)
1. tokens/s for one stream of ``--max-tokens`` tokens (``ignore_eos``), alternating a direct
   ``httpx`` stream to the server with the same request through the plugin's ``chat`` hook,
   ``--runs`` times each; medians of time to first token and of decode tokens/s.
2. latency of the ``health`` hook, plain and with ``health_deep`` (reads /metrics), 5 each.
At most 2 x runs + 1 generation requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import httpx

import inference_vllm
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
    parser.add_argument("--url", required=True, help="a vLLM chat server")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()

    async with create_client() as http:
        plugin = inference_vllm.VLLMPlugin()
        config = BackendConfig(name="vllm", base_urls=(args.url.rstrip("/"),))
        config = await plugin.startup(config=config, http=http) or config
        url = config.base_url
        model = (await plugin.list_models(config=config, http=http))[0].id
        BODY["model"] = model
        await direct(url, 4)  # warm-up
        plain, plug = [], []
        for _ in range(args.runs):
            plain.append(await direct(url, args.max_tokens))
            plug.append(await through_plugin(plugin, config, http, args.max_tokens))
        print(f"one stream of {args.max_tokens} tokens against {url} ({model}):")
        print(summary("direct", plain))
        print(summary("plugin", plug))
        deep = config.model_copy(update={"options": {**config.options, "health_deep": "true"}})
        for label, cfg in (("health", config), ("deep", deep)):
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                state = (await plugin.health(config=cfg, http=http)).state
                times.append((time.perf_counter() - t0) * 1000)
            print(f"{label:>7}: {state}, median {statistics.median(times):.1f} ms per probe")


if __name__ == "__main__":
    asyncio.run(main())
