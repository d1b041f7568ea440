"""Outage benchmark (issue 11 "Must show"): the issue's scenario, and the cost of the
reconnecting pool on the predict path. Prints JSON.

    .venv/bin/python benchmarks/bench_outage.py [--home DIR] [--outage 15] [--rate 45]
    .venv/bin/python benchmarks/bench_outage.py --p99-only     # pool vs single connection

**Scenario** (:func:`bqx.infra.drill.outage_drill`): a throw-away PostgreSQL on a free port
holds the bar store and the state database; ``bqx serve`` (1 worker) serves three ridge
models; a client sends ``POST /v1/predict`` at ``--rate`` requests/s (every 5th with an old
timestamp, which reads the store); ``pg_ctl stop -m immediate`` after 3 s, restart
``--outage`` s later, 12 s more load, graceful stop. Figures: answers by status and error
code, 500 count, recovery seconds (from the database's return to the first request after
which every request is 200), /readyz flip times, decisions answered 200 vs in the log.

**p99 side by side**: ``PredictionService.predict`` at historical timestamps (each a store
read: the only predict path that touches PostgreSQL; live predictions are served from
memory) with (A) the reconnecting pool of :class:`~bqx.data.store.PostgresStore` and
(B) the previous design, one psycopg connection used directly -- alternating blocks of
50 requests in one process, same server, same timestamps.

Setup (cached in ``--home``, ~10 s): 6 simulated days of the 28 pairs, ridge models for
EURUSD, USDJPY, GBPUSD (production).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PAIRS = ("EURUSD", "USDJPY", "GBPUSD")


def setup(home: Path) -> None:
    if (home / "bench_ready").exists():
        return
    shutil.rmtree(home, ignore_errors=True)
    from bqx import features as F
    from bqx.config import Settings
    from bqx.data.simulator import generate
    from bqx.data.store import open_store
    from bqx.registry import Registry
    from bqx.training.train import train_frame

    s = Settings(home=home)
    s.train.approval_rule = "always"
    s.ensure_home()
    bars = generate(days=6, pairs=None, seed=5, signal_strength=0.2).bars
    st = open_store(settings=s)
    st.upsert(bars)
    st.close()
    reg = Registry(s)
    for pair in PAIRS:
        df = F.build(bars, pair, with_target=True)
        r = train_frame(pair, df, s, model="ridge", selection_rows=3000, n_jobs=1)
        reg.promote(pair, reg.log_and_register(r), actor="bench", reason="benchmark")
    (home / "bench_ready").write_text("ok\n")


def outage(home: Path, outage_s: float, rate: float) -> dict[str, Any]:
    from bqx.infra.drill import outage_drill

    work = home.parent / (home.name + "-outage")
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(home, work)
    return outage_drill(work, outage_s=outage_s, rate=rate, before_s=3, after_s=12)


class _SingleConnection:
    """The store's connection handling before issue 11: one connection, used directly,
    never reopened (kept here only as the "before" of the side-by-side)."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.con = psycopg.connect(url, autocommit=True, options="-c timezone=UTC")

    @contextlib.contextmanager
    def __call__(self) -> Iterator[Any]:
        yield self.con


