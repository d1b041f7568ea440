"""The canonical bar frame shared by ingestion, the store, the simulator and features.

A bar frame is a long pandas DataFrame with exactly these columns::

    pair    str       one of the 28 pairs
    ts      datetime64[ns, UTC]  bar open time
    open, high, low, close   float64, mid prices
    volume  float64   tick count (NaN when the source has none)
    spread  float64   mean bid-ask spread in price units (NaN when the source has none)

sorted by (pair, ts) with a RangeIndex.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

BAR_COLUMNS: tuple[str, ...] = ("pair", "ts", "open", "high", "low", "close", "volume", "spread")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
VALUE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume", "spread")


def empty_bars() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "pair": pd.Series([], dtype="str"),
            "ts": pd.Series([], dtype="datetime64[ns, UTC]"),
            **{c: pd.Series([], dtype="float64") for c in VALUE_COLUMNS},
        }
    )


def normalize_bars(df: pd.DataFrame, *, sort: bool = True) -> pd.DataFrame:
    """Return ``df`` in canonical form: columns, dtypes (ns UTC, float64), optional sort.

    Missing ``volume``/``spread`` columns become NaN. Extra columns are dropped.
    """
    missing = [c for c in ("pair", "ts", *PRICE_COLUMNS) if c not in df.columns]
    if missing:
        raise ValueError(f"bar frame lacks columns {missing}; has {list(df.columns)}")
    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    out["pair"] = df["pair"].astype(str).to_numpy(dtype=object)
    out["ts"] = pd.DatetimeIndex(pd.to_datetime(df["ts"], utc=True)).as_unit("ns")
    for c in VALUE_COLUMNS:
        if c in df.columns:
            out[c] = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype="float64")
        else:
            out[c] = np.nan
    if sort and len(out):
        out = out.sort_values(["pair", "ts"], kind="stable").reset_index(drop=True)
    return out


def as_ns(idx: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """``idx`` in nanoseconds; instants outside the nanosecond range (years 1677-2262: a
    year-199 typo, say) become NaT instead of raising ``OutOfBoundsDatetime``, so parsers
    and validators report the row rather than fail on the whole file."""
    idx = pd.DatetimeIndex(idx)
    if idx.unit == "ns":
        return idx
    lo, hi = pd.Timestamp.min, pd.Timestamp.max
    if idx.tz is not None:
        lo, hi = lo.tz_localize("UTC"), hi.tz_localize("UTC")
    return pd.DatetimeIndex(idx.where((idx >= lo) & (idx <= hi))).as_unit("ns")


def ts_ns(ts: object) -> np.ndarray:
    """Timestamps (Series/Index/array, tz-aware or naive UTC) as int64 nanoseconds since epoch.

    Avoids ``Series.to_numpy()`` on tz-aware data, which builds an object array.
    """
    idx = pd.DatetimeIndex(pd.to_datetime(ts, utc=True))  # type: ignore[call-overload]
    return idx.as_unit("ns").asi8


def frames_equal(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Exact equality of two bar frames (NaN equals NaN)."""
    try:
        pd.testing.assert_frame_equal(
            normalize_bars(a), normalize_bars(b), check_exact=True, check_dtype=True
        )
    except AssertionError:
        return False
    return True
