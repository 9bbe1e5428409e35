"""The abuse suite: slow and abusive clients against a real ``inference serve`` on loopback.

Starts a backend (the chaos suite's fake OpenAI-compatible server, with ``--latency`` seconds per
answer and admission capped at ``--slots``; or a real llama-server given with ``--llamacpp-url``,
whose slots the gateway learns from ``/props``), starts the gateway with the security defaults
(keys set, short timeouts given below), then runs each scenario while a legitimate client sends
chat requests one after another and records their latencies:

* ``slow_headers``: N clients send a request's headers one byte per second;
* ``slow_bodies``: N clients send complete headers, then the body one byte per second;
* ``idle``: N connections opened and left silent;
* ``header_bomb``: requests with 64 KiB of headers, and one header line that never ends;
* ``body_bomb``: a 100 MiB Content-Length, and a chunked body that keeps coming;
* ``deep_json``: a body nested 100 000 levels deep, and one with 10 000 keys of 1 KiB;
* ``overload``: 10x the backend's slots at once: each must end as a 200, or a 429 with
  ``Retry-After``, none hanging.

Everything is bounded in count and time; every process started is stopped on exit.  Loopback
only.  Prints a JSON summary (``--json FILE`` keeps it) and a Markdown table.

    .venv/bin/python scripts/abuse/run.py                     # all scenarios, ~2 min
    .venv/bin/python scripts/abuse/run.py --scenarios idle --idle 1500
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "chaos"))

from fake_backend import FakeBackend  # noqa: E402

KEY = "abuse-suite-key"
AUTH = {"authorization": f"Bearer {KEY}"}
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
SCENARIOS = (
    "slow_headers", "slow_bodies", "idle", "header_bomb", "body_bomb", "deep_json", "overload",
)  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------ the gateway


class Gateway:
    """``inference serve`` in a subprocess with the suite's settings."""

    def __init__(self, backend_url: str, args: argparse.Namespace, managed_slots: bool) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("INFERENCE_", "OPENAI_", "LOCAL_")) and k != "ENABLE_FALLBACK"
        }
        env.update(
            {
                "INFERENCE_PROVIDER": "llamacpp" if managed_slots else "vllm",
                "HEALTH_CHECK_INTERVAL": "3600",
                "INFERENCE_GATEWAY_API_KEYS": KEY,
                "INFERENCE_GATEWAY_ACCESS_LOG": "false",
                "INFERENCE_GATEWAY_LOG_LEVEL": "warning",
                "INFERENCE_GATEWAY_HEADER_TIMEOUT": str(args.header_timeout),
                "INFERENCE_GATEWAY_BODY_TIMEOUT": str(args.body_timeout),
                "INFERENCE_GATEWAY_MAX_CONNECTIONS": str(args.max_connections),
                "INFERENCE_MAX_RETRIES": "0",
            }
        )
        if managed_slots:  # a real llama-server: the gateway learns its slots from /props
            env["INFERENCE_LLAMACPP_BASE_URL"] = backend_url
            env["INFERENCE_LLAMACPP_QUEUE_TIMEOUT"] = str(args.queue_timeout)
        else:
            env.update(
                {
                    "INFERENCE_VLLM_BASE_URL": backend_url,
                    "INFERENCE_VLLM_MODEL": "fake-model",
                    "INFERENCE_VLLM_MAX_CONCURRENCY": str(args.slots),
                    "INFERENCE_VLLM_QUEUE_TIMEOUT": str(args.queue_timeout),
                }
            )
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> Gateway:
        exe = ROOT / ".venv" / "bin" / "inference"
        self.log = open(ROOT / ".abuse-gateway.log", "wb")  # noqa: SIM115, ASYNC230
        self.proc = subprocess.Popen(  # noqa: ASYNC220 (started once, before any load)
            [str(exe), "--env-file", "", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient() as c:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the gateway exited: see {self.log.name}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await c.get(self.url + "/ready", timeout=1)).status_code == 200:
                        return self
                await asyncio.sleep(0.2)
        raise RuntimeError("the gateway did not become ready within 60 s")

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()

    def rss_mb(self) -> float | None:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():  # type: ignore[union-attr]
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None


# ------------------------------------------------------------------------------ measurements


class Legit:
    """A legitimate client: chat requests one after another, latencies recorded."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies: list[float] = []
        self.failures: list[str] = []

    async def run(self, stop: asyncio.Event, pause: float = 0.05) -> None:
        limits = httpx.Limits(max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=self.url, headers=AUTH, limits=limits) as c:
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    r = await c.post("/v1/chat/completions", json=CHAT, timeout=10)
                    if r.status_code != 200:
                        self.failures.append(f"HTTP {r.status_code}")
                    else:
                        self.latencies.append(time.monotonic() - t0)
                except httpx.HTTPError as exc:
                    self.failures.append(type(exc).__name__)
                await asyncio.sleep(pause)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        if not lat:
            return {"requests": 0, "failures": len(self.failures)}
        return {
            "requests": len(lat),
            "failures": len(self.failures),
            "p50_ms": round(statistics.median(lat) * 1000, 1),
            "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 1),
            "max_ms": round(lat[-1] * 1000, 1),
        }


async def with_legit(url: str, seconds: float, work: Any) -> tuple[Any, dict[str, Any]]:
    """Run ``work`` (a coroutine) while a legitimate client keeps asking; both bounded."""
    legit = Legit(url)
    stop = asyncio.Event()
    client = asyncio.create_task(legit.run(stop))
    try:
        result = await asyncio.wait_for(work, seconds + 30)
    finally:
        stop.set()
        await asyncio.wait_for(client, 15)
    return result, legit.summary()


async def opened(port: int, count: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    conns = []
    for i in range(count):
        try:
            conns.append(await asyncio.open_connection("127.0.0.1", port))
        except OSError:
            break
        if i % 100 == 99:
            await asyncio.sleep(0)  # let the gateway accept them
    return conns


async def until_closed(reader: asyncio.StreamReader, limit: float) -> float | None:
    """Seconds until the peer closed (None: still open after ``limit``)."""
    t0 = time.monotonic()
    try:
        await asyncio.wait_for(reader.read(), limit)
    except TimeoutError:
        return None
    except OSError:
        pass
    return time.monotonic() - t0


def close_all(conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]) -> None:
    for _, w in conns:
        with contextlib.suppress(Exception):
            w.close()


# ------------------------------------------------------------------------------ scenarios


async def slow_clients(gw: Gateway, n: int, body: bool, hold: float) -> dict[str, Any]:
    """``n`` clients that drip one byte a second (headers, or the body after full headers)."""
    conns = await opened(gw.port, n)
    t_open = time.monotonic()

    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> float | None:
        if body:
            writer.write(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer "
                + KEY.encode()
                + b"\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{"
            )
            payload = b' "messages": []' * 10000
        else:
            payload = b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nx-slow: " + b"a" * 10000
        closed = asyncio.create_task(until_closed(reader, hold + 30))
        for i in range(int(hold) + 30):
            if closed.done():
                break
            with contextlib.suppress(OSError, RuntimeError):
                writer.write(payload[i : i + 1])
            await asyncio.sleep(1)
        return await closed

    drops = await asyncio.gather(*(drip(r, w) for r, w in conns))
    close_all(conns)
    dropped = [d for d in drops if d is not None]
    return {
        "clients": len(conns),
        "dropped": len(dropped),
        "drop_after_s_min": round(min(dropped), 2) if dropped else None,
        "drop_after_s_max": round(max(dropped), 2) if dropped else None,
        "held_s": round(time.monotonic() - t_open, 1),
    }


async def idle(gw: Gateway, n: int, hold: float) -> dict[str, Any]:
    """``n`` silent connections for ``hold`` seconds: each one the gateway drops (at its
    header timeout) is re-opened at once, so ``n`` are held throughout."""
    end = time.monotonic() + hold
    drops: list[float] = []
    peak = {"now": 0, "max": 0}

    async def slot() -> None:
        while time.monotonic() < end:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            peak["now"] += 1
            peak["max"] = max(peak["max"], peak["now"])
            try:
                took = await until_closed(reader, max(0.01, end - time.monotonic()))
                if took is not None:
                    drops.append(took)
            finally:
                peak["now"] -= 1
                writer.close()

    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(slot()))
        if i % 100 == 99:
            await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    return {
        "connections": n,
        "held_at_once_max": peak["max"],
        "dropped_by_gateway": len(drops),
        "drop_after_s_max": round(max(drops), 2) if drops else None,
    }


async def raw_exchange(port: int, data: bytes, chunks: int = 1, wait: float = 10) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(chunks):
            writer.write(data)
            await writer.drain()
        return await asyncio.wait_for(reader.read(), wait)
    except (OSError, TimeoutError) as exc:
        return f"<{type(exc).__name__}>".encode()
    finally:
        writer.close()


def status_of(answer: bytes) -> str:
    return answer.split(b"\r\n", 1)[0].decode("latin-1")[9:12] or answer[:20].decode("latin-1")


async def header_bomb(gw: Gateway) -> dict[str, Any]:
    big = b"".join(b"x-bomb-%d: %s\r\n" % (i, b"a" * 1000) for i in range(64))
    head = b"GET /health HTTP/1.1\r\nhost: gw\r\n" + big + b"\r\n"
    answers = await asyncio.gather(*(raw_exchange(gw.port, head) for _ in range(10)))
    endless = await raw_exchange(gw.port, b"GET /health HTTP/1.1\r\nx-endless: " + b"b" * 8192, 8)
    return {
        "64KiB_headers": sorted({status_of(a) for a in answers}),
        "endless_header_line": status_of(endless),
    }


async def body_bomb(gw: Gateway) -> dict[str, Any]:
    declared = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer "
        + KEY.encode()
        + b"\r\ncontent-type: application/json\r\ncontent-length: 104857600\r\n\r\n{"
    )
    t0 = time.monotonic()
    a = await raw_exchange(gw.port, declared)
    took = time.monotonic() - t0
    chunked_head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer "
        + KEY.encode()
        + b"\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(chunked_head)
    sent = 0
    chunk = b"x" * 65536
    answer = b""
    try:
        while sent < 64 * 1024 * 1024:
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
            sent += len(chunk)
            if reader.at_eof() or writer.is_closing():
                break
            with contextlib.suppress(TimeoutError):
                answer = await asyncio.wait_for(reader.read(4096), 0.001)
                if answer:
                    break
    except OSError:
        pass
    if not answer:
        with contextlib.suppress(OSError, TimeoutError):
            answer = await asyncio.wait_for(reader.read(4096), 5)
    writer.close()
    return {
        "declared_100MiB": status_of(a),
        "declared_answered_in_ms": round(took * 1000, 1),
        "chunked": status_of(answer),
        "chunked_sent_MiB_before_refusal": round(sent / 2**20, 1),
    }


async def deep_json(gw: Gateway) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=gw.url, headers=AUTH) as c:
        deep = b'{"messages": [{"role": "user", "content": ' + b"[" * 100000 + b"]" * 100000
        deep += b"}]}"
        r1 = await c.post("/v1/chat/completions", content=deep, timeout=30)
        wide: dict[str, Any] = {"messages": [{"role": "user", "content": "x"}]}
        wide.update({f"k{i}": "v" * 1024 for i in range(3500)})  # ~3.5 MiB, under the cap
        r2 = await c.post("/v1/chat/completions", json=wide, timeout=30)
        many = {"messages": [{"role": "user", "content": "x"}] * 50000}  # ~2 MiB, 50k items
        r3 = await c.post("/v1/chat/completions", json=many, timeout=30)
        alive = await c.get("/health")

    def code(r: httpx.Response) -> Any:
        if r.headers.get("content-type", "").startswith("application/json"):
            return (r.json().get("error") or {}).get("code")
        return None

    return {
        "nested_100k": [r1.status_code, code(r1)],
        "wide_3500_keys_3.5MiB": [r2.status_code, code(r2)],
        "messages_50k": [r3.status_code, code(r3)],
        "gateway_alive_after": alive.status_code,
    }


async def overload(gw: Gateway, n: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=n + 10)
    async with httpx.AsyncClient(base_url=gw.url, headers=AUTH, limits=limits) as c:

        async def one() -> tuple[str, float]:
            t0 = time.monotonic()
            try:
                r = await c.post("/v1/chat/completions", json=CHAT, timeout=60)
            except httpx.TimeoutException:
                return "hung", time.monotonic() - t0
            except httpx.HTTPError as exc:
                return type(exc).__name__, time.monotonic() - t0
            if r.status_code == 429:
                ok = "retry-after" in r.headers
                return ("429+retry-after" if ok else "429 without retry-after"), (
                    time.monotonic() - t0
                )
            return str(r.status_code), time.monotonic() - t0

        results = await asyncio.gather(*(one() for _ in range(n)))
        health = (await c.get("/v1/health/inference")).json()
    counts: dict[str, int] = {}
    for outcome, _ in results:
        counts[outcome] = counts.get(outcome, 0) + 1
    admission = [
        rep.get("admission")
        for b in health.get("backends", {}).values()
        for rep in b.get("replicas", [])
        if rep.get("admission")
    ]
    return {
        "requests": n,
        "outcomes": counts,
        "slowest_s": round(max(t for _, t in results), 2),
        "admission": admission[0] if admission else None,
    }


# ------------------------------------------------------------------------------ main


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"settings": {k: v for k, v in vars(args).items() if k != "json"}}
    async with contextlib.AsyncExitStack() as stack:
        if args.llamacpp_url:
            backend_url = args.llamacpp_url
        else:
            fake = FakeBackend(port=0, latency=args.latency)
            await stack.enter_async_context(fake)
            backend_url = fake.url
        gw = await stack.enter_async_context(Gateway(backend_url, args, bool(args.llamacpp_url)))
        results["gateway_rss_mb_idle"] = gw.rss_mb()
        _, base = await with_legit(gw.url, 3, asyncio.sleep(3))
        results["baseline"] = base
        wanted = args.scenarios.split(",") if args.scenarios else list(SCENARIOS)
        for name in wanted:
            t0 = time.monotonic()
            if name == "slow_headers":
                work = slow_clients(gw, args.slow, body=False, hold=args.hold)
            elif name == "slow_bodies":
                work = slow_clients(gw, args.slow, body=True, hold=args.hold)
            elif name == "idle":
                work = idle(gw, args.idle, args.hold)
            elif name == "header_bomb":
                work = header_bomb(gw)
            elif name == "body_bomb":
                work = body_bomb(gw)
            elif name == "deep_json":
                work = deep_json(gw)
            elif name == "overload":
                slots = args.slots if not args.llamacpp_url else args.llamacpp_slots
                work = overload(gw, 10 * slots)
            else:
                raise SystemExit(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
            outcome, legit = await with_legit(gw.url, args.hold + 60, work)
            results[name] = {
                "result": outcome,
                "legit": legit,
                "took_s": round(time.monotonic() - t0, 1),
                "gateway_rss_mb": gw.rss_mb(),
            }
            print(f"[abuse] {name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)
    return results


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "| scenario | result | legit requests meanwhile (p50 / p99 / max ms, failures) |",
        "|---|---|---|",
    ]
    for name in SCENARIOS:
        if name not in results:
            continue
        r = results[name]
        lg = r["legit"]
        legit = (
            f"{lg.get('requests', 0)} requests: {lg.get('p50_ms')} / {lg.get('p99_ms')} / "
            f"{lg.get('max_ms')}, {lg.get('failures', 0)} failed"
        )
        lines.append(f"| {name} | `{json.dumps(r['result'])}` | {legit} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenarios", default="", help=f"comma list (default: all of {SCENARIOS})")
    p.add_argument("--slow", type=int, default=300, help="slow clients (default 300)")
    p.add_argument("--idle", type=int, default=1500, help="idle connections (default 1500)")
    p.add_argument("--hold", type=float, default=15, help="seconds each flood is held (15)")
    p.add_argument("--header-timeout", type=float, default=10)
    p.add_argument("--body-timeout", type=float, default=10)
    p.add_argument("--max-connections", type=int, default=4096)
    p.add_argument("--slots", type=int, default=4, help="the fake backend's admission cap (4)")
    p.add_argument("--latency", type=float, default=0.05, help="fake backend seconds per answer")
    p.add_argument("--queue-timeout", type=float, default=2)
    p.add_argument("--llamacpp-url", default="", help="a real llama-server instead of the fake")
    p.add_argument("--llamacpp-slots", type=int, default=4, help="its --parallel")
    p.add_argument("--json", default="", help="write the raw results here")
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    summary = asyncio.run(main(arguments))
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print()
    print(markdown(summary))
