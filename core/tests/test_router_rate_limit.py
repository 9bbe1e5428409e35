"""Router: a 429 is remembered per replica until its Retry-After; no waiting while another
backend (or replica) that is healthy and not rate limited remains; only a last option is
waited for.  Time is a FakeTime: nothing here really sleeps."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_router_helpers import (
    FakeTime,
    Server,
    build,
    chat_json,
    config,
    error,
    ok_chat,
    ok_stream,
    req,
)

from inference_core.errors import AllBackendsFailed, RateLimited
from inference_core.resilience.policy import RouterPolicy
from inference_core.router import RequestTrace, StateChange


def too_many(retry_after: str | None = None, *, ms: str | None = None) -> httpx.Response:
    headers: dict[str, str] = {}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    if ms is not None:
        headers["retry-after-ms"] = ms
    return error(429, {"error": {"message": "slow down", "type": "rate_limit"}}, headers)


def listen(router) -> list[StateChange]:
    changes: list[StateChange] = []
    router.add_state_listener(lambda backend, **kw: changes.append(kw["change"]))
    return changes


def rate_changes(changes: list[StateChange]) -> list[tuple[str, str, str, str | None]]:
    return [(c.backend, c.old, c.new, c.replica) for c in changes if c.kind == "rate_limit"]


async def chat(router, **kw) -> RequestTrace:
    trace = RequestTrace()
    await router.chat(req(**kw), trace=trace)
    return trace


async def wait_for(predicate, timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


# ---------------------------------------------------------- a healthy fallback: no waiting


async def test_rate_limited_primary_falls_back_at_once_and_is_skipped_until_retry_after():
    ft = FakeTime()
    a, b = Server(too_many("2")), Server(ok_chat("b-model", "from b"))
    router = build({"a.test": a, "b.test": b}, fake_time=ft, rand=lambda: 0.0)
    changes = listen(router)
    async with router:
        first = await chat(router)
        assert first.backend == "b"
        assert [x.kind for x in first.attempts] == ["rate_limited"]
        assert (first.retries, first.fallbacks) == (0, 1)
        assert ft.sleeps == []  # max_retries=2 and Retry-After 2 <= cap, yet no wait
        assert len(a.requests) == 1

        health = await router.health()
        assert health["a"]["rate_limited"] == pytest.approx(2.0)
        assert health["a"]["rate_limits"] == 1
        assert health["a"]["breaker"] == "closed"  # a 429 does not count toward the breaker
        assert health["a"]["state"] != "down"  # a 429 is not a sign of sickness
        assert health["b"]["rate_limited"] == 0
        assert router.ready()

        # the next requests go straight to b: a is not even asked
        for _ in range(3):
            t = await chat(router)
            assert (t.backend, t.attempts, t.fallbacks) == ("b", [], 0)
        assert len(a.requests) == 1

        ft.now += 1.5
        assert (await router.health())["a"]["rate_limited"] == pytest.approx(0.5)
        assert (await chat(router)).backend == "b"
        assert len(a.requests) == 1

        # Retry-After passed: a is first again (and still limited: remembered again)
        ft.now += 0.5
        assert (await router.health())["a"]["rate_limited"] == 0
        again = await chat(router)
        assert again.backend == "b"
        assert [x.backend for x in again.attempts] == ["a"]
        assert len(a.requests) == 2
        assert (await router.health())["a"]["rate_limits"] == 2

        # ... and once it answers again, it serves
        ft.now += 2
        a.default = ok_chat("a-model", "from a")
        back = await chat(router)
        assert (back.backend, back.attempts) == ("a", [])
        health = await router.health()
    assert ft.sleeps == []
    assert len(b.requests) == 6
    assert health["a"]["rate_limited"] == 0
    assert rate_changes(changes) == [
        ("a", "clear", "limited", None),
        ("a", "limited", "clear", None),
        ("a", "clear", "limited", None),
        ("a", "limited", "clear", None),
    ]
    started = next(c for c in changes if c.kind == "rate_limit")
    assert "2s" in (started.detail or "")


async def test_a_stream_on_a_rate_limited_primary_falls_back_at_once():
    ft = FakeTime()
    a, b = Server(too_many("3")), Server(ok_stream(2))
    router = build({"a.test": a, "b.test": b}, fake_time=ft)
    async with router:
        trace = RequestTrace()
        stream = await router.chat(req(stream=True), trace=trace)
        chunks = [c async for c in stream]
        assert trace.backend == "b"
        assert len(chunks) == 3
        trace2 = RequestTrace()
        stream = await router.chat(req(stream=True), trace=trace2)
        _ = [c async for c in stream]
    assert ft.sleeps == []
    assert len(a.requests) == 1
    assert (trace2.backend, trace2.attempts) == ("b", [])


async def test_an_answer_to_a_request_sent_before_the_429_does_not_clear_the_limit():
    ft = FakeTime()
    release = asyncio.Event()

    async def slow_ok(request):
        await release.wait()
        return httpx.Response(200, json=chat_json())

    a, b = Server(too_many("5")).then(slow_ok), Server()
    router = build({"a.test": a, "b.test": b}, fake_time=ft)
    async with router:
        early = asyncio.create_task(chat(router))  # sent to a, waiting for its answer
        await wait_for(lambda: len(a.requests) == 1)
        ft.now += 0.1
        assert (await chat(router)).backend == "b"  # a 429 meanwhile
        release.set()
        assert (await early).backend == "a"
        health = await router.health()
    assert len(a.requests) == 2
    assert health["a"]["rate_limited"] == pytest.approx(5.0)  # still limited


async def test_the_watchdog_announces_the_end_of_a_rate_limit_without_traffic():
    ft = FakeTime()
    a, b = Server(too_many("2")), Server()
    router = build({"a.test": a, "b.test": b}, fake_time=ft)
    changes = listen(router)
    async with router:
        await chat(router)
        assert rate_changes(changes) == [("a", "clear", "limited", None)]
        ft.now += 2
        # no request, no health() call: the router's watchdog tick notices it
        await wait_for(lambda: len(rate_changes(changes)) == 2)
    assert rate_changes(changes)[-1] == ("a", "limited", "clear", None)


# ------------------------------------------------------------------ the last option waits


async def test_a_single_backend_chain_still_waits_and_retries():
    ft = FakeTime()
    a = Server().then(too_many("1"))
    router = build({"a.test": a}, fake_time=ft)
    changes = listen(router)
    async with router:
        trace = await chat(router)
        health = await router.health()
    assert ft.sleeps == [1.0]
    assert len(a.requests) == 2
    assert (trace.backend, trace.retries) == ("a", 1)
    assert health["a"]["rate_limited"] == 0  # it answered: the limit is over
    assert health["a"]["rate_limits"] == 1
    assert rate_changes(changes) == [
        ("a", "clear", "limited", None),
        ("a", "limited", "clear", None),
    ]


async def test_when_the_other_backend_is_down_the_rate_limited_one_is_waited_for():
    ft = FakeTime()
    a, b = Server().then(too_many("1")), Server()
    b.health = error(503)
    router = build({"a.test": a, "b.test": b}, fake_time=ft)
    async with router:
        await router.health(refresh=True)
        assert (await router.health())["b"]["state"] == "down"
        trace = await chat(router)
    assert trace.backend == "a"
    assert ft.sleeps == [1.0]
    assert len(b.requests) == 0


async def test_rate_limited_backends_come_after_healthy_ones_but_before_those_marked_down():
    ft = FakeTime()
    a = Server().then(too_many("5"), too_many("5"))
    b, c = Server(), Server()
    c.health = error(503)
    router = build(
        {"a.test": a, "b.test": b, "c.test": c},
        policy=RouterPolicy(max_retries=1),
        fake_time=ft,
    )
    async with router:
        await router.health(refresh=True)
        first = await chat(router)
        assert first.backend == "b"
        assert ft.sleeps == []
        # b now fails: the order is b, a (rate limited), c (down); a is the last healthy
        # option, so its Retry-After is waited for instead of trying c
        b.default = error(503)
        second = await chat(router)
    assert second.backend == "a"
    assert [x.backend for x in second.attempts] == ["b", "b", "a"]
    assert ft.sleeps[-1] == 5.0
    assert len(c.requests) == 0


async def test_every_backend_rate_limited_is_still_tried_and_passed_on_as_429():
    ft = FakeTime()
    a, b = Server(too_many("30")), Server(too_many("30"))
    router = build({"a.test": a, "b.test": b}, fake_time=ft)
    async with router:
        for _ in range(2):  # remembered for 30 s, yet never refused
            with pytest.raises(AllBackendsFailed) as info:
                await chat(router)
            assert [x.kind for x in info.value.attempts] == ["rate_limited"] * 2
            assert isinstance(info.value.last, RateLimited)
        health = await router.health()
    assert ft.sleeps == []  # 30 s is over the cap (10): not waited for
    assert (len(a.requests), len(b.requests)) == (2, 2)
    assert health["a"]["rate_limited"] == health["b"]["rate_limited"] == pytest.approx(30.0)


# ------------------------------------------------------------ retry-after-ms and the cap


async def test_retry_after_ms_is_remembered_and_waited_for():
    ft = FakeTime()
    a, b = Server(too_many("9", ms="1500")), Server()
    router = build({"a.test": a, "b.test": b}, fake_time=ft)
    async with router:
        await chat(router)
        assert (await router.health())["a"]["rate_limited"] == pytest.approx(1.5)
        ft.now += 1.4
        await chat(router)
        assert len(a.requests) == 1
        ft.now += 0.1
        await chat(router)
        assert len(a.requests) == 2
    assert ft.sleeps == []

    ft = FakeTime()
    single = Server().then(too_many("9", ms="1500"))
    router = build({"a.test": single}, fake_time=ft)
    async with router:
        await chat(router)
    assert ft.sleeps == [1.5]


async def test_without_retry_after_the_limit_doubles_up_to_the_cap_and_resets_on_success():
    ft = FakeTime()
    a, b = Server(too_many()), Server()
    policy = RouterPolicy(backoff_base=1.0, retry_after_cap=3.0)
    router = build({"a.test": a, "b.test": b}, policy=policy, fake_time=ft)
    remembered = []
    async with router:
        for _ in range(4):
            await chat(router)
            remembered.append((await router.health())["a"]["rate_limited"])
            ft.now += 10  # past it: a is tried again
        assert len(a.requests) == 4
        a.script.append(ok_chat())
        assert (await chat(router)).backend == "a"  # an answer resets the doubling
        await chat(router)
        remembered.append((await router.health())["a"]["rate_limited"])
    assert remembered == [1.0, 2.0, 3.0, 3.0, 1.0]
    assert ft.sleeps == []


async def test_the_cap_bounds_the_wait_on_the_last_option():
    ft = FakeTime()
    a = Server(too_many("4"))
    router = build({"a.test": a}, policy=RouterPolicy(retry_after_cap=3.0), fake_time=ft)
    async with router:
        with pytest.raises(AllBackendsFailed) as info:
            await chat(router)
        health = await router.health()
    assert ft.sleeps == []  # 4 s > cap 3 s: not waited for
    assert len(a.requests) == 1
    assert isinstance(info.value.last, RateLimited)
    assert health["a"]["rate_limited"] == pytest.approx(4.0)  # what the backend said

    ft = FakeTime()
    a = Server().then(too_many("3"))
    router = build({"a.test": a}, policy=RouterPolicy(retry_after_cap=3.0), fake_time=ft)
    async with router:
        await chat(router)
    assert ft.sleeps == [3.0]  # at the cap: waited for


async def test_the_wait_on_the_last_option_stays_within_the_deadline():
    ft = FakeTime()
    a = Server(too_many("5"))
    policy = RouterPolicy(request_deadline=4.0, first_token_timeout=4.0, retry_after_cap=10)
    router = build({"a.test": a}, policy=policy, fake_time=ft)
    async with router:
        with pytest.raises(AllBackendsFailed):
            await chat(router)
    assert ft.sleeps == []
    assert len(a.requests) == 1


# ------------------------------------------------------------------------------ replicas


async def test_a_rate_limited_replica_is_left_for_another_at_once():
    ft = FakeTime()
    r1, r2 = Server(too_many("2")), Server()
    configs = [config("v", base_urls=("http://r1.test", "http://r2.test"))]
    router = build({"r1.test": r1, "r2.test": r2}, configs=configs, fake_time=ft)
    changes = listen(router)
    async with router:
        traces = [await chat(router) for _ in range(4)]
        report = await router.health()
        ft.now += 2
        await chat(router)
        await chat(router)
    assert ft.sleeps == []
    assert all(t.backend == "v" for t in traces)
    assert sum(t.retries for t in traces) == 1  # the one 429, retried on r2 at once
    assert len(r1.requests) == 2  # the first 429, then once more after Retry-After
    assert [r["rate_limited"] for r in report["v"]["replicas"]] == [pytest.approx(2.0), 0.0]
    assert report["v"]["rate_limited"] == 0  # the backend as a whole is not limited
    assert report["v"]["rate_limits"] == 1
    assert rate_changes(changes)[0] == ("v", "clear", "limited", "http://r1.test")


async def test_every_replica_rate_limited_orders_the_backend_last():
    ft = FakeTime()
    r1, r2, b = Server(too_many("2")), Server(too_many("2")), Server()
    configs = [config("v", base_urls=("http://r1.test", "http://r2.test")), config("b")]
    router = build(
        {"r1.test": r1, "r2.test": r2, "b.test": b},
        configs=configs,
        policy=RouterPolicy(max_retries=1),
        fake_time=ft,
    )
    async with router:
        first = await chat(router)
        report = await router.health()
        second = await chat(router)
    assert ft.sleeps == []
    assert [x.backend for x in first.attempts] == ["v", "v"]  # r1, then r2 at once
    assert first.backend == "b"
    assert report["v"]["rate_limited"] == pytest.approx(2.0)
    assert (second.backend, second.attempts) == ("b", [])
