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

Arms on the same windows (issue 12 item 4, the market column): ``market`` - the default
now: the baseline also holds the market column ``rvol_60`` (realised volatility, with its
level null) and the window carries it beside the features; ``features`` - the previous
default, the same baseline without the market column; with ``--old-gate`` also an old
baseline without any calibration (Bartlett n_eff, no short window, no pair test). Feature-day
rates count the selected features only; the market column's own column-days are counted
apart. Per pass the market level z is kept, so the pair-day rate is also given for other
market-test levels (``pair_day_any_pass_rate_by_market_alpha``).

Run: PYTHONPATH=src python benchmarks/bench_drift_far.py --seeds 6
(raw JSON to benchmarks/results/drift_far_market.json; ``--out`` another name).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time

import numpy as np
from _common import save_result
from scipy.stats import norm

from bqx.data.simulator import generate
from bqx.features import pipeline as F
from bqx.monitoring.drift import (
    _RANK,
    MARKET_ALPHA,
    MARKET_VOL,
    PAIR_ALPHA,
    build_baseline,
    drift_report,
    level_z_threshold,
)

DAY = 1440
BAD = ("warning", "critical")
#: pair-test levels for the trade-off curve (per pass, split over the two windows)
PAIR_ALPHAS = (0.01, 0.005, 0.002, 0.001, 0.0005, 0.0002, 0.0001)


#: market level-test levels for the trade-off curve (two-sided, per pass)
MARKET_ALPHAS = (0.05, 0.025, 0.01, 0.002, 0.001, 0.0005, 0.0002, 0.0001, 0.00002)
ARMS = ("market", "features", "old_gate")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--train-days", type=int, default=30)
    ap.add_argument("--features", type=int, default=40)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--seeds", type=int, default=1, help="seeds seed, seed+1, ... pooled")
    ap.add_argument("--pass-every", type=int, default=30, help="bars between passes")
    ap.add_argument("--old-gate", action="store_true", help="also the Bartlett gate arm")
    ap.add_argument("--out", default="drift_far_market.json", help="file in results/")
    a = ap.parse_args()
    t0, c0 = time.perf_counter(), time.process_time()
    runs = [one_seed(a, a.seed + i) for i in range(a.seeds)]

    def tot(k: str) -> int:
        return int(sum(r.get(k, 0) for r in runs))

    sdays = tot("pass_days")
    arms: dict = {}
    for arm in ARMS:
        if f"{arm}.feature_days" not in runs[0]:
            continue
        fd, pdays = tot(f"{arm}.feature_days"), tot(f"{arm}.pair_days")
        row = {
            "feature_days": fd,
            "warning_or_critical": tot(f"{arm}.warning_or_critical"),
            "false_alarm_rate": tot(f"{arm}.warning_or_critical") / max(fd, 1),
            "pair_days": pdays,
            "pair_day_alarms": tot(f"{arm}.pair_day_alarms"),
            "pair_day_false_alarm_rate": tot(f"{arm}.pair_day_alarms") / max(pdays, 1),
        }
        if arm == "market":
            md = tot("market.market_days")
            row.update(
                market_column_days=md,
                market_column_alarms=tot("market.market_alarms"),
                market_column_false_alarm_rate=tot("market.market_alarms") / max(md, 1),
            )
        if f"{arm}.passes" in runs[0]:
            ma = MARKET_ALPHA if arm == "market" else None
            n = sum(pair_days_alarmed(r[f"{arm}.passes"], PAIR_ALPHA, ma) for r in runs)
            row.update(
                passes=sum(len(r[f"{arm}.passes"]) for r in runs),
                pass_days=sdays,
                pair_days_any_pass_alarm=n,
                pair_day_any_pass_rate=n / max(sdays, 1),
            )
            row["pair_day_any_pass_rate_by_pair_alpha"] = {
                str(pa): sum(pair_days_alarmed(r[f"{arm}.passes"], pa, ma) for r in runs)
                / max(sdays, 1)
                for pa in PAIR_ALPHAS
            }
            if arm == "market":
                row["pair_day_any_pass_rate_by_market_alpha"] = {
                    str(m): sum(pair_days_alarmed(r["market.passes"], PAIR_ALPHA, m) for r in runs)
                    / max(sdays, 1)
                    for m in MARKET_ALPHAS
                }
                zs = [p[4] for r in runs for p in r["market.passes"] if p[4] is not None]
                row["market_z_passes"] = {
                    "n": len(zs),
                    "mean": float(np.mean(zs)),
                    "sd": float(np.std(zs, ddof=1)),
                    "min": float(np.min(zs)),
                    "max": float(np.max(zs)),
                    "max_abs_per_seed": [
                        round(max(abs(p[4]) for p in r["market.passes"] if p[4] is not None), 3)
                        for r in runs
                    ],
                }
        arms[arm] = row
    out = {
        "benchmark": "drift_far_market",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus (shared, loaded)",
        "loadavg": os.getloadavg(),
        "settings": vars(a),
        "pair_alpha_default": PAIR_ALPHA,
        "market_alpha_default": MARKET_ALPHA,
        "market_column": MARKET_VOL,
        "arms": arms,
        "runs": [{k: v for k, v in r.items() if not k.endswith("passes")} for r in runs],
    }
    save_result(out, a.out, t0, c0)
    print(json.dumps(out, indent=2))


