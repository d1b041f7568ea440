"""False-alarm rate of drift at the default settings on simulator features.

Stationary: the same simulator process (seed, regimes and all) for training and serving.
Baseline = deciles of the first ``--train-days`` of feature rows; then every following
trading day (1,440 bars) is a window; a feature-day counts as a false alarm when its
severity is warning or critical. Run: PYTHONPATH=src python benchmarks/bench_drift_far.py
"""

from __future__ import annotations

import argparse
import json
import time

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
    a = ap.parse_args()
    t0 = time.perf_counter()
    bars = generate(days=a.days, pairs="EURUSD", seed=a.seed).bars
    df = F.build(bars, "EURUSD", dtype=np.float32)
    ok = [c for c in df.columns if df[c].notna().mean() > 0.95 and df[c].std() > 0]
    rng = np.random.default_rng(0)
    cols = sorted(rng.choice(ok, size=min(a.features, len(ok)), replace=False))
    cut = df.index[0] + np.timedelta64(a.train_days, "D")
    tr, te = df[df.index < cut], df[df.index >= cut]
    base = build_baseline({c: tr[c].to_numpy(np.float64) for c in cols})
    sev, ks = [], []
    for i in range(0, len(te) - 1440 + 1, 1440):
        w = te.iloc[i : i + 1440]
        rep = drift_report(base, {c: w[c].to_numpy(np.float64) for c in cols})
        sev += [c["severity"] for c in rep["columns"]]
        ks += [c["ks_p"] is not None and c["ks_p"] < 0.05 for c in rep["columns"]]
    alarms = sum(s in ("warning", "critical") for s in sev)
    out = {
        "feature_days": len(sev),
        "warning_or_critical": alarms,
        "false_alarm_rate": alarms / max(len(sev), 1),
        "ks_p_lt_05_rate": float(np.mean(ks)) if ks else None,
        "features": len(cols),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
