"""CPU cost of drift in one monitoring pass: 28 pairs x 70 features x 1,440 bars.

A vs B alternated in one process: ``drift_report`` with a calibrated baseline (the default:
calibrated gate, last-240-bar window, pair test) vs the same baseline without the stored
calibration (the old Bartlett gate, what every baseline did before). Features: 70 AR(1)
columns (phi 0.95, t(4) noise); one baseline (20 days) reused for the 28 pairs (the cost
does not depend on which pair). Also the training-time cost of ``build_baseline`` for 70
features x 20 days. Run: PYTHONPATH=src python benchmarks/bench_drift_speed.py
(raw JSON to benchmarks/results/drift_speed.json).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

from bqx.monitoring.drift import build_baseline, drift_report

DAY, PAIRS, FEATURES, REPS = 1440, 28, 70, 5


def main() -> None:
    rng = np.random.default_rng(0)

    def ar(n: int) -> np.ndarray:
        return lfilter([1.0], [1.0, -0.95], rng.standard_t(4, (FEATURES, n)), axis=1)

    x = ar(20 * DAY)
    cols = {f"f{i}": x[i] for i in range(FEATURES)}
    c0, t0 = time.process_time(), time.perf_counter()
    base = build_baseline(cols)
    build = {"cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - t0}
    old = {k: dataclasses.replace(v, null={}, null_corr={}) for k, v in base.items()}
    wins = []
    for _ in range(PAIRS):
        w = ar(DAY + 300)[:, 300:]
        wins.append({f"f{i}": w[i] for i in range(FEATURES)})
    res: dict[str, dict[str, list[float]]] = {
        "calibrated": {"cpu_s": [], "wall_s": []},
        "old_gate": {"cpu_s": [], "wall_s": []},
    }
    for rep in range(REPS):
        order = [("calibrated", base), ("old_gate", old)]
        if rep % 2:
            order.reverse()
        for name, b in order:
            c0, t0 = time.process_time(), time.perf_counter()
            for w in wins:
                drift_report(b, w)
            res[name]["cpu_s"].append(time.process_time() - c0)
            res[name]["wall_s"].append(time.perf_counter() - t0)
    med = {k: {m: statistics.median(v) for m, v in d.items()} for k, d in res.items()}
    out = {
        "benchmark": "drift_speed",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus (shared, loaded)",
        "loadavg": os.getloadavg(),
        "pairs": PAIRS,
        "features": FEATURES,
        "window_bars": DAY,
        "reps": REPS,
        "median": med,
        "cpu_ratio_calibrated_over_old": med["calibrated"]["cpu_s"] / med["old_gate"]["cpu_s"],
        "raw": res,
        "build_baseline_70x20d": build,
    }
    print(json.dumps(out, indent=2))
    dst = Path(__file__).resolve().parent / "results" / "drift_speed.json"
    dst.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
