"""Helpers for hand-built price paths."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def make_bars(
    opens: Sequence[float],
    highs: Sequence[float] | None = None,
    lows: Sequence[float] | None = None,
    closes: Sequence[float] | None = None,
    *,
    pair: str = "EURUSD",
    spread: float | None = 0.0002,
    start: str = "2024-01-02 00:00",
) -> pd.DataFrame:
    """A canonical bar frame on a minute grid. ``closes`` default to the next open."""
    o = np.asarray(opens, dtype="float64")
    n = len(o)
    c = np.asarray(closes, dtype="float64") if closes is not None else np.r_[o[1:], o[-1]]
    h = np.asarray(highs, dtype="float64") if highs is not None else np.maximum(o, c)
    lo = np.asarray(lows, dtype="float64") if lows is not None else np.minimum(o, c)
    return pd.DataFrame(
        {
            "pair": pair,
            "ts": pd.date_range(start, periods=n, freq="1min", tz="UTC"),
            "open": o,
            "high": h,
            "low": lo,
            "close": c,
            "volume": 1.0,
            "spread": np.nan if spread is None else spread,
        }
    )


def make_signals(bars: pd.DataFrame, sides: dict[int, int] | Sequence[int]) -> pd.DataFrame:
    """Signals per bar: a full sequence, or ``{bar index: side}`` (others HOLD)."""
    if isinstance(sides, dict):
        s = np.zeros(len(bars), dtype=int)
        for k, v in sides.items():
            s[k] = v
    else:
        s = np.asarray(sides, dtype=int)
    return pd.DataFrame({"pair": bars["pair"], "ts": bars["ts"], "signal": s})
