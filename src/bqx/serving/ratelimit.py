"""Per-key token-bucket rate limiting with ``Retry-After`` support.

Each key has a bucket of ``burst`` tokens (default ``max(1, rate)``, i.e. one second's
worth) that refills continuously at ``rate`` tokens/second. A request takes ``cost``
tokens (1 by default) or is refused with the time until enough tokens exist, which the
API returns as ``429`` + ``Retry-After`` (:func:`retry_after_header`).

Why a token bucket: it allows short bursts (a client sending 20 requests at once) while
holding the long-run rate, and needs O(1) state per key (tokens, last refill time), no
timestamps log, no background task. Refill is computed lazily from the clock on each
check.

Scope: :class:`TokenBucketLimiter` is in-process, so it is per worker process. With
``bqx serve --workers N`` each worker has its own buckets and a key can get up to
N × rate overall (requests are spread by the kernel's accept queue, so typically close
to that). For a strict limit across workers (or across several API hosts) set
``serve.rate_limit_url = "redis://host:6379/0"``: :class:`RedisTokenBucketLimiter` keeps
each key's bucket in Redis and updates it atomically with one Lua script per request
(one round trip; the refill uses the Redis server's clock, so workers' clocks need not
agree). If Redis cannot be reached the limiter falls back to in-process buckets (per
worker, as above) rather than refusing every request or letting everything through,
counts the failure, and tries Redis again after a short back-off.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from bqx.config import Settings

log = logging.getLogger(__name__)

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

    async def acheck(
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

    async def acheck(
        self, key: str, rate: float | None = None, *, cost: float = 1.0, burst: float | None = None
    ) -> RateDecision:
        """:meth:`check` for async callers (in-process: nothing to await)."""
        return self.check(key, rate, cost=cost, burst=burst)

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


# -----------------------------------------------------------------------------------------
# shared buckets in Redis
# -----------------------------------------------------------------------------------------
#: KEYS[1] = bucket key; ARGV = rate, capacity, cost. Returns {allowed (0/1), wait seconds
#: as a string (Lua numbers returned to Redis are truncated to integers), tokens left}.
#: The bucket (a hash: tokens, ts) expires once it would be full again, so idle keys cost
#: no memory. TIME is the server's clock: every worker refills against the same clock.
_LUA_TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1])
local ts = tonumber(b[2])
if tokens == nil or ts == nil then
  tokens = cap
  ts = now
end
if now > ts then
  tokens = math.min(cap, tokens + (now - ts) * rate)
  ts = now
end
tokens = math.min(tokens, cap)
if cost > cap then
  return {0, 'inf', string.format('%.9f', tokens)}
end
local allowed = 0
local wait = 0
if tokens + 1e-9 >= cost then
  tokens = math.max(0, tokens - cost)
  allowed = 1
else
  wait = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.9f', tokens), 'ts', string.format('%.6f', ts))
redis.call('PEXPIRE', KEYS[1], math.ceil((cap - tokens) / rate * 1000) + 1000)
return {allowed, string.format('%.9f', wait), string.format('%.9f', tokens)}
"""


