"""FastHTTPTransport against real loopback servers that misbehave in the ways backends do."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from inference_core.errors import BackendTimeout, BackendUnavailable
from inference_core.http import create_client, send
from inference_core.http.transport import FastHTTPTransport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


@contextlib.asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[tuple[str, dict[str, int]]]:
    """A raw TCP server; ``handler(reader, writer, connection_number)``; yields (url, stats)."""
    stats = {"connections": 0, "requests": 0}

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stats["connections"] += 1
        with contextlib.suppress(Exception):
            await handler(reader, writer, stats["connections"])
        with contextlib.suppress(Exception):
            writer.close()

    srv = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", stats
    finally:
        srv.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return await reader.readexactly(length) if length else b""


def response(body: bytes, *, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def test_keepalive_reuses_one_connection_and_echoes_bodies() -> None:
    async def handler(reader, writer, _n):
        while True:
            body = await read_request(reader)
            writer.write(response(b"echo:" + body))

    async with server(handler) as (url, stats), create_client() as client:
        for i in range(5):
            r = await client.post(url + "/x", content=b"%d" % i)
            assert r.status_code == 200
            assert r.content == b"echo:%d" % i
        assert stats["connections"] == 1


async def test_chunked_and_until_eof_bodies_are_read_whole() -> None:
    async def handler(reader, writer, n):
        await read_request(reader)
        if n == 1:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for part in (b"data: 1\n\n", b"data: 2\n\n"):
                writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write(b"0\r\n\r\n")
            await read_request(reader)  # keep-alive: the second request comes here
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-eof")
        await writer.drain()
        writer.close()

    async with server(handler) as (url, stats), create_client() as client:
        async with client.stream("POST", url, content=b"{}") as r:
            parts = [chunk async for chunk in r.aiter_raw()]
        assert b"".join(parts) == b"data: 1\n\ndata: 2\n\n"
        r2 = await client.get(url)
        assert r2.content == b"until-eof"
        assert stats["connections"] == 1


async def test_stale_pooled_connection_is_resent_once_on_a_fresh_one() -> None:
    """llama.cpp closes after each stream while advertising keep-alive: resend, not an error."""
    served = []

    async def handler(reader, writer, n):
        await read_request(reader)
        served.append(n)
        writer.write(response(b"ok", extra=b"Keep-Alive: timeout=5, max=100\r\n"))
        await writer.drain()
        # read the next request, then close without answering: a stale pooled connection
        with contextlib.suppress(asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
        writer.transport.abort()

    async with server(handler) as (url, stats), create_client() as client:
        first = await send(client, "POST", url, backend="b", body={"a": 1})
        assert first.content == b"ok"
        second = await send(client, "POST", url, backend="b", body={"a": 2})
        assert second.content == b"ok"
        assert stats["connections"] == 2
        assert served == [1, 2]


async def test_a_fresh_connection_closed_before_the_answer_is_never_resent() -> None:
    """Issue #11 item 6: the backend may have received the request (a crash while handling it):
    resending would deliver a POST twice.  Only a *reused* connection is resent."""
    received = []

    async def crash(reader, writer, n):
        received.append(await read_request(reader))
        writer.transport.abort()  # dies while handling it: no byte of an answer

    async with server(crash) as (url, stats), create_client() as client:
        with pytest.raises(BackendUnavailable):
            await send(client, "POST", url, backend="b", body={"a": 1})
        assert received == [b'{"a":1}']  # once
        assert stats["connections"] == 1


async def test_connect_refused_and_read_timeout_map_onto_the_taxonomy() -> None:
    async def silent(reader, writer, _n):
        await read_request(reader)
        await asyncio.sleep(5)

    async with create_client(read_timeout=0.2) as client:
        with pytest.raises(BackendUnavailable, match="cannot connect"):
            await send(client, "GET", "http://127.0.0.1:9/", backend="b")
        async with server(silent) as (url, _):
            with pytest.raises(BackendTimeout):
                await send(client, "POST", url, backend="b", body={})


async def test_truncated_body_raises_instead_of_ending_quietly() -> None:
    async def handler(reader, writer, _n):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-part")
        await writer.drain()
        writer.transport.abort()

    async def drain(client: httpx.AsyncClient, url: str) -> None:
        async with client.stream("POST", url, content=b"{}") as r:
            async for _ in r.aiter_raw():
                pass

    async with server(handler) as (url, _), create_client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await drain(client, url)


async def test_early_close_and_cancellation_do_not_return_a_busy_connection() -> None:
    async def handler(reader, writer, _n):
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            await writer.drain()
            await asyncio.sleep(0.3)
            writer.write(b"0\r\n\r\n")

    transport = FastHTTPTransport()
    async with server(handler) as (url, stats), httpx.AsyncClient(transport=transport) as client:
        async with client.stream("GET", url) as r:
            async for chunk in r.aiter_raw():
                assert chunk == b"first"
                break  # closed early: the connection must not go back to the pool
        assert not any(transport._idle.values())

        async def read_all() -> None:
            async with client.stream("GET", url) as r:
                async for _ in r.aiter_raw():
                    pass

        task = asyncio.create_task(read_all())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not any(transport._idle.values())
        assert stats["connections"] == 2


async def test_large_body_with_flow_control() -> None:
    big = bytes(range(256)) * 16384  # 4 MiB

    async def handler(reader, writer, _n):
        await read_request(reader)
        writer.write(response(big))
        await writer.drain()

    async with server(handler) as (url, _), create_client() as client:
        async with client.stream("GET", url) as r:
            got = bytearray()
            async for chunk in r.aiter_raw():
                got += chunk
                await asyncio.sleep(0)  # a slow reader
        assert bytes(got) == big


async def test_a_stream_read_up_to_done_leaves_its_connection_reusable() -> None:
    """relay_sse stops at [DONE]; the body was whole, so the next request reuses the connection."""
    from inference_core.http import openai_compat
    from inference_core.models import BackendConfig, ChatRequest

    sse = (
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n"
    )
    seen_headers: list[bytes] = []

    async def handler(reader, writer, _n):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            seen_headers.append(head.lower())
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            writer.write(response(sse, extra=b"Content-Type: text/event-stream\r\n"))

    request = ChatRequest(messages=[{"role": "user", "content": "x"}], stream=True)
    async with server(handler) as (url, stats), create_client() as client:
        config = BackendConfig(name="b", base_urls=(url,), model="m")
        for _ in range(3):
            stream = await openai_compat.chat(client, config, request)
            chunks = [chunk async for chunk in stream]
            assert [c.choices[0].delta.content for c in chunks] == ["hi"]
        assert stats["connections"] == 1
    # the client's own headers travel with the direct-to-transport send
    assert all(
        b"accept-encoding: identity" in h and b"user-agent: inference-core/" in h
        for h in seen_headers
    )


async def test_connections_per_backend_are_capped_and_waiters_get_freed_slots() -> None:
    """Issue #11 item 3: the max_connections given to create_client reaches the lean transport."""
    live = {"now": 0, "peak": 0}

    async def slow(reader, writer, _n):
        live["now"] += 1
        live["peak"] = max(live["peak"], live["now"])
        try:
            while True:
                await read_request(reader)
                await asyncio.sleep(0.05)
                writer.write(response(b"ok"))
                await writer.drain()
        finally:
            live["now"] -= 1

    async with server(slow) as (url, stats), create_client(max_connections=2) as client:
        results = await asyncio.gather(
            *(send(client, "POST", url, backend="b", body={"i": i}) for i in range(8))
        )
        assert [r.content for r in results] == [b"ok"] * 8
        assert live["peak"] == 2
        assert stats["connections"] == 2
        transport = client._transport_for_url(httpx.URL(url))
        assert isinstance(transport, FastHTTPTransport)
        assert transport.open_connections("127.0.0.1", httpx.URL(url).port) <= 2


