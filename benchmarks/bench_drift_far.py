"""False-alarm rate of drift at the default settings on simulator features (issue 12).

Stationary: the same simulator process (seed, regimes and all) for training and serving.
Baseline = ``build_baseline`` of the first ``--train-days`` of feature rows (frozen deciles
and the null of KL calibrated on those rows' own 24 h / 4 h windows); then

* one window per 1,440 bars after that (one pass a day): a feature-day counts as a false
  alarm when its severity is warning or critical, a pair-day when the pair's is;
* a pass every ``--pass-every`` bars over the same days (as the operator runs them, every
  few minutes): a pair-day counts when *any* pass of the day alarms. The per-pass
  statistics (feature severities, pair-test z of both windows) are kept, so the pair-day
  rate is also reported for other pair-test levels (``pair_alpha`` curve, same passes).

The old gate (a baseline without the stored calibration: Bartlett n_eff, no short window,
no pair test - what every baseline did before) is run on the same windows, side by side.

Run: PYTHONPATH=src python benchmarks/bench_drift_far.py --seeds 6
(raw JSON to benchmarks/results/drift_far.json).
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
from scipy.stats import norm

from bqx.data.simulator import generate
from bqx.features import pipeline as F
from bqx.monitoring.drift import _RANK, PAIR_ALPHA, build_baseline, drift_report

DAY = 1440
BAD = ("warning", "critical")
#: pair-test levels for the trade-off curve (per pass, split over the two windows)
PAIR_ALPHAS = (0.01, 0.005, 0.002, 0.001, 0.0005, 0.0002, 0.0001)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--train-days", type=int, default=30)
    ap.add_argument("--features", type=int, default=40)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--seeds", type=int, default=1, help="seeds seed, seed+1, ... pooled")
    ap.add_argument("--pass-every", type=int, default=30, help="bars between passes")
    a = ap.parse_args()
    t0, c0 = time.perf_counter(), time.process_time()
    runs = [one_seed(a, a.seed + i) for i in range(a.seeds)]

    def tot(k: str) -> int:
        return int(sum(r[k] for r in runs))

    fd, pdays, sdays = tot("feature_days"), tot("pair_days"), tot("pass_days")
    curve = {}
    for pa in PAIR_ALPHAS:
        n = sum(pair_days_alarmed(r["passes"], pa) for r in runs)
        curve[str(pa)] = {"pair_days_alarmed": n, "rate": n / max(sdays, 1)}
    out = {
        "benchmark": "drift_far",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus (shared, loaded)",
        "loadavg": os.getloadavg(),
        "settings": vars(a),
        "pair_alpha_default": PAIR_ALPHA,
        "feature_days": fd,
        "warning_or_critical": tot("warning_or_critical"),
        "false_alarm_rate": tot("warning_or_critical") / max(fd, 1),
        "false_alarm_rate_old_gate": tot("warning_or_critical_old_gate") / max(fd, 1),
        "pair_days": pdays,
        "pair_day_alarms": tot("pair_day_alarms"),
        "pair_day_false_alarm_rate": tot("pair_day_alarms") / max(pdays, 1),
        "pair_day_false_alarm_rate_old_gate": tot("pair_day_alarms_old_gate") / max(pdays, 1),
        "passes": tot("n_passes"),
        "pair_days_any_pass_alarm": tot("pair_days_any_pass_alarm"),
        "pass_days": sdays,
        "pair_day_any_pass_rate": tot("pair_days_any_pass_alarm") / max(sdays, 1),
        "pair_day_any_pass_rate_by_pair_alpha": curve,
        "runs": [{k: v for k, v in r.items() if k != "passes"} for r in runs],
        "seconds": round(time.perf_counter() - t0, 1),
        "cpu_seconds": round(time.process_time() - c0, 1),
    }
    print(json.dumps(out, indent=2))
    dst = Path(__file__).resolve().parent / "results" / "drift_far.json"
    dst.write_text(json.dumps(out, indent=2) + "\n")


def pass_record(rep: dict) -> list:
    """(feature-level severity rank, pair-test z of the whole and the short window)."""
    fs = max((_RANK[c["severity"]] for c in rep["columns"]), default=-1)
    pt = rep.get("pair_test") or {}
    return [fs, (pt.get("whole") or {}).get("z"), (pt.get("short") or {}).get("z")]


def alarmed(rec: list, pair_alpha: float, critical_only: bool = False) -> bool:
    """Would the pass recorded as ``rec`` alarm with the pair test at ``pair_alpha``?"""
    zt = float(norm.isf(pair_alpha / 2))
    pair = any(z is not None and z > zt for z in rec[1:])
    return pair or rec[0] >= (2 if critical_only else 1)


def pair_days_alarmed(passes: list, pair_alpha: float) -> int:
    days: dict[int, bool] = {}
    for day, *rec in passes:
        days[day] = days.get(day, False) or alarmed(rec, pair_alpha)
    return sum(days.values())


def one_seed(a: argparse.Namespace, seed: int) -> dict:
    t0 = time.perf_counter()
    bars = generate(days=a.days, pairs="EURUSD", seed=seed).bars
    df = F.build(bars, "EURUSD", dtype=np.float32)
    ok = [c for c in df.columns if df[c].notna().mean() > 0.95 and df[c].std() > 0]
    rng = np.random.default_rng(0)
    cols = sorted(rng.choice(ok, size=min(a.features, len(ok)), replace=False))
    cut = df.index[0] + np.timedelta64(a.train_days, "D")
    tr, te = df[df.index < cut], df[df.index >= cut]
    tb = time.process_time()
    base = build_baseline({c: tr[c].to_numpy(np.float64) for c in cols})
    baseline_cpu_s = time.process_time() - tb
    old = {k: dataclasses.replace(v, null={}, null_corr={}) for k, v in base.items()}
    arr = te[cols].to_numpy(np.float64)
    sev, sev_old = [], []
    pair_days = pair_alarms = pair_alarms_old = 0
    for e in range(DAY, len(arr) + 1, DAY):
        win = {c: arr[e - DAY : e, j] for j, c in enumerate(cols)}
        rep = drift_report(base, win)  # the default settings
        rold = drift_report(old, win)  # an old baseline: the Bartlett gate as before
        sev += [c["severity"] for c in rep["columns"]]
        sev_old += [c["severity"] for c in rold["columns"]]
        pair_days += 1
        pair_alarms += rep["severity"] in BAD
        pair_alarms_old += rold["severity"] in BAD
    passes = []
    for e in range(DAY + a.pass_every, len(arr) + 1, a.pass_every):
        rep = drift_report(base, {c: arr[e - DAY : e, j] for j, c in enumerate(cols)})
        passes.append([(e - 1) // DAY, *pass_record(rep)])
    days: dict[int, bool] = {}
    for day, *rec in passes:
        days[day] = days.get(day, False) or alarmed(rec, PAIR_ALPHA)
    return {
        "seed": seed,
        "features": len(cols),
        "feature_days": len(sev),
        "warning_or_critical": sum(s in BAD for s in sev),
        "warning_or_critical_old_gate": sum(s in BAD for s in sev_old),
        "false_alarm_rate": sum(s in BAD for s in sev) / max(len(sev), 1),
        "pair_days": pair_days,
        "pair_day_alarms": pair_alarms,
        "pair_day_alarms_old_gate": pair_alarms_old,
        "n_passes": len(passes),
        "pass_days": len(days),
        "pair_days_any_pass_alarm": int(sum(days.values())),
        "baseline_cpu_s": round(baseline_cpu_s, 2),
        "passes": passes,
        "seconds": round(time.perf_counter() - t0, 1),
    }


if __name__ == "__main__":
    main()
