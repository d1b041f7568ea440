"""backtesting.py (0.6.x) configured to BQX's execution rules, for agreement tests and benchmarks.

Both engines then follow the same rules: a signal at bar t fills at the open of t+1; one
position; opposite signal -> exit at the next open (and reverse when asked); time-out ``H``
bars after entry at the open; take-profit/stop-loss at fixed fractions of the entry *mid*
(the peer's bracket levels are computed from the next open, which is the entry mid), checked
from the entry bar, stop first when both are hit; the signal bars up to an exit are consumed.
Sizing: ``FRACTION`` of equity (compounding) on a large capital so that the peer's whole-unit
rounding is negligible.

Costs are mapped so that both charge the same round trip:

* commission: both charge ``c`` x traded value at entry and at exit: identical rules;
* spread: the peer's ``spread=`` is a constant *fraction of price* charged once, at entry;
  ours is half the bid-ask (in pips) at each fill. Give the peer
  ``spread = spread_pips * pip / mean(close)``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

H = 60
CAPITAL = 1e9
FRACTION = 0.9999  # the peer takes sizes < 1 as a fraction of available margin


def peer_run(
    bars: pd.DataFrame,
    side: np.ndarray,
    *,
    commission: float = 0.0,
    spread: float = 0.0,
    tp: float | None = None,
    sl: float | None = None,
    reverse: bool = True,
) -> pd.Series:
    """Run backtesting.py with a strategy that implements our rules on the given sides."""
    from backtesting import Backtest, Strategy

    df = pd.DataFrame(
        {
            "Open": bars["open"].to_numpy(),
            "High": bars["high"].to_numpy(),
            "Low": bars["low"].to_numpy(),
            "Close": bars["close"].to_numpy(),
        },
        index=pd.DatetimeIndex(bars["ts"]).tz_localize(None),
    )
    opens = df["Open"].to_numpy()

    class Rules(Strategy):
        def init(self) -> None:
            self.last_exit = -1

        def _enter(self, i: int, sd: int) -> None:
            o = opens[i + 1]  # the fill price (entry mid) of a market order placed now
            kw = {}
            if tp:
                kw["tp"] = o * (1 + sd * tp)
            if sl:
                kw["sl"] = o * (1 - sd * sl)
            (self.buy if sd > 0 else self.sell)(size=FRACTION, **kw)

        def _close(self, t) -> None:
            t.sl = None  # cancel the brackets: the close fills at the next open
            t.tp = None
            t.close()

        def next(self) -> None:
            i = len(self.data) - 1
            s = int(side[i])
            if self.trades:
                t = self.trades[-1]
                sd = 1 if t.is_long else -1
                if s == -sd:
                    self._close(t)
                    if reverse:
                        self._enter(i, s)
                elif i - t.entry_bar + 1 >= H:
                    self._close(t)
                return
            if self.closed_trades:
                self.last_exit = self.closed_trades[-1].exit_bar
            if s != 0 and i >= self.last_exit and not self.orders:
                self._enter(i, s)

    bt = Backtest(
        df, Rules, cash=CAPITAL, commission=commission, spread=spread, finalize_trades=True
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bt.run()
