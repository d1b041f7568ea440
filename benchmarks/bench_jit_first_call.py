"""The first online call of a feature family whose point path is compiled (numba kernels,
``bqx.features._jit``): its cost in a fresh process with an empty kernel cache (numba
imported and every kernel the family reaches compiled) and with a warm cache (the compiled
code loaded from disk), next to the second call. Prints JSON.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_jit_first_call.py [--family technical] \\
        [--old-src OLD/src] [--repeat 3] [--out benchmarks/results/x.json]

Each measurement is its own process (``PYTHONPATH`` = the code under test, one BLAS
thread), with ``NUMBA_CACHE_DIR`` set to a new temporary directory (cold), then the same
directory again (warm), alternated ``--repeat`` times; with ``--old-src`` the old code's
first and second call run in between (no compilation there: the reference). The process
builds a bar panel from the built-in simulator (2 days, 28 pairs) before the clock starts,
then calls ``compute_online`` for every spec of the family at t and its lags (the rows an
uncached prediction evaluates), CPU time (``process_time``) and wall time.
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

import numpy as np


def worker(family: str) -> dict[str, Any]:
    from bqx.data.simulator import generate
    from bqx.features.context import Ctx
    from bqx.features.families import FAMILIES
    from bqx.features.panel import Panel

    fam = next(f for f in FAMILIES if f.name == family)
    panel = Panel.from_bars(generate(days=2, seed=3, start="2024-03-05").bars)
    pair = "EURUSD"
    j = panel.col(pair)
    p = len(panel) - 1
    need = max(s.lookback for s in fam.specs) + 240
    c0 = p - need
    assert c0 > 0, "panel too short for the family's lookback"
    q = need - np.array([0, 60, 120, 180, 240, 61])
    ix = range(len(fam.specs))
    out: dict[str, Any] = {"numba_loaded_before": "numba" in sys.modules}
    with np.errstate(all="ignore"):
        for name in ("first", "second"):
            ctx = Ctx.window(panel, pair, j, c0, p + 1)
            t, c = time.perf_counter(), time.process_time()
            fam.compute_online(ctx, q, ix)
            out[f"{name}_call_wall_s"] = round(time.perf_counter() - t, 4)
            out[f"{name}_call_cpu_s"] = round(time.process_time() - c, 4)
    return out


def _run(src: str, family: str, cache_dir: str | None) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BQX_", "NUMBA_"))}
    env.update({"PYTHONPATH": src, "OPENBLAS_NUM_THREADS": "1"})
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    cmd = [sys.executable, __file__, "--worker", "--family", family]
    load0 = os.getloadavg()[0]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    res: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    res["load_avg_1m"] = round((load0 + os.getloadavg()[0]) / 2, 2)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", default="technical")
    ap.add_argument("--old-src")
    ap.add_argument("--new-src")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.family)))
        return
    new_src = a.new_src or str(Path(__file__).resolve().parent.parent / "src")
    runs: dict[str, list[dict[str, Any]]] = {"cold": [], "warm": [], "old": []}
    for _ in range(a.repeat):
        with tempfile.TemporaryDirectory(prefix="bqx-numba-") as d:
            runs["cold"].append(_run(new_src, a.family, d))
            runs["warm"].append(_run(new_src, a.family, d))
        if a.old_src:
            runs["old"].append(_run(a.old_src, a.family, None))
        print(json.dumps({k: v[-1] for k, v in runs.items() if v}), file=sys.stderr)
    keys = ("first_call_cpu_s", "first_call_wall_s", "second_call_cpu_s", "second_call_wall_s")
    out: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}, {os.cpu_count()} cpus",
        "python": platform.python_version(),
        "family": a.family,
        "new_src": new_src,
        "old_src": a.old_src,
        "runs": runs,
        "median": {
            name: {k: round(float(np.median([r[k] for r in rs])), 4) for k in keys}
            | {"load_avg_1m": [r["load_avg_1m"] for r in rs]}
            for name, rs in runs.items()
            if rs
        },
    }
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
