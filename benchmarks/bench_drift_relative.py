"""Does a pair's volatility *relative to the market* catch a x1.9 change within a day?
(issue 12 item 4: the market columns ``rvol_60`` and ``rvol_60_rel`` of bqx.monitoring.drift.)

    PYTHONPATH=src .venv/bin/python benchmarks/bench_drift_relative.py [--seeds 6]
        [--out benchmarks/results/drift_relative.json]

The market level test (``bqx.monitoring.drift.level_test`` on ``rvol_60``) compares the
day's mean of ln rvol with the training days' own spread of day levels. The simulator's
volatility regime (calm x0.7 / normal x1.0 / turbulent x1.9) is shared by every pair, so
that spread holds the regimes, and a x1.9 change lands inside it on most days
(docs/performance.md, "Drift: a market volatility column"). A pair's ln rvol minus the
cross-section's (the mean over the 27 other pairs of ln rvol minus each one's training
mean) cancels what all pairs share - the regime and the session curve - and keeps what is
the pair's own.

Per seed: 45 simulated days of all 28 pairs, rvol_60 of every pair as the population std of
the last 60 one-bar log returns of the closes (the pipeline's definition; the closes pivoted
on the common grid); the first 25 days are the training segment. Both columns are
baselined by the product's code (``column_baseline`` with the level null: mean and sd of the
1,440-bar window means of ln value, a window every 60 bars; ``relative_column`` gives the
training values of ``rvol_60_rel`` and the centres) and tested by it (``relative_vol`` with
those centres, ``level_test`` on the finite values of the last 1,440 bars, as the pass
does): ``own`` = ``rvol_60``, ``rel`` = ``rvol_60_rel``.
Then, for each of the 28 pairs:

* unchanged, the trading days after the training segment: a pass every 60 bars, z of both
  statistics; a pair-day is alarmed when any pass of the day has |z| > the default level's
  threshold (two-sided ``MARKET_ALPHA``, the level test's predictive threshold for the
  training days: 4.1 for 25), and, as the issue's feature-day rate counts, when the day's
  last pass (its whole-day window) has; ``by_threshold`` judges the same passes at other
  levels, predictive and normal;
* pair-specific x1.9 from day 29: the pair's log-price moves x 1.9 (the other pairs
  unchanged), rvol recomputed; a pass every 10 bars over the last 1,440 bars; bars until
  the first pass with z above the threshold (None: not within the day);
* one currency x1.9 from day 29: the log-price moves of its 7 pairs x1.9 together (a
  stand-in for the currency's own volatility; the cross-section then moves by 6 of the 27
  others), each of the 7 tested against its own baseline, for each of the 8 currencies.

A market-wide x1.9 leaves ``rel`` unchanged by construction (every pair moves alike), so
``rel`` adds to ``own`` and does not replace it. Prints and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from _common import save_result
from scipy.special import ndtri

from bqx.data.simulator import generate
from bqx.monitoring.drift import (
    MARKET_ALPHA,
    MARKET_REL,
    MARKET_VOL,
    ColumnBaseline,
    column_baseline,
    level_test,
    level_z_threshold,
    relative_column,
    relative_vol,
)
from bqx.universe import CURRENCIES

DAY = 1440
W = 60
#: two-sided levels of the trade-off curve (0.0005: MARKET_ALPHA, the default), each
#: judged, as the product's level test does, against the predictive threshold for the
#: baselines' number of training days (``level_z_threshold``); ``normal`` rows judge the
#: same z against the normal quantile (the test before it was predictive)
ALPHAS = (0.001, 0.0005, 0.00025, 0.0001)


def _rvol(lc: pd.DataFrame) -> pd.DataFrame:
    return lc.diff().rolling(W).std(ddof=0)


def _z(series: np.ndarray, base: ColumnBaseline, ends: np.ndarray) -> np.ndarray:
    """The product's level test (as the pass runs it) on the window ending at each end."""
    out = []
    for e in ends:
        w = series[e - DAY : e]
        t = level_test(base, w[np.isfinite(w)])
        out.append(t["z"] if t else np.nan)
    return np.asarray(out)


def _relative(rv: pd.DataFrame, pair: str, centers: dict[str, float]) -> np.ndarray:
    names = list(centers)
    o = rv[names].to_numpy()
    return relative_vol(rv[pair].to_numpy(), o, np.array([centers[p] for p in names]))


