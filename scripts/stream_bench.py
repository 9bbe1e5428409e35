"""Shared by the plugin benchmarks (``plugins/inference-{llamacpp,vllm}/bench.py``): one stream of
``max_tokens`` tokens (``ignore_eos``) measured the same way, directly and through a plugin's
``chat`` hook, so that the numbers of the two backends compare.

Each measurement is ``(time to first token, wall time, completion tokens)``; :func:`summary`
prints the medians of time to first token, decode tokens/s and end-to-end tokens/s.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import httpx

from inference_core import BackendConfig, ChatRequest

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
    plugin: Any, config: BackendConfig, http: httpx.AsyncClient, max_tokens: int
) -> tuple[float, float, int]:
    """The same measurement through ``plugin.chat`` (the plugin's own streaming path)."""
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
