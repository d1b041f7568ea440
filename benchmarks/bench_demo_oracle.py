"""Can the demo's models pass the approval rule on their own? (issue 15 item 1)

The approval rule (``train.approval_level`` 0.95) asks for the lower end of the 95 % HAC
interval of the test R² gain over every naive baseline (zero, the last known target ``lag60``,
the test mean) to be above 0, and DA > 0.5. This script applies the rule to the *oracle*
forecast (the best possible one, :func:`bqx.data.simulator.oracle_prediction`) on the test
segment that ``bqx train`` would use (the last 15 % of the rows, after the purge gap), for
each simulated history length and planted signal strength. If the oracle fails for a pair, no
model can honestly pass there: it bounds what a demo can show.

No features and no training: the target is computed from closes, so it runs in a minute or two.

Usage: ``.venv/bin/python benchmarks/bench_demo_oracle.py [--days 21,61,122]
[--strengths 0.2,0.25,0.45] [--spans 240,120] [--out benchmarks/results/demo_oracle.json]``
(``--spans``: the simulator's ``signal_span``, the momentum EMA; 240 = the default market)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

#: rows dropped at the start (the features' warm-up, which `prepare` drops in training)
WARMUP = 2000


def run(days: float, strength: float, seed: int, span: int = 240) -> dict[str, Any]:
    from bqx.config import Settings
    from bqx.data.simulator import generate, oracle_prediction, realized_target
    from bqx.training.metrics import beats_naive_confident, regression_metrics, skill_estimates
    from bqx.training.splits import chrono_split

    s = Settings()
    bars = generate(
        days=days, seed=seed, signal_strength=strength, start="2024-03-01", signal_span=span
    ).bars
    rows = []
    for pair, g in bars.groupby("pair", sort=True):
        c = g["close"].to_numpy()
        y = realized_target(c, s.horizon)[WARMUP:]
        yo = oracle_prediction(c, strength, s.horizon, span=span)[WARMUP:]
        sp = chrono_split(len(y), s.train.train_frac, s.train.val_frac, s.horizon + 1)
        yt, pt = y[sp.test], yo[sp.test]
        ok = np.isfinite(yt) & np.isfinite(pt)
        yt, pt = yt[ok], pt[ok]
        sk = skill_estimates(yt, pt, s.horizon, s.train.approval_level, lag=s.horizon)
        passed, _ = beats_naive_confident(regression_metrics(yt, pt), sk, s.train.approval_level)
        rows.append(
            {
                "pair": pair,
                "passes": passed,
                "test_rows": len(yt),
                "oracle_r2": sk["mean"]["value"],
                "lo_vs_mean": sk["mean"]["lo"],
                "gain_vs_lag": sk[f"lag{s.horizon}"]["value"],
                "lo_vs_lag": sk[f"lag{s.horizon}"]["lo"],
                "n_eff": sk["mean"]["n_eff"],
            }
        )
    return {
        "days": days,
        "strength": strength,
        "signal_span": span,
        "oracle_passes": sum(r["passes"] for r in rows),
        "pairs": len(rows),
        "min_lo_vs_mean": round(min(r["lo_vs_mean"] for r in rows), 3),
        "min_lo_vs_lag": round(min(r["lo_vs_lag"] for r in rows), 3),
        "median_n_eff": round(float(np.median([r["n_eff"] for r in rows])), 0),
        "failing": [r["pair"] for r in rows if not r["passes"]],
        "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", default="21,61,122")
    ap.add_argument("--strengths", default="0.2,0.25,0.45")
    ap.add_argument("--spans", default="240", help="signal_span values (240 = the default)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out: dict[str, Any] = {
        "benchmark": "demo_oracle",
        "machine": {
            "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        },
        "seed": args.seed,
        "grid": [],
    }
    for sp in (int(x) for x in args.spans.split(",")):
        for d in (float(x) for x in args.days.split(",")):
            for st in (float(x) for x in args.strengths.split(",")):
                try:
                    r = run(d, st, args.seed, sp)
                except ValueError as e:  # a strength the span cannot reach
                    print(
                        json.dumps(
                            {"days": d, "strength": st, "signal_span": sp, "skipped": str(e)}
                        )
                    )
                    continue
                out["grid"].append(r)
                print(json.dumps({k: v for k, v in r.items() if k != "rows"}), flush=True)
    out["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