def p99_side_by_side(home: Path, n_blocks: int = 8, block: int = 50) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    from bqx.config import Settings
    from bqx.data.store import PostgresStore, open_store
    from bqx.infra.pgtemp import TempPostgres
    from bqx.serving.service import PredictionService

    s = Settings(home=home)
    with TempPostgres() as pg:
        pg.wait_ready()
        src = open_store(settings=s)
        bars = src.read()
        src.close()
        pooled = PostgresStore(pg.url, s.interval)
        pooled.upsert(bars)
        single = PostgresStore(pg.url, s.interval)
        single._conn = _SingleConnection(pg.url)  # type: ignore[method-assign]
        svcs = {
            "pool": PredictionService(s, live=False, store=pooled, log_decisions=False),
            "single": PredictionService(s, live=False, store=single, log_decisions=False),
        }
        newest = max(pooled.latest().values())
        t0 = newest - pd.Timedelta(days=3)
        lat: dict[str, list[float]] = {k: [] for k in svcs}
        for svc in svcs.values():  # warm: models loaded, code paths compiled
            for p in PAIRS:
                svc.predict(p, t0, log=False)
        i = 0
        for b in range(n_blocks):
            order = ("pool", "single") if b % 2 == 0 else ("single", "pool")
            for name in order:
                for _ in range(block):
                    i += 1
                    ts = t0 + pd.Timedelta(minutes=i)  # a new bar each time: a store read
                    t = time.perf_counter()
                    svcs[name].predict(PAIRS[i % 3], ts, log=False)
                    lat[name].append((time.perf_counter() - t) * 1000)
        pooled.close()
    out: dict[str, Any] = {}
    for k, v in lat.items():
        a = np.asarray(v)
        out[k] = {
            "n": len(a),
            "p50_ms": round(float(np.percentile(a, 50)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2),
            "mean_ms": round(statistics.fmean(v), 2),
        }
    out["p99_ratio_pool_over_single"] = round(out["pool"]["p99_ms"] / out["single"]["p99_ms"], 3)
    out["p50_ratio_pool_over_single"] = round(out["pool"]["p50_ms"] / out["single"]["p50_ms"], 3)
    return out


def auth_side_by_side(home: Path, n: int = 20_000) -> dict[str, Any]:
    """The request path's key check, before (``ApiKeys.verify`` inline) and now
    (:func:`bqx.serving.resilience.verify_key`: a cache check, then the same verify inline
    for a cached key), alternating blocks; nanoseconds per call."""
    import asyncio

    from bqx.config import Settings
    from bqx.serving.auth import ApiKeys
    from bqx.serving.resilience import verify_key
    from bqx.state import open_state

    keys = ApiKeys(open_state(Settings(home=home)))
    key = keys.create_key("reader")[1]
    keys.verify(key)
    res: dict[str, list[float]] = {"before": [], "now": []}

    async def now_block(m: int) -> float:
        t = time.perf_counter_ns()
        for _ in range(m):
            await verify_key(keys, key, 2.0)
        return (time.perf_counter_ns() - t) / m

    async def before_block(m: int) -> float:  # same loop shape: an async caller
        t = time.perf_counter_ns()
        for _ in range(m):
            keys.verify(key)
        return (time.perf_counter_ns() - t) / m

    async def go() -> None:
        for b in range(10):
            for name in ("before", "now") if b % 2 == 0 else ("now", "before"):
                f = before_block if name == "before" else now_block
                res[name].append(await f(n // 10))

    asyncio.run(go())
    out = {k: round(statistics.median(v), 1) for k, v in res.items()}
    return {"ns_per_call_median_of_blocks": out, "extra_ns": round(out["now"] - out["before"], 1)}


def machine() -> dict[str, Any]:
    import os

    return {
        "date": datetime.now(UTC).date().isoformat(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "note": "shared, loaded 2-core machine: compare figures of one run only",
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", default="/tmp/bqx-bench-outage")
    ap.add_argument("--outage", type=float, default=15.0, help="seconds the database is down")
    ap.add_argument("--rate", type=float, default=45.0, help="client requests per second")
    ap.add_argument("--p99-only", action="store_true")
    ap.add_argument("--skip-p99", action="store_true")
    ap.add_argument("--out", help="also write the JSON here")
    a = ap.parse_args()
    home = Path(a.home)
    setup(home)
    result: dict[str, Any] = {"machine": machine()}
    if not a.p99_only:
        result["outage"] = outage(home, a.outage, a.rate)
        print(json.dumps(result["outage"]), file=sys.stderr)
    if not a.skip_p99:
        result["predict_store_path_p99"] = p99_side_by_side(home)
        result["auth_check"] = auth_side_by_side(home)
    text = json.dumps(result, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
