"""Execution engine throughput on 1,000,000 bars with a given signal series, side by side with
backtesting.py on the same signals, rules and costs, in the same run. Prints JSON.

    .venv/bin/python benchmarks/bench_backtest_engine.py [--bars 1000000] [--reps 5]
        [--peer-reps 3] [--no-peer]

Cases (one pair, simulated M1 bars):

* ``oracle``: signals from the simulator's oracle forecast (signal strength 0.1) with a
  0.0002 threshold: trades of up to 60 bars ending in time-outs, take-profits, stop-losses
  and reversals;
* ``flips``: a random BUY/SELL/HOLD on every bar (40 % of bars signal): the worst case for
  the per-trade loop (hundreds of thousands of 1-3-bar trades).

Plus ``portfolio_28``: the same number of bars spread over the 28 pairs (portfolio sizing,
leverage cap, union timeline), our engine only (backtesting.py trades one instrument).

Both engines use take-profit 0.1 %, stop-loss 0.05 %, a 60-bar time-out, reverse on an
opposite signal and a commission of 2e-5 per side (the configuration whose agreement is
tested in tests/backtest/test_peer.py). ``cold`` is the first call in the process, ``warm``
the median of the following ones (our engine has no JIT: cold and warm differ only by
caches and allocator state). Times exclude data generation and signal computation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.backtest.peer

from bqx.backtest import BacktestConfig, run
from bqx.data.simulator import generate, oracle_prediction
from bqx.universe import PAIRS

H = 60
TP, SL, COMMISSION = 0.001, 0.0005, 2e-5


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import backtesting

    return {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "backtesting_py": getattr(backtesting, "__version__", "?"),
    }


def bars_for(n_bars: int, pairs: list[str], seed: int = 7) -> pd.DataFrame:
    per_pair = n_bars / len(pairs)
    days = per_pair / 1440 * 7 / 5 + 3  # trading minutes -> calendar days, with slack
    b = generate(days=days, pairs=pairs, seed=seed, signal_strength=0.1).bars
    return b.groupby("pair", sort=False).head(int(per_pair)).reset_index(drop=True)


def sides_for(bars: pd.DataFrame, kind: str, seed: int = 0) -> np.ndarray:
    out = np.zeros(len(bars), dtype=np.int8)
    rng = np.random.default_rng(seed)
    for _, idx in bars.groupby("pair", sort=False).indices.items():
        if kind == "oracle":
            p = oracle_prediction(bars["close"].to_numpy()[idx], 0.1)
            s = np.where(p > 0.0002, 1, np.where(p < -0.0002, -1, 0))
        else:
            s = rng.choice([-1, 0, 0, 0, 1], size=len(idx))
        s[0] = 0
        out[idx] = s
    return out


def timed(fn: Any, reps: int) -> tuple[dict[str, float], Any]:
    times, last = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        last = fn()
        times.append(time.perf_counter() - t0)
    warm = times[1:] or times
    return {
        "cold_s": round(times[0], 4),
        "warm_median_s": round(statistics.median(warm), 4),
        "warm_min_s": round(min(warm), 4),
        "reps": reps,
    }, last


def ours(bars: pd.DataFrame, sides: np.ndarray, reps: int) -> dict[str, Any]:
    sig = pd.DataFrame({"pair": bars["pair"], "ts": bars["ts"], "signal": sides})
    cfg = BacktestConfig(
        take_profit=TP, stop_loss=SL, horizon=H, reverse=True, commission=COMMISSION,
        spread_pips=0.0, capital=1e9, fraction=0.9999,
    )  # fmt: skip
    t, res = timed(lambda: run(bars, sig, cfg), reps)
    t["bars_per_s"] = round(len(bars) / t["warm_median_s"])
    t["trades"] = len(res.trades)
    t["total_return"] = float(res.equity["equity"].iloc[-1] / 1e9 - 1)
    t["exit_reasons"] = res.trades["exit_reason"].value_counts().to_dict()
    return t


def peer(bars: pd.DataFrame, sides: np.ndarray, reps: int) -> dict[str, Any]:
    from tests.backtest.peer import peer_run

    def go() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return peer_run(bars, sides, commission=COMMISSION, tp=TP, sl=SL, reverse=True)

    t, st = timed(go, reps)
    t["bars_per_s"] = round(len(bars) / t["warm_median_s"])
    t["trades"] = int(st["# Trades"])
    t["total_return"] = float(st["Return [%]"] / 100)
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--peer-reps", type=int, default=3)
    ap.add_argument("--no-peer", action="store_true")
    a = ap.parse_args()

    out: dict[str, Any] = {"benchmark": "backtest_engine", "machine": machine(), "bars": a.bars}
    t0 = time.perf_counter()
    one = bars_for(a.bars, ["EURUSD"])
    out["data_seconds"] = round(time.perf_counter() - t0, 1)
    cases: dict[str, Any] = {}
    for kind in ("oracle", "flips"):
        sides = sides_for(one, kind)
        # trades still open at the end: the peer closes them at the last open, we at the last
        # close; stop signalling early so both end flat (keeps the comparison exact)
        sides[-(H + 2) :] = 0
        case: dict[str, Any] = {"bars": len(one), "signal_bars": int((sides != 0).sum())}
        case["bqx"] = ours(one, sides, a.reps)
        if not a.no_peer:
            case["backtesting_py"] = peer(one, sides, a.peer_reps)
            case["speedup_warm"] = round(
                case["backtesting_py"]["warm_median_s"] / case["bqx"]["warm_median_s"], 1
            )
            case["same_trade_count"] = case["bqx"]["trades"] == case["backtesting_py"]["trades"]
            case["total_return_diff"] = (
                case["bqx"]["total_return"] - case["backtesting_py"]["total_return"]
            )
        cases[kind] = case
    multi = bars_for(a.bars, list(PAIRS))
    sides = sides_for(multi, "oracle")
    cases["portfolio_28"] = {"bars": len(multi), "bqx": ours(multi, sides, a.reps)}
    out["cases"] = cases
    print(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
