"""Simulator speed and as-of read latency of the bar store (issue 2 "Must show").

* simulator: bars/second generating 28 pairs x 30 days of M1 bars;
* as-of read: the last 1,500 bars of all 28 pairs at a random t (the online feature path),
  median and p99 over many random t, on DuckDB (with a pinned connection, and opening one per
  call as the CLI does) and PostgreSQL, side by side in one run.

Usage: ``.venv/bin/python benchmarks/bench_store.py [--days 30] [--reads 300]``; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from bqx.data.simulator import generate
from bqx.data.store import DuckDBStore, PostgresStore

PG_URL = os.environ.get("BQX_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def machine() -> dict[str, object]:
    import duckdb
    import pandas as pd

    return {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pandas": pd.__version__,
        "loadavg": os.getloadavg(),
    }


def stats(xs: list[float]) -> dict[str, float]:
    a = np.array(xs) * 1e3
    return {
        "n": len(a),
        "median_ms": round(float(np.median(a)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "max_ms": round(float(a.max()), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=float, default=30)
    ap.add_argument("--reads", type=int, default=300)
    ap.add_argument("--n", type=int, default=1500)
    args = ap.parse_args()
    out: dict[str, object] = {"benchmark": "store", "machine": machine()}

    t0 = time.perf_counter()
    res = generate(days=args.days, seed=1)
    dt = time.perf_counter() - t0
    bars = res.bars
    out["simulator"] = {
        "pairs": 28,
        "days": args.days,
        "bars": len(bars),
        "seconds": round(dt, 2),
        "bars_per_s": round(len(bars) / dt),
    }

    rng = np.random.default_rng(0)
    ts_all = np.sort(bars["ts"].unique())
    picks = [ts_all[i] for i in rng.integers(args.n * 2, len(ts_all), args.reads)]
    with tempfile.TemporaryDirectory() as tmp:
        duck = DuckDBStore(Path(tmp) / "bars.duckdb", timedelta(minutes=1))
        t0 = time.perf_counter()
        duck.upsert(bars)
        out["duckdb_load_s"] = round(time.perf_counter() - t0, 2)
        # per-call connection (default: lets other processes write between calls)
        lat = []
        for t in picks[: max(30, args.reads // 5)]:
            t1 = time.perf_counter()
            df = duck.read_asof(t, args.n)
            lat.append(time.perf_counter() - t1)
        assert len(df) == 28 * args.n
        out["asof_duckdb_connection_per_call"] = stats(lat)
        with duck.hold(read_only=True):
            duck.read_asof(picks[0], args.n)  # warm
            lat = []
            for t in picks:
                t1 = time.perf_counter()
                duck.read_asof(t, args.n)
                lat.append(time.perf_counter() - t1)
        out["asof_duckdb_pinned"] = stats(lat)
        duck.close()
    try:
        pg = PostgresStore(PG_URL, timedelta(minutes=1), table=f"bench_{uuid.uuid4().hex[:8]}")
    except Exception as e:  # pragma: no cover - depends on the machine
        out["asof_postgres"] = {"skipped": str(e)}
    else:
        try:
            t0 = time.perf_counter()
            pg.upsert(bars)
            out["postgres_load_s"] = round(time.perf_counter() - t0, 2)
            pg.read_asof(picks[0], args.n)
            lat = []
            for t in picks:
                t1 = time.perf_counter()
                pg.read_asof(t, args.n)
                lat.append(time.perf_counter() - t1)
            out["asof_postgres"] = stats(lat)
        finally:
            pg.drop()
            pg.close()
    out["asof_rows"] = 28 * args.n
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
