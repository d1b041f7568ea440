"""Per-key token-bucket rate limiting with ``Retry-After`` support.

Each key has a bucket of ``burst`` tokens (default ``max(1, rate)``, i.e. one second's
worth) that refills continuously at ``rate`` tokens/second. A request takes ``cost``
tokens (1 by default) or is refused with the time until enough tokens exist, which the
API returns as ``429`` + ``Retry-After`` (:func:`retry_after_header`).

Why a token bucket: it allows short bursts (a client sending 20 requests at once) while
holding the long-run rate, and needs O(1) state per key (tokens, last refill time), no
timestamps log, no background task. Refill is computed lazily from the clock on each
check.

Scope: the limiter is in-process, so it is per worker process. With ``bqx serve
--workers N`` each worker has its own buckets and a key can get up to N × rate overall
(requests are spread by the kernel's accept queue, so typically close to that). That is
acceptable for abuse protection; a strict global limit needs a shared backend (Redis
with a Lua script, or dividing each key's rate by N). A Redis implementation is not
included: the ``redis`` package is not installed. :class:`RateLimiter` is the interface
a shared backend would implement.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import NamedTuple, Protocol

_EPS = 1e-9


class RateDecision(NamedTuple):
    """``allowed`` and, when refused, seconds until the request would be allowed
    (``math.inf`` if ``cost`` exceeds the bucket's capacity: the request can never pass
    and the API should answer 4xx, e.g. "batch too large for your rate limit")."""

    allowed: bool
    retry_after: float


class RateLimiter(Protocol):
    """What the API needs from a limiter (in-process or shared)."""

    def check(
        self, key: str, rate: float | None = None, *, cost: float = 1.0, burst: float | None = None
    ) -> RateDecision: ...


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` value: whole seconds (the header has no fractions), rounded up and
    at least 1 so a client that honours it is not refused again straight away."""
    if not math.isfinite(seconds):
        return "3600"
    return str(max(1, math.ceil(seconds)))


class TokenBucketLimiter:
    """In-process token buckets keyed by a string (normally the API key id).

    Thread-safe (one lock; each check is O(1), a few arithmetic operations). ``rate`` and
    ``burst`` may be given per call (a key's own limit, e.g. ``principal.rate``); a change
    applies to the existing bucket without resetting its tokens. ``clock`` is injectable
    for tests (monotonic seconds). Buckets idle long enough to be full again are pruned
    when more than ``max_buckets`` exist, so memory stays bounded.
    """

    def __init__(
        self,
        default_rate: float = 100.0,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = 100_000,
    ) -> None:
        if not default_rate > 0:
            raise ValueError("default_rate must be > 0")
        self.default_rate = float(default_rate)
        self.default_burst = burst
        self.max_buckets = max_buckets
        self._clock = clock
        self._lock = threading.Lock()
        # key -> [tokens, last_refill_time, rate, capacity]
        self._buckets: dict[str, list[float]] = {}

    @staticmethod
    def capacity_for(rate: float, burst: float | None = None) -> float:
        return float(burst) if burst is not None else max(1.0, rate)

    def check(
        self, key: str, rate: float | None = None, *, cost: float = 1.0, burst: float | None = None
    ) -> RateDecision:
        """Take ``cost`` tokens from ``key``'s bucket if it has them."""
        r = float(rate) if rate is not None else self.default_rate
        if not r > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        cap = self.capacity_for(r, burst if burst is not None else self.default_burst)
        now = self._clock()
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                if len(self._buckets) >= self.max_buckets:
                    self._prune(now)
                b = [cap, now, r, cap]
                self._buckets[key] = b
            else:
                b[2], b[3] = r, cap
                elapsed = now - b[1]
                if elapsed > 0:
                    b[0] = min(cap, b[0] + elapsed * r)
                    b[1] = now
                b[0] = min(b[0], cap)
            if cost > cap:
                return RateDecision(False, math.inf)
            if b[0] + _EPS >= cost:  # tolerate float error from the refill arithmetic
                b[0] = max(0.0, b[0] - cost)
                return RateDecision(True, 0.0)
            return RateDecision(False, (cost - b[0]) / r)

    def tokens(self, key: str) -> float | None:
        """Tokens currently available to ``key`` (None if it has no bucket yet)."""
        now = self._clock()
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                return None
            return min(b[3], b[0] + max(0.0, now - b[1]) * b[2])

    def reset(self, key: str | None = None) -> None:
        """Forget one bucket (or all): the key starts with a full bucket again."""
        with self._lock:
            if key is None:
                self._buckets.clear()
            else:
                self._buckets.pop(key, None)

    def __len__(self) -> int:
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        # a bucket that would be full again carries no information: drop it
        full = [k for k, b in self._buckets.items() if b[0] + (now - b[1]) * b[2] >= b[3]]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= self.max_buckets:  # all busy: drop the stalest
            stalest = sorted(self._buckets, key=lambda k: self._buckets[k][1])
            for k in stalest[: max(1, len(stalest) // 10)]:
                del self._buckets[k]
