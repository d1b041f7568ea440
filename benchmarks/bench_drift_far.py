"""False-alarm rate of drift at the default settings on simulator features.

Stationary: the same simulator process (seed, regimes and all) for training and serving.
Baseline = deciles of the first ``--train-days`` of feature rows; then every following
trading day (1,440 bars) is a window; a feature-day counts as a false alarm when its
severity is warning or critical. Run: PYTHONPATH=src python benchmarks/bench_drift_far.py
(``--seeds N``: N simulator seeds in one run, pooled; raw JSON to
benchmarks/results/drift_far.json).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bqx.data.simulator import generate
from bqx.features import pipeline as F
from bqx.monitoring.drift import build_baseline, drift_report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--train-days", type=int, default=30)
    ap.add_argument("--features", type=int, default=40)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--seeds", type=int, default=1, help="seeds seed, seed+1, ... pooled")
    a = ap.parse_args()
    t0 = time.perf_counter()
    runs = [one_seed(a, a.seed + i) for i in range(a.seeds)]
    fd = sum(r["feature_days"] for r in runs)
    al = sum(r["warning_or_critical"] for r in runs)
    pdays = sum(r["pair_days"] for r in runs)
    pal = sum(r["pair_day_alarms"] for r in runs)
    pal_pf = sum(r["pair_day_alarms_per_feature_gate"] for r in runs)
    al_pf = sum(r["warning_or_critical_per_feature_gate"] for r in runs)
    out = {
        "benchmark": "drift_far",
        "date": time.strftime("%Y-%m-%d"),
        "settings": vars(a),
        "feature_days": fd,
        "warning_or_critical": al,
        "false_alarm_rate": al / max(fd, 1),
        "false_alarm_rate_per_feature_gate": al_pf / max(fd, 1),
        "pair_days": pdays,
        "pair_day_false_alarm_rate": pal / max(pdays, 1),
        "pair_day_false_alarm_rate_per_feature_gate": pal_pf / max(pdays, 1),
        "runs": runs,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(out, indent=2))
    dst = Path(__file__).resolve().parent / "results" / "drift_far.json"
    dst.write_text(json.dumps(out, indent=2) + "\n")


def one_seed(a: argparse.Namespace, seed: int) -> dict:
    t0 = time.perf_counter()
    bars = generate(days=a.days, pairs="EURUSD", seed=seed).bars
    df = F.build(bars, "EURUSD", dtype=np.float32)
    ok = [c for c in df.columns if df[c].notna().mean() > 0.95 and df[c].std() > 0]
    rng = np.random.default_rng(0)
    cols = sorted(rng.choice(ok, size=min(a.features, len(ok)), replace=False))
    cut = df.index[0] + np.timedelta64(a.train_days, "D")
    tr, te = df[df.index < cut], df[df.index >= cut]
    base = build_baseline({c: tr[c].to_numpy(np.float64) for c in cols})
    sev, ks, sev_pf = [], [], []
    pair_days = pair_alarms = pair_alarms_pf = 0
    bad = ("warning", "critical")
    for i in range(0, len(te) - 1440 + 1, 1440):
        w = te.iloc[i : i + 1440]
        win = {c: w[c].to_numpy(np.float64) for c in cols}
        rep = drift_report(base, win)  # the default: family-wise gate per pair
        pf = drift_report(base, win, family_alpha=None)  # each feature at ALPHA (before)
        sev += [c["severity"] for c in rep["columns"]]
        sev_pf += [c["severity"] for c in pf["columns"]]
        ks += [c["ks_p"] is not None and c["ks_p"] < 0.05 for c in rep["columns"]]
        pair_days += 1
        pair_alarms += rep["severity"] in bad
        pair_alarms_pf += pf["severity"] in bad
    alarms = sum(s in bad for s in sev)
    return {
        "pair_days": pair_days,
        "pair_day_alarms": pair_alarms,
        "pair_day_alarms_per_feature_gate": pair_alarms_pf,
        "warning_or_critical_per_feature_gate": sum(s in bad for s in sev_pf),
        "seed": seed,
        "feature_days": len(sev),
        "warning_or_critical": alarms,
        "false_alarm_rate": alarms / max(len(sev), 1),
        "ks_p_lt_05_rate": float(np.mean(ks)) if ks else None,
        "features": len(cols),
        "seconds": round(time.perf_counter() - t0, 1),
    }


if __name__ == "__main__":
    main()
