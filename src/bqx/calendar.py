"""The FX trading calendar, in one place.

The market trades from Sunday 17:00 to Friday 17:00 New York time: Sunday ~21:00/22:00 UTC
to Friday ~21:00/22:00 UTC depending on US daylight saving time. Data vendors disagree at the
edges (HistData stamps in EST without DST, Dukascopy in GMT, OANDA follows New York), so
BQX distinguishes three zones in UTC:

* **surely closed**: closed under both conventions, Friday 22:00 -> Sunday 21:00 UTC.
  A bar here is invalid and rejected at ingestion.
* **surely open**: open under both conventions, Sunday 22:00 -> Friday 21:00 UTC. Every
  bar interval here belongs to the feature grid; a missing bar is a gap.
* the two **edge hours** (Friday 21-22 and Sunday 21-22 UTC): bars there are kept when a vendor
  has them, but their absence is not a gap.

Windows and lags count bars of this grid (trading time): closed periods are skipped, not
filled. Holidays are not modelled: a holiday with no bars is a long gap (NaN windows).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from pandas.errors import OutOfBoundsDatetime

NY = "America/New_York"
_MIN_PER_DAY = 1440
# minutes of the week, Monday 00:00 = 0 (pandas dayofweek: Monday=0 ... Sunday=6)
_FRI_2100 = 4 * _MIN_PER_DAY + 21 * 60
_FRI_2200 = 4 * _MIN_PER_DAY + 22 * 60
_SUN_2100 = 6 * _MIN_PER_DAY + 21 * 60
_SUN_2200 = 6 * _MIN_PER_DAY + 22 * 60
_NY_FRI_1700 = 4 * _MIN_PER_DAY + 17 * 60
_NY_SUN_1700 = 6 * _MIN_PER_DAY + 17 * 60


def to_utc_index(ts: object) -> pd.DatetimeIndex:
    """Coerce timestamps to a tz-aware UTC DatetimeIndex (naive input is taken as UTC)."""
    idx = pd.DatetimeIndex(ts)  # type: ignore[arg-type]
    if idx.tz is None:
        return idx.tz_localize("UTC")
    return idx.tz_convert("UTC")


class TimestampRangeError(ValueError):
    """A timestamp outside what nanosecond timestamps can hold (years 1677-2262)."""


_NS_MIN = pd.Timestamp.min.tz_localize("UTC")
_NS_MAX = pd.Timestamp.max.tz_localize("UTC")


def to_utc(ts: object) -> pd.Timestamp:
    """Coerce one timestamp to tz-aware UTC (naive is taken as UTC); a time outside
    1677-2262 raises :class:`TimestampRangeError` (a ``ValueError``) saying so."""
    if type(ts) is pd.Timestamp and ts.tzinfo is UTC:
        # a UTC Timestamp (the serving path): tz_convert("UTC") would give back the same
        # instant, zone and unit (~1 us saved per call on the request path)
        t = ts
    else:
        t = pd.Timestamp(ts)  # type: ignore[arg-type]
        if t is pd.NaT:
            raise ValueError("timestamp is NaT")
        t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    if not (_NS_MIN <= t <= _NS_MAX):
        raise TimestampRangeError(
            f"timestamp {t.isoformat()} is outside the supported range "
            f"{_NS_MIN.date()} .. {_NS_MAX.date()}"
        )
    return t


def _minute_of_week(idx: pd.DatetimeIndex) -> np.ndarray:
    return (
        idx.day_of_week.to_numpy() * _MIN_PER_DAY + idx.hour.to_numpy() * 60 + idx.minute.to_numpy()
    )


def surely_closed(ts: object) -> np.ndarray:
    """True where the market is closed under every vendor convention (Fri 22:00-Sun 21:00 UTC)."""
    mow = _minute_of_week(to_utc_index(ts))
    return (mow >= _FRI_2200) & (mow < _SUN_2100)


def surely_open(ts: object) -> np.ndarray:
    """True where the market is open under every vendor convention (Sun 22:00-Fri 21:00 UTC)."""
    mow = _minute_of_week(to_utc_index(ts))
    return ~((mow >= _FRI_2100) & (mow < _SUN_2200))


def ny_open(ts: object) -> np.ndarray:
    """True where the market is open by the New York 17:00 rule (DST-aware)."""
    idx = to_utc_index(ts).tz_convert(NY)
    mow = _minute_of_week(idx)
    return ~((mow >= _NY_FRI_1700) & (mow < _NY_SUN_1700))


def minutes_from_rollover(ts: object) -> np.ndarray:
    """Signed minutes from the nearest daily rollover (17:00 New York), in [-720, 720)."""
    idx = to_utc_index(ts).tz_convert(NY)
    m = idx.hour.to_numpy() * 60 + idx.minute.to_numpy() - 17 * 60
    return ((m + 720) % _MIN_PER_DAY) - 720


def ny_clock(ts: pd.Timestamp) -> tuple[bool, int]:
    """(:func:`ny_open`, :func:`minutes_from_rollover`) of one tz-aware timestamp, without
    building an index (~0.5 ms for the two index calls; equal values,
    ``tests/signals/test_signals.py``).

    The New York wall clock comes from the same ``zoneinfo`` rules pandas converts with
    (``Timestamp.tz_convert`` resolves "America/New_York" to ``zoneinfo.ZoneInfo``), applied
    by ``datetime.astimezone`` to the instant (to the microsecond): a few us instead of the
    ~20 us of pandas' scalar conversion. Only the minute, hour and weekday are read
    (``tests/test_calendar_nyclock.py`` compares it with ``tz_convert`` across DST changes
    and the whole nanosecond range)."""
    try:
        # floor to the microsecond: zone offsets are whole seconds (LMT: -4:56:02), so
        # the wall clock's minute is that of the exact instant
        t: Any = (_EPOCH + timedelta(microseconds=ts.value // 1000)).astimezone(_NY_ZONE)
    except (OverflowError, OutOfBoundsDatetime):  # beyond nanoseconds (a "s"-unit time)
        t = ts.tz_convert(NY)
        return _ny_fields(t.hour, t.minute, t.day_of_week)
    return _ny_fields(t.hour, t.minute, t.weekday())


def _ny_fields(hour: int, minute: int, weekday: int) -> tuple[bool, int]:
    hm = hour * 60 + minute
    mow = weekday * _MIN_PER_DAY + hm
    return not (_NY_FRI_1700 <= mow < _NY_SUN_1700), ((hm - 17 * 60 + 720) % _MIN_PER_DAY) - 720


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NY_ZONE = ZoneInfo(NY)


def floor_to_interval(t: pd.Timestamp, interval: timedelta) -> pd.Timestamp:
    step = pd.Timedelta(interval)
    return t.floor(step)


def expected_grid(start: object, end: object, interval: timedelta) -> pd.DatetimeIndex:
    """Bar timestamps in ``[start, end]`` that must exist in surely-open trading time."""
    s = floor_to_interval(to_utc(start), interval)
    e = to_utc(end)
    if e < s:
        return pd.DatetimeIndex([], tz="UTC", dtype="datetime64[ns, UTC]")
    rng = pd.date_range(s, e, freq=pd.Timedelta(interval), unit="ns")
    return rng[surely_open(rng)]


def bars_lower_bound(t: object, n: int, interval: timedelta) -> pd.Timestamp:
    """An exclusive lower bound just before the n-th surely-open bar before ``t``: a pair
    with no gaps has exactly n bars in (bound, t] (a few more if its vendor stamps edge
    hours). Used to bound as-of reads and online feature windows without scanning."""
    t = to_utc(t)
    step = pd.Timedelta(interval)
    span = step * (n + 10)
    for _ in range(6):
        grid = expected_grid(t - span, t, interval)
        if len(grid) >= n:
            return pd.Timestamp(grid[-n]) - step
        span = span * 2 + pd.Timedelta(days=3)
    return t - span


def ny_trading_index(start: object, end: object, interval: timedelta) -> pd.DatetimeIndex:
    """Bar timestamps in ``[start, end)`` open by the New York rule (used by the simulator)."""
    s = floor_to_interval(to_utc(start), interval)
    e = to_utc(end)
    rng = pd.date_range(s, e, freq=pd.Timedelta(interval), inclusive="left", unit="ns")
    return rng[ny_open(rng)]


def utcnow() -> datetime:
    return pd.Timestamp.now(tz="UTC").to_pydatetime()
