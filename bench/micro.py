#!/usr/bin/env python3
"""CPU cost of the gateway layer alone: ASGI in, ASGI out, no sockets, no upstream I/O.

The real Router runs with an in-memory backend that answers with the benchmark's canned mock
bodies (``mock/static``: chat 662 B, SSE of 32 chunks + usage chunk, 2 x 384-dim embeddings),
parsed exactly as ``openai_compat`` parses them (``Model.from_raw`` per body / per chunk). So
the number is: gateway (dispatch, body parse, auth, caps, relay, metrics, access log) + router
+ wire-model parsing; what is *not* in it is uvicorn's HTTP parsing/socket writes and the
upstream HTTP client.  Compare with ``cpu us/req`` of bench/run.sh to see what those cost.

    python bench/micro.py [--n 20000] [--access-log]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from pathlib import Path

from inference_core import hookimpl
from inference_core.gateway import GatewaySettings, create_app
from inference_core.models import ChatChunk, ChatResponse, EmbeddingResponse
from inference_core.router import Router

STATIC = Path(__file__).resolve().parent / "mock" / "static"
DEVNULL = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
CHAT = (STATIC / "chat.json").read_bytes()
EMBED = (STATIC / "embeddings.json").read_bytes()
EVENTS = [
    line[6:]
    for line in (STATIC / "stream.sse").read_bytes().split(b"\n\n")
    if line.startswith(b"data: ") and line != b"data: [DONE]"
]
BODIES = {
    "chat": (b"/v1/chat/completions", b'{"model":"mock-chat","messages":[{"role":"system",'
             b'"content":"You are a helpful assistant."},{"role":"user","content":"Say hello in '
             b'one short sentence."}],"max_tokens":64,"temperature":0}'),
    "stream": (b"/v1/chat/completions", b'{"model":"mock-stream","messages":[{"role":"system",'
               b'"content":"You are a helpful assistant."},{"role":"user","content":"Say hello '
               b'in one short sentence."}],"max_tokens":64,"temperature":0,"stream":true,'
               b'"stream_options":{"include_usage":true}}'),
    "embed": (b"/v1/embeddings", b'{"model":"mock-embed","input":["The quick brown fox",'
              b'"jumps over the lazy dog"]}'),
    "messages": (b"/v1/messages", b'{"model":"mock-chat","system":"You are a helpful assistant.",'
                 b'"messages":[{"role":"user","content":"Say hello in one short sentence."}],'
                 b'"max_tokens":64,"temperature":0}'),
    "messages_stream": (b"/v1/messages", b'{"model":"mock-stream","system":"You are a helpful '
                        b'assistant.","messages":[{"role":"user","content":"Say hello in one '
                        b'short sentence."}],"max_tokens":64,"temperature":0,"stream":true}'),
    "responses": (b"/v1/responses", b'{"model":"mock-chat","instructions":"You are a helpful '
                  b'assistant.","input":"Say hello in one short sentence.","max_output_tokens":64,'
                  b'"temperature":0,"store":false}'),
    "responses_stream": (b"/v1/responses", b'{"model":"mock-stream","instructions":"You are a '
                         b'helpful assistant.","input":"Say hello in one short sentence.",'
                         b'"max_output_tokens":64,"temperature":0,"stream":true,"store":false}'),
}  # fmt: skip


class Canned:
    @hookimpl
    async def chat(self, request, config, http):
        if request.stream:

            async def gen():
                for raw in EVENTS:
                    yield ChatChunk.from_raw(raw)

            return gen()
        return ChatResponse.from_raw(CHAT)

    @hookimpl
    async def embed(self, request, config, http):
        return EmbeddingResponse.from_raw(EMBED)


async def main(n: int, access_log: bool) -> None:
    router = Router.from_env(
        {"INFERENCE_PROVIDER": "canned", "INFERENCE_CANNED_BASE_URL": "http://x",
         "HEALTH_CHECK_INTERVAL": "3600"},
        env_file=None, extra_plugins={"canned": Canned()},
    )  # fmt: skip
    settings = GatewaySettings.from_env(env={}, access_log=access_log)
    if access_log:  # the JSON access line is formatted and written (to /dev/null)
        from inference_core.gateway.logs import configure_logging

        configure_logging("json")
        handler = logging.getLogger("inference_core").handlers[0]
        handler.setStream(DEVNULL)  # type: ignore[attr-defined]
    app = create_app(router, settings)
    await router.start()
    for name, (path, body) in BODIES.items():
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        scope = {
            "type": "http",
            "method": "POST",
            "path": path.decode(),
            "headers": headers,
            "query_string": b"",
            "http_version": "1.1",
            "scheme": "http",
            "root_path": "",
        }
        out = bytearray()

        async def receive(body=body):
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message, out=out):
            if message["type"] == "http.response.body":
                out.extend(message.get("body", b""))

        for _ in range(200):
            out.clear()
            await app(scope, receive, send)
        t0 = time.process_time()
        for _ in range(n):
            out.clear()
            await app(scope, receive, send)
        per = (time.process_time() - t0) / n * 1e6
        print(f"{name:16s} {per:7.1f} us/request ({len(out)} B out)", flush=True)
    await router.aclose()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--access-log", action="store_true")
    a = ap.parse_args()
    asyncio.run(main(a.n, a.access_log))
