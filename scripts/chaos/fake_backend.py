"""A fast, dependency-free OpenAI-compatible backend for the chaos suite (loopback only).

Serves what the vllm / llamacpp / openai plugins talk to: ``GET /health`` (200
``{"status":"ok"}``), ``GET /v1/models`` (and ``/models``), ``POST /v1/chat/completions``
(``/chat/completions``) JSON and SSE (``stream_options.include_usage`` honoured, ends with
``[DONE]``), ``POST /v1/completions``, ``POST /v1/embeddings``. HTTP/1.1 keep-alive, chunked
streams. ``token_delay`` seconds between stream chunks; ``latency`` before a JSON answer.

    python scripts/chaos/fake_backend.py --port 29200 [--model fake-model] [--max-seconds 3600]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import time

from httpwire import ProtocolError, read_body, read_head, response_bytes

__all__ = ["FakeBackend"]

WORDS = ("chaos", " is", " a", " ladder", ".")


class FakeBackend:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        model: str = "fake-model",
        token_delay: float = 0.002,
        latency: float = 0.0,
    ) -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("loopback only")
        self.host, self.port, self.model = host, port, model
        self.token_delay, self.latency = token_delay, latency
        self.requests = 0
        self._ids = itertools.count(1)
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> FakeBackend:
        self._server = await asyncio.start_server(
            self._on_client, self.host, self.port, backlog=512
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._conns):
            t.cancel()
        if self._conns:
            await asyncio.gather(*self._conns, return_exceptions=True)

    async def __aenter__(self) -> FakeBackend:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            while True:
                head = await read_head(reader)
                if head is None:
                    break
                body = await read_body(reader, head)
                self.requests += 1
                path = head.target.split("?", 1)[0]
                if head.method == "GET" and path in ("/health", "/v1/health"):
                    writer.write(response_bytes(200, b'{"status":"ok"}'))
                elif head.method == "GET" and path in ("/v1/models", "/models"):
                    data = {
                        "object": "list",
                        "data": [
                            {"id": self.model, "object": "model", "created": 0, "owned_by": "chaos"}
                        ],
                    }
                    writer.write(response_bytes(200, json.dumps(data).encode()))
                elif head.method == "POST" and path.endswith("/chat/completions"):
                    await self._chat(writer, body, chat=True)
                elif head.method == "POST" and path.endswith("/completions"):
                    await self._chat(writer, body, chat=False)
                elif head.method == "POST" and path.endswith("/embeddings"):
                    req = _loads(body)
                    inputs = req.get("input", "")
                    n = len(inputs) if isinstance(inputs, list) else 1
                    data = {
                        "object": "list",
                        "model": self.model,
                        "data": [
                            {"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}
                            for i in range(n)
                        ],
                        "usage": {"prompt_tokens": n, "total_tokens": n},
                    }
                    writer.write(response_bytes(200, json.dumps(data).encode()))
                else:
                    err = {
                        "error": {
                            "message": "not found",
                            "type": "not_found_error",
                            "param": None,
                            "code": "not_found",
                        }
                    }
                    writer.write(response_bytes(404, json.dumps(err).encode()))
                await writer.drain()
                if head.wants_close:
                    break
        except (ConnectionError, ProtocolError, asyncio.IncompleteReadError, OSError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._conns.discard(task)
            writer.close()

    async def _chat(self, writer: asyncio.StreamWriter, body: bytes, *, chat: bool) -> None:
        req = _loads(body)
        if req is None:
            err = {
                "error": {
                    "message": "invalid JSON body",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            }
            writer.write(response_bytes(400, json.dumps(err).encode()))
            return
        n_tok = max(1, min(int(req.get("max_tokens") or 5), len(WORDS)))
        cid = f"chatcmpl-fake{next(self._ids)}"
        created = int(time.time())
        obj = "chat.completion" if chat else "text_completion"
        usage = {"prompt_tokens": 3, "completion_tokens": n_tok, "total_tokens": 3 + n_tok}
        if not req.get("stream"):
            if self.latency:
                await asyncio.sleep(self.latency)
            text = "".join(WORDS[:n_tok])
            choice = (
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "length",
                    "logprobs": None,
                }
                if chat
                else {"index": 0, "text": text, "finish_reason": "length", "logprobs": None}
            )
            data = {
                "id": cid,
                "object": obj,
                "created": created,
                "model": self.model,
                "choices": [choice],
                "usage": usage,
            }
            writer.write(response_bytes(200, json.dumps(data).encode()))
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        cobj = "chat.completion.chunk" if chat else "text_completion"

        def event(choices: list, usage_v: dict | None = None) -> bytes:
            d = {
                "id": cid,
                "object": cobj,
                "created": created,
                "model": self.model,
                "choices": choices,
            }
            if usage_v is not None:
                d["usage"] = usage_v
            return b"data: " + json.dumps(d).encode() + b"\n\n"

        def piece(i: int, text: str | None, finish: str | None) -> dict:
            if chat:
                delta: dict = {} if text is None else {"content": text}
                if i < 0:
                    delta = {"role": "assistant", "content": ""}
                return {"index": 0, "delta": delta, "finish_reason": finish}
            return {"index": 0, "text": text or "", "finish_reason": finish}

        events = [event([piece(-1, None, None)])] if chat else []
        events += [event([piece(i, WORDS[i], None)]) for i in range(n_tok)]
        events.append(event([piece(n_tok, None, "length")]))
        if (req.get("stream_options") or {}).get("include_usage"):
            events.append(event([], usage))
        events.append(b"data: [DONE]\n\n")
        for ev in events:
            writer.write(f"{len(ev):x}\r\n".encode() + ev + b"\r\n")
            await writer.drain()
            if self.token_delay:
                await asyncio.sleep(self.token_delay)
        writer.write(b"0\r\n\r\n")


def _loads(body: bytes) -> dict | None:
    try:
        v = json.loads(body or b"{}")
    except ValueError:
        return None
    return v if isinstance(v, dict) else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--model", default="fake-model")
    ap.add_argument("--token-delay", type=float, default=0.002)
    ap.add_argument("--max-seconds", type=float, default=3600)
    args = ap.parse_args()

    async def run() -> None:
        async with FakeBackend(
            port=args.port, model=args.model, token_delay=args.token_delay
        ) as fb:
            print(f"fake backend {fb.url}", flush=True)
            await asyncio.sleep(args.max_seconds)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
