"""Online features for one model (issue 15 item 4): ``at_array`` computing all 809
candidates vs only the columns a 70-feature model reads (``only=``), alternated in one run
on the same random bars. Prints JSON (ms per call: p50, p99; and the ratio).

    .venv/bin/python benchmarks/bench_online_subset.py [--calls 300] [--days 9]

Data: the built-in simulator, 28 pairs, M1, ``--days`` calendar days, as a Panel in memory
(the service's bar cache). The column list is the selection of a real ``bqx train`` run (ridge) on
the simulator (EURUSD, SPEC selection 0.95 / 70) plus its interval scale feature.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

MODEL_COLUMNS = [
    "macd_signal",
    "vwap_dev_60",
    "w60_avg",
    "w60_max",
    "bb_pctb_50",
    "ema_cross_10_50",
    "w75_avg",
    "momentum_alignment",
    "ema_ratio_50",
    "agg_mean",
    "reg_w150_quad_b",
    "sma_ratio_100",
    "macd",
    "dpo_20",
    "w30_ret",
    "w45_ret",
    "ema_ratio_100",
    "rsi_28",
    "w60_ret",
    "plus_di_14",
    "w45_max",
    "reg_w90_quad_b",
    "donchian_pos_55",
    "agg_max",
    "rsi_14",
    "bb_pctb_20",
    "w30_max",
    "w75_max",
    "trix_15",
    "roc_20",
    "reg_w390_lin_dev",
    "reg_w90_slope",
    "reg_w60_slope",
    "kijun_dev",
    "w45_avg",
    "fib_pos_120",
    "fib_d618_120",
    "agg_slope",
    "willr_28",
    "w75_ret",
    "trend_strength",
    "reg_w240_curv",
    "bqx_vol_adj_60",
    "ema_ratio_20",
    "fib_zone_120",
    "vol_signed_60",
    "ema_ratio_10",
    "w30_avg",
    "reg_w240_quad_r2_lag240",
    "fib_d382_120",
    "volatility_regime",
    "w15_ret",
    "reg_w390_r2_lag120",
    "aroon_up_25",
    "reg_w390_r2_lag180",
    "reg_w150_curv",
    "corr_quote_240",
    "ema_cross_10_50_lag60",
    "agg_min",
    "rollover_phase",
    "reg_w630_slope_lag180",
    "sma_ratio_200",
    "reg_slope_diff",
    "elder_bull_13",
    "reg_w240_r2_lag240",
    "csi_eur",
    "keltner_pos",
    "reg_w390_quad_r2_lag240",
    "reg_w240_lin_dev",
    "agg_std",
    "rvol_60",
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--days", type=int, default=9)
    ap.add_argument("--pair", default="EURUSD")
    a = ap.parse_args()
    from bqx import features as F
    from bqx.data.simulator import generate
    from bqx.features.panel import Panel

    panel = Panel.from_bars(generate(days=a.days, seed=5, start="2024-03-04").bars)
    ts = panel.timestamps()
    rng = np.random.default_rng(0)
    picks = rng.integers(F.lookback(), len(ts), a.calls)
    only = tuple(MODEL_COLUMNS)
    F.at_array(panel, a.pair, ts[picks[0]], only=only)  # warm the plan caches
    full, sub = [], []
    for i in picks:
        t0 = time.perf_counter()
        F.at_array(panel, a.pair, ts[i])
        t1 = time.perf_counter()
        F.at_array(panel, a.pair, ts[i], only=only)
        t2 = time.perf_counter()
        full.append((t1 - t0) * 1e3)
        sub.append((t2 - t1) * 1e3)

    def q(x: list[float]) -> dict[str, float]:
        return {
            "p50_ms": round(float(np.percentile(x, 50)), 3),
            "p99_ms": round(float(np.percentile(x, 99)), 3),
        }

    print(
        json.dumps(
            {
                "calls": a.calls,
                "columns": len(only),
                "full_809": q(full),
                "subset": q(sub),
                "ratio_p50": round(float(np.median(full) / np.median(sub)), 2),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
