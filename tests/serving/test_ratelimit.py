"""Token-bucket rate limiter: burst, refusal with a sensible Retry-After, refill."""

from __future__ import annotations

import math
import threading

import pytest

from bqx.serving.ratelimit import RateDecision, TokenBucketLimiter, retry_after_header


class Clock:
    def __init__(self) -> None:
        self.t = 50.0

    def __call__(self) -> float:
        return self.t


def test_burst_then_refused_then_refill() -> None:
    clock = Clock()
    lim = TokenBucketLimiter(10, clock=clock)
    assert all(lim.check("k").allowed for _ in range(10))  # burst = rate = 10
    d = lim.check("k")
    assert d == RateDecision(False, pytest.approx(0.1))  # type: ignore[arg-type]
    assert retry_after_header(d.retry_after) == "1"
    clock.t += 0.05
    allowed, retry = lim.check("k")
    assert not allowed and retry == pytest.approx(0.05)
    clock.t += 0.05
    assert lim.check("k").allowed  # one token refilled
    assert not lim.check("k").allowed
    clock.t += 100  # long idle: refills to the burst capacity, not beyond
    assert sum(lim.check("k").allowed for _ in range(20)) == 10


def test_slow_rate_has_burst_one_and_long_retry() -> None:
    clock = Clock()
    lim = TokenBucketLimiter(100, clock=clock)
    assert lim.check("slow", rate=0.5).allowed
    d = lim.check("slow", rate=0.5)
    assert not d.allowed and d.retry_after == pytest.approx(2.0)
    assert retry_after_header(d.retry_after) == "2"
    clock.t += 2.0
    assert lim.check("slow", rate=0.5).allowed


def test_keys_are_independent_and_rates_per_call() -> None:
    clock = Clock()
    lim = TokenBucketLimiter(2, clock=clock)
    assert [lim.check("a").allowed for _ in range(3)] == [True, True, False]
    assert [lim.check("b", rate=5).allowed for _ in range(6)] == [True] * 5 + [False]
    assert lim.tokens("a") == pytest.approx(0.0)
    assert lim.tokens("zzz") is None
    lim.reset("a")
    assert lim.check("a").allowed


def test_explicit_burst_and_cost() -> None:
    clock = Clock()
    lim = TokenBucketLimiter(10, burst=3, clock=clock)
    assert lim.check("k", cost=3).allowed
    d = lim.check("k", cost=2)
    assert not d.allowed and d.retry_after == pytest.approx(0.2)
    never = lim.check("k", cost=4)  # more than the bucket holds: can never pass
    assert not never.allowed and math.isinf(never.retry_after)
    assert retry_after_header(never.retry_after) == "3600"


def test_rate_change_keeps_tokens_bounded() -> None:
    clock = Clock()
    lim = TokenBucketLimiter(10, clock=clock)
    for _ in range(5):
        lim.check("k")
    lim.check("k", rate=2)  # capacity shrinks to 2: tokens are clamped
    assert lim.tokens("k") <= 2  # type: ignore[operator]


def test_thread_safe_exact_count() -> None:
    clock = Clock()  # frozen: no refill during the test
    lim = TokenBucketLimiter(500, clock=clock)
    allowed = []
    lock = threading.Lock()

    def hammer() -> None:
        n = sum(lim.check("k").allowed for _ in range(200))
        with lock:
            allowed.append(n)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 500


def test_memory_is_bounded() -> None:
    clock = Clock()
    lim = TokenBucketLimiter(10, clock=clock, max_buckets=100)
    for i in range(1000):
        lim.check(f"k{i}")
        clock.t += 0.001
    assert len(lim) <= 100


def test_retry_after_header_rounding() -> None:
    assert retry_after_header(0.0) == "1"
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(1.0) == "1"
    assert retry_after_header(1.2) == "2"


def test_bad_rates() -> None:
    with pytest.raises(ValueError):
        TokenBucketLimiter(0)
    with pytest.raises(ValueError):
        TokenBucketLimiter(1).check("k", rate=-1)
