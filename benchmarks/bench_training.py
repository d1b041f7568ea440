"""Training speed (issue 4 "Must show").

Stages (select with --stages, default all):

* ``one``:   one pair (~130,000 bars, ~6 months of M1) with the default RF and with LightGBM:
             selection and fit times, test metrics;
* ``all``:   all 28 pairs with ``--jobs 2`` (RF and LightGBM), wall time, incl. registration;
* ``tune``:  a 50-trial Optuna run (LightGBM) on one pair.

Data: the simulator (28 pairs, ``--days`` calendar days, signal strength 0.1) written to a
DuckDB store in a temporary project home, then the feature store is built once.
Usage: ``.venv/bin/python benchmarks/bench_training.py --days 182 [--stages one,all,tune]``.
Prints JSON.
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
    ap.add_argument("--days", type=float, default=182)
    ap.add_argument("--stages", default="one,all,tune")
    ap.add_argument("--pair", default="EURUSD")
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--home", default=None, help="Reuse a project home (data + features).")
    args = ap.parse_args()
    stages = set(args.stages.split(","))
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="bqx-bench-train-"))
    os.environ["BQX_HOME"] = str(home)

    from bqx.config import Settings
    from bqx.data.simulator import generate
    from bqx.data.store import open_store
    from bqx.features.store import FeatureStore

    s = Settings(home=home)
    s.ensure_home()
    out: dict[str, object] = {
        "benchmark": "training",
        "machine": {
            "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_start": os.getloadavg(),
        },
        "home": str(home),
    }
    store = open_store(settings=s)
    fs = FeatureStore(
        s.features_dir, horizon=s.horizon, target=s.target, max_ffill=s.max_ffill_bars
    )
    if not store.pairs():
        t0 = time.perf_counter()
        store.upsert(generate(days=args.days, seed=3, signal_strength=0.1).bars)
        out["data_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    rep = fs.build(store, None)
    out["features_s"] = round(time.perf_counter() - t0, 1)
    out["rows_per_pair"] = rep.rows_written // 28 if rep.rows_written else None
    store.close()

    from bqx.training.train import train_pair

    if "one" in stages:
        one: dict[str, object] = {}
        for model in ("rf", "lightgbm"):
            t0 = time.perf_counter()
            r = train_pair(args.pair, s, model=model)
            one[model] = {
                "rows_train": r.rows["train"],
                "selection_s": round(r.seconds["selection"], 1),
                "fit_s": round(r.seconds["fit"], 1),
                "total_s": round(time.perf_counter() - t0, 1),
                "test_r2": r.metrics["test"]["r2"],
                "test_da": r.metrics["test"]["da"],
                "coverage": r.metrics["test_coverage"],
            }
            print(json.dumps({model: one[model]}), flush=True)
        out["one_pair"] = one
    if "all" in stages:
        from bqx.training.parallel import train_many

        allp: dict[str, object] = {}
        for model in ("lightgbm", "rf"):
            t0 = time.perf_counter()
            outs = train_many(None, s, model=model, jobs=2, register=True)
            allp[model] = {
                "pairs_ok": sum(o.ok for o in outs),
                "wall_s": round(time.perf_counter() - t0, 1),
                "median_pair_s": sorted(o.seconds for o in outs)[len(outs) // 2],
                "failed": [o.pair for o in outs if not o.ok],
            }
            print(json.dumps({model: allp[model]}), flush=True)
        out["all_pairs_jobs2"] = allp
    if "tune" in stages:
        from bqx.training.tune import tune

        t0 = time.perf_counter()
        res = tune(args.pair, s, model="lightgbm", trials=args.trials)
        out["tune"] = {**res.as_dict(), "wall_s": round(time.perf_counter() - t0, 1)}
    out["machine"]["loadavg_end"] = os.getloadavg()  # type: ignore[index]
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
