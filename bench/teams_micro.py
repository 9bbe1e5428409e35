#!/usr/bin/env python3
"""CPU cost of keys + limits + usage accounting in the gateway layer (docs/teams.md).

The same harness as ``bench/micro.py`` (real Router over an in-memory backend answering the
benchmark's canned bodies; ASGI in, ASGI out, no sockets), run three ways:

* ``open``: no key configured (usage still counted, as the key ``anonymous``);
* ``keys``: a key store (TOML file) with a key that has every limit on (rpm, tpm, parallel,
  budget, model globs), in-process state;
* ``redis``: the same key and limits in Redis (``--redis URL``; one admit script call per
  request, settles batched).

    python bench/teams_micro.py [--n 5000] [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from micro import BODIES, Canned

from inference_core.gateway import GatewaySettings, create_app
from inference_core.gateway.keys import FileKeyStore, RedisKeyStore, make_record
from inference_core.router import Router
from inference_core.state import StateSettings

SECRET = "sk-inf-bench-" + "0" * 32
BIG = 10**12


async def run(mode: str, n: int, redis_url: str | None) -> None:
    record = make_record("bench", SECRET, models=["mock-*"], rpm=BIG, tpm=BIG, parallel=10**6,
                         budget=BIG, period="month")  # fmt: skip
    state = StateSettings()
    if mode == "keys":
        path = Path(tempfile.mkdtemp()) / "keys.toml"
        await FileKeyStore(path).create(record)
        state = StateSettings(keys_file=str(path))
    elif mode == "redis":
        from inference_core.state.redis import redis_client

        prefix = f"bench{uuid.uuid4().hex[:6]}:"
        client = redis_client(redis_url or "", 1.0)
        await RedisKeyStore(client, prefix).create(record)
        await client.aclose()
        state = StateSettings(redis_url=redis_url, redis_prefix=prefix)
    router = Router.from_env(
        {"INFERENCE_PROVIDER": "canned", "INFERENCE_CANNED_BASE_URL": "http://x",
         "HEALTH_CHECK_INTERVAL": "3600"},
        env_file=None, extra_plugins={"canned": Canned()},
    )  # fmt: skip
    app = create_app(router, GatewaySettings.from_env(env={}, access_log=False),
                     state_settings=state)  # fmt: skip
    async with app.router.lifespan_context(app):
        for name in ("chat", "stream"):
            path, body = BODIES[name]
            headers = [(b"content-type", b"application/json"),
                       (b"content-length", str(len(body)).encode())]  # fmt: skip
            if mode != "open":
                headers.append((b"authorization", b"Bearer " + SECRET.encode()))
            scope = {"type": "http", "method": "POST", "path": path.decode(), "headers": headers,
                     "query_string": b"", "http_version": "1.1", "scheme": "http",
                     "root_path": ""}  # fmt: skip
            status: list[int] = []

            async def receive(body: bytes = body) -> dict:
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: dict, status: list[int] = status) -> None:
                if message["type"] == "http.response.start":
                    status.append(message["status"])

            for _ in range(200):
                await app(scope, receive, send)
            t0 = time.process_time()
            for _ in range(n):
                await app(scope, receive, send)
            per = (time.process_time() - t0) / n * 1e6
            assert set(status) == {200}, set(status)
            print(f"{mode:6s} {name:6s} {per:7.1f} us/request", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--redis", default=None)
    a = ap.parse_args()
    for m in ("open", "keys", *(("redis",) if a.redis else ())):
        asyncio.run(run(m, a.n, a.redis))
