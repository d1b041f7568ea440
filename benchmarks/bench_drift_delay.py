"""Drift detection delay in bars after a simulated regime change (issue 12, "Must show").

    PYTHONPATH=src .venv/bin/python benchmarks/bench_drift_delay.py [--seeds 3] [--step 10]
        [--vol-k 1.9] [--old-gate]

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
pair test, market level test; ``bqx.monitoring.drift.drift_report``). Resolution:
``--step`` bars.

Arms on the same passes: the default now (the baseline and the window also hold the market
column ``rvol_60``, realised volatility, with its level test; keys without a suffix), the
previous default (the same baseline without the market column: ``.features``) and, with
``--old-gate``, an old baseline without calibration (``.old_gate``). In the level-shift
scenario the market column is not shifted (the bars did not change). The per-pass
statistics give the delays for other pair-test levels (``first_by_pair_alpha_features_arm``)
and market-test levels (``first_by_market_alpha``); ``change_day_regime_shares`` is the
simulator's own regime over the day after the change. Raw JSON to
benchmarks/results/drift_delay_market.json (``--out`` another name).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time

import numpy as np
import pandas as pd
from _common import save_result
from bench_drift_far import MARKET_ALPHAS, PAIR_ALPHAS, alarmed, pass_record

from bqx.data.simulator import REGIME_NAMES, generate
from bqx.features import pipeline as F
from bqx.monitoring.drift import (
    MARKET_ALPHA,
    MARKET_VOL,
    PAIR_ALPHA,
    build_baseline,
    drift_report,
    level_window_means,
)

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


def _delays(
    base: dict, feats: pd.DataFrame, cols: list[str], c: int, step: int, old_gate: bool
) -> dict:
    """The default now (``market``: the features and the market column, with its level
    test), the previous default (the same baseline without the market column: ``.features``)
    and, with ``old_gate``, an old baseline without calibration (``.old_gate``), on the same
    passes."""
    mcols = cols + ([MARKET_VOL] if MARKET_VOL not in cols else [])
    new = _delays_one(base, feats, mcols, c, step)
    out = dict(new)
    arms = {"features": {k: base[k] for k in cols}}
    if old_gate:
        arms["old_gate"] = {
            k: dataclasses.replace(base[k], null={}, null_corr={}, level={}) for k in cols
        }
    for arm, b in arms.items():
        per = _delays_one(b, feats, cols, c, step)
        out.update({f"{k}.{arm}": v for k, v in per.items()})
    return out


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
    sim = generate(days=a.days, pairs="EURUSD", seed=seed)
    bars = sim.bars
    feats = F.build(bars, "EURUSD", dtype=np.float32)
    tr = feats.iloc[: a.train_days * DAY]
    ok = [c for c in feats.columns if tr[c].notna().mean() > 0.95 and tr[c].std() > 0]
    cols = sorted(np.random.default_rng(0).choice(ok, size=min(40, len(ok)), replace=False))
    mcols = cols + ([MARKET_VOL] if MARKET_VOL not in cols else [])
    base = build_baseline({f: tr[f].to_numpy(np.float64) for f in mcols})
    c = a.change_day * DAY
    assert len(feats) >= c + DAY, "not enough simulated bars"
    reg = sim.regimes.reindex(feats.index).to_numpy() if sim.regimes is not None else None
    out: dict = {"seed": seed, "market_in_features": MARKET_VOL in cols}
    lv = base[MARKET_VOL].level.get(str(DAY))
    if lv:  # the most volatile training day, in sd of the level null (the x1.9 day's rival)
        m = level_window_means(tr[MARKET_VOL].to_numpy(np.float64), DAY)
        out["market_train_level_z_max"] = round((float(m.max()) - lv[0]) / lv[1], 3)
        out["market_train_level_z_min"] = round((float(m.min()) - lv[0]) / lv[1], 3)
    if reg is not None:  # the simulator's own regime over the day after the change
        shares = np.bincount(reg[c : c + DAY].astype(int), minlength=3) / DAY
        out["change_day_regime_shares"] = dict(
            zip(REGIME_NAMES, shares.round(3).tolist(), strict=True)
        )
    for k in a.vol_k:
        vol_bars = _scale_returns(bars, feats.index[c], k)
        vf = F.build(vol_bars, "EURUSD", dtype=np.float32)
        out[f"vol_x{k:g}"] = _delays(base, vf, cols, c, a.step, a.old_gate)
    shifted = feats.copy()
    std = pd.Series({f: base[f].std for f in cols})
    shifted.iloc[c:, [feats.columns.get_loc(f) for f in cols]] += 2 * std.to_numpy()
    out["level_2sd"] = _delays(base, shifted, cols, c, a.step, a.old_gate)
    # the same passes without any change: how often a pass would have fired anyway
    out["none"] = _delays(base, feats, cols, c, a.step, a.old_gate)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=45)
    ap.add_argument("--train-days", type=int, default=25)
    ap.add_argument("--change-day", type=int, default=29)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--step", type=int, default=10)
    ap.add_argument("--vol-k", type=float, nargs="+", default=[1.9], help="volatility factors")
    ap.add_argument("--old-gate", action="store_true", help="also the Bartlett gate arm")
    ap.add_argument("--out", default="drift_delay_market.json", help="file in results/")
    a = ap.parse_args()
    t0, c0 = time.perf_counter(), time.process_time()
    runs = [run_seed(11 + i, a) for i in range(a.seeds)]
    scen = [f"vol_x{k:g}" for k in a.vol_k] + ["level_2sd", "none"]
    arms = ["", ".features"] + ([".old_gate"] if a.old_gate else [])
    summary = {}
    for sc in scen:
        for arm in arms:
            for k in ("first_warning_bars", "first_critical_bars"):
                v = [r[sc][k + arm] for r in runs]
                hit = [x for x in v if x is not None]
                summary[f"{sc}.{k}{arm or '.market'}"] = {
                    "median": float(np.median(hit)) if hit else None,
                    "max": max(hit) if hit else None,
                    "detected": f"{len(hit)}/{len(v)}",
                    "per_seed": v,
                }
    # the same passes judged with other test levels (first critical; "none": first alarm)
    curve: dict = {}
    for pa in PAIR_ALPHAS:
        row = {}
        for sc in scen:
            first = []
            for r in runs:
                hits = [p[0] for p in r[sc]["passes.features"] if alarmed(p[1:], pa, sc != "none")]
                first.append(hits[0] if hits else None)
            row[sc] = first
        curve[str(pa)] = row
    mcurve: dict = {}
    for ma in MARKET_ALPHAS:
        row = {}
        for sc in scen:
            first = []
            for r in runs:
                hits = [
                    p[0]
                    for p in r[sc]["passes"]
                    if alarmed(p[1:], PAIR_ALPHA, sc != "none", market_alpha=ma)
                ]
                first.append(hits[0] if hits else None)
            row[sc] = first
        mcurve[str(ma)] = row
    market_z = {
        sc: [[p[4] for p in r[sc]["passes"]][-1] for r in runs] for sc in scen
    }  # the market level z after 1,440 bars, per seed
    for r in runs:
        for sc in scen:
            for k in [k for k in r[sc] if k.startswith("passes")]:
                r[sc].pop(k)
    out = {
        "benchmark": "drift_delay_market",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus (shared, loaded)",
        "settings": vars(a),
        "window_bars": DAY,
        "pair_alpha_default": PAIR_ALPHA,
        "market_alpha_default": MARKET_ALPHA,
        "market_column": MARKET_VOL,
        "loadavg": os.getloadavg(),
        "summary": summary,
        "market_z_after_1440": market_z,
        "first_by_pair_alpha_features_arm": curve,
        "first_by_market_alpha": mcurve,
        "runs": runs,
    }
    save_result(out, a.out, t0, c0)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
