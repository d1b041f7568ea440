"""Ingest throughput of a 1,000,000-row generic CSV into DuckDB and PostgreSQL.

What is measured (``bqx.data.ingest.ingest_file``, strict mode, the CLI's code path):

* ``parse_validate``: reading the CSV into a canonical bar frame (pyarrow CSV reader, our
  timestamp parsing) plus every row check of ``bqx.data.quality.validate_bars``;
* ``upsert``: the store's one-transaction idempotent upsert of all rows into an empty store;
* ``reingest``: the same file again, which must report every row unchanged (idempotence),
  total time and its upsert part.

The CSV comes from the built-in simulator (all 28 pairs, M1, in time order, as a multi-pair
export would be), written with pandas. Results are printed as JSON.

Usage::

    .venv/bin/python benchmarks/bench_ingest.py [--rows 1000000] [--pg-url URL | --no-pg]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DEFAULT_PG = os.environ.get("BQX_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
INTERVAL = timedelta(minutes=1)


def make_csv(path: Path, rows: int) -> dict[str, Any]:
    from bqx.data.simulator import generate

    days = rows / (28 * 1440 * 5 / 7) * 1.1 + 3  # trading minutes per calendar day, + slack
    t0 = time.perf_counter()
    bars = generate(days=days, seed=7).bars
    while len(bars) < rows:
        days *= 1.2
        bars = generate(days=days, seed=7).bars
    bars = bars.sort_values(["ts", "pair"], kind="stable").head(rows).reset_index(drop=True)
    t1 = time.perf_counter()
    bars.to_csv(path, index=False)
    t2 = time.perf_counter()
    return {
        "rows": len(bars),
        "pairs": int(bars["pair"].nunique()),
        "first": bars["ts"].min().isoformat(),
        "last": bars["ts"].max().isoformat(),
        "bytes": path.stat().st_size,
        "simulate_s": round(t1 - t0, 3),
        "write_csv_s": round(t2 - t1, 3),
    }


def bench_store(store: Any, csv: Path, rows: int) -> dict[str, Any]:
    from bqx.data.ingest import ingest_file

    r1 = ingest_file(store, csv, "csv")
    assert r1.upsert.inserted == rows, r1.upsert
    r2 = ingest_file(store, csv, "csv")
    assert (r2.upsert.inserted, r2.upsert.updated, r2.upsert.unchanged) == (0, 0, rows), r2.upsert
    pv = r1.timings["read"] + r1.timings["validate"]
    up = r1.timings["upsert"]
    return {
        "rows": rows,
        "parse_s": round(r1.timings["read"], 3),
        "validate_s": round(r1.timings["validate"], 3),
        "parse_validate_s": round(pv, 3),
        "parse_validate_rows_per_s": round(rows / pv),
        "upsert_s": round(up, 3),
        "upsert_rows_per_s": round(rows / up),
        "total_s": round(r1.seconds, 3),
        "total_rows_per_s": round(rows / r1.seconds),
        "reingest_total_s": round(r2.seconds, 3),
        "reingest_upsert_s": round(r2.timings["upsert"], 3),
        "reingest_result": r2.upsert.as_dict(),
    }


def machine() -> dict[str, Any]:
    import duckdb
    import pandas as pd
    import pyarrow as pa

    mem = None
    with contextlib.suppress(ValueError, OSError, AttributeError):
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": mem,
        "python": sys.version.split()[0],
        "pandas": pd.__version__,
        "pyarrow": pa.__version__,
        "duckdb": duckdb.__version__,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--pg-url", default=DEFAULT_PG)
    ap.add_argument("--no-pg", action="store_true", help="skip PostgreSQL")
    args = ap.parse_args()

    from bqx.data.store import DuckDBStore, PostgresStore

    out: dict[str, Any] = {
        "benchmark": "ingest",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
    }
    with tempfile.TemporaryDirectory(prefix="bqx-bench-ingest-") as tmp:
        csv = Path(tmp) / "bars_1m.csv"
        out["csv"] = make_csv(csv, args.rows)
        rows = out["csv"]["rows"]

        duck = DuckDBStore(Path(tmp) / "bars.duckdb", INTERVAL)
        try:
            out["duckdb"] = bench_store(duck, csv, rows)
        finally:
            duck.close()

        if not args.no_pg:
            pg = PostgresStore(args.pg_url, INTERVAL, table=f"bench_bars_{uuid.uuid4().hex[:10]}")
            try:
                import psycopg

                with psycopg.connect(args.pg_url) as con:
                    row = con.execute("SHOW server_version").fetchone()
                out["machine"]["postgresql"] = row[0] if row else None
                out["machine"]["timescaledb"] = pg.timescale
                out["postgresql"] = bench_store(pg, csv, rows)
            finally:
                pg.drop()
                pg.close()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