class RedisTokenBucketLimiter:
    """Token buckets shared by every process that talks to one Redis (same semantics as
    :class:`TokenBucketLimiter`: ``burst`` defaults to ``max(1, rate)``, ``cost`` per
    request, ``retry_after`` = seconds until enough tokens exist, ``inf`` if never).

    Two entry points with one script: :meth:`check` (blocking, for scripts and threads) and
    :meth:`acheck` (asyncio, what the API awaits: the event loop serves other requests
    during the round trip instead of stalling on it). Connections are opened lazily; the
    asyncio client is bound to the event loop that first uses it. ``url``:
    ``redis://[:password@]host:port/db``, ``rediss://`` or ``unix://``.

    On a Redis error (down, timeout, auth) a check is decided by the in-process
    ``fallback`` limiter, ``on_error`` is called (the API counts it in
    ``bqx_rate_limit_backend_errors_total``) and Redis is not asked again for ``retry_s``
    seconds, so an outage costs one timeout per back-off period, not one per request.
    """

    def __init__(
        self,
        url: str,
        default_rate: float = 100.0,
        *,
        burst: float | None = None,
        prefix: str = "bqx:ratelimit:",
        timeout_s: float = 0.25,
        fallback: TokenBucketLimiter | None = None,
        on_error: Callable[[Exception], None] | None = None,
        retry_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not default_rate > 0:
            raise ValueError("default_rate must be > 0")
        self.url = url
        self.default_rate = float(default_rate)
        self.default_burst = burst
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.fallback = fallback or TokenBucketLimiter(default_rate, burst=burst)
        self.on_error = on_error
        self.retry_s = retry_s
        self._clock = clock
        self._down_until = -math.inf
        self._client: Any = None
        self._script: Any = None
        self._aclient: Any = None
        self._ascript: Any = None
        self._aloop: Any = None
        self.errors = 0

    @property
    def client(self) -> Any:
        """The blocking ``redis.Redis`` client (created on first use)."""
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(
                self.url, socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s
            )
        return self._client

    def _sync_script(self) -> Any:
        if self._script is None:
            self._script = self.client.register_script(_LUA_TOKEN_BUCKET)
        return self._script

    def _async_script(self) -> Any:
        import asyncio

        loop = asyncio.get_running_loop()
        if self._aclient is None or self._aloop is not loop:
            import redis.asyncio

            self._aclient = redis.asyncio.Redis.from_url(
                self.url, socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s
            )
            self._ascript = self._aclient.register_script(_LUA_TOKEN_BUCKET)
            self._aloop = loop
        return self._ascript

    @property
    def shared(self) -> bool:
        """True while decisions come from Redis (False during a fallback period)."""
        return self._clock() >= self._down_until

    def _args(self, key: str, rate: float | None, burst: float | None) -> tuple[str, float, float]:
        r = float(rate) if rate is not None else self.default_rate
        if not r > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        cap = TokenBucketLimiter.capacity_for(r, burst if burst is not None else self.default_burst)
        return self.prefix + key, r, cap

    @staticmethod
    def _decision(reply: Any) -> RateDecision:
        allowed, wait, _ = reply
        ok = bool(int(allowed))
        return RateDecision(ok, 0.0 if ok else float(wait))

    def check(
        self, key: str, rate: float | None = None, *, cost: float = 1.0, burst: float | None = None
    ) -> RateDecision:
        rkey, r, cap = self._args(key, rate, burst)
        if self.shared:
            try:
                return self._decision(self._sync_script()(keys=[rkey], args=[r, cap, cost]))
            except Exception as e:  # redis.RedisError, OSError: any failure of the backend
                self._backend_failed(e)
        return self.fallback.check(key, r, cost=cost, burst=cap)

    async def acheck(
        self, key: str, rate: float | None = None, *, cost: float = 1.0, burst: float | None = None
    ) -> RateDecision:
        rkey, r, cap = self._args(key, rate, burst)
        if self.shared:
            try:
                script = self._async_script()
                return self._decision(await script(keys=[rkey], args=[r, cap, cost]))
            except Exception as e:
                self._backend_failed(e)
        return self.fallback.check(key, r, cost=cost, burst=cap)

    def tokens(self, key: str) -> float | None:
        """Tokens in ``key``'s bucket as stored (before refill); None if it has none."""
        v = self.client.hget(self.prefix + key, "tokens")
        return None if v is None else float(v)

    def reset(self, key: str | None = None) -> None:
        """Forget one bucket (or all with this prefix)."""
        if key is not None:
            self.client.delete(self.prefix + key)
        else:
            for k in self.client.scan_iter(match=self.prefix + "*", count=1000):
                self.client.delete(k)
        self.fallback.reset(key)

    def ping(self) -> bool:
        """Whether Redis answers now (for readiness reports)."""
        try:
            return bool(self.client.ping())
        except Exception:
            return False

    def _backend_failed(self, e: Exception) -> None:
        self.errors += 1
        self._down_until = self._clock() + self.retry_s
        log.warning(
            "rate-limit backend unavailable (%s: %s); using per-process limits for %.0f s",
            type(e).__name__,
            e,
            self.retry_s,
        )
        if self.on_error is not None:
            self.on_error(e)


def make_limiter(
    settings: Settings, on_error: Callable[[Exception], None] | None = None
) -> TokenBucketLimiter | RedisTokenBucketLimiter:
    """The limiter the settings ask for: shared (Redis) when ``serve.rate_limit_url`` is
    set, in-process otherwise."""
    rate = settings.serve.rate_limit
    url = settings.serve.rate_limit_url
    if not url:
        return TokenBucketLimiter(rate)
    return RedisTokenBucketLimiter(url, rate, on_error=on_error)
