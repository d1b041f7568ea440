"""Drift detection delay in bars after a simulated regime change (issue 12, "Must show").

    PYTHONPATH=src .venv/bin/python benchmarks/bench_drift_delay.py [--seeds 3] [--step 10]

Per seed: ``--days`` simulated days of EURUSD (bqx.data.simulator), features from the real
pipeline, 40 random candidate features (the selection rule of bench_drift_far.py), the
baseline = frozen deciles of the first ``--train-days`` of feature rows (as at training).
At bar ``c`` (``--change-day`` trading days in) one of two changes starts:

* ``vol_x1.9``: the log-price path is scaled by 1.9 from ``c`` on (every return x 1.9,
  the simulator's turbulent-state multiplier), features recomputed by the pipeline - only
  the features that depend on volatility move;
* ``level_2sd``: every served feature value is shifted by +2 of its baseline std from ``c``
  on (an upstream change of level/scale).

The monitoring window is the default one: the last 1,440 served bars (and, inside the
pass, its last 240). A pass is simulated every ``--step`` bars after the change; the delay
is the number of bars after ``c`` until the first pass whose report (the pair's severity:
a feature, or the pair-level test) is at warning / critical (default thresholds, gates and
pair test; ``bqx.monitoring.drift.drift_report``). Resolution: ``--step`` bars. An old
baseline without the stored calibration (``.old_gate``) runs on the same passes; the
per-pass statistics give the delays for other pair-test levels (``first_by_pair_alpha``).
Raw JSON to benchmarks/results/drift_delay.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
from bench_drift_far import PAIR_ALPHAS, alarmed, pass_record

from bqx.data.simulator import generate
from bqx.features import pipeline as F
from bqx.monitoring.drift import PAIR_ALPHA, build_baseline, drift_report

DAY = 1440


def _scale_returns(bars: pd.DataFrame, at: pd.Timestamp, k: float) -> pd.DataFrame:
    """Bars whose log-price moves are multiplied by ``k`` from ``at`` on (OHLC together)."""
    b = bars.copy()
    after = b["ts"] >= at
    anchor = np.log(b.loc[~after, "close"].iloc[-1])
    for col in ("open", "high", "low", "close"):
        lp = np.log(b.loc[after, col].to_numpy())
        b.loc[after, col] = np.exp(anchor + k * (lp - anchor))
    return b


def _delays(base: dict, feats: pd.DataFrame, cols: list[str], c: int, step: int) -> dict:
    """The default settings (calibrated gate, short window, pair test) and an old baseline
    without the stored calibration (``.old_gate``: the Bartlett gate as before), on the
    same passes."""
    new = _delays_one(base, feats, cols, c, step)
    old = {k: dataclasses.replace(v, null={}, null_corr={}) for k, v in base.items()}
    per = _delays_one(old, feats, cols, c, step)
    per.pop("passes")
    return {**new, **{f"{k}.old_gate": v for k, v in per.items()}}


def _delays_one(base: dict, feats: pd.DataFrame, cols: list[str], c: int, step: int) -> dict:
    first: dict[str, int | None] = {"warning": None, "critical": None}
    n_crit_at_day = 0
    arr = feats[cols].to_numpy(np.float64)
    passes = []
    for k in range(step, DAY + 1, step):
        w = arr[c + k - DAY : c + k]
        rep = drift_report(base, {f: w[:, j] for j, f in enumerate(cols)})
        passes.append([k, *pass_record(rep)])
        if first["warning"] is None and rep["severity"] in ("warning", "critical"):
            first["warning"] = k
        if first["critical"] is None and rep["severity"] == "critical":
            first["critical"] = k
        if k == DAY:
            n_crit_at_day = sum(x["severity"] == "critical" for x in rep["columns"])
    return {
        "first_warning_bars": first["warning"],
        "first_critical_bars": first["critical"],
        "features_critical_after_1440": n_crit_at_day,
        "passes": passes,
    }


def run_seed(seed: int, a: argparse.Namespace) -> dict:
    bars = generate(days=a.days, pairs="EURUSD", seed=seed).bars
    feats = F.build(bars, "EURUSD", dtype=np.float32)
    tr = feats.iloc[: a.train_days * DAY]
    ok = [c for c in feats.columns if tr[c].notna().mean() > 0.95 and tr[c].std() > 0]
    cols = sorted(np.random.default_rng(0).choice(ok, size=min(40, len(ok)), replace=False))
    base = build_baseline({f: tr[f].to_numpy(np.float64) for f in cols})
    c = a.change_day * DAY
    assert len(feats) >= c + DAY, "not enough simulated bars"
    out: dict = {"seed": seed}
    vol_bars = _scale_returns(bars, feats.index[c], 1.9)
    out["vol_x1.9"] = _delays(base, F.build(vol_bars, "EURUSD", dtype=np.float32), cols, c, a.step)
    shifted = feats.copy()
    std = pd.Series({f: base[f].std for f in cols})
    shifted.iloc[c:, [feats.columns.get_loc(f) for f in cols]] += 2 * std.to_numpy()
    out["level_2sd"] = _delays(base, shifted, cols, c, a.step)
    # the same passes without any change: how often a pass would have fired anyway
    out["none"] = _delays(base, feats, cols, c, a.step)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=45)
    ap.add_argument("--train-days", type=int, default=25)
    ap.add_argument("--change-day", type=int, default=29)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--step", type=int, default=10)
    a = ap.parse_args()
    t0, c0 = time.perf_counter(), time.process_time()
    runs = [run_seed(11 + i, a) for i in range(a.seeds)]
    summary = {}
    for sc in ("vol_x1.9", "level_2sd", "none"):
        for k in (
            "first_warning_bars",
            "first_critical_bars",
            "first_warning_bars.old_gate",
            "first_critical_bars.old_gate",
        ):
            v = [r[sc][k] for r in runs]
            hit = [x for x in v if x is not None]
            summary[f"{sc}.{k}"] = {
                "median": float(np.median(hit)) if hit else None,
                "max": max(hit) if hit else None,
                "detected": f"{len(hit)}/{len(v)}",
                "per_seed": v,
            }
    # the same passes judged with other pair-test levels (first critical; "none": first alarm)
    curve: dict = {}
    for pa in PAIR_ALPHAS:
        row = {}
        for sc in ("vol_x1.9", "level_2sd", "none"):
            first = []
            for r in runs:
                hits = [p[0] for p in r[sc]["passes"] if alarmed(p[1:], pa, sc != "none")]
                first.append(hits[0] if hits else None)
            row[sc] = first
        curve[str(pa)] = row
    for r in runs:
        for sc in ("vol_x1.9", "level_2sd", "none"):
            r[sc].pop("passes")
    out = {
        "benchmark": "drift_delay",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus (shared, loaded)",
        "settings": vars(a),
        "window_bars": DAY,
        "pair_alpha_default": PAIR_ALPHA,
        "loadavg": os.getloadavg(),
        "summary": summary,
        "first_by_pair_alpha": curve,
        "runs": runs,
        "seconds": round(time.perf_counter() - t0, 1),
        "cpu_seconds": round(time.process_time() - c0, 1),
    }
    print(json.dumps(out, indent=2))
    dst = Path(__file__).resolve().parent / "results" / "drift_delay.json"
    dst.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
