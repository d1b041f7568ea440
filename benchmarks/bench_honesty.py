"""Default model before / after out-of-sample shrinkage (issue 10), printing JSON.

Three scenarios, each trained once with the default settings (SPEC random forest); the raw
forecast is ``pipeline.predict`` (β = 1), the shrunk one ``artifact.predict_frame`` (β learned
on the validation segment). Test R² with 95 % HAC intervals (overlap-aware, bqx.stats):

* signal:  simulator with a planted component (oracle R² given), share of the oracle;
* walk:    pure random walk (nothing to find);
* weak:    short history, weak, switching signal, heavy tails, strong vol clustering.

Also the one-row predict latency of the artifact with and without the multiply (alternating,
same process). Usage: ``python benchmarks/bench_honesty.py [--days-signal 60]``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import pandas as pd

from bqx import features as F
from bqx.config import Settings
from bqx.data.simulator import generate, oracle_prediction
from bqx.stats import r2_estimate
from bqx.training.shrinkage import IDENTITY
from bqx.training.splits import chrono_split
from bqx.training.train import prepare, train_frame

SCENARIOS: dict[str, dict[str, Any]] = {
    "signal": {"days": 60, "seed": 7, "signal_strength": 0.2},
    "walk": {"days": 60, "seed": 11, "signal_strength": 0.0},
    "weak": {
        "days": 20,
        "seed": 3,
        "signal_strength": 0.02,
        "signal_on_share": 0.3,
        "tail_df": 4.0,
        "vol_clustering": 2.0,
    },
}


def run(name: str, kw: dict[str, Any]) -> dict[str, Any]:
    bars = generate(pairs="EURUSD", **kw).bars
    df = F.build(bars, "EURUSD", with_target=True, dtype=np.float32)
    s = Settings()
    t0 = time.perf_counter()
    res = train_frame("EURUSD", df, s)
    secs = time.perf_counter() - t0
    d = prepare(df)
    sp = chrono_split(len(d), s.train.train_frac, s.train.val_frac, s.horizon + 1)
    X = d.drop(columns=["target"]).iloc[sp.test]
    y = d["target"].to_numpy(float)[sp.test]
    art = res.artifact
    raw = np.asarray(art.pipeline.predict(X), dtype=np.float64)
    shrunk = art.predict_frame(X)
    out: dict[str, Any] = {
        "scenario": name,
        **kw,
        "beta": art.shrinkage.beta,
        "raw_beta": art.shrinkage.raw_beta,
        "test_rows": len(y),
        "r2_raw": r2_estimate(y, raw, s.horizon).as_dict(),
        "r2_shrunk": r2_estimate(y, shrunk, s.horizon).as_dict(),
        "approved": res.approved,
        "approval_reason": res.approval_reason,
        "train_seconds": round(secs, 1),
    }
    if kw.get("signal_strength", 0) > 0 and kw.get("signal_on_share", 1.0) == 1.0:
        orc = pd.Series(
            oracle_prediction(bars["close"].to_numpy(), kw["signal_strength"]), index=bars["ts"]
        ).reindex(d.index[sp.test])
        o = r2_estimate(y, orc.to_numpy(), s.horizon)
        out["oracle_r2"] = o.as_dict()
        out["share_raw"] = out["r2_raw"]["value"] / o.value
        out["share_shrunk"] = out["r2_shrunk"]["value"] / o.value
    if name == "signal":
        out["latency"] = latency(art, X[art.all_columns].to_numpy(np.float64)[:200])
    return out


def latency(art: Any, rows: np.ndarray, reps: int = 5) -> dict[str, float]:
    """Median µs per one-row predict, shrunk vs identity, alternating A/B in one process."""
    full = rows  # candidate vectors in ``all_columns`` order
    shrink = art.shrink
    a: list[float] = []
    b: list[float] = []
    for _ in range(reps):
        for which, acc in ((shrink, a), (IDENTITY, b)):
            art.shrink = which
            t = time.perf_counter()
            for x in full:
                art.predict_vector(x)
            acc.append((time.perf_counter() - t) / len(full) * 1e6)
    art.shrink = shrink
    return {
        "us_shrunk": float(np.median(a)),
        "us_identity": float(np.median(b)),
        "ratio": float(np.median(a) / np.median(b)),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=",".join(SCENARIOS))
    args = ap.parse_args()
    for name in args.only.split(","):
        print(json.dumps(run(name, SCENARIOS[name]), default=str), flush=True)


if __name__ == "__main__":
    main()
