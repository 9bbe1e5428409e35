"""Limits, usage and shared flags: the in-process backend, and the Redis one on a real server."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime

import pytest

from inference_core.errors import ConfigError
from inference_core.state import LimitExceeded, Limits, StateSettings, StateUnavailable
from inference_core.state.base import days_of, period_bounds, window_retry_after
from inference_core.state.memory import MemoryState

T0 = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC).timestamp()  # a Friday, minute-aligned


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_period_bounds_are_utc_calendar_periods():
    assert period_bounds("day", T0)[0] == "d2026-12-04"
    ident, start, end = period_bounds("week", T0)
    assert ident == "w2026-11-30"
    assert end - start == 7 * 86400
    ident, start, end = period_bounds("month", T0)
    assert ident == "m2026-12"
    assert datetime.fromtimestamp(end, UTC) == datetime(2027, 1, 1, tzinfo=UTC)
    assert len(days_of("month", T0)[1]) == 31
    assert days_of("week", T0)[1][0] == "d2026-11-30"


def test_window_retry_after():
    # 5 in the current minute, limit 5: wait until the minute ends and more
    assert window_retry_after(0, 5, 10, 5, 1) == pytest.approx(50 + 60 * (1 - 4 / 5))
    # the previous minute was full: its weight must fall to let one more in
    assert window_retry_after(10, 0, 0, 10, 1) == pytest.approx(6.0)
    assert window_retry_after(0, 0, 30, 10, 1) == 0.0


async def test_rpm_is_a_sliding_window():
    clock = Clock()
    state = MemoryState(clock)
    limits = Limits(rpm=3)
    for i in range(3):
        await state.admit("k", limits, f"r{i}")
    with pytest.raises(LimitExceeded) as info:
        await state.admit("k", limits, "r3")
    assert info.value.limit == "rpm"
    assert 1 <= info.value.retry_after <= 80
    clock.t += 60  # the next minute: the last one still weighs fully at its start
    with pytest.raises(LimitExceeded):
        await state.admit("k", limits, "r4")
    clock.t += 30  # half of it still overlaps: 3 * 0.5 + 1 <= 3
    await state.admit("k", limits, "r5")
    # another key is not affected
    for i in range(3):
        await state.admit("other", limits, f"o{i}")


async def test_tpm_counts_settled_tokens():
    clock = Clock()
    state = MemoryState(clock)
    limits = Limits(tpm=100)
    await state.admit("k", limits, "a")
    state.settle("k", limits, "a", "m", "b", 60, 50)
    with pytest.raises(LimitExceeded) as info:
        await state.admit("k", limits, "b")
    assert info.value.limit == "tpm"
    clock.t += 121
    await state.admit("k", limits, "c")


async def test_parallel_slots_are_freed_by_settle():
    state = MemoryState(Clock())
    limits = Limits(parallel=2)
    await state.admit("k", limits, "a")
    await state.admit("k", limits, "b")
    with pytest.raises(LimitExceeded) as info:
        await state.admit("k", limits, "c")
    assert info.value.limit == "parallel"
    state.settle("k", limits, "a", "m", "none", 0, 0)
    await state.admit("k", limits, "c")


async def test_budget_per_period_and_its_retry_after():
    clock = Clock()
    state = MemoryState(clock)
    limits = Limits(budget=1000, period="day")
    await state.admit("k", limits, "a")
    state.settle("k", limits, "a", "m", "b", 700, 300)
    with pytest.raises(LimitExceeded) as info:
        await state.admit("k", limits, "b")
    assert info.value.limit == "budget"
    assert info.value.retry_after == 12 * 3600  # until midnight UTC
    assert await state.budget_used("k", limits) == 1000
    clock.t += 12 * 3600  # the next day
    await state.admit("k", limits, "c")


async def test_usage_per_key_model_backend_and_period():
    clock = Clock()
    state = MemoryState(clock)
    none = Limits()
    state.settle("alice", none, "1", "gemma", "llamacpp", 10, 5)
    state.settle("alice", none, "2", "gemma", "llamacpp", 1, 2)
    state.settle("alice", none, "3", "gpt", "openai", 7, 0)
    state.settle("bob", none, "4", "gemma", "vllm", 3, 3)
    clock.t += 86400  # the next day: same week and month
    state.settle("alice", none, "5", "gemma", "llamacpp", 100, 100)
    day = await state.usage("alice", "day", T0)
    assert day["period"] == "d2026-12-04"
    alice = day["keys"]["alice"]
    assert (alice["prompt_tokens"], alice["completion_tokens"], alice["requests"]) == (18, 7, 3)
    assert alice["by"][0] == {"model": "gemma", "backend": "llamacpp", "prompt_tokens": 11,
                              "completion_tokens": 7, "requests": 2}  # fmt: skip
    week = await state.usage(None, "week", T0)
    assert set(week["keys"]) == {"alice", "bob"}
    assert week["keys"]["alice"]["prompt_tokens"] == 118


def test_state_settings_name_the_bad_variable():
    with pytest.raises(ConfigError) as info:
        StateSettings.from_env({"INFERENCE_REDIS_FAIL": "maybe"})
    assert "INFERENCE_REDIS_FAIL" in str(info.value)
    assert "open, closed" in str(info.value)
    with pytest.raises(ConfigError) as info:
        StateSettings.from_env({"INFERENCE_REDIS_URL": "http://user:pw@x"})
    assert "INFERENCE_REDIS_URL" in str(info.value)
    assert "pw" not in str(info.value)
    with pytest.raises(ConfigError):
        StateSettings.from_env({"INFERENCE_KEYS_REFRESH": "0"})
    s = StateSettings.from_env({"INFERENCE_ADMIN_KEYS": "a-secret-1, b", "INFERENCE_REDIS_URL":
                                "redis://:pw@h:1/0"})  # fmt: skip
    assert s.admin_keys == ("a-secret-1", "b")
    assert "pw" not in repr(s)
    assert "a-secret-1" not in repr(s)


def test_importing_the_state_package_does_not_import_redis():
    import subprocess
    import sys

    code = (
        "import sys, inference_core.state, inference_core.state.memory, "
        "inference_core.gateway.keys, inference_core.gateway.limits; "
        "print('redis' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------- real Redis


def _redis_state(url: str, prefix: str, **kw):
    from inference_core.state import create_state

    settings = StateSettings(redis_url=url, redis_prefix=prefix, **kw)
    return create_state(settings)


async def test_redis_limits_hold_across_two_clients(redis_url, redis_prefix):
    a = _redis_state(redis_url, redis_prefix)
    b = _redis_state(redis_url, redis_prefix)
    limits = Limits(rpm=10, parallel=3)
    try:
        results = await asyncio.gather(
            *[(a if i % 2 else b).admit("k", limits, f"t{i}") for i in range(20)],
            return_exceptions=True,
        )
        ok = [r for r in results if r is None]
        refused = [r for r in results if isinstance(r, LimitExceeded)]
        assert len(ok) == 3
        assert len(refused) == 17
        assert {r.limit for r in refused} == {"parallel"}
        for i, r in enumerate(results):
            if r is None:
                (a if i % 2 else b).settle("k", limits, f"t{i}", "m", "be", 1, 1)
        await a.flush()
        await b.flush()
        admitted = 3
        for i in range(20):
            try:
                await (a if i % 2 else b).admit("k", limits, f"u{i}")
            except LimitExceeded as exc:
                refused.append(exc)
                continue
            admitted += 1
            (a if i % 2 else b).settle("k", limits, f"u{i}", "m", "be", 1, 1)
            await a.flush()
            await b.flush()
        assert admitted == 10  # rpm 10 over both clients together
        assert refused[-1].limit == "rpm"
        usage = await a.usage("k", "day")
        assert usage["keys"]["k"]["requests"] == 10
        assert usage["keys"]["k"]["by"][0]["backend"] == "be"
    finally:
        await a.aclose()
        await b.aclose()


async def test_redis_tpm_and_budget(redis_url, redis_prefix):
    a = _redis_state(redis_url, redis_prefix)
    b = _redis_state(redis_url, redis_prefix)
    try:
        limits = Limits(tpm=100, budget=150, period="week")
        await a.admit("k", limits, "1")
        a.settle("k", limits, "1", "m", "x", 80, 30)
        await a.flush()
        with pytest.raises(LimitExceeded) as info:
            await b.admit("k", limits, "2")
        assert info.value.limit == "tpm"
        assert await b.budget_used("k", limits) == 110
        b.settle("k", limits, "2", "m", "x", 40, 0)  # as if admitted before
        await b.flush()
        with pytest.raises(LimitExceeded) as info:
            await a.admit("k", limits, "3")
        assert info.value.limit == "budget"
        assert info.value.retry_after > 60
    finally:
        await a.aclose()
        await b.aclose()


async def test_redis_flags_use_server_time_and_take_the_max(redis_url, redis_prefix):
    a = _redis_state(redis_url, redis_prefix)
    b = _redis_state(redis_url, redis_prefix)
    try:
        a.breaker_opened("vllm@http://h:1", 10)
        a.breaker_opened("vllm@http://h:1", 2)  # shorter: does not shorten it
        b.rate_limited("openai@-", 3)
        await a.flush()
        await b.flush()
        breakers, limits = await b.poll_flags()
        assert 9 < breakers["vllm@http://h:1"] <= 10
        assert 2 < limits["openai@-"] <= 3
    finally:
        await a.aclose()
        await b.aclose()


async def test_redis_responses_store(redis_url, redis_prefix):
    state = _redis_state(redis_url, redis_prefix)
    try:
        await state.put_response("resp_1", b'{"id":"resp_1"}', ttl=60)
        assert await state.get_response("resp_1") == b'{"id":"resp_1"}'
        assert await state.delete_response("resp_1") is True
        assert await state.get_response("resp_1") is None
    finally:
        await state.aclose()


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_redis_down_fail_open_serves_without_limits():
    state = _redis_state(f"redis://127.0.0.1:{_dead_port()}/0", "x:", redis_fail="open")
    try:
        for i in range(5):
            await state.admit("k", Limits(rpm=1), f"t{i}")  # never raises
        state.settle("k", Limits(rpm=1), "t0", "m", "b", 1, 1)
        assert await state.poll_flags() == ({}, {})
    finally:
        await state.aclose()


async def test_redis_down_fail_closed_refuses():
    state = _redis_state(f"redis://127.0.0.1:{_dead_port()}/0", "x:", redis_fail="closed")
    try:
        with pytest.raises(StateUnavailable):
            await state.admit("k", Limits(rpm=1), "t0")
        with pytest.raises(StateUnavailable):  # within the second after: no call at all
            await state.admit("k", Limits(rpm=1), "t1")
        # a key without limits never needs Redis
        await state.admit("k", Limits(), "t2")
    finally:
        await state.aclose()


def test_state_variables_never_become_a_backends_options():
    from inference_core.settings import Settings

    env = {
        "INFERENCE_PROVIDER": "redis",
        "INFERENCE_REDIS_PLUGIN": "vllm",
        "INFERENCE_REDIS_BASE_URL": "http://h:1",
        "INFERENCE_REDIS_URL": "redis://:pw@h:6379/0",
        "INFERENCE_REDIS_FAIL": "closed",
    }
    options = Settings.from_env(env, env_file=None).backend("redis").options
    assert "url" not in options
    assert "fail" not in options


async def test_shared_response_store_across_two_clients(redis_url, redis_prefix):
    from dataclasses import dataclass, field

    from inference_core.state.responses import SharedResponseStore

    @dataclass
    class Record:  # the shape of protocols.store.StoredResponse
        id: str
        response: dict
        items: list = field(default_factory=list)
        created: float = 0.0

    a = _redis_state(redis_url, redis_prefix)
    b = _redis_state(redis_url, redis_prefix)
    try:
        put = SharedResponseStore(a, ttl=60, record_cls=Record)
        get = SharedResponseStore(b, ttl=60, record_cls=Record)
        rec = Record("resp_9", {"id": "resp_9", "output": []}, [{"role": "user"}], 1.5)
        await put.put(rec)
        assert await get.get("resp_9") == rec  # written by one replica, read by another
        assert await get.delete("resp_9") is True
        assert await put.get("resp_9") is None
    finally:
        await a.aclose()
        await b.aclose()


async def test_responses_store_when_redis_is_down():
    port = _dead_port()
    closed = _redis_state(f"redis://127.0.0.1:{port}/0", "x:", redis_fail="closed")
    opened = _redis_state(f"redis://127.0.0.1:{port}/0", "x:", redis_fail="open")
    try:
        with pytest.raises(StateUnavailable):
            await closed.get_response("r")
        assert await opened.get_response("r") is None
        await opened.put_response("r", b"{}", 60)  # dropped, logged
    finally:
        await closed.aclose()
        await opened.aclose()
