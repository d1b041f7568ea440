"""Metrics against hand-computed values."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bqx.backtest import BacktestConfig, run
from bqx.backtest.metrics import (
    PERIODS_PER_YEAR,
    LeakageThresholds,
    daily_returns,
    drawdown,
    leakage_alarms,
    leakage_checks,
    prediction_metrics,
    probabilistic_sharpe,
    returns_metrics,
    sharpe,
    sharpe_bootstrap_ci,
    sortino,
    trade_metrics,
    trading_day,
    window_table,
)
from tests.backtest.helpers import make_bars, make_signals

DAILY = [0.01, -0.005, 0.002, 0.003, -0.001, 0.004, -0.002, 0.0]


def _days(n: int, start: str = "2024-01-08") -> pd.DatetimeIndex:
    """Timestamps at 12:00 UTC on consecutive business days."""
    return pd.bdate_range(start, periods=n, tz="UTC") + pd.Timedelta(hours=12)


def test_sharpe_and_sortino_by_hand():
    m, sd = statistics.mean(DAILY), statistics.stdev(DAILY)
    assert sharpe(DAILY) == pytest.approx(m / sd * math.sqrt(260))
    assert PERIODS_PER_YEAR == 260
    down = math.sqrt(sum(min(r, 0) ** 2 for r in DAILY) / len(DAILY))
    assert sortino(DAILY) == pytest.approx(m / down * math.sqrt(260))
    assert math.isnan(sharpe([0.01])) and math.isnan(sharpe([0.01, 0.01]))


def test_trading_day_ends_at_17_new_york():
    ts = pd.DatetimeIndex(
        [
            "2024-01-07 22:00",  # Sunday 17:00 New York: Monday's session
            "2024-01-08 21:59",  # Monday 16:59 New York: still Monday
            "2024-01-08 22:00",  # Monday 17:00: Tuesday
            "2024-07-12 20:59",  # Friday 16:59 EDT: Friday
            "2024-07-14 21:00",  # Sunday 17:00 EDT: Monday
        ],
        tz="UTC",
    )
    days = [d.strftime("%Y-%m-%d") for d in trading_day(ts)]
    assert days == ["2024-01-08", "2024-01-08", "2024-01-09", "2024-07-12", "2024-07-15"]


def test_daily_returns_take_the_last_equity_of_each_trading_day():
    ts = pd.DatetimeIndex(
        ["2024-01-08 10:00", "2024-01-08 20:00", "2024-01-08 23:00", "2024-01-09 12:00"], tz="UTC"
    )
    eq = pd.Series([100.0, 102.0, 101.0, 99.0], index=ts)
    r = daily_returns(eq, initial=100.0)
    assert list(r.index.strftime("%Y-%m-%d")) == ["2024-01-08", "2024-01-09"]
    np.testing.assert_allclose(r.to_numpy(), [0.02, 99.0 / 102.0 - 1.0])


def test_max_drawdown_and_durations_by_hand():
    idx = pd.date_range("2024-01-01", periods=7, freq="D", tz="UTC")
    eq = pd.Series([100, 110, 99, 105, 111, 90, 95], index=idx, dtype=float)
    dd = drawdown(eq)
    assert dd.max_drawdown == pytest.approx(90 / 111 - 1)
    assert (dd.peak, dd.trough, dd.recovery) == (idx[4], idx[5], None)
    assert dd.duration_days == pytest.approx(2.0)  # peak (day 4) to the end, not recovered
    assert dd.longest_days == pytest.approx(3.0)  # day 1 -> recovered on day 4
    eq2 = pd.Series([100, 90, 95, 101, 100], index=idx[:5], dtype=float)
    dd2 = drawdown(eq2)
    assert dd2.max_drawdown == pytest.approx(-0.1) and dd2.recovery == idx[3]
    assert dd2.duration_days == pytest.approx(3.0)


def test_psr_by_hand_and_known_cases():
    r = np.array(DAILY)
    n = len(r)
    m = statistics.mean(DAILY)
    sd = statistics.stdev(DAILY)
    sr = m / sd
    # population skewness and (Pearson) kurtosis from their definitions
    mu2 = sum((x - m) ** 2 for x in DAILY) / n
    g3 = (sum((x - m) ** 3 for x in DAILY) / n) / mu2**1.5
    g4 = (sum((x - m) ** 4 for x in DAILY) / n) / mu2**2
    z = sr * math.sqrt(n - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2)
    expected = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    assert probabilistic_sharpe(r) == pytest.approx(expected, rel=1e-12)
    # a zero-mean symmetric series: exactly 1/2
    assert probabilistic_sharpe([0.01, -0.01, 0.02, -0.02]) == pytest.approx(0.5)
    # a benchmark equal to the observed SR: 1/2 as well
    assert probabilistic_sharpe(r, benchmark=sr) == pytest.approx(0.5)


def test_bootstrap_interval_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(3)
    r = rng.normal(0.001, 0.01, 500)
    a = sharpe_bootstrap_ci(r, seed=1)
    assert a == sharpe_bootstrap_ci(r, seed=1)
    assert a[0] < sharpe(r) < a[1]
    # the interval narrows roughly like 1/sqrt(n)
    b = sharpe_bootstrap_ci(np.tile(r, 4), seed=1)
    assert (b[1] - b[0]) < 0.6 * (a[1] - a[0])


def test_returns_metrics_by_hand():
    eq = pd.Series([100.0, 101.0, 100.0, 102.0, 103.02], index=_days(5))
    m = returns_metrics(eq, initial=100.0, n_boot=200)
    r = [0.0, 0.01, 100 / 101 - 1, 0.02, 0.01]
    assert m["trading_days"] == 5
    assert m["total_return"] == pytest.approx(0.0302)
    assert m["cagr"] == pytest.approx(1.0302 ** (260 / 5) - 1)
    assert m["volatility"] == pytest.approx(statistics.stdev(r) * math.sqrt(260))
    assert m["sharpe"] == pytest.approx(sharpe(r))
    assert m["max_drawdown"] == pytest.approx(100 / 101 - 1)
    assert m["calmar"] == pytest.approx(m["cagr"] / (1 - 100 / 101))
    tt = stats.ttest_1samp(r, 0.0)
    assert m["significance"]["t_stat"] == pytest.approx(tt.statistic)
    assert m["significance"]["p_value"] == pytest.approx(tt.pvalue)
    assert m["significance"]["p_value_one_sided"] == pytest.approx(tt.pvalue / 2)


def test_trade_metrics_by_hand():
    t = pd.DataFrame(
        {
            "size": [1.0, 1.0, 1.0, 0.0],
            "side": [1, -1, 1, 1],
            "net_pnl": [30.0, -10.0, -5.0, 0.0],
            "return": [0.03, -0.01, -0.005, 0.02],
            "gross_pnl": [32.0, -8.0, -3.0, 0.0],
            "spread_cost": [2.0, 2.0, 2.0, 0.0],
            "slippage_cost": 0.0,
            "commission": 0.0,
            "bars_held": [10, 20, 30, 5],
            "exit_reason": ["take_profit", "stop_loss", "timeout", "signal"],
        }
    )
    m = trade_metrics(t)
    assert (m["trades"], m["skipped_trades"], m["long_trades"]) == (3, 1, 2)
    assert m["win_rate"] == pytest.approx(1 / 3)
    assert m["profit_factor"] == pytest.approx(30 / 15)
    assert m["avg_trade"] == pytest.approx(5.0)
    assert m["spread_cost"] == 6.0 and m["net_pnl"] == 15.0
    assert m["exit_reasons"] == {"take_profit": 1, "stop_loss": 1, "timeout": 1}


def test_prediction_metrics_by_hand():
    y = [0.1, -0.2, 0.3, 0.0, np.nan]
    p = [0.2, 0.1, 0.1, 0.5, 1.0]
    m = prediction_metrics(y, p)
    yy, pp = np.array(y[:4]), np.array(p[:4])
    assert m["n"] == 4
    assert m["r2"] == pytest.approx(1 - ((yy - pp) ** 2).sum() / ((yy - yy.mean()) ** 2).sum())
    assert m["directional_accuracy"] == pytest.approx(2 / 3)  # y == 0 ignored


def test_leakage_checks_flag_too_good_results():
    metrics = {
        "portfolio": {"sharpe": 3.5},
        "pairs": {"EURUSD": {"sharpe": 1.0}},
        "prediction": {"all": {"r2": 0.35, "directional_accuracy": 0.55}},
    }
    windows = pd.DataFrame(
        {"window": [1, 2], "r2": [0.01, 0.2], "directional_accuracy": [0.52, 0.65]}
    )
    flagged = {(c["scope"], c["metric"]) for c in leakage_alarms(metrics, windows)}
    assert flagged == {("portfolio", "sharpe"), ("all", "r2"), ("window 2", "directional_accuracy")}
    assert len(leakage_checks(metrics, windows)) == 8
    loose = LeakageThresholds(r2=0.5, directional_accuracy=0.7, sharpe=5)
    assert leakage_alarms(metrics, windows, loose) == []


def test_result_metrics_and_window_table():
    bars = make_bars([1.0, 1.0, 1.01, 1.02, 1.02, 1.01, 1.0, 1.0] * 200, spread=0.0001)
    bars["ts"] = pd.date_range("2024-01-08", periods=len(bars), freq="15min", tz="UTC")
    sig = make_signals(bars, np.tile([1, 0, 0, -1, 0, 0, 0, 0], 200))
    res = run(bars, sig, BacktestConfig(take_profit=None, stop_loss=None, horizon=3))
    m = res.metrics(n_boot=100)
    assert m["conventions"]["periods_per_year"] == 260
    assert m["portfolio"]["trades"] == len(res.trades)
    assert m["pairs"]["EURUSD"]["net_pnl"] == pytest.approx(res.trades["net_pnl"].sum())
    assert 0 < m["portfolio"]["exposure"] < 1
    assert m["buy_hold"]["EURUSD"]["total_return"] == pytest.approx(1.0 / 1.0 - 1.0)
    preds = pd.DataFrame(
        {
            "pair": "EURUSD",
            "ts": bars["ts"],
            "prediction": np.tile([1.0, -1.0], 800) * 1e-3,
            "y_true": np.tile([1.0, 1.0], 800) * 1e-3,
            "window": np.repeat([1, 2], 800),
        }
    )
    w = window_table(res, preds)
    assert list(w["window"]) == [1, 2] and list(w["predictions"]) == [800, 800]
    assert w["directional_accuracy"].tolist() == [0.5, 0.5]
    assert w["trades"].sum() == len(res.trades)
    # window returns compound to the total
    assert (1 + w["return"]).prod() - 1 == pytest.approx(m["portfolio"]["total_return"], abs=1e-12)
