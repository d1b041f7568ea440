"""CPU of the bar cache's idle refresh (``bqx serve`` refreshes every ``serve.bars_refresh_s``
= 1 s): old vs new code alternated in child processes, on a DuckDB home with bars.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_bar_refresh.py --home HOME \\
        --old-src OLD/src [--refreshes 30] [--rounds 2] [--out bar_refresh.json]

Each child loads a BarCache of the service's window from the home's store, then times
``refresh()`` ``--refreshes`` times with nothing written in between (the idle case: every
refresh of an unchanged store), CPU (``process_time``) and wall per refresh, and the store
opens it made.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import save_result

CHILD = r"""
import json, sys, time
from pathlib import Path
from bqx.config import Settings
from bqx.data.store import open_store
from bqx.serving.cache import BarCache, window_rows
s = Settings(home=Path(sys.argv[1]))
store = open_store(settings=s)
cache = BarCache(store, interval=s.interval, max_ffill=s.max_ffill_bars,
                 rows=window_rows(s.max_ffill_bars, s.signals.vol_scaling))
cache.load()
opens0 = store.open_stats["opens"]
cpu, wall = [], []
for _ in range(int(sys.argv[2])):
    c0, w0 = time.process_time(), time.perf_counter()
    changed = cache.refresh()
    cpu.append((time.process_time() - c0) * 1e3); wall.append((time.perf_counter() - w0) * 1e3)
    assert changed is False
print(json.dumps({"cpu_ms": cpu, "wall_ms": wall, "opens": store.open_stats["opens"] - opens0}))
"""


def run(src: str, home: str, n: int) -> dict:
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, home, str(n)], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--home", required=True)
    ap.add_argument("--old-src", required=True)
    ap.add_argument("--refreshes", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default="bar_refresh.json")
    a = ap.parse_args()
    new_src = str(Path(__file__).resolve().parents[1] / "src")
    t0, c0 = time.perf_counter(), time.process_time()
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    for r in range(a.rounds):
        for code in ("old", "new") if r % 2 == 0 else ("new", "old"):
            runs[code].append(run(a.old_src if code == "old" else new_src, a.home, a.refreshes))
    summary = {
        code: {
            "cpu_ms_per_refresh_median": round(
                float(np.median([x for r in rs for x in r["cpu_ms"]])), 3
            ),
            "wall_ms_per_refresh_median": round(
                float(np.median([x for r in rs for x in r["wall_ms"]])), 3
            ),
            "store_opens": [r["opens"] for r in rs],
        }
        for code, rs in runs.items()
    }
    out = {
        "benchmark": "bar_refresh",
        "date": time.strftime("%Y-%m-%d"),
        "home": a.home,
        "refreshes": a.refreshes,
        "rounds": a.rounds,
        "loadavg": list(os.getloadavg()),
        "summary": summary,
    }
    print(json.dumps(summary, indent=1))
    print(f"wrote {save_result(out, a.out, t0, c0)}")


if __name__ == "__main__":
    main()
