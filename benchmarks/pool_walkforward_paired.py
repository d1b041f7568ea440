"""Pool paired walk-forward comparisons over runs (issue 15 item 5): each run of
``bench_walkforward_full.py --out X.json`` with several arms also writes
``X.predictions.parquet``; this reads several such runs (other simulator seeds), and reports,
on the rows every arm predicted, the paired R² gain and DA difference of each arm over the
base arm with overlap-aware 95 % intervals (HAC, 60-bar overlap; series concatenated per run
and pair), the selected-feature overlap, and the CPU seconds per window of each arm.

Usage: ``.venv/bin/python benchmarks/pool_walkforward_paired.py A.json B.json --base
lgbm_rf+sklearn --out benchmarks/results/walkforward_selection_pooled.json``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--base", required=True)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_walkforward_full import paired, quality

    frames, cpu, overlap, meta = [], {}, {}, []
    stages: dict[str, dict[str, list[float]]] = {}  # arm -> stage -> CPU s per window
    for i, r in enumerate(args.runs):
        d = json.loads(Path(r).read_text())
        meta.append({"run": r, "seed": d.get("seed"), "machine": d["machine"]})
        frames.append(pd.read_parquet(d["predictions_file"]).assign(run=i))
        for arm, res in d["results"].items():
            cpu.setdefault(arm, []).extend(
                v.get("cpu", 0.0) for v in res["window_seconds"].values()
            )
            for v in res["window_seconds"].values():
                for k in ("read_cpu", "selection_cpu", "fit_cpu"):
                    if k in v:
                        stages.setdefault(arm, {}).setdefault(k, []).append(v[k])
        for arm, ws in d.get(f"selection_overlap_vs_{args.base}", {}).items():
            overlap.setdefault(arm, []).extend(ws.values())
    allp = pd.concat(frames, ignore_index=True)
    # a pair in another run is another series: key the pair by run
    allp["pair"] = allp["run"].astype(str) + ":" + allp["pair"]
    arms = sorted(allp["arm"].unique())
    by = {a: allp[allp["arm"] == a].drop(columns=["arm"]) for a in arms}
    out: dict[str, Any] = {
        "benchmark": "walk_forward_paired_pooled",
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg": os.getloadavg(),
        "runs": meta,
        "base": args.base,
        "windows_per_arm": {a: int(by[a].groupby(["pair", "window"]).ngroups) for a in arms},
        "cpu_per_window_s": {
            a: {
                "median": round(statistics.median(v), 1),
                "mean": round(statistics.mean(v), 1),
                "n": len(v),
            }
            for a, v in cpu.items()
        },
        # CPU s of the measured stages, median over windows (the rest of "cpu": prepare,
        # calibration, prediction, the worker's imports on its first window)
        "stage_cpu_median_s": {
            a: {k: round(statistics.median(v), 2) for k, v in st.items()}
            for a, st in stages.items()
        },
        # 28 pairs x 12 windows on 2 cores not shared with anything else
        "projection_28x12_2_cores_min": {
            a: round(statistics.mean(v) * 336 / 2 / 60, 1) for a, v in cpu.items()
        },
        "quality_pooled": {a: quality(by[a], 60) for a in arms},
        "paired_vs_base": {a: paired(by[args.base], by[a], 60) for a in arms if a != args.base},
        "selection_jaccard_vs_base": {
            a: {
                "median": round(statistics.median(v), 3),
                "min": min(v),
                "max": max(v),
                "n": len(v),
            }
            for a, v in overlap.items()
            if v
        },
    }
    text = json.dumps(out, indent=1, default=str)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
