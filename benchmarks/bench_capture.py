"""Input capture on vs off: ``PredictionService.predict`` latency side by side.

    .venv/bin/python benchmarks/bench_capture.py [--home DIR] [--n 2000]

Two live services over copies of the same home (capture_rate 1.0 and 0.0), requests
alternating between them at the same random historical timestamps (the decision writer is
on in both). Prints p50/p99 (ms) of each and the ratios, as JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_outage import PAIRS, setup


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", type=Path, default=Path("/tmp/bqx-bench-capture"))
    ap.add_argument("--n", type=int, default=2000)
    a = ap.parse_args()
    setup(a.home)
    from bqx.config import Settings
    from bqx.serving.service import PredictionService

    svcs = {}
    for name, rate in (("on", 1.0), ("off", 0.0)):
        h = a.home.parent / f"{a.home.name}-{name}"
        shutil.rmtree(h, ignore_errors=True)
        shutil.copytree(a.home, h)
        s = Settings(home=h)
        s.monitor.capture_rate = rate
        svc = PredictionService(s)
        svc.start()
        svcs[name] = svc
    rng = np.random.default_rng(1)
    t0 = pd.Timestamp("2024-01-02 01:00", tz="UTC")
    offs = rng.integers(0, 3 * 1440, a.n)  # Tue-Fri: no weekend (stale) times
    lat: dict[str, list[float]] = {"on": [], "off": []}
    for i, o in enumerate(offs):
        pair = PAIRS[i % len(PAIRS)]
        ts = t0 + pd.Timedelta(minutes=int(o))
        order = ("on", "off") if i % 2 else ("off", "on")
        for name in order:
            t = time.perf_counter()
            svcs[name].predict(pair, ts)
            lat[name].append((time.perf_counter() - t) * 1000)
    for svc in svcs.values():
        svc.close()
    out = {
        k: {"p50_ms": float(np.percentile(v, 50)), "p99_ms": float(np.percentile(v, 99))}
        for k, v in lat.items()
    }
    out["ratio_on_off"] = {q: out["on"][q] / out["off"][q] for q in ("p50_ms", "p99_ms")}
    out["n"] = a.n
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
