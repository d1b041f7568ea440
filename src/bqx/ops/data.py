"""Bars and candidate features for a window, as training builds them."""

from __future__ import annotations

from typing import Any

import pandas as pd


def history_margin(settings: Any) -> pd.Timedelta:
    """Wall-clock time that surely covers the features' lookback (bars count trading
    time; weekends and gaps stretch it), plus a weekend."""
    from bqx.features import lookback

    return pd.Timedelta(settings.interval) * int(lookback() * 1.6 + 10) + pd.Timedelta(days=3)


def features_window(
    store: Any, settings: Any, pair: str, start: Any, end: Any = None
) -> pd.DataFrame:
    """Candidates + ``target`` of ``pair`` for bars in [start, end], from the store with
    enough history before ``start`` (the same ``build`` training uses)."""
    from bqx import features as F

    start = pd.Timestamp(start)
    bars = store.read(None, start - history_margin(settings), end)
    if not len(bars):
        return pd.DataFrame()
    return F.build(
        bars,
        pair,
        start=start,
        end=end,
        with_target=True,
        horizon=settings.horizon,
        target=settings.target,
        interval=settings.interval,
        max_ffill=settings.max_ffill_bars,
    )
