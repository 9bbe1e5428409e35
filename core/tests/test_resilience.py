"""Units of inference_core.resilience: policy, retry delays, deadline, breaker, balancer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inference_core.errors import (
    AuthenticationFailed,
    BackendTimeout,
    BackendUnavailable,
    BadRequest,
    ContextLengthExceeded,
    RateLimited,
)
from inference_core.models import BackendConfig
from inference_core.resilience import (
    CircuitBreaker,
    Deadline,
    ReplicaSet,
    RouterPolicy,
    backoff_delay,
    retry_delay,
    strip_credentials,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------------------------- policy


def test_policy_defaults_match_the_contract():
    p = RouterPolicy()
    assert (p.max_retries, p.backoff_base, p.backoff_max, p.retry_after_cap) == (2, 0.25, 4.0, 10.0)
    assert (p.request_deadline, p.first_token_timeout, p.idle_timeout) == (120.0, 60.0, 30.0)
    assert (p.breaker_threshold, p.breaker_window, p.breaker_cooldown) == (3, 30.0, 10.0)
    assert p.context_fallback is True


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": -1},
        {"backoff_base": -0.1},
        {"request_deadline": 0},
        {"idle_timeout": -1},
        {"breaker_threshold": 0},
    ],
)
def test_policy_rejects_nonsense(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        RouterPolicy(**kwargs)


# ----------------------------------------------------------------------------------- retry


@given(retry=st.integers(1, 20), draw=st.floats(0, 1))
def test_backoff_is_full_jitter_within_the_exponential_ceiling(retry, draw):
    p = RouterPolicy(backoff_base=0.25, backoff_max=4.0)
    delay = backoff_delay(retry, p, lambda: draw)
    ceiling = min(4.0, 0.25 * 2 ** (retry - 1))
    assert 0 <= delay <= ceiling
    assert delay == pytest.approx(ceiling * draw)


@pytest.mark.parametrize(
    "error",
    [BadRequest("x"), ContextLengthExceeded("x"), AuthenticationFailed("x"), ValueError("x")],
)
def test_only_retryable_errors_are_retried(error):
    assert retry_delay(error, 1, RouterPolicy()) is None


@pytest.mark.parametrize("error", [BackendUnavailable("x"), BackendTimeout("x"), RateLimited("x")])
def test_retryable_errors_are_retried_up_to_max_retries(error):
    p = RouterPolicy(max_retries=2)
    assert retry_delay(error, 1, p, rand=lambda: 0.5) is not None
    assert retry_delay(error, 2, p, rand=lambda: 0.5) is not None
    assert retry_delay(error, 3, p, rand=lambda: 0.5) is None


def test_retry_after_is_used_instead_of_backoff_and_capped():
    p = RouterPolicy(retry_after_cap=10)
    assert retry_delay(RateLimited("x", retry_after=3.0), 1, p) == 3.0
    assert retry_delay(RateLimited("x", retry_after=10.0), 1, p) == 10.0
    assert retry_delay(RateLimited("x", retry_after=10.5), 1, p) is None
    assert retry_delay(RateLimited("x", retry_after=0.0), 1, p) == 0.0


def test_a_wait_longer_than_the_remaining_deadline_is_refused():
    p = RouterPolicy()
    assert retry_delay(RateLimited("x", retry_after=3.0), 1, p, remaining=2.0) is None
    assert retry_delay(RateLimited("x", retry_after=1.0), 1, p, remaining=2.0) == 1.0


def test_deadline_on_an_injected_clock():
    clock = Clock()
    d = Deadline(5.0, clock)
    assert d.remaining() == 5.0
    clock.now = 4.0
    assert not d.expired
    clock.now = 5.0
    assert d.expired
    assert d.remaining() == 0.0


# --------------------------------------------------------------------------------- breaker


def test_breaker_opens_after_threshold_failures_within_the_window():
    clock = Clock()
    changes = []
    b = CircuitBreaker(3, 10.0, 5.0, clock=clock, listener=lambda o, n: changes.append((o, n)))
    b.on_failure()
    clock.now = 4
    b.on_failure()
    assert b.state == "closed"
    clock.now = 8
    b.on_failure()
    assert b.state == "open"
    assert not b.available()
    assert b.cooldown_remaining() == pytest.approx(5.0)
    assert changes == [("closed", "open")]


def test_failures_outside_the_window_do_not_count():
    clock = Clock()
    b = CircuitBreaker(3, 10.0, 5.0, clock=clock)
    b.on_failure()
    clock.now = 5
    b.on_failure()
    clock.now = 12  # the first failure (t=0) left the window
    b.on_failure()
    assert b.state == "closed"
    clock.now = 14  # t=5, 12, 14 are within 10 s
    b.on_failure()
    assert b.state == "open"


def test_success_resets_the_failure_count():
    b = CircuitBreaker(2, 10.0, 5.0, clock=Clock())
    b.on_failure()
    b.on_success()
    b.on_failure()
    assert b.state == "closed"


def test_cooldown_then_exactly_one_half_open_trial_then_close():
    clock = Clock()
    changes = []
    b = CircuitBreaker(1, 10.0, 5.0, clock=clock, listener=lambda o, n: changes.append(n))
    b.on_failure()
    assert b.state == "open"
    clock.now = 4.9
    assert not b.available()
    assert not b.on_attempt()
    clock.now = 5.0
    assert b.state == "half_open"
    assert b.available()
    assert b.on_attempt() is True  # the trial
    assert not b.available()
    assert b.on_attempt() is False  # no second trial while the first is out
    b.on_success(trial=True)
    assert b.state == "closed"
    assert changes == ["open", "half_open", "closed"]


def test_failed_trial_reopens_for_another_cooldown():
    clock = Clock()
    b = CircuitBreaker(1, 10.0, 5.0, clock=clock)
    b.on_failure()
    clock.now = 6
    trial = b.on_attempt()
    assert trial
    b.on_failure(trial)
    assert b.state == "open"
    assert b.cooldown_remaining() == pytest.approx(5.0)
    clock.now = 11
    assert b.state == "half_open"


def test_neutral_outcome_frees_the_trial_slot_without_closing():
    clock = Clock()
    b = CircuitBreaker(1, 10.0, 5.0, clock=clock)
    b.on_failure()
    clock.now = 5
    assert b.on_attempt()
    b.on_neutral(True)
    assert b.state == "half_open"
    assert b.available()


def test_a_last_resort_failure_while_open_does_not_extend_the_cooldown():
    clock = Clock()
    b = CircuitBreaker(1, 10.0, 5.0, clock=clock)
    b.on_failure()
    clock.now = 3
    b.on_failure()
    assert b.cooldown_remaining() == pytest.approx(2.0)


# -------------------------------------------------------------------------------- balancer


def replicas(n: int = 3, clock=None) -> ReplicaSet:
    cfg = BackendConfig(name="v", base_urls=tuple(f"http://r{i}.test" for i in range(n)))
    return ReplicaSet(
        cfg, RouterPolicy(breaker_threshold=1, breaker_cooldown=5), clock=clock or Clock()
    )


def test_replica_configs_are_cached_per_replica():
    rs = replicas()
    picked = [rs.pick() for _ in range(6)]
    assert [r.config.base_url for r in picked[:3]] == [
        "http://r0.test",
        "http://r1.test",
        "http://r2.test",
    ]
    assert picked[0].config is picked[3].config


def test_least_outstanding_wins_and_ties_round_robin():
    rs = replicas()
    r0, r1, r2 = rs.replicas
    r0.outstanding, r1.outstanding, r2.outstanding = 2, 0, 1
    assert rs.pick() is r1
    r1.outstanding = 2
    assert rs.pick() is r2
    r2.outstanding = 2
    seen = {rs.pick().url for _ in range(3)}
    assert len(seen) == 3


def test_replicas_with_an_open_breaker_or_down_are_ejected():
    rs = replicas()
    r0, r1, r2 = rs.replicas
    r0.breaker.on_failure()
    r2.state = "down"
    assert {rs.pick().url for _ in range(5)} == {r1.url}
    assert rs.available()
    assert rs.breaker_state() == "closed"


def test_when_every_replica_is_ejected_one_is_still_picked():
    clock = Clock()
    rs = replicas(2, clock)
    for r in rs.replicas:
        r.breaker.on_failure()
    assert not rs.available()
    assert rs.breaker_state() == "open"
    assert rs.pick() in rs.replicas
    clock.now = 2
    assert rs.cooldown_remaining() == pytest.approx(3.0)


def test_single_url_backend_uses_its_config_unchanged():
    cfg = BackendConfig(name="v", base_urls=("http://only.test",))
    rs = ReplicaSet(cfg, RouterPolicy())
    assert rs.single
    assert rs.pick().config is cfg


def test_strip_credentials():
    assert strip_credentials("http://user:sk-1@host:8000/v1") == "http://host:8000/v1"
    assert strip_credentials("see https://a@b.test/x and http://c.test") == (
        "see https://b.test/x and http://c.test"
    )
    assert strip_credentials("http://h/x?api_key=abc&y=1") == "http://h/x?api_key=****&y=1"
    assert strip_credentials("nothing here") == "nothing here"


@given(
    loads=st.lists(st.integers(0, 5), min_size=2, max_size=6),
    ejected=st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_pick_is_always_a_least_loaded_eligible_replica(loads, ejected):
    rs = replicas(len(loads))
    for r, load, out in zip(rs.replicas, loads, ejected, strict=False):
        r.outstanding = load
        if out:
            r.state = "down"
    eligible = [r for r in rs.replicas if r.eligible] or rs.replicas
    for _ in range(len(loads)):
        picked = rs.pick()
        assert picked in eligible
        assert picked.outstanding == min(r.outstanding for r in eligible)
