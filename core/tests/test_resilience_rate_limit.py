"""Units of inference_core.resilience.rate_limit and the balancer's use of it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inference_core.models import BackendConfig
from inference_core.resilience import RateLimit, ReplicaSet, RouterPolicy, rate_limit_seconds


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_backends_retry_after_is_remembered_as_said():
    p = RouterPolicy(retry_after_cap=10)
    assert rate_limit_seconds(2.0, 1, p) == 2.0
    assert rate_limit_seconds(0.25, 7, p) == 0.25  # the streak does not matter then
    assert rate_limit_seconds(60.0, 1, p) == 60.0  # over the cap: not waited for, remembered
    assert rate_limit_seconds(0.0, 1, p) == 0.0


def test_without_retry_after_the_backoff_base_doubles_up_to_the_cap():
    p = RouterPolicy(backoff_base=0.25, retry_after_cap=1.5)
    assert [rate_limit_seconds(None, n, p) for n in range(1, 6)] == [0.25, 0.5, 1.0, 1.5, 1.5]
    assert rate_limit_seconds(None, 10_000, p) == 1.5  # no overflow on a long streak
    assert rate_limit_seconds(None, 1, RouterPolicy(retry_after_cap=0)) == 0.0


@given(
    retry_after=st.none() | st.floats(0, 1e6),
    streak=st.integers(1, 10**6),
    base=st.floats(0, 10),
    cap=st.floats(0, 100),
)
def test_rate_limit_seconds_is_never_negative_and_the_default_never_over_the_cap(
    retry_after, streak, base, cap
):
    p = RouterPolicy(backoff_base=base, retry_after_cap=cap)
    seconds = rate_limit_seconds(retry_after, streak, p)
    assert seconds >= 0
    if retry_after is None:
        assert seconds <= cap
    else:
        assert seconds == retry_after


def test_a_hit_limits_until_retry_after_on_the_clock():
    clock = Clock()
    rl = RateLimit(clock)
    assert not rl.active()
    assert rl.remaining() == 0.0
    assert rl.hit(2.0, RouterPolicy()) == 2.0
    assert rl.active()
    assert rl.remaining() == pytest.approx(2.0)
    clock.now += 1.5
    assert rl.remaining() == pytest.approx(0.5)
    clock.now += 0.5
    assert not rl.active()
    assert rl.remaining() == 0.0
    assert (rl.count, rl.streak) == (1, 1)


def test_a_shorter_retry_after_does_not_shorten_a_running_limit():
    clock = Clock()
    rl = RateLimit(clock)
    rl.hit(5.0, RouterPolicy())
    clock.now += 1
    rl.hit(1.0, RouterPolicy())
    assert rl.remaining() == pytest.approx(4.0)
    rl.hit(9.0, RouterPolicy())
    assert rl.remaining() == pytest.approx(9.0)
    assert (rl.count, rl.streak) == (3, 3)


def test_only_an_answer_to_a_request_sent_after_the_last_429_clears_it():
    clock = Clock()
    rl = RateLimit(clock)
    sent_before = clock.now
    clock.now += 0.1
    rl.hit(3.0, RouterPolicy())
    assert not rl.answered(sent_before)
    assert rl.active()
    assert rl.streak == 1
    assert rl.answered(clock.now)
    assert not rl.active()
    assert rl.streak == 0
    assert rl.count == 1  # the total stays
    assert not rl.answered(clock.now)  # nothing left to clear


def replicas(n: int, clock: Clock) -> ReplicaSet:
    cfg = BackendConfig(name="v", base_urls=tuple(f"http://r{i}.test" for i in range(n)))
    return ReplicaSet(cfg, RouterPolicy(), clock=clock)


def test_pick_prefers_replicas_that_are_not_rate_limited():
    clock = Clock()
    rs = replicas(3, clock)
    r0, r1, r2 = rs.replicas
    r0.rate_limit.hit(2.0, RouterPolicy())
    r1.rate_limit.hit(2.0, RouterPolicy())
    r2.outstanding = 5  # busier, but the only one not rate limited
    assert {rs.pick().url for _ in range(4)} == {r2.url}
    assert rs.has_free()
    assert not rs.has_free(r2)
    assert not rs.rate_limited()
    assert rs.rate_limit_remaining() == 0.0
    assert r0.snapshot()["rate_limited"] == pytest.approx(2.0)
    clock.now += 2
    assert {rs.pick().url for _ in range(3)} == {r0.url, r1.url}  # least loaded again


def test_every_replica_rate_limited_still_picks_one_and_says_how_long():
    clock = Clock()
    rs = replicas(2, clock)
    rs.replicas[0].rate_limit.hit(3.0, RouterPolicy())
    rs.replicas[1].rate_limit.hit(1.0, RouterPolicy())
    assert rs.rate_limited()
    assert not rs.has_free()
    assert rs.rate_limit_remaining() == pytest.approx(1.0)
    assert rs.pick() in rs.replicas
    assert rs.available()  # a rate limit is not a breaker: the backend still takes requests


def test_a_down_or_open_replica_is_not_free_even_when_not_rate_limited():
    clock = Clock()
    rs = replicas(2, clock)
    r0, r1 = rs.replicas
    r0.rate_limit.hit(3.0, RouterPolicy())
    r1.state = "down"
    assert not rs.has_free()
    r1.state = "ready"
    assert rs.has_free()
    for _ in range(3):
        r1.breaker.on_failure()
    assert not rs.has_free()
