"""A full walk-forward backtest (issue 6 "Must show"): 12 windows of 6 training months + 1 test
month for 3 pairs with the default model (SPEC random forest), retraining per window.

Data: the simulator (all 28 pairs, because cross features need them; 18+ months, signal
strength 0.05) into a temporary project home. Prints JSON with the stage times, the portfolio
metrics and the leakage checks.

Usage: ``.venv/bin/python benchmarks/bench_walkforward.py [--pairs EURUSD,USDJPY,GBPNZD]
[--windows 12] [--model rf] [--jobs 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", default="EURUSD,USDJPY,GBPNZD")
    ap.add_argument("--windows", type=int, default=12)
    ap.add_argument("--train-months", type=int, default=6)
    ap.add_argument("--model", default="rf")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--strength", type=float, default=0.05)
    ap.add_argument("--home", default=None)
    args = ap.parse_args()
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="bqx-bench-wf-"))
    os.environ["BQX_HOME"] = str(home)

    from bqx.backtest import BacktestConfig
    from bqx.backtest.walkforward import (
        WalkForwardConfig,
        ensure_features,
        walk_forward_predictions,
        windows_frame,
    )
    from bqx.cli.backtest_cmd import run_signals_backtest
    from bqx.config import Settings
    from bqx.data.simulator import generate
    from bqx.data.store import open_store
    from bqx.universe import normalize_pairs

    s = Settings(home=home)
    s.ensure_home()
    pairs = normalize_pairs(args.pairs)
    out: dict[str, object] = {
        "benchmark": "walk_forward",
        "machine": {
            "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_start": os.getloadavg(),
        },
        "pairs": pairs,
        "model": args.model,
        "windows": args.windows,
    }
    store = open_store(settings=s)
    if not store.pairs():
        months = args.train_months + args.windows + 1
        t0 = time.perf_counter()
        store.upsert(
            generate(
                days=months * 30.6 + 3, seed=8, signal_strength=args.strength, start="2023-01-01"
            ).bars
        )
        out["data_s"] = round(time.perf_counter() - t0, 1)
    store.close()
    t0 = time.perf_counter()
    ensure_features(pairs, s)
    out["features_s"] = round(time.perf_counter() - t0, 1)
    cfg = WalkForwardConfig(
        train_months=args.train_months, test_months=1, windows=args.windows, model=args.model
    )
    t0 = time.perf_counter()
    pred, info = walk_forward_predictions(pairs, s, cfg, jobs=args.jobs)
    out["walk_forward_s"] = round(time.perf_counter() - t0, 1)
    out["walk_forward"] = {k: v for k, v in info.items() if k != "cache"}
    out["predictions"] = len(pred)
    t0 = time.perf_counter()
    summary = run_signals_backtest(
        pred,
        BacktestConfig(horizon=s.horizon),
        out_dir=home / "report",
        settings=s,
        windows=windows_frame(pred),
    )
    out["backtest_and_report_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    walk_forward_predictions(pairs, s, cfg, jobs=args.jobs, reuse=True)
    out["reuse_predictions_s"] = round(time.perf_counter() - t0, 2)
    out["portfolio"] = summary.get("portfolio")
    out["prediction"] = summary.get("prediction")
    out["leakage"] = summary.get("leakage")
    out["report"] = str(home / "report" / "report.html")
    out["machine"]["loadavg_end"] = os.getloadavg()  # type: ignore[index]
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
