"""The Panel: bars of many pairs aligned on one trading-time grid, as numpy arrays.

Features are computed on a Panel, in batch (the whole history) and online (a short window
ending at the as-of bar). Both see the same grid, built by one rule:

    grid = (timestamps where any pair has a bar) U (every bar interval in surely-open time)

so windows and lags count bars of trading time; closed periods are skipped, and a gap inside
surely-open time is a run of missing rows. A pair's missing bars are forward-filled for up
to ``max_ffill`` rows (a flat bar: open=high=low=close=previous close, volume 0, spread
carried); longer gaps stay NaN and invalidate the windows that span them.

The grid up to ``t`` depends only on bars at or before ``t`` and on the calendar, so the
construction itself is causal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from bqx.calendar import expected_grid, to_utc
from bqx.data.bars import normalize_bars, ts_ns
from bqx.errors import NoDataError
from bqx.universe import CURRENCIES, PAIRS, normalize_pair

FIELDS = ("open", "high", "low", "close", "volume", "spread")


@dataclass
class Panel:
    """Grid-aligned bars. Arrays are (rows, pairs) float64; ``ts`` is int64 ns UTC."""

    ts: np.ndarray
    pairs: list[str]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    spread: np.ndarray
    observed: np.ndarray  # bool: the bar was in the data (not forward-filled)
    interval: timedelta
    max_ffill: int
    _lc: np.ndarray | None = field(default=None, repr=False)
    _cache: dict[object, Any] = field(default_factory=dict, repr=False)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_bars(
        cls,
        bars: pd.DataFrame,
        interval: timedelta = timedelta(minutes=1),
        max_ffill: int = 5,
    ) -> Panel:
        """Pivot a long bar frame onto the trading-time grid and apply the fill policy."""
        df = normalize_bars(bars, sort=False)
        if not len(df):
            raise NoDataError("no bars to build features from")
        codes, uniques = pd.factorize(df["pair"].to_numpy())
        pairs_present = {str(u) for u in uniques}
        unknown = pairs_present - set(PAIRS)
        if unknown:
            normalize_pair(sorted(unknown)[0])  # raises with the list of valid pairs
        pairs = [p for p in PAIRS if p in pairs_present]
        ts_obs = ts_ns(df["ts"])
        t_min, t_max = int(ts_obs.min()), int(ts_obs.max())
        exp = expected_grid(pd.Timestamp(t_min, tz="UTC"), pd.Timestamp(t_max, tz="UTC"), interval)
        grid = np.union1d(np.unique(ts_obs), exp.asi8 if len(exp) else np.array([], dtype=np.int64))
        n, k = len(grid), len(pairs)
        row = np.searchsorted(grid, ts_obs)
        col_of = {p: i for i, p in enumerate(pairs)}
        col = np.array([col_of[str(u)] for u in uniques], dtype=np.int64)[codes]
        arrays: dict[str, np.ndarray] = {}
        for f in FIELDS:
            a = np.full((n, k), np.nan)
            a[row, col] = df[f].to_numpy(dtype="float64")
            arrays[f] = a
        observed = np.zeros((n, k), dtype=bool)
        observed[row, col] = True
        _fill(arrays, observed, max_ffill)
        return cls(
            ts=grid, pairs=pairs, open=arrays["open"], high=arrays["high"], low=arrays["low"],
            close=arrays["close"], volume=arrays["volume"], spread=arrays["spread"],
            observed=observed, interval=interval, max_ffill=max_ffill,
        )  # fmt: skip

    def slice_rows(self, start: int, stop: int) -> Panel:
        """A view of rows [start, stop) sharing memory (no refill: the fill policy was applied)."""
        start = max(0, start)
        lc = self._lc[start:stop] if self._lc is not None else None
        sl = slice(start, stop)
        return Panel(
            ts=self.ts[sl], pairs=self.pairs, open=self.open[sl], high=self.high[sl],
            low=self.low[sl], close=self.close[sl], volume=self.volume[sl], spread=self.spread[sl],
            observed=self.observed[start:stop], interval=self.interval,
            max_ffill=self.max_ffill, _lc=lc,
        )  # fmt: skip

    # ---- access -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ts)

    def col(self, pair: str) -> int:
        try:
            return self.pairs.index(pair)
        except ValueError:
            raise NoDataError(
                f"no bars for {pair} in the data given; pairs present: {', '.join(self.pairs)}"
            ) from None

    @property
    def log_close(self) -> np.ndarray:
        if self._lc is None:
            with np.errstate(invalid="ignore", divide="ignore"):
                self._lc = np.log(self.close)
        return self._lc

    def row_at_or_before(self, ts: Any, pair: str | None = None) -> int:
        """Index of the last grid row at or before ``ts`` (where ``pair`` has a bar, if given)."""
        t = to_utc(ts).value
        i = int(self.ts.searchsorted(t, "right")) - 1  # the method: no np.searchsorted wrapper
        if pair is not None and i >= 0 and not np.isfinite(self.close[i, self.col(pair)]):
            c = self.close[: i + 1, self.col(pair)]
            ok = np.flatnonzero(np.isfinite(c))
            i = int(ok[-1]) if len(ok) else -1
        if i < 0:
            raise NoDataError(f"no bar{' for ' + pair if pair else ''} at or before {to_utc(ts)}")
        return i

    def timestamps(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(self.ts.astype("datetime64[ns]")).tz_localize("UTC")

    def missing_fields(self, pair: str) -> list[str]:
        """Source fields entirely absent for ``pair`` (features needing them will be NaN)."""
        c = self.col(pair)
        obs = self.observed[:, c]
        return [f for f in ("volume", "spread") if not np.isfinite(getattr(self, f)[obs, c]).any()]

    def missing_pairs(self) -> list[str]:
        return [p for p in PAIRS if p not in self.pairs]

    def currency_complete(self) -> dict[str, bool]:
        """Whether all 7 pairs of each currency are present (currency indices need them)."""
        have = set(self.pairs)
        return {c: all(p in have for p in PAIRS if c in (p[:3], p[3:])) for c in CURRENCIES}


def _fill(arrays: dict[str, np.ndarray], observed: np.ndarray, max_ffill: int) -> None:
    """Forward-fill each pair's missing rows for up to ``max_ffill`` rows, in place."""
    if max_ffill <= 0:
        return
    n = observed.shape[0]
    idx = np.where(observed, np.arange(n)[:, None], -1)
    last = np.maximum.accumulate(idx, axis=0)  # last observed row at or before each row
    age = np.arange(n)[:, None] - last
    fill = (~observed) & (last >= 0) & (age <= max_ffill)
    if not fill.any():
        return
    r, c = np.nonzero(fill)
    src = last[r, c]
    prev_close = arrays["close"][src, c]
    for f in ("open", "high", "low", "close"):
        arrays[f][r, c] = prev_close
    vol_known = np.isfinite(arrays["volume"][src, c])
    arrays["volume"][r, c] = np.where(vol_known, 0.0, np.nan)
    arrays["spread"][r, c] = arrays["spread"][src, c]
