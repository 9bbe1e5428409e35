#!/usr/bin/env python3
"""Instructions per request of a whole gateway process (uvicorn, HTTP parsing, the upstream
client, everything in user space), counted by valgrind's callgrind.

``bench/instructions.py`` counts the gateway layer in process with a canned backend; this one
runs ``inference serve``'s app exactly as the benchmark does (``bench/gateway.env``: the vllm
plugin over HTTP to the nginx mock of ``bench/nginx.conf``, which must be running) under
callgrind, sends warm-up requests, zeroes the counters (``callgrind_control -z``), sends
``--n`` requests over ``--c`` keep-alive connections, and dumps the counters
(``callgrind_control -d``): the total divided by ``n`` is one request's user-space
instructions (within about 1 %: how often the event loop wakes up varies a little).  Kernel
time is not in it; ``--strace`` counts the system calls of the same requests instead.

    python bench/instructions_http.py [--python PY] [--endpoint chat|stream] [--n 300] \
        [--c 1] [--key] [--strace]

``--python`` picks the interpreter (so another checkout's code is measured with the same
requests); ``--key`` runs with a key store with every limit on and sends the key.  Needs
valgrind (or strace); prints ``<endpoint> <Ir>/request``.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from micro import BODIES  # noqa: E402  (the benchmark's request bodies)

SECRET = "sk-bench-instructions-0123456789"
PORT = 18290


def _env(key: bool) -> dict[str, str]:
    env = dict(os.environ)
    for line in (HERE / "gateway.env").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    env.update(INFERENCE_GATEWAY_PORT=str(PORT), PYTHONHASHSEED="0", HEALTH_CHECK_INTERVAL="3600")
    if key:
        digest = hashlib.sha256(SECRET.encode()).hexdigest()
        path = Path(tempfile.mkdtemp()) / "keys.toml"
        path.write_text(
            f'[keys."bench"]\nhash = "{digest}"\nrpm = 100000000\ntpm = 100000000000\n'
            'parallel = 100000\nbudget = 100000000000\nperiod = "month"\n'
        )
        env["INFERENCE_KEYS_FILE"] = str(path)
    return env


def _send(conn: http.client.HTTPConnection, path: str, body: bytes, key: bool) -> int:
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {SECRET}"
    conn.request("POST", path, body, headers)
    resp = conn.getresponse()
    resp.read()
    return resp.status


def _load(a: argparse.Namespace, path: str, body: bytes) -> None:
    """``a.n`` requests over ``a.c`` keep-alive connections at once."""

    def one_connection(count: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=300)
        for _ in range(count):
            assert _send(conn, path, body, a.key) == 200
        conn.close()

    with ThreadPoolExecutor(a.c) as pool:
        list(pool.map(one_connection, [a.n // a.c] * a.c))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default=str(HERE.parent / ".venv" / "bin" / "python"))
    ap.add_argument("--endpoint", default="chat")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--key", action="store_true")
    ap.add_argument("--c", type=int, default=1, help="connections, each sending n/c requests")
    ap.add_argument("--strace", action="store_true", help="count syscalls instead")
    a = ap.parse_args()
    out = Path(tempfile.mkdtemp()) / "callgrind.out"
    serve = [a.python, "-c", "from inference_core.gateway import serve; serve()"]
    cmd = (
        serve
        if a.strace
        else ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *serve]
    )
    proc = subprocess.Popen(cmd, env=_env(a.key), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    path, body = BODIES[a.endpoint]
    deadline = time.monotonic() + 300
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=120)
            if _send(conn, path.decode(), body, a.key) == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            sys.exit("the gateway did not answer")
        time.sleep(1)
    for _ in range(50):
        assert _send(conn, path.decode(), body, a.key) == 200
    if a.strace:  # attach now, after start-up and warm-up
        strace = ["strace", "-f", "-c", "-o", f"{out}.strace", "-p", str(proc.pid)]
        tracer = subprocess.Popen(strace, stderr=subprocess.DEVNULL)
        time.sleep(2)
    else:
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
    _load(a, path.decode(), body)
    if a.strace:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=60)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        print(Path(f"{out}.strace").read_text())
        return
    subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=300)
    totals = 0
    for dump in out.parent.glob(out.name + "*"):
        text = dump.read_text(errors="replace")
        if "Trigger: dump" in text[:2000]:  # the dump asked for, not the one at exit
            totals = int(re.search(r"^summary:\s+(\d+)", text, re.M).group(1))
    print(f"{a.endpoint} {totals // a.n}/request (n={a.n}{', key' if a.key else ''})")


if __name__ == "__main__":
    main()
