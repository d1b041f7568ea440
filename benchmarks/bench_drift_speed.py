"""CPU cost of drift in one monitoring pass: 28 pairs x 70 features x 1,440 bars.

A vs B alternated in one process: ``drift_report`` with a calibrated baseline (the default:
calibrated gate, last-240-bar window, pair test) vs the same baseline without the stored
calibration (the old Bartlett gate, what every baseline did before). Features: 70 AR(1)
columns (phi 0.95, t(4) noise); one baseline (20 days) reused for the 28 pairs (the cost
does not depend on which pair). Also the training-time cost of ``build_baseline`` for 70
features x 20 days. Run: PYTHONPATH=src python benchmarks/bench_drift_speed.py
(raw JSON to benchmarks/results/drift_speed.json).

``--market``: instead, the default now (the baseline and each window also hold the market
column ``rvol_60`` with its level test: 71 columns) vs the previous default (the same 70
calibrated features without it), alternated the same way; raw JSON to
benchmarks/results/drift_speed_market.json. The added CPU of a pass is the difference.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

from bqx.monitoring.drift import MARKET_VOL, build_baseline, drift_report

DAY, PAIRS, FEATURES, REPS = 1440, 28, 70, 5


def main() -> None:
    rng = np.random.default_rng(0)

    def ar(n: int) -> np.ndarray:
        return lfilter([1.0], [1.0, -0.95], rng.standard_t(4, (FEATURES, n)), axis=1)

    market = "--market" in sys.argv[1:]
    x = ar(20 * DAY)
    cols = {f"f{i}": x[i] for i in range(FEATURES)}
    if market:  # a positive volatility-like series: exp of a scaled AR(1)
        cols[MARKET_VOL] = np.exp(-9.0 + 0.05 * x[0])
    c0, t0 = time.process_time(), time.perf_counter()
    base = build_baseline(cols)
    build = {"cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - t0}
    if market:
        arms = ("market", "calibrated")
        other = {k: v for k, v in base.items() if k != MARKET_VOL}
    else:
        arms = ("calibrated", "old_gate")
        other = {k: dataclasses.replace(v, null={}, null_corr={}) for k, v in base.items()}
    wins = []
    for _ in range(PAIRS):
        w = ar(DAY + 300)[:, 300:]
        win = {f"f{i}": w[i] for i in range(FEATURES)}
        if market:
            win[MARKET_VOL] = np.exp(-9.0 + 0.05 * w[0])
        wins.append(win)
    res: dict[str, dict[str, list[float]]] = {a: {"cpu_s": [], "wall_s": []} for a in arms}
    for rep in range(REPS):
        order = [(arms[0], base), (arms[1], other)]
        if rep % 2:
            order.reverse()
        for name, b in order:
            c0, t0 = time.process_time(), time.perf_counter()
            for w in wins:
                drift_report(b, w)
            res[name]["cpu_s"].append(time.process_time() - c0)
            res[name]["wall_s"].append(time.perf_counter() - t0)
    med = {k: {m: statistics.median(v) for m, v in d.items()} for k, d in res.items()}
    ratio = med[arms[0]]["cpu_s"] / med[arms[1]]["cpu_s"]
    out = {
        "benchmark": "drift_speed_market" if market else "drift_speed",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus (shared, loaded)",
        "loadavg": os.getloadavg(),
        "pairs": PAIRS,
        "features": FEATURES,
        "window_bars": DAY,
        "reps": REPS,
        "median": med,
        f"cpu_ratio_{arms[0]}_over_{arms[1]}".replace("_gate", ""): ratio,
        "raw": res,
        "build_baseline_70x20d" + ("_with_market" if market else ""): build,
    }
    if market:
        out["added_cpu_s_per_pass"] = med["market"]["cpu_s"] - med["calibrated"]["cpu_s"]
    print(json.dumps(out, indent=2))
    name = "drift_speed_market.json" if market else "drift_speed.json"
    dst = Path(__file__).resolve().parent / "results" / name
    dst.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
