"""``ny_clock`` (datetime + zoneinfo on the minute) gives what pandas' scalar
``tz_convert("America/New_York")`` gives: across DST changes of 1970-2060, at random
instants of the whole nanosecond range (seconds and nanoseconds included), and for
non-UTC inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bqx.calendar import _NY_FRI_1700, _NY_SUN_1700, NY, ny_clock, to_utc


def _reference(ts: pd.Timestamp) -> tuple[bool, int]:
    t = ts.tz_convert(NY)  # the former implementation
    hm = t.hour * 60 + t.minute
    mow = t.day_of_week * 1440 + hm
    return not (_NY_FRI_1700 <= mow < _NY_SUN_1700), ((hm - 17 * 60 + 720) % 1440) - 720


def test_ny_clock_equals_pandas_tz_convert():
    rng = np.random.default_rng(11)
    stamps: list[pd.Timestamp] = []
    # around US DST changes (2nd Sunday of March / 1st Sunday of November since 2007, other
    # rules before; always a Sunday at 02:00 local, 06:00-07:00 UTC): every 7.5 minutes from
    # 04:00 to 10:00 UTC on the Sundays of March, April, October and November
    for year in (*range(1970, 2061, 6), 2024, 2025, 2026):
        for month in (3, 4, 10, 11):
            days = pd.date_range(f"{year}-{month:02d}-01", periods=30, freq="D", tz="UTC")
            for d in days[days.dayofweek == 6]:
                stamps.extend(pd.date_range(d + pd.Timedelta(hours=4), periods=48, freq="450s"))
    # anywhere in the nanosecond range, with seconds and nanoseconds
    lo, hi = pd.Timestamp.min.value + 10**12, pd.Timestamp.max.value - 10**12
    stamps.extend(pd.Timestamp(int(v), tz="UTC") for v in rng.integers(lo, hi, 4000))
    stamps.extend(pd.Timestamp(int(v), tz="UTC") for v in rng.integers(-(10**18), 10**18, 2000))
    assert len(stamps) > 15000
    for t in stamps:
        assert ny_clock(t) == _reference(t), t
    # another zone, and the friday close / sunday open minutes
    for s in ("2024-03-08T16:59:59.999-05:00", "2024-03-08T17:00:00-05:00",
              "2024-03-10T16:59:00-04:00", "2024-03-10T17:00:00-04:00",
              "2024-11-03T01:30:00-04:00", "2024-11-03T01:30:00-05:00"):  # fmt: skip
        t = pd.Timestamp(s)
        assert ny_clock(t) == _reference(t), s
        assert ny_clock(to_utc(s)) == _reference(t), s


def test_ny_clock_beyond_nanoseconds():
    t = pd.Timestamp("2400-06-01T12:00:00").as_unit("s").tz_localize("UTC")
    assert ny_clock(t) == _reference(t)


def test_to_utc_of_a_utc_timestamp_is_unchanged():
    for s in ("2024-01-05T13:40:00Z", "2024-01-05T13:40:00.123456789Z"):
        t = pd.Timestamp(s)
        u = to_utc(t)
        assert u == t.tz_convert("UTC") and u.tzinfo is t.tz_convert("UTC").tzinfo
        assert u.unit == t.tz_convert("UTC").unit and u.isoformat() == t.isoformat()
