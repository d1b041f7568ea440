"""Micro-benchmark of the request-path building blocks: API key verification, the rate
limiter and the decision log on SQLite WAL. Prints JSON (latencies in microseconds).

    .venv/bin/python benchmarks/bench_auth.py [--n 2000] [--home DIR]

* ``verify_cold``: a fresh verifier each time (empty cache): one indexed SQLite read + HMAC.
* ``verify_cached``: the steady state (row cached for the TTL): dict lookup + HMAC +
  constant-time compare.
* ``verify_wrong_secret``: right key id, wrong secret (cached row).
* ``ratelimit_check``: one token-bucket check (in-process).
* ``ratelimit_check_redis``: one check of the shared bucket in Redis (``--redis-url``; one
  EVALSHA round trip on loopback); skipped when Redis does not answer.
* ``decision_insert_sync``: ``StateDB.log_decision`` (one row, one transaction, WAL,
  synchronous=NORMAL), no contention.
* ``decision_insert_sync_contended``: the same while a second process inserts in a tight
  loop into the same file (two API workers logging synchronously): the lock waits.
* ``decision_submit_async``: ``DecisionLogWriter.submit`` (what the request path pays),
  plus the background writer's sustained rows/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bqx.serving.auth import ApiKeys
from bqx.serving.ratelimit import RedisTokenBucketLimiter, TokenBucketLimiter
from bqx.state import DecisionLogWriter, StateDB


def _stats(samples_s: list[float]) -> dict[str, float]:
    us = sorted(s * 1e6 for s in samples_s)
    return {
        "n": len(us),
        "median_us": round(statistics.median(us), 2),
        "p99_us": round(us[min(len(us) - 1, int(0.99 * len(us)))], 2),
        "max_us": round(us[-1], 2),
    }


def _time(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _decision(i: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "pair": "EURUSD",
        "request_time": now,
        "asof_ts": now,
        "horizon": 60,
        "prediction": 0.0001 * i,
        "interval_lo": -0.001,
        "interval_hi": 0.001,
        "confidence_level": 0.9,
        "signal": "HOLD",
        "signal_strength": 0.1,
        "signal_reason": None,
        "model_name": "bqx-EURUSD",
        "model_version": "3",
        "latency_ms": 2.5,
        "feature_hash": "0123456789abcdef",
        "key_id": "abcdef012345",
    }


_HOG = """
import os, sys
from bqx.state import StateDB
s = StateDB(sys.argv[1])
while not os.path.exists(sys.argv[2]):
    s.log_decision(pair="GBPUSD", prediction=0.0)
"""


def run(n: int, home: Path, redis_url: str = "") -> dict[str, Any]:
    state = StateDB(f"sqlite:///{home / 'state.db'}")
    keys = ApiKeys(state)
    key_id, key = keys.create_key("trader")
    wrong = f"bqx_{key_id}_{'A' * 43}"
    assert keys.verify(key) is not None and keys.verify(wrong) is None

    res: dict[str, Any] = {}
    res["verify_cold"] = _stats(_time(lambda: ApiKeys(state).verify(key), n))
    keys.verify(key)
    res["verify_cached"] = _stats(_time(lambda: keys.verify(key), n * 10))
    res["verify_wrong_secret"] = _stats(_time(lambda: keys.verify(wrong), n * 10))

    lim = TokenBucketLimiter(1e9)
    res["ratelimit_check"] = _stats(_time(lambda: lim.check(key_id), n * 10))
    if redis_url:
        rl = RedisTokenBucketLimiter(redis_url, 1e9, prefix="bqx-bench:")
        if rl.ping():
            rl.check(key_id)  # load the script
            res["ratelimit_check_redis"] = _stats(_time(lambda: rl.check(key_id), n * 5))
            assert rl.errors == 0
            rl.reset()
        else:
            res["ratelimit_check_redis"] = f"skipped: no Redis at {redis_url}"

    i = iter(range(10**9))
    for _ in range(50):  # warm the pool
        state.log_decision(**_decision(next(i)))
    res["decision_insert_sync"] = _stats(_time(lambda: state.log_decision(**_decision(next(i))), n))

    writer = DecisionLogWriter(state)
    submit = _time(lambda: writer.submit(_decision(next(i))), n * 5)
    t0 = time.perf_counter()
    writer.flush(60)
    res["decision_submit_async"] = _stats(submit)
    res["decision_submit_async"]["drain_after_submit_s"] = round(time.perf_counter() - t0, 3)
    writer.close()
    total = n * 5
    rows = [_decision(j) for j in range(total)]
    t_bulk = time.perf_counter()
    state.log_decisions(rows)
    res["decision_bulk_insert_rows_per_s"] = round(total / (time.perf_counter() - t_bulk))

    # the same single-row inserts while another process writes to the file as fast as it can
    hog = subprocess.Popen([sys.executable, "-c", _HOG, state.url, str(home / "hog.stop")])
    time.sleep(1.0)  # let it start hammering
    res["decision_insert_sync_contended"] = _stats(
        _time(lambda: state.log_decision(**_decision(next(i))), n)
    )
    (home / "hog.stop").touch()
    hog.wait(30)
    res["rows_written"] = state.count_decisions()
    with state.engine.connect() as c:
        res["sqlite_journal_mode"] = c.exec_driver_sql("PRAGMA journal_mode").scalar()
    state.close()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--home", type=Path, default=None)
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/15", help="'' to skip")
    a = ap.parse_args()
    if a.home is not None:
        a.home.mkdir(parents=True, exist_ok=True)
        print(json.dumps(run(a.n, a.home, a.redis_url), indent=2))
        return
    with tempfile.TemporaryDirectory() as d:
        print(json.dumps(run(a.n, Path(d), a.redis_url), indent=2))


if __name__ == "__main__":
    main()
