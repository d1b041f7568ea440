"""Where the time of an uncached ``at_array(only=...)`` goes, per feature family, old vs new
code (issue 15 item 4). Prints JSON.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_atfast_families.py --old-src OLD/src \\
        [--home /tmp/bqx-bench-predfast2] [--bars 1000] [--out benchmarks/results/x.json]

The home is ``bench_predict_ab.py``'s (``bench_serving.py``'s setup: an RF version for
EURUSD and a LightGBM version for USDJPY, 70 features each). Each code runs in its own
process (``PYTHONPATH=<src>``, one BLAS thread), twice, in the order old, new, new, old; a
run takes the bar panel of a live ``PredictionService`` and the versions' columns, then
over ``--bars`` consecutive bars per version, in a tight loop:

* ``families``: each family of the version's plan, timed alone (its context and its
  point path on the rows the call evaluates, as ``_at_subset`` calls it), median us;
* ``at_array``: the whole call, p50 / p99 ms (CPU time, ``process_time``);
* ``cold_first_call``: the first call on a fresh copy of the panel (no per-panel caches)
  at the newest bar, then a second call at the bar before it, median of 20 copies, CPU ms:
  the serving pattern (a new panel per new bar, whose first call is for the newest bar);
  ``cold_first_call_parts_us``: the same first call taken apart, CPU us: ``framework``
  (the as-of row, and for code without ``Ctx.block`` the whole-panel log that its
  ``at_array`` takes first), then each family's context and point path.

Medians over the two runs of each code. A tight loop keeps the CPU caches warm: these are
lower than ``bench_predict_ab.py``'s figures, where calls alternate between two processes.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
PAIRS = ("EURUSD", "USDJPY")


def worker(home: str, bars: int) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    import pandas as pd
    from bench_serving import _timestamps

    from bqx.config import Settings
    from bqx.features import at_array
    from bqx.features import pipeline as P
    from bqx.features.context import Ctx
    from bqx.serving.service import PredictionService, _needed_columns

    svc = PredictionService(Settings(home=Path(home)), live=True)
    svc.start()
    try:
        cols: dict[str, Any] = {}
        for pair in PAIRS:
            svc.predict(pair)
            only = _needed_columns(svc, pair)
            ts = _timestamps(Path(home), pair, bars + 1)[:-1]
            cols[pair] = (only, [svc._closed_by(pd.Timestamp(t)) for t in ts])
        panel = svc.bars.snapshot.panel  # type: ignore[union-attr]
    finally:
        svc.close()
    shared = "shared" in inspect.signature(Ctx.window).parameters
    eager_log = not hasattr(Ctx, "block")  # at_array(only=) took the whole panel's log
    out: dict[str, Any] = {}
    pt = time.process_time
    for pair, (only, asofs) in cols.items():
        plan = P._subset_plan(tuple(only))
        longest = max(f[1] for f in plan)
        j = panel.col(pair)
        fams: dict[str, list[float]] = {f[0].name: [] for f in plan}
        for t in asofs[:20]:
            at_array(panel, pair, t, only=only)  # warm: plans, per-panel caches
        with np.errstate(all="ignore"):
            for t in asofs:
                p = panel.row_at_or_before(t, pair)
                for fam, need, rel, idx, *_ in plan:
                    c0 = max(0, p - need)
                    q = (p - c0) - rel
                    ix = range(len(fam.specs)) if idx is None else idx
                    a = time.perf_counter()
                    if shared:
                        ctx = Ctx.window(panel, pair, j, c0, p + 1, shared=max(0, p - longest))
                    else:
                        ctx = Ctx.window(panel, pair, j, c0, p + 1)
                    fam.compute_online(ctx, q, ix)
                    fams[fam.name].append(time.perf_counter() - a)
        calls = []
        for t in asofs:
            c = pt()
            at_array(panel, pair, t, only=only)
            calls.append(pt() - c)
        first, second = [], []
        for _ in range(20):
            fresh = copy.deepcopy(panel)
            fresh._cache.clear()
            fresh._lc = None
            c = pt()
            at_array(fresh, pair, asofs[-1], only=only)
            first.append(pt() - c)
            c = pt()
            at_array(fresh, pair, asofs[-2], only=only)
            second.append(pt() - c)
        # the cold first call family by family (the same steps as at_array's, timed apart):
        # where the per-panel work of a new panel goes
        cold: dict[str, list[float]] = {"framework": [], **{f[0].name: [] for f in plan}}
        for _ in range(20):
            fresh = copy.deepcopy(panel)
            fresh._cache.clear()
            fresh._lc = None
            c = pt()
            p = fresh.row_at_or_before(asofs[-1], pair)
            if eager_log:
                fresh.log_close  # noqa: B018 - at_array's first step before the pair blocks
            jf = fresh.col(pair)
            cold["framework"].append(pt() - c)
            with np.errstate(all="ignore"):
                for fam, need, rel, idx, *_ in plan:
                    c0 = max(0, p - need)
                    q = (p - c0) - rel
                    ix = range(len(fam.specs)) if idx is None else idx
                    c = pt()
                    if shared:
                        ctx = Ctx.window(fresh, pair, jf, c0, p + 1, shared=max(0, p - longest))
                    else:
                        ctx = Ctx.window(fresh, pair, jf, c0, p + 1)
                    fam.compute_online(ctx, q, ix)
                    cold[fam.name].append(pt() - c)
        out[pair] = {
            "families_us": {k: round(float(np.median(v)) * 1e6, 1) for k, v in fams.items()},
            "families_sum_us": round(sum(float(np.median(v)) for v in fams.values()) * 1e6, 1),
            "at_array_cpu_ms": {
                "p50": round(float(np.percentile(calls, 50)) * 1e3, 4),
                "p99": round(float(np.percentile(calls, 99)) * 1e3, 4),
            },
            "cold_first_call_cpu_ms": round(float(np.median(first)) * 1e3, 3),
            "cold_second_call_cpu_ms": round(float(np.median(second)) * 1e3, 3),
            "cold_first_call_parts_us": {
                k: round(float(np.median(v)) * 1e6, 1) for k, v in cold.items()
            },
        }
    return out


def _run(src: str, home: str, bars: int) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BQX_")}
    env.update({"PYTHONPATH": src, "OPENBLAS_NUM_THREADS": "1"})
    cmd = [sys.executable, __file__, "--worker", "--home", home, "--bars", str(bars)]
    load0 = os.getloadavg()[0]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    res: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    res["load_avg_1m"] = round((load0 + os.getloadavg()[0]) / 2, 2)
    return res


def _median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"load_avg_1m": [r["load_avg_1m"] for r in runs]}
    for pair in PAIRS:
        rs = [r[pair] for r in runs]
        out[pair] = {
            "families_us": {
                k: round(float(np.median([r["families_us"][k] for r in rs])), 1)
                for k in rs[0]["families_us"]
            },
            "families_sum_us": round(float(np.median([r["families_sum_us"] for r in rs])), 1),
            "at_array_cpu_ms": {
                q: round(float(np.median([r["at_array_cpu_ms"][q] for r in rs])), 4)
                for q in ("p50", "p99")
            },
            **{
                k: round(float(np.median([r[k] for r in rs])), 3)
                for k in ("cold_first_call_cpu_ms", "cold_second_call_cpu_ms")
            },
            "cold_first_call_parts_us": {
                k: round(float(np.median([r["cold_first_call_parts_us"][k] for r in rs])), 1)
                for k in rs[0]["cold_first_call_parts_us"]
            },
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old-src")
    ap.add_argument("--new-src")
    ap.add_argument("--home", default="/tmp/bqx-bench-predfast2")
    ap.add_argument("--days", type=int, default=20, help="simulated days when creating the home")
    ap.add_argument("--bars", type=int, default=1000)
    ap.add_argument("--out")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.home, a.bars)))
        return
    if not a.old_src:
        ap.error("--old-src is required")
    sys.path.insert(0, str(HERE))
    import bench_serving as bs

    new_src = a.new_src or str(HERE.parent / "src")
    out: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}, {os.cpu_count()} cpus",
        "python": platform.python_version(),
        "old_src": a.old_src,
        "new_src": new_src,
        "bars": a.bars,
        "setup": bs.setup(Path(a.home), a.days),
    }
    runs: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
    for name in ("old", "new", "new", "old"):
        runs[name].append(_run(a.old_src if name == "old" else new_src, a.home, a.bars))
        print(f"{name}: {json.dumps(runs[name][-1])}", file=sys.stderr)
    out["runs"] = runs
    out["old"] = _median_of(runs["old"])
    out["new"] = _median_of(runs["new"])
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
