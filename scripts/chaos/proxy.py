"""Fault-injection HTTP proxy for the chaos suite (loopback only).

Sits in front of one backend (e.g. the real llama-server) and relays HTTP/1.1 byte for byte,
one request at a time per keep-alive connection, mirroring the backend's own connection closes
(llama-server closes after every stream). A *fault* decides, per request, what happens instead:

=================  =========================================================================
mode               effect on a request the fault applies to
=================  =========================================================================
pass               relay untouched
blackhole          read the request, never answer (hold the connection until the client
                   gives up, the fault changes, or ``hold_max`` seconds)
reset              ``after_bytes=None``: read the request, then TCP RST without answering;
                   ``after_bytes=N``: relay N bytes of the upstream response body, then RST
truncate           relay N (``after_bytes``) bytes of the response body, then close (FIN), mid
                   chunk: the client sees an incomplete chunked body
truncate_clean     chunked (SSE) bodies: after ``after_bytes`` bytes, finish the current chunk
                   and end the body *cleanly* (``0\\r\\n\\r\\n``): a 200 stream without
                   ``[DONE]`` and without error, the worst thing a backend can do
http_error         answer ``status`` (500/502/503/429...) with an error body (``body``:
                   ``openai``, ``plain``, ``html``); 429 carries ``Retry-After: retry_after``
slow_first_byte    forward the request, delay the first byte of the response by ``delay`` s
garbage            answer 200 with ``kind``: ``invalid_json``, ``wrong_shape``, ``html``,
                   ``sse_garbage`` (stream of junk lines), ``rotate`` (one at random)
=================  =========================================================================

Common parameters: ``probability`` (fraction of matching requests hit, seeded RNG),
``count`` (hit the next N matching requests, then revert to ``pass``), ``paths`` (prefixes the
fault applies to, e.g. ``["/v1/chat"]`` leaves ``/health`` alone; default: every path).

Control it in-process (``await proxy.start(); proxy.set_fault("reset", after_bytes=200)``) or
over the control API: ``POST /fault`` with ``{"mode": ..., ...params}``, ``GET /fault``,
``GET /stats``. Command line:

    python scripts/chaos/proxy.py --listen 29100 --upstream 127.0.0.1:29200 --control 29101
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from httpwire import Head, ProtocolError, abort, read_body, read_head, relay_body, response_bytes

__all__ = ["MODES", "Fault", "FaultProxy"]

MODES = (
    "pass",
    "blackhole",
    "reset",
    "truncate",
    "truncate_clean",
    "http_error",
    "slow_first_byte",
    "garbage",
)
GARBAGE_KINDS = ("invalid_json", "wrong_shape", "html", "sse_garbage")
LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass
class Fault:
    mode: str = "pass"
    status: int = 503
    retry_after: float | None = None
    body: str = "openai"
    after_bytes: int | None = None
    delay: float = 0.0
    kind: str = "rotate"
    probability: float = 1.0
    count: int | None = None
    paths: list[str] | None = None
    hold_max: float = 120.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; accepted: {', '.join(MODES)}")
        if self.kind not in (*GARBAGE_KINDS, "rotate"):
            raise ValueError(f"unknown garbage kind {self.kind!r}")


@dataclass
class Stats:
    connections: int = 0
    requests: int = 0
    faulted: dict[str, int] = field(default_factory=dict)
    upstream_connect_errors: int = 0


class FaultProxy:
    """One listening port relaying to ``upstream`` (host, port) with a switchable fault."""

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        control_port: int | None = None,
        seed: int = 1234,
    ) -> None:
        if host not in LOOPBACK or upstream[0] not in LOOPBACK:
            raise ValueError("the chaos proxy only listens on and relays to loopback")
        self.upstream = upstream
        self.host = host
        self.port = port
        self.control_port = control_port
        self.fault = Fault()
        self.stats = Stats()
        self._rng = random.Random(seed)
        self._generation = 0  # bumped on every set_fault: held blackhole connections re-check
        self._changed = asyncio.Event()
        self._server: asyncio.base_events.Server | None = None
        self._control: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ control
    def set_fault(self, mode: str = "pass", **params: Any) -> Fault:
        """Switch the fault (takes effect for the next request; held blackholes are released
        only by ``release_held``)."""
        self.fault = Fault(mode=mode, **params)
        self._generation += 1
        self._changed.set()
        self._changed = asyncio.Event()
        return self.fault

    def release_held(self) -> None:
        """Close every connection currently held by a blackhole (with a FIN)."""
        self._generation += 1
        self._changed.set()
        self._changed = asyncio.Event()

    def _pick(self, target: str) -> Fault:
        f = self.fault
        if f.mode == "pass":
            return f
        if f.paths is not None and not any(target.startswith(p) for p in f.paths):
            return Fault()
        if f.probability < 1.0 and self._rng.random() >= f.probability:
            return Fault()
        if f.count is not None:
            if f.count <= 0:
                return Fault()
            f.count -= 1
            if f.count == 0:
                self.fault = Fault()
                f = replace(f, count=None)
        self.stats.faulted[f.mode] = self.stats.faulted.get(f.mode, 0) + 1
        return f

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(
            self._on_client, self.host, self.port, limit=1 << 20, backlog=512
        )
        self.port = self._server.sockets[0].getsockname()[1]
        if self.control_port is not None:
            self._control = await asyncio.start_server(
                self._on_control, self.host, self.control_port
            )
            self.control_port = self._control.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        for srv in (self._server, self._control):
            if srv is not None:
                srv.close()
        for t in list(self._conns):
            t.cancel()
        if self._conns:
            await asyncio.gather(*self._conns, return_exceptions=True)
        for srv in (self._server, self._control):
            if srv is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(srv.wait_closed(), 2)

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ relay
    async def _on_client(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter):
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        self.stats.connections += 1
        up: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                head = await self._next_request(creader, up)
                if head is None:
                    break
                if head == "upstream-closed":
                    # mirror the backend closing its side of an idle keep-alive connection
                    up = None
                    break
                assert isinstance(head, Head)
                body = await read_body(creader, head)
                self.stats.requests += 1
                fault = self._pick(head.target)
                keep, up = await self._serve(fault, head, body, creader, cwriter, up)
                if not keep:
                    break
        except (ConnectionError, ProtocolError, asyncio.IncompleteReadError, OSError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._conns.discard(task)
            if up is not None:
                up[1].close()
            if not cwriter.is_closing():
                cwriter.close()

    async def _next_request(
        self,
        creader: asyncio.StreamReader,
        up: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None,
    ) -> Head | str | None:
        if up is None:
            return await read_head(creader)
        client = asyncio.ensure_future(read_head(creader))
        upstream = asyncio.ensure_future(up[0].read(1))
        done, _ = await asyncio.wait({client, upstream}, return_when=asyncio.FIRST_COMPLETED)
        if client in done:
            upstream.cancel()
            with contextlib.suppress(BaseException):
                await upstream
            return client.result()
        client.cancel()
        with contextlib.suppress(BaseException):
            await client
        up[1].close()
        return "upstream-closed"

    async def _serve(self, fault, head, body, creader, cwriter, up):
        """Handle one request; returns (keep the client connection, upstream connection)."""
        mode = fault.mode
        if mode == "blackhole":
            await self._hold(creader, fault.hold_max)
            return False, up
        if mode == "reset" and fault.after_bytes is None:
            abort(cwriter)
            return False, up
        if mode == "http_error":
            cwriter.write(self._error_response(fault))
            await cwriter.drain()
            return False, up
        if mode == "garbage":
            cwriter.write(self._garbage_response(fault))
            await cwriter.drain()
            return False, up

        if up is None:
            try:
                up = await asyncio.open_connection(*self.upstream, limit=1 << 20)
            except OSError:
                # the backend is gone: the client sees the connection reset, no answer
                self.stats.upstream_connect_errors += 1
                abort(cwriter)
                return False, None
        ureader, uwriter = up
        uwriter.write(head.raw + body)
        await uwriter.drain()
        rhead = await read_head(ureader)
        if rhead is None:
            # upstream closed without answering (it had closed the pooled connection): mirror it
            uwriter.close()
            return False, None

        sent = 0
        first = True
        in_body = False
        stop = False

        async def sink(b: bytes) -> None:
            nonlocal sent, first
            if first and mode == "slow_first_byte" and fault.delay > 0:
                await asyncio.sleep(fault.delay)
            first = False
            if in_body and mode in ("truncate", "reset") and fault.after_bytes is not None:
                room = fault.after_bytes - sent
                if len(b) >= room:
                    cwriter.write(b[: max(room, 0)])
                    await cwriter.drain()
                    raise _Cut
            sent += len(b)
            cwriter.write(b)
            await cwriter.drain()

        async def chunk_end() -> bool:
            nonlocal stop
            if mode == "truncate_clean" and sent >= (fault.after_bytes or 0):
                stop = True
            return stop

        try:
            await sink(rhead.raw)
            in_body, sent = True, 0  # count body bytes only
            outcome = await relay_body(
                ureader, rhead, sink, method=head.method, on_chunk_end=chunk_end
            )
        except _Cut:
            uwriter.close()
            if mode == "reset":
                abort(cwriter)
            else:
                await _close(cwriter)
            return False, None
        if outcome == "stopped":
            cwriter.write(b"0\r\n\r\n")
            await cwriter.drain()
            uwriter.close()
            return True, None
        if outcome == "eof" or rhead.wants_close or head.wants_close:
            uwriter.close()
            return False, None
        return True, up

    async def _hold(self, creader: asyncio.StreamReader, hold_max: float) -> None:
        gen = self._generation
        deadline = time.monotonic() + hold_max
        while gen == self._generation and time.monotonic() < deadline:
            waiter = asyncio.ensure_future(self._changed.wait())
            reader = asyncio.ensure_future(creader.read(65536))
            done, _ = await asyncio.wait(
                {waiter, reader},
                timeout=max(0.0, deadline - time.monotonic()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            waiter.cancel()
            if reader in done:
                if not reader.result():
                    return  # the client gave up
                continue  # swallow whatever else it sends
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader

    def _error_response(self, f: Fault) -> bytes:
        extra: list[tuple[str, str]] = []
        if f.status == 429 and f.retry_after is not None:
            extra.append(("Retry-After", f"{f.retry_after:g}"))
        if f.body == "html":
            body = (
                f"<html><head><title>{f.status} Error</title></head><body><center><h1>"
                f"{f.status} Error</h1></center><hr><center>nginx</center></body></html>"
            ).encode()
            return response_bytes(
                f.status, body, content_type="text/html", extra_headers=extra, close=True
            )
        if f.body == "plain":
            return response_bytes(
                f.status,
                b"Internal Server Error\n",
                content_type="text/plain",
                extra_headers=extra,
                close=True,
            )
        types = {429: "rate_limit_error", 503: "unavailable_error"}
        body = json.dumps(
            {
                "error": {
                    "code": f.status,
                    "message": f"chaos proxy: injected {f.status}",
                    "type": types.get(f.status, "server_error"),
                }
            }
        ).encode()
        return response_bytes(f.status, body, extra_headers=extra, close=True)

    def _garbage_response(self, f: Fault) -> bytes:
        kind = f.kind
        if kind == "rotate":
            kind = self._rng.choice(GARBAGE_KINDS)
        if kind == "invalid_json":
            return response_bytes(
                200, b'{"id": "chatcmpl-x", "choices": [{"index": 0, "mess', close=True
            )
        if kind == "wrong_shape":
            return response_bytes(
                200, b'{"result": "ok", "choices": "none", "data": [1, 2]}', close=True
            )
        if kind == "html":
            body = b"<!DOCTYPE html><html><body><h1>Welcome to nginx!</h1></body></html>"
            return response_bytes(200, body, content_type="text/html", close=True)
        body = (
            b"data: {not json at all\n\n"
            b'data: {"unexpected": true}\n\n'
            b": comment\n\nevent: weird\ndata: <html>\n\n"
        )
        return response_bytes(200, body, content_type="text/event-stream", close=True)

    # ------------------------------------------------------------------ control API
    async def _on_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            while True:
                head = await read_head(reader)
                if head is None:
                    break
                body = await read_body(reader, head)
                status, payload = 200, None
                try:
                    if head.method == "POST" and head.target == "/fault":
                        params = json.loads(body or b"{}")
                        self.set_fault(**params)
                        payload = asdict(self.fault)
                    elif head.method == "POST" and head.target == "/release":
                        self.release_held()
                        payload = {"released": True}
                    elif head.target == "/fault":
                        payload = asdict(self.fault)
                    elif head.target == "/stats":
                        payload = asdict(self.stats)
                    else:
                        status, payload = 404, {"error": "unknown route"}
                except (TypeError, ValueError) as exc:
                    status, payload = 400, {"error": str(exc)}
                writer.write(response_bytes(status, json.dumps(payload).encode()))
                await writer.drain()
        except (ConnectionError, ProtocolError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


class _Cut(Exception):
    pass


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", type=int, required=True, help="port on 127.0.0.1")
    ap.add_argument("--upstream", required=True, help="127.0.0.1:PORT")
    ap.add_argument("--control", type=int, default=None, help="control API port")
    ap.add_argument("--max-seconds", type=float, default=3600, help="exit after this long")
    args = ap.parse_args()
    host, port = args.upstream.rsplit(":", 1)

    async def run() -> None:
        proxy = FaultProxy((host, int(port)), port=args.listen, control_port=args.control)
        async with proxy:
            print(
                f"proxy {proxy.url} -> {args.upstream}; control :{proxy.control_port}", flush=True
            )
            await asyncio.sleep(args.max_seconds)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
