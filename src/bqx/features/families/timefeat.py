"""Time (8 features, not lagged): cyclical clock encodings and trading sessions.

Sessions use local time with daylight saving: Tokyo 09:00-18:00, London 08:00-17:00,
New York 08:00-17:00. ``rollover_phase`` is the signed distance to 17:00 New York / 720 min.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from bqx.features.context import Ctx, Family, Spec

SPECS = (
    Spec("hour_sin", "time", "sin(2 pi hour_of_day_utc / 24)", 0),
    Spec("hour_cos", "time", "cos(2 pi hour_of_day_utc / 24)", 0),
    Spec("dow_sin", "time", "sin(2 pi fractional_day_of_week / 7)", 0),
    Spec("dow_cos", "time", "cos(2 pi fractional_day_of_week / 7)", 0),
    Spec("session_tokyo", "time", "1 during Tokyo 09:00-18:00 local", 0),
    Spec("session_london", "time", "1 during London 08:00-17:00 local", 0),
    Spec("session_newyork", "time", "1 during New York 08:00-17:00 local", 0),
    Spec("rollover_phase", "time", "signed minutes to 17:00 New York / 720", 0),
)

_NS_MIN = 60_000_000_000
_NS_DAY = 86_400_000_000_000


_OFFSETS: dict[tuple[str, int], int] = {}


def _offset_at(tz: str, sec: int) -> int:
    d = datetime.fromtimestamp(sec, tz=UTC).astimezone(ZoneInfo(tz))
    off = d.utcoffset()
    assert off is not None
    return int(off.total_seconds())


def _utc_offset(tz: str, sec: int) -> int:
    """The UTC offset (seconds) of ``tz`` at UTC epoch second ``sec``, cached per UTC hour
    when it is the same at the hour's first and last second (every hour but one holding a
    change of offset, which is computed at ``sec`` itself)."""
    key = (tz, sec // 3600)
    off = _OFFSETS.get(key)
    if off is not None:
        return off
    h0 = key[1] * 3600
    a, b = _offset_at(tz, h0), _offset_at(tz, h0 + 3599)
    if a != b:
        return _offset_at(tz, sec)
    if len(_OFFSETS) > 100_000:
        _OFFSETS.clear()
    _OFFSETS[key] = a
    return a


def _hour_of(t: int, tz: str) -> float:
    """:func:`_local_hour` of one timestamp (int ns): the local clock is UTC + the zone's
    offset at that instant (what ``astimezone`` computes), looked up once per zone and UTC
    hour; ``d.hour + d.minute / 60.0``."""
    sec = t // 1_000_000_000
    loc = sec + _utc_offset(tz, sec)
    return (loc // 3600) % 24 + (loc // 60) % 60 / 60.0


def _local_hour(ts: np.ndarray, tz: str) -> np.ndarray:
    """Local clock hour (fractional) of int64-ns UTC timestamps, DST-aware."""
    if len(ts) <= 16:  # online: a handful of rows; pandas' tz machinery costs ~0.1 ms a call
        out = np.empty(len(ts))
        for i, t in enumerate(ts.tolist()):
            out[i] = _hour_of(t, tz)
        return out
    loc = pd.DatetimeIndex(ts.astype("datetime64[ns]")).tz_localize("UTC").tz_convert(tz)
    return loc.hour.to_numpy() + loc.minute.to_numpy() / 60.0


def compute(ctx: Ctx, pos: np.ndarray) -> np.ndarray:
    ts = ctx.ts[pos]
    day_frac = (ts % _NS_DAY) / _NS_DAY
    dow = ((ts // _NS_DAY) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    out = np.empty((len(pos), 8))
    out[:, 0] = np.sin(2 * np.pi * day_frac)
    out[:, 1] = np.cos(2 * np.pi * day_frac)
    wk = (dow + day_frac) / 7.0
    out[:, 2] = np.sin(2 * np.pi * wk)
    out[:, 3] = np.cos(2 * np.pi * wk)
    for k, (tz, a, b) in enumerate(
        (("Asia/Tokyo", 9, 18), ("Europe/London", 8, 17), ("America/New_York", 8, 17))
    ):
        h = _local_hour(ts, tz)
        out[:, 4 + k] = ((h >= a) & (h < b)).astype(float)
    ny = _local_hour(ts, "America/New_York") * 60.0 - 17 * 60
    out[:, 7] = (((ny + 720.0) % 1440.0) - 720.0) / 720.0
    return out


_SESSIONS = (("Asia/Tokyo", 9, 18), ("Europe/London", 8, 17), ("America/New_York", 8, 17))


_TWO_PI = 2 * np.pi


def _one_row(t: int, idx: Sequence[int]) -> np.ndarray:
    """:func:`compute_online` at one row: the integer and float steps of each expression on
    Python ints and floats (exact integers; IEEE double +, -, *, / and % like numpy's
    float64 ones); sin and cos from ``math`` (the C library's, whose float64 values are
    numpy's: checked bit for bit against compute() by
    ``tests/features/test_online_point.py::test_time_one_row_path_equals_the_batch_bit_for_bit``)
    instead of numpy's on a one-element array."""
    out = np.empty((1, len(idx)))
    day_frac = wk = None
    for j, k in enumerate(idx):
        if k < 4:
            if day_frac is None:
                day_frac = (t % _NS_DAY) / _NS_DAY  # int / int: the correctly rounded double
            if k < 2:
                x = _TWO_PI * day_frac
            else:
                if wk is None:
                    wk = (((t // _NS_DAY) + 3) % 7 + day_frac) / 7.0
                x = _TWO_PI * wk
            out[0, j] = math.sin(x) if k % 2 == 0 else math.cos(x)
        elif k < 7:
            tz, a, b = _SESSIONS[k - 4]
            h = _hour_of(t, tz)
            out[0, j] = float(h >= a and h < b)
        else:
            ny = _hour_of(t, "America/New_York") * 60.0 - 17 * 60
            out[0, j] = (((ny + 720.0) % 1440.0) - 720.0) / 720.0
    return out


def compute_online(ctx: Ctx, pos: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    """Only the asked columns, each with :func:`compute`'s expression (all elementwise), so
    the local-time conversions run only for the sessions / rollover asked for."""
    if len(pos) == 1:
        return _one_row(int(ctx.ts[pos[0]]), idx)
    ts = ctx.ts[pos]
    out = np.empty((len(pos), len(idx)))
    day_frac = wk = None
    for j, k in enumerate(idx):
        if k < 4:
            if day_frac is None:
                day_frac = (ts % _NS_DAY) / _NS_DAY
            if k < 2:
                out[:, j] = (np.sin if k == 0 else np.cos)(2 * np.pi * day_frac)
                continue
            if wk is None:
                dow = ((ts // _NS_DAY) + 3) % 7
                wk = (dow + day_frac) / 7.0
            out[:, j] = (np.sin if k == 2 else np.cos)(2 * np.pi * wk)
        elif k < 7:
            tz, a, b = _SESSIONS[k - 4]
            h = _local_hour(ts, tz)
            out[:, j] = ((h >= a) & (h < b)).astype(float)
        else:
            ny = _local_hour(ts, "America/New_York") * 60.0 - 17 * 60
            out[:, j] = (((ny + 720.0) % 1440.0) - 720.0) / 720.0
    return out


FAMILY = Family("time", False, SPECS, compute, compute_online=compute_online)