async def test_a_request_that_finds_no_free_connection_times_out_in_the_pool() -> None:
    async def hang(reader, writer, _n):
        await read_request(reader)
        await asyncio.sleep(5)

    async with (
        server(hang) as (url, _),
        create_client(max_connections=1, connect_timeout=0.3, read_timeout=5) as client,
    ):
        first = asyncio.create_task(send(client, "POST", url, backend="b", body={}))
        await asyncio.sleep(0.1)
        with pytest.raises((BackendTimeout, BackendUnavailable)):
            await send(client, "POST", url, backend="b", body={})
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await first


async def test_send_writes_the_same_request_httpx_would_and_builds_request_on_demand() -> None:
    """``send``'s lean path writes the request bytes itself (no ``httpx.Request``): the server
    gets what httpx would send (client headers, the request's headers winning, host, length,
    body), and ``response.request`` is the equivalent ``httpx.Request``, built when asked."""
    heads: list[bytes] = []

    async def handler(reader, writer, _n):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            heads.append(head + (await reader.readexactly(length) if length else b""))
            writer.write(response(b'{"ok":true}', extra=b"X-Up: 1\r\n"))

    async with server(handler) as (url, _stats), create_client() as client:
        got = await send(
            client, "POST", url + "/v1/chat/completions?x=1", backend="b", body={"a": "é"},
            headers={"Authorization": "Bearer sk-1", "User-Agent": "mine"},
        )  # fmt: skip
        listed = await send(client, "GET", url + "/v1/models", backend="b")
        # the same through httpx's own request building, for comparison
        plain = await client.post(
            url + "/v1/chat/completions?x=1", content=b'{"a":"\xc3\xa9"}',
            headers={"content-type": "application/json", "Authorization": "Bearer sk-1",
                     "User-Agent": "mine"},
        )  # fmt: skip
        assert got.content == listed.content == plain.content == b'{"ok":true}'
        assert got.raw_header(b"x-up") == "1"  # read without building httpx.Headers
        assert got.raw_header(b"content-length") == "11"
        assert got.raw_header(b"x-absent") is None
        assert got.headers == plain.headers  # built on first read, the same as httpx's
        assert got.headers["x-up"] == "1"
        got.headers = httpx.Headers({"x-set": "2"})
        assert got.raw_header(b"x-set") == "2"
        assert "x-up" not in got.headers

        def parsed(raw: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
            head, _, body = raw.partition(b"\r\n\r\n")
            line, *fields = head.split(b"\r\n")
            pairs = [f.split(b": ", 1) for f in fields]
            assert len({name.lower() for name, _ in pairs}) == len(pairs)  # no duplicates
            return line, {name.lower(): value for name, value in pairs}, body

        fast_line, fast, fast_body = parsed(heads[0])
        plain_line, slow, plain_body = parsed(heads[2])
        assert fast_line == plain_line == b"POST /v1/chat/completions?x=1 HTTP/1.1"
        assert fast == slow
        assert fast[b"user-agent"] == b"mine"
        assert fast[b"authorization"] == b"Bearer sk-1"
        assert fast[b"accept-encoding"] == b"identity"
        assert fast[b"host"] == url.removeprefix("http://").encode()
        assert fast_body == plain_body == b'{"a":"\xc3\xa9"}'
        get_line, get_headers, _ = parsed(heads[1])
        assert get_line == b"GET /v1/models HTTP/1.1"
        assert b"content-length" not in get_headers
        assert b"content-type" not in get_headers

        request = got.request  # built now, from what was sent
        assert isinstance(request, httpx.Request)
        assert (request.method, str(request.url)) == ("POST", url + "/v1/chat/completions?x=1")
        assert request.content == b'{"a":"\xc3\xa9"}'
        assert request.headers["authorization"] == "Bearer sk-1"
        assert got.url == request.url
        assert got.raise_for_status() is got


@pytest.mark.parametrize("value", ["sk-1\r\nx-injected: 1", "sk-\0", "sk-é"])
async def test_a_header_that_is_not_plain_ascii_is_refused_by_name_never_written(value) -> None:
    """A line break in an API key from the environment must not split the request head (or
    smuggle a header in); the error names the header, never its value."""
    received: list[bytes] = []

    async def handler(reader, writer, _n):
        received.append(await reader.read(65536))

    async with server(handler) as (url, _stats), create_client() as client:
        with pytest.raises(BackendUnavailable, match="'authorization'") as caught:
            await send(
                client, "POST", url + "/v1/x", backend="b", body={},
                headers={"authorization": f"Bearer {value}"},
            )  # fmt: skip
        assert value not in str(caught.value)
        assert caught.value.backend == "b"
    assert received == []