def pass_record(rep: dict) -> list:
    """(column-level severity rank from KL alone, pair-test z of the whole and the short
    window, the market level test's z and its number of training windows, or None)."""
    mk = rep.get("market") or {}
    fs = max(
        (_RANK[mk[c["name"]]["kl_severity"] if c["name"] in mk else c["severity"]]
         for c in rep["columns"]),
        default=-1,
    )  # fmt: skip
    pt = rep.get("pair_test") or {}
    m = mk.get(MARKET_VOL)
    zm, nm = (m["z"], m["training_windows"]) if m else (None, None)
    return [fs, (pt.get("whole") or {}).get("z"), (pt.get("short") or {}).get("z"), zm, nm]


def alarmed(
    rec: list, pair_alpha: float, critical_only: bool = False, market_alpha: float | None = None
) -> bool:
    """Would the pass recorded as ``rec`` alarm with the pair test at ``pair_alpha`` (and
    the market level test at ``market_alpha``, two-sided; None: not applied)?"""
    zt = float(norm.isf(pair_alpha / 2))
    pair = any(z is not None and z > zt for z in rec[1:3])
    zm = rec[3] if len(rec) > 3 else None
    level = (
        market_alpha is not None
        and zm is not None
        and abs(zm)
        > level_z_threshold({"training_windows": rec[4], "df": rec[4] - 1}, market_alpha)
    )  # the product's predictive threshold (level_test)
    return pair or level or rec[0] >= (2 if critical_only else 1)


def pair_days_alarmed(passes: list, pair_alpha: float, market_alpha: float | None = None) -> int:
    days: dict[int, bool] = {}
    for day, *rec in passes:
        days[day] = days.get(day, False) or alarmed(rec, pair_alpha, market_alpha=market_alpha)
    return sum(days.values())


def one_seed(a: argparse.Namespace, seed: int) -> dict:
    """Per seed: the new default (the features and the market column, ``market``), the
    previous default (the same baseline without the market column, ``features``) and, with
    ``--old-gate``, an old baseline without any calibration, all on the same windows."""
    t0 = time.perf_counter()
    bars = generate(days=a.days, pairs="EURUSD", seed=seed).bars
    df = F.build(bars, "EURUSD", dtype=np.float32)
    ok = [c for c in df.columns if df[c].notna().mean() > 0.95 and df[c].std() > 0]
    rng = np.random.default_rng(0)
    cols = sorted(rng.choice(ok, size=min(a.features, len(ok)), replace=False))
    mcols = cols + ([MARKET_VOL] if MARKET_VOL not in cols else [])
    cut = df.index[0] + np.timedelta64(a.train_days, "D")
    tr, te = df[df.index < cut], df[df.index >= cut]
    tb = time.process_time()
    base = build_baseline({c: tr[c].to_numpy(np.float64) for c in mcols})
    baseline_cpu_s = time.process_time() - tb
    bases = {
        "market": (base, mcols),
        "features": ({c: base[c] for c in cols}, cols),  # = build_baseline(cols) exactly
    }
    if a.old_gate:
        old = {c: dataclasses.replace(base[c], null={}, null_corr={}) for c in cols}
        bases["old_gate"] = (old, cols)
    arr = te[mcols].to_numpy(np.float64)
    out: dict = {"seed": seed, "features": len(cols), "market_in_features": MARKET_VOL in cols}
    for arm, (b, cs) in bases.items():
        sev, msev = [], []
        pair_days = pair_alarms = 0
        for e in range(DAY, len(arr) + 1, DAY):
            rep = drift_report(b, {c: arr[e - DAY : e, mcols.index(c)] for c in cs})
            sev += [c["severity"] for c in rep["columns"] if c["name"] in cols]
            msev += [c["severity"] for c in rep["columns"] if c["name"] not in cols]
            pair_days += 1
            pair_alarms += rep["severity"] in BAD
        out.update(
            {
                f"{arm}.feature_days": len(sev),
                f"{arm}.warning_or_critical": sum(s in BAD for s in sev),
                f"{arm}.pair_days": pair_days,
                f"{arm}.pair_day_alarms": pair_alarms,
            }
        )
        if arm == "market":
            out["market.market_days"] = len(msev)
            out["market.market_alarms"] = sum(s in BAD for s in msev)
        if arm == "old_gate":
            continue
        passes = []
        for e in range(DAY + a.pass_every, len(arr) + 1, a.pass_every):
            rep = drift_report(b, {c: arr[e - DAY : e, mcols.index(c)] for c in cs})
            passes.append([(e - 1) // DAY, *pass_record(rep)])
        out[f"{arm}.passes"] = passes
    out["pass_days"] = len({p[0] for p in out["market.passes"]})
    out["baseline_cpu_s"] = round(baseline_cpu_s, 2)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


if __name__ == "__main__":
    main()
