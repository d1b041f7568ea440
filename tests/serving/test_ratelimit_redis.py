"""Shared (Redis) token buckets: one limit per key across processes, against a real Redis.

What must hold: the same semantics as the in-process limiter; several clients (API workers)
draw from one bucket atomically; an unreachable Redis degrades to per-process limits with
one failed attempt per back-off period (never 500s, never unlimited); and a real
``bqx serve --workers 2`` enforces one limit for a key, not one per worker.
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing as mp
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from bqx.config import Settings
from bqx.serving.app import create_app
from bqx.serving.ratelimit import RedisTokenBucketLimiter, TokenBucketLimiter, make_limiter

from .conftest import bqx_server, clean_env, create_key, hdr, make_settings, run_bqx

pytestmark = pytest.mark.integration

DEAD_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def limiter(redis_url: str):
    lim = RedisTokenBucketLimiter(redis_url, 10, prefix=f"bqx-test:{uuid.uuid4().hex}:")
    yield lim
    lim.reset()


def test_same_semantics_as_in_process(limiter: RedisTokenBucketLimiter) -> None:
    assert all(limiter.check("k").allowed for _ in range(10))  # burst = rate = 10
    d = limiter.check("k")
    assert not d.allowed and 0 < d.retry_after <= 0.1 + 1e-6
    assert limiter.check("k", cost=11) == (False, math.inf)  # never possible
    # a key's own rate, explicit burst and cost
    assert [limiter.check("slow", rate=0.01, burst=3).allowed for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]
    assert limiter.check("b", rate=1, burst=5, cost=5).allowed
    assert not limiter.check("b", rate=1, burst=5).allowed
    assert limiter.shared and limiter.errors == 0


def test_refill_uses_elapsed_time(limiter: RedisTokenBucketLimiter) -> None:
    t0 = time.monotonic()
    assert sum(limiter.check("r", rate=20).allowed for _ in range(25)) == 20
    time.sleep(0.2)  # ~4 tokens back
    got = sum(limiter.check("r", rate=20).allowed for _ in range(10))
    elapsed = time.monotonic() - t0  # bounds the refill, however loaded the machine is
    assert 3 <= got <= min(10, int(elapsed * 20) + 1), (got, elapsed)


def test_idle_buckets_expire(limiter: RedisTokenBucketLimiter) -> None:
    limiter.check("e", rate=100, burst=100, cost=50)
    ttl = limiter.client.pttl(limiter.prefix + "e")
    # refilled after (100 - 50) / 100 s = 0.5 s; the key lives at most that plus 1 s
    assert 0 < ttl <= 1500
    assert limiter.tokens("e") == pytest.approx(50, abs=0.01)


def test_two_clients_share_one_bucket(redis_url: str) -> None:
    prefix = f"bqx-test:{uuid.uuid4().hex}:"
    a = RedisTokenBucketLimiter(redis_url, 1, prefix=prefix)
    b = RedisTokenBucketLimiter(redis_url, 1, prefix=prefix)
    try:
        got = [(a if i % 2 else b).check("k", rate=0.001, burst=10).allowed for i in range(30)]
        assert sum(got) == 10 and got[:10] == [True] * 10
        # the in-process limiter would have given each "worker" its own 10
        la, lb = TokenBucketLimiter(1), TokenBucketLimiter(1)
        local = [(la if i % 2 else lb).check("k", rate=0.001, burst=10).allowed for i in range(30)]
        assert sum(local) == 20
    finally:
        a.reset()


def test_async_path_shares_the_bucket_and_overlaps(limiter: RedisTokenBucketLimiter) -> None:
    """What the API awaits: 50 concurrent ``acheck`` calls on one loop, then blocking ones,
    all draw from the same bucket of 20."""

    async def burst() -> list[bool]:
        decs = await asyncio.gather(*(limiter.acheck("a", rate=0.001, burst=20) for _ in range(50)))
        return [d.allowed for d in decs]

    got = asyncio.run(burst())
    assert sum(got) == 20
    assert not limiter.check("a", rate=0.001, burst=20).allowed
    assert asyncio.run(limiter.acheck("fresh")).allowed  # a new loop gets a new client
    assert limiter.errors == 0


def _draw(args: tuple[str, str, int]) -> int:
    url, prefix, n = args
    lim = RedisTokenBucketLimiter(url, 1, prefix=prefix)
    return sum(lim.check("k", rate=0.001, burst=100).allowed for _ in range(n))


def test_concurrent_processes_never_overdraw(redis_url: str) -> None:
    """4 processes × 80 checks race for a bucket of 100: exactly 100 pass (the Lua script
    is atomic; a read-modify-write from the client would overdraw under contention)."""
    prefix = f"bqx-test:{uuid.uuid4().hex}:"
    with mp.get_context("spawn").Pool(4) as pool:
        counts = pool.map(_draw, [(redis_url, prefix, 80)] * 4)
    assert sum(counts) == 100, counts
    RedisTokenBucketLimiter(redis_url, 1, prefix=prefix).reset()


def test_unreachable_redis_falls_back_per_process_and_retries() -> None:
    now = [0.0]
    errors: list[Exception] = []
    lim = RedisTokenBucketLimiter(
        DEAD_URL, 5, on_error=errors.append, retry_s=5.0, clock=lambda: now[0]
    )
    got = [lim.check("k").allowed for _ in range(8)]
    assert got == [True] * 5 + [False] * 3  # the fallback bucket, rate 5
    assert lim.errors == 1 and len(errors) == 1 and not lim.shared  # one attempt, then back off
    now[0] = 5.0  # back-off over: Redis is tried again (and fails again)
    lim.check("k")
    assert lim.errors == 2
    assert not lim.ping()


def test_settings_choose_the_limiter(redis_url: str, tmp_path: Path) -> None:
    s = Settings(home=tmp_path)
    assert isinstance(make_limiter(s), TokenBucketLimiter)
    s.serve.rate_limit_url = redis_url
    lim = make_limiter(s)
    assert isinstance(lim, RedisTokenBucketLimiter) and lim.ping()
    with pytest.raises(ValidationError, match="rate_limit_url"):
        Settings(home=tmp_path, serve={"rate_limit_url": "http://127.0.0.1:6379"})


def test_api_uses_the_shared_limit_and_reports_it(settings, redis_url: str) -> None:
    settings.serve.rate_limit_url = redis_url
    key = create_key(settings, "reader", rate=5)
    with TestClient(create_app(settings)) as c:
        codes = [
            c.post("/v1/predict", json={"pair": "EURUSD"}, headers=hdr(key)).status_code
            for _ in range(12)
        ]
        ready = c.get("/readyz").json()
        c.app.state.ctx.limiter.reset()  # type: ignore[attr-defined]
    assert codes[:5] == [200] * 5 and codes.count(429) >= 6
    assert ready["checks"]["rate_limiter"] == "shared"


def test_api_keeps_serving_when_redis_is_down(home) -> None:
    s = make_settings(home, rate_limit_url=DEAD_URL)
    key = create_key(s, "reader", rate=5)
    with TestClient(create_app(s)) as c:
        codes = [
            c.post("/v1/predict", json={"pair": "EURUSD"}, headers=hdr(key)).status_code
            for _ in range(8)
        ]
        ready = c.get("/readyz")
        metrics = c.get("/metrics").text
    assert codes[:5] == [200] * 5 and 429 in codes and 500 not in codes
    assert ready.status_code == 200  # limits degrade; readiness does not
    assert ready.json()["checks"]["rate_limiter"] == "per-worker (shared backend unreachable)"
    assert "bqx_rate_limit_backend_errors_total 1.0" in metrics


@pytest.mark.slow
def test_two_workers_enforce_one_limit(home, redis_url: str) -> None:
    """A real ``bqx serve --workers 2``: 60 requests at once on fresh connections (spread
    over both workers by the kernel) pass at most burst + rate × elapsed times."""
    env = clean_env(
        BQX_HOME=str(home),
        BQX_SERVE__RATE_LIMIT_URL=redis_url,
        BQX_SERVE__WALLCLOCK_STALE_MIN="0",
    )
    key = json.loads(run_bqx(env, "keys", "create", "--role", "reader", "--rate", "5", "--json"))[
        "key"
    ]
    with bqx_server(env, "--workers", "2") as base:

        def one(_: int) -> int:
            r = httpx.get(f"{base}/v1/models", headers=hdr(key), timeout=30)
            return r.status_code

        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as ex:
            codes = list(ex.map(one, range(60)))
        elapsed = time.monotonic() - t0
        ready = httpx.get(f"{base}/readyz").json()
    ok = codes.count(200)
    assert set(codes) <= {200, 429}
    assert 5 <= ok <= 5 + math.ceil(5 * elapsed) + 1, (ok, elapsed)
    assert ready["checks"]["rate_limiter"] == "shared"
