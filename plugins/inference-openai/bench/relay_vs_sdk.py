"""Client-side cost of one call through the plugin: raw relay vs the official SDK.

The upstream is an in-process ``httpx.MockTransport`` answering canned OpenAI bytes, so the
numbers are the plugin's own CPU per call (building the request, parsing, converting), not
network or server time.  Run: ``.venv/bin/python plugins/inference-openai/bench/relay_vs_sdk.py``
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx

import inference_openai
from inference_core import ChatRequest, EmbeddingRequest
from inference_core.testing import make_config

plugin = inference_openai.plugin
N = 2000
STREAM_TOKENS = 64

CHAT = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there, " * 20},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 40, "total_tokens": 50},
    }
).encode()


def _chunk(delta: dict, finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


STREAM = (
    _chunk({"role": "assistant", "content": ""})
    + b"".join(_chunk({"content": f" tok{i}"}) for i in range(STREAM_TOKENS))
    + _chunk({}, "stop")
    + b"data: [DONE]\n\n"
)
EMBED = json.dumps(
    {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": [0.01] * 1536} for i in range(8)],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    }
).encode()


def handler(request: httpx.Request) -> httpx.Response:
    if request.url.path.endswith("/embeddings"):
        return httpx.Response(200, content=EMBED, headers={"content-type": "application/json"})
    if b'"stream":true' in request.content.replace(b" ", b""):
        return httpx.Response(200, content=STREAM, headers={"content-type": "text/event-stream"})
    return httpx.Response(200, content=CHAT, headers={"content-type": "application/json"})


async def bench(kind: str) -> dict[str, float]:
    config = make_config(
        "openai", base_url="http://bench.test/v1", api_key="sk-x", options={"client": kind}
    )
    out = {}
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        msgs = [{"role": "user", "content": "hi"}]
        chat = ChatRequest(model="m", messages=msgs)
        stream = ChatRequest(model="m", messages=msgs, stream=True)
        embed = EmbeddingRequest(model="e", input=[f"text {i}" for i in range(8)])

        async def one_chat():
            await plugin.chat(request=chat, config=config, http=http)

        async def one_stream():
            async for _ in await plugin.chat(request=stream, config=config, http=http):
                pass

        async def one_embed():
            await plugin.embed(request=embed, config=config, http=http)

        for name, fn, n in (
            ("chat", one_chat, N),
            (f"stream ({STREAM_TOKENS + 2} chunks)", one_stream, N // 4),
            ("embed (8 x 1536 floats)", one_embed, N // 4),
        ):
            for _ in range(50):
                await fn()
            started = time.process_time()
            for _ in range(n):
                await fn()
            out[name] = (time.process_time() - started) / n * 1e6
    return out


async def main() -> None:
    raw = await bench("raw")
    sdk = await bench("sdk")
    print(f"{'call':32} {'raw us':>10} {'sdk us':>10} {'sdk/raw':>8}")
    for name in raw:
        print(f"{name:32} {raw[name]:10.0f} {sdk[name]:10.0f} {sdk[name] / raw[name]:8.2f}")


if __name__ == "__main__":
    asyncio.run(main())