def run_seed(seed: int, days: int, train_days: int, change_day: int, thr: float) -> dict:
    sim = generate(days=days, seed=seed)
    lc = np.log(sim.bars.pivot(index="ts", columns="pair", values="close"))
    rv = _rvol(lc)
    train = train_days * DAY
    n = len(rv)
    c = change_day * DAY
    tr = slice(W, train)  # the training rows (after the first rvol)
    out: dict = {"seed": seed, "pairs": {}}
    for pair in rv.columns:
        own = rv[pair].to_numpy()
        # training: the product's baseline of both columns (relative_column: the centres)
        others = {p: rv[p].to_numpy()[tr] for p in rv.columns if p != pair}
        rel_tr, centers = relative_column(own[tr], others)
        bases = {
            "own": column_baseline(MARKET_VOL, own[tr], level=True),
            "rel": column_baseline(MARKET_REL, rel_tr[np.isfinite(rel_tr)], level=True),
        }
        rel = _relative(rv, pair, centers)  # the pass: relative_vol with those centres
        # unchanged: a pass every 60 bars from the end of training on, per day any |z| > thr
        ends = np.arange(train + DAY, n + 1, 60)
        day_of = (ends - train - 1) // DAY
        rec: dict = {"null_sd": {k: round(b.level["1440"][1], 4) for k, b in bases.items()}}
        for k, s in (("own", own), ("rel", rel)):
            z = np.abs(_z(s, bases[k], ends))
            alarmed = [bool((z[day_of == d] > thr).any()) for d in np.unique(day_of)]
            rec[f"{k}_days"] = len(alarmed)
            rec[f"{k}_days_alarmed"] = int(sum(alarmed))
            rec[f"{k}_alarmed_by_day"] = alarmed
            rec[f"{k}_day_max_abs_z"] = [
                round(float(np.nanmax(z[day_of == d])), 3) for d in np.unique(day_of)
            ]
            # one pass a day (the window of each whole day after training, as the issue's
            # feature-day rate counts): the last pass of every day
            last = [int(np.flatnonzero(day_of == d)[-1]) for d in np.unique(day_of)]
            rec[f"{k}_days_alarmed_one_pass"] = int((z[last] > thr).sum())
        # the pair alone x1.9 from the change on
        moved = lc.copy()
        anchor = moved[pair].iloc[c - 1]
        moved.iloc[c:, moved.columns.get_loc(pair)] = anchor + 1.9 * (moved[pair].iloc[c:] - anchor)
        rv2 = _rvol(moved)
        ends2 = c + np.arange(10, DAY + 1, 10)
        for k, s in (("own", rv2[pair].to_numpy()), ("rel", _relative(rv2, pair, centers))):
            z = _z(s, bases[k], ends2)
            hit = np.flatnonzero(z > thr)
            rec[f"{k}_x1.9_first_bars"] = int(ends2[hit[0]] - c) if len(hit) else None
            rec[f"{k}_x1.9_z_after_day"] = round(float(z[-1]), 3)
            rec[f"{k}_x1.9_max_z"] = round(float(np.nanmax(z)), 3)
        out["pairs"][pair] = rec
        out.setdefault("_fit", {})[pair] = (bases, centers)
    # one currency's pairs x1.9 together (its 7 pairs' log-prices moved x1.9 from the change
    # on): each of them tested against its own baseline, the cross-section moved by 6 of 27
    out["currency"] = {}
    for ccy in CURRENCIES:
        members = [p for p in rv.columns if ccy in (p[:3], p[3:])]
        moved = lc.copy()
        for p in members:
            anchor = moved[p].iloc[c - 1]
            moved.iloc[c:, moved.columns.get_loc(p)] = anchor + 1.9 * (moved[p].iloc[c:] - anchor)
        rv2 = _rvol(moved)
        ends2 = c + np.arange(10, DAY + 1, 10)
        rec = {}
        for p in members:
            bases, centers = out["_fit"][p]
            for k, s in (("own", rv2[p].to_numpy()), ("rel", _relative(rv2, p, centers))):
                z = _z(s, bases[k], ends2)
                hit = np.flatnonzero(z > thr)
                rec.setdefault(k, {})[p] = int(ends2[hit[0]] - c) if len(hit) else None
                rec.setdefault(f"{k}_max_z", {})[p] = round(float(np.nanmax(z)), 3)
        out["currency"][ccy] = rec
    del out["_fit"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--days", type=int, default=45)
    ap.add_argument("--train-days", type=int, default=25)
    ap.add_argument("--change-day", type=int, default=29)
    ap.add_argument("--out", default="drift_relative.json")
    a = ap.parse_args()
    n = float(a.train_days)  # the baselines' training windows (one per training day)
    thr = level_z_threshold({"training_windows": n, "df": n - 1}, MARKET_ALPHA)
    t0, c0 = time.perf_counter(), time.process_time()
    runs = [run_seed(11 + i, a.days, a.train_days, a.change_day, thr) for i in range(a.seeds)]
    summary: dict = {}
    for k in ("own", "rel"):
        recs = [r for run in runs for r in run["pairs"].values()]
        days = sum(r[f"{k}_days"] for r in recs)
        alarmed = sum(r[f"{k}_days_alarmed"] for r in recs)
        first = [r[f"{k}_x1.9_first_bars"] for r in recs]
        found = [f for f in first if f is not None]
        sds = np.array([r["null_sd"][k] for r in recs])
        summary[k] = {
            "null_sd_median": round(float(np.median(sds)), 4),
            "null_sd_range": [round(float(sds.min()), 4), round(float(sds.max()), 4)],
            "ln1.9_over_null_sd_median": round(float(np.log(1.9) / np.median(sds)), 2),
            "unchanged_pair_days": days,
            "unchanged_pair_days_alarmed": alarmed,
            "unchanged_pair_day_rate_pct": round(100 * alarmed / max(days, 1), 2),
            "unchanged_one_pass_a_day_alarmed": sum(r[f"{k}_days_alarmed_one_pass"] for r in recs),
            "unchanged_one_pass_a_day_rate_pct": round(
                100 * sum(r[f"{k}_days_alarmed_one_pass"] for r in recs) / max(days, 1), 2
            ),
            "pair_x1.9_found_within_a_day": len(found),
            "pair_x1.9_runs": len(first),
            "pair_x1.9_found_pct": round(100 * len(found) / max(len(first), 1), 1),
            "pair_x1.9_first_bars_median": float(np.median(found)) if found else None,
        }
    # both columns in one pass (the pair's market tests together): a day alarmed by either
    both = [
        a or b
        for run in runs
        for r in run["pairs"].values()
        for a, b in zip(r["own_alarmed_by_day"], r["rel_alarmed_by_day"], strict=True)
    ]
    summary["either"] = {
        "unchanged_pair_days": len(both),
        "unchanged_pair_days_alarmed": int(sum(both)),
        "unchanged_pair_day_rate_pct": round(100 * sum(both) / max(len(both), 1), 2),
    }
    for k in ("own", "rel"):
        first = [f for run in runs for cur in run["currency"].values() for f in cur[k].values()]
        found = [f for f in first if f is not None]
        summary[k].update(
            {
                "currency_x1.9_found_within_a_day": len(found),
                "currency_x1.9_runs": len(first),
                "currency_x1.9_found_pct": round(100 * len(found) / max(len(first), 1), 1),
                "currency_x1.9_first_bars_median": float(np.median(found)) if found else None,
            }
        )
    # the same passes judged at other levels: the trade-off
    recs = [r for run in runs for r in run["pairs"].values()]
    cur = [run["currency"][c] for run in runs for c in run["currency"]]
    curve = []
    for alpha in ALPHAS:
        for kind in ("predictive", "normal"):
            t = (
                level_z_threshold({"training_windows": n, "df": n - 1}, alpha)
                if kind == "predictive"
                else float(ndtri(1 - alpha / 2))
            )
            row: dict = {"alpha": alpha, "threshold": kind, "z": round(t, 3)}
            for k in ("own", "rel"):
                days = [m > t for r in recs for m in r[f"{k}_day_max_abs_z"]]
                row[f"{k}_pair_day_pct"] = round(100 * sum(days) / len(days), 2)
                row[f"{k}_pair_x1.9_pct"] = round(
                    100 * np.mean([r[f"{k}_x1.9_max_z"] > t for r in recs]), 1
                )
                row[f"{k}_currency_x1.9_pct"] = round(
                    100 * np.mean([m > t for c in cur for m in c[f"{k}_max_z"].values()]), 1
                )
            either = [
                max(x, y) > t
                for r in recs
                for x, y in zip(r["own_day_max_abs_z"], r["rel_day_max_abs_z"], strict=True)
            ]
            row["either_pair_day_pct"] = round(100 * sum(either) / len(either), 2)
            curve.append(row)
    summary["by_threshold"] = curve
    res = {
        "benchmark": "drift_relative",
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "loadavg": list(os.getloadavg()),
        "settings": vars(a),
        "threshold_z": round(thr, 3),
        "summary": summary,
        "runs": runs,
    }
    print(json.dumps(summary, indent=1))
    print(f"wrote {save_result(res, a.out, t0, c0, indent=1)}")


if __name__ == "__main__":
    main()
