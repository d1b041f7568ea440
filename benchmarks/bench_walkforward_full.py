"""Walk-forward at full size (issue 15 item 5): the SPEC random forest (scikit-learn, ``rf``)
vs the same forest in LightGBM's random-forest mode (``lgbm_rf``) on the same data and windows.

Every window retrains as in production (:func:`bqx.backtest.walkforward.predict_window`:
feature selection on the window's fitting rows, fit, shrinkage + conformal calibration on its
later calibration rows, predictions for the test month); the candidates are computed once by
the feature store and each window reads its slice; windows run in parallel (``--jobs``).

Reported per model: wall time of the whole run, per-window stage times (read, selection, fit,
predict), and out-of-sample quality per window and pooled: R² and directional accuracy with
overlap-aware 95 % intervals (:mod:`bqx.stats`, HAC with the 60-bar overlap); and, paired on
the same rows, the R² gain and the DA difference of each model over ``rf`` (else the first).

The full size is 28 pairs x 12 windows (``--pairs all --windows 12``, the default). A subset
(``--pairs EURUSD,USDJPY,GBPNZD,AUDCAD --windows 3``) has the same data size per window (6
training months + 1 test month); ``projection`` scales its measured per-window time to
28 x 12 windows at the same parallelism, and is labelled as a projection.

Usage: ``.venv/bin/python benchmarks/bench_walkforward_full.py [--pairs all] [--windows 12]
[--models rf,lgbm_rf] [--jobs 2] [--out benchmarks/results/walkforward_full.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np


def quality(pred: Any, horizon: int) -> dict[str, Any]:
    from bqx.stats import metric_estimates

    y = pred["y_true"].to_numpy(np.float64)
    p = pred["prediction"].to_numpy(np.float64)
    est = metric_estimates(y, p, horizon=horizon)
    return {"r2": est["r2"].as_dict(), "da": est["da"].as_dict(), "n": int(np.isfinite(y).sum())}


def paired(a: Any, b: Any, horizon: int) -> dict[str, Any]:
    """Model b vs model a on the same rows: R² gain of b over a, DA(b) - DA(a), with HAC
    intervals (positive = b better)."""
    from bqx.stats import mean_estimate, skill_vs_baseline

    m = a.merge(b, on=["pair", "ts"], suffixes=("_a", "_b"))
    m = m.sort_values(["pair", "ts"], kind="stable")
    out: dict[str, Any] = {"rows": len(m)}
    gains, dadiff = [], []
    for _, g in m.groupby("pair", sort=True):
        y = g["y_true_a"].to_numpy(np.float64)
        pa = g["prediction_a"].to_numpy(np.float64)
        pb = g["prediction_b"].to_numpy(np.float64)
        ok = np.isfinite(y) & np.isfinite(pa) & np.isfinite(pb) & (y != 0)
        gains.append((y[ok], pb[ok], pa[ok]))
        dadiff.append(
            (np.sign(pb[ok]) == np.sign(y[ok])).astype(float)
            - (np.sign(pa[ok]) == np.sign(y[ok])).astype(float)
        )
    # pooled over pairs: concatenated series (the HAC lags span one pair's overlap; the joins
    # between pairs are a handful of rows among hundreds of thousands)
    y = np.concatenate([g[0] for g in gains])
    pb = np.concatenate([g[1] for g in gains])
    pa = np.concatenate([g[2] for g in gains])
    out["r2_gain"] = skill_vs_baseline(y, pb, pa, horizon=horizon).as_dict()
    out["da_diff"] = mean_estimate(np.concatenate(dadiff), horizon).as_dict()
    return out


def per_window(pred: Any, horizon: int) -> list[dict[str, Any]]:
    rows = []
    for (pair, w), g in pred.groupby(["pair", "window"], sort=True):
        q = quality(g, horizon)
        rows.append(
            {
                "pair": pair,
                "window": int(w),
                "r2": q["r2"]["value"],
                "r2_lo": q["r2"]["lo"],
                "r2_hi": q["r2"]["hi"],
                "da": q["da"]["value"],
                "da_lo": q["da"]["lo"],
                "da_hi": q["da"]["hi"],
                "n_eff": q["r2"].get("n_eff"),
                "n_features": int(g["n_features"].iloc[0]),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", default="all")
    ap.add_argument("--windows", type=int, default=12)
    ap.add_argument("--train-months", type=int, default=6)
    ap.add_argument("--models", default="rf,lgbm_rf")
    ap.add_argument(
        "--selection-engines",
        default=None,
        help="comma list (sklearn,lightgbm): run every model with each selection engine on the "
        "same windows; arms are named model+engine; default: the configured engine only",
    )
    ap.add_argument("--arms", default=None, help="explicit arms, e.g. lgbm_rf+sklearn,rf+lightgbm")
    ap.add_argument("--seed", type=int, default=8, help="simulator seed of the data")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--strength", type=float, default=0.05)
    ap.add_argument("--home", default=None)
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args()
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="bqx-bench-wff-"))
    os.environ["BQX_HOME"] = str(home)

    from bqx.backtest.walkforward import (
        WalkForwardConfig,
        ensure_features,
        walk_forward_predictions,
    )
    from bqx.config import Settings
    from bqx.data.simulator import generate
    from bqx.data.store import open_store
    from bqx.universe import normalize_pairs

    s = Settings(home=home)
    s.ensure_home()
    pairs = normalize_pairs(args.pairs)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    out: dict[str, Any] = {
        "benchmark": "walk_forward_full",
        "machine": {
            "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_start": os.getloadavg(),
        },
        "pairs": pairs,
        "windows": args.windows,
        "train_months": args.train_months,
        "jobs": args.jobs,
        "strength": args.strength,
        "seed": args.seed,
        "models": models,
    }
    store = open_store(settings=s)
    if not store.pairs():
        months = args.train_months + args.windows + 1
        t0 = time.perf_counter()
        store.upsert(
            generate(
                days=months * 30.6 + 3,
                seed=args.seed,
                signal_strength=args.strength,
                start="2023-01-01",
            ).bars
        )
        out["data_s"] = round(time.perf_counter() - t0, 1)
    store.close()
    t0 = time.perf_counter()
    ensure_features(pairs, s, jobs=args.jobs)
    out["features_s"] = round(time.perf_counter() - t0, 1)

    preds: dict[str, Any] = {}
    selected: dict[str, dict[str, list[str]]] = {}
    results: dict[str, Any] = {}
    engines = (
        [e.strip() for e in args.selection_engines.split(",") if e.strip()]
        if args.selection_engines
        else [None]
    )
    arms = [(m, e) for m in models for e in engines]
    if args.arms:  # explicit model+engine arms instead of the cross product
        arms = [
            (a.split("+")[0], a.split("+")[1] if "+" in a else None)
            for a in args.arms.split(",")
            if a.strip()
        ]
    out["arms"] = [m if e is None else f"{m}+{e}" for m, e in arms]
    for model, engine in arms:
        m = model if engine is None else f"{model}+{engine}"
        se = (
            s
            if engine is None
            else s.model_copy(
                update={"train": s.train.model_copy(update={"selection_engine": engine})}
            )
        )
        cfg = WalkForwardConfig(
            train_months=args.train_months, test_months=1, windows=args.windows, model=model
        )
        t0 = time.perf_counter()
        pred, info = walk_forward_predictions(pairs, se, cfg, jobs=args.jobs)
        wall = time.perf_counter() - t0
        preds[m] = pred
        selected[m] = info.get("selected_features", {})
        ws = info["window_seconds"]
        stages = sorted({k for v in ws.values() for k in v})
        n_win = len(ws)
        per_win_wall = wall / n_win
        full = 28 * 12
        results[m] = {
            "wall_s": round(wall, 1),
            "windows_run": n_win,
            "errors": info["errors"],
            "wall_per_window_s": round(per_win_wall, 2),
            "median_window_stage_s": {
                k: round(statistics.median(v[k] for v in ws.values() if k in v), 2) for k in stages
            },
            "window_seconds": ws,
            "quality_pooled": quality(pred, s.horizon),
            "per_window": per_window(pred, s.horizon),
            "projection_28x12": {
                "label": "projection from the measured wall time per window at this --jobs",
                "windows": full,
                "seconds": round(per_win_wall * full, 0),
                "minutes": round(per_win_wall * full / 60, 1),
                "measured": n_win == full,
            },
            # on a shared, overloaded box wall time measures the other tenants; the CPU seconds
            # of each window's worker measure the work: on `jobs` free cores it takes about
            # sum(cpu) / jobs
            "projection_28x12_free_cores": {
                "label": "projection: mean CPU s per window x 336 / --jobs (cores not shared)",
                "cpu_per_window_s": round(statistics.mean(v.get("cpu", 0) for v in ws.values()), 1),
                "minutes": round(
                    statistics.mean(v.get("cpu", 0) for v in ws.values()) * full / args.jobs / 60,
                    1,
                ),
            },
        }
        print(
            json.dumps({m: {k: results[m][k] for k in ("wall_s", "wall_per_window_s", "errors")}}),
            flush=True,
        )
    out["results"] = results
    names = out["arms"]
    if len(names) > 1:
        base = "rf" if "rf" in names else names[0]
        out["paired_vs_" + base] = {
            m: paired(preds[base], preds[m], s.horizon) for m in names if m != base
        }
        # selected-feature overlap per window (Jaccard of the two sets) vs the base arm
        out["selection_overlap_vs_" + base] = {
            m: {
                w: round(
                    len(set(f) & set(selected[base].get(w, [])))
                    / max(1, len(set(f) | set(selected[base].get(w, [])))),
                    3,
                )
                for w, f in selected[m].items()
            }
            for m in names
            if m != base
        }
        out["selected_features"] = selected
    # the arms' predictions, to pool paired comparisons over runs (other seeds)
    if args.out:
        pq = Path(args.out).with_suffix(".predictions.parquet")
        import pandas as pd

        pd.concat(
            [
                p.assign(arm=k)[
                    ["arm", "pair", "window", "ts", "y_true", "prediction", "n_features"]
                ]
                for k, p in preds.items()
            ],
            ignore_index=True,
        ).to_parquet(pq, index=False)
        out["predictions_file"] = str(pq)
    out["machine"]["loadavg_end"] = os.getloadavg()
    text = json.dumps(out, indent=1, default=str)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
