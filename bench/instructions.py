#!/usr/bin/env python3
"""Instructions per request of the gateway layer, counted by valgrind's callgrind.

Wall-clock and CPU-time figures on this shared 2-core machine move by +-10 % between runs; an
instruction count does not (the same binary, inputs and environment give the same count,
whatever else the machine does).  This runs one endpoint of ``bench/micro.py``'s in-process
setup (ASGI in, ASGI out, the real Router, an in-memory backend answering the mock bodies) and
runs ``--n`` requests after a warm-up; ``bench/instructions.sh`` counts the whole process for
``n`` and ``2n`` requests and takes the difference, so start-up and imports cancel out.

    bench/instructions.sh [--python PY] [--endpoint chat] [--n 500] [--key]   # the wrapper

Any interpreter works (``--python /other/checkout/.venv/bin/python`` measures another version
of the code with this same script), so two versions are compared on identical requests.
``--key`` turns the key store on (a keys file with every limit set, usage accounting) and sends
the key, as a team gateway runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from micro import BODIES, Canned  # noqa: E402  (the same requests and canned backend)

from inference_core.gateway import GatewaySettings, create_app  # noqa: E402
from inference_core.router import Router  # noqa: E402

SECRET = "sk-bench-instructions-0123456789"


def _keys_file() -> str:
    import hashlib

    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    path = Path(tempfile.mkdtemp()) / "keys.toml"
    path.write_text(
        f'[keys."bench"]\nhash = "{digest}"\nrpm = 100000000\ntpm = 100000000000\n'
        'parallel = 100000\nbudget = 100000000000\nperiod = "month"\n'
    )
    return str(path)


async def main(endpoint: str, n: int, key: bool) -> None:
    if key:
        os.environ["INFERENCE_KEYS_FILE"] = _keys_file()
    router = Router.from_env(
        {"INFERENCE_PROVIDER": "canned", "INFERENCE_CANNED_BASE_URL": "http://x",
         "HEALTH_CHECK_INTERVAL": "3600"},
        env_file=None, extra_plugins={"canned": Canned()},
    )  # fmt: skip
    app = create_app(router, GatewaySettings.from_env(env={}, access_log=False))
    path, body = BODIES[endpoint]
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if key:
        headers.append((b"authorization", b"Bearer " + SECRET.encode()))
    scope = {
        "type": "http", "method": "POST", "path": path.decode(), "headers": headers,
        "query_string": b"", "http_version": "1.1", "scheme": "http", "root_path": "",
    }  # fmt: skip
    status: list[int] = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    async with app.router.lifespan_context(app):
        for _ in range(100):
            await app(scope, receive, send)
        for _ in range(n):
            await app(scope, receive, send)
    bad = [s for s in status if s != 200]
    if bad:
        raise SystemExit(f"{len(bad)} request(s) did not answer 200 (first: {bad[0]})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", default="chat", choices=sorted(BODIES))
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--key", action="store_true")
    a = ap.parse_args()
    asyncio.run(main(a.endpoint, a.n, a.key))
