"""resilience.admission.Admission: the per-replica concurrency cap and bounded FIFO queue."""

from __future__ import annotations

import asyncio
import time

import pytest

from inference_core.resilience.admission import Admission


def test_try_acquire_caps_and_release_frees() -> None:
    a = Admission(2)
    assert a.try_acquire()
    assert a.try_acquire()
    assert not a.try_acquire()
    assert a.full()  # no queue configured
    a.release()
    assert a.try_acquire()
    assert a.snapshot()["in_flight"] == 2


def test_no_limit_admits_everything() -> None:
    a = Admission(None)
    assert all(a.try_acquire() for _ in range(1000))
    assert not a.full()


async def test_waiters_are_served_first_come_first_served() -> None:
    a = Admission(1, queue=5, max_wait=5)
    assert await a.acquire()
    order: list[int] = []

    async def wait(i: int) -> None:
        assert await a.acquire()
        order.append(i)

    tasks = [asyncio.create_task(wait(i)) for i in range(3)]
    await asyncio.sleep(0.01)
    assert a.queued == 3
    assert not a.try_acquire()  # no barging past the queue
    for _ in range(3):
        a.release()
        await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2]
    assert a.in_flight == 1
    assert a.snapshot()["waited"] == 3


async def test_a_full_queue_refuses_at_once() -> None:
    a = Admission(1, queue=1, max_wait=5)
    assert await a.acquire()
    waiting = asyncio.create_task(a.acquire())
    await asyncio.sleep(0.01)
    t0 = time.monotonic()
    assert await a.acquire() is False
    assert time.monotonic() - t0 < 0.05
    assert a.snapshot()["rejected_full"] == 1
    a.release()
    assert await waiting is True


async def test_a_wait_longer_than_max_wait_gives_up_and_leaves_the_queue() -> None:
    a = Admission(1, queue=4, max_wait=0.1)
    assert await a.acquire()
    t0 = time.monotonic()
    assert await a.acquire() is False
    assert 0.09 <= time.monotonic() - t0 < 0.5
    assert a.queued == 0
    assert a.snapshot()["rejected_timeout"] == 1
    assert await a.acquire(max_wait=0) is False  # a caller's shorter budget wins


async def test_a_cancelled_waiter_leaves_and_a_handed_slot_passes_on() -> None:
    a = Admission(1, queue=4, max_wait=5)
    assert await a.acquire()
    first = asyncio.create_task(a.acquire())
    second = asyncio.create_task(a.acquire())
    await asyncio.sleep(0.01)
    a.release()  # the slot is handed to `first`...
    first.cancel()  # ...which is cancelled before it runs
    await asyncio.gather(first, return_exceptions=True)
    assert await asyncio.wait_for(second, 1) is True  # the slot went on to `second`
    assert a.in_flight == 1
    assert a.queued == 0


async def test_raising_the_limit_admits_waiters() -> None:
    a = Admission(1, queue=4, max_wait=5)
    assert await a.acquire()
    waiters = [asyncio.create_task(a.acquire()) for _ in range(3)]
    await asyncio.sleep(0.01)
    a.set_limit(4)
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert a.in_flight == 4


async def test_overload_of_ten_times_the_slots_ends_every_request_none_hanging() -> None:
    a = Admission(4, queue=8, max_wait=0.3)
    peak = 0

    async def request() -> bool:
        nonlocal peak
        if not await a.acquire():
            return False
        try:
            peak = max(peak, a.in_flight)
            await asyncio.sleep(0.05)
            return True
        finally:
            a.release()

    t0 = time.monotonic()
    results = await asyncio.wait_for(asyncio.gather(*(request() for _ in range(40))), 5)
    assert time.monotonic() - t0 < 2
    assert peak == 4
    snap = a.snapshot()
    assert results.count(True) == snap["admitted"]
    assert results.count(False) == snap["rejected_full"] + snap["rejected_timeout"]
    assert results.count(True) >= 12  # the 4 slots and the queue did serve
    assert snap["in_flight"] == 0
    assert snap["queued"] == 0
    assert a.retry_after() >= 1


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="limit"):
        Admission(0)
    with pytest.raises(ValueError, match="queue"):
        Admission(1, queue=-1)
