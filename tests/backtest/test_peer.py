"""Agreement with an established backtester (backtesting.py 0.6.x) on the same signals and costs.

The peer is configured to our rules and its costs mapped to ours in
``tests/backtest/peer.py`` (commission: identical rules; spread: the peer charges a fraction
of price once at entry, we charge half the pip spread at each fill).

Residual differences, all understood and bounded by the tolerances below:

1. the peer sizes ``equity * fraction // (price * (1 + spread) + commission per unit)``: its
   notional is smaller by a factor ``1 / (1 + c)``, so its P&L differs by ~``c * |P&L|``;
2. with the spread mapping, each trade's cost differs by ``spread * (price / mean - 1)``
   (a few 1e-9 per trade at EURUSD levels);
3. whole units on 1e9 of capital: ~1e-9.

Tolerances: trade count and every entry/exit time exact; total return and max drawdown
within 1e-5 (absolute, in return units).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bqx.backtest import BacktestConfig, run
from bqx.backtest.metrics import drawdown
from bqx.data.simulator import generate, oracle_prediction
from tests.backtest.peer import CAPITAL, FRACTION, H, peer_run
from tests.conftest import import_or_fail_in_ci

backtesting = import_or_fail_in_ci("backtesting")

TOL = 1e-5


@pytest.fixture(scope="module")
def market() -> pd.DataFrame:
    return generate(days=8, pairs=["EURUSD"], seed=5, signal_strength=0.2).bars


def _sides(bars: pd.DataFrame, kind: str) -> np.ndarray:
    if kind == "oracle":
        p = oracle_prediction(bars["close"].to_numpy(), 0.2)
        s = np.where(p > 0.0002, 1, np.where(p < -0.0002, -1, 0))
    else:  # frequent flips: many opposite-signal exits and reversals
        s = np.random.default_rng(0).choice([-1, 0, 0, 0, 1], size=len(bars))
    s[0] = 0  # the peer's first decision is at bar 1
    s[-(H + 2) :] = 0  # every trade ends by time-out before the data does
    return s


CASES = [
    # name, signals, ours, peer
    ("commission", "oracle", {"spread_pips": 0.0, "commission": 2e-5}, {"commission": 2e-5}),
    ("spread", "oracle", {"spread_pips": 1.0}, {"spread_pips": 1.0}),
    (
        "tp_sl_commission_flips",
        "flips",
        {"spread_pips": 0.0, "commission": 2e-5, "take_profit": 0.0003, "stop_loss": 0.0002},
        {"commission": 2e-5, "tp": 0.0003, "sl": 0.0002},
    ),
    (
        "tp_sl_spread_oracle",
        "oracle",
        {"spread_pips": 0.8, "take_profit": 0.0006, "stop_loss": 0.0003},
        {"spread_pips": 0.8, "tp": 0.0006, "sl": 0.0003},
    ),
]


@pytest.mark.parametrize("reverse", [True, False])
@pytest.mark.parametrize(("name", "kind", "ours", "theirs"), CASES, ids=[c[0] for c in CASES])
def test_agrees_with_backtesting_py(market, name, kind, ours, theirs, reverse):
    side = _sides(market, kind)
    sig = pd.DataFrame({"pair": market["pair"], "ts": market["ts"], "signal": side})
    kw = {"take_profit": None, "stop_loss": None, **ours}
    cfg = BacktestConfig(horizon=H, reverse=reverse, fraction=FRACTION, capital=CAPITAL, **kw)
    res = run(market, sig, cfg)
    theirs = dict(theirs)
    if "spread_pips" in theirs:
        theirs["spread"] = theirs.pop("spread_pips") * 1e-4 / float(market["close"].mean())
    st = peer_run(market, side, reverse=reverse, **theirs)

    trades = res.trades
    peer_trades = st["_trades"]
    assert len(trades) == st["# Trades"] > 20
    assert (trades["exit_reason"] != "end").all()
    naive = pd.DatetimeIndex(trades["entry_ts"]).tz_localize(None)
    np.testing.assert_array_equal(naive, pd.DatetimeIndex(peer_trades["EntryTime"]))
    naive = pd.DatetimeIndex(trades["exit_ts"]).tz_localize(None)
    np.testing.assert_array_equal(naive, pd.DatetimeIndex(peer_trades["ExitTime"]))
    np.testing.assert_allclose(trades["exit_mid"], peer_trades["ExitPrice"], rtol=1e-12)

    ours_ret = res.equity["equity"].iloc[-1] / CAPITAL - 1
    assert ours_ret == pytest.approx(st["Return [%]"] / 100, abs=TOL)
    ours_dd = drawdown(res.equity["equity"]).max_drawdown
    assert ours_dd == pytest.approx(st["Max. Drawdown [%]"] / 100, abs=TOL)  # both negative
