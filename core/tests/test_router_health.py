"""Router health: active checks, passive breaker, half-open trial, all-down, replicas, listeners."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_router_helpers import (
    SECRET,
    CompatPlugin,
    FakeTime,
    Server,
    build,
    chat_json,
    config,
    error,
    req,
)

from inference_core.errors import AllBackendsFailed
from inference_core.hookspecs import hookimpl
from inference_core.models import Health
from inference_core.resilience.policy import RouterPolicy
from inference_core.router import RequestTrace, StateChange


async def wait_for(predicate, timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- the breaker


async def test_breaker_opens_cools_down_lets_one_trial_through_then_closes():
    ft = FakeTime()
    a, b = Server().then(error(503), error(503)), Server()
    policy = RouterPolicy(max_retries=0, breaker_threshold=2, breaker_cooldown=10)
    router = build({"a.test": a, "b.test": b}, policy=policy, fake_time=ft)
    changes: list[StateChange] = []
    router.add_state_listener(lambda backend, **kw: changes.append(kw["change"]))
    async with router:
        await router.chat(req())
        await router.chat(req())
        health = await router.health()
        assert health["a"]["breaker"] == "open"
        assert health["a"]["cooldown_remaining"] == pytest.approx(10.0)
        assert router.ready()  # b still serves

        # open: a is skipped while b serves
        trace = RequestTrace()
        await router.chat(req(), trace=trace)
        assert trace.backend == "b"
        assert len(a.requests) == 2

        # cool-down over: half-open, exactly one trial request reaches a
        ft.now += 10
        release = asyncio.Event()

        async def slow_ok(request):
            await release.wait()
            return httpx.Response(200, json=chat_json())

        a.default = slow_ok
        traces = [RequestTrace() for _ in range(3)]
        tasks = [asyncio.create_task(router.chat(req(), trace=t)) for t in traces]
        await wait_for(lambda: sum(t.backend == "b" for t in traces) == 2)
        assert len(a.requests) == 3  # one trial only
        assert (await router.health())["a"]["breaker"] == "half_open"
        release.set()
        await asyncio.gather(*tasks)
        assert [t.backend for t in traces].count("a") == 1
        assert (await router.health())["a"]["breaker"] == "closed"
    breaker_changes = [(c.backend, c.old, c.new) for c in changes if c.kind == "breaker"]
    assert breaker_changes == [
        ("a", "closed", "open"),
        ("a", "open", "half_open"),
        ("a", "half_open", "closed"),
    ]


@pytest.mark.parametrize(
    ("reply", "counts"),
    [
        (error(503), True),
        (httpx.ConnectError("refused"), True),
        (error(401, {"error": "Unauthorized"}), True),
        (error(429), False),
        (error(400, {"error": {"message": "bad", "type": "x"}}), False),
        (error(400, {"error": {"message": "exceed_context_size_error", "type": "x"}}), False),
    ],
)
async def test_which_failures_count_toward_the_breaker(reply, counts):
    a = Server(reply)
    router = build({"a.test": a}, policy=RouterPolicy(max_retries=0, breaker_threshold=1))
    async with router:
        with pytest.raises(Exception):  # noqa: B017,PT011 - the kind is not the point here
            await router.chat(req())
        health = await router.health()
    assert (health["a"]["breaker"] == "open") is counts
    if reply.__class__ is httpx.Response and reply.status_code == 429:
        assert health["a"]["rate_limits"] == 1
        # no Retry-After: remembered for the policy's backoff base (0.25 s), real clock here
        assert 0.0 <= health["a"]["rate_limited"] <= 0.25
    else:
        assert health["a"]["rate_limits"] == 0
        assert health["a"]["rate_limited"] == 0


async def test_all_marked_down_still_tries_them_in_chain_order():
    ft = FakeTime()
    a, b = Server(error(503)), Server(error(503))
    policy = RouterPolicy(max_retries=0, breaker_threshold=1, breaker_cooldown=60)
    router = build({"a.test": a, "b.test": b}, policy=policy, fake_time=ft)
    async with router:
        with pytest.raises(AllBackendsFailed):
            await router.chat(req())
        health = await router.health()
        assert health["a"]["breaker"] == health["b"]["breaker"] == "open"
        assert not router.ready()
        a.default = httpx.Response(200, json=chat_json(text="a is back"))
        trace = RequestTrace()
        resp = await router.chat(req(), trace=trace)
    assert resp.choices[0].message.content == "a is back"
    assert trace.backend == "a"
    assert (await router.health())["a"]["breaker"] == "closed"  # a success closes it


async def test_healthy_backends_are_preferred_over_ones_marked_down():
    a, b = Server(), Server()
    a.health = error(503, {"error": {"code": 503, "message": "Loading model"}})
    router = build({"a.test": a, "b.test": b})
    async with router:
        await router.health(refresh=True)
        trace = RequestTrace()
        await router.chat(req(), trace=trace)
    assert trace.backend == "b"
    assert not a.requests


# ----------------------------------------------------------------------- active checks


async def test_health_report_shape():
    class Probe(CompatPlugin):
        @hookimpl
        async def health(self, config, http):
            return Health(state="ready", latency_ms=1.5, models=["m1", "m2"])

    configs = [config("a", base_urls=(f"http://u:{SECRET}@a.test", "http://a2.test"))]
    router = build(
        {"a.test": Server(), "a2.test": Server()}, configs=configs, plugins={"a": Probe()}
    )
    async with router:
        report = await router.health(refresh=True)
    a = report["a"]
    assert a["state"] == "ready"
    assert a["models"] == ["m1", "m2"]
    assert a["latency_ms"] == 1.5
    assert a["load_error"] is None
    assert a["breaker"] == "closed"
    assert a["cooldown_remaining"] == 0
    assert datetime.fromisoformat(a["last_check"]).tzinfo is not None
    assert a["replicas"] == [
        {
            "url": "http://a.test",
            "state": "ready",
            "outstanding": 0,
            "breaker": "closed",
            "external_load": 0.0,
            "rate_limited": 0.0,
        },
        {
            "url": "http://a2.test",
            "state": "ready",
            "outstanding": 0,
            "breaker": "closed",
            "external_load": 0.0,
            "rate_limited": 0.0,
        },
    ]
    assert SECRET not in str(report)


async def test_background_checks_run_every_interval_and_track_transitions():
    a = Server()
    router = build({"a.test": a}, interval=0.05, timeout=1)
    changes: list[StateChange] = []
    router.add_state_listener(lambda backend, **kw: changes.append(kw["change"]))
    async with router:
        await wait_for(lambda: a.health_calls >= 1)
        assert (await router.health())["a"]["state"] == "ready"
        a.health = error(503)
        await wait_for(lambda: router.monitor.status("a").state == "down")
        a.health = httpx.Response(200, json={"status": "ok"})
        await wait_for(lambda: router.monitor.status("a").state == "ready")
        calls = a.health_calls
    await asyncio.sleep(0.12)
    assert a.health_calls == calls, "health tasks stop with the router"
    health = [(c.old, c.new) for c in changes if c.kind == "health"]
    assert health == [("unknown", "ready"), ("ready", "down"), ("down", "ready")]


async def test_a_raising_or_hanging_health_hook_counts_as_down_and_the_task_survives():
    class Odd(CompatPlugin):
        def __init__(self):
            super().__init__()
            self.mode = "raise"

        @hookimpl
        async def health(self, config, http):
            if self.mode == "raise":
                raise RuntimeError("hook bug")
            if self.mode == "hang":
                await asyncio.sleep(10)
            return Health(state="ready")

    plugin = Odd()
    router = build({"a.test": Server()}, plugins={"a": plugin}, interval=0.05, timeout=0.05)
    async with router:
        await wait_for(lambda: router.monitor.status("a").state == "down")
        assert "RuntimeError" in router.monitor.status("a").detail
        plugin.mode = "hang"
        await wait_for(lambda: "timed out" in (router.monitor.status("a").detail or ""))
        plugin.mode = "ok"
        await wait_for(lambda: router.monitor.status("a").state == "ready")


async def test_a_dead_primary_is_marked_down_right_after_a_passive_failure():
    a, b = Server(), Server()
    router = build(
        {"a.test": a, "b.test": b},
        policy=RouterPolicy(max_retries=0),
        interval=30,
        timeout=0.2,
    )
    loop = asyncio.get_running_loop()
    async with router:
        await wait_for(lambda: router.monitor.status("a").state == "ready")
        a.health = httpx.ConnectError("refused")
        a.default = httpx.ConnectError("refused")
        t0 = loop.time()
        trace = RequestTrace()
        await router.chat(req(), trace=trace)
        assert trace.backend == "b"
        await wait_for(lambda: router.monitor.status("a").state == "down", timeout=1.5)
        # far sooner than the 30 s interval: the passive failure triggered a probe
        assert loop.time() - t0 < 1.5
        trace = RequestTrace()
        await router.chat(req(), trace=trace)
    assert trace.backend == "b"
    assert trace.attempts == [], "a backend marked down is tried after the healthy ones"


async def test_backend_without_health_hook_is_unknown_but_usable():
    class NoHealth:
        @hookimpl
        async def chat(self, request):
            from inference_core.models import ChatResponse

            return ChatResponse.model_validate(chat_json())

    router = build({}, configs=[config("a")], plugins={"a": NoHealth()})
    async with router:
        report = await router.health(refresh=True)
        assert router.ready()
        await router.chat(req())
    assert report["a"]["state"] == "unknown"
    assert "no health hook" in report["a"]["detail"]


# ------------------------------------------------------------------------------ replicas


async def test_replicas_balance_by_least_outstanding():
    release = asyncio.Event()

    async def slow(request):
        await release.wait()
        return httpx.Response(200, json=chat_json())

    r1, r2 = Server(slow), Server(slow)
    configs = [config("v", base_urls=("http://r1.test", "http://r2.test"))]
    plugin = CompatPlugin()
    router = build({"r1.test": r1, "r2.test": r2}, configs=configs, plugins={"v": plugin})
    async with router:
        tasks = [asyncio.create_task(router.chat(req())) for _ in range(4)]
        await wait_for(lambda: len(r1.requests) + len(r2.requests) == 4)
        report = await router.health()
        assert [r["outstanding"] for r in report["v"]["replicas"]] == [2, 2]
        assert router.in_flight == 4
        release.set()
        await asyncio.gather(*tasks)
        report = await router.health()
    assert (len(r1.requests), len(r2.requests)) == (2, 2)
    assert [r["outstanding"] for r in report["v"]["replicas"]] == [0, 0]
    assert {url for _, url in plugin.seen} == {"http://r1.test", "http://r2.test"}


async def test_a_failing_replica_is_ejected_and_the_retry_goes_to_another():
    ft = FakeTime()
    r1, r2 = Server(httpx.ConnectError("refused")), Server()
    configs = [config("v", base_urls=("http://r1.test", "http://r2.test"))]
    changes: list[StateChange] = []
    router = build(
        {"r1.test": r1, "r2.test": r2},
        configs=configs,
        policy=RouterPolicy(breaker_threshold=1, breaker_cooldown=30),
        fake_time=ft,
        rand=lambda: 0.0,
    )
    router.add_state_listener(lambda backend, **kw: changes.append(kw["change"]))
    async with router:
        traces = []
        for _ in range(4):
            t = RequestTrace()
            await router.chat(req(), trace=t)
            traces.append(t)
        report = await router.health()
    assert len(r1.requests) == 1  # ejected after its first failure
    assert len(r2.requests) == 4
    assert sum(t.retries for t in traces) == 1
    assert report["v"]["breaker"] == "closed"  # the backend as a whole still serves
    assert [r["breaker"] for r in report["v"]["replicas"]] == ["open", "closed"]
    assert any(c.kind == "breaker" and c.replica == "http://r1.test" for c in changes)


async def test_listener_errors_do_not_break_routing():
    def bad(backend, *, state, breaker, change):
        raise RuntimeError("listener bug")

    router = build(
        {"a.test": Server(error(503)), "b.test": Server()},
        policy=RouterPolicy(max_retries=0, breaker_threshold=1),
    )
    router.add_state_listener(bad)
    async with router:
        trace = RequestTrace()
        await router.chat(req(), trace=trace)
    assert trace.backend == "b"
    router.remove_state_listener(bad)
    router.remove_state_listener(bad)  # removing twice is harmless


async def test_listeners_get_the_backends_state_and_breaker_after_each_change():
    calls = []
    a, b = Server(error(503)), Server()
    router = build(
        {"a.test": a, "b.test": b}, policy=RouterPolicy(max_retries=0, breaker_threshold=1)
    )
    router.add_state_listener(
        lambda backend, *, state, breaker, change: calls.append(
            (backend, state, breaker, change.kind)
        )
    )
    async with router:
        await wait_for(lambda: router.monitor.status("a").state == "ready")
        await router.chat(req())
    assert ("a", "ready", "closed", "health") in calls
    assert ("a", "ready", "open", "breaker") in calls


async def test_a_hung_backend_is_probed_while_a_request_still_waits_on_it():
    hang = asyncio.Event()

    async def hung(request):
        await hang.wait()
        return httpx.Response(200, json={"status": "ok"})

    a, b = Server(), Server()
    router = build(
        {"a.test": a, "b.test": b},
        policy=RouterPolicy(first_token_timeout=5, max_retries=0),
        interval=30,
        timeout=0.1,
    )
    async with router:
        await wait_for(lambda: router.monitor.status("a").state == "ready")
        a.default = hung
        a.health = hung
        task = asyncio.create_task(router.chat(req()))
        # marked down long before the request's own 5 s first-token deadline
        await wait_for(lambda: router.monitor.status("a").state == "down", timeout=3)
        assert not task.done()
        hang.set()
        await task


async def test_a_down_backend_is_reprobed_twice_as_often():
    a = Server()
    a.health = error(503)
    router = build({"a.test": a}, interval=0.4, timeout=0.2)
    async with router:
        await wait_for(lambda: router.monitor.status("a").state == "down")
        before = a.health_calls
        await asyncio.sleep(1.0)
        during_down = a.health_calls - before
    assert during_down >= 4  # every 0.2 s, not every 0.4 s


async def test_server_reported_load_from_other_clients_steers_the_balancer():
    class Loaded(CompatPlugin):
        @hookimpl
        async def health(self, config, http):
            busy = 7 if "r1" in config.base_url else 1  # other gateways keep r1 busy
            return Health(state="ready", load=busy)

    r1, r2 = Server(), Server()
    configs = [config("v", base_urls=("http://r1.test", "http://r2.test"))]
    router = build({"r1.test": r1, "r2.test": r2}, configs=configs, plugins={"v": Loaded()})
    async with router:
        report = await router.health(refresh=True)
        for _ in range(4):
            await router.chat(req())
    assert [r["external_load"] for r in report["v"]["replicas"]] == [7.0, 1.0]
    assert (len(r1.requests), len(r2.requests)) == (0, 4)
