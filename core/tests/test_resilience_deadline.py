"""The watchdog deadlines: fire within a tick, tell a timeout from a real cancellation."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from inference_core.resilience.deadline import Guard, Watchdog


async def guarded(wd: Watchdog, guard: Guard, seconds: float, work) -> str:
    wd.arm(guard, seconds)
    try:
        await work()
    except asyncio.CancelledError:
        if guard.expired_by_us():
            return "timeout"
        raise
    finally:
        wd.disarm(guard)
    return "done"


async def test_an_expired_guard_cancels_the_task_within_a_tick():
    wd = Watchdog(tick=0.01)
    wd.start()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert await guarded(wd, Guard(), 0.05, lambda: asyncio.sleep(5)) == "timeout"
    assert 0.04 <= loop.time() - t0 < 0.5
    assert asyncio.current_task().cancelling() == 0, "the cancel request was withdrawn"
    await asyncio.sleep(0.03)  # and no stray cancellation arrives later
    await wd.stop()


async def test_work_that_finishes_in_time_is_untouched():
    wd = Watchdog(tick=0.01)
    wd.start()
    guard = Guard()
    assert await guarded(wd, guard, 0.2, lambda: asyncio.sleep(0.01)) == "done"
    await asyncio.sleep(0.3)  # past the old deadline: nothing fires
    assert not guard.fired
    assert not wd._guards
    await wd.stop()


async def test_a_real_cancellation_is_not_mistaken_for_a_timeout():
    wd = Watchdog(tick=0.01)
    wd.start()
    task = asyncio.create_task(guarded(wd, Guard(), 5, lambda: asyncio.sleep(5)))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not wd._guards
    await wd.stop()


async def test_a_guard_can_be_rearmed_for_every_chunk():
    wd = Watchdog(tick=0.01)
    wd.start()
    guard = Guard()
    results = [await guarded(wd, guard, 0.05, lambda: asyncio.sleep(0.02)) for _ in range(5)]
    assert results == ["done"] * 5  # 5 x 20 ms > 50 ms, but each wait is fresh
    assert await guarded(wd, guard, 0.05, lambda: asyncio.sleep(1)) == "timeout"
    await wd.stop()


async def test_swallowed_cancellation_is_withdrawn():
    wd = Watchdog(tick=0.01)
    wd.start()

    async def stubborn():
        # misbehaving code that swallows the cancel
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(5)

    assert await guarded(wd, Guard(), 0.03, stubborn) == "done"
    assert asyncio.current_task().cancelling() == 0
    await asyncio.sleep(0.02)
    await wd.stop()


async def test_a_guard_still_armed_after_slow_after_reports_its_key_once():
    slow: list[str] = []
    wd = Watchdog(tick=0.01, on_slow=slow.append)
    wd.start()
    guard = Guard()
    wd.arm(guard, 5, 0.03, "vllm")
    await asyncio.sleep(0.1)
    assert slow == ["vllm"]
    wd.disarm(guard)
    wd.arm(guard, 5, 0.5, "vllm")  # answered in time: no report
    await asyncio.sleep(0.02)
    wd.disarm(guard)
    await asyncio.sleep(0.6)
    assert slow == ["vllm"]
    await wd.stop()
