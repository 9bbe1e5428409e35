"""Router streams: first chunk inside the fallback loop, in-iterator errors, deadlines, cancel."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_router_helpers import (
    Server,
    build,
    chunk_json,
    error,
    ok_stream,
    req,
    sse,
)

from inference_core.errors import (
    AllBackendsFailed,
    BackendTimeout,
    BackendUnavailable,
    RateLimited,
)
from inference_core.models import ChatChunk
from inference_core.resilience.policy import RouterPolicy
from inference_core.router import RequestTrace

NO_RETRY = RouterPolicy(max_retries=0)


class ScriptedStream(httpx.AsyncByteStream):
    """SSE bytes with optional pauses (``float`` items); records whether it was closed."""

    def __init__(self, *parts: bytes | float) -> None:
        self.parts = parts
        self.closed = False
        self.sent = 0

    async def __aiter__(self):
        for part in self.parts:
            if isinstance(part, float):
                await asyncio.sleep(part)
            else:
                self.sent += 1
                yield part

    async def aclose(self) -> None:
        self.closed = True


def ev(payload) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def streaming(stream: ScriptedStream):
    def reply(request):
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=stream)

    return reply


async def collect(stream) -> list[ChatChunk]:
    return [chunk async for chunk in stream]


async def test_stream_yields_every_chunk_and_records_usage():
    a = Server(ok_stream(3, usage=True))
    router = build({"a.test": a})
    trace = RequestTrace()
    async with router:
        stream = await router.chat(
            req(stream=True, stream_options={"include_usage": True}), trace=trace
        )
        assert router.in_flight == 1
        chunks = await collect(stream)
        assert router.in_flight == 0
    assert [c.choices[0].delta.content for c in chunks[:3]] == ["t0", "t1", "t2"]
    assert chunks[-1].choices == []
    assert trace.usage.total_tokens == 8
    assert trace.backend == "a"
    assert chunks[0].raw is not None  # relayable bytes kept
    assert a.bodies[0]["stream"] is True


async def test_stream_falls_back_on_an_error_status():
    a, b = Server(error(503)), Server(ok_stream(2))
    router = build({"a.test": a, "b.test": b}, policy=NO_RETRY)
    trace = RequestTrace()
    async with router:
        chunks = await collect(await router.chat(req(stream=True), trace=trace))
    assert trace.backend == "b"
    assert len(chunks) == 3
    assert b.bodies[0]["model"] == "b-model"


async def test_stream_falls_back_on_an_in_band_error_before_the_first_chunk():
    body = sse({"error": {"message": "engine died", "code": 503}}, done=False)
    a = Server(httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body))
    b = Server(ok_stream(1))
    router = build({"a.test": a, "b.test": b}, policy=NO_RETRY)
    trace = RequestTrace()
    async with router:
        chunks = await collect(await router.chat(req(stream=True), trace=trace))
    assert trace.backend == "b"
    assert trace.attempts[0].kind == "unavailable"
    assert "engine died" in trace.attempts[0].message
    assert len(chunks) == 2


async def test_stream_that_ends_before_its_first_chunk_falls_back():
    a = Server(httpx.Response(200, headers={"content-type": "text/event-stream"}, content=b""))
    b = Server(ok_stream(1))
    router = build({"a.test": a, "b.test": b}, policy=NO_RETRY)
    trace = RequestTrace()
    async with router:
        await collect(await router.chat(req(stream=True), trace=trace))
    assert trace.backend == "b"
    assert trace.attempts[0].kind == "unavailable"


async def test_error_after_the_first_chunk_is_raised_from_the_iterator_without_fallback():
    body = sse(chunk_json(text="a"), chunk_json(text="b"), done=False) + ev(
        {"error": {"message": "rate limited mid-stream", "code": 429}}
    )
    a = Server(httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body))
    b = Server(ok_stream(1))
    router = build({"a.test": a, "b.test": b})
    trace = RequestTrace()
    got = []
    async with router:
        stream = await router.chat(req(stream=True), trace=trace)

        async def drain():
            async for chunk in stream:
                got.append(chunk.choices[0].delta.content)

        with pytest.raises(RateLimited, match="rate limited mid-stream"):
            await drain()
        assert router.in_flight == 0
    assert got == ["a", "b"]
    assert not b.requests, "no fallback once the first chunk went out"
    assert trace.attempts[-1].kind == "rate_limited"


async def test_truncated_stream_after_the_first_chunk_raises_unavailable():
    body = sse(chunk_json(text="a"), done=False)
    a = Server(httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body))
    router = build({"a.test": a})
    async with router:
        stream = await router.chat(req(stream=True))
        assert (await stream.__anext__()).choices[0].delta.content == "a"
        with pytest.raises(BackendUnavailable, match="before \\[DONE\\]"):
            await stream.__anext__()


async def test_first_token_timeout_on_a_stream_falls_back_and_closes_the_slow_upstream():
    slow = ScriptedStream(1.0, ev(chunk_json()), b"data: [DONE]\n\n")
    a, b = Server(streaming(slow)), Server(ok_stream(1))
    router = build(
        {"a.test": a, "b.test": b}, policy=RouterPolicy(first_token_timeout=0.05, max_retries=0)
    )
    trace = RequestTrace()
    loop = asyncio.get_running_loop()
    async with router:
        t0 = loop.time()
        stream = await router.chat(req(stream=True), trace=trace)
        assert loop.time() - t0 < 0.5
        await collect(stream)
    assert trace.backend == "b"
    assert trace.attempts[0].kind == "timeout"
    assert "first-token" in trace.attempts[0].message
    assert slow.closed


async def test_idle_timeout_between_chunks_raises_timeout_and_closes_upstream():
    stalled = ScriptedStream(ev(chunk_json(text="a")), 5.0, ev(chunk_json(text="b")))
    router = build({"a.test": Server(streaming(stalled))}, policy=RouterPolicy(idle_timeout=0.05))
    loop = asyncio.get_running_loop()
    async with router:
        stream = await router.chat(req(stream=True))
        await stream.__anext__()
        t0 = loop.time()
        with pytest.raises(BackendTimeout, match="idle"):
            await stream.__anext__()
        assert loop.time() - t0 < 1.0
        assert router.in_flight == 0
        health = await router.health()
    assert stalled.closed
    assert health["a"]["replicas"][0]["outstanding"] == 0


async def test_slow_but_steady_stream_is_not_cut_by_the_idle_timeout():
    parts = []
    for i in range(5):
        parts += [0.03, ev(chunk_json(text=str(i)))]
    steady = ScriptedStream(*parts, b"data: [DONE]\n\n")
    router = build({"a.test": Server(streaming(steady))}, policy=RouterPolicy(idle_timeout=0.1))
    async with router:
        chunks = await collect(await router.chat(req(stream=True)))
    assert len(chunks) == 5


async def test_the_idle_deadline_is_armed_only_for_a_chunk_that_must_be_waited_for():
    """A chunk the upstream already delivered (several events in one read) is taken without
    arming the idle deadline; a chunk that has to be waited for arms it, every time."""
    ready = ScriptedStream(*[ev(chunk_json(text=str(i))) for i in range(6)], b"data: [DONE]\n\n")
    paced = ScriptedStream(
        ev(chunk_json(text="0")), 0.01, ev(chunk_json(text="1")), 0.01, ev(chunk_json(text="2")),
        b"data: [DONE]\n\n",
    )  # fmt: skip
    for upstream, waits in ((ready, 0), (paced, 2)):
        router = build({"a.test": Server(streaming(upstream))})
        watchdog = router._watchdog
        idle_arms: list[float] = []
        arm = watchdog.arm

        def counting_arm(guard, seconds, slow_after=0.0, key=None, arm=arm, idle_arms=idle_arms):
            if key is None:  # the first-token deadline names its backend; idle ones do not
                idle_arms.append(seconds)
            arm(guard, seconds, slow_after, key)

        watchdog.arm = counting_arm
        async with router:
            chunks = await collect(await router.chat(req(stream=True)))
        assert len(chunks) == (6 if upstream is ready else 3)
        assert len(idle_arms) == waits


async def test_closing_the_stream_early_closes_the_upstream():
    parts = [ev(chunk_json(text=str(i))) for i in range(10)]
    upstream = ScriptedStream(*parts, b"data: [DONE]\n\n")
    router = build({"a.test": Server(streaming(upstream))})
    async with router:
        stream = await router.chat(req(stream=True))
        await stream.__anext__()
        await stream.__anext__()
        await stream.aclose()
        assert router.in_flight == 0
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()
    assert upstream.closed
    assert upstream.sent < 10


async def test_client_cancellation_mid_stream_propagates_and_closes_upstream():
    parts = [ev(chunk_json(text="a"))] + [0.5, ev(chunk_json(text="b"))] * 3
    upstream = ScriptedStream(*parts)
    router = build({"a.test": Server(streaming(upstream))})
    got = []

    async def consume(stream):
        async for chunk in stream:
            got.append(chunk)

    async with router:
        stream = await router.chat(req(stream=True))
        task = asyncio.create_task(consume(stream))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert router.in_flight == 0
        health = await router.health()
    assert len(got) == 1
    assert upstream.closed
    assert health["a"]["breaker"] == "closed", "a client cancel is not a backend failure"


async def test_cancellation_while_waiting_for_the_first_chunk_closes_upstream():
    upstream = ScriptedStream(5.0, ev(chunk_json()))
    a, b = Server(streaming(upstream)), Server(ok_stream(1))
    router = build({"a.test": a, "b.test": b})
    async with router:
        task = asyncio.create_task(router.chat(req(stream=True)))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert router.in_flight == 0
    assert upstream.closed
    assert not b.requests, "a cancelled request must not fall back"


async def test_cancellation_of_a_non_stream_request_propagates_at_once():
    async def slow(request):
        await asyncio.sleep(5)

    a, b = Server(slow), Server()
    router = build({"a.test": a, "b.test": b})
    async with router:
        task = asyncio.create_task(router.chat(req()))
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert router.in_flight == 0
    assert not b.requests


async def test_stream_all_failed_raises_before_any_chunk():
    router = build({"a.test": Server(error(503)), "b.test": Server(error(502))}, policy=NO_RETRY)
    async with router:
        with pytest.raises(AllBackendsFailed) as info:
            await router.chat(req(stream=True))
    assert [a.backend for a in info.value.attempts] == ["a", "b"]


async def test_stream_retry_before_the_first_chunk_uses_the_same_loop():
    from test_router_helpers import FakeTime

    ft = FakeTime()
    a = Server(ok_stream(1)).then(error(503))
    router = build({"a.test": a}, fake_time=ft)
    trace = RequestTrace()
    async with router:
        await collect(await router.chat(req(stream=True), trace=trace))
    assert trace.retries == 1
    assert len(ft.sleeps) == 1


async def test_a_dropped_stream_releases_its_slot():
    import gc

    router = build({"a.test": Server(ok_stream(5))})
    async with router:
        stream = await router.chat(req(stream=True))
        await stream.__anext__()
        assert router.in_flight == 1
        del stream
        gc.collect()
        assert router.in_flight == 0
        health = await router.health()
    assert health["a"]["replicas"][0]["outstanding"] == 0
