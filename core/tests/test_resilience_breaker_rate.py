"""The breaker's failure-rate condition (issue #11, item 7): a backend failing 30 % of its
requests never fails three times in a row, yet must leave the rotation."""

from __future__ import annotations

import random

import pytest

from inference_core.errors import ConfigError
from inference_core.resilience import CircuitBreaker
from inference_core.resilience.policy import RouterPolicy
from inference_core.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def drive(breaker: CircuitBreaker, clock: Clock, pattern: list[bool], step: float = 0.05) -> int:
    """Feed outcomes (True = failure); the number of requests until it opened (0 = never)."""
    for i, failed in enumerate(pattern, 1):
        clock.now += step
        trial = breaker.on_attempt()
        if failed:
            breaker.on_failure(trial)
        else:
            breaker.on_success(trial)
        if breaker.state == "open":
            return i
    return 0


def thirty_percent(n: int) -> list[bool]:
    """30 % failures, never two in a row (so the consecutive count never reaches 3)."""
    return [i % 10 in (0, 3, 6) for i in range(n)]


def test_thirty_percent_failures_open_the_breaker() -> None:
    policy = RouterPolicy()  # the defaults: rate 0.25 over 30 s, 20 requests at least
    clock = Clock()
    breaker = CircuitBreaker.from_policy(policy, clock)
    opened_at = drive(breaker, clock, thirty_percent(200))
    # at the first failure once the window holds enough requests (the 20th was a success)
    assert opened_at == 21
    assert breaker.error_rate() is None or breaker.error_rate() == 0  # forgotten when opened
    # the same pattern with the rate condition off: the consecutive count alone never opens
    clock = Clock()
    legacy = CircuitBreaker(3, 30.0, 10.0, clock=clock)
    assert drive(legacy, clock, thirty_percent(200)) == 0


def test_a_healthy_rate_stays_closed_and_old_failures_leave_the_window() -> None:
    clock = Clock()
    breaker = CircuitBreaker(3, 10.0, 5.0, failure_rate=0.25, min_requests=20, clock=clock)
    rng = random.Random(7)
    healthy = [rng.random() < 0.05 for _ in range(2000)]  # 5 %
    assert drive(breaker, clock, healthy) == 0
    # 8 failures of 20 (40 %), but spread over 40 s: never 20 in one 10 s window... at 2 s apart
    clock = Clock()
    breaker = CircuitBreaker(3, 10.0, 5.0, failure_rate=0.25, min_requests=20, clock=clock)
    assert drive(breaker, clock, thirty_percent(60), step=2.0) == 0
    rate = breaker.error_rate()
    assert rate is not None
    assert 0 < rate < 1


def test_below_the_minimum_volume_the_rate_does_not_count() -> None:
    clock = Clock()
    breaker = CircuitBreaker(3, 30.0, 5.0, failure_rate=0.25, min_requests=50, clock=clock)
    assert drive(breaker, clock, thirty_percent(49)) == 0
    assert drive(breaker, clock, thirty_percent(10)) > 0


def test_after_the_cooldown_a_successful_trial_closes_with_a_clean_slate() -> None:
    clock = Clock()
    breaker = CircuitBreaker(3, 30.0, 5.0, failure_rate=0.25, min_requests=20, clock=clock)
    assert drive(breaker, clock, thirty_percent(40)) > 0
    clock.now += 6
    assert breaker.state == "half_open"
    trial = breaker.on_attempt()
    assert trial
    breaker.on_success(trial)
    assert breaker.state == "closed"
    assert breaker.error_rate() is None  # nothing ended since
    assert drive(breaker, clock, [False] * 19 + [True]) == 0  # 5 %: stays closed


def test_settings_read_the_rate_variables_and_reject_bad_values() -> None:
    s = Settings.from_env(
        env={"INFERENCE_BREAKER_FAILURE_RATE": "0.3", "INFERENCE_BREAKER_MIN_REQUESTS": "10"},
        env_file=None,
    )
    assert s.policy.breaker_failure_rate == 0.3
    assert s.policy.breaker_min_requests == 10
    for bad in ("1.5", "-0.1", "lots"):
        with pytest.raises(ConfigError, match="INFERENCE_BREAKER_FAILURE_RATE"):
            Settings.from_env(env={"INFERENCE_BREAKER_FAILURE_RATE": bad}, env_file=None)
    with pytest.raises(ConfigError, match="INFERENCE_BREAKER_MIN_REQUESTS"):
        Settings.from_env(env={"INFERENCE_BREAKER_MIN_REQUESTS": "0"}, env_file=None)
