"""First-call cost of the compiled point paths of the reg, correlation and bqx families:
in a fresh process with an empty numba cache (compilation) and in a fresh process with the
cache that run left (loading). Prints JSON.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_jit_compile_jitreg.py \\
        [--runs 2] [--out benchmarks/results/x.json]

Each run: a new ``NUMBA_CACHE_DIR`` (a temporary directory), one process that compiles
(``cold``), then one process that loads from that directory (``warm``). A process builds a
small simulated panel (28 pairs, 2 days), then per family times the first
``compute_online`` call at the newest bar with the spec indices a 70-feature version uses
(all of the family's specs here) and then the second call (wall and CPU, ms). The panel,
imports and contexts are built before the clock starts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FAMS = ("reg", "correlation", "bqx")


def worker() -> dict[str, Any]:
    import numpy as np

    from bqx.data.simulator import generate
    from bqx.features.context import Ctx
    from bqx.features.families import FAMILIES
    from bqx.features.panel import Panel

    panel = Panel.from_bars(generate(days=2, seed=3, start="2024-03-05").bars)
    pair = "EURUSD"
    j = panel.col(pair)
    p = len(panel) - 1
    fams = {f.name: f for f in FAMILIES}
    out: dict[str, Any] = {}
    with np.errstate(all="ignore"):
        for name in FAMS:
            fam = fams[name]
            lb = max(s.lookback for s in fam.specs) + (240 if fam.lagged else 0)
            c0 = p - lb
            q = np.array([lb, lb - 60, lb - 120] if fam.lagged else [lb], dtype=np.int64)
            ix = tuple(range(len(fam.specs)))
            times = []
            for _ in range(2):
                ctx = Ctx.window(panel, pair, j, c0, p + 1, shared=c0)
                w, c = time.perf_counter(), time.process_time()
                fam.compute_online(ctx, q, ix)
                times.append(
                    (
                        round((time.perf_counter() - w) * 1e3, 2),
                        round((time.process_time() - c) * 1e3, 2),
                    )
                )
            out[name] = {
                "first_wall_ms": times[0][0],
                "first_cpu_ms": times[0][1],
                "second_wall_ms": times[1][0],
                "second_cpu_ms": times[1][1],
            }
    return out


def _run(cache: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BQX_")}
    env["NUMBA_CACHE_DIR"] = cache
    load0 = os.getloadavg()[0]
    r = subprocess.run(
        [sys.executable, __file__, "--worker"], env=env, capture_output=True, text=True, check=True
    )
    res: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    res["load_avg_1m"] = round((load0 + os.getloadavg()[0]) / 2, 2)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--out")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker()))
        return
    runs = []
    for _ in range(a.runs):
        with tempfile.TemporaryDirectory() as d:
            cold = _run(d)
            warm = _run(d)
            runs.append({"cold": cold, "warm": warm})
            print(json.dumps(runs[-1]), file=sys.stderr)
    out: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}, {os.cpu_count()} cpus",
        "python": platform.python_version(),
        "runs": runs,
    }
    for kind in ("cold", "warm"):
        out[kind] = {
            f: {
                k: sorted(r[kind][f][k] for r in runs)[len(runs) // 2]
                for k in ("first_wall_ms", "first_cpu_ms", "second_cpu_ms")
            }
            for f in FAMS
        }
        out[kind]["total_first_cpu_ms"] = round(sum(out[kind][f]["first_cpu_ms"] for f in FAMS), 1)
        out[kind]["load_avg_1m"] = [r[kind]["load_avg_1m"] for r in runs]
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
