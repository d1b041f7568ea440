"""Would a pair's volatility *relative to the market* catch a x1.9 change within a day?
(issue 12 item 4, a feasibility measurement for a follow-up; nothing in the product uses it.)

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
on the common grid); the first 25 days are the training segment, whose day-level nulls
(``level_null``: mean and sd of the 1,440-bar window means, a window every 60 bars) are
computed for both statistics - ``own`` (the market column as monitored today) and ``rel``.
Then, for each of the 28 pairs:

* unchanged, the trading days after the training segment: a pass every 60 bars, z of both
  statistics; a pair-day is alarmed when any pass of the day has |z| > the default level's
  threshold (two-sided ``MARKET_ALPHA``), and, as the issue's feature-day rate counts, when
  the day's last pass (its whole-day window) has;
* pair-specific x1.9 from day 29: the pair's log-price moves x 1.9 (the other pairs
  unchanged), rvol recomputed; a pass every 10 bars over the last 1,440 bars; bars until
  the first pass with z above the threshold (None: not within the day).

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
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtri

from bqx.data.simulator import generate
from bqx.monitoring.drift import MARKET_ALPHA, level_null

DAY = 1440
W = 60


def _log_rvol(lc: pd.DataFrame) -> pd.DataFrame:
    return np.log(lc.diff().rolling(W).std(ddof=0))


def _rel(lrv: pd.DataFrame, pair: str, train: int) -> np.ndarray:
    oth = lrv.drop(columns=pair)
    centers = oth.iloc[:train].mean()
    return (lrv[pair] - (oth - centers).mean(axis=1)).to_numpy()


def _z(series: np.ndarray, null: list[float], ends: np.ndarray) -> np.ndarray:
    cs = np.concatenate([[0.0], np.nancumsum(series)])
    cn = np.concatenate([[0], np.cumsum(np.isfinite(series))])
    m = (cs[ends] - cs[ends - DAY]) / np.maximum(cn[ends] - cn[ends - DAY], 1)
    return np.asarray((m - null[0]) / null[1])


def run_seed(seed: int, days: int, train_days: int, change_day: int, thr: float) -> dict:
    sim = generate(days=days, seed=seed)
    lc = np.log(sim.bars.pivot(index="ts", columns="pair", values="close"))
    lrv = _log_rvol(lc)
    train = train_days * DAY
    n = len(lrv)
    c = change_day * DAY
    out: dict = {"seed": seed, "pairs": {}}
    for pair in lrv.columns:
        own = lrv[pair].to_numpy()
        rel = _rel(lrv, pair, train)
        nulls = {
            "own": level_null(np.exp(own[W:train]))["1440"],
            "rel": level_null(np.exp(rel[W:train]))["1440"],
        }
        # unchanged: a pass every 60 bars from the end of training on, per day any |z| > thr
        ends = np.arange(train + DAY, n + 1, 60)
        day_of = (ends - train - 1) // DAY
        rec: dict = {"null_sd": {k: round(v[1], 4) for k, v in nulls.items()}}
        for k, s in (("own", own), ("rel", rel)):
            z = np.abs(_z(s, nulls[k], ends))
            alarmed = [bool((z[day_of == d] > thr).any()) for d in np.unique(day_of)]
            rec[f"{k}_days"] = len(alarmed)
            rec[f"{k}_days_alarmed"] = int(sum(alarmed))
            # one pass a day (the window of each whole day after training, as the issue's
            # feature-day rate counts): the last pass of every day
            last = [int(np.flatnonzero(day_of == d)[-1]) for d in np.unique(day_of)]
            rec[f"{k}_days_alarmed_one_pass"] = int((z[last] > thr).sum())
        # the pair alone x1.9 from the change on
        moved = lc.copy()
        anchor = moved[pair].iloc[c - 1]
        moved.iloc[c:, moved.columns.get_loc(pair)] = anchor + 1.9 * (moved[pair].iloc[c:] - anchor)
        lrv2 = _log_rvol(moved)
        ends2 = c + np.arange(10, DAY + 1, 10)
        for k, s in (("own", lrv2[pair].to_numpy()), ("rel", _rel(lrv2, pair, train))):
            z = _z(s, nulls[k], ends2)
            hit = np.flatnonzero(z > thr)
            rec[f"{k}_x1.9_first_bars"] = int(ends2[hit[0]] - c) if len(hit) else None
            rec[f"{k}_x1.9_z_after_day"] = round(float(z[-1]), 3)
        out["pairs"][pair] = rec
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--days", type=int, default=45)
    ap.add_argument("--train-days", type=int, default=25)
    ap.add_argument("--change-day", type=int, default=29)
    ap.add_argument("--out", default="drift_relative.json")
    a = ap.parse_args()
    thr = float(ndtri(1 - MARKET_ALPHA / 2))
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
    res = {
        "benchmark": "drift_relative",
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "loadavg": list(os.getloadavg()),
        "settings": vars(a),
        "threshold_z": round(thr, 3),
        "summary": summary,
        "runs": runs,
        "seconds": round(time.perf_counter() - t0, 1),
        "cpu_seconds": round(time.process_time() - c0, 1),
    }
    print(json.dumps(summary, indent=1))
    path = Path(__file__).resolve().parent / "results" / a.out
    path.write_text(json.dumps(res, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
