"""Honesty: no edge from noise after costs; a real edge is found; lookahead trips the alarm."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bqx.backtest import BacktestConfig, leakage_alarms, run
from bqx.config import SignalSettings
from bqx.data.simulator import generate, oracle_prediction, realized_target

PAIRS = ["EURUSD", "USDJPY"]


def _random_signals(bars: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Random sides held for 60-bar blocks (a coin-flip trader)."""
    rng = np.random.default_rng(seed)
    parts = []
    for p, g in bars.groupby("pair"):
        s = np.repeat(rng.choice([-1, 0, 1], len(g) // 60 + 1), 60)[: len(g)]
        parts.append(pd.DataFrame({"pair": p, "ts": g["ts"], "signal": s}))
    return pd.concat(parts)


def _momentum_predictions(bars: pd.DataFrame) -> pd.DataFrame:
    """A naive forecast: half the last 60-bar log return, continued."""
    parts = []
    for p, g in bars.groupby("pair"):
        c = g["close"].to_numpy()
        mom = np.r_[np.full(60, np.nan), np.log(c[60:] / c[:-60])] / 2
        parts.append(pd.DataFrame({"pair": p, "ts": g["ts"], "prediction": mom}))
    return pd.concat(parts)


@pytest.fixture(scope="module")
def random_walks() -> list[pd.DataFrame]:
    return [generate(days=30, pairs=PAIRS, seed=s, signal_strength=0.0).bars for s in (1, 2, 3)]


@pytest.mark.parametrize("strategy", ["random", "momentum"])
def test_random_walk_gives_no_significant_edge_after_costs(random_walks, strategy):
    sharpes = []
    for seed, bars in enumerate(random_walks):
        sig = _random_signals(bars, seed) if strategy == "random" else _momentum_predictions(bars)
        res = run(bars, sig, BacktestConfig(), signal_settings=SignalSettings(threshold=0.0003))
        m = res.metrics(n_boot=200)["portfolio"]
        assert m["trades"] > 300
        assert m["spread_cost"] > 0
        # not significantly positive: one-sided t-test and PSR
        assert m["significance"]["p_value_one_sided"] > 0.05
        assert m["significance"]["psr"] < 0.95
        sharpes.append(m["sharpe"])
    assert np.mean(sharpes) <= 0.0


def test_strong_predictable_component_gives_clearly_positive_net_sharpe():
    bars = generate(days=20, pairs=PAIRS, seed=11, signal_strength=0.3).bars
    parts = [
        pd.DataFrame(
            {"pair": p, "ts": g["ts"], "prediction": oracle_prediction(g["close"].to_numpy(), 0.3)}
        )
        for p, g in bars.groupby("pair")
    ]
    res = run(
        bars, pd.concat(parts), BacktestConfig(), signal_settings=SignalSettings(threshold=0.0002)
    )
    m = res.metrics(n_boot=500)["portfolio"]
    assert m["trades"] > 100 and m["spread_cost"] > 0
    assert m["sharpe"] > 3.0
    assert m["significance"]["psr"] > 0.99
    assert m["significance"]["sharpe_ci95"][0] > 0


def test_a_lookahead_signal_trips_the_leakage_alarm(random_walks):
    # cheating: trade on the realised future target (what a leaked label would give)
    bars = random_walks[0]
    parts = []
    for p, g in bars.groupby("pair"):
        y = realized_target(g["close"].to_numpy())
        parts.append(pd.DataFrame({"pair": p, "ts": g["ts"], "prediction": y, "y_true": y}))
    res = run(
        bars, pd.concat(parts), BacktestConfig(), signal_settings=SignalSettings(threshold=0.0003)
    )
    m = res.metrics(predictions=pd.concat(parts), n_boot=100)
    flagged = {(a["scope"], a["metric"]) for a in leakage_alarms(m)}
    assert ("portfolio", "sharpe") in flagged
    assert ("all", "r2") in flagged and ("all", "directional_accuracy") in flagged
